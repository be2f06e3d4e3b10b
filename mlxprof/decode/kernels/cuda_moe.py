"""MoE routing and combine as two custom CUDA kernels (mx.fast.cuda_kernel).

At one decoded token, mlx-lm's MoE block spends most of its kernels on tiny
vectors: softmax, argpartition, take_along_axis, the sum of the top-k
scores and the divide (routing), then the weighted product, its sum over
the k experts, the shared expert's sigmoid gate and two adds (combine).
Each is a kernel launch of a few microseconds of host time. Here:

* `route(logits)`: softmax (float32, as `precise=True`), top-k, the
  renormalization and the shared-expert gate's sigmoid: one kernel;
* `combine(y, w, h, ...)`: h + sum_k w_k y_k (+ sigmoid(gate) * shared): one
  kernel, the residual add included.

Both round where mlx-lm's ops round (bf16 after every op, float32 inside
the softmax and the sums) and use `__fmul_rn`/`__fadd_rn`, which the
compiler may not fuse into an FMA, so only the order of float32 sums can
differ from mlx-lm's kernels. `route_reference` / `combine_reference` are
the same contract in MLX ops (tested on CPU against mlx-lm's block);
`self_check()` compares kernels and references on the GPU, and
optimize_model() uses the kernels only when it passes.

Example:
    >>> # inds, w, sg = route(logits, k=8, n_experts=256, norm=True, shared_gate=True)
"""
from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

from .cuda_common import HEADER, rel_diff, self_checked

__all__ = ["route", "combine", "route_reference", "combine_reference", "self_check"]

# softmax (float32, as precise=True) over x[0..E), top-KT, renormalized when
# NORM: the block's BLOCK threads leave the picked experts in sel_i and their
# scores (rounded to OutT) in sel_v, both in shared memory. s_p: E floats,
# s_red / s_arg: BLOCK / 32 each. Shared with cuda_experts' routed gate_up.
ROUTE_HEADER = """
template <typename OutT, int E, int KT, int BLOCK, bool NORM>
__device__ inline void mlxprof_route_block(
        const OutT* x, float* s_p, float* s_red, int* s_arg, int* sel_i, float* sel_v) {
    constexpr int NW = BLOCK / 32;
    const int tid = threadIdx.x;
    const int lane = tid & 31;
    const int wid = tid >> 5;

    float m = -3.402823466e+38f;
    for (int i = tid; i < E; i += BLOCK) m = fmaxf(m, static_cast<float>(x[i]));
    for (int o = 16; o > 0; o >>= 1) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, o));
    if (lane == 0) s_red[wid] = m;
    __syncthreads();
    m = s_red[0];
    for (int j = 1; j < NW; ++j) m = fmaxf(m, s_red[j]);
    __syncthreads();

    float s = 0.0f;
    for (int i = tid; i < E; i += BLOCK)
        s = __fadd_rn(s, __expf(static_cast<float>(x[i]) - m));
    for (int o = 16; o > 0; o >>= 1) s = __fadd_rn(s, __shfl_xor_sync(0xffffffff, s, o));
    if (lane == 0) s_red[wid] = s;
    __syncthreads();
    s = s_red[0];
    for (int j = 1; j < NW; ++j) s = __fadd_rn(s, s_red[j]);
    const float inv = 1.0f / s;
    for (int i = tid; i < E; i += BLOCK)
        s_p[i] = static_cast<float>(static_cast<OutT>(
            __fmul_rn(__expf(static_cast<float>(x[i]) - m), inv)));
    __syncthreads();

    for (int j = 0; j < KT; ++j) {
        float best = -1.0f;
        int bi = E;
        for (int i = tid; i < E; i += BLOCK) {
            const float v = s_p[i];
            if (v > best || (v == best && i < bi)) { best = v; bi = i; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const float ov = __shfl_xor_sync(0xffffffff, best, o);
            const int oi = __shfl_xor_sync(0xffffffff, bi, o);
            if (ov > best || (ov == best && oi < bi)) { best = ov; bi = oi; }
        }
        if (lane == 0) { s_red[wid] = best; s_arg[wid] = bi; }
        __syncthreads();
        if (tid == 0) {
            best = s_red[0];
            bi = s_arg[0];
            for (int w2 = 1; w2 < NW; ++w2) {
                if (s_red[w2] > best || (s_red[w2] == best && s_arg[w2] < bi)) {
                    best = s_red[w2];
                    bi = s_arg[w2];
                }
            }
            sel_i[j] = bi;
            sel_v[j] = best;
            s_p[bi] = -2.0f;
        }
        __syncthreads();
    }

    if (NORM && tid == 0) {
        float ssum = 0.0f;
        for (int j = 0; j < KT; ++j) ssum = __fadd_rn(ssum, sel_v[j]);
        const float sb = static_cast<float>(static_cast<OutT>(ssum));
        for (int j = 0; j < KT; ++j)
            sel_v[j] = static_cast<float>(static_cast<OutT>(__fdiv_rn(sel_v[j], sb)));
    }
    __syncthreads();
}
"""

