"""A whole Gated DeltaNet decode step as one custom CUDA kernel.

At one token, mlx-lm's GDN mixer between its two projections runs the conv
state concat, the depthwise conv and silu, two RMSNorms for q and k and
their scales, the gates (sigmoid, softplus, exp), the recurrence and the
gated RMSNorm: eight or more kernels on vectors of a few thousand numbers.
`gdn_step(...)` does all of it in one kernel, one thread block per value
head: it reads the fused input projection [qkv | z | b | a], the conv and
recurrent states and the layer's small weights, and writes the gated-norm
output (ready for out_proj), the new conv state and the new state.

It rounds where mlx-lm rounds (bf16 after each op: conv, silu, norms,
scales, sigmoid, softplus; float32 state and sums), so it differs from
mlx-lm's kernels only in the order of float32 sums and in transcendental
functions' last bits. `self_check(mixer)` runs it against the mixer's
"mlx_lm" decode path on random inputs; optimize_model() uses it only when
that passes (gated_delta="auto" on a CUDA GPU) or when asked
(gated_delta="fused").

Example:
    >>> # y, conv, state = gdn_step(mixer, p, conv_state, state)   # CUDA only
"""
from __future__ import annotations

from functools import lru_cache

import mlx.core as mx

from .cuda_common import HEADER, rel_diff, self_checked

__all__ = ["gdn_step", "self_check", "supported", "prepare"]


_SOURCE = """
    constexpr int R = HV / HK;
    constexpr int NT = 32 * NWARP;
    constexpr int KD = HK * DK;
    constexpr int VD = HV * DV;
    constexpr int C = 2 * KD + VD;
    constexpr int P = C + VD + 2 * HV;
    constexpr int NCH = 2 * DK + DV;
    constexpr int NPT = DK / 32;
    __shared__ float sq[DK];
    __shared__ float sk[DK];
    __shared__ float sv[DV];
    __shared__ float sy[DV];
    __shared__ float s_n[3];
    __shared__ float s_gate[2];

    const int n = blockIdx.z;
    const int b = n / HV;
    const int hv = n % HV;
    const int hk = hv / R;
    const int lane = threadIdx.x;
    const int wid = threadIdx.y;
    const int tid = wid * 32 + lane;
    const auto* pr = p + (size_t)b * P;
    const auto* cs = conv_state + (size_t)b * (KS - 1) * C;
    auto* ncs = conv_out + (size_t)b * (KS - 1) * C;

    // depthwise conv over [conv_state; qkv], silu; new conv state
    for (int i = tid; i < NCH; i += NT) {
        const int c = i < DK ? hk * DK + i
                    : (i < 2 * DK ? KD + hk * DK + (i - DK) : 2 * KD + hv * DV + (i - 2 * DK));
        float acc = 0.0f;
        for (int j = 0; j < KS - 1; ++j) {
            acc += static_cast<float>(cs[j * C + c]) * static_cast<float>(conv_w[c * KS + j]);
        }
        acc += static_cast<float>(pr[c]) * static_cast<float>(conv_w[c * KS + KS - 1]);
        const float xo = mlxprof_rnd<OutT>(acc);
        const float si = mlxprof_rnd<OutT>(xo * mlxprof_sigmoid<OutT>(xo));
        if (i < DK) sq[i] = si;
        else if (i < 2 * DK) sk[i - DK] = si;
        else sv[i - 2 * DK] = si;
        if (i >= 2 * DK || hv % R == 0) {
            for (int j = 0; j < KS - 2; ++j) ncs[j * C + c] = cs[(j + 1) * C + c];
            ncs[(KS - 2) * C + c] = pr[c];
        }
    }
    __syncthreads();

    // rms norms of q and k (no weight), gates
    if (wid < 2) {
        const float* src = wid == 0 ? sq : sk;
        float ss = 0.0f;
        for (int i = lane; i < DK; i += 32) ss += src[i] * src[i];
        ss = mlxprof_warp_sum(ss);
        if (lane == 0) s_n[wid] = rsqrtf(ss / DK + consts[0]);
    }
    if (tid == 64) {
        const float bb = static_cast<float>(pr[C + VD + hv]);
        const float aa = static_cast<float>(pr[C + VD + HV + hv]);
        s_gate[0] = mlxprof_sigmoid<OutT>(bb);
        float x = aa + static_cast<float>(dt_bias[hv]);
        if (!AB_F32) x = mlxprof_rnd<OutT>(x);
        float sp = fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
        if (!AB_F32) sp = mlxprof_rnd<OutT>(sp);
        s_gate[1] = expf(-expf(static_cast<float>(A_log[hv])) * sp);
    }
    __syncthreads();
    for (int i = tid; i < 2 * DK; i += NT) {
        if (i < DK) sq[i] = mlxprof_rnd<OutT>(mlxprof_rnd<OutT>(sq[i] * s_n[0]) * consts[1]);
        else sk[i - DK] = mlxprof_rnd<OutT>(mlxprof_rnd<OutT>(sk[i - DK] * s_n[1]) * consts[2]);
    }
    __syncthreads();

    // recurrence: one warp per value row, the key dim over the lanes
    const float g = s_gate[1];
    const float beta = s_gate[0];
    const float* is = state_in + (size_t)n * DV * DK;
    float* os = state_out + (size_t)n * DV * DK;
    for (int dv = wid; dv < DV; dv += NWARP) {
        float st[NPT];
        float kv = 0.0f;
        for (int i = 0; i < NPT; ++i) {
            const int idx = lane * NPT + i;
            st[i] = is[dv * DK + idx] * g;
            kv += st[i] * sk[idx];
        }
        kv = mlxprof_warp_sum(kv);
        const float delta = (sv[dv] - kv) * beta;
        float out = 0.0f;
        for (int i = 0; i < NPT; ++i) {
            const int idx = lane * NPT + i;
            st[i] = st[i] + sk[idx] * delta;
            out += st[i] * sq[idx];
            os[dv * DK + idx] = st[i];
        }
        out = mlxprof_warp_sum(out);
        if (lane == 0) sy[dv] = mlxprof_rnd<OutT>(out);
    }
    __syncthreads();

    // gated rms norm: rms_norm(y, w) then silu(z) * it in float32
    if (wid == 0) {
        float ss = 0.0f;
        for (int i = lane; i < DV; i += 32) ss += sy[i] * sy[i];
        ss = mlxprof_warp_sum(ss);
        if (lane == 0) s_n[2] = rsqrtf(ss / DV + consts[3]);
    }
    __syncthreads();
    for (int dv = tid; dv < DV; dv += NT) {
        const float xn = mlxprof_rnd<OutT>(static_cast<float>(norm_w[dv]) * mlxprof_rnd<OutT>(sy[dv] * s_n[2]));
        const float z = static_cast<float>(pr[C + hv * DV + dv]);
        const float e = 1.0f / (1.0f + expf(fabsf(z)));
        const float sz = z * (z < 0.0f ? e : 1.0f - e);
        y[(size_t)b * VD + hv * DV + dv] = static_cast<OutT>(sz * xn);
    }
"""


