"""mlxprof: see where MLX decode time goes, token by token.

`import mlxprof` is the profiler. Two wings sit above it and are imported by
name: `mlxprof.decode` (decode loops, the `fast` rewrite and its CUDA kernels)
and `mlxprof.lab` (models, `mlxprof bench`, stored results).

Example:
    >>> import mlxprof
    >>> with mlxprof.Profiler() as prof:          # doctest: +SKIP
    ...     for tok, _ in prof.track(generate_step(prompt, model, max_tokens=32)):
    ...         pass
    >>> prof.per_token()                           # doctest: +SKIP

From the shell, `mlxprof run -- python your_program.py` profiles a program as it
is (see docs/cli.md).

Importing mlxprof stays light: pandas and plotly load only when a table or a
figure is asked for, so a GPU box without plotly can still profile. Jupyter
sliders over recordings are in `mlxprof.widgets` (ipywidgets loads on use).
"""
from __future__ import annotations

__version__ = "0.2.0"   # keep equal to pyproject.toml (tests/test_cli.py)

__all__ = ["Profiler", "Recording", "load", "load_ranks", "RankSet", "compare_recordings", "EvalLock",
           "MlxprofError", "provenance"]


def __getattr__(name):  # lazy public API (PEP 562)
    if name == "Profiler":
        from mlxprof.profiler import Profiler
        return Profiler
    if name in ("Recording", "load"):
        from mlxprof import recording
        return getattr(recording, name)
    if name in ("load_ranks", "RankSet"):
        from mlxprof import ranks
        return getattr(ranks, name)
    if name == "compare_recordings":
        from mlxprof.compare import compare_recordings
        return compare_recordings
    if name == "EvalLock":
        from mlxprof.lock import EvalLock
        return EvalLock
    if name == "MlxprofError":
        from mlxprof.events import MlxprofError
        return MlxprofError
    if name == "provenance":
        import importlib
        return importlib.import_module("mlxprof.provenance")
    raise AttributeError(f"module 'mlxprof' has no attribute {name!r}")


def load_ipython_extension(ipython):
    """`%load_ext mlxprof` registers the `%%mlxprof` cell magic."""
    from mlxprof.magic import load_ipython_extension as _load
    _load(ipython)
