"""q/k RMSNorm + RoPE at one token as one custom CUDA kernel.

Qwen3-style attention normalizes every q and k head (RMSNorm with a
per-dimension weight) and then rotates it (RoPE): three kernels at decode
(RMSNorm, the weight multiply of the merged q/k norm, RoPE). `qk_norm_rope`
does them in one: one thread block per head, one thread per dimension. It
reads the fused q/k/v projection's output directly ([q heads | k heads |
v heads | ...]) and writes the rotated q and k heads and a copy of the v
heads in the layout sdpa and the KV cache take (B, heads, 1, D): no split
or reshape ops around it. Attention without q/k norms (llama's) gets the
same kernel without the norm (template NORM false): RoPE and the layout
in one kernel, where the op path takes two splits, two reshapes and RoPE.

Rounding follows MLX's ops: RMSNorm `w * T(x * rsqrt(mean(x^2) + eps))`,
RoPE in float32 rounded once; the angle is computed as MLX's kernel does
(`offset * scale * 2^(-i / (dims/2) * log2(base))`), so only float32 sums
and sin/cos last bits can differ. Supports `nn.RoPE` (traditional or not,
partial rotary dims); `supported(attn)` says when. `self_check(attn)`
compares with the op path on random inputs.

Example:
    >>> # qk = qk_norm_rope(attn, p, offset)     # CUDA only
"""
from __future__ import annotations

import math
from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn

from .cuda_common import HEADER, rel_diff, self_checked

__all__ = ["qk_norm_rope", "qk_norm_rope_reference", "supported", "prepare", "self_check"]

_SOURCE = """
    constexpr int NH = HQ + HK;
    constexpr int NW = (D + 31) / 32;
    __shared__ float s_x[D];
    __shared__ float s_red[NW];
    const int head = blockIdx.x % NH;
    const int b = blockIdx.x / NH;
    const int t = threadIdx.x;
    const float xv = static_cast<float>(p[(size_t)b * P + head * D + t]);
    float y = xv;
    if (NORM) {
        float ss = mlxprof_warp_sum(__fmul_rn(xv, xv));
        if ((t & 31) == 0) s_red[t >> 5] = ss;
        __syncthreads();
        float tot = 0.0f;
        for (int j = 0; j < NW; ++j) tot = __fadd_rn(tot, s_red[j]);
        const float nrm = rsqrtf(__fadd_rn(tot / D, consts[0]));
        const float w = static_cast<float>(head < HQ ? q_w[t] : k_w[t]);
        y = mlxprof_rnd<OutT>(__fmul_rn(w, mlxprof_rnd<OutT>(__fmul_rn(xv, nrm))));
    }
    s_x[t] = y;
    __syncthreads();
    float o = y;
    constexpr int HALF = DIMS / 2;
    if (t < DIMS) {
        const int i = TRAD ? t / 2 : t % HALF;
        const float theta = consts[2] * static_cast<float>(offset[0])
            * exp2f(-(static_cast<float>(i) / HALF) * consts[1]);
        const float c = cosf(theta);
        const float s = sinf(theta);
        const bool first = TRAD ? (t % 2 == 0) : (t < HALF);
        const float other = s_x[TRAD ? (first ? t + 1 : t - 1) : (first ? t + HALF : t - HALF)];
        o = first ? __fsub_rn(__fmul_rn(y, c), __fmul_rn(other, s))
                  : __fadd_rn(__fmul_rn(other, s), __fmul_rn(y, c));
    }
    if (head < HQ) {
        q[((size_t)b * HQ + head) * D + t] = static_cast<OutT>(o);
    } else {
        const size_t kv = ((size_t)b * HK + head - HQ) * D + t;
        k[kv] = static_cast<OutT>(o);
        v[kv] = p[(size_t)b * P + (head + HK) * D + t];    // v head (head - HQ)
    }
"""

@lru_cache(maxsize=1)
def _kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_qk_norm_rope",
        input_names=["p", "q_w", "k_w", "offset", "consts"],
        output_names=["q", "k", "v"], source=_SOURCE, header=HEADER)