_ROUTE = """
    __shared__ float s_p[E];
    __shared__ float s_red[BLOCK / 32];
    __shared__ int s_arg[BLOCK / 32];
    __shared__ int sel_i[K];
    __shared__ float sel_v[K];
    const int row = blockIdx.x;
    const auto* x = logits + (size_t)row * W;
    mlxprof_route_block<OutT, E, K, BLOCK, NORM>(x, s_p, s_red, s_arg, sel_i, sel_v);
    if (threadIdx.x == 0) {
        for (int j = 0; j < K; ++j) {
            inds[row * K + j] = static_cast<unsigned int>(sel_i[j]);
            scores[row * K + j] = static_cast<OutT>(sel_v[j]);
        }
        sgate[row] = static_cast<OutT>(SG ? mlxprof_sigmoid<OutT>(static_cast<float>(x[E]))
                                          : 0.0f);
    }
"""

_COMBINE_HEADER = """
// h[d] + sum_k T(y_k[d] * w_k) (+ T(sg * shared[d])), rounded as mlx-lm's ops
template <typename T, int K, int YR, bool SHARED, bool SHARED_IN_Y>
__device__ inline float mlxprof_combine_at(
        const T* yr, const T* sc, const T* sg, const T* shr, const T* h, int d, int D) {
    float acc = 0.0f;
    for (int j = 0; j < K; ++j) {
        const float p = __fmul_rn(static_cast<float>(yr[j * D + d]), static_cast<float>(sc[j]));
        acc = __fadd_rn(acc, static_cast<float>(static_cast<T>(p)));
    }
    float r = static_cast<float>(static_cast<T>(acc));
    if (SHARED) {
        const float ys = SHARED_IN_Y ? static_cast<float>(yr[K * D + d])
                                     : static_cast<float>(shr[d]);
        const float s = static_cast<float>(static_cast<T>(
            __fmul_rn(static_cast<float>(sg[0]), ys)));
        r = static_cast<float>(static_cast<T>(__fadd_rn(r, s)));
    }
    return static_cast<float>(static_cast<T>(__fadd_rn(static_cast<float>(h[d]), r)));
}
"""

_COMBINE = """
    const int d = blockIdx.x * blockDim.x + threadIdx.x;
    const int row = blockIdx.y;
    if (d >= D) {
        return;
    }
    const size_t o = (size_t)row * D;
    out[o + d] = static_cast<OutT>(mlxprof_combine_at<OutT, K, YR, SHARED, SHARED_IN_Y>(
        y + (size_t)row * YR * D, scores + row * K, sgate + row, shr + o, h + o, d, D));
"""

