"""Model specs shipped in ``mlxprof/lab/models/specs/<name>.json``: config + presets.

Each JSON holds ``config`` (the public config.json values, in the shape
mlx-lm's ``ModelArgs.from_dict`` takes), ``quantization`` (the MLX 4-bit
release recipe), ``presets`` (overrides per scale, merged into ``config``)
and ``keeps`` (what each preset keeps, in words).

=========  ==============================================================
scale      keeps
=========  ==============================================================
full       the public shapes, unchanged
small      layer count and layer-type pattern, experts, top-k, shared
           expert, head dims, quantization: the same primitives per decode
           step as ``full``; shrinks hidden size, head counts, FFN, vocab
tiny       one period of the layer pattern, a few experts (top-k < experts),
           shared expert; tiny widths, for tests
=========  ==============================================================

Example:
    >>> from mlxprof.lab.models.configs import model_config
    >>> model_config("qwen3-8b", "small")["num_hidden_layers"]
    36
"""
from __future__ import annotations

import copy
import json
from importlib import resources

SCALES = ("tiny", "small", "full")
SYNTHETIC = ("qwen3-8b", "qwen3.5-35b-a3b", "qwen3-30b-a3b")


def spec(name: str) -> dict:
    """The whole JSON spec of a synthetic model ``name`` (shipped in the package).

    Example:
        >>> spec("qwen3-8b")["config"]["model_type"]
        'qwen3'
    """
    path = resources.files("mlxprof.lab.models") / "specs" / f"{name}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no model spec for {name!r}; synthetic models: {', '.join(SYNTHETIC)}")
    return json.loads(path.read_text())


def check_scale(scale: str) -> str:
    """Return ``scale`` or raise a clear ValueError."""
    if scale not in SCALES:
        raise ValueError(
            f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    return scale


def merge(base: dict, over: dict) -> dict:
    """Deep-merge ``over`` into a copy of ``base`` (dicts merge, the rest replaces)."""
    out = copy.deepcopy(base)
    for key, val in over.items():
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


def model_config(name: str, scale: str = "full") -> dict:
    """The mlx-lm config dict of ``name`` at ``scale`` (no quantization key).

    Example:
        >>> model_config("qwen3.5-35b-a3b", "tiny")["text_config"]["num_experts"]
        8
    """
    s = spec(name)
    check_scale(scale)
    if scale == "full":
        return copy.deepcopy(s["config"])
    return merge(s["config"], s["presets"][scale])


def text_config(config: dict) -> dict:
    """The text-model part of a config (``text_config`` if nested)."""
    return config.get("text_config", config)
