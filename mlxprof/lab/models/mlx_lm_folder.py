"""A real mlx-lm model folder from the offline SmolLM2 weights.

`export("smollm2", DIR)` writes what `mlx_lm.load(DIR)` and `python -m
mlx_lm generate --model DIR` read: config.json (with mlx-lm's per-layer
`quantization` entry), model.safetensors (+ its index) and the tokenizer
files that transformers' AutoTokenizer loads (tokenizer.json,
tokenizer_config.json with the chat template, special_tokens_map.json),
built from the GGUF's own vocabulary and merges. The folder is written next
to DIR first and renamed into place, so a failed export leaves nothing half
written.

Example:
    >>> export("smollm2", "models/smollm2")      # doctest: +SKIP
    PosixPath('models/smollm2')
"""
from __future__ import annotations

import shutil
from pathlib import Path

import mlx.core as mx

from mlxprof.lab.models import smollm2

DTYPES = {"float16": mx.float16, "float32": mx.float32}


def export(name: str, out_dir, dtype: str = "float16") -> Path:
    """Write model `name` (smollm2) as an mlx-lm model folder; returns the folder.

    `dtype` is that of the scales, biases and norms: float16 as stored, or
    float32 (faster on the CPU backend). Refuses a folder that has files.

    Example:
        >>> export("smollm2", "models/smollm2", dtype="float32")   # doctest: +SKIP
        PosixPath('models/smollm2')
    """
    if name not in smollm2.ALIASES:
        raise ValueError(f"nothing to export for {name!r}; exportable: "
                         f"{', '.join(smollm2.ALIASES)}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"{out} already exists and is not an empty folder; "
                         "give a new folder")
    model, tokenizer, cfg = smollm2.load(smollm2.ensure(), dtype=DTYPES[dtype])
    part = out.with_name(out.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    try:
        _write(part, model, tokenizer, cfg)
        if out.exists():
            out.rmdir()
        part.rename(out)
    finally:
        shutil.rmtree(part, ignore_errors=True)
    return out


def _write(folder: Path, model, tokenizer, cfg: dict) -> None:
    from mlx_lm.utils import save_config, save_model

    hf = tokenizer._tokenizer  # the transformers tokenizer inside mlx-lm's wrapper
    save_model(folder, model)
    config = dict(cfg)
    for role in ("bos", "eos"):
        token_id = getattr(hf, f"{role}_token_id")
        if token_id is not None:
            config[f"{role}_token_id"] = int(token_id)
    save_config(config, folder / "config.json")
    hf.save_pretrained(str(folder))
