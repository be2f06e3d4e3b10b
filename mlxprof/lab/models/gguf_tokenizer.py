"""A Hugging Face BPE tokenizer rebuilt from GGUF metadata.

GGUF files carry the byte-level BPE vocabulary (``tokenizer.ggml.tokens``),
merges, special-token ids and the chat template. This module turns them into
a ``tokenizers.Tokenizer``, wraps that in ``transformers``'
``PreTrainedTokenizerFast`` and then in mlx-lm's ``TokenizerWrapper`` so
``apply_chat_template``, ``encode``, ``decode`` and streaming detokenization
work as for a model loaded by ``mlx_lm.load``.

Example:
    >>> import mlx.core as mx
    >>> _, meta = mx.load("model.gguf", return_metadata=True)  # doctest: +SKIP
    >>> tok = tokenizer_from_gguf(meta)                          # doctest: +SKIP
    >>> tok.decode(tok.encode("Hello"))                          # doctest: +SKIP
    'Hello'
"""
from __future__ import annotations

import os

import mlx.core as mx

CONTROL = 3  # llama.cpp token type: control (special) token
# llama.cpp pre-tokenizers with digits split one by one before GPT-2 rules.
DIGIT_SPLIT = {"smollm", "starcoder", "refact", "qwen2", "deepseek-llm"}


def _meta(meta: dict, key: str, default=None):
    """A scalar metadata value as a Python object (mx.array scalars unwrapped)."""
    val = meta.get(key, default)
    return val.item() if isinstance(val, mx.array) and val.size == 1 else val


def _backend(tokens: list[str], merges: list[str], pre: str):
    """The ``tokenizers.Tokenizer``: byte-level BPE with GGUF's vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {tok: i for i, tok in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=False))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in DIGIT_SPLIT:
        digits = pre_tokenizers.Digits(individual_digits=True)
        tok.pre_tokenizer = pre_tokenizers.Sequence([digits, byte_level])
    else:
        tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    return tok


def _special(tokens: list[str], types) -> list[str]:
    types = list(types.tolist() if hasattr(types, "tolist") else types or [])
    return [t for t, ty in zip(tokens, types) if ty == CONTROL]


def hf_tokenizer_from_gguf(meta: dict):
    """A ``transformers`` fast tokenizer built from GGUF ``meta``."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast

    model = _meta(meta, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(f"only byte-level BPE GGUF tokenizers are supported, got {model!r}")
    tokens = list(meta["tokenizer.ggml.tokens"])
    backend = _backend(tokens, list(meta["tokenizer.ggml.merges"]),
                       _meta(meta, "tokenizer.ggml.pre", "default"))
    specials = _special(tokens, meta.get("tokenizer.ggml.token_type"))
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t in specials])
    roles = {role: _token(tokens, _meta(meta, f"tokenizer.ggml.{key}_token_id"))
             for role, key in (("bos", "bos"), ("eos", "eos"), ("unk", "unknown"),
                               ("pad", "padding"))}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=roles["bos"], eos_token=roles["eos"],
        unk_token=roles["unk"], pad_token=roles["pad"],
        chat_template=_meta(meta, "tokenizer.chat_template"),
        clean_up_tokenization_spaces=False,
    )


def _token(tokens: list[str], idx) -> str | None:
    return None if idx is None else tokens[int(idx)]


def tokenizer_from_gguf(meta: dict):
    """mlx-lm ``TokenizerWrapper`` (BPE streaming detokenizer) from GGUF ``meta``."""
    from mlx_lm.tokenizer_utils import BPEStreamingDetokenizer, TokenizerWrapper

    hf = hf_tokenizer_from_gguf(meta)
    eos = _meta(meta, "tokenizer.ggml.eos_token_id")
    return TokenizerWrapper(hf, detokenizer_class=BPEStreamingDetokenizer,
                            eos_token_ids=[int(eos)] if eos is not None else None)
