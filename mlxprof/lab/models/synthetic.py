"""Random-weight models built from mlx-lm's own model classes.

The model is constructed lazily (nothing evaluated), every parameter is
replaced by a seeded random bf16 array, the model is quantized like the MLX
4-bit releases (mlx-lm's ``quantize_model`` with the model's own
``quant_predicate``: affine 4-bit, group 64; router gates ``mlp.gate`` and
Qwen3.5's ``shared_expert_gate`` at 8 bits), and only then evaluated, one
layer at a time. Quantized matrices are drawn and quantized in slices of
~16M elements, so no full bf16 matrix ever exists: peak memory stays near
the final quantized size (the full Qwen3.5-35B-A3B, 19.5 GB, builds well
within an 80 GB GPU).

Weights are deterministic for a seed: each parameter draws from its own key,
derived from the seed and the parameter's path.

Example:
    >>> from mlxprof.lab.models.configs import model_config
    >>> model, cfg = build(model_config("qwen3-8b", "tiny"), seed=0)
    >>> cfg["quantization"]["bits"]
    4
"""
from __future__ import annotations

import contextlib
import io
import math
import re
import zlib
from functools import partial

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

OUT_PROJ = ("o_proj", "down_proj", "out_proj")
CHUNK = 1 << 24  # elements drawn at once: bounds the float32 temporaries
BIGRAM_MARGIN = 2.0   # lm_head: sigmas of the bigram successor over the others' max
                      # (None: no bigram prior, the init before issue 14)
ROUTER_GAIN = 3.0     # MoE router logits' std (peaked routing, as in trained models)
_LAYER = re.compile(r"layers\.(\d+)\.")


def model_classes(config: dict):
    """(Model, ModelArgs) of mlx-lm for ``config['model_type']``."""
    from mlx_lm.utils import _get_classes
    return _get_classes(config)


def construct(config: dict) -> nn.Module:
    """The mlx-lm model for ``config``, lazily (no parameter evaluated)."""
    model_cls, args_cls = model_classes(config)
    return model_cls(args_cls.from_dict(config))


def _key(seed: int, path: str) -> mx.array:
    return mx.random.key((seed & 0xFFFFFFFF) << 32 | zlib.crc32(path.encode()))


def init_param(path: str, arr: mx.array, seed: int, n_layers: int,
               dtype=mx.bfloat16) -> mx.array:
    """A seeded random value for one parameter, scaled so bf16 stays finite.

    Norm weights and ``dt_bias`` are ones; ``A_log`` is log U(1, 16) in
    float32 (as in the real checkpoints); matrices are uniform with variance
    1/fan_in, output projections further scaled by 1/sqrt(2 * n_layers) so
    the residual stream stays bounded over 40+ layers; the embedding has
    variance 1.
    """
    key, shape, name = _key(seed, path), arr.shape, path.rsplit(".", 1)[-1]
    if name == "A_log":
        return mx.log(mx.random.uniform(1.0, 16.0, shape, key=key))
    if name == "bias":
        return mx.zeros(shape, dtype=dtype)
    if name == "dt_bias" or arr.ndim == 1:
        return mx.ones(shape, dtype=dtype)
    return mx.concatenate(draw_slices(path, shape, seed, n_layers, dtype))


def bound(path: str, shape: tuple, n_layers: int) -> float:
    """Half-width of the uniform init of matrix ``path`` (see :func:`init_param`)."""
    if "embed_tokens" in path:
        std = 1.0
    elif "conv1d" in path:
        std = 1.0 / math.sqrt(shape[1])
    else:
        std = 1.0 / math.sqrt(shape[-1])
        if any(f".{p}." in path for p in OUT_PROJ):
            std /= math.sqrt(2 * n_layers)
        elif path.endswith("mlp.gate.weight"):     # an MoE router
            std *= ROUTER_GAIN
    return std * math.sqrt(3.0)  # uniform with this std: 4x faster than normal


