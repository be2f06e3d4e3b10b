"""Weight bytes: stored in total, and read per decoded token.

Per decoded token (batch 1) a model reads: every dense weight (attention,
linear attention, norms, shared experts, router gates, ``lm_head``), one row
of the embedding, and ``top_k / n_experts`` of each routed-expert tensor.
Quantized tensors count as stored: packed weights + scales + biases. With
tied embeddings the whole embedding is read as the output projection, plus
the looked-up row.

Example:
    >>> import mlxprof.lab.models as models
    >>> lm = models.load("qwen3-8b", scale="tiny")
    >>> models.bytes_per_token(lm) < models.weight_bytes(lm)
    True
"""
from __future__ import annotations

import mlx.nn as nn
from mlx.utils import tree_flatten

from mlxprof.lab.models.configs import text_config


def _model(lm) -> nn.Module:
    return lm if isinstance(lm, nn.Module) else lm.model


def weight_bytes(lm) -> int:
    """Bytes of all parameters as stored (an ``LM`` or an ``nn.Module``)."""
    return sum(a.nbytes for _, a in tree_flatten(_model(lm).parameters()))


def top_k(model: nn.Module, config: dict | None = None) -> int | None:
    """Experts routed per token: the MoE blocks' ``top_k``, else the config's."""
    for _, mod in model.named_modules():
        for attr in ("top_k", "num_experts_per_tok"):
            k = getattr(mod, attr, None)
            if isinstance(k, int) and hasattr(mod, "switch_mlp"):
                return k
    k = text_config(config or {}).get("num_experts_per_tok")
    return int(k) if k else None


def _is_tied(params: dict) -> bool:
    return not any(p.startswith("lm_head.") or ".lm_head." in p for p in params)


def bytes_per_token(lm) -> int:
    """Weight bytes read per decoded token (see the module docstring).

    Example:
        >>> import mlxprof.lab.models as models
        >>> bytes_per_token(models.load("qwen3.5-35b-a3b", "tiny"))
        185992
    """
    model = _model(lm)
    params = dict(tree_flatten(model.parameters()))
    k = top_k(model, getattr(lm, "config", None))
    tied = _is_tied(params)
    total = 0
    for path, arr in params.items():
        if ".switch_mlp." in path:
            total += arr.nbytes // arr.shape[0] * k  # per-expert slice x top-k
        elif "embed_tokens." in path:
            total += arr.nbytes // arr.shape[0] + (arr.nbytes if tied else 0)
        else:
            total += arr.nbytes
    return total
