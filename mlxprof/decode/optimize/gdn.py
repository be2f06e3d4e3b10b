"""Gated DeltaNet (linear attention) of Qwen3.5 / Qwen3-Next, fused projections.

The four input projections (qkv, z, b, a; Qwen3-Next's interleaved qkvz + ba
are reordered to that layout) become one matmul with output
[q | k | v | z | b | a]. `general()` is mlx-lm's math for any length (it uses
mlx-lm's own conv and `gated_delta_update`, so prefill matches mlx-lm);
`decode()` is the one-token step a compiled layer traces: the depthwise conv
as four fused multiply-adds, q and k normalized by one RMSNorm, and the
recurrence either as broadcast ops (no `mx.repeat` copies) or as the core
`mx.fast.gated_delta_update` (see probe.py for when). Recurrence "mlx_lm"
runs general()'s own math (`_core`) at one token instead: mlx-lm's rounding
on every backend, more ops.

Contract of `mx.fast.gated_delta_update(q, k, v, gamma, beta, state)` in MLX
0.32.4, checked against mlx-lm's `gated_delta_ops` (tests): q, k (B, T, Hk, Dk),
v (B, T, Hv, Dv), gamma = the decay g in linear space (B, T, Hv), beta the
*post-sigmoid* rate (B, T, Hv), state (B, Hv, Dv, Dk) float32 (Dv before
Dk, as mlx-lm stores it); it takes un-repeated q/k (head hv reads hk = hv //
(Hv/Hk)). It casts gamma and beta to q's dtype, so with bf16 q the decay is
rounded to bf16 (results drift from mlx-lm's); passing q, k, v, beta as
float32 makes it equal to the op path (bit-exact on the CPU fallback).

Example:
    >>> # see tests/test_optimize.py::test_gated_delta_contract
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.gated_delta import gated_delta_update

from mlxprof.decode.kernels.cuda_gdn_layer import gdn_step
from .fuse import fuse_linears

__all__ = ["GatedDeltaNet", "RECURRENCES"]

RECURRENCES = ("mlx_lm", "ops", "algebraic", "fast", "cuda", "fused")


def _next_rows(nk, dk, nv, dv):
    """Row order turning Qwen3-Next's per-key-head [q k v z] into [q|k|v|z]."""
    r = nv // nk
    per = 2 * dk + 2 * r * dv
    base = mx.arange(nk)[:, None] * per
    q = (base + mx.arange(dk)).flatten()
    k = (base + dk + mx.arange(dk)).flatten()
    v = (base + 2 * dk + mx.arange(r * dv)).flatten()
    z = (base + 2 * dk + r * dv + mx.arange(r * dv)).flatten()
    return mx.concatenate([q, k, v, z])


def _next_ba_rows(nk, nv):
    r = nv // nk
    base = mx.arange(nk)[:, None] * 2 * r
    return mx.concatenate([(base + mx.arange(r)).flatten(),
                           (base + r + mx.arange(r)).flatten()])


