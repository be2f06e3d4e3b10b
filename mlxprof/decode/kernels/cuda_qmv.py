"""One-row 4-bit quantized matmul (y = x @ dequant(W).T) as a CUDA kernel.

At one decoded token every projection is a matrix-vector product that reads
the whole weight once: its speed is memory bandwidth. The kernel keeps many
16-byte weight loads in flight (each block: ROWS rows; each lane: one
16-byte vector of 32 weights per row per pass, all rows' loads issued before
any math) and dequantizes with few instructions: a nibble at bits 4e..4e+3
OR'd into the float 2^23 and minus 2^23 is nib * 2^4e exactly, so the x it
multiplies is pre-scaled by 2^-4e once per pass (exact: powers of two).
Sums are float32: `s * sum(x * q) + b * sum(x)` per group, as MLX's Metal
qmv does; MLX's CUDA qmv accumulates in the activations' dtype, so results
differ from `mx.quantized_matmul` by rounding only (`self_check`).

Affine 4-bit weights (MLX's layout: uint32 words of 8 nibbles, low first),
group size 32/64/128, bf16/fp16/fp32 activations, any number of rows N and
K a multiple of 32. `qmv(x, w, scales, biases, group_size)` needs x of one
row (x.size == K), activations and scales of one float dtype.

`qmv_swiglu` (template SWIGLU) is the dense MLP's gate_up with its SwiGLU
epilogue: w holds gate rows then up rows; each block loads ROWS_SWIGLU gate
rows j and their up rows hidden + j and writes silu(g_j) * u_j, rounded as
mx.quantized_matmul + mlx-lm's `nn.silu(g) * u` round (`self_check_swiglu`).

Example:
    >>> supported((64, 4, "affine"), 4096), supported((64, 8, "affine"), 4096)
    (True, False)
"""
from __future__ import annotations

from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn

from .cuda_common import HEADER, rel_diff, self_checked

__all__ = ["qmv", "qmv_swiglu", "supported", "self_check", "self_check_swiglu",
           "accuracy", "swiglu_accuracy", "ROWS", "ROWS_SWIGLU"]

ROWS = 8            # output rows per block
ROWS_SWIGLU = 4     # outputs per block of qmv_swiglu (each: a gate and an up row)

# the dequantizing dot product, shared with cuda_experts
QMV_HEADER = """
// x[32 v .. 32 v + 31] as floats, each pre-scaled by 2^-4e for the nibble at
// bits 4e of its word (e >= 5 read after a 12-bit shift); returns their sum
template <typename T>
__device__ inline float mlxprof_x32(const T* x, int v, bool x16, float* xs) {
    const float pos_scale[8] = {1.f, 0.0625f, 0.00390625f, 0.000244140625f,
                                1.52587890625e-05f, 0.00390625f, 0.000244140625f,
                                1.52587890625e-05f};
    if (x16) {
        constexpr int PER = 16 / sizeof(T);
        #pragma unroll
        for (int j = 0; j < 32 / PER; ++j) {
            const uint4 raw = *reinterpret_cast<const uint4*>(x + v * 32 + j * PER);
            const T* e = reinterpret_cast<const T*>(&raw);
            #pragma unroll
            for (int i = 0; i < PER; ++i) xs[j * PER + i] = static_cast<float>(e[i]);
        }
    } else {
        #pragma unroll
        for (int j = 0; j < 32; ++j) xs[j] = static_cast<float>(x[v * 32 + j]);
    }
    float xsum = 0.f;
    #pragma unroll
    for (int j = 0; j < 32; ++j) {
        xsum += xs[j];
        xs[j] *= pos_scale[j & 7];
    }
    return xsum;
}

// sum_j xs[j] * nibble_j of 32 4-bit weights (one 16-byte vector), xs from mlxprof_x32
__device__ inline float mlxprof_dot32(const uint4 q, const float* xs) {
    const unsigned int words[4] = {q.x, q.y, q.z, q.w};
    float dot = 0.f;
    #pragma unroll
    for (int k = 0; k < 4; ++k) {
        const unsigned int lo = words[k];
        const unsigned int hi = lo >> 12;
        #pragma unroll
        for (int e = 0; e < 8; ++e) {
            const unsigned int bits = e < 5 ? (lo & (0xFu << (4 * e)))
                                            : (hi & (0xFu << (4 * (e - 3))));
            const float f = __uint_as_float(0x4B000000u | bits) - 8388608.0f;
            dot = fmaf(xs[k * 8 + e], f, dot);
        }
    }
    return dot;
}

// 16 bytes of packed weights at word offset `word` (4-byte aligned at least)
__device__ inline uint4 mlxprof_load16(const uint32_t* w, size_t word, bool w16) {
    if (w16) return *reinterpret_cast<const uint4*>(w + word);
    return make_uint4(w[word], w[word + 1], w[word + 2], w[word + 3]);
}
"""

