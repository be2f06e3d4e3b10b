"""Side-by-side decode benchmark: models x loops x interleaved repetitions.

For each model: load it, warm every loop up, then time `reps` rounds in which
every loop runs once (round 1: every loop, round 2: every loop, ...), so slow
drift hits all loops alike. Each run decodes `tokens` greedy tokens after a
`prompt_tokens` prompt:

- prompt tok/s = prompt tokens / time to first token;
- decode tok/s = (tokens - 1) / time from the first to the last token (2..N);
- ratio vs the baseline loop = median over rounds of (loop tok/s / baseline
  tok/s in the same round): paired, so drift between rounds cancels;
- every value is a mlxprof.measure.Measurement: the median with a bootstrap
  95% interval, noisy cells marked '*' (docs/measuring.md);
- roofline = bandwidth / weight bytes read per token (mlxprof.lab.roofline).

Example:
    >>> from mlxprof.lab import bench                                     # doctest: +SKIP
    >>> res = bench.run(models=["qwen3-8b"], scale="tiny", tokens=16)   # doctest: +SKIP
    >>> print(res.table()); res.to_json("out/bench.json")             # doctest: +SKIP
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from functools import partial
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import mlx.core as mx

from mlxprof import decode, measure
from mlxprof.measure import Measurement, iqr, median  # noqa: F401 (bench.median, bench.iqr)
from mlxprof.lab import models, roofline
from mlxprof.decode import Loop

__all__ = ["run", "BenchConfig", "BenchResult", "BenchError", "DEFAULT",
           "check_config", "check_writable", "check_outputs", "added_baseline",
           "load_result", "pool", "resolve_dtype"]

SCHEMA = "mlxprof.bench/1"
RATIO_METHOD = "median over rounds of (loop tok/s / baseline tok/s, same round)"
PROFILE_COLUMNS = {          # per-token column of Profiler.per_token() -> row key
    "n_eval": "evals_per_tok", "n_async_eval": "async_evals_per_tok",
    "n_sync": "syncs_per_tok", "ops_total": "ops_per_tok",
    "host_ms": "host_ms_per_tok", "submit_ms": "submit_ms_per_tok",
    "blocked_ms": "blocked_ms_per_tok",
}


class BenchError(ValueError):
    """Bad benchmark input; the message is one line meant for the user."""


@dataclass
class BenchConfig:
    """Everything that defines a run (stored in the JSON as `config`).

    Example:
        >>> BenchConfig(models=["qwen3-8b"], tokens=8).baseline
        'mlx_lm'
    """

    models: list = field(default_factory=lambda: list(DEFAULT_MODELS))
    scale: str = "small"
    loops: list = field(default_factory=lambda: list(DEFAULT_LOOPS))
    baseline: Optional[str] = "mlx_lm"
    tokens: int = 16
    prompt_tokens: int = 16
    reps: int = 3
    warmup: int = 1
    warmup_tokens: Optional[int] = 4      # None: as many as `tokens`
    seed: int = 0
    dtype: str = "auto"     # auto: float32 on the CPU backend, else the model's own
    bandwidth_gbs: Optional[float] = None
    profile: bool = False
    save_recordings: Optional[str] = None
    prefill_step_size: int = decode.PREFILL_STEP_SIZE


DEFAULT_MODELS = ("qwen3-8b", "qwen3.5-35b-a3b")
DEFAULT_LOOPS = ("sync", "mlx_lm", "pipelined")
DEFAULT = BenchConfig()


# --------------------------------------------------------------------------
# input checks (all run before anything is loaded or timed)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_numbers(cfg: BenchConfig) -> None:
    if not _is_int(cfg.tokens) or cfg.tokens < 2:
        raise BenchError(f"--tokens must be an integer >= 2 (decode speed is "
                         f"timed over tokens 2..N), got {cfg.tokens}")
    if not _is_int(cfg.prompt_tokens) or cfg.prompt_tokens < 1:
        raise BenchError(f"--prompt-tokens must be >= 1, got {cfg.prompt_tokens}")
    if not _is_int(cfg.reps) or cfg.reps < 1:
        raise BenchError(f"--reps must be >= 1, got {cfg.reps}")
    if not _is_int(cfg.warmup) or cfg.warmup < 0:
        raise BenchError(f"--warmup must be >= 0, got {cfg.warmup}")
    wt = cfg.warmup_tokens
    if wt is not None and (not _is_int(wt) or wt < 1):
        raise BenchError(f"--warmup-tokens must be >= 1, got {wt}")
    if not _is_int(cfg.prefill_step_size) or cfg.prefill_step_size < 1:
        raise BenchError(f"prefill_step_size must be >= 1, got {cfg.prefill_step_size}")
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise BenchError(f"--seed must be an integer >= 0, got {cfg.seed}")
    if cfg.dtype not in DTYPES:
        raise BenchError(f"--dtype must be one of {', '.join(DTYPES)}, got {cfg.dtype!r}")
    bw = cfg.bandwidth_gbs
    if bw is not None and not (isinstance(bw, (int, float)) and bw > 0
                               and math.isfinite(bw)):
        raise BenchError(f"--bandwidth-gbs must be a number > 0, got {bw}")


DTYPES = ("auto", "bfloat16", "float16", "float32")


def resolve_dtype(name: str) -> Optional[str]:
    """The float type to load synthetic/SmolLM2 weights in; None: loader default.

    "auto" means float32 on the CPU backend (MLX's CPU half-precision
    quantized matmul is many times slower) and the loader's default
    (bfloat16, as the MLX 4-bit releases) on a GPU.

    Example:
        >>> resolve_dtype("bfloat16")
        'bfloat16'
    """
    if name != "auto":
        return name
    from mlxprof.provenance import backend

    return "float32" if backend() == "cpu" else None


def _loop_name(loop) -> str:
    return loop.name if isinstance(loop, Loop) else str(loop)


def added_baseline(cfg: BenchConfig) -> Optional[str]:
    """The note to show when the baseline is not among the loops (it is added).

    Example:
        >>> added_baseline(BenchConfig(loops=["sync"], baseline="async"))
        "baseline 'async' is not in --loops: running it too, first in every round"
    """
    names = [_loop_name(lp) for lp in cfg.loops]
    if cfg.baseline is None or cfg.baseline in names:
        return None
    return (f"baseline {cfg.baseline!r} is not in --loops: running it too, "
            "first in every round")


def _resolve_loops(cfg: BenchConfig) -> list[Loop]:
    if not cfg.loops:
        raise BenchError("no loops given")
    names = [_loop_name(lp) for lp in cfg.loops]
    if len(set(names)) != len(names):
        raise BenchError(f"a loop is listed twice: {', '.join(names)}")
    loops = []
    for lp in cfg.loops:
        try:
            loops.append(decode.get_loop(lp))
        except ValueError as err:
            raise BenchError(str(err)) from None
    if cfg.baseline is not None and cfg.baseline not in names:
        if cfg.baseline not in decode.LOOPS:
            raise BenchError(f"unknown baseline loop {cfg.baseline!r}; known "
                             f"loops: {', '.join(decode.LOOPS)}")
        loops.insert(0, decode.LOOPS[cfg.baseline])
    return loops


def _check_models(cfg: BenchConfig, custom_loader: bool) -> None:
    if not cfg.models:
        raise BenchError("no models given")
    canon = [models.ALIASES.get(m, m) for m in cfg.models]
    if len(set(canon)) != len(canon):
        raise BenchError(f"a model is listed twice: {', '.join(cfg.models)}")
    if custom_loader:
        return
    if cfg.scale not in models.SCALES:
        raise BenchError(f"unknown scale {cfg.scale!r}; known scales: "
                         f"{', '.join(models.SCALES)}")
    for name in cfg.models:
        _check_model(name, cfg)


def _check_model(name: str, cfg: BenchConfig) -> None:
    """Everything about `name` that can be known before loading it."""
    try:
        models.check_loadable(name)
    except (ValueError, FileNotFoundError) as err:
        raise BenchError(f"{err} (known models: {', '.join(models.NAMES)}, or a "
                         "folder / repo id that mlx_lm.load accepts)") from None
    _check_context(name, models.context_length(name, cfg.scale), cfg)


def _check_context(name: str, context: Optional[int], cfg: BenchConfig) -> None:
    need = cfg.prompt_tokens + cfg.tokens
    if context is not None and need > context:
        raise BenchError(f"--prompt-tokens {cfg.prompt_tokens} + --tokens {cfg.tokens} "
                         f"= {need} positions, more than {name}'s context of {context} "
                         "(max_position_embeddings)")


def check_writable(path: Union[str, Path], directory: bool = False) -> Path:
    """Make sure `path` (a file, or a directory) can be written; return it.

    Creates missing parent folders; a file that did not exist is not left
    behind. Raises BenchError with a one-line reason.

    Example:
        >>> check_writable("/tmp/mlxprof-doc/bench.json").name
        'bench.json'
    """
    path = Path(path).expanduser()
    target = path if directory else path.parent
    try:
        target.mkdir(parents=True, exist_ok=True)
        if directory:
            probe = target / f".mlxprof-write-test-{os.getpid()}"
            probe.touch()
            probe.unlink()
        elif path.is_dir():
            raise BenchError(f"cannot write {path}: it is a directory")
        else:
            existed = path.exists()
            with open(path, "a"):
                pass
            if not existed:
                path.unlink()
    except OSError as err:
        raise BenchError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def _refuse_folder(flag: str, name: str) -> None:
    if name.endswith(("/", os.sep)) or Path(name).expanduser().is_dir():
        example = Path(name) / ("bench.json" if flag == "--out" else "bench.csv")
        raise BenchError(f"{flag} {name} is a folder; give a file name, e.g. "
                         f"{flag} {example}")


def check_outputs(out: str, csv_path: Optional[str] = None) -> tuple[Path, Path]:
    """Check the JSON and CSV outputs before any work; return both paths.

    The CSV defaults to `out` with the suffix `.csv`. Refuses a folder, and
    two outputs that are one file (the CSV would overwrite the JSON).

    Example:
        >>> check_outputs("/tmp/mlxprof-doc/r.json")
        (PosixPath('/tmp/mlxprof-doc/r.json'), PosixPath('/tmp/mlxprof-doc/r.csv'))
    """
    _refuse_folder("--out", str(out))
    if csv_path is not None:
        _refuse_folder("--csv", str(csv_path))
    json_p = Path(out).expanduser()
    csv_p = Path(csv_path).expanduser() if csv_path else json_p.with_suffix(".csv")
    if json_p.resolve() == csv_p.resolve():
        fix = ("give --out NAME.json, or a separate --csv" if csv_path is None
               else "give two different files")
        raise BenchError(f"--out {out} and the CSV ({csv_p}) are one file: the CSV "
                         f"would overwrite the JSON; {fix}")
    return check_writable(json_p), check_writable(csv_p)


def check_config(cfg: BenchConfig, custom_loader: bool = False) -> list[Loop]:
    """Validate a config before any work; return the loops to run.

    Example:
        >>> [lp.name for lp in check_config(BenchConfig(loops=["sync"]))]
        ['mlx_lm', 'sync']
    """
    _check_numbers(cfg)
    loops = _resolve_loops(cfg)
    _check_models(cfg, custom_loader)
    if cfg.save_recordings:
        check_writable(cfg.save_recordings, directory=True)
    return loops


# --------------------------------------------------------------------------
# one timed run


@dataclass
class RunTiming:
    """One run of one loop: times in seconds, speeds in tokens per second."""

    n_tokens: int
    ttft_s: float
    decode_s: float
    prompt_tok_per_s: float
    decode_tok_per_s: float


def time_run(fn: Callable, model, prompt: mx.array, tokens: int,
             timer: Callable[[], float] = time.perf_counter,
             **kwargs) -> RunTiming:
    """Run `fn(model, prompt, tokens)` to the end and time it.

    Example:
        >>> t = time_run(decode.LOOPS["sync"].fn, model, prompt, 16)  # doctest: +SKIP
        >>> t.decode_tok_per_s                                          # doctest: +SKIP
    """
    t = measure.time_tokens(fn(model, prompt, tokens, **kwargs), timer)
    decode.synchronize()  # drain leftover async work outside the timed window
    if not t.n_tokens:
        raise RuntimeError("the loop yielded no token")
    return RunTiming(
        n_tokens=t.n_tokens, ttft_s=t.ttft_s, decode_s=t.decode_s,
        prompt_tok_per_s=int(prompt.size) / t.ttft_s if t.ttft_s > 0 else float("nan"),
        decode_tok_per_s=t.decode_tok_per_s)


# --------------------------------------------------------------------------
# models: loading and weight bytes


def _default_loader(name: str, scale: str, seed: int, dtype: Optional[str] = None):
    kw = {"dtype": getattr(mx, dtype)} if dtype else {}
    return models.load(name, scale=scale, seed=seed, **kw)


def _bytes_per_token(lm) -> Optional[int]:
    try:
        return int(models.bytes_per_token(lm))
    except (AttributeError, TypeError, ValueError, KeyError):
        return None  # a stand-in model the counter does not understand


def _param_keys(model) -> Optional[frozenset]:
    from mlx.utils import tree_flatten

    try:
        return frozenset(k for k, _ in tree_flatten(model.parameters()))
    except AttributeError:
        return None


def _prepare(loop: Loop, model):
    """Apply loop.prepare once, checking that it left the original alone."""
    if loop.prepare is None:
        return model
    before = _param_keys(model)
    prepared = loop.prepare(model)
    if before is not None and _param_keys(model) != before:
        raise RuntimeError(f"loop {loop.name!r}: prepare() modified the model in "
                           "place; it must return a rewritten copy")
    return prepared


# --------------------------------------------------------------------------
# profiled pass


def _profile_pass(loop: Loop, model, prompt, cfg: BenchConfig,
                  model_name: str, scale: str) -> dict:
    from mlxprof import Profiler

    meta = {"model": model_name, "scale": scale, "loop": loop.name,
            "tokens": cfg.tokens, "prompt_tokens": int(prompt.size),
            "seed": cfg.seed, "source": "mlxprof bench --profile"}
    with Profiler(count_ops=True, meta=meta) as prof:
        it = loop.fn(model, prompt, cfg.tokens,
                     prefill_step_size=cfg.prefill_step_size)
        for _ in prof.track(it):
            pass
    decode.synchronize()
    out = _profile_medians(prof.per_token())
    if cfg.save_recordings:
        path = Path(cfg.save_recordings) / _recording_name(model_name, scale, loop)
        prof.save(str(path))
        out["recording"] = str(path)
    return out


def _profile_medians(df) -> dict:
    decode = df.iloc[1:] if len(df) > 1 else df   # row 0 carries the prefill
    return {key: float(decode[col].median()) if col in decode else None
            for col, key in PROFILE_COLUMNS.items()}


def _slug(text: str) -> str:
    return re.sub(r"[^\w.\-]+", "_", text).strip("_")


def _recording_name(model_name: str, scale: str, loop: Loop) -> str:
    return f"{_slug(model_name)}__{scale}__{_slug(loop.name)}.mlxprof.json.gz"


# --------------------------------------------------------------------------
# the harness


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, file=sys.stderr, disable=not enabled,
                desc="bench", unit="run", leave=False, dynamic_ncols=True)


def _warm_up(name, loops, models, prompt, cfg, timer, bar) -> None:
    warm_n = min(cfg.tokens, cfg.warmup_tokens or cfg.tokens)
    for lp in loops:
        for _ in range(cfg.warmup):
            bar.set_postfix_str(f"{name} {lp.name} warm-up")
            time_run(lp.fn, models[lp.name], prompt, warm_n, timer,
                     prefill_step_size=cfg.prefill_step_size)
            bar.update()


def _timed_rounds(name, scale, loops, models, prompt, cfg, timer, bar,
                  seq0: int) -> list[dict]:
    """Round r runs every loop once, in the given order; one dict per run."""
    def run_once(lp):
        t = time_run(lp.fn, models[lp.name], prompt, cfg.tokens, timer,
                     prefill_step_size=cfg.prefill_step_size)
        bar.update()
        return t

    def show(rep, loop):
        bar.set_postfix_str(f"{name} {loop} rep {rep + 1}/{cfg.reps}")

    rounds = measure.time_rounds({lp.name: partial(run_once, lp) for lp in loops},
                                 rounds=cfg.reps, warmup=0, before_call=show)
    return [{"model": name, "scale": scale, "loop": loop, "rep": rep, "seq": seq0 + i,
             "prompt_tokens": int(prompt.size), **asdict(rounds.results[loop][rep])}
            for i, (rep, loop) in enumerate(rounds.order)]


def _bench_model(name: str, lm, loops: list[Loop], cfg: BenchConfig, timer,
                 bar, seq0: int) -> tuple[list[dict], dict]:
    """Warm up, time interleaved rounds, optionally profile; return raw + profiles."""
    _check_context(name, getattr(lm, "context", None), cfg)
    prompt = lm.prompt(cfg.prompt_tokens, seed=cfg.seed)
    decode.check_args(prompt, cfg.tokens, decode.vocab_size(lm.model))
    models = {lp.name: _prepare(lp, lm.model) for lp in loops}
    _warm_up(name, loops, models, prompt, cfg, timer, bar)
    scale = getattr(lm, "scale", cfg.scale)
    raw = _timed_rounds(name, scale, loops, models, prompt, cfg, timer, bar, seq0)
    profiles = {}
    for lp in loops if cfg.profile else ():
        bar.set_postfix_str(f"{name} {lp.name} profiled")
        profiles[lp.name] = _profile_pass(lp, models[lp.name], prompt, cfg, name,
                                          scale)
        bar.update()
    return raw, profiles


def _model_info(lm, cfg: BenchConfig) -> dict:
    return {"scale": getattr(lm, "scale", cfg.scale),
            "bytes_per_token": _bytes_per_token(lm),
            "config": getattr(lm, "config", None)}


def run(models: Optional[Sequence[str]] = None, loops: Optional[Sequence] = None,
        *, config: Optional[BenchConfig] = None, progress: bool = True,
        loader: Optional[Callable] = None,
        timer: Callable[[], float] = time.perf_counter,
        on_result: Optional[Callable[["BenchResult"], None]] = None,
        **options) -> "BenchResult":
    """Benchmark `loops` on `models`; return a BenchResult.

    `options` are BenchConfig fields (scale, tokens, prompt_tokens, reps,
    warmup, baseline, seed, bandwidth_gbs, profile, save_recordings).
    `loader(name, scale, seed) -> lm` replaces mlxprof.lab.models.load (stand-ins
    in tests); `timer` replaces time.perf_counter. `on_result(result)` is
    called after each model with everything measured so far (`complete` is
    False until the last model): save it there, and a Ctrl-C or a failure on a
    later model keeps the finished ones.

    Example:
        >>> res = run(["qwen3-8b"], ["sync", "pipelined"], scale="tiny",
        ...           tokens=8, reps=2, progress=False)               # doctest: +SKIP
        >>> res.rows[0]["ratio_vs_baseline"]                          # doctest: +SKIP
    """
    if config is not None and options:
        raise TypeError("give either config or keyword options, not both")
    cfg = replace(config) if config is not None else BenchConfig(**options)
    if models is not None:
        cfg.models = list(models)
    if loops is not None:
        cfg.loops = list(loops)
    loop_objs = check_config(cfg, custom_loader=loader is not None)
    dtype = resolve_dtype(cfg.dtype)
    load = loader or (lambda n, sc, sd: _default_loader(n, sc, sd, dtype))
    per_model = cfg.warmup + cfg.reps + (1 if cfg.profile else 0)
    raw, profiles, infos = [], {}, {}
    result = None
    with _progress(len(cfg.models) * len(loop_objs) * per_model, progress) as bar:
        for name in cfg.models:
            bar.set_postfix_str(f"loading {name} ({cfg.scale})")
            lm = load(name, cfg.scale, cfg.seed)
            r, p = _bench_model(name, lm, loop_objs, cfg, timer, bar, len(raw))
            infos[name] = _model_info(lm, cfg)
            raw += r
            profiles[name] = p
            del lm
            mx.clear_cache()
            result = _result(cfg, loop_objs, raw, profiles, infos)
            if on_result is not None:
                on_result(result)
    return result


# --------------------------------------------------------------------------
# summarising

QUANTITIES = {"decode_tok_per_s": "decode tok/s", "prompt_tok_per_s": "prompt tok/s"}


def _measurement(raw: list[dict], model: str, loop: str, key: str) -> Measurement:
    """One loop's per-round values of `key` on `model`, labelled with their rounds."""
    runs = [r for r in raw if r["model"] == model and r["loop"] == loop]
    return Measurement(tuple(r[key] for r in runs), label=f"{model} {loop}",
                       unit=QUANTITIES.get(key, ""), rounds=tuple(r["rep"] for r in runs))


