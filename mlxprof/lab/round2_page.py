"""The GPU page of `fast` vs mlx-lm: every call of experiments/gpu_round2.py pooled.

Each call writes ``gpu_round2_<model>.json`` (stages: kernels, determinism,
yardstick, interleaved rounds, profile). Calls are kept under
``data/results/<run>/call<k>/`` (any run name: round2, round3, ...); this
module pools the rounds of all calls of a run per model (ratios paired within
each round, bootstrap interval over all rounds) and renders one markdown table
with what produced it: `fast` and, where a call timed it (``--loops
pipelined``), mlxprof's pipelined loop on the original model, each against
mlx-lm; then the yardstick variants of `fast` where a call measured some.

Example:
    >>> from mlxprof.lab import round2_page
    >>> text = round2_page.render(results_dir() / "round2", "round2")  # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

from mlxprof.measure import CONFIDENCE, NOISE_RULE, Measurement, paired_ratio

__all__ = ["pooled", "render", "is_run", "host_ceiling"]

TARGETS = {"qwen3.5-35b-a3b": 4.0, "qwen3-30b-a3b": 3.0, "qwen3-8b": 1.6,
           "smollm2-135m": 2.0, "smollm2-shape": 2.0}   # issue 14, same-run ratio to mlx-lm


def is_run(folder: Path) -> bool:
    """A run folder: call*/gpu_round2_*.json inside."""
    return any(folder.glob("call*/gpu_round2_*.json"))


def _calls(folder: Path) -> dict[str, list[tuple[str, dict]]]:
    by_model: dict = {}
    for path in sorted(folder.glob("call*/gpu_round2_*.json")):
        if path.name == "gpu_round2_summary.json":
            continue
        data = json.loads(path.read_text())
        by_model.setdefault(data["model"], []).append((path.parent.name, data))
    return by_model


def _stage(calls, key: str):
    """The first call's result of a stage that ran (not skipped, no error)."""
    return next((d["stages"][key] for _, d in calls
                 if isinstance(d["stages"].get(key), dict)
                 and not {"skipped", "error"} & set(d["stages"][key])), None)


def _per_round(calls, key: str) -> dict[str, dict[str, float]]:
    """{label: {"call/round": value of `key`}} over every call's raw rounds."""
    out: dict = {}
    for call, data in calls:
        for r in (data["stages"].get("rounds") or {}).get("raw", []):
            for label, run in r.items():
                if isinstance(run, dict):
                    out.setdefault(label, {})[f"{call}/{r['round']}"] = run[key]
    return out


def _variants(calls) -> list[tuple[str, dict]]:
    """(call, yardstick stage) of each call whose yardstick measured variants."""
    return [(c, d["stages"]["yardstick"]) for c, d in calls
            if "variants" in (d["stages"].get("yardstick") or {})]


def pooled(folder: Path) -> dict[str, dict]:
    """Per model: tok/s and ratio Measurements over every call's rounds, and the checks.

    ``pipelined_ratio`` pools only the rounds that timed ``pipelined`` (n=0 if none).

    Example:
        >>> pooled(results_dir() / "round2")["qwen3-8b"]["ratio"].median  # doctest: +SKIP
        1.7
    """
    out = {}
    for model, calls in _calls(folder).items():
        dec, pro = _per_round(calls, "decode_tok_per_s"), _per_round(calls, "prompt_tok_per_s")
        mlx, fast = dec.get("mlx_lm", {}), dec.get("fast", {})
        out[model] = {
            "calls": [c for c, _ in calls],
            "provenance": [d["provenance"] for _, d in calls],
            "mlx_lm": Measurement(tuple(mlx.values()), label="mlx_lm", unit="tok/s"),
            "fast": Measurement(tuple(fast.values()), label="fast", unit="tok/s"),
            "ratio": paired_ratio(fast, mlx, label="fast / mlx_lm"),
            "pipelined_ratio": paired_ratio(dec.get("pipelined", {}), mlx,
                                            label="pipelined / mlx_lm"),
            "variant_ratios": {v: paired_ratio(dec[v], mlx, label=f"{v} / mlx_lm")
                               for v in sorted(dec) if v.startswith("fast_")},
            "prompt_ratio": paired_ratio(pro.get("fast", {}), pro.get("mlx_lm", {}),
                                         label="fast / mlx_lm prompt"),
            "yardstick": _stage(calls, "yardstick"),
            "yardstick_variants": _variants(calls),
            "determinism": _stage(calls, "determinism"),
            "profile": _stage(calls, "profile"),
        }
    return out


