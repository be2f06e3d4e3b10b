"""An MoE block's experts at one token as two custom CUDA kernels.

After routing (cuda_moe.route), mlx-lm's MoE block at one decoded token runs
the top-k experts' gate/up (gather_qmm), their SwiGLU, their down
projection (gather_qmm), the shared expert's own gate/up, SwiGLU and down,
then the weighted combine and the residual add: seven kernels and as many
views, each a few microseconds of host time. Here:

* `gate_up(x, inds, ...)`: for each of the k picked experts (and the shared
  expert as slot k) silu(x @ G_e.T) * (x @ U_e.T): one kernel, a block per
  (slot, group of rows), the one-row 4-bit matvec of cuda_qmv;
* `gate_up_routed(x, logits, ...)`: the same with the routing inside: every
  block runs cuda_moe's softmax / top-k (ROUTE_HEADER) on the router logits
  before it loads its expert, one block writes the picks and scores for
  down_combine — the routing kernel's launch saved;
* `down_combine(act, inds, scores, ...)`: each slot's down projection, then
  h + sum_j scores_j * y_j (+ sigmoid(shared gate) * y_shared): one kernel.
  The RMSNorm after it stays MLX's (one more kernel): folding it in needs a
  grid-wide step, and the version that did (the last block to finish, found
  with an atomic counter, normalized the row) was far slower on an H200
  (experiments/experts_timing.py; docs/results/experts_timing*_h200.md).

Both round where mlx-lm's ops round (the matvec outputs, silu, the products,
the combine's terms) and sum in float32; only the order of float32 sums can
differ from MLX's kernels. `gate_up_reference` / `down_combine_reference`
are the same contracts in MLX ops (CPU tests), and `self_check()` compares
kernels and references on the GPU; optimize_model() uses the kernels only
when it passes.

Example:
    >>> supported((64, 4, "affine"), n=512, dim=2048)
    True
"""
from __future__ import annotations

from functools import lru_cache

import mlx.core as mx
import mlx.nn as nn

from .cuda_common import HEADER, rel_diff, self_checked
from .cuda_moe import ROUTE_HEADER, route_reference
from .cuda_qmv import QMV_HEADER, ROWS_SWIGLU, _SOURCE as _QMV, _warps

__all__ = ["gate_up", "gate_up_routed", "down_combine", "gate_up_reference",
           "gate_up_routed_reference", "down_combine_reference", "supported", "self_check",
           "self_check_routed", "ROWS_DOWN"]

ROWS_DOWN = 8       # output rows per block of down_combine

# cuda_qmv's body with SWIGLU, pointed at slot blockIdx.y's expert pick[slot]
_SLOT = """
    const int slot = blockIdx.y;
    const bool sh = SHARED && slot == KR;
    const size_t e = sh ? 0 : static_cast<size_t>(pick[slot]);
    const auto* w = sh ? w_s : w_e + e * (size_t)(2 * N) * (K / 8);
    const auto* scales = sh ? s_s : s_e + e * (size_t)(2 * N) * (K / GS);
    const auto* biases = sh ? b_s : b_e + e * (size_t)(2 * N) * (K / GS);
    auto* y = y_all + (size_t)slot * N;
""" + _QMV

_GATE_UP = "    const auto* pick = inds;\n" + _SLOT

# every block routes (cuda_moe's softmax / top-k on the router logits: a few
# microseconds, in parallel) instead of waiting for a routing kernel; block
# (0, 0) writes the routing for down_combine
_GATE_UP_ROUTED = """
    constexpr int RB = 32 * WARPS;
    __shared__ float r_p[E];
    __shared__ float r_red[RB / 32];
    __shared__ int r_arg[RB / 32];
    __shared__ int pick[KR];
    __shared__ float r_v[KR];
    mlxprof_route_block<T, E, KR, RB, NORM>(logits, r_p, r_red, r_arg, pick, r_v);
    if (blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0) {
        for (int j = 0; j < KR; ++j) {
            inds[j] = static_cast<unsigned int>(pick[j]);
            scores[j] = static_cast<T>(r_v[j]);
        }
        sgate[0] = static_cast<T>(SG ? mlxprof_sigmoid<T>(static_cast<float>(logits[E])) : 0.0f);
    }
""" + _SLOT

