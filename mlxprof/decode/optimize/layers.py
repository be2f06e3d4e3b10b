"""Decoder layers: mixer (attention or GDN) + feed-forward, with compiled decode.

A layer has two paths:

* `__call__(x, mask, cache)`: any sequence length, mlx-lm's math (prefill,
  and decode when Options.decode_path is off or the cache is unusual);
* `step(x, xn, mask, cache, offsets) -> (h, hn)`: one token. `xn` is x
  already normalized by this layer's input norm, and `hn` is h normalized by
  the *next* layer's input norm (the final norm after the last layer), so
  each residual add and the norm after it are one step (one kernel with
  Options.add_norm on a CUDA GPU, cuda_norm.py). Everything with static
  shapes runs in `mx.compile`d closures over this layer's weights:
  - attention layer: [fused q/k/v, q/k norm, RoPE, cache write] -> sdpa
    in Python (the valid length grows every token; one kernel over the
    whole cache buffers with Options.attention, cuda_attention.py) ->
    [gate, o_proj, residual and norm, MLP/MoE, residual and next norm];
  - GDN layer: the whole layer, conv and recurrent states passed explicitly.

Example:
    >>> # built by mlxprof.decode.optimize.optimize_model; see model.py
"""
from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import scaled_dot_product_attention
from mlx_lm.models.cache import KVCache

from mlxprof.decode.kernels import cuda_attention
from mlxprof.decode.kernels.cuda_norm import add_norm

__all__ = ["AttentionLayer", "GDNLayer"]


def _rms(x, w, eps):
    return mx.fast.rms_norm(x, w, eps)


class _Layer(nn.Module):
    def __init__(self, layer, mixer, ffn, mask_kind: str, cuda_norm: bool = False):
        super().__init__()
        self.in_w, self.in_eps = layer.input_layernorm.weight, layer.input_layernorm.eps
        self.post_w = layer.post_attention_layernorm.weight
        self.post_eps = layer.post_attention_layernorm.eps
        self.mixer, self.ffn = mixer, ffn
        self.mask_kind = mask_kind
        self.cuda_norm = cuda_norm
        self.set_next_norm(self.in_w, self.in_eps)

    def set_next_norm(self, w, eps: float) -> None:
        """The norm whose output step() returns: the next layer's input norm."""
        object.__setattr__(self, "_next", (w, eps))    # not a parameter of this layer

    def _ffn_residual(self, h):
        return self.ffn.add_to(h, _rms(h, self.post_w, self.post_eps))

    def _tail(self, x, r):
        """(h, hn): x + r, the FFN with its residual add, and the next norm."""
        h, n = add_norm(x, r, self.post_w, self.post_eps, self.cuda_norm)
        return self.ffn.add_norm_to(h, n, *self._next, self.cuda_norm)

    def __call__(self, x, mask=None, cache=None):
        r = self.mixer.general(_rms(x, self.in_w, self.in_eps), mask, cache)
        return self._ffn_residual(x + r)


class AttentionLayer(_Layer):
    """Full-attention decoder layer (llama / qwen3 / qwen3_moe / qwen3_5)."""

    def __init__(self, layer, mixer, ffn, mask_kind="fa", compile_=True,
                 kv_in_compile=True, cuda_norm=False):
        super().__init__(layer, mixer, ffn, mask_kind, cuda_norm)
        wrap = mx.compile if compile_ else (lambda f: f)
        self._pre = wrap(self._pre_fn)
        self._pre_kv = wrap(self._pre_kv_fn)
        self._post = wrap(self._post_gated if mixer.gated else self._post_plain)
        self.kv_in_compile = kv_in_compile

    def _pre_fn(self, xn, offset):
        return self.mixer.decode_qkv(xn, offset)

    def _pre_kv_fn(self, xn, offset, at, keys, values):
        """_pre_fn + the KVCache write (keys[..., offset, :] = k) in one call.

        `at` is `offset` as a 1-element vector (slice_update's start)."""
        q, k, v, gate = self._pre_fn(xn, offset)
        keys = mx.slice_update(keys, k, at, axes=(2,))
        values = mx.slice_update(values, v, at, axes=(2,))
        return q, keys, values, gate

    def _post_plain(self, o, x):
        return self._tail(x, self.mixer.decode_out(o, None))

    def _post_gated(self, o, gate, x):
        return self._tail(x, self.mixer.decode_out(o, gate))

    def can_step(self, cache, mask) -> bool:
        return cache is not None and (mask is None or isinstance(mask, mx.array))

    def step(self, x, xn, mask, cache, offsets):
        n = cache.offset
        if n not in offsets:     # shared by the layers: built once per token
            offsets[n] = (mx.array(n, mx.int32), mx.array([n], mx.int32))
        off, at = offsets[n]
        if (self.kv_in_compile and type(cache) is KVCache and cache.keys is not None
                and n < cache.keys.shape[2]):
            # what KVCache.update_and_fetch does when no growth is needed
            q, keys, values, gate = self._pre_kv(xn, off, at, cache.keys, cache.values)
            cache.keys, cache.values, cache.offset = keys, values, n + 1
            o = self._attend_buffers(q, keys, values, mask, cache, offsets)
        else:
            q, k, v, gate = self._pre(xn, off)
            o = self.mixer.attend(q, k, v, cache, mask)
        if gate is None:
            return self._post(o, x)
        return self._post(o, gate, x)

    def _attend_buffers(self, q, keys, values, mask, cache, offsets):
        """sdpa of q over the first cache.offset positions of the cache
        buffers: one kernel with mixer.cuda_attention (decode at one token has
        no mask; the valid length an int32 array shared by the layers), else
        mlx-lm's slices + sdpa."""
        m, n = self.mixer, cache.offset
        if m.cuda_attention and mask is None:
            if ("valid", n) not in offsets:
                offsets[("valid", n)] = mx.array(n, mx.int32)
            return cuda_attention.decode_attention(q, keys, values, offsets[("valid", n)],
                                                   m.scale)
        if n < keys.shape[2]:
            keys, values = keys[..., :n, :], values[..., :n, :]
        return scaled_dot_product_attention(q, keys, values, cache=cache,
                                            scale=m.scale, mask=mask)


class GDNLayer(_Layer):
    """Gated DeltaNet decoder layer (qwen3_5 / qwen3_next linear layers)."""

    def __init__(self, layer, mixer, ffn, mask_kind="ssm", compile_=True,
                 cuda_norm=False):
        super().__init__(layer, mixer, ffn, mask_kind, cuda_norm)
        self._step = mx.compile(self._step_fn) if compile_ else self._step_fn

    def _step_fn(self, x, xn, conv_state, state):
        r, conv_state, state = self.mixer.decode(xn, conv_state, state)
        h, hn = self._tail(x, r)
        return h, hn, conv_state, state

    def can_step(self, cache, mask) -> bool:
        return (cache is not None and mask is None and cache.lengths is None
                and getattr(cache, "left_padding", None) is None)

    def step(self, x, xn, mask, cache, offsets):
        m = self.mixer
        B = x.shape[0]
        conv = cache[0]
        if conv is None:
            conv = mx.zeros((B, m.kernel - 1, m.conv_dim), x.dtype)
        state = cache[1]
        if state is None:
            state = mx.zeros((B, m.hv, m.dv, m.dk), mx.float32)
        h, hn, cache[0], cache[1] = self._step(x, xn, conv, state)
        cache.advance(1)
        return h, hn
