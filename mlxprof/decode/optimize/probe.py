"""Run-time probes: what the current backend does with a given op.

`fast_gated_delta_is_fused(...)` builds (never evaluates) one call of
`mx.fast.gated_delta_update` at the model's head shapes on the default
device and looks at the lazy graph: a single `GatedDeltaUpdate` primitive
means a real kernel; a graph of ordinary ops means MLX's composed fallback
(the CPU backend, or shapes the kernel does not cover), which is slower
than our own compiled op path, so we would not use it.

Example:
    >>> import mlx.core as mx
    >>> fast_gated_delta_is_fused(16, 32, 128, 128) in (True, False)
    True
"""
from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

__all__ = ["fast_gated_delta_is_fused", "op_counts"]


def op_counts(*arrays) -> dict:
    """Primitive name -> count in the lazy graph behind `arrays`."""
    from mlxprof.graph import count_ops
    return count_ops(*arrays)


@lru_cache(maxsize=None)
def _probe(device: str, hk: int, hv: int, dk: int, dv: int) -> bool:
    if not hasattr(mx.fast, "gated_delta_update"):
        return False
    f32 = mx.float32
    try:
        q = mx.zeros((1, 1, hk, dk), f32)
        v = mx.zeros((1, 1, hv, dv), f32)
        g = mx.ones((1, 1, hv), f32)
        s = mx.zeros((1, hv, dv, dk), f32)
        mx.eval(q, v, g, s)
        y, st = mx.fast.gated_delta_update(q, q, v, g, g, s)
        ops = op_counts(y, st)
    except Exception:
        return False
    return any("GatedDelta" in name for name in ops)


def fast_gated_delta_is_fused(hk: int, hv: int, dk: int, dv: int) -> bool:
    """True if mx.fast.gated_delta_update is one kernel here for these heads."""
    return _probe(str(mx.default_device()), hk, hv, dk, dv)