@lru_cache(maxsize=1)
def _kernel():
    return mx.fast.cuda_kernel(
        name="mlxprof_gdn_step",
        input_names=["p", "conv_state", "conv_w", "state_in", "A_log", "dt_bias",
                     "norm_w", "consts"],
        output_names=["y", "conv_out", "state_out"],
        source=_SOURCE, header=HEADER)


def _consts(m) -> mx.array:
    """[q/k rms eps, q scale, k scale, gated-norm eps] as mlx-lm uses them:
    the scales are Python floats that MLX casts to the activations' dtype."""
    inv = m.dk ** -0.5
    scales = mx.array([inv ** 2, inv], m.norm_w.dtype).astype(mx.float32)
    eps = mx.array([1e-6 * inv ** 2], mx.float32)
    return mx.concatenate([eps, scales, mx.array([m.norm_eps], mx.float32)])


def gdn_step(m, p, conv_state, state):
    """One GDN decode step of mixer `m` (a gdn.GatedDeltaNet with fused
    projections): p (B, 1, P) the in_proj output [qkv | z | b | a],
    conv_state (B, K-1, C), state (B, Hv, Dv, Dk) float32. Returns the
    gated-norm output (B, 1, Hv*Dv), new conv state, new state. Call
    prepare(m) once first."""
    B = p.shape[0]
    dt = p.dtype
    ab_f32 = dt == mx.float32 or dt != m.dt_bias.dtype     # a + dt_bias in float32
    consts, conv_w = m._cuda_args
    nwarp = 8
    y, conv, st = _kernel()(
        inputs=[p, conv_state, conv_w, state.astype(mx.float32), m.A_log, m.dt_bias,
                m.norm_w, consts],
        template=[("OutT", dt), ("HK", m.hk), ("HV", m.hv), ("DK", m.dk),
                  ("DV", m.dv), ("KS", m.kernel), ("NWARP", nwarp),
                  ("AB_F32", bool(ab_f32))],
        grid=(32, nwarp, B * m.hv), threadgroup=(32, nwarp, 1),
        output_shapes=[(B, 1, m.value_dim), conv_state.shape, state.shape],
        output_dtypes=[dt, conv_state.dtype, mx.float32])
    return y, conv, st


def prepare(m) -> None:
    """Build and evaluate the kernel's constant inputs once (call before
    tracing the layer step with mx.compile: no evaluation happens there)."""
    args = _consts(m), m.conv_w.reshape(m.conv_dim, m.kernel)
    mx.eval(args)
    object.__setattr__(m, "_cuda_args", args)


def supported(m) -> bool:
    """Shapes and layout the kernel handles."""
    return (getattr(m, "fused", False) and m.dk % 32 == 0 and m.hv % m.hk == 0
            and m.kernel >= 2 and 2 * m.dk + m.dv <= 8192)


def self_check(m) -> float:
    """Max relative difference of gdn_step vs the mixer's "mlx_lm" decode
    path (mlx-lm's own functions) on random inputs; inf on any error."""
    key = (m.hk, m.hv, m.dk, m.dv, m.kernel, str(m.norm_w.dtype))
    return self_checked("gdn_step", key, lambda: _check(m))


def _check(m) -> float:
    ks = mx.random.split(mx.random.key(2), 3)
    dt = m.norm_w.dtype
    x = mx.random.normal((1, 1, m.in_dim), key=ks[0]).astype(dt)
    conv = mx.random.normal((1, m.kernel - 1, m.conv_dim), key=ks[1]).astype(dt)
    state = mx.random.normal((1, m.hv, m.dv, m.dk), key=ks[2]) * 0.1
    prepare(m)
    saved = m.recurrence
    try:
        m.recurrence = "mlx_lm"
        ref = m.decode(x, conv, state)
        m.recurrence = "fused"
        got = m.decode(x, conv, state)
    finally:
        m.recurrence = saved
    return max(rel_diff(g, r) for g, r in zip(got, ref))