def _ratio(raw: list[dict], model: str, loop: str, baseline: Optional[str],
           key: str) -> Optional[Measurement]:
    """loop / baseline on `model`: the median of same-round ratios (or None)."""
    if baseline is None:
        return None
    return measure.ratio(_measurement(raw, model, loop, key),
                         _measurement(raw, model, baseline, key),
                         label=f"{model} {loop} / {baseline} {QUANTITIES.get(key, key)}")


def _stat_fields(prefix: str, m: Optional[Measurement]) -> dict:
    if m is None or not m.n:
        return {prefix: None, f"{prefix}_iqr": None, f"{prefix}_ci": None}
    return {prefix: m.median, f"{prefix}_iqr": m.iqr, f"{prefix}_ci": list(m.ci)}


def _row_stats(raw, model: str, loop: str, baseline: Optional[str]) -> dict:
    """A row's Measurements: tok/s, and the paired ratios to the baseline (or None)."""
    return {"decode_tok_per_s": _measurement(raw, model, loop, "decode_tok_per_s"),
            "prompt_tok_per_s": _measurement(raw, model, loop, "prompt_tok_per_s"),
            "ratio_vs_baseline": _ratio(raw, model, loop, baseline, "decode_tok_per_s"),
            "prompt_ratio_vs_baseline": _ratio(raw, model, loop, baseline,
                                               "prompt_tok_per_s")}