_DOWN = """
    constexpr int VECS = K / 32;
    constexpr int PASSES = (VECS + 31) / 32;
    constexpr int GPR = K / GS;
    constexpr int KS = SHARED ? KR + 1 : KR;
    __shared__ float red[WARPS][ROWS];
    __shared__ float ys[KS][ROWS];
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int row0 = blockIdx.x * ROWS;
    for (int slot = 0; slot < KS; ++slot) {
        const bool sh = SHARED && slot == KR;
        const size_t e = sh ? 0 : static_cast<size_t>(inds[slot]);
        const auto* w = sh ? w_s : w_e + e * (size_t)D * (K / 8);
        const auto* sc = sh ? s_s : s_e + e * (size_t)D * GPR;
        const auto* bi = sh ? b_s : b_e + e * (size_t)D * GPR;
        const auto* x = act + (size_t)slot * K;
        const bool w16 = (reinterpret_cast<size_t>(w) & 15) == 0;
        const bool x16 = (reinterpret_cast<size_t>(x) & 15) == 0;
        float acc[ROWS];
        #pragma unroll
        for (int r = 0; r < ROWS; ++r) acc[r] = 0.f;
        for (int p = warp; p < PASSES; p += WARPS) {
            const int v = p * 32 + lane;
            if (v < VECS) {
                uint4 q[ROWS];
                float s[ROWS], b[ROWS];
                const int g = (v * 32) / GS;
                #pragma unroll
                for (int r = 0; r < ROWS; ++r) {
                    const int row = min(row0 + r, D - 1);
                    q[r] = mlxprof_load16(w, ((size_t)row * VECS + v) * 4, w16);
                    s[r] = static_cast<float>(sc[(size_t)row * GPR + g]);
                    b[r] = static_cast<float>(bi[(size_t)row * GPR + g]);
                }
                float xs[32];
                const float xsum = mlxprof_x32<T>(x, v, x16, xs);
                #pragma unroll
                for (int r = 0; r < ROWS; ++r)
                    acc[r] = fmaf(s[r], mlxprof_dot32(q[r], xs), fmaf(b[r], xsum, acc[r]));
            }
        }
        #pragma unroll
        for (int r = 0; r < ROWS; ++r) {
            const float t = mlxprof_warp_sum(acc[r]);
            if (lane == 0) red[warp][r] = t;
        }
        __syncthreads();
        if (threadIdx.x < ROWS) {
            float t = 0.f;
            #pragma unroll
            for (int k = 0; k < WARPS; ++k) t += red[k][threadIdx.x];
            ys[slot][threadIdx.x] = mlxprof_rnd<T>(t);      // the matvec's T output
        }
        __syncthreads();
    }
    const int d = row0 + threadIdx.x;
    if (threadIdx.x < ROWS && d < D) {    // h + sum_j T(y_j * w_j) (+ T(sg * y_s)), as mlx-lm
        float a = 0.f;
        #pragma unroll
        for (int j = 0; j < KR; ++j)
            a = __fadd_rn(a, mlxprof_rnd<T>(__fmul_rn(ys[j][threadIdx.x],
                                                      static_cast<float>(scores[j]))));
        float r = mlxprof_rnd<T>(a);
        if (SHARED) {
            const float s = mlxprof_rnd<T>(__fmul_rn(static_cast<float>(sgate[0]),
                                                     ys[KR][threadIdx.x]));
            r = mlxprof_rnd<T>(__fadd_rn(r, s));
        }
        const float v = mlxprof_rnd<T>(__fadd_rn(static_cast<float>(h[d]), r));
        out[d] = static_cast<T>(v);
    }
"""


@lru_cache(maxsize=1)
def _gate_up_kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_experts_gate_up",
        input_names=["x", "inds", "w_e", "s_e", "b_e", "w_s", "s_s", "b_s"],
        output_names=["y_all"], source=_GATE_UP, header=HEADER + QMV_HEADER)