def _slices(shape: tuple) -> tuple[int, range]:
    """(rows per slice, slice starts) of a matrix drawn by :func:`draw_slices`."""
    step = max(1, CHUNK // max(math.prod(shape[1:]), 1))
    return step, range(0, shape[0], step)


def _uniform_slices(path: str, shape: tuple, seed: int, n_layers: int, dtype):
    """Yield (start, slice) of the plain uniform draw of matrix ``path``."""
    a = bound(path, shape, n_layers)
    step, starts = _slices(shape)
    keys = mx.random.split(_key(seed, path), len(starts))
    for i, k in zip(starts, keys):
        yield i, mx.random.uniform(-a, a, (min(step, shape[0] - i), *shape[1:]),
                                   dtype=dtype, key=k)


def bigram_gain(shape: tuple) -> float:
    """Weight of the embedding in the lm_head rows (see :func:`draw_slices`)."""
    vocab, d = shape[0], shape[-1]
    return (math.sqrt(2 * math.log(vocab)) + BIGRAM_MARGIN) / d


def draw_slices(path: str, shape: tuple, seed: int, n_layers: int,
                dtype=mx.bfloat16, fn=None) -> list:
    """The matrix ``path`` drawn in slices of ~CHUNK elements along axis 0.

    Each slice has its own key (split from the seed and path); the slicing
    depends only on the shape, so values are deterministic for a seed.
    ``fn`` (e.g. quantize) maps each slice as soon as it is drawn, so a
    250M-element embedding never exists whole in float32 or bf16.

    An untied ``lm_head`` gets a bigram prior: row j is its uniform draw
    plus ``bigram_gain * embedding[j - 1]``, so a final hidden state aligned
    with the current token's embedding puts token + 1 about BIGRAM_MARGIN
    standard deviations above the typical maximum of the other logits
    (a confident prediction, as trained models make), while what the layers
    add can still change the winner.
    """
    emb = _embedding_path(path)
    parts = [p for _, p in _uniform_slices(path, shape, seed, n_layers, dtype)]
    if emb is not None and BIGRAM_MARGIN is not None:
        parts = _with_bigram(parts, emb, shape, seed, n_layers, dtype)
    return [fn(p) for p in parts] if fn else parts


def _with_bigram(parts: list, emb: str, shape: tuple, seed: int, n_layers: int,
                 dtype) -> list:
    """lm_head slices plus bigram_gain x the embedding shifted down one row.

    The embedding is redrawn with its own keys (same shape, so the same
    slicing): row j of slice k takes embedding row j - 1, i.e. the last row
    of slice k - 1 (of the last slice for j = 0) and then slice k's rows.
    """
    e = [p for _, p in _uniform_slices(emb, shape, seed, n_layers, dtype)]
    g = bigram_gain(shape)
    return [(p + g * mx.concatenate([e[k - 1][-1:], e[k][:-1]])).astype(dtype)
            for k, p in enumerate(parts)]


def _embedding_path(path: str):
    """The embedding's path for an lm_head weight ``path``, else None."""
    if not path.endswith("lm_head.weight"):
        return None
    return path[: -len("lm_head.weight")] + "model.embed_tokens.weight"


def init_weights(model: nn.Module, seed: int, n_layers: int,
                 dtype=mx.bfloat16) -> None:
    """Replace every parameter of ``model`` by its lazy seeded random value."""
    params = tree_flatten(model.parameters())
    new = [(p, init_param(p, a, seed, n_layers, dtype)) for p, a in params]
    model.update(tree_unflatten(new))


def _is_quantized(mod: nn.Module) -> bool:
    return hasattr(mod, "scales") and hasattr(mod, "bits") and "weight" in mod


def requantize_sliced(model: nn.Module, seed: int, n_layers: int, dtype) -> None:
    """Redraw quantized layers slice by slice, quantizing each slice at once.

    Same values as quantizing the whole :func:`init_param` matrix (affine
    groups run along the last axis, slices along the first), but the lazy
    graph never holds a full bf16 matrix: peak memory stays near the
    quantized size.
    """
    for path, mod in model.named_modules():
        if not _is_quantized(mod):
            continue
        shape = (*mod.weight.shape[:-1], mod.weight.shape[-1] * 32 // mod.bits)
        quant = partial(mx.quantize, group_size=mod.group_size, bits=mod.bits,
                        mode=mod.mode)
        parts = draw_slices(f"{path}.weight", shape, seed, n_layers, dtype, quant)
        mod.weight, mod.scales, *rest = (mx.concatenate(p) for p in zip(*parts))
        if rest:
            mod.biases = rest[0]


def quantize(model: nn.Module, config: dict, recipe: dict) -> dict:
    """Quantize like mlx-lm's convert (its own predicate); return the config.

    The returned config carries mlx-lm's ``quantization`` entry (per-path
    overrides included), so ``mlx_lm.utils.save_config`` writes a config
    that ``mlx_lm.load`` reads back.
    """
    from mlx_lm.utils import quantize_model
    with contextlib.redirect_stdout(io.StringIO()):  # it prints bits/weight
        _, qcfg = quantize_model(model, config, recipe["group_size"],
                                 recipe["bits"], mode=recipe.get("mode", "affine"))
    return qcfg


def layer_groups(model: nn.Module) -> list[list[mx.array]]:
    """Parameters grouped by layer (one group per layer, one per other tensor)."""
    groups: dict[str, list[mx.array]] = {}
    for path, arr in tree_flatten(model.parameters()):
        m = _LAYER.search(path)
        groups.setdefault(m.group(0) if m else path, []).append(arr)
    return list(groups.values())


def materialize(model: nn.Module) -> None:
    """Evaluate the lazy parameters one layer at a time (then drop MLX's cache)."""
    for group in layer_groups(model):
        mx.eval(group)
        mx.clear_cache()


def placeholders(model: nn.Module) -> None:
    """Swap every parameter for a zero-stride array of its shape and dtype.

    The model then has the exact quantized structure (shapes, dtypes, byte
    sizes) at almost no memory: good for counting ops in the lazy graph of a
    step or bytes per token at full scale, but it must NEVER be evaluated
    (the kernels would read past the one real element).
    """
    params = tree_flatten(model.parameters())
    new = [(p, mx.broadcast_to(mx.zeros((), a.dtype), a.shape)) for p, a in params]
    mx.eval([a for _, a in new])
    model.update(tree_unflatten(new))


def n_layers(config: dict) -> int:
    """Number of decoder layers of a (possibly nested) config."""
    return config.get("text_config", config)["num_hidden_layers"]


def build(config: dict, seed: int = 0, recipe: dict | None = None,
          shapes_only: bool = False, dtype=mx.bfloat16) -> tuple[nn.Module, dict]:
    """Build a seeded, quantized random-weight mlx-lm model for ``config``.

    Returns ``(model, config_with_quantization)``. With ``shapes_only`` the
    weights are zero-stride placeholders (see :func:`placeholders`).

    Example:
        >>> from mlxprof.lab.models.configs import model_config
        >>> m, _ = build(model_config("qwen3-8b", "full"), shapes_only=True)
        >>> m.lm_head.weight.shape
        (151936, 512)
    """
    recipe = recipe or {"group_size": 64, "bits": 4, "mode": "affine"}
    model = construct(config)
    init_weights(model, seed, n_layers(config), dtype)  # lazy: costs nothing yet
    qcfg = quantize(model, config, recipe)
    if shapes_only:
        placeholders(model)
    else:
        requantize_sliced(model, seed, n_layers(config), dtype)
        materialize(model)
    model.eval()
    return model, qcfg
