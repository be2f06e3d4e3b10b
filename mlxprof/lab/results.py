"""The measurements kept in a checkout's ``data/results/``.

GPU runs write JSON (bench results, checks, device-clock readings) and
recordings there with their provenance; notebooks and ``docs/results/`` read
them back through this module.

Example:
    >>> from mlxprof.lab import results
    >>> results.results_dir().name                    # doctest: +SKIP
    'results'
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["results_dir"]


def results_dir() -> Path:
    """``$MLXPROF_RESULTS``, or ``data/results`` of the checkout mlxprof runs from.

    An installed wheel carries no results: point ``MLXPROF_RESULTS`` at a
    checkout's ``data/results`` folder.
    """
    env = os.environ.get("MLXPROF_RESULTS")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "data" / "results"
    if not path.is_dir():
        raise FileNotFoundError(
            f"no stored results at {path}. Results live in the mlxprof repository's "
            "data/results/ folder: run from a checkout, or set MLXPROF_RESULTS to it.")
    return path