def _ops(p: dict | None, loop: str) -> str:
    if not p or "skipped" in p or loop not in p:
        return "-"
    d = p[loop]
    return (f"{d.get('ops_per_tok', float('nan')):.0f} / {d.get('host_ms', float('nan')):.2f}"
            f" / {d.get('submit_ms', float('nan')):.2f}")


def host_ceiling(p: dict | None) -> float | None:
    """(host + in async_eval ms) of mlx_lm over fast's, per token, from one profiled
    run: the speed-up `fast` reaches at most while both loops are host-bound.

    Example:
        >>> host_ceiling({"mlx_lm": {"host_ms": 6.0, "submit_ms": 2.0},
        ...               "fast": {"host_ms": 3.0, "submit_ms": 1.0}})
        2.0
    """
    if not p or "skipped" in p or "mlx_lm" not in p or "fast" not in p:
        return None
    work = lambda d: d.get("host_ms", float("nan")) + d.get("submit_ms", float("nan"))
    return work(p["mlx_lm"]) / work(p["fast"])


def _ceiling(p: dict | None) -> str:
    c = host_ceiling(p)
    return "-" if c is None else f"{c:.2f}x"


def _dist(name: str, d: dict) -> str:
    """'name max diff / argmax' of one yardstick entry."""
    return f"{name} {d['rel_max_diff']:.4f} / {d['argmax_agreement']:.3f}"


def _yard(y: dict | None) -> str:
    if not y:
        return "-"
    cand = y["fast"]
    return (f"{_dist('mlx_lm', y['mlx_lm'])}; {_dist('fast', cand)} "
            f"({y['n_rows']} steps): {'passes' if cand['passes'] else 'FAILS'}"
            f"{'' if y['conditioned'] else ' (model not conditioned)'}")


def _variant(name: str, d: dict) -> str:
    if "error" in d:
        return f"{name} not built ({d['error']})"
    return f"{_dist(name, d)} {'passes' if d['passes'] else 'FAILS'}"


def _spread(y: dict) -> str:
    """' Typical differences (...)' from a yardstick's spread, or ''."""
    if not y.get("spread"):
        return ""
    return (" Typical differences (median over the steps of each step's max diff / mean diff): "
            + "; ".join(f"{n} {s['row_p50']:.4f} / {s['mean']:.5f}" for n, s in y["spread"].items())
            + ".")


def _variant_lines(models: dict) -> list[str]:
    """The section under the table: each call's yardstick variants, per model."""
    rows = [f"- {model}, {call} ({y['n_rows']} steps): {_dist('mlx_lm', y['mlx_lm'])}; "
            + "; ".join(_variant(n, d) for n, d in y["variants"].items()) + "." + _spread(y)
            for model, m in models.items() for call, y in m["yardstick_variants"]]
    if not rows:
        return []
    return ["", "## Yardstick variants", "",
            "`fast` with one lever changed, measured against the same float32 reference "
            "in the same call (max diff / argmax agreement; the bar is mlx_lm's, as in the "
            "table). Where the call stored each table's spread (`accuracy.spread`), the typical "
            "differences follow: the largest difference of one table can move between paths "
            "whose typical differences are the same.", ""] + rows


def _ratio(m: Measurement) -> str:
    return m.text(2) if m.n else "-"


def _variant_ratios(m: dict) -> str:
    """'fast_x a.bx [lo-hi]; ...' for the fast variants timed in the rounds."""
    vs = m["variant_ratios"]
    return "; ".join(f"{v} {_ratio(r)}" for v, r in vs.items()) if vs else "-"


