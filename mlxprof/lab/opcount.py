"""Ops per decode token of a model, counted on its lazy graph, with GPU estimates.

`ops_per_token(model)` builds a prefill and two greedy decode steps exactly as
mlx-lm's `generate_step` builds them, evaluates nothing, and counts the
primitives the second step adds (`mlxprof.graph.count_ops`). It works on
shapes-only models (`models.load(..., shapes_only=True)`), so the full-size
35B structure is counted on a laptop.

Some calls are one kernel on a GPU but ordinary ops on MLX's CPU backend
(`mx.fast.rms_norm`, `rope`, `scaled_dot_product_attention`; on a Mac also
mlx-lm's Gated DeltaNet recurrence). A `KernelTally` notes how many primitives
each such call builds here, which gives estimates of the GPU counts
(`cuda_est`, `metal_est`): each call collapsed to one kernel.

Example:
    >>> from mlxprof.lab import models, opcount
    >>> lm = models.load("qwen3-8b", "tiny", shapes_only=True)
    >>> c = opcount.ops_per_token(lm.model)
    >>> c.cuda_est < c.total
    True
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import mlx.core as mx

from mlxprof.graph import count_ops

__all__ = ["TokenOps", "KernelTally", "ops_per_token", "moe_ops", "kind_of", "by_kind",
           "GPU_FAST", "KINDS"]

# Calls that are a single kernel on a CUDA GPU; on a Mac, mlx-lm's Gated DeltaNet
# recurrence too (a Metal kernel; op by op on CPU and CUDA).
GPU_FAST = ("mx.fast.rms_norm", "mx.fast.rope", "mx.fast.scaled_dot_product_attention")
METAL_ONLY = ("gated_delta_ops",)

KINDS = {
    "matmul (quantized, gathered)": {"QuantizedMatmul", "GatherQMM", "Matmul", "GatherMM"},
    "casts (AsType)": {"AsType"},
    "shape & copy (views, slices, concat)": {
        "Reshape", "ExpandDims", "Squeeze", "Transpose", "Broadcast", "Slice", "SliceUpdate",
        "Flatten", "Unflatten", "Concatenate", "Split", "Contiguous", "StopGradient", "Copy",
        "Gather", "GatherAxis", "Depends"},
    "reductions, softmax, top-k": {"Sum", "Max", "Min", "Softmax", "LogSumExp", "ArgPartition",
                                   "ArgReduce", "Partition", "Sort", "ArgSort", "Reduce"},
    "constants (Full, Arange)": {"Full", "Arange"},
}


def kind_of(primitive: str) -> str:
    """The kind a primitive name belongs to (one of `KINDS`, compiled, or other).

    Example:
        >>> kind_of("GatherQMM"), kind_of("Exp")
        ('matmul (quantized, gathered)', 'elementwise & other')
    """
    if primitive.startswith("Compiled"):
        return "compiled (fused by mx.compile)"
    for kind, names in KINDS.items():
        if primitive in names:
            return kind
    return "elementwise & other"


def by_kind(ops: dict) -> dict:
    """Sum primitive counts by `kind_of`.

    Example:
        >>> by_kind({"Reshape": 2, "Squeeze": 1, "Exp": 4})
        {'shape & copy (views, slices, concat)': 3, 'elementwise & other': 4}
    """
    out: Counter = Counter()
    for prim, n in ops.items():
        out[kind_of(prim)] += n
    return dict(out)


@dataclass(frozen=True)
class TokenOps:
    """Primitives one steady-state decode token evaluates.

    ops: primitive name -> count; total: their sum; cuda_est / metal_est: the
    total with every GPU-kernel call collapsed to one op; kernel_calls: how
    often each such call ran in the token; kernel_ops: the primitives those
    calls built here, by call.
    """

    ops: dict
    total: int
    cuda_est: int
    metal_est: int
    kernel_calls: dict
    kernel_ops: dict

    def __getitem__(self, key):          # c["total"] reads like the dicts it replaces
        return getattr(self, key)


def _stand_in(a):
    """An evaluated array of a's shape and dtype that owns no memory (never compute on it)."""
    s = mx.broadcast_to(mx.zeros((), a.dtype), a.shape)
    mx.eval(s)
    return s


def _as_if_evaluated(cache) -> None:
    """Swap every array a prompt cache holds for a stand-in, as if prefill had run."""
    for c in cache:
        for key, val in list(vars(c).items()):
            if isinstance(val, mx.array):
                setattr(c, key, _stand_in(val))
            elif isinstance(val, list) and any(isinstance(v, mx.array) for v in val):
                setattr(c, key, [_stand_in(v) if isinstance(v, mx.array) else v for v in val])


def _mlx_lm_step(model, y, cache):
    """One greedy decode step, built as mlx-lm's generate_step builds it."""
    logits = model(y[None], cache=cache)[:, -1, :]
    logprobs = logits - mx.logsumexp(logits, keepdims=True)
    return mx.argmax(logprobs, axis=-1), logprobs.squeeze(0)


