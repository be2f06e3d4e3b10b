"""Walk an mlx-lm model and build its OptimizedModel (see __init__.py).

Example:
    >>> # build(model, "qwen3", Options())  -- use optimize_model() instead
"""
from __future__ import annotations

import mlx.core as mx

from . import UnsupportedModelError
from .attention import Attention
from mlxprof.decode.kernels.cuda_common import on_cuda
from .ffn import MLP, MoE
from .fuse import Proj, fuse_linears
from .gdn import GatedDeltaNet
from .layers import AttentionLayer, GDNLayer
from .model import Embedding, OptimizedModel
from .probe import fast_gated_delta_is_fused


def _parts(model, arch):
    """(inner model with embed_tokens/layers/norm, lm_head or None, args)."""
    if arch in ("qwen3_5", "qwen3_5_moe"):
        lm = getattr(model, "language_model", model)   # Model or TextModel
        inner, args = lm.model, lm.args
        if getattr(inner, "pipeline_size", 1) != 1:
            raise UnsupportedModelError("pipelined (distributed) models are not supported")
    else:
        lm, inner, args = model, model.model, model.args
    head = None if args.tie_word_embeddings else lm.lm_head
    return inner, head, args


def _check_local(*mods):
    for m in mods:
        if getattr(m, "sharding_group", None) is not None:
            raise UnsupportedModelError("sharded (distributed) models are not supported")


def _moe_kernels(blk, o) -> tuple[str, str]:
    """Options.router / combine with "auto" resolved for this MoE block."""
    auto = [name for name in ("router", "combine") if getattr(o, name) == "auto"]
    use = False
    if auto:
        from mlxprof.decode.kernels import cuda_moe
        dim = blk.switch_mlp.down_proj.weight.shape[1]
        use = on_cuda() and cuda_moe.self_check(blk.num_experts, blk.top_k, dim) < 1e-2
    pick = lambda name: ("cuda" if use else "exact") if name in auto \
        else getattr(o, name)
    return pick("router"), pick("combine")


def _experts_kernel(moe, blk, o) -> None:
    """Options.experts resolved for this MoE block (cuda_experts.py)."""
    if o.experts == "ops":
        return
    if not moe.experts_kernel_fits():
        if o.experts in ("cuda", "routed"):
            raise ValueError(f"optimize_model: experts={o.experts!r} needs 4-bit affine experts, "
                             "fused gate/up and the routing and combine kernels "
                             "(router/combine 'auto' or 'cuda'); use 'auto'")
        return
    if o.experts == "routed" and not moe.routed_fits():
        raise ValueError("optimize_model: experts='routed' needs the router fused with "
                         "the shared expert's gate (fuse_router=True); use 'auto'")
    from mlxprof.decode.kernels import cuda_experts
    key = (blk.num_experts, blk.top_k, moe.down.weight.shape[1], moe.hidden,
           moe.gate_up.qspec[0], moe.shared is not None)
    if o.experts == "auto" and cuda_experts.self_check(*key) >= 1e-2:
        return
    moe.experts_kernel = True
    moe.experts_routed = o.experts == "routed" or (
        o.experts == "auto" and moe.routed_fits()
        and cuda_experts.self_check_routed(*key, moe.norm_topk_prob) < 1e-2)


def _ffn(mlp, o):
    _check_local(mlp)
    if hasattr(mlp, "switch_mlp"):
        router, combine = _moe_kernels(mlp, o)
        moe = MoE(mlp, fuse_router=o.fuse_router, fuse_experts=o.fuse_experts,
                  shared_in_switch=o.shared_in_switch, router=router,
                  combine=combine, fuse_gate_up=o.fuse_gate_up)
        _experts_kernel(moe, mlp, o)
        return moe
    if hasattr(mlp, "gate_proj"):
        return MLP.from_mlx_lm(mlp, fuse=o.fuse_gate_up)
    raise UnsupportedModelError(f"unsupported feed-forward block {type(mlp).__name__}")


def _recurrence(la, o) -> str:
    """The GDN decode recurrence to use (Options.gated_delta, "auto" resolved)."""
    if o.gated_delta != "auto":
        return o.gated_delta
    heads = (la.num_k_heads, la.num_v_heads, la.head_k_dim, la.head_v_dim)
    if fast_gated_delta_is_fused(*heads):
        return "fast"
    if on_cuda() and la.head_k_dim % 32 == 0:
        from mlxprof.decode.kernels.cuda_gdn import self_check
        if self_check(*heads) < 1e-3:
            return "cuda"
    return "ops"


def _gdn_kernel(mixer, o) -> None:
    """The one-kernel GDN step (cuda_gdn_layer.py): asked for, or
    gated_delta="auto" on a CUDA GPU when its self-check passes."""
    from mlxprof.decode.kernels import cuda_gdn_layer as cg
    if o.gated_delta == "auto" and on_cuda() and cg.supported(mixer) \
            and cg.self_check(mixer) < 2e-2:
        mixer.recurrence = "fused"
    if mixer.recurrence == "fused":
        cg.prepare(mixer)


def _rope_kernel(attn, o) -> None:
    """Options.qk_norm_rope resolved for this attention mixer (cuda_rope.py)."""
    if o.qk_norm_rope == "ops":
        return
    from mlxprof.decode.kernels import cuda_rope
    if not cuda_rope.supported(attn):
        if o.qk_norm_rope == "cuda":
            raise ValueError("optimize_model: qk_norm_rope='cuda' needs fused q/k/v "
                             "and nn.RoPE; use 'auto'")
        return
    if o.qk_norm_rope == "auto" and not (on_cuda() and cuda_rope.self_check(attn) < 1e-2):
        return
    cuda_rope.prepare(attn)
    attn.cuda_rope = True