# the same, then rms_norm(out, w, eps) for the next sublayer: one block per row
_COMBINE_NORM = """
    __shared__ float s_red[BLOCK / 32];
    const int row = blockIdx.x;
    const int tid = threadIdx.x;
    const size_t o = (size_t)row * D;
    float ss = 0.0f;
    for (int d = tid; d < D; d += BLOCK) {
        const float v = mlxprof_combine_at<OutT, K, YR, SHARED, SHARED_IN_Y>(
            y + (size_t)row * YR * D, scores + row * K, sgate + row, shr + o, h + o, d, D);
        out[o + d] = static_cast<OutT>(v);
        ss = __fadd_rn(ss, __fmul_rn(v, v));
    }
    mlxprof_rms_tail<OutT, BLOCK, D>(ss, out + o, w, n + o, eps[0], s_red);
"""


@lru_cache(maxsize=1)
def _route_kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_moe_route", input_names=["logits"],
        output_names=["inds", "scores", "sgate"], source=_ROUTE,
        header=HEADER + ROUTE_HEADER)


@lru_cache(maxsize=None)
def _combine_kernel(with_norm: bool):
    names = ["y", "scores", "sgate", "shr", "h"] + (["w", "eps"] if with_norm else [])
    return mx.fast.cuda_kernel(
        name="mlxprof_moe_combine" + ("_norm" if with_norm else ""), input_names=names,
        output_names=["out", "n"] if with_norm else ["out"],
        source=_COMBINE_NORM if with_norm else _COMBINE,
        header=HEADER + _COMBINE_HEADER)