def _cell(raw, model, loop: str, cfg, info, bw_gbs, profile) -> dict:
    stats = _row_stats(raw, model, loop, cfg.baseline)
    bpt = info.get("bytes_per_token")
    dec_med = stats["decode_tok_per_s"].median
    row = {"model": model, "scale": info.get("scale", cfg.scale), "loop": loop,
           "reps": sum(1 for r in raw if r["model"] == model and r["loop"] == loop),
           "tokens": cfg.tokens, "prompt_tokens": cfg.prompt_tokens,
           "baseline": cfg.baseline}
    for key, m in stats.items():
        row.update(_stat_fields(key, m))
    row.update({
        "noise": {k: m.warning for k, m in stats.items() if m is not None and m.noisy},
        "weights_bytes_per_token": bpt,
        "roofline_tok_per_s": (roofline.roofline_tok_per_s(bpt, bw_gbs)
                               if bpt and bw_gbs else None),
        "roofline_fraction": roofline.roofline_fraction(dec_med, bpt, bw_gbs),
    })
    if cfg.profile:
        row.update(profile or {})
    return row


STATISTICS = {"confidence": measure.CONFIDENCE, "bootstrap_resamples": measure.BOOTSTRAP,
              "seed": measure.SEED, "noise_rule": measure.NOISE_RULE,
              "ratio": RATIO_METHOD}