def _targets() -> dict:
    import mlx_lm.models.gated_delta as gdn

    return {"mx.fast.rms_norm": (mx.fast, "rms_norm"),
            "mx.fast.rope": (mx.fast, "rope"),
            "mx.fast.scaled_dot_product_attention": (mx.fast, "scaled_dot_product_attention"),
            "gated_delta_ops": (gdn, "gated_delta_ops")}


class KernelTally:
    """While active and `on`, count the primitives each would-be GPU kernel call builds.

    Patches `mx.fast.rms_norm`, `rope`, `scaled_dot_product_attention` and mlx-lm's
    `gated_delta_ops` for the `with` block and restores them on exit. Each call is
    repeated on stand-in inputs, so only the ops the call itself adds are counted.

    Example:
        >>> import mlx.core as mx
        >>> x, w = mx.ones((1, 8)), mx.ones((8,))
        >>> with KernelTally() as t:
        ...     t.on = True
        ...     _ = mx.fast.rms_norm(x, w, 1e-5)
        >>> t.calls["mx.fast.rms_norm"]
        1
    """

    def __init__(self):
        self.on, self.calls, self.inner = False, Counter(), Counter()
        self._saved: dict = {}

    def __enter__(self) -> "KernelTally":
        targets = _targets()
        self._saved = {n: (mod, attr, getattr(mod, attr)) for n, (mod, attr) in targets.items()}
        for n, (mod, attr, fn) in self._saved.items():
            setattr(mod, attr, self._wrap(n, fn))
        return self

    def __exit__(self, *exc) -> None:
        for mod, attr, fn in self._saved.values():
            setattr(mod, attr, fn)

    def _wrap(self, name, fn):
        def wrapper(*args, **kw):
            if self.on:
                a = [_stand_in(x) if isinstance(x, mx.array) else x for x in args]
                k = {n: _stand_in(v) if isinstance(v, mx.array) else v for n, v in kw.items()}
                self.calls[name] += 1
                self.inner[name] += sum(count_ops(fn(*a, **k)).values())
            return fn(*args, **kw)
        return wrapper

    def collapsed(self, total: int, names) -> int:
        """`total` with every call of `names` counted as one kernel."""
        return total - sum(self.inner[n] for n in names) + sum(self.calls[n] for n in names)


def ops_per_token(model, n_prompt: int = 16) -> TokenOps:
    """Count one steady-state decode token of `model` (an mlx-lm model); nothing evaluated.

    Example:
        >>> from mlxprof.lab import models
        >>> c = ops_per_token(models.load("qwen3.5-35b-a3b", "tiny", shapes_only=True).model)
        >>> c.metal_est <= c.cuda_est < c.total
        True
    """
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    model(mx.array([list(range(n_prompt))], dtype=mx.int32), cache=cache)
    _as_if_evaluated(cache)
    with KernelTally() as tally:
        step1 = _mlx_lm_step(model, mx.array([0], dtype=mx.int32), cache)
        tally.on = True
        step2 = _mlx_lm_step(model, step1[0], cache)
    ops = Counter(count_ops(*step1, *step2)) - Counter(count_ops(*step1))
    total = sum(ops.values())
    return TokenOps(ops=dict(ops), total=total,
                    cuda_est=tally.collapsed(total, GPU_FAST),
                    metal_est=tally.collapsed(total, GPU_FAST + METAL_ONLY),
                    kernel_calls=dict(tally.calls), kernel_ops=dict(tally.inner))


def moe_ops(arch: str = "qwen3-30b-a3b", experts: int = 128, top_k: int = 8,
            layers: int = 48) -> TokenOps:
    """Ops per token of a synthetic architecture with other MoE knobs (tiny widths).

    Width does not change the count, so this builds a shapes-only model at the
    `tiny` preset with the given experts, experts per token and layers.

    Example:
        >>> moe_ops("qwen3-30b-a3b", 16, 8, 2).total == moe_ops("qwen3-30b-a3b", 64, 8, 2).total
        True
    """
    from mlxprof.lab.models.configs import model_config, spec, text_config
    from mlxprof.lab.models.synthetic import build

    if int(experts) < 1 or int(top_k) < 1 or int(layers) < 1:
        raise ValueError(f"experts, top_k and layers must be >= 1, got {experts}, {top_k}, "
                         f"{layers}")
    cfg = model_config(arch, "tiny")
    tc = text_config(cfg)
    if not tc.get("num_experts"):
        raise ValueError(f"{arch!r} is not a mixture-of-experts model; try qwen3-30b-a3b "
                         "or qwen3.5-35b-a3b")
    tc.update(num_experts=int(experts), num_experts_per_tok=int(min(top_k, experts)),
              num_hidden_layers=int(layers))
    model, _ = build(cfg, 0, spec(arch)["quantization"], shapes_only=True)
    return ops_per_token(model)
