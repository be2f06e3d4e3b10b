"""Model rewrites for fast decoding: `optimize_model(model) -> model`.

The returned model computes what the mlx-lm model computes (to bf16
rounding), with fewer primitives and less Python per decoded token:

* fused projections (one quantized matmul where mlx-lm runs several on the
  same input): q/k/v(/gate); MLP gate+up; GDN qkv+z+b+a; MoE router +
  shared-expert gate (both 8-bit); the experts' gate+up in one gather_qmm;
  optionally the shared expert as one more expert in the same gather_qmm;
* at decode (one token), each layer runs as `mx.compile`d pieces with static
  shapes (a GDN layer in one piece, with its conv and recurrent states passed
  explicitly; an attention layer in two pieces around the cache update and
  sdpa); views (reshape/transpose/expand) dropped where L=1 makes them no-ops;
* the GDN recurrence as broadcast ops (no repeat copies), or as the core
  `mx.fast.gated_delta_update` where the backend has a kernel for it;
* on MLX's CUDA backend, custom kernels for chains of small ops at one token
  (the whole GDN step, MoE routing, MoE combine, residual add + RMSNorm,
  q/k norm + RoPE, the one-row 4-bit matvec, decode attention), each used only after its
  self-check on the device.

Prefill (more than one token) runs the same fused weights with mlx-lm's math,
uncompiled. The cache is mlx-lm's own (`make_cache()` returns what
`make_prompt_cache` makes for the original), and the call convention is
mlx-lm's, so `generate_step` and mlxprof's loops run the result unchanged.

Reversible: the input model is never modified (weights are shared where no
fusion is needed; fused weights are new arrays built once);
`unoptimize(opt)` returns the original. Unknown architectures raise
`UnsupportedModelError` (a ValueError) naming the supported ones; with
`strict=False` the input comes back unchanged, with a warning.

Example:
    >>> import mlxprof.decode.optimize as mo
    >>> sorted(mo.SUPPORTED)[:3]
    ['llama', 'qwen3', 'qwen3_5']
    >>> # fast = mo.optimize_model(model); mo.unoptimize(fast) is model -> True
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import mlx.core as mx

from .probe import fast_gated_delta_is_fused

__all__ = ["Options", "optimize_model", "unoptimize", "is_optimized",
           "SUPPORTED", "UnsupportedModelError", "is_sharded", "fast_gated_delta_is_fused"]

SUPPORTED = ("llama", "qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_moe", "qwen3_next")


class UnsupportedModelError(ValueError):
    """optimize_model() does not know this architecture."""


@dataclass(frozen=True)
class Options:
    """Which levers optimize_model() applies.

    decode_path runs one-token steps through the layers' decode code (views
    dropped, static shapes); compile wraps that code in mx.compile (no
    effect without decode_path). Levers bit-exact on the CPU backend (on by
    default): fused projections, decode_path, compile, merged q/k norm, the
    KVCache write inside the compiled attention step (kv_in_compile). On
    CUDA, compiled pieces round differently (docs/fast-loop.md).
    gated_delta picks the GDN decode recurrence: "ops" (mlx-lm's math as
    broadcast ops), "algebraic" (same math regrouped: fewer kernels,
    float32 rounding differs), "mlx_lm" (mlx-lm's own conv1d,
    gated_delta_update and norms at one token: its exact rounding on every
    backend), "fast" (mx.fast.gated_delta_update, one kernel where the
    backend has one), "cuda" (our CUDA kernel for the recurrence,
    cuda_gdn.py), "fused" (conv, norms, gates, recurrence and gated norm
    in one CUDA kernel, cuda_gdn_layer.py), "auto" (on a CUDA GPU "fused"
    if its self-check passes; else "fast" if the probe finds a kernel,
    else "cuda" on a CUDA GPU if its self-check passes, else "ops").
    router="topk_softmax" takes top-k on the logits and a softmax over
    them (2 kernels fewer; may pick a different expert at bf16 ties of the
    probabilities); combine="matmul" sums the experts' outputs with one
    matmul. router="cuda" / combine="cuda" run the MoE routing (softmax,
    top-k, renormalization, shared gate) and the combine (weighted sum,
    shared expert, residual add) as one custom CUDA kernel each at one
    token (cuda_moe.py; mlx-lm's rounding points, float32 sums may be
    ordered differently); "auto" picks them on a CUDA GPU when their
    self-check passes, else "exact". add_norm="cuda" makes each residual add
    and the RMSNorm after it one CUDA kernel at one token (cuda_norm.py;
    with combine="cuda" the MoE combine kernel also normalizes); "auto"
    picks it on a CUDA GPU when its self-check passes, else "ops".
    qk_norm_rope="cuda" runs the q/k RMSNorms (where the model has them:
    Qwen3's) and RoPE of an attention layer as one CUDA kernel at one token
    (cuda_rope.py); "auto" as above. qmv="cuda" runs each one-row 4-bit projection (the decode
    matvecs, lm_head included) with our CUDA kernel (cuda_qmv.py: float32
    sums, more loads in flight than MLX's; a dense MLP's gate_up with its
    SwiGLU in the same kernel); "swiglu" only for the MLPs' gate_up; "auto"
    picks "cuda" on a CUDA GPU for every weight shape whose self-check
    passes, on models without MoE blocks: the kernel halves the matvecs'
    device time but each custom kernel costs the host more than MLX's own,
    and MoE decode is host-bound (docs/fast-loop.md: on the H200 it
    made Qwen3-8B faster and Qwen3.5-35B-A3B slower). shared_in_switch makes Qwen3.5's shared expert expert number E
    of the switch weights (copies every expert tensor once: memory).
    experts="cuda" runs an MoE block's experts at one token as two CUDA
    kernels (cuda_experts.py): the top-k experts' and the shared expert's
    gate/up with SwiGLU in one, their down projections with the weighted
    combine and the residual add in the other (the next RMSNorm stays
    MLX's); experts="routed" also moves the routing (cuda_moe's softmax and
    top-k) into the gate/up kernel: each of its blocks routes for itself,
    one kernel launch fewer per MoE block; "auto" picks "routed" on a CUDA
    GPU with router/combine "cuda" when both self-checks pass ("cuda" when
    only the experts' passes); "ops" keeps gather_qmm.
    attention="cuda" runs the decode step's attention (over the full KV
    cache buffers, no slices) as one CUDA kernel (cuda_attention.py:
    float32 scores, softmax and sums, one rounding); "auto" uses it on a
    CUDA GPU when its self-check passes at the layer's shapes (the
    default); "ops" keeps mlx-lm's slices + sdpa.
    prefill="mlx_lm" runs calls of more than one token (the prompt) through
    the original mlx-lm model, on the same cache: mlx-lm's prefill speed and
    rounding by construction (on the CPU the fused general path was slower
    than mlx-lm's at prompt length: slicing the fused outputs copies at L > 1);
    "fused" runs them through the fused weights with mlx-lm's math.
    """

    fuse_qkv: bool = True
    fuse_gate_up: bool = True
    fuse_gdn_proj: bool = True
    fuse_router: bool = True
    fuse_experts: bool = True
    shared_in_switch: bool = False
    merge_qk_norm: bool = True
    decode_path: bool = True
    compile: bool = True
    kv_in_compile: bool = True
    gated_delta: str = "auto"
    router: str = "auto"
    combine: str = "auto"
    add_norm: str = "auto"
    qk_norm_rope: str = "auto"
    qmv: str = "auto"
    experts: str = "auto"
    attention: str = "auto"
    prefill: str = "mlx_lm"


def _check(o: Options) -> None:
    choices = {"gated_delta": ("auto", "mlx_lm", "ops", "algebraic", "fast", "cuda",
                               "fused"),
               "router": ("auto", "exact", "topk_softmax", "cuda"),
               "combine": ("auto", "exact", "matmul", "cuda"),
               "add_norm": ("auto", "ops", "cuda"),
               "qk_norm_rope": ("auto", "ops", "cuda"),
               "qmv": ("auto", "ops", "cuda", "swiglu"),
               "experts": ("auto", "ops", "cuda", "routed"),
               "attention": ("auto", "ops", "cuda"),
               "prefill": ("mlx_lm", "fused")}
    for name, ok in choices.items():
        if getattr(o, name) not in ok:
            raise ValueError(f"{name} must be one of {ok}, got {getattr(o, name)!r}")


def is_optimized(model) -> bool:
    """True for a model returned by optimize_model()."""
    from .model import OptimizedModel
    return isinstance(model, OptimizedModel)


def unoptimize(model):
    """The original mlx-lm model behind an optimized one (else `model`)."""
    return model.original if is_optimized(model) else model


def architecture(model) -> str:
    """mlx-lm architecture name of `model` (its module name), e.g. 'qwen3'."""
    mod = type(model).__module__
    if mod.startswith("mlx_lm.models."):
        return mod.rsplit(".", 1)[-1]
    return str(getattr(model, "model_type", type(model).__name__))


def is_sharded(model) -> bool:
    """True when part of `model` computes a share and talks to peers (mx.distributed).

    Example:
        >>> import mlx.nn as nn
        >>> is_sharded(nn.Linear(2, 2))
        False
    """
    from mlx.nn.layers import distributed as dist

    kinds = (dist.AllToShardedLinear, dist.ShardedToAllLinear,
             dist.QuantizedAllToShardedLinear, dist.QuantizedShardedToAllLinear)
    return any(isinstance(mod, kinds) or getattr(mod, "sharding_group", None) is not None
               or getattr(mod, "pipeline_size", 1) > 1 for _, mod in model.named_modules())


def _refuse_sharded(model) -> None:
    if is_sharded(model):
        raise UnsupportedModelError(
            "optimize_model: sharded (mx.distributed) models are not supported; "
            "decode them with loop='pipelined' (or 'sync'), or optimize an unsharded model")


def optimize_model(model, options: Options | None = None, *, strict: bool = True,
                   **overrides):
    """An optimized copy of an mlx-lm model (see the module doc).

    `options` / keyword overrides pick levers (Options fields). Raises
    UnsupportedModelError for an unknown architecture (or warns and returns
    `model` unchanged with strict=False). Optimizing an optimized model
    re-optimizes its original.
    """
    opts = replace(options or Options(), **overrides)
    _check(opts)
    model = unoptimize(model)
    _refuse_sharded(model)
    arch = architecture(model)
    if arch not in SUPPORTED:
        msg = (f"optimize_model: unsupported architecture {arch!r} "
               f"({type(model).__module__}.{type(model).__name__}); "
               f"supported: {', '.join(SUPPORTED)}")
        if strict:
            raise UnsupportedModelError(msg)
        warnings.warn(msg + "; returning the model unchanged", stacklevel=2)
        return model
    from .build import build
    return build(model, arch, opts)
