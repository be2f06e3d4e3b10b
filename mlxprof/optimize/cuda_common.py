"""Device helpers shared by mlxprof's custom CUDA kernels (cuda_*.py).

Rounding helpers mimic MLX's CUDA ops at a given dtype T: `mlxprof_rnd<T>`
rounds a float to T and back; `mlxprof_sigmoid<T>` is MLX's Sigmoid
functor evaluated in T (each step rounded, as MLX's bf16 kernels do).

Example:
    >>> "mlxprof_rnd" in HEADER
    True
"""

__all__ = ["HEADER"]

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
"""
