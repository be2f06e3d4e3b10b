"""One-token decode attention over the KV cache buffers as one CUDA kernel.

At one decoded token, an attention layer slices the valid positions out of
its KV cache buffers (two Slice ops) and runs sdpa on them; for a head dim
MLX's fused sdpa does not cover (256: Qwen3.5's) the fallback is a dozen
ops (two matmuls, softmax, the GQA reshapes and broadcasts), each a few
microseconds of host time, and decode is host-bound. `decode_attention(q,
keys, values, n, scale)` does it in one kernel that reads the full buffers
and attends over their first n positions; n is an int32 array (it changes
every token: a template constant would recompile the kernel each token), and
the buffers' length is read from `keys_shape` at run time (it grows by 256
positions as the cache grows: one compiled kernel serves all lengths).

One block per (batch, q head); q head h reads kv head h // (H / Hkv). The
block's warps take the positions in turn (U at a time, all their loads
issued first); in a warp each lane holds D / 32 consecutive numbers of q, of
a key row and of the output (16-byte loads when aligned), the dot product
is a warp-shuffle sum, and the softmax is online (running max and sum, in
float32); the warps' partial results are combined in shared memory. Scores
(q . k * scale), softmax and the weighted sum of V are float32, rounded once
to the output dtype: closer to float32 than MLX's own path, which rounds q *
scale, the scores and the probabilities to the activations' dtype.
`decode_attention_reference` is the same contract in MLX ops (slices + mlx's
sdpa, mlx-lm's path); `self_check()` compares kernel and reference with a
float32 run on the GPU.

Example:
    >>> supported(256, 16, 2, mx.bfloat16), supported(80, 32, 8, mx.bfloat16)
    (True, False)
"""
from __future__ import annotations

import struct
from functools import lru_cache

import mlx.core as mx

from .cuda_common import HEADER, rel_diff, self_checked

__all__ = ["decode_attention", "decode_attention_reference", "supported", "self_check"]

WARPS = 8           # warps per block: each takes every WARPS-th group of positions
UNROLL = 4          # positions a warp loads before it reduces them

_ATTN_HEADER = """
__device__ inline float mlxprof_neg_inf() { return __uint_as_float(0xff800000u); }

// E consecutive T at p as floats, read as vectors V (p aligned to them)
template <typename V, typename T, int E>
__device__ inline void mlxprof_load_vecs(const T* p, float* out) {
    constexpr int PER = sizeof(V) / sizeof(T);
    #pragma unroll
    for (int c = 0; c < E / PER; ++c) {
        const V raw = reinterpret_cast<const V*>(p)[c];
        const T* t = reinterpret_cast<const T*>(&raw);
        #pragma unroll
        for (int j = 0; j < PER; ++j) out[c * PER + j] = static_cast<float>(t[j]);
    }
}

// E consecutive T at p as floats: 16- (or 8-) byte loads when `vec` (p
// aligned to them), else one by one
template <typename T, int E>
__device__ inline void mlxprof_load_row(const T* p, float* out, bool vec) {
    constexpr int BYTES = E * sizeof(T);
    if (vec && BYTES % 16 == 0) {
        mlxprof_load_vecs<uint4, T, E>(p, out);
    } else if (vec && BYTES % 8 == 0) {
        mlxprof_load_vecs<uint2, T, E>(p, out);
    } else {
        #pragma unroll
        for (int e = 0; e < E; ++e) out[e] = static_cast<float>(p[e]);
    }
}
"""

_SOURCE = """
    constexpr int E = D / 32;
    __shared__ float s_m[WARPS];
    __shared__ float s_l[WARPS];
    __shared__ float s_acc[WARPS][D];
    const float scale = __int_as_float(SCALE_BITS);
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int bh = blockIdx.x;                      // b * H + h
    const int b = bh / H;
    const int kvh = (bh % H) / (H / HKV);
    const int len = n[0];
    const int S = keys_shape[2];                    // the buffers' length: grows every 256 tokens
    const size_t kv0 = ((size_t)b * HKV + kvh) * S * D + lane * E;
    const bool vec = ((reinterpret_cast<size_t>(q) | reinterpret_cast<size_t>(keys)
                       | reinterpret_cast<size_t>(values)) & 15) == 0;
    float qv[E], acc[E];
    mlxprof_load_row<T, E>(q + (size_t)bh * D + lane * E, qv, vec);
    #pragma unroll
    for (int e = 0; e < E; ++e) acc[e] = 0.f;
    float m = mlxprof_neg_inf(), l = 0.f;
    for (int p0 = warp * U; p0 < len; p0 += WARPS * U) {
        // rows past len load row len - 1 (no branch: all loads in flight) and weigh 0
        float kr[U][E], s[U];
        #pragma unroll
        for (int u = 0; u < U; ++u)
            mlxprof_load_row<T, E>(keys + kv0 + (size_t)min(p0 + u, len - 1) * D, kr[u], vec);
        float mc = m;
        #pragma unroll
        for (int u = 0; u < U; ++u) {
            float d = 0.f;
            #pragma unroll
            for (int e = 0; e < E; ++e) d = fmaf(qv[e], kr[u][e], d);
            s[u] = p0 + u < len ? mlxprof_warp_sum(d) * scale : mlxprof_neg_inf();
            mc = fmaxf(mc, s[u]);
        }
        const float corr = expf(m - mc);
        l *= corr;
        #pragma unroll
        for (int e = 0; e < E; ++e) acc[e] *= corr;
        #pragma unroll
        for (int u = 0; u < U; ++u) {
            float vr[E];
            mlxprof_load_row<T, E>(values + kv0 + (size_t)min(p0 + u, len - 1) * D, vr, vec);
            const float w = expf(s[u] - mc);
            l += w;
            #pragma unroll
            for (int e = 0; e < E; ++e) acc[e] = fmaf(w, vr[e], acc[e]);
        }
        m = mc;
    }
    if (lane == 0) {
        s_m[warp] = m;
        s_l[warp] = l;
    }
    #pragma unroll
    for (int e = 0; e < E; ++e) s_acc[warp][lane * E + e] = acc[e];
    __syncthreads();
    float mx_all = mlxprof_neg_inf();
    #pragma unroll
    for (int w = 0; w < WARPS; ++w) mx_all = fmaxf(mx_all, s_m[w]);
    float f[WARPS], tot = 0.f;
    #pragma unroll
    for (int w = 0; w < WARPS; ++w) {       // a warp with no position: m = -inf, weight 0
        f[w] = expf(s_m[w] - mx_all);
        tot = fmaf(f[w], s_l[w], tot);
    }
    for (int d = threadIdx.x; d < D; d += WARPS * 32) {
        float a = 0.f;
        #pragma unroll
        for (int w = 0; w < WARPS; ++w) a = fmaf(f[w], s_acc[w][d], a);
        o[(size_t)bh * D + d] = static_cast<T>(a / tot);
    }
"""