class GatedDeltaNet(nn.Module):
    """One GDN mixer; `recurrence` picks the decode recurrence (RECURRENCES)."""

    def __init__(self, la, fuse: bool = True, recurrence: str = "ops"):
        super().__init__()
        self.hk, self.hv = la.num_k_heads, la.num_v_heads
        self.dk, self.dv = la.head_k_dim, la.head_v_dim
        self.key_dim, self.value_dim = la.key_dim, la.value_dim
        self.conv_dim, self.kernel = la.conv_dim, la.conv_kernel_size
        self.in_dim = la.hidden_size
        if recurrence not in RECURRENCES:
            raise ValueError(f"recurrence must be one of {RECURRENCES}")
        self.recurrence = recurrence
        if hasattr(la, "in_proj_qkvz"):           # qwen3_next layout
            nk, nv = self.hk, self.hv
            qkvz = fuse_linears([la.in_proj_qkvz],
                                _next_rows(nk, self.dk, nv, self.dv))
            ba = fuse_linears([la.in_proj_ba], _next_ba_rows(nk, nv))
            parts = [qkvz, ba]
        else:
            parts = [la.in_proj_qkv, la.in_proj_z, la.in_proj_b, la.in_proj_a]
        self.fused = fuse
        if fuse:
            self.in_proj = fuse_linears(parts)
        else:
            self.in_projs = [fuse_linears([p]) for p in parts]
        self.conv_w = la.conv1d.weight                       # (C, K, 1), shared
        w = la.conv1d.weight[:, :, 0].astype(mx.float32)            # (C, K)
        self.conv_taps = [mx.contiguous(w[:, j]) for j in range(self.kernel)]
        self.dt_bias, self.A_log = la.dt_bias, la.A_log
        # constants for the one-kernel (beta, g) of _gates over [b | a]
        hv = self.hv
        self._is_b = mx.arange(2 * hv) < hv
        self._dt_ext = mx.concatenate([mx.zeros((hv,), la.dt_bias.dtype), la.dt_bias])
        self._exp_a = mx.concatenate([mx.zeros((hv,), mx.float32),
                                      mx.exp(la.A_log.astype(mx.float32))])
        mx.eval(self._is_b, self._dt_ext, self._exp_a)
        self.norm_w, self.norm_eps = la.norm.weight, la.norm.eps
        self.out_proj = fuse_linears([la.out_proj])
        s = self.dk ** -0.5
        object.__setattr__(self, "_qk_scale",                  # python floats
                           [[s * s]] * self.hk + [[s]] * self.hk)
        mx.eval(self.conv_taps)

    def _project(self, x):
        """(qkv, z, b, a, ab): z (B, S, Hv, Dv); ab the adjacent [b | a]
        columns of the fused output (None when not fused)."""
        B, S, _ = x.shape
        cd, vd, hv = self.conv_dim, self.value_dim, self.hv
        if self.fused:
            p = self.in_proj(x)
            qkv, z, ab = mx.split(p, [cd, cd + vd], axis=-1)   # one view node
            b, a = mx.split(ab, [hv], axis=-1)          # unused at decode: pruned
        elif len(self.in_projs) == 2:
            p0, ab = self.in_projs[0](x), self.in_projs[1](x)
            (qkv, z), (b, a) = mx.split(p0, [cd], -1), mx.split(ab, [hv], -1)
        else:
            (qkv, z, b, a), ab = (p(x) for p in self.in_projs), None
        return qkv, z.reshape(B, S, hv, self.dv), b, a, ab

    def _gated_norm(self, out, z):
        """mlx-lm's RMSNormGated: precise swiglu of z and rms_norm(out)."""
        xn = mx.fast.rms_norm(out, self.norm_w, self.norm_eps)
        return (nn.silu(z.astype(mx.float32)) * xn.astype(mx.float32)).astype(out.dtype)

    # -- any length: mlx-lm's math (qwen3_5.GatedDeltaNet.__call__) -----------
    def general(self, x, mask=None, cache=None):
        B, S, _ = x.shape
        qkv, z, b, a, _ = self._project(x)
        if cache is not None and cache[0] is not None:
            conv_state = cache[0]
        else:
            conv_state = mx.zeros((B, self.kernel - 1, self.conv_dim), x.dtype)
        if mask is not None:
            qkv = mx.where(mask[..., None], qkv, 0)
        conv_input = mx.concatenate([conv_state, qkv], axis=1)
        if cache is not None:
            n_keep = self.kernel - 1
            if cache.lengths is not None:
                ends = mx.clip(cache.lengths, 0, S)
                positions = (ends[:, None] + mx.arange(n_keep))[..., None]
                cache[0] = mx.take_along_axis(conv_input, positions, axis=1)
            else:
                cache[0] = mx.contiguous(conv_input[:, -n_keep:, :])
        out, state = self._core(qkv, z, b, a, conv_input,
                                cache[1] if cache else None, mask)
        if cache is not None:
            cache[1] = state
            cache.advance(S)
        return out

    def _core(self, qkv, z, b, a, conv_input, state, mask):
        """mlx-lm's conv, q/k norm, gated_delta_update, gated norm, out_proj."""
        B, S = qkv.shape[:2]
        conv_out = nn.silu(mx.conv1d(conv_input, self.conv_w,
                                     groups=self.conv_dim))
        kd = self.key_dim
        q = conv_out[..., :kd].reshape(B, S, self.hk, self.dk)
        k = conv_out[..., kd:2 * kd].reshape(B, S, self.hk, self.dk)
        v = conv_out[..., 2 * kd:].reshape(B, S, self.hv, self.dv)
        inv = self.dk ** -0.5
        eps = 1e-6 * inv ** 2
        q = (inv ** 2) * mx.fast.rms_norm(q, None, eps)
        k = inv * mx.fast.rms_norm(k, None, eps)
        out, state = gated_delta_update(q, k, v, a, b, self.A_log, self.dt_bias,
                                        state, mask, use_kernel=True)
        out = self._gated_norm(out, z)
        return self.out_proj(out.reshape(B, S, -1)), state

    # -- one token, traced inside a compiled layer step -----------------------
    def _gates(self, b, a, ab=None):
        """(beta, g) float32, as mlx-lm computes them: beta = sigmoid(b) in b's
        dtype, g = exp(-exp(A_log) * softplus(a + dt_bias)). Given `ab` (the
        adjacent [b | a] columns of the fused projection), one kernel does
        both: a where() over the 2*Hv columns."""
        f32 = mx.float32
        if ab is None:
            g = mx.exp(-mx.exp(self.A_log.astype(f32)) * nn.softplus(a + self.dt_bias))
            return mx.sigmoid(b).astype(f32), g
        gb = mx.where(self._is_b, mx.sigmoid(ab).astype(f32),
                      mx.exp(-self._exp_a * nn.softplus(ab + self._dt_ext)))
        return mx.split(gb, [self.hv], axis=-1)

    def decode(self, x, conv_state, state):
        """x (B, 1, hidden) -> (out, new conv_state, new state)."""
        B = x.shape[0]
        hk, hv, dk, dv, kd = self.hk, self.hv, self.dk, self.dv, self.key_dim
        if self.recurrence == "fused":       # everything between the projections
            y, conv_state, state = gdn_step(self, self.in_proj(x), conv_state, state)
            return self.out_proj(y), conv_state, state
        qkv, z, b, a, ab = self._project(x)
        conv_in = mx.concatenate([conv_state, qkv], axis=1)     # (B, K, C)
        if self.recurrence == "mlx_lm":
            out, state = self._core(qkv, z, b, a, conv_in, state, None)
            return out, conv_in[:, 1:], state
        f32 = mx.float32
        acc = conv_in[:, 0:1].astype(f32) * self.conv_taps[0]
        for j in range(1, self.kernel):
            acc = acc + conv_in[:, j:j + 1].astype(f32) * self.conv_taps[j]
        conv_out = nn.silu(acc.astype(x.dtype))                  # (B, 1, C)
        qk, v = mx.split(conv_out, [2 * kd], axis=-1)
        v = v.reshape(B, 1, hv, dv)
        qk = qk.reshape(B, 1, 2 * hk, dk)
        eps = 1e-6 * dk ** -1.0
        qk = (mx.fast.rms_norm(qk, None, eps)
              * mx.array(self._qk_scale, x.dtype)).astype(f32)
        q, k = mx.split(qk, [hk], axis=2)
        beta, g = self._gates(b, a, ab)
        if self.recurrence == "fast":
            y, state = mx.fast.gated_delta_update(q, k, v.astype(f32), g, beta, state)
        elif self.recurrence == "cuda":
            from mlxprof.decode.kernels.cuda_gdn import gated_delta_cuda
            y, state = gated_delta_cuda(q, k, v, g, beta, state, out_dtype=x.dtype)
        elif self.recurrence == "algebraic":
            y, state = _delta_step_algebraic(qk, v, g, beta, state)
        else:
            y, state = _delta_step(q, k, v, g, beta, state)
        out = self._gated_norm(y.astype(x.dtype), z)
        return self.out_proj(out.reshape(B, 1, -1)), conv_in[:, 1:], state


