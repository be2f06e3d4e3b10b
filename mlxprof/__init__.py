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

Importing mlxprof stays light: pandas and plotly load only when a table or a
figure is asked for, so a GPU box without plotly can still profile. Jupyter
sliders over recordings are in `mlxprof.widgets` (ipywidgets loads on use).
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Profiler", "Recording", "load", "EvalLock", "MlxprofError", "provenance"]


def __getattr__(name):  # lazy public API (PEP 562)
    if name == "Profiler":
        from mlxprof.profiler import Profiler
        return Profiler
    if name in ("Recording", "load"):
        from mlxprof import recording
        return getattr(recording, name)
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
