"""Side-by-side decode benchmark: models x loops x interleaved repetitions.

For each model: load it, warm every loop up, then time `reps` rounds in which
every loop runs once (round 1: every loop, round 2: every loop, ...), so slow
drift hits all loops alike. Each run decodes `tokens` greedy tokens after a
`prompt_tokens` prompt:

- prompt tok/s = prompt tokens / time to first token;
- decode tok/s = (tokens - 1) / time from the first to the last token (2..N);
- ratio vs the baseline loop = median over rounds of (loop tok/s / baseline
  tok/s in the same round): paired, so drift between rounds cancels;
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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import mlx.core as mx

from mlxprof import decode
from mlxprof.lab import models, roofline
from mlxprof.lab.models.external import looks_loadable
from mlxprof.decode import Loop

__all__ = ["run", "BenchConfig", "BenchResult", "BenchError", "DEFAULT",
           "check_config", "check_writable", "load_result", "resolve_dtype"]

SCHEMA = "mlxprof.lab.bench/1"
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


def _known_model(name: str, names: Sequence[str]) -> bool:
    if name in names:
        return True
    return looks_loadable(name)  # a folder or repo id: mlx_lm.load judges it later


def _check_models(cfg: BenchConfig, custom_loader: bool) -> None:
    if not cfg.models:
        raise BenchError("no models given")
    if custom_loader:
        return
    names, scales = models.NAMES, models.SCALES
    for name in cfg.models:
        if not _known_model(name, names):
            raise BenchError(f"unknown model {name!r}; known models: "
                             f"{', '.join(names)} (or a path / repo id "
                             "that mlx_lm.load accepts)")
    if cfg.scale not in scales:
        raise BenchError(f"unknown scale {cfg.scale!r}; known scales: "
                         f"{', '.join(scales)}")


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
# statistics


def _quantile(xs: Sequence[float], q: float) -> float:
    s = sorted(xs)
    if not s:
        return float("nan")
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def median(xs: Sequence[float]) -> float:
    """Median (linear interpolation, like numpy).

    Example:
        >>> median([3.0, 1.0, 2.0, 10.0])
        2.5
    """
    return _quantile(xs, 0.5)


def iqr(xs: Sequence[float]) -> float:
    """Interquartile range q75 - q25 (linear interpolation, like numpy).

    Example:
        >>> iqr([1.0, 2.0, 3.0, 4.0, 5.0])
        2.0
    """
    return _quantile(xs, 0.75) - _quantile(xs, 0.25)


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
    t0 = timer()
    t_first = None
    n = 0
    for _ in fn(model, prompt, tokens, **kwargs):
        n += 1
        if n == 1:
            t_first = timer()
    t_end = timer()
    decode.synchronize()  # drain leftover async work outside the timed window
    if t_first is None:
        raise RuntimeError("the loop yielded no token")
    ttft_s, decode_s = t_first - t0, t_end - t_first
    prompt_n = int(prompt.size)
    return RunTiming(
        n_tokens=n, ttft_s=ttft_s, decode_s=decode_s,
        prompt_tok_per_s=prompt_n / ttft_s if ttft_s > 0 else float("nan"),
        decode_tok_per_s=(n - 1) / decode_s if decode_s > 0 and n > 1 else float("nan"),
    )


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
    raw = []
    for rep in range(cfg.reps):
        for lp in loops:
            bar.set_postfix_str(f"{name} {lp.name} rep {rep + 1}/{cfg.reps}")
            t = time_run(lp.fn, models[lp.name], prompt, cfg.tokens, timer,
                         prefill_step_size=cfg.prefill_step_size)
            raw.append({"model": name, "scale": scale, "loop": lp.name,
                        "rep": rep, "seq": seq0 + len(raw),
                        "prompt_tokens": int(prompt.size), **asdict(t)})
            bar.update()
    return raw


def _bench_model(name: str, lm, loops: list[Loop], cfg: BenchConfig, timer,
                 bar, seq0: int) -> tuple[list[dict], dict]:
    """Warm up, time interleaved rounds, optionally profile; return raw + profiles."""
    prompt = lm.prompt(cfg.prompt_tokens, seed=cfg.seed)
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
        timer: Callable[[], float] = time.perf_counter, **options) -> "BenchResult":
    """Benchmark `loops` on `models`; return a BenchResult.

    `options` are BenchConfig fields (scale, tokens, prompt_tokens, reps,
    warmup, baseline, seed, bandwidth_gbs, profile, save_recordings).
    `loader(name, scale, seed) -> lm` replaces mlxprof.lab.models.load (stand-ins
    in tests); `timer` replaces time.perf_counter.

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
    with _progress(len(cfg.models) * len(loop_objs) * per_model, progress) as bar:
        for name in cfg.models:
            bar.set_postfix_str(f"loading {name} ({cfg.scale})")
            lm = load(name, cfg.scale, cfg.seed)
            infos[name] = _model_info(lm, cfg)
            r, p = _bench_model(name, lm, loop_objs, cfg, timer, bar, len(raw))
            raw += r
            profiles[name] = p
            del lm
            mx.clear_cache()
    return _result(cfg, loop_objs, raw, profiles, infos)