def _delta_step(q, k, v, g, beta, state):
    """mlx-lm's _gated_delta_step_ops at T=1, heads grouped instead of repeated.

    q, k (B, 1, Hk, Dk); v (B, 1, Hv, Dv); g, beta (B, 1, Hv);
    state (B, Hv, Dv, Dk) float32. Returns y (B, 1, Hv, Dv) in q's dtype
    (float32 when q is) and the new state.
    """
    B, _, hk, dk = k.shape
    hv, dv = v.shape[-2:]
    r = hv // hk
    s = state.reshape(B, hk, r, dv, dk)
    kk = k.reshape(B, hk, 1, 1, dk)
    qq = q.reshape(B, hk, 1, 1, dk)
    s = s * g.reshape(B, hk, r, 1, 1)
    kv_mem = (s * kk).sum(axis=-1)                                # (B,hk,r,dv)
    delta = (v.reshape(B, hk, r, dv) - kv_mem) * beta.reshape(B, hk, r, 1)
    s = s + kk * delta[..., None]
    y = (s * qq).sum(axis=-1)
    return y.reshape(B, 1, hv, dv).astype(q.dtype), s.reshape(B, hv, dv, dk)


def _delta_step_algebraic(qk, v, g, beta, state):
    """_delta_step with the decay and the update folded out of the reductions.

    qk (B, 1, 2*Hk, Dk) holds q heads then k heads. With s' = g*s and
    s'' = s' + k (x) delta:  s'.k = g (s.k) and s''.q = g (s.q) + delta (k.q).
    So one reduction of s against [q; k], one tiny k.q, and one write of the
    new state: fewer kernels, the same math up to float32 rounding.
    """
    B, _, h2, dk = qk.shape
    hk = h2 // 2
    hv, dv = v.shape[-2:]
    r = hv // hk
    q, k = qk[:, :, :hk], qk[:, :, hk:]
    qk_b = qk.reshape(B, 2, hk, dk).transpose(0, 2, 1, 3)[:, :, None, None]
    s = state.reshape(B, hk, r, dv, 1, dk)
    sq_sk = (s * qk_b).sum(axis=-1)                               # (B,hk,r,dv,2)
    kdq = (k.astype(mx.float32) * q).sum(axis=-1).reshape(B, hk, 1, 1)
    gg = g.reshape(B, hk, r, 1)
    delta = (v.reshape(B, hk, r, dv) - gg * sq_sk[..., 1]) * beta.reshape(B, hk, r, 1)
    y = gg * sq_sk[..., 0] + delta * kdq
    s = state.reshape(B, hk, r, dv, dk) * gg[..., None] \
        + k.reshape(B, hk, 1, 1, dk) * delta[..., None]
    return y.reshape(B, 1, hv, dv).astype(qk.dtype), s.reshape(B, hv, dv, dk)
