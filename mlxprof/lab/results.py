"""The measurements kept in a checkout's ``data/results/``.

GPU runs write JSON (bench results, checks, device-clock readings) and
recordings there with their provenance; notebooks and ``docs/results/`` read
them back through this module.

Which run a notebook quotes is chosen here, once: ``GPU_RUN`` is the profiled
H200 run of every loop on both full-size shapes (``mlxprof bench --profile
--save-recordings``), and ``recordings/`` holds that run's per-token
recordings. Other files are other experiments (kernel variants, CUDA-graph
settings); ``bench_results()`` lists them all.

Example:
    >>> from mlxprof.lab import results
    >>> results.results_dir().name                    # doctest: +SKIP
    'results'
    >>> table = results.gpu_table()                   # doctest: +SKIP
    >>> print(table.attrs["caption"])                 # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["results_dir", "GPU_RUN", "bench_results", "gpu_run", "gpu_row", "gpu_table",
           "caption", "recordings", "cuda_knobs"]

# The stored GPU run every notebook quotes (the only one with all four loops of both
# models profiled; its recordings are in recordings/).
GPU_RUN = "gpu_profile_h200.json"
_BENCH_SCHEMA = "mlxprof.bench/"


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


def _is_bench(path: Path) -> bool:
    try:
        schema = json.loads(path.read_text()).get("schema") or ""
    except (OSError, ValueError, AttributeError):
        return False
    return schema.startswith(_BENCH_SCHEMA)


def bench_results() -> list:
    """Every bench JSON in the results folder, as (path, BenchResult), by file name.

    Example:
        >>> [p.name for p, _ in bench_results()][:1]      # doctest: +SKIP
        ['gpu_bench_fast_qwen3.5_h200.json']
    """
    from mlxprof.lab.bench import load_result

    return [(p, load_result(p)) for p in sorted(results_dir().glob("*.json")) if _is_bench(p)]


def gpu_run(name: str = GPU_RUN):
    """The stored bench run `name` (default: `GPU_RUN`), or None if this checkout lacks it.

    Example:
        >>> res = gpu_run()                                # doctest: +SKIP
        >>> res.provenance["device"]                       # doctest: +SKIP
        'NVIDIA H200'
    """
    from mlxprof.lab.bench import load_result

    path = results_dir() / name
    return load_result(path) if path.is_file() else None


def gpu_row(model: str, loop: str, result=None) -> dict | None:
    """The row of `result` (default `gpu_run()`) for model x loop, or None.

    Example:
        >>> gpu_row("qwen3-8b", "mlx_lm")["ops_per_tok"]      # doctest: +SKIP
        1061.0
    """
    result = gpu_run() if result is None else result
    if result is None:
        return None
    return next((r for r in result.rows if r["model"] == model and r["loop"] == loop), None)


def caption(result, source: str | None = None) -> str:
    """One line saying where a stored run comes from: device, versions, date, run size, file.

    Example:
        >>> caption(gpu_run(), GPU_RUN)                      # doctest: +SKIP
        'NVIDIA H200 (cuda), MLX 0.32.4, mlx-lm 0.32.2, 2026-11-28, commit ?; prompt 32 ...'
    """
    from mlxprof.provenance import describe

    c = result.config
    line = (f"{describe(result.provenance)}; prompt {c.get('prompt_tokens')} tokens, "
            f"{c.get('tokens')} decode tokens, "
            f"{c.get('reps')} rep(s), weights {c.get('dtype_used', '?')}")
    return f"{line}; data/results/{source}" if source else line


_COLUMNS = {"decode_tok_per_s": "tok/s", "ratio_vs_baseline": "x baseline",
            "roofline_fraction": "of roofline", "ops_per_tok": "ops/token",
            "evals_per_tok": "evals/token", "async_evals_per_tok": "async_evals/token",
            "syncs_per_tok": "syncs/token", "host_ms_per_tok": "host ms",
            "submit_ms_per_tok": "submit ms", "blocked_ms_per_tok": "blocked ms"}


def gpu_table(result=None, source: str = GPU_RUN, models=None, loops=None):
    """A compact DataFrame, one line per model x loop; provenance in ``attrs["caption"]``.

    Columns that the run did not measure are left out. Returns an empty
    DataFrame (with a caption saying so) when this checkout has no such run.

    Example:
        >>> t = gpu_table(loops=["mlx_lm"])                 # doctest: +SKIP
        >>> list(t.index.names)                             # doctest: +SKIP
        ['model', 'loop']
    """
    import pandas as pd

    result = gpu_run(source) if result is None else result
    if result is None:
        empty = pd.DataFrame()
        empty.attrs["caption"] = f"no stored run data/results/{source} in this checkout"
        return empty
    rows = [r for r in result.rows if (models is None or r["model"] in models)
            and (loops is None or r["loop"] in loops)]
    df = pd.DataFrame(rows, columns=list(result.rows[0]) if result.rows else None)
    keep = [c for c in _COLUMNS if c in df and df[c].notna().any()]
    df = df.set_index(["model", "loop"])[keep].rename(columns=_COLUMNS)
    df.attrs["caption"] = caption(result, source)
    return df


def recordings(loop: str | None = None) -> dict:
    """The stored per-token recordings (of `GPU_RUN`), {(model, loop): Recording}.

    Example:
        >>> sorted(recordings("mlx_lm"))                    # doctest: +SKIP
        [('qwen3-8b', 'mlx_lm'), ('qwen3.5-35b-a3b', 'mlx_lm')]
    """
    from mlxprof.recording import load

    out = {}
    for path in sorted((results_dir() / "recordings").glob("*.mlxprof.json.gz")):
        rec = load(path)
        key = (rec.meta.get("model", path.name), rec.meta.get("loop", "?"))
        if loop is None or key[1] == loop:
            out[key] = rec
    return out


def cuda_knobs(defaults_only: bool = False):
    """``cuda_knobs_h200.jsonl`` (mlx-lm decode under CUDA-graph settings) as a DataFrame.

    One row per model x setting: ``setting`` ("default" or NAME=value, ...),
    ``tok/s`` (median of the runs), ``runs`` (the tok/s of each run),
    ``tokens``, ``provenance``. Empty if the file is missing.

    Example:
        >>> cuda_knobs(defaults_only=True)[["model", "tok/s"]]    # doctest: +SKIP
    """
    import pandas as pd

    path = results_dir() / "cuda_knobs_h200.jsonl"
    if not path.is_file():
        return pd.DataFrame(columns=["model", "setting", "tok/s", "runs", "tokens", "provenance"])
    df = pd.read_json(path, lines=True)
    df["setting"] = df["settings"].map(
        lambda s: ", ".join(f"{k}={v}" for k, v in s.items() if v is not None) or "default")
    df = df.rename(columns={"median_tok_per_s": "tok/s", "decode_tok_per_s": "runs"})
    if defaults_only:
        df = df[df["setting"] == "default"]
    return df[["model", "scale", "setting", "tok/s", "runs", "tokens", "provenance"]].reset_index(
        drop=True)
