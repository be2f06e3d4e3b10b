"""Full (softmax) attention with q/k/v in one quantized matmul.

Covers mlx-lm's llama, qwen3, qwen3_moe attention and the gated attention of
qwen3_next / qwen3_5 (q_proj emits [q_h | gate_h] per head). The fused weight
holds the rows of q_proj, k_proj, v_proj reordered as [q | k | v | gate], so
that at decode (one token) q and k are adjacent: one RMSNorm without weight
(then the per-head norm weights as one multiply) and one RoPE serve both.

`general()` is mlx-lm's math for any sequence length (prefill); `decode_qkv()`
is the one-token version that a compiled layer step calls: it avoids the
transposes (at L=1, (B, 1, H, D) and (B, H, 1, D) have the same layout).

Example:
    >>> from mlx_lm.models import qwen3
    >>> # see tests/test_optimize.py for end-to-end checks
"""
from __future__ import annotations


import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import scaled_dot_product_attention

from mlxprof.decode.kernels.cuda_rope import qk_norm_rope
from .fuse import fuse_linears

__all__ = ["Attention"]


def _heads(attn):
    """(n_heads, n_kv_heads, head_dim) of an mlx-lm attention module."""
    h = getattr(attn, "n_heads", None) or getattr(attn, "num_attention_heads")
    hk = getattr(attn, "n_kv_heads", None) or getattr(attn, "num_key_value_heads")
    k_out = attn.k_proj.weight.shape[0]
    return h, hk, k_out // hk