_SOURCE = """
    constexpr int VECS = K / 32;               // 16-byte vectors (32 weights) per row
    constexpr int PASSES = (VECS + 31) / 32;   // a warp covers 32 vectors per pass
    constexpr int GPR = K / GS;
    constexpr int LR = SWIGLU ? 2 * ROWS : ROWS;   // weight rows loaded per block
    __shared__ float red[WARPS][LR];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int row0 = blockIdx.x * ROWS;
    const bool w16 = (reinterpret_cast<size_t>(w) & 15) == 0;
    const bool x16 = (reinterpret_cast<size_t>(x) & 15) == 0;
    float acc[LR];
    #pragma unroll
    for (int r = 0; r < LR; ++r) acc[r] = 0.f;

    for (int p = warp; p < PASSES; p += WARPS) {
        const int v = p * 32 + lane;
        if (v < VECS) {
            uint4 q[LR];
            float s[LR], b[LR];
            const int g = (v * 32) / GS;
            #pragma unroll
            for (int r = 0; r < LR; ++r) {
                // SWIGLU: rows ROWS.. of the block are the up rows N + j
                const int row = r < ROWS ? min(row0 + r, N - 1)
                                         : N + min(row0 + r - ROWS, N - 1);
                const size_t word = ((size_t)row * VECS + v) * 4;
                q[r] = mlxprof_load16(w, word, w16);
                s[r] = static_cast<float>(scales[(size_t)row * GPR + g]);
                b[r] = static_cast<float>(biases[(size_t)row * GPR + g]);
            }
            float xs[32];
            const float xsum = mlxprof_x32<T>(x, v, x16, xs);
            #pragma unroll
            for (int r = 0; r < LR; ++r) {
                const float dot = mlxprof_dot32(q[r], xs);
                acc[r] = fmaf(s[r], dot, fmaf(b[r], xsum, acc[r]));
            }
        }
    }
    #pragma unroll
    for (int r = 0; r < LR; ++r) {
        const float t = mlxprof_warp_sum(acc[r]);
        if (lane == 0) red[warp][r] = t;
    }
    __syncthreads();
    if (threadIdx.x < ROWS && row0 + threadIdx.x < N) {
        float t = 0.f;
        #pragma unroll
        for (int k = 0; k < WARPS; ++k) t += red[k][threadIdx.x];
        if (SWIGLU) {   // T(silu(g) * u), each bf16 op rounded as MLX's are
            float t_up = 0.f;
            #pragma unroll
            for (int k = 0; k < WARPS; ++k) t_up += red[k][ROWS + threadIdx.x];
            const float gt = mlxprof_rnd<T>(t), u = mlxprof_rnd<T>(t_up);
            const float a = mlxprof_rnd<T>(__fmul_rn(gt, mlxprof_sigmoid<T>(gt)));
            y[row0 + threadIdx.x] = static_cast<T>(__fmul_rn(a, u));
        } else {
            y[row0 + threadIdx.x] = static_cast<T>(t);
        }
    }
"""


@lru_cache(maxsize=1)
def _kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_qmv4", input_names=["x", "w", "scales", "biases"],
        output_names=["y"], source=_SOURCE, header=HEADER + QMV_HEADER)


def supported(qspec, k: int, has_biases: bool = True) -> bool:
    """True when qmv() handles weights quantized as qspec (group_size, bits,
    mode) with k inputs: 4-bit affine with biases, k a multiple of 32."""
    gs, bits, mode = qspec
    return (bits == 4 and mode == "affine" and has_biases and gs in (32, 64, 128)
            and k % 32 == 0)