@lru_cache(maxsize=1)
def _gate_up_routed_kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_experts_gate_up_routed",
        input_names=["x", "logits", "w_e", "s_e", "b_e", "w_s", "s_s", "b_s"],
        output_names=["y_all", "inds", "scores", "sgate"], source=_GATE_UP_ROUTED,
        header=HEADER + QMV_HEADER + ROUTE_HEADER)


@lru_cache(maxsize=1)
def _down_kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_experts_down",
        input_names=["act", "inds", "scores", "sgate", "h", "w_e", "s_e", "b_e",
                     "w_s", "s_s", "b_s"],
        output_names=["out"], source=_DOWN, header=HEADER + QMV_HEADER)


def supported(qspec, n: int, dim: int) -> bool:
    """True when the kernels handle experts quantized as qspec (group_size,
    bits, mode) with intermediate width n and model width dim."""
    gs, bits, mode = qspec
    return (bits == 4 and mode == "affine" and gs in (32, 64, 128)
            and n % 32 == 0 and dim % 32 == 0 and n % gs == 0 and dim % gs == 0)


def gate_up(x, inds, experts, shared, group_size: int):
    """silu(g) * u per slot: (k [+1], n) in x's dtype; CUDA only.

    x (..., D) one row; inds (..., k) uint32; experts (w, scales, biases) of
    the gate rows then up rows, shapes (E, 2n, D/8), (E, 2n, D/gs); shared the
    same for the shared expert ((2n, D/8), ...) or None.
    """
    return _launch_gate_up(_gate_up_kernel(), x, inds, experts, shared, group_size,
                           inds.shape[-1], [], [])[0]


def gate_up_routed(x, logits, k: int, norm: bool, experts, shared, group_size: int):
    """(act, inds, scores, sgate): cuda_moe.route(logits, ...) and gate_up()
    in one kernel; CUDA only.

    logits (..., W) the router's output for one row, the shared expert's
    gate logit in column E (the number of experts) when `shared` is given;
    the other arguments as gate_up(). inds (..., k) uint32, scores (..., k)
    and sgate (..., 1) as cuda_moe.route returns them (sgate zeros without
    a shared expert), ready for down_combine().
    """
    e = experts[0].shape[0]
    lead = logits.shape[:-1]
    return _launch_gate_up(
        _gate_up_routed_kernel(), x, logits, experts, shared, group_size, k,
        [("E", e), ("NORM", bool(norm)), ("SG", shared is not None)],
        [(lead + (k,), mx.uint32), (lead + (k,), x.dtype), (lead + (1,), x.dtype)])