def _result(cfg, loops, raw, profiles, infos) -> "BenchResult":
    from mlxprof import provenance

    prov = provenance.collect()
    bw_gbs, bw_note = roofline.resolve(prov.get("device"), cfg.bandwidth_gbs)
    rows = [_cell(raw, m, lp.name, cfg, infos[m], bw_gbs,
                  profiles.get(m, {}).get(lp.name))
            for m in cfg.models if m in infos for lp in loops]
    notes = [
        "decode tok/s: tokens 2..N over the time from first to last token; "
        "prompt tok/s: prompt tokens / time to first token",
        f"ratio_vs_baseline: {RATIO_METHOD}, its interval bootstrapped over rounds"
        if cfg.baseline else "no baseline: ratios not computed",
        f"roofline: {bw_note}",
    ]
    if added_baseline(cfg):
        notes.append(added_baseline(cfg))
    if cfg.dtype == "auto" and resolve_dtype("auto") == "float32":
        notes.append("weights float32 (--dtype auto on the CPU backend: MLX's CPU "
                     "half-precision quantized matmul is many times slower); "
                     "--dtype bfloat16 gives the MLX releases' dtype")
    config = asdict(cfg)
    config["loops"] = [lp.name for lp in loops]
    config["loop_descriptions"] = {lp.name: lp.description for lp in loops}
    config["bandwidth_gbs_used"] = bw_gbs
    config["dtype_used"] = resolve_dtype(cfg.dtype) or "model default"
    config["statistics"] = dict(STATISTICS)
    return BenchResult(config=config, provenance=prov, rows=rows, raw=raw,
                       models=dict(infos), notes=notes,
                       complete=all(m in infos for m in cfg.models))