def supported(attn) -> bool:
    """An Attention (attention.py) this kernel covers: nn.RoPE, fused
    q/k/v, head dim <= 1024 (with or without q/k norms)."""
    r = attn.rope
    return (attn.fused and type(r) is nn.RoPE
            and attn.head_dim <= 1024 and attn.head_dim % 32 == 0
            and r.dims % 2 == 0 and r.dims <= attn.head_dim)


def prepare(attn) -> None:
    """Build and evaluate the kernel's constants (before mx.compile traces)."""
    r = attn.rope
    eps = attn.norm_eps if attn.qk_norm else 0.0
    c = mx.array([eps, math.log2(r.base), r.scale], mx.float32)
    mx.eval(c)
    object.__setattr__(attn, "_rope_consts", c)


def qk_norm_rope(attn, p, offset):
    """(q, k, v): normalized, rotated q (B, Hq, 1, D) and k (B, Hk, 1, D)
    heads and the v heads (B, Hk, 1, D), from the fused projection output
    p (B, 1, P) of `attn` at position `offset` (an int32 array). Call
    prepare(attn) first. Without q/k norms only RoPE is applied."""
    B = p.shape[0]
    h, hk, d = attn.n_heads, attn.n_kv, attn.head_dim
    r = attn.rope
    c = attn._rope_consts           # also stands in for the norm weights when there are none
    qw, kw = (attn.q_norm_w, attn.k_norm_w) if attn.qk_norm else (c, c)
    return _kernel()(
        inputs=[p, qw, kw, offset, c],
        template=[("OutT", p.dtype), ("HQ", h), ("HK", hk), ("D", d),
                  ("P", p.shape[-1]), ("DIMS", r.dims), ("TRAD", bool(r.traditional)),
                  ("NORM", bool(attn.qk_norm))],
        grid=(d * B * (h + hk), 1, 1), threadgroup=(d, 1, 1),
        output_shapes=[(B, h, 1, d), (B, hk, 1, d), (B, hk, 1, d)],
        output_dtypes=[p.dtype] * 3)


def qk_norm_rope_reference(attn, p, offset):
    """qk_norm_rope() in MLX ops: (q, k, v) heads (B, heads, 1, D) cut from
    p (B, 1, P), q and k normalized (where `attn` has q/k norms) and rotated."""
    B = p.shape[0]
    h, hk, d = attn.n_heads, attn.n_kv, attn.head_dim
    q = p[..., :h * d].reshape(B, h, 1, d)
    k = p[..., h * d:(h + hk) * d].reshape(B, hk, 1, d)
    v = p[..., (h + hk) * d:(h + 2 * hk) * d].reshape(B, hk, 1, d)
    if attn.qk_norm:
        q = mx.fast.rms_norm(q, attn.q_norm_w, attn.norm_eps)
        k = mx.fast.rms_norm(k, attn.k_norm_w, attn.norm_eps)
    return attn.rope(q, offset=offset), attn.rope(k, offset=offset), v


def self_check(attn) -> float:
    """Max relative difference of the kernel vs the op path on random input."""
    key = (attn.n_heads, attn.n_kv, attn.head_dim, attn.rope.dims, attn.qk_norm)
    return self_checked("qk_norm_rope", key, lambda: _check(attn))


def _check(attn) -> float:
    prepare(attn)
    qkv = attn.qkv
    dt = (attn.q_norm_w if attn.qk_norm else qkv["scales"] if "scales" in qkv
          else qkv["weight"]).dtype
    x = mx.random.normal((1, 1, attn.in_dim), key=mx.random.key(4)).astype(dt)
    off = mx.array(300, mx.int32)
    saved = attn.cuda_rope
    try:
        attn.cuda_rope = False
        ref = attn.decode_qkv(x, off)
        attn.cuda_rope = True
        got = attn.decode_qkv(x, off)
    finally:
        attn.cuda_rope = saved
    return max(rel_diff(g, f) for g, f in zip(got[:3], ref[:3]))
