"""What mlxprof's custom CUDA kernels (cuda_*.py) share.

Python side: `on_cuda()`, and `self_checked(name, key, check)`, which runs a
kernel's self-check once per shape and keeps the exception of a failed one in
`ERRORS` (experiments/check_kernels.py prints them); `rel_diff(a, b)` is the
measure the checks use. Device side (`HEADER`):

Rounding helpers mimic MLX's CUDA ops at a given dtype T: `mlxprof_rnd<T>`
rounds a float to T and back; `mlxprof_sigmoid<T>` is MLX's Sigmoid
functor evaluated in T (each step rounded, as MLX's bf16 kernels do);
`mlxprof_rms_tail` finishes a block-wide RMSNorm of one row.

Example:
    >>> "mlxprof_rnd" in HEADER
    True
    >>> self_checked("demo", (1,), lambda: 1 / 0), "demo" in str(list(ERRORS))
    (inf, True)
"""
from __future__ import annotations

import mlx.core as mx

__all__ = ["HEADER", "on_cuda", "rel_diff", "self_checked", "ERRORS"]

CHECKS: dict = {}        # (kernel name, shape key) -> self-check value
ERRORS: dict = {}        # (kernel name, shape key) -> the exception that made it inf


def on_cuda() -> bool:
    """True when the default device runs MLX's CUDA backend."""
    return mx.default_device() == mx.gpu and mx.cuda.is_available()


def rel_diff(got, ref) -> float:
    """max |got - ref| / max |ref| (float32)."""
    ref = ref.astype(mx.float32)
    return (mx.abs(got.astype(mx.float32) - ref).max()
            / mx.maximum(mx.abs(ref).max(), 1e-30)).item()


def self_checked(name: str, key: tuple, check) -> float:
    """check() once per (name, key), cached; inf if it raises (kept in ERRORS)."""
    if (name, key) not in CHECKS:
        try:
            CHECKS[(name, key)] = float(check())
        except Exception as e:
            ERRORS[(name, key)] = repr(e)
            CHECKS[(name, key)] = float("inf")
    return CHECKS[(name, key)]

HEADER = """
template <typename T>
__device__ inline float mlxprof_rnd(float x) {
    return static_cast<float>(static_cast<T>(x));
}

// MLX's Sigmoid functor evaluated in T (each step rounded to T).
template <typename T>
__device__ inline float mlxprof_sigmoid(float x) {
    const float e = mlxprof_rnd<T>(expf(fabsf(x)));
    const float y = mlxprof_rnd<T>(1.0f / mlxprof_rnd<T>(1.0f + e));
    return x < 0.0f ? y : mlxprof_rnd<T>(1.0f - y);
}

__device__ inline float mlxprof_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) {
        v += __shfl_xor_sync(0xffffffff, v, o);
    }
    return v;
}

// The end of an RMSNorm over one row of D values already written to x by
// the threads of a block of BLOCK (each thread its d = tid, tid + BLOCK, ...),
// given each thread's partial sum of squares ss: n = T(w * T(x * rsqrt(mean + eps))),
// as MLX's RMSNorm kernel rounds. s_red: BLOCK / 32 floats of shared memory.
template <typename T, int BLOCK, int D, typename W>
__device__ inline void mlxprof_rms_tail(
        float ss, const T* x, const W* w, T* n, float eps, float* s_red) {
    ss = mlxprof_warp_sum(ss);
    if ((threadIdx.x & 31) == 0) s_red[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
    for (int j = 0; j < BLOCK / 32; ++j) tot = __fadd_rn(tot, s_red[j]);
    const float nrm = rsqrtf(__fadd_rn(tot / D, eps));
    for (int d = threadIdx.x; d < D; d += BLOCK) {
        const float y = static_cast<float>(static_cast<T>(
            __fmul_rn(static_cast<float>(x[d]), nrm)));
        n[d] = static_cast<T>(__fmul_rn(static_cast<float>(w[d]), y));
    }
}
"""