def _provenance_lines(models: dict) -> list[str]:
    """One line per call: its commit, date and command (calls may differ)."""
    seen = {}
    for m in models.values():
        for call, p in zip(m["calls"], m["provenance"]):
            seen.setdefault((call, p.get("command") or ""), p)
    return [f"- {call}: commit {p.get('git_commit', '?')}"
            f"{' (dirty)' if p.get('git_dirty') else ''}, {p.get('date', '?')[:16]}, "
            + (f"`{cmd}`" if cmd else "command not recorded")
            for (call, cmd), p in sorted(seen.items())]


def _det(d: dict | None) -> str:
    if not d:
        return "-"
    same = d.get("identical")
    return "same tokens every run" if same else f"runs differ (first at {d.get('first_diff_vs_run0')})"


_COLUMNS = ["model", "calls", "rounds", "mlx_lm tok/s", "fast tok/s", "fast / mlx_lm", "target",
            "reached", "pipelined / mlx_lm", "variants / mlx_lm",
            "prompt tok/s: fast / mlx_lm",
            "ops / host ms / in async_eval ms per token: mlx_lm", "... fast",
            "host-bound ceiling", "vs float32: max diff / argmax (yardstick)", "repeatability"]


def _header(folder: Path, rel: str, prov: dict) -> list[str]:
    """Title, what produced the page, how to read it, the folder's NOTE.md."""
    lines = [f"# `fast` vs mlx-lm on the GPU: {rel}", "",
             f"Generated from `data/results/{rel}/call*/gpu_round2_*.json` by "
             "`python -m mlxprof.lab.results_pages`; do not edit.", "",
             f"Measured on {prov.get('device', '?')} ({prov.get('backend', '?')}), MLX "
             f"{prov.get('mlx', '?')}, mlx-lm {prov.get('mlx_lm', '?')}; the calls (commit, "
             "date, command) are listed under the table. "
             "Each call is a separate machine call; the rounds of all calls are pooled. "
             f"Cells: median [{CONFIDENCE:.0%} bootstrap interval of the median]; the ratio "
             "is the median of same-round ratios. `*`: noisy "
             f"({NOISE_RULE}). A target counts as reached only when the whole interval "
             "clears it. pipelined: mlxprof's pipelined loop on the unoptimized model, "
             "over the rounds that timed it (`--loops pipelined`; `-`: none did). "
             "variants: `fast` with one lever changed (`--variants`), same rounds. "
             "The ops / host ms / in async_eval ms, yardstick and repeatability columns "
             "come from the first call that ran that stage: the ms are medians over the "
             "tokens of one profiled run (no interval: one run); the yardstick and "
             "repeatability are that call's checks, not timings. host-bound ceiling: "
             "mlx_lm's (host + in async_eval) ms per token over fast's, from that "
             "profiled run (the profiler's own cost included): the most `fast / mlx_lm` "
             "can reach while both loops are bound by the host's work per token.", ""]
    note = folder / "NOTE.md"
    if note.exists():
        lines += [note.read_text().strip(), ""]
    return lines + ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]


def render(folder: Path, rel: str) -> str:
    """The markdown page of one run folder (``rel``: its path under data/results)."""
    models = pooled(folder)
    prov = next(iter(models.values()))["provenance"][0] if models else {}
    lines = _header(folder, rel, prov)
    for model, m in models.items():
        target = TARGETS.get(model)
        reached = ("-" if target is None or m["ratio"].n == 0
                   else "yes" if m["ratio"].ci[0] >= target else "no")
        lines.append(" | ".join([
            f"| {model}", str(len(m["calls"])), str(m["ratio"].n), m["mlx_lm"].text(1),
            m["fast"].text(1), m["ratio"].text(2), f">= {target}x" if target else "-",
            reached, _ratio(m["pipelined_ratio"]), _variant_ratios(m),
            m["prompt_ratio"].text(2), _ops(m["profile"], "mlx_lm"),
            _ops(m["profile"], "fast"), _ceiling(m["profile"]), _yard(m["yardstick"]),
            _det(m["determinism"])]) + " |")
    calls = ["", "## Calls", ""] + _provenance_lines(models)
    return "\n".join(lines + _variant_lines(models) + calls) + "\n"
