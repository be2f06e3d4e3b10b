"""The optimized model: embedding, optimized layers, final norm and lm_head.

Keeps mlx-lm's calling convention `model(inputs[None], cache=cache)` and its
cache types (`make_cache()` gives the same KVCache / ArraysCache list mlx-lm
would), so `mlx_lm.generate.generate_step` and mlxprof's loops run it as is.

Example:
    >>> # opt = mlxprof.decode.optimize.optimize_model(model); opt(tokens[None], cache=c)
"""
from __future__ import annotations

from typing import Optional

import mlx.core as mx
import mlx.nn as nn
from mlx_lm.models.base import create_attention_mask, create_ssm_mask
from mlx_lm.models.cache import KVCache

__all__ = ["Embedding", "OptimizedModel"]


class Embedding(nn.Module):
    """Shares the arrays of an nn.Embedding or nn.QuantizedEmbedding."""

    def __init__(self, emb):
        super().__init__()
        self.weight = emb.weight
        self.quantized = "scales" in emb
        if self.quantized:
            self.scales = emb.scales
            if emb.get("biases") is not None:
                self.biases = emb.biases
            self.qspec = (emb.group_size, emb.bits, getattr(emb, "mode", "affine"))

    def __call__(self, ids):
        if not self.quantized:
            return self["weight"][ids]
        gs, bits, mode = self.qspec
        b = self.get("biases")
        return mx.dequantize(self["weight"][ids], scales=self["scales"][ids],
                             biases=b[ids] if b is not None else None,
                             group_size=gs, bits=bits, mode=mode)

    def as_linear(self, x):
        if not self.quantized:
            return x @ self["weight"].T
        gs, bits, mode = self.qspec
        return mx.quantized_matmul(x, self["weight"], self["scales"],
                                   self.get("biases"), transpose=True,
                                   group_size=gs, bits=bits, mode=mode)


class OptimizedModel(nn.Module):
    """An mlx-lm language model rewritten for decode; see optimize_model()."""

    def __init__(self, original, embed, layers, norm, lm_head, args, arch: str,
                 options):
        super().__init__()
        self.embed_tokens = embed
        self.decoder_layers = layers
        self.norm_w, self.norm_eps = norm.weight, norm.eps
        self.lm_head = lm_head                      # Proj, or None when tied
        self.args = args
        self.model_type = getattr(original, "model_type", arch)
        self.arch = arch
        self.options = options
        object.__setattr__(self, "_original", original)  # not a child module
        kinds = [l.mask_kind for l in layers]
        self._idx = {k: kinds.index(k) for k in ("fa", "swa", "ssm") if k in kinds}
        self._window = getattr(args, "sliding_window", None)
        self._head = mx.compile(self._head_fn) if options.compile else self._head_fn
        self._logits = mx.compile(self._logits_fn) if options.compile else self._logits_fn
        self._norm = mx.compile(mx.fast.rms_norm) if options.compile else mx.fast.rms_norm
        for layer, nxt in zip(layers, layers[1:]):
            layer.set_next_norm(nxt.in_w, nxt.in_eps)
        if layers:
            layers[-1].set_next_norm(self.norm_w, self.norm_eps)

    # -- mlx-lm compatibility -------------------------------------------------
    @property
    def layers(self):
        return self.decoder_layers

    @property
    def original(self):
        """The mlx-lm model this one was built from (unchanged)."""
        return self._original

    def make_cache(self):
        """The cache list mlx-lm would make for the original model."""
        orig = self._original
        if hasattr(orig, "make_cache"):
            return orig.make_cache()
        return [KVCache() for _ in self.decoder_layers]

    # -- forward ----------------------------------------------------------------
    def _head_fn(self, h):
        return self._logits_fn(mx.fast.rms_norm(h, self.norm_w, self.norm_eps))

    def _logits_fn(self, hn):
        """Logits from the final-normed hidden state."""
        if self.lm_head is None:
            return self.embed_tokens.as_linear(hn)
        return self.lm_head(hn)

    def _masks(self, h, cache):
        masks = {}
        if "fa" in self._idx:
            masks["fa"] = create_attention_mask(h, cache[self._idx["fa"]])
        if "swa" in self._idx:
            masks["swa"] = create_attention_mask(h, cache[self._idx["swa"]],
                                                 window_size=self._window)
        if "ssm" in self._idx:
            masks["ssm"] = create_ssm_mask(h, cache[self._idx["ssm"]])
        return masks

    def __call__(self, inputs, cache=None, input_embeddings: Optional[mx.array] = None):
        if (input_embeddings is None and inputs.shape[1] > 1
                and self.options.prefill == "mlx_lm"):
            return self._original(inputs, cache=cache)   # the prompt: mlx-lm's own code
        h = input_embeddings if input_embeddings is not None else self.embed_tokens(inputs)
        if cache is None:
            cache = [None] * len(self.decoder_layers)
        masks = self._masks(h, cache)
        decode = self.options.decode_path and h.shape[1] == 1
        offsets: dict = {}
        hn = None                 # h normalized for the layer about to run
        for layer, c in zip(self.decoder_layers, cache):
            mask = masks[layer.mask_kind]
            if decode and layer.can_step(c, mask):
                if hn is None:
                    hn = self._norm(h, layer.in_w, layer.in_eps)
                h, hn = layer.step(h, hn, mask, c, offsets)
            else:
                h, hn = layer(h, mask, c), None
        if not decode:
            return self._head_fn(h)
        return self._logits(hn) if hn is not None else self._head(h)
