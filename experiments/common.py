"""What several experiments share: their common flags, and where two token lists part.

Standard library only (the GPU machine has numpy/pandas/mlx/mlx-lm, nothing more).
A script in experiments/ imports it as ``common`` (its own folder is on sys.path).

Example:
    >>> args = parser("My experiment.", model="qwen3-8b", tokens=64,
    ...               out="out/x.json", prompt=32).parse_args([])
    >>> args.model, args.scale, args.tokens, args.prompt
    ('qwen3-8b', 'full', 64, 32)
    >>> first_diff([1, 2, 3], [1, 5, 3]), first_diff([1, 2], [1, 2, 3])
    (1, 2)
"""
from __future__ import annotations

import argparse
from typing import Optional


def parser(doc: str, *, model: str, tokens: int, out: str,
           prompt: Optional[int] = None) -> argparse.ArgumentParser:
    """--model, --scale (default full), --tokens, [--prompt], --out; add the rest."""
    ap = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    ap.add_argument("--model", default=model)
    ap.add_argument("--scale", default="full")
    ap.add_argument("--tokens", type=int, default=tokens)
    if prompt is not None:
        ap.add_argument("--prompt", type=int, default=prompt)
    ap.add_argument("--out", default=out)
    return ap


def first_diff(a: list, b: list) -> Optional[int]:
    """Index of the first token where `a` and `b` differ (or where the shorter ends); None if equal."""
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y),
                None if len(a) == len(b) else min(len(a), len(b)))