@lru_cache(maxsize=1)
def _kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_decode_attention", input_names=["q", "keys", "values", "n"],
        output_names=["o"], source=_SOURCE, header=HEADER + _ATTN_HEADER)


def supported(head_dim: int, n_heads: int, n_kv_heads: int, dtype) -> bool:
    """True when the kernel handles these heads: head_dim a multiple of 32
    (each lane a slice of a row) up to 512, H a multiple of Hkv, a float dtype.

    Example:
        >>> supported(128, 32, 8, mx.float16), supported(128, 6, 4, mx.float16)
        (True, False)
    """
    return (head_dim % 32 == 0 and 32 <= head_dim <= 512 and n_heads % n_kv_heads == 0
            and dtype in (mx.bfloat16, mx.float16, mx.float32))


def _scale_bits(scale: float) -> int:
    """scale's float32 bits as a signed int: MLX's kernel templates take no floats."""
    return struct.unpack("<i", struct.pack("<f", scale))[0]


def decode_attention(q, keys, values, n, scale: float):
    """softmax(q . k * scale) . v over the first n positions; CUDA only.

    q (B, H, 1, D); keys, values (B, Hkv, S, D), the KV cache buffers (S
    at least the valid length), all of one dtype; n an int32 array of shape () or (1,), the
    valid length (at least 1). Returns (B, 1, H * D) in q's dtype: the heads
    side by side, as o_proj takes them (no reshape op after it).
    """
    if not q.dtype == keys.dtype == values.dtype:
        raise ValueError(f"decode_attention: q, keys, values of one dtype, got "
                         f"{q.dtype}, {keys.dtype}, {values.dtype}")
    B, H, _, D = q.shape
    hkv = keys.shape[1]
    (o,) = _kernel()(
        inputs=[q, keys, values, n],
        template=[("T", q.dtype), ("H", H), ("HKV", hkv), ("D", D),
                  ("WARPS", WARPS), ("U", UNROLL), ("SCALE_BITS", _scale_bits(scale))],
        grid=(32 * WARPS * B * H, 1, 1), threadgroup=(32 * WARPS, 1, 1),
        output_shapes=[(B, 1, H * D)], output_dtypes=[q.dtype])
    return o


def decode_attention_reference(q, keys, values, n, scale: float):
    """decode_attention() in MLX ops: the buffers sliced to n (a Python int
    or an int array), then mx.fast.scaled_dot_product_attention, its heads
    side by side (B, 1, H * D)."""
    n = int(n.item()) if isinstance(n, mx.array) else int(n)
    o = mx.fast.scaled_dot_product_attention(
        q, keys[..., :n, :], values[..., :n, :], scale=scale)
    return o.reshape(q.shape[0], 1, -1)


def self_check(B: int, H: int, Hkv: int, D: int, S: int = 300, n: int = 257,
               dtype=mx.bfloat16) -> float:
    """How much farther from float32 the kernel is than MLX's sdpa, on random
    data: max(0, rel_diff(kernel, f32) - 1.1 * rel_diff(reference, f32)),
    f32 the reference on float32 copies; inf on any error (cuda_common.ERRORS)."""
    key = (B, H, Hkv, D, S, n, str(dtype))
    return self_checked("decode_attention", key,
                        lambda: _check(B, H, Hkv, D, S, n, dtype))


def _check(B, H, Hkv, D, S, n, dtype) -> float:
    ks = mx.random.split(mx.random.key(6), 3)
    q = mx.random.normal((B, H, 1, D), key=ks[0]).astype(dtype)
    keys = mx.random.normal((B, Hkv, S, D), key=ks[1]).astype(dtype)
    values = mx.random.normal((B, Hkv, S, D), key=ks[2]).astype(dtype)
    scale = D ** -0.5
    valid = mx.array(n, mx.int32)
    f32 = decode_attention_reference(*(a.astype(mx.float32) for a in (q, keys, values)),
                                     n, scale)
    ref = decode_attention_reference(q, keys, values, n, scale)
    got = decode_attention(q, keys, values, valid, scale)
    return max(0.0, rel_diff(got, f32) - 1.1 * rel_diff(ref, f32))