# --------------------------------------------------------------------------
# summarising


def _ratios(raw: list[dict], model: str, loop: str, baseline: Optional[str],
            key: str) -> list[float]:
    if baseline is None:
        return []
    base = {r["rep"]: r[key] for r in raw
            if r["model"] == model and r["loop"] == baseline}
    return [r[key] / base[r["rep"]] for r in raw
            if r["model"] == model and r["loop"] == loop
            and base.get(r["rep"]) and not math.isnan(r[key])]


def _cell(raw, model, loop: Loop, cfg, info, bw_gbs, profile) -> dict:
    runs = [r for r in raw if r["model"] == model and r["loop"] == loop.name]
    dec = [r["decode_tok_per_s"] for r in runs]
    pro = [r["prompt_tok_per_s"] for r in runs]
    ratios = _ratios(raw, model, loop.name, cfg.baseline, "decode_tok_per_s")
    pratios = _ratios(raw, model, loop.name, cfg.baseline, "prompt_tok_per_s")
    bpt = info.get("bytes_per_token")
    dec_med = median(dec)
    row = {
        "model": model, "scale": info.get("scale", cfg.scale), "loop": loop.name,
        "reps": len(runs),
        "tokens": cfg.tokens, "prompt_tokens": cfg.prompt_tokens,
        "decode_tok_per_s": dec_med, "decode_tok_per_s_iqr": iqr(dec),
        "prompt_tok_per_s": median(pro), "prompt_tok_per_s_iqr": iqr(pro),
        "baseline": cfg.baseline,
        "ratio_vs_baseline": median(ratios) if ratios else None,
        "ratio_vs_baseline_iqr": iqr(ratios) if ratios else None,
        "prompt_ratio_vs_baseline": median(pratios) if pratios else None,
        "weights_bytes_per_token": bpt,
        "roofline_tok_per_s": (roofline.roofline_tok_per_s(bpt, bw_gbs)
                               if bpt and bw_gbs else None),
        "roofline_fraction": roofline.roofline_fraction(dec_med, bpt, bw_gbs),
    }
    if cfg.profile:
        row.update(profile or {})
    return row


def _result(cfg, loops, raw, profiles, infos) -> "BenchResult":
    from mlxprof import provenance

    prov = provenance.collect()
    bw_gbs, bw_note = roofline.resolve(prov.get("device"), cfg.bandwidth_gbs)
    rows = [_cell(raw, m, lp, cfg, infos[m], bw_gbs,
                  profiles.get(m, {}).get(lp.name))
            for m in cfg.models for lp in loops]
    notes = [
        "decode tok/s: tokens 2..N over the time from first to last token; "
        "prompt tok/s: prompt tokens / time to first token",
        f"ratio_vs_baseline: {RATIO_METHOD}" if cfg.baseline else
        "no baseline: ratios not computed",
        f"roofline: {bw_note}",
        "values: median over repetitions, with the interquartile range (IQR)",
    ]
    if cfg.dtype == "auto" and resolve_dtype("auto") == "float32":
        notes.append("weights float32 (--dtype auto on the CPU backend: MLX's CPU "
                     "half-precision quantized matmul is many times slower); "
                     "--dtype bfloat16 gives the MLX releases' dtype")
    config = asdict(cfg)
    config["loops"] = [lp.name for lp in loops]
    config["loop_descriptions"] = {lp.name: lp.description for lp in loops}
    config["bandwidth_gbs_used"] = bw_gbs
    config["dtype_used"] = resolve_dtype(cfg.dtype) or "model default"
    return BenchResult(config=config, provenance=prov, rows=rows, raw=raw,
                       models=infos, notes=notes)