def _warps(k: int) -> int:
    return max(1, min(4, -(-k // 1024)))


def _launch(x, w, scales, biases, group_size: int, n: int, swiglu: bool):
    rows, k = ROWS_SWIGLU if swiglu else ROWS, x.shape[-1]
    warps = _warps(k)
    (y,) = _kernel()(
        inputs=[x, w, scales, biases],
        template=[("T", x.dtype), ("K", k), ("N", n), ("GS", group_size),
                  ("ROWS", rows), ("WARPS", warps), ("SWIGLU", swiglu)],
        grid=(32 * warps * -(-n // rows), 1, 1), threadgroup=(32 * warps, 1, 1),
        output_shapes=[(*x.shape[:-1], n)], output_dtypes=[x.dtype])
    return y


def qmv(x, w, scales, biases, group_size: int) -> mx.array:
    """x @ dequantize(w, scales, biases).T for one row x (..., K); CUDA only.

    w: uint32 (N, K / 8), scales/biases (N, K / group_size) of x's dtype.
    Check supported() first.
    """
    return _launch(x, w, scales, biases, group_size, w.shape[0], False)


def qmv_swiglu(x, w, scales, biases, group_size: int) -> mx.array:
    """silu(g) * u with [g, u] = qmv(x, w, ...) split in halves: (..., N / 2).

    w holds the gate rows then the up rows (2 * hidden of them); the
    epilogue rounds g, u, silu(g) and the product to x's dtype as MLX's
    ops do. CUDA only; check supported() first.
    """
    return _launch(x, w, scales, biases, group_size, w.shape[0] // 2, True)


def self_check(n: int, k: int, group_size: int = 64, dtype=mx.bfloat16) -> float:
    """Max relative difference of qmv to the float32 product of the same
    quantized weights, on random data (MLX's own qmv: ~0.004-0.006)."""
    return self_checked("qmv4", (n, k, group_size, str(dtype)),
                        lambda: accuracy(n, k, group_size, dtype)["qmv_vs_f32"])


def _random(rows: int, k: int, group_size: int, dtype, seed: int):
    """x (1, 1, k), a random weight quantized (q, s, b), its float32 dequant."""
    ks = mx.random.split(mx.random.key(seed), 2)
    w = (0.05 * mx.random.normal((rows, k), key=ks[0])).astype(dtype)
    x = mx.random.normal((1, 1, k), key=ks[1]).astype(dtype)
    q, s, b = mx.quantize(w, group_size=group_size, bits=4)
    f32 = mx.dequantize(q, s.astype(mx.float32), b.astype(mx.float32),
                        group_size=group_size, bits=4)
    return x, (q, s, b), f32


def _distances(got, ref, exact) -> dict:
    return {"vs_mlx": rel_diff(got, ref), "qmv_vs_f32": rel_diff(got, exact),
            "mlx_vs_f32": rel_diff(ref, exact)}


def accuracy(n: int, k: int, group_size: int = 64, dtype=mx.bfloat16) -> dict:
    """Relative distances on random data: qmv vs mx.quantized_matmul
    ("vs_mlx"), and each vs the float32 product of the same quantized
    weights ("qmv_vs_f32", "mlx_vs_f32")."""
    x, qsb, f32 = _random(n, k, group_size, dtype, 5)
    ref = mx.quantized_matmul(x, *qsb, transpose=True, group_size=group_size, bits=4)
    exact = x.astype(mx.float32) @ f32.T
    return _distances(qmv(x, *qsb, group_size), ref, exact)


def self_check_swiglu(n_hidden: int, k: int, group_size: int = 64,
                      dtype=mx.bfloat16) -> float:
    """Max relative difference of qmv_swiglu to silu(g) * u in float32."""
    return self_checked("qmv4_swiglu", (n_hidden, k, group_size, str(dtype)),
                        lambda: swiglu_accuracy(n_hidden, k, group_size, dtype)["qmv_vs_f32"])


def swiglu_accuracy(n_hidden: int, k: int, group_size: int = 64,
                    dtype=mx.bfloat16) -> dict:
    """As accuracy() for qmv_swiglu on a (2 * n_hidden, k) weight: vs
    mx.quantized_matmul then mlx-lm's nn.silu(g) * u ("vs_mlx"), and each
    vs the same in float32 ("qmv_vs_f32", "mlx_vs_f32")."""
    x, qsb, f32 = _random(2 * n_hidden, k, group_size, dtype, 6)
    gu = mx.quantized_matmul(x, *qsb, transpose=True, group_size=group_size, bits=4)
    g, u = mx.split(gu, [n_hidden], axis=-1)
    g32, u32 = mx.split(x.astype(mx.float32) @ f32.T, [n_hidden], axis=-1)
    return _distances(qmv_swiglu(x, *qsb, group_size), nn.silu(g) * u, nn.silu(g32) * u32)