# --------------------------------------------------------------------------
# the result


def _fmt(x, spec: str = ".1f", blank: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return blank
    return format(x, spec)


def _cell_text(m: Optional[Measurement], decimals: int) -> str:
    return m.text(decimals) if m is not None and m.n else ""


@dataclass(repr=False)
class BenchResult:
    """What `run` measured: `rows` (one dict per model x loop), `raw` (one
    dict per timed run), `config`, `provenance`, `models`, `notes`.
    `complete` is False for a run that stopped early (`stopped` says why):
    its rows cover the models in `models` only.

    `repr` (and `print`) give the table; Jupyter shows it as HTML. Each
    tok/s cell and ratio is the median over rounds with its 95% bootstrap
    interval, '*' marks a noisy one (mlxprof.measure.NOISE_RULE), and
    `measurement()` / `ratio()` return them as Measurements, recomputed from
    the raw rounds (also for files written before intervals existed).

    Example:
        >>> res = load_result("out/bench.json")                 # doctest: +SKIP
        >>> res                                                 # doctest: +SKIP
        >>> res.ratio("qwen3-8b", "fast")                       # doctest: +SKIP
        qwen3-8b fast / mlx_lm decode tok/s: <median>x (95% CI <low>-<high>x, IQR <iqr>, n=<rounds>)
    """

    config: dict
    provenance: dict
    rows: list
    raw: list
    models: dict
    notes: list
    complete: bool = True
    stopped: Optional[str] = None

    def status(self) -> str:
        """'complete', or 'partial: 1 of 2 models measured (why it stopped)'.

        Example:
            >>> BenchResult({"models": ["a", "b"]}, {}, [], [], {"a": {}}, [],
            ...             complete=False, stopped="interrupted").status()
            'partial: 1 of 2 models measured (interrupted)'
        """
        if self.complete:
            return "complete"
        why = f" ({self.stopped})" if self.stopped else ""
        return (f"partial: {len(self.models)} of {len(self.config.get('models', []))} "
                f"models measured{why}")

    def measurement(self, model: str, loop: str,
                    quantity: str = "decode_tok_per_s") -> Measurement:
        """`loop`'s `quantity` on `model` (decode_tok_per_s or prompt_tok_per_s)."""
        self._check(model, loop, quantity)
        return _measurement(self.raw, model, loop, quantity)

    def ratio(self, model: str, loop: str,
              quantity: str = "decode_tok_per_s") -> Optional[Measurement]:
        """`loop` / the baseline on `model`, paired by round; None without a baseline."""
        self._check(model, loop, quantity)
        return _ratio(self.raw, model, loop, self.config.get("baseline"), quantity)

    def _check(self, model: str, loop: str, quantity: str) -> None:
        if quantity not in QUANTITIES:
            raise ValueError(f"unknown quantity {quantity!r}; known: {', '.join(QUANTITIES)}")
        if not any(r["model"] == model and r["loop"] == loop for r in self.raw):
            pairs = sorted({f"{r['model']}/{r['loop']}" for r in self.raw})
            raise ValueError(f"no runs of loop {loop!r} on model {model!r}; "
                             f"measured: {', '.join(pairs)}")

    def compare(self, quantity: str = "decode_tok_per_s") -> measure.Compare:
        """Models x loops of `quantity`, with paired ratios to the baseline loop."""
        cells = {(f"{r['model']} ({r['scale']})", r["loop"]):
                 self.measurement(r["model"], r["loop"], quantity) for r in self.rows}
        return measure.compare_measurements(cells, baseline=self.config.get("baseline"),
                                            title=QUANTITIES[quantity])

    def _header(self) -> list[str]:
        base = self.config.get("baseline")
        ci = f"[{measure.CONFIDENCE:.0%} CI]"
        cols = ["model", "loop", f"decode tok/s {ci}", f"prompt tok/s {ci}"]
        cols += [f"x {base} {ci}"] if base else []
        cols += ["MB/token", "% roofline"]
        if self.config.get("profile"):
            cols += ["evals", "syncs", "ops", "host ms", "submit ms", "blocked ms"]
        return cols

    def _line(self, row: dict, stats: dict) -> list[str]:
        bpt = row.get("weights_bytes_per_token")
        frac = row.get("roofline_fraction")
        cells = [f"{row['model']} ({row['scale']})", row["loop"],
                 _cell_text(stats["decode_tok_per_s"], 1),
                 _cell_text(stats["prompt_tok_per_s"], 1)]
        if self.config.get("baseline"):
            cells.append(_cell_text(stats["ratio_vs_baseline"], 2))
        cells += [_fmt(bpt / 1e6 if bpt else None, ".1f"),
                  _fmt(frac * 100 if frac is not None else None, ".1f")]
        if self.config.get("profile"):
            cells += [_fmt(row.get(k), f) for k, f in (
                ("evals_per_tok", ".1f"), ("syncs_per_tok", ".1f"),
                ("ops_per_tok", ".0f"), ("host_ms_per_tok", ".2f"),
                ("submit_ms_per_tok", ".2f"), ("blocked_ms_per_tok", ".2f"))]
        return cells

    def _noise_notes(self, all_stats: list) -> list[str]:
        """One line per row with a noisy value: which, and why."""
        names = {**QUANTITIES, "ratio_vs_baseline": f"x {self.config.get('baseline')}"}
        lines = []
        for row, stats in zip(self.rows, all_stats):
            bad = [f"{names[k]}: {m.warning}" for k, m in stats.items()
                   if k in names and m is not None and m.noisy]
            if bad:
                lines.append(f"* {row['model']} ({row['scale']}) {row['loop']}: "
                             + "; ".join(bad))
        rule = f"* noisy: {measure.NOISE_RULE}"
        return [rule] + lines if lines else []

    def _caption(self) -> str:
        from mlxprof.provenance import describe

        c = self.config
        return (f"{describe(self.provenance)}\n"
                f"prompt {c['prompt_tokens']} tokens, decode {c['tokens']} tokens, "
                f"{c['reps']} interleaved reps"
                + (f" in {c['pooled_calls']} runs" if c.get("pooled_calls") else "")
                + f" after {c['warmup']} warm-up run(s) "
                f"of {min(c['tokens'], c.get('warmup_tokens') or c['tokens'])} "
                f"tokens per loop, greedy, weights {c.get('dtype_used', '?')}")

    def _parts(self):
        stats = [_row_stats(self.raw, r["model"], r["loop"], self.config.get("baseline"))
                 for r in self.rows]
        body = [self._line(r, s) for r, s in zip(self.rows, stats)]
        cells = (f"cells: median over rounds [{measure.CONFIDENCE:.0%} bootstrap "
                 "interval of the median]; raw rounds, IQRs and intervals in the JSON")
        # files written before intervals existed describe their cells as IQRs
        kept = [n for n in self.notes if not n.startswith("values: median over rep")]
        return body, [cells] + kept + self._noise_notes(stats)

    def table(self) -> str:
        """A readable table with a provenance caption, notes and noise warnings."""
        body, notes = self._parts()
        table = measure.format_table(self._header(), body, left=2)
        status = "" if self.complete else f"\n\nPARTIAL RESULT: {self.status()}"
        return (f"{self._caption()}\n\n{table}\n\n" + "\n".join(f"- {n}" for n in notes)
                + status)

    def __str__(self) -> str:
        return self.table()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        body, notes = self._parts()
        return measure.html_table(self._header(), body, self._caption(), notes)

    def to_dict(self) -> dict:
        """Everything, JSON-ready (the `to_json` content)."""
        return {"schema": SCHEMA, "complete": self.complete, "status": self.status(),
                "stopped": self.stopped, "provenance": self.provenance,
                "config": self.config, "notes": self.notes, "models": self.models,
                "rows": self.rows, "raw": self.raw}

    def to_json(self, path: Union[str, Path]) -> Path:
        """Write the JSON (provenance, config, rows, raw per-rep numbers)."""
        text = json.dumps(_jsonable(self.to_dict()), indent=1, default=str) + "\n"
        with _replacing(path, "w") as f:
            f.write(text)
        return Path(path)

    def to_csv(self, path: Union[str, Path]) -> Path:
        """Write one line per row, with the provenance repeated as columns."""
        prov = {f"prov_{k}": v for k, v in self.provenance.items()}
        lines = [{**r, "complete": self.complete, **prov} for r in self.rows]
        keys = list(dict.fromkeys(k for line in lines for k in line))
        with _replacing(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(lines)
        return Path(path)

    def dataframe(self):
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


@contextmanager
def _replacing(path: Union[str, Path], mode: str, **kw):
    """Write a sibling temp file, then rename it over `path`: an interrupted
    write leaves the old file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **kw) as f:
            yield f
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ResultWriter:
    """Writes a run's JSON and CSV each time a model finishes (`run(on_result=...)`),
    and marks the files partial, with the reason, when the run stops early.

    Example:
        >>> w = ResultWriter("out/bench.json", "out/bench.csv")    # doctest: +SKIP
        >>> res = run(config=cfg, on_result=w)                      # doctest: +SKIP
    """

    def __init__(self, out: Union[str, Path], csv_path: Union[str, Path]):
        self.out, self.csv = Path(out), Path(csv_path)
        self.replaced = self.out.exists()     # a previous run's file
        self.result: Optional[BenchResult] = None

    def __call__(self, result: "BenchResult") -> None:
        self.result = result
        result.to_json(self.out)
        result.to_csv(self.csv)

    def stopped(self, reason: str) -> str:
        """Mark what was written as partial (`reason`); return a line for the user."""
        if self.result is None:
            kept = f" (the previous {self.out} is untouched)" if self.replaced else ""
            return f"no model finished: nothing written{kept}"
        self.result.complete, self.result.stopped = False, reason
        self(self.result)
        return f"{self.result.status()}: kept in {self.out} and {self.csv}"


def _jsonable(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj


def load_result(path: Union[str, Path]) -> BenchResult:
    """Read a JSON written by BenchResult.to_json.

    Example:
        >>> res = load_result("out/bench.json")                 # doctest: +SKIP
        >>> res.config["reps"]                                  # doctest: +SKIP
        3
    """
    d = json.loads(Path(path).read_text())
    return BenchResult(config=d["config"], provenance=d["provenance"],
                       rows=d["rows"], raw=d["raw"], models=d.get("models", {}),
                       notes=d.get("notes", []), complete=d.get("complete", True),
                       stopped=d.get("stopped"))


# --------------------------------------------------------------------------
# pooling runs of one benchmark

POOL_CONFIG = ("models", "loops", "baseline", "scale", "tokens", "prompt_tokens",
               "dtype_used", "prefill_step_size")
POOL_PROVENANCE = ("device", "backend", "mlx", "mlx_lm", "git_commit")


def _check_poolable(results: Sequence[BenchResult]) -> None:
    if not results:
        raise BenchError("pool: no results given")
    first = results[0]
    for k, res in enumerate(results[1:], 1):
        diff = [key for key in POOL_CONFIG if res.config.get(key) != first.config.get(key)]
        diff += [key for key in POOL_PROVENANCE
                 if res.provenance.get(key) != first.provenance.get(key)]
        if diff:
            raise BenchError(f"pool: result {k} differs from result 0 in "
                             f"{', '.join(diff)}; pool only runs of one benchmark "
                             "(same models, loops, settings, machine and commit)")


def _pooled_raw(results: Sequence[BenchResult]) -> tuple[list, int]:
    """Every run, rounds numbered one call after another; `call` says whose."""
    raw, offset = [], 0
    for k, res in enumerate(results):
        raw += [{**r, "call": k, "rep": offset + r["rep"], "seq": len(raw) + i}
                for i, r in enumerate(res.raw)]
        offset += 1 + max((r["rep"] for r in res.raw), default=-1)
    return raw, offset


def pool(results: Sequence[BenchResult]) -> BenchResult:
    """Several runs of one benchmark (e.g. separate machine calls) as one result.

    Each call's rounds stay rounds of their own (numbered on), so ratios are
    still paired within a round and the intervals are bootstrapped over all
    rounds of all calls. The runs must agree on models, loops, baseline,
    tokens, prompt, scale, dtype, device, versions and commit. Profile
    columns (from a profiled pass, not timed) come from the first result.

    Example:
        >>> a, b = load_result("call1.json"), load_result("call2.json")  # doctest: +SKIP
        >>> print(pool([a, b]))                                           # doctest: +SKIP
    """
    _check_poolable(results)
    first = results[0]
    raw, reps = _pooled_raw(results)
    config = {**first.config, "reps": reps, "pooled_calls": len(results)}
    cfg = BenchConfig(**{f.name: config[f.name] for f in fields(BenchConfig)
                         if f.name in config})
    keep = [*PROFILE_COLUMNS.values(), "recording"]
    rows = [_cell(raw, r["model"], r["loop"], cfg, first.models.get(r["model"], {}),
                  config.get("bandwidth_gbs_used"), {k: r[k] for k in keep if k in r})
            for r in first.rows]
    dates = ", ".join(str(r.provenance.get("date")) for r in results)
    notes = list(first.notes) + [f"pooled from {len(results)} runs (dates {dates}): "
                                 "rounds numbered on, ratios paired within each round"]
    return BenchResult(config=config, provenance={**first.provenance, "pooled_dates": dates},
                       rows=rows, raw=raw, models=first.models, notes=notes)