def _attention_kernel(attn, o, dtype, kind: str) -> None:
    """Options.attention resolved for this attention mixer (cuda_attention.py);
    sliding-window layers keep the ops (their cache is not a plain KVCache)."""
    if o.attention == "ops" or kind != "fa":
        return
    from mlxprof.decode.kernels import cuda_attention as ca
    heads = (attn.n_heads, attn.n_kv, attn.head_dim)
    if not ca.supported(attn.head_dim, attn.n_heads, attn.n_kv, dtype):
        if o.attention == "cuda":
            raise ValueError(f"optimize_model: attention='cuda' does not support "
                             f"(heads, kv heads, head dim) {heads} in {dtype}; use 'auto'")
        return
    if o.attention == "auto" and not (
            on_cuda() and ca.self_check(1, *heads, dtype=dtype) < 1e-2):
        return
    attn.cuda_attention = True


def _cuda_norm(layer, o) -> bool:
    """Options.add_norm resolved: the add + RMSNorm kernel for this layer?"""
    if o.add_norm != "auto":
        return o.add_norm == "cuda"
    if not on_cuda():
        return False
    from mlxprof.decode.kernels.cuda_norm import self_check
    norm = layer.post_attention_layernorm
    return self_check(norm.weight.shape[0], float(norm.eps)) < 1e-2


def _layer(layer, o):
    ffn = _ffn(layer.mlp, o)
    cuda_norm = _cuda_norm(layer, o)
    if getattr(layer, "is_linear", False):
        la = layer.linear_attn
        _check_local(la)
        mixer = GatedDeltaNet(la, fuse=o.fuse_gdn_proj, recurrence=_recurrence(la, o))
        _gdn_kernel(mixer, o)
        return GDNLayer(layer, mixer, ffn, "ssm", o.compile, cuda_norm)
    mixer = Attention(layer.self_attn, fuse=o.fuse_qkv, merge_qk_norm=o.merge_qk_norm)
    mixer.in_dim = layer.input_layernorm.weight.shape[0]
    _rope_kernel(mixer, o)
    kind = "swa" if getattr(layer, "use_sliding", False) else "fa"
    _attention_kernel(mixer, o, layer.input_layernorm.weight.dtype, kind)
    return AttentionLayer(layer, mixer, ffn, kind, o.compile, o.kv_in_compile, cuda_norm)


def _qmv_kernel(layers, lm_head, o) -> None:
    """Options.qmv resolved: mark the Projs whose one-row products run by
    cuda_qmv ("auto": on a CUDA GPU, shapes whose self-check passes, dense
    models only; "swiglu": only the dense MLPs' gate_up, with their SwiGLU)."""
    mods = [m for l in layers for _, m in l.named_modules()]
    if o.qmv == "ops" or (o.qmv == "auto" and any(isinstance(m, MoE) for m in mods)):
        return      # "auto" on MoE models: see Options
    from mlxprof.decode.kernels import cuda_qmv
    mlps = [m for m in mods if isinstance(m, MLP) and isinstance(m.gate_up, Proj)]
    projs = [m.gate_up for m in mlps] if o.qmv == "swiglu" else \
        [m for m in mods if isinstance(m, Proj)] + ([lm_head] if lm_head else [])
    check = o.qmv != "cuda"
    for p in projs:
        k = p.scales.shape[-1] * p.qspec[0] if p.qspec else 0
        if not (p.qspec and "biases" in p and cuda_qmv.supported(p.qspec, k)):
            continue
        n, dt = p.weight.shape[0], p.scales.dtype
        p.cuda_qmv = not check or (on_cuda() and cuda_qmv.self_check(n, k, p.qspec[0], dt) < 1e-2)
    for m in mlps:      # the fused gate_up + SwiGLU path (MLP.__call__) has its own check
        p = m.gate_up
        if check and p.cuda_qmv:
            k = p.scales.shape[-1] * p.qspec[0]
            p.cuda_qmv = cuda_qmv.self_check_swiglu(m.hidden, k, p.qspec[0], p.scales.dtype) < 1e-2


def _check_backend(o) -> None:
    asked = [f"{n}={getattr(o, n)!r}" for n, v in
             (("gated_delta", ("cuda", "fused")), ("router", ("cuda",)),
              ("experts", ("cuda", "routed")),
              ("combine", ("cuda",)), ("add_norm", ("cuda",)),
              ("qk_norm_rope", ("cuda",)), ("qmv", ("cuda", "swiglu")),
              ("attention", ("cuda",))) if getattr(o, n) in v]
    if asked and not on_cuda():
        raise ValueError(f"optimize_model: {', '.join(asked)} needs MLX's CUDA backend "
                         f"(default device: {mx.default_device()}); leave it 'auto'")
    if o.gated_delta == "fused" and not o.fuse_gdn_proj:
        raise ValueError("optimize_model: gated_delta='fused' needs fuse_gdn_proj=True")


def build(model, arch: str, o) -> OptimizedModel:
    _check_backend(o)
    inner, head, args = _parts(model, arch)
    layers = [_layer(l, o) for l in inner.layers]
    mx.eval([l.parameters() for l in layers])
    if any(l.cuda_norm for l in layers):      # kernel constants, before any tracing
        from mlxprof.decode.kernels.cuda_norm import eps_array
        for eps in {float(e) for l in layers for e in (l.in_eps, l.post_eps)} | {
                float(inner.norm.eps)}:
            eps_array(eps)
    lm_head = fuse_linears([head]) if head is not None else None
    _qmv_kernel(layers, lm_head, o)
    return OptimizedModel(model, Embedding(inner.embed_tokens), layers,
                          inner.norm, lm_head, args, arch, o)
