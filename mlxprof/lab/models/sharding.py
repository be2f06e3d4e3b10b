"""Split a model over the ranks of an `mx.distributed` group with mlx-lm's own code.

Tensor parallel: `model.shard(group)` (mlx-lm: qwen3, qwen3_5, llama and
others) swaps each projection for a sharded one; every attention and MLP block
then ends in an `all_sum`. Pipeline parallel: `model.model.pipeline(group)`
(qwen3_5 and a few others) gives each rank a run of layers; activations travel
by `send` / `recv_like` and the last hidden state by `all_gather`.

The synthetic presets are narrower than any real model; a tiny preset can
have one KV head, which two ranks cannot split. `shardable(config, n)` raises
head counts and widths to the smallest values `n` ranks can split at the
quantization group size; the `full` shapes already can, so they stay as they
are. `models.load(..., ranks=n)` builds that config unsharded: the reference
a sharded run must match token for token.

Example:
    >>> from mlxprof.lab.models.configs import model_config
    >>> cfg = shardable(model_config("qwen3-8b", "tiny"), 2)
    >>> cfg["num_key_value_heads"], cfg["intermediate_size"]
    (2, 128)
"""
from __future__ import annotations

import copy

import mlx.nn as nn

PARALLEL = ("tensor", "pipeline")

_HEADS = ("num_attention_heads", "num_key_value_heads", "linear_num_key_heads",
          "linear_num_value_heads")
_WIDTHS = ("intermediate_size", "moe_intermediate_size", "shared_expert_intermediate_size")


def _round_up(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple


def shardable(config: dict, n: int, group_size: int = 64) -> dict:
    """A copy of `config` whose heads and widths `n` ranks can split.

    Head counts go up to a multiple of `n` (query heads also to a multiple of
    the KV heads, linear-attention value heads of the key heads); the FFN
    widths, split along the quantized input dimension by the `sharded-to-all`
    projections, to a multiple of `n * group_size`. Values that already
    divide are kept, so `shardable(full, 2) == full` for the public shapes.

    Example:
        >>> shardable({"num_attention_heads": 4, "num_key_value_heads": 1}, 2)
        {'num_attention_heads': 4, 'num_key_value_heads': 2}
    """
    out = copy.deepcopy(config)
    tc = out.get("text_config", out)
    for key in _HEADS:
        if key in tc:
            tc[key] = _round_up(tc[key], n)
    for key, base in (("num_attention_heads", "num_key_value_heads"),
                      ("linear_num_value_heads", "linear_num_key_heads")):
        if key in tc and base in tc:
            tc[key] = _round_up(tc[key], tc[base])
    for key in _WIDTHS:
        if key in tc:
            tc[key] = _round_up(tc[key], n * group_size)
    if "vocab_size" in tc:
        tc["vocab_size"] = _round_up(tc["vocab_size"], n)
    return out


def check_heads(config: dict, n: int, name: str) -> None:
    """ValueError (one line) when tensor parallel over `n` ranks cannot split the heads.

    Example:
        >>> check_heads({"num_attention_heads": 9, "num_key_value_heads": 3}, 3, "smollm2")
        >>> check_heads({"num_attention_heads": 9, "num_key_value_heads": 3}, 2, "smollm2")
        Traceback (most recent call last):
        ...
        ValueError: smollm2 cannot be split over 2 ranks: its 9 attention heads and 3 KV heads must both divide by the group size (try 3 ranks, or parallel='pipeline' where the model has it)
    """
    tc = config.get("text_config", config)
    heads, kv = tc.get("num_attention_heads", n), tc.get("num_key_value_heads", n)
    if heads % n or kv % n:
        ok = [k for k in range(2, heads + 1) if heads % k == 0 and kv % k == 0]
        hint = f"try {ok[0]} ranks, or " if ok else "use "
        raise ValueError(f"{name} cannot be split over {n} ranks: its {heads} attention heads "
                         f"and {kv} KV heads must both divide by the group size ({hint}"
                         "parallel='pipeline' where the model has it)")


def shard(model: nn.Module, group, parallel: str = "tensor", name: str = "model") -> nn.Module:
    """Split `model` in place over `group` with mlx-lm's `shard` or `pipeline`.

    Example:
        >>> shard(lm.model, mx.distributed.init(), "tensor")   # doctest: +SKIP
    """
    if parallel not in PARALLEL:
        raise ValueError(f"parallel must be one of {PARALLEL}, got {parallel!r}")
    if group is None or group.size() < 2:
        raise ValueError("shard= needs an mx.distributed group of 2+ ranks: run under "
                         "mlx.launch -n 2 ... and pass mx.distributed.init()")
    if parallel == "tensor":
        if not hasattr(model, "shard"):
            raise ValueError(f"{name}: this mlx-lm model has no shard() (tensor parallel); "
                             "try parallel='pipeline'")
        model.shard(group)
    else:
        inner = getattr(model, "model", None)
        if not hasattr(inner, "pipeline"):
            raise ValueError(f"{name}: this mlx-lm model has no model.pipeline() "
                             "(pipeline parallel); try parallel='tensor'")
        inner.pipeline(group)
    return model