class Attention(nn.Module):
    """q/k/v(/gate) projections fused; o_proj shared; rope shared."""

    def __init__(self, attn, fuse: bool = True, merge_qk_norm: bool = True):
        super().__init__()
        h, hk, d = _heads(attn)
        self.n_heads, self.n_kv, self.head_dim = h, hk, d
        self.scale = attn.scale
        self.gated = attn.q_proj.weight.shape[0] == 2 * h * d
        object.__setattr__(self, "rope", attn.rope)  # stateless, shared, not a child
        qn, kn = getattr(attn, "q_norm", None), getattr(attn, "k_norm", None)
        self.qk_norm = qn is not None
        if self.qk_norm:
            self.q_norm_w, self.k_norm_w = qn.weight, kn.weight
            self.norm_eps = qn.eps
            self.merge_qk_norm = merge_qk_norm
            if merge_qk_norm:
                self.qk_norm_w = mx.concatenate(
                    [mx.broadcast_to(qn.weight, (h, 1, d)),
                     mx.broadcast_to(kn.weight, (hk, 1, d))])
                mx.eval(self.qk_norm_w)
        self.fused = fuse
        if fuse:
            rows = None
            if self.gated:   # q_proj rows: per head [q_h (d) | gate_h (d)]
                head = mx.arange(h)[:, None] * 2 * d + mx.arange(d)[None]
                q_rows, g_rows = head.flatten(), (head + d).flatten()
                kv_rows = 2 * h * d + mx.arange(2 * hk * d)
                rows = mx.concatenate([q_rows, kv_rows, g_rows])
            self.qkv = fuse_linears([attn.q_proj, attn.k_proj, attn.v_proj], rows)
        else:
            self.q_proj = fuse_linears([attn.q_proj])
            self.k_proj = fuse_linears([attn.k_proj])
            self.v_proj = fuse_linears([attn.v_proj])
        self.o_proj = fuse_linears([attn.o_proj])
        self.cuda_rope = False      # q/k norm + RoPE as one CUDA kernel (cuda_rope.py)
        self.cuda_attention = False     # decode sdpa as one CUDA kernel (cuda_attention.py)

    # -- projections ---------------------------------------------------------
    def _project(self, x):
        """(q, k, v, gate) each (B, L, heads * d); gate None if not gated."""
        h, hk, d = self.n_heads, self.n_kv, self.head_dim
        if self.fused:
            p = self.qkv(x)
            q, k, v = p[..., :h * d], p[..., h * d:(h + hk) * d], \
                p[..., (h + hk) * d:(h + 2 * hk) * d]
            gate = p[..., (h + 2 * hk) * d:] if self.gated else None
            return q, k, v, gate
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        gate = None
        if self.gated:
            B, L, _ = x.shape
            q, gate = mx.split(q.reshape(B, L, h, -1), 2, axis=-1)
            q, gate = q.reshape(B, L, -1), gate.reshape(B, L, -1)
        return q, k, v, gate

    # -- any length (prefill): mlx-lm's math -----------------------------------
    def general(self, x, mask=None, cache=None):
        B, L, _ = x.shape
        h, hk, d = self.n_heads, self.n_kv, self.head_dim
        q, k, v, gate = self._project(x)
        q, k = q.reshape(B, L, h, d), k.reshape(B, L, hk, d)
        if self.qk_norm:
            q = mx.fast.rms_norm(q, self.q_norm_w, self.norm_eps)
            k = mx.fast.rms_norm(k, self.k_norm_w, self.norm_eps)
        q, k = q.transpose(0, 2, 1, 3), k.transpose(0, 2, 1, 3)
        v = v.reshape(B, L, hk, d).transpose(0, 2, 1, 3)
        if cache is not None:
            q = self.rope(q, offset=cache.offset)
            k = self.rope(k, offset=cache.offset)
            k, v = cache.update_and_fetch(k, v)
        else:
            q, k = self.rope(q), self.rope(k)
        o = scaled_dot_product_attention(q, k, v, cache=cache, scale=self.scale,
                                         mask=mask)
        o = o.transpose(0, 2, 1, 3).reshape(B, L, -1)
        if gate is not None:
            o = o * mx.sigmoid(gate)
        return self.o_proj(o)

    # -- one token (decode), traced inside a compiled layer step ----------------
    def decode_qkv(self, x, offset):
        """q (B, H, 1, D), k, v (B, Hkv, 1, D), gate (B, 1, H*D) or None."""
        B = x.shape[0]
        h, hk, d = self.n_heads, self.n_kv, self.head_dim
        if self.cuda_rope:
            p = self.qkv(x)
            q, k, v = qk_norm_rope(self, p, offset)
            return q, k, v, p[..., (h + 2 * hk) * d:] if self.gated else None
        if self.fused and (not self.qk_norm or self.merge_qk_norm):
            p = self.qkv(x)
            cuts = [(h + hk) * d, (h + 2 * hk) * d] if self.gated else [(h + hk) * d]
            qk, v, *gate = mx.split(p, cuts, axis=-1)
            qk = qk.reshape(B, h + hk, 1, d)
            v = v.reshape(B, hk, 1, d)
            gate = gate[0] if gate else None
            if self.qk_norm:
                qk = mx.fast.rms_norm(qk, None, self.norm_eps) * self.qk_norm_w
            q, k = mx.split(self.rope(qk, offset=offset), [h], axis=1)
            return q, k, v, gate
        q, k, v, gate = self._project(x)
        q, k = q.reshape(B, h, 1, d), k.reshape(B, hk, 1, d)
        v = v.reshape(B, hk, 1, d)
        if self.qk_norm:
            q = mx.fast.rms_norm(q, self.q_norm_w, self.norm_eps)
            k = mx.fast.rms_norm(k, self.k_norm_w, self.norm_eps)
        return self.rope(q, offset=offset), self.rope(k, offset=offset), v, gate

    def decode_out(self, o, gate):
        """o (B, H, 1, D) from sdpa, or (B, 1, H * D) from cuda_attention
        (no reshape op then) -> o_proj output (B, 1, hidden)."""
        if o.ndim == 4:
            o = o.reshape(o.shape[0], 1, -1)
        if gate is not None:
            o = o * mx.sigmoid(gate)
        return self.o_proj(o)

    def attend(self, q, k, v, cache, mask=None):
        """Cache update + sdpa (outside compile: shapes change every token)."""
        if cache is not None:
            k, v = cache.update_and_fetch(k, v)
        return scaled_dot_product_attention(q, k, v, cache=cache,
                                            scale=self.scale, mask=mask)