# --------------------------------------------------------------------------
# the result


def _fmt(x, spec: str = ".1f", blank: str = "") -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return blank
    return format(x, spec)


def _fmt_speed(med, spread) -> str:
    if med is None or (isinstance(med, float) and math.isnan(med)):
        return ""
    return f"{_fmt(med, '.1f')} ±{_fmt(spread, '.1f')}"


def _render(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h)
              for i, h in enumerate(header)]
    aligned = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([aligned(header), rule] + [aligned(r) for r in body])


@dataclass
class BenchResult:
    """What `run` measured: `rows` (one dict per model x loop), `raw` (one
    dict per timed run), `config`, `provenance`, `models`, `notes`.

    Example:
        >>> res = load_result("out/bench.json")                 # doctest: +SKIP
        >>> print(res.table())                                  # doctest: +SKIP
        >>> res.rows[0]["decode_tok_per_s"]                     # doctest: +SKIP
    """

    config: dict
    provenance: dict
    rows: list
    raw: list
    models: dict
    notes: list

    def _header(self) -> list[str]:
        base = self.config.get("baseline")
        cols = ["model", "loop", "decode tok/s ±IQR", "prompt tok/s ±IQR"]
        cols += [f"x {base}"] if base else []
        cols += ["MB/token", "% roofline"]
        if self.config.get("profile"):
            cols += ["evals", "syncs", "ops", "host ms", "submit ms", "blocked ms"]
        return cols

    def _line(self, row: dict) -> list[str]:
        bpt = row.get("weights_bytes_per_token")
        frac = row.get("roofline_fraction")
        cells = [f"{row['model']} ({row['scale']})", row["loop"],
                 _fmt_speed(row["decode_tok_per_s"], row["decode_tok_per_s_iqr"]),
                 _fmt_speed(row["prompt_tok_per_s"], row["prompt_tok_per_s_iqr"])]
        if self.config.get("baseline"):
            cells.append(_fmt(row.get("ratio_vs_baseline"), ".2f") + "x"
                         if row.get("ratio_vs_baseline") is not None else "")
        cells += [_fmt(bpt / 1e6 if bpt else None, ".1f"),
                  _fmt(frac * 100 if frac is not None else None, ".1f")]
        if self.config.get("profile"):
            cells += [_fmt(row.get(k), f) for k, f in (
                ("evals_per_tok", ".1f"), ("syncs_per_tok", ".1f"),
                ("ops_per_tok", ".0f"), ("host_ms_per_tok", ".2f"),
                ("submit_ms_per_tok", ".2f"), ("blocked_ms_per_tok", ".2f"))]
        return cells

    def table(self) -> str:
        """A readable table with a provenance caption and notes underneath."""
        from mlxprof.provenance import describe

        c = self.config
        caption = (f"{describe(self.provenance)}; commit "
                   f"{self.provenance.get('git_commit') or '?'}\n"
                   f"prompt {c['prompt_tokens']} tokens, decode {c['tokens']} tokens, "
                   f"{c['reps']} interleaved reps after {c['warmup']} warm-up run(s) "
                   f"of {min(c['tokens'], c.get('warmup_tokens') or c['tokens'])} "
                   f"tokens per loop, greedy, weights {c.get('dtype_used', '?')}")
        body = _render(self._header(), [self._line(r) for r in self.rows])
        notes = "\n".join(f"- {n}" for n in self.notes)
        return f"{caption}\n\n{body}\n\n{notes}"

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        """Everything, JSON-ready (the `to_json` content)."""
        return {"schema": SCHEMA, "provenance": self.provenance,
                "config": self.config, "notes": self.notes, "models": self.models,
                "rows": self.rows, "raw": self.raw}

    def to_json(self, path: Union[str, Path]) -> Path:
        """Write the JSON (provenance, config, rows, raw per-rep numbers)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(_jsonable(self.to_dict()), indent=1,
                                   default=str) + "\n")
        return path

    def to_csv(self, path: Union[str, Path]) -> Path:
        """Write one line per row, with the provenance repeated as columns."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        prov = {f"prov_{k}": v for k, v in self.provenance.items()}
        lines = [{**r, **prov} for r in self.rows]
        keys = list(dict.fromkeys(k for line in lines for k in line))
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(lines)
        return path

    def dataframe(self):
        """The rows as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.rows)


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
                       notes=d.get("notes", []))
