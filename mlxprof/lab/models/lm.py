"""``LM``: a loaded model with its tokenizer, name, scale, config and prompts.

Example:
    >>> import mlxprof.lab.models as models
    >>> lm = models.load("qwen3-8b", scale="tiny", seed=0)
    >>> lm.prompt(8).shape
    (8,)
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from mlxprof.lab.models.configs import text_config

# Filler for real-text prompts of a given length (public-domain style prose).
FILLER = (
    "The history of computing is a history of trading one scarce resource for "
    "another. Early machines were limited by memory, later ones by the speed at "
    "which memory could feed the processor. Today a language model decoding one "
    "token at a time reads every weight it needs from memory once per token, so "
    "its speed is set by bandwidth, by the number of kernels launched, and by how "
    "often the host waits for the device. Explain these limits in plain words, "
    "give one example of each, and say which matters most for a small model. "
)


@dataclass
class LM:
    """A loaded language model.

    Attributes: ``model`` (mlx-lm module), ``tokenizer`` (mlx-lm
    ``TokenizerWrapper`` or None for synthetic models), ``name``, ``scale``,
    ``config`` (dict, mlx-lm style, with ``quantization`` when quantized),
    ``seed`` (None for real weights).
    """

    model: nn.Module
    tokenizer: Any
    name: str
    scale: str
    config: dict = field(default_factory=dict)
    seed: int | None = None

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding (the ids a prompt may use)."""
        return int(text_config(self.config).get("vocab_size")
                   or self.model.model.embed_tokens.weight.shape[0])

    @property
    def context(self) -> int | None:
        """``max_position_embeddings``: the longest sequence the model is for."""
        ctx = text_config(self.config).get("max_position_embeddings")
        return int(ctx) if ctx else None

    def prompt(self, n_tokens: int | str, seed: int = 0) -> mx.array:
        """A 1-D int32 prompt of ``n_tokens`` ids, or the chat-encoded text.

        Synthetic models get seeded random ids; models with a tokenizer get a
        chat-templated real prompt of exactly ``n_tokens`` (see
        :func:`chat_prompt`). A string is passed to :meth:`encode_chat`.
        ``n_tokens`` must be an integer in 1..:attr:`context`.

        Example:
            >>> lm.prompt(4, seed=1).dtype                   # doctest: +SKIP
            mlx.core.int32
        """
        if isinstance(n_tokens, str):
            return self.encode_chat(n_tokens)
        self._check_length(n_tokens)
        if self.tokenizer is None:
            return random_prompt(self.vocab_size, int(n_tokens), seed)
        return chat_prompt(self.tokenizer, int(n_tokens))

    def _check_length(self, n) -> None:
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n <= 0:
            raise ValueError(f"n_tokens must be an integer > 0, got {n!r}")
        if self.context is not None and n > self.context:
            raise ValueError(f"n_tokens={n} is longer than {self.name}'s context of "
                             f"{self.context} tokens (max_position_embeddings)")

    def encode_chat(self, text: str) -> mx.array:
        """``text`` as one user turn of the chat template, ready to answer.

        Example:
            >>> lm.encode_chat("What is the capital of France?")  # doctest: +SKIP
        """
        if self.tokenizer is None:
            raise ValueError(f"{self.name} is synthetic: it has no tokenizer; "
                             "use lm.prompt(n_tokens) for random ids")
        return mx.array(chat_ids(self.tokenizer, text), dtype=mx.int32)


def random_prompt(vocab_size: int, n: int, seed: int = 0) -> mx.array:
    """``n`` seeded random ids in [0, vocab_size) (numpy PCG64: portable)."""
    ids = np.random.default_rng(seed).integers(0, vocab_size, size=n)
    return mx.array(ids.astype(np.int32))


def chat_ids(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` as a user message, with the generation prompt."""
    messages = [{"role": "user", "content": text}]
    if getattr(tokenizer, "has_chat_template", False):
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        return list(ids["input_ids"] if isinstance(ids, dict) else ids)
    return list(tokenizer.encode(text))


def chat_prompt(tokenizer, n: int) -> mx.array:
    """A chat prompt of exactly ``n`` ids: template around filler text.

    The user turn is filled with :data:`FILLER` tokens so the whole prompt is
    ``n`` ids long; when ``n`` is shorter than the template itself, the last
    ``n`` ids are kept (they end with the assistant header).
    """
    head, tail = template_parts(tokenizer)
    room = n - len(head) - len(tail)
    if room <= 0:
        ids = (head + tail)[-n:]
    else:
        filler = tokenizer.encode(FILLER, add_special_tokens=False)
        body = (filler * (room // len(filler) + 1))[:room]
        ids = head + body + tail
    return mx.array(ids, dtype=mx.int32)


def template_parts(tokenizer) -> tuple[list[int], list[int]]:
    """Ids of the chat template before and after the user's text."""
    marker = "@@MLXPROF_USER_TEXT@@"
    messages = [{"role": "user", "content": marker}]
    if not getattr(tokenizer, "has_chat_template", False):
        return [], []
    text = tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False)
    before, after = text.split(marker)
    return _encode(tokenizer, before), _encode(tokenizer, after)


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text, add_special_tokens=False)) if text else []