def route(logits, k: int, n_experts: int, norm: bool, shared_gate: bool):
    """(inds uint32 (..., k), scores (..., k), sigmoid(shared gate) (..., 1)).

    logits (..., W): the router's output, the shared expert's gate logit in
    column `n_experts` when `shared_gate` (W = n_experts + 1). Scores are
    the top-k softmax probabilities (renormalized when `norm`), in
    logits.dtype; the third output is zeros without a shared gate.
    """
    lead, w = logits.shape[:-1], logits.shape[-1]
    n = 1
    for s in lead:
        n *= s
    block = min(1024, max(32, 32 * -(-n_experts // 32)))
    inds, scores, sg = _route_kernel()(
        inputs=[logits],
        template=[("OutT", logits.dtype), ("E", n_experts), ("K", k), ("W", w),
                  ("BLOCK", block), ("NORM", bool(norm)), ("SG", bool(shared_gate))],
        grid=(block * n, 1, 1), threadgroup=(block, 1, 1),
        output_shapes=[lead + (k,), lead + (k,), lead + (1,)],
        output_dtypes=[mx.uint32, logits.dtype, logits.dtype])
    return inds, scores, sg


def combine(y, scores, h, sgate=None, shared=None, shared_in_y: bool = False,
            norm=None):
    """h + sum_k scores_k * y_k (+ sgate * shared), rounded as mlx-lm's ops.

    y (..., k[+1], D) from the experts (the shared expert's output as row k
    when `shared_in_y`), scores (..., k), h and `shared` (..., D), sgate
    (..., 1). Returns (..., D) in h.dtype; with `norm=(w, eps)` (eps a
    float32 array of shape (1,)) also rms_norm(result, w, eps), in the same
    kernel: a tuple (out, normed).
    """
    k = scores.shape[-1]
    D = y.shape[-1]
    lead = h.shape[:-1]
    n = 1
    for s in lead:
        n *= s
    has_shared = sgate is not None
    inputs = [y, scores, sgate if has_shared else scores, h if shared is None else shared, h]
    template = [("OutT", h.dtype), ("K", k), ("D", D), ("YR", y.shape[-2]),
                ("SHARED", has_shared), ("SHARED_IN_Y", bool(shared_in_y))]
    if norm is None:
        (out,) = _combine_kernel(False)(
            inputs=inputs, template=template,
            grid=(256 * -(-D // 256), n, 1), threadgroup=(256, 1, 1),
            output_shapes=[h.shape], output_dtypes=[h.dtype])
        return out
    from .cuda_norm import norm_block
    block = norm_block(D)
    return tuple(_combine_kernel(True)(
        inputs=inputs + list(norm), template=template + [("BLOCK", block)],
        grid=(block * n, 1, 1), threadgroup=(block, 1, 1),
        output_shapes=[h.shape, h.shape], output_dtypes=[h.dtype, h.dtype]))


# -- the same contracts in MLX ops (CPU tests, GPU self-check) ------------------
def route_reference(logits, k: int, n_experts: int, norm: bool, shared_gate: bool):
    """route() in MLX ops: mlx-lm's softmax / argpartition / renormalization."""
    gates = mx.softmax(logits[..., :n_experts], axis=-1, precise=True)
    inds = mx.argpartition(gates, kth=-k, axis=-1)[..., -k:]
    scores = mx.take_along_axis(gates, inds, axis=-1)
    if norm:
        scores = scores / scores.sum(axis=-1, keepdims=True)
    if shared_gate:
        sg = mx.sigmoid(logits[..., n_experts:n_experts + 1])
    else:
        sg = mx.zeros(logits.shape[:-1] + (1,), logits.dtype)
    return inds.astype(mx.uint32), scores, sg


def combine_reference(y, scores, h, sgate=None, shared=None, shared_in_y=False):
    """combine() in MLX ops, in mlx-lm's order of operations."""
    k = scores.shape[-1]
    r = (y[..., :k, :] * scores[..., None]).sum(axis=-2)
    if sgate is not None:
        s = y[..., k, :] if shared_in_y else shared
        r = r + sgate * s
    return h + r


def self_check(n_experts: int, k: int, dim: int) -> float:
    """Largest difference of the kernels vs the references on random data.

    The picked experts must be a valid top-k (inf if not); scores and
    outputs are compared with rel_diff. inf on any error (cuda_common.ERRORS).
    """
    return self_checked("moe", (n_experts, k, dim), lambda: _check(n_experts, k, dim))


def _check(n_experts: int, k: int, dim: int) -> float:
    ks = mx.random.split(mx.random.key(1), 4)
    dt = mx.bfloat16
    logits = (mx.random.normal((3, 1, n_experts + 1), key=ks[0]) * 2).astype(dt)
    i0, s0, g0 = route_reference(logits, k, n_experts, True, True)
    i1, s1, g1 = route(logits, k, n_experts, True, True)
    # a valid top-k (bf16 ties may pick other experts of equal probability)
    p = mx.softmax(logits[..., :n_experts], axis=-1, precise=True)
    top = lambda i: mx.sort(mx.take_along_axis(p, i.astype(mx.int32), -1), -1)
    distinct = mx.all(mx.sort(i1, -1)[..., 1:] != mx.sort(i1, -1)[..., :-1]).item()
    if not (distinct and mx.array_equal(top(i0), top(i1)).item()):
        return float("inf")
    s0, s1 = mx.sort(s0, axis=-1), mx.sort(s1, axis=-1)
    y = mx.random.normal((3, 1, k + 1, dim), key=ks[1]).astype(dt)
    h = mx.random.normal((3, 1, dim), key=ks[2]).astype(dt)
    c0 = combine_reference(y, s0, h, g0, None, True)
    c1 = combine(y, s1, h, g1, None, True)
    w = (1 + 0.1 * mx.random.normal((dim,), key=ks[3])).astype(dt)
    c2, n2 = combine(y, s1, h, g1, None, True, norm=(w, mx.array([1e-6], mx.float32)))
    n0 = mx.fast.rms_norm(c0, w, 1e-6)
    return max(rel_diff(s1, s0), rel_diff(g1, g0), rel_diff(c1, c0), rel_diff(c2, c0),
               rel_diff(n2, n0))
