"""Decode loops for mlx-lm models, and the `fast` loop's model rewrite.

This wing may use the profiler (`mlxprof`) but never the lab (`mlxprof.lab`).

    loops.py      greedy decode loops: sync, mlx_lm, async, pipelined, compiled, fast
    optimize/     `optimize_model`: fused projections, compiled per-layer decode pieces
    kernels/      custom CUDA kernels (`mx.fast.cuda_kernel`) used by `optimize`

Example:
    >>> from mlxprof import decode
    >>> sorted(decode.LOOPS)
    ['async', 'compiled', 'fast', 'mlx_lm', 'pipelined', 'sync']
"""
from __future__ import annotations

from mlxprof.decode.loops import (CLEAR_CACHE_EVERY, LOOPS, PREFILL_STEP_SIZE,
                                  LogitsComparison, Loop, async_loop, check_args,
                                  compare_logits, compiled_loop, get_loop,
                                  mlx_lm_loop, pipelined_loop, register, stream,
                                  sync_loop, synchronize, teacher_forced_logits,
                                  vocab_size)

__all__ = [
    "Loop", "LOOPS", "stream", "get_loop", "register", "check_args", "vocab_size",
    "sync_loop", "mlx_lm_loop", "async_loop", "pipelined_loop", "compiled_loop",
    "synchronize", "teacher_forced_logits", "compare_logits", "LogitsComparison",
    "PREFILL_STEP_SIZE", "CLEAR_CACHE_EVERY", "optimize_model", "Options",
]


def __getattr__(name):  # the optimizer (and its kernels) load on first use
    if name in ("optimize_model", "Options"):
        from mlxprof.decode import optimize
        return getattr(optimize, name)
    raise AttributeError(f"module 'mlxprof.decode' has no attribute {name!r}")