def _launch_gate_up(kernel, x, pick, experts, shared, group_size: int, k: int,
                    template: list, extra_outs: list):
    w, s, b = experts
    n, dim = w.shape[1] // 2, x.shape[-1]
    ws, ss, bs = shared if shared is not None else experts
    warps = _warps(dim)
    slots = k + (shared is not None)
    return kernel(
        inputs=[x, pick, w, s, b, ws, ss, bs],
        template=[("T", x.dtype), ("K", dim), ("N", n), ("GS", group_size),
                  ("ROWS", ROWS_SWIGLU), ("WARPS", warps), ("SWIGLU", True),
                  ("KR", k), ("SHARED", shared is not None)] + template,
        grid=(32 * warps * -(-n // ROWS_SWIGLU), slots, 1), threadgroup=(32 * warps, 1, 1),
        output_shapes=[(slots, n)] + [sh for sh, _ in extra_outs],
        output_dtypes=[x.dtype] + [dt for _, dt in extra_outs])


def down_combine(act, inds, scores, sgate, h, experts, shared, group_size: int):
    """h + sum_j scores_j * down_j(act_j) (+ sgate * down_s(act_k)); CUDA only.

    act (k [+1], n) from gate_up; scores (..., k); sgate (..., 1) or None
    (then `shared` must be None); h (..., D); experts (w, scales, biases) of
    shapes (E, D, n/8), (E, D, n/gs); shared the same for the shared expert
    or None. Returns (..., D) in h's dtype.
    """
    w, s, b = experts
    k, dim, n = scores.shape[-1], w.shape[1], act.shape[-1]
    ws, ss, bs = shared if shared is not None else experts
    warps = _warps(n)
    (out,) = _down_kernel()(
        inputs=[act, inds, scores, sgate if sgate is not None else scores, h, w, s, b,
                ws, ss, bs],
        template=[("T", h.dtype), ("K", n), ("D", dim), ("GS", group_size),
                  ("ROWS", ROWS_DOWN), ("WARPS", warps), ("KR", k),
                  ("SHARED", shared is not None)],
        grid=(32 * warps * -(-dim // ROWS_DOWN), 1, 1), threadgroup=(32 * warps, 1, 1),
        output_shapes=[h.shape], output_dtypes=[h.dtype])
    return out


# -- the same contracts in MLX ops (CPU tests, GPU self-check) ------------------
def _slots(inds, experts, shared) -> list:
    """Each slot's weight: the picked experts' (in order), then the shared one's.
    `experts` is a float matrix stack or quantized (w, scales, biases)."""
    picked = [experts[e] if isinstance(experts, mx.array) else tuple(a[e] for a in experts)
              for e in inds.reshape(-1).tolist()]
    return picked + ([shared] if shared is not None else [])


def _swiglu_rows(x, slots, matmul, n: int):
    outs = []
    for w in slots:
        g, u = mx.split(matmul(x.reshape(1, -1), w), [n], axis=-1)
        outs.append(nn.silu(g) * u)
    return mx.concatenate(outs, axis=0)


def _combine_rows(act, slots, k: int, scores, sgate, h, matmul):
    y = mx.concatenate([matmul(act[j:j + 1], w) for j, w in enumerate(slots[:k])], axis=0)
    r = (y.reshape(h.shape[:-1] + (k, -1)) * scores[..., None].astype(y.dtype)).sum(axis=-2)
    if len(slots) > k:
        r = r + sgate.astype(y.dtype) * matmul(act[k:k + 1], slots[k]).reshape(h.shape)
    return h.astype(y.dtype) + r


def _qmm(group_size: int):
    return lambda x, w: mx.quantized_matmul(x, *w, transpose=True, group_size=group_size,
                                            bits=4)


def gate_up_reference(x, inds, experts, shared, group_size: int):
    """gate_up() in MLX ops: each slot's quantized matmul, then nn.silu(g) * u."""
    return _swiglu_rows(x, _slots(inds, experts, shared), _qmm(group_size),
                        experts[0].shape[1] // 2)


def gate_up_routed_reference(x, logits, k: int, norm: bool, experts, shared,
                             group_size: int):
    """gate_up_routed() in MLX ops: cuda_moe.route_reference, then gate_up_reference."""
    inds, scores, sg = route_reference(logits, k, experts[0].shape[0], norm,
                                       shared is not None)
    return gate_up_reference(x, inds, experts, shared, group_size), inds, scores, sg


def down_combine_reference(act, inds, scores, sgate, h, experts, shared, group_size: int):
    """down_combine() in MLX ops, in mlx-lm's order."""
    return _combine_rows(act, _slots(inds, experts, shared), inds.size, scores, sgate, h,
                         _qmm(group_size))


def self_check(n_experts: int, k: int, dim: int, n: int, group_size: int = 64,
               shared: bool = True) -> float:
    """How much farther from float32 the kernels are than MLX's own ops, on
    random data: max over the outputs (act, out) of
    rel_diff(kernel, f32) - 1.1 * rel_diff(mlx ops, f32), at least 0 (inf on
    any error; cuda_common.ERRORS). The float32 reference runs the same
    contracts on the dequantized weights in float32."""
    key = (n_experts, k, dim, n, group_size, shared)
    return self_checked("experts", key, lambda: _check(*key))


def self_check_routed(n_experts: int, k: int, dim: int, n: int, group_size: int = 64,
                      shared: bool = True, norm: bool = True) -> float:
    """gate_up_routed() against cuda_moe.route_reference and gate_up() on
    random data: inf unless the picked experts are a valid top-k of the same
    probabilities (bf16 ties may pick other experts of equal probability);
    else the largest rel_diff of the sorted scores and the shared gate vs
    the reference's, and of the activations vs gate_up() (the kernel
    self_check() covers) on the routed kernel's own picks: 0 when equal."""
    key = (n_experts, k, dim, n, group_size, shared, norm)
    return self_checked("experts_routed", key, lambda: _check_routed(*key))


def _check_routed(n_experts, k, dim, n, gs, shared, norm) -> float:
    ks = mx.random.split(mx.random.key(5), 4)
    dt = mx.bfloat16
    gu = _quantized(ks[0], (n_experts, 2 * n, dim), gs)
    sgu = _quantized(ks[1], (2 * n, dim), gs) if shared else None
    x = mx.random.normal((1, 1, dim), key=ks[2]).astype(dt)
    logits = (2 * mx.random.normal((1, 1, n_experts + shared), key=ks[3])).astype(dt)
    act1, i1, s1, g1 = gate_up_routed(x, logits, k, norm, gu, sgu, gs)
    i0, s0, g0 = route_reference(logits, k, n_experts, norm, shared)
    p = mx.softmax(logits[..., :n_experts], axis=-1, precise=True)
    top = lambda i: mx.sort(mx.take_along_axis(p, i.astype(mx.int32), -1), -1)
    picked = mx.sort(i1, -1)
    if not (mx.all(picked[..., 1:] != picked[..., :-1]).item()
            and mx.array_equal(top(i0), top(i1)).item()):
        return float("inf")
    act0 = gate_up(x, i1, gu, sgu, gs)
    return max(rel_diff(mx.sort(s1, -1), mx.sort(s0, -1)), rel_diff(g1, g0),
               rel_diff(act1, act0))


def _quantized(key, shape, gs):
    w = (0.05 * mx.random.normal(shape, key=key)).astype(mx.bfloat16)
    return mx.quantize(w, group_size=gs, bits=4)


def _f32(qsb, gs):
    """The float32 matrix of a quantized (w, scales, biases); None stays None."""
    if qsb is None:
        return None
    return mx.dequantize(*qsb, group_size=gs, bits=4).astype(mx.float32)


def _f32_matmul(x, w):
    return x.astype(mx.float32) @ w.T


def _check(n_experts: int, k: int, dim: int, n: int, gs: int, shared: bool) -> float:
    ks = mx.random.split(mx.random.key(3), 9)
    dt = mx.bfloat16
    gu = _quantized(ks[0], (n_experts, 2 * n, dim), gs)
    dn = _quantized(ks[1], (n_experts, dim, n), gs)
    sgu = _quantized(ks[2], (2 * n, dim), gs) if shared else None
    sdn = _quantized(ks[3], (dim, n), gs) if shared else None
    x = mx.random.normal((1, 1, dim), key=ks[4]).astype(dt)
    h = mx.random.normal((1, 1, dim), key=ks[5]).astype(dt)
    inds = mx.random.permutation(n_experts, key=ks[6])[:k].astype(mx.uint32).reshape(1, 1, k)
    scores = mx.softmax(mx.random.normal((1, 1, k), key=ks[7]), axis=-1).astype(dt)
    sg = mx.sigmoid(mx.random.normal((1, 1, 1), key=ks[8])).astype(dt) if shared else None
    act32 = _swiglu_rows(x, _slots(inds, _f32(gu, gs), _f32(sgu, gs)), _f32_matmul, n)
    out32 = _combine_rows(act32, _slots(inds, _f32(dn, gs), _f32(sdn, gs)), k, scores, sg,
                          h, _f32_matmul)
    act0 = gate_up_reference(x, inds, gu, sgu, gs)
    out0 = down_combine_reference(act0, inds, scores, sg, h, dn, sdn, gs)
    act1 = gate_up(x, inds, gu, sgu, gs)
    excess = lambda got, ref, exact: max(0.0, rel_diff(got, exact) - 1.1 * rel_diff(ref, exact))
    out1 = down_combine(act1, inds, scores, sg, h, dn, sdn, gs)
    return max(excess(act1, act0, act32), excess(out1, out0, out32))
