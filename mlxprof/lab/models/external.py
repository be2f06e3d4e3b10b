"""Any model ``mlx_lm.load`` can open: a local folder or a Hugging Face repo id.

Example:
    >>> model, tok, cfg = load_external("mlx-community/Qwen3-8B-4bit")  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path


def looks_loadable(name: str) -> bool:
    """A local folder, or something shaped like a repo id (``owner/name``)."""
    if Path(name).expanduser().is_dir():
        return True
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).is_absolute()


def load_external(name: str):
    """``(model, tokenizer, config)`` via ``mlx_lm.load``."""
    from mlx_lm import load

    path = Path(name).expanduser()
    return load(str(path) if path.is_dir() else name, return_config=True)
