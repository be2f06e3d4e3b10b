"""The GDN recurrence as one custom CUDA kernel (mx.fast.cuda_kernel).

MLX 0.32.4 has no CUDA kernel for `mx.fast.gated_delta_update` (its CUDA
backend always takes the composed fallback), so at decode the recurrence
costs several kernels per layer. This is a port of mlx-lm's Metal kernel
(`models/gated_delta.py`): one warp per (batch, value head, value row), the
key dimension spread over the 32 lanes, warp-shuffle sums. All inputs and
outputs float32 (casts fuse into the compiled layer step around it).

It was written without a CUDA device at hand: `self_check()` compares it
with the op path on random data and optimize_model() uses it only when that
passes (gated_delta="auto" on a CUDA GPU) or when asked (gated_delta="cuda").

Example:
    >>> # y, state = gated_delta_cuda(q, k, v, g, beta, state)   # CUDA only
"""
from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

from .cuda_common import self_checked

__all__ = ["gated_delta_cuda", "self_check"]

_SOURCE = """
    const int n = blockIdx.z;
    const int b_idx = n / Hv;
    const int hv_idx = n % Hv;
    const int hk_idx = hv_idx / (Hv / Hk);
    constexpr int n_per_t = Dk / 32;
    const int dk_idx = threadIdx.x;
    const int dv_idx = blockIdx.y * blockDim.y + threadIdx.y;
    if (dv_idx >= Dv) {
        return;
    }
    const float* q_ = q + (size_t)b_idx * T * Hk * Dk + hk_idx * Dk;
    const float* k_ = k + (size_t)b_idx * T * Hk * Dk + hk_idx * Dk;
    const auto* v_ = v + (size_t)b_idx * T * Hv * Dv + hv_idx * Dv;
    auto* y_ = y + (size_t)b_idx * T * Hv * Dv + hv_idx * Dv;
    const float* g_ = g + (size_t)b_idx * T * Hv;
    const float* beta_ = beta + (size_t)b_idx * T * Hv;
    const float* i_state = state_in + ((size_t)n * Dv + dv_idx) * Dk;
    float* o_state = state_out + ((size_t)n * Dv + dv_idx) * Dk;

    float st[n_per_t];
    for (int i = 0; i < n_per_t; ++i) {
        st[i] = i_state[n_per_t * dk_idx + i];
    }
    for (int t = 0; t < T; ++t) {
        const float gt = g_[hv_idx];
        float kv_mem = 0.0f;
        for (int i = 0; i < n_per_t; ++i) {
            const int s_idx = n_per_t * dk_idx + i;
            st[i] = st[i] * gt;
            kv_mem += st[i] * k_[s_idx];
        }
        for (int off = 16; off > 0; off >>= 1) {
            kv_mem += __shfl_xor_sync(0xffffffff, kv_mem, off);
        }
        const float delta = (static_cast<float>(v_[dv_idx]) - kv_mem) * beta_[hv_idx];
        float out = 0.0f;
        for (int i = 0; i < n_per_t; ++i) {
            const int s_idx = n_per_t * dk_idx + i;
            st[i] = st[i] + k_[s_idx] * delta;
            out += st[i] * q_[s_idx];
        }
        for (int off = 16; off > 0; off >>= 1) {
            out += __shfl_xor_sync(0xffffffff, out, off);
        }
        if (dk_idx == 0) {
            y_[dv_idx] = static_cast<OutT>(out);
        }
        q_ += Hk * Dk;
        k_ += Hk * Dk;
        v_ += Hv * Dv;
        y_ += Hv * Dv;
        g_ += Hv;
        beta_ += Hv;
    }
    for (int i = 0; i < n_per_t; ++i) {
        o_state[n_per_t * dk_idx + i] = st[i];
    }
"""


@lru_cache(maxsize=1)
def _kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_gated_delta_step",
        input_names=["q", "k", "v", "g", "beta", "state_in"],
        output_names=["y", "state_out"],
        source=_SOURCE)


def gated_delta_cuda(q, k, v, g, beta, state, out_dtype=mx.float32):
    """Same contract as mlx-lm's gated_delta_ops (scalar gating, no mask).

    q, k (B, T, Hk, Dk), v (B, T, Hv, Dv), g, beta (B, T, Hv), state
    (B, Hv, Dv, Dk). Dk must be a multiple of 32. v may be bf16/f16/f32
    (read as float); everything else is cast to float32 (free when already
    float32). Returns y (B, T, Hv, Dv) in `out_dtype` (rounded once from the
    float32 sum, as mlx-lm's astype does) and the new float32 state.
    """
    B, T, hk, dk = k.shape
    hv, dv = v.shape[-2:]
    if dk % 32:
        raise ValueError("gated_delta_cuda needs Dk % 32 == 0")
    f32 = mx.float32
    y, st = _kernel()(
        inputs=[q.astype(f32), k.astype(f32), v, g.astype(f32),
                beta.astype(f32), state.astype(f32)],
        template=[("OutT", out_dtype), ("T", T), ("Dk", dk), ("Dv", dv),
                  ("Hk", hk), ("Hv", hv)],
        grid=(32, dv, B * hv), threadgroup=(32, 4, 1),
        output_shapes=[(B, T, hv, dv), state.shape],
        output_dtypes=[out_dtype, f32])
    return y, st


def self_check(hk: int, hv: int, dk: int, dv: int, T: int = 1) -> float:
    """Max |diff| of the kernel vs mlx-lm's op path on random data (inf on error)."""
    return self_checked("gated_delta", (hk, hv, dk, dv, T),
                        lambda: _check(hk, hv, dk, dv, T))


def _check(hk: int, hv: int, dk: int, dv: int, T: int) -> float:
    from mlx_lm.models.gated_delta import gated_delta_ops
    ks = mx.random.split(mx.random.key(0), 6)
    q = mx.random.normal((1, T, hk, dk), key=ks[0]) * dk ** -0.5
    k = mx.random.normal((1, T, hk, dk), key=ks[1]) * dk ** -0.5
    v = mx.random.normal((1, T, hv, dv), key=ks[2])
    g = mx.random.uniform(0.5, 1.0, (1, T, hv), key=ks[3])
    beta = mx.random.uniform(0.0, 1.0, (1, T, hv), key=ks[4])
    s = mx.random.normal((1, hv, dv, dk), key=ks[5])
    y0, s0 = gated_delta_ops(q, k, v, g, beta, s)
    y1, s1 = gated_delta_cuda(q, k, v, g, beta, s)
    return mx.maximum(mx.abs(y1 - y0).max(), mx.abs(s1 - s0).max()).item()
