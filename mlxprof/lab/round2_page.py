"""The GPU page of `fast` vs mlx-lm: every call of experiments/gpu_round2.py pooled.

Each call writes ``gpu_round2_<model>.json`` (stages: kernels, determinism,
yardstick, interleaved rounds, profile). Calls are kept under
``data/results/<run>/call<k>/``; this module pools the rounds of all calls of a
run per model (ratios paired within each round, bootstrap interval over all
rounds) and renders one markdown table with what produced it.

Example:
    >>> from mlxprof.lab import round2_page
    >>> text = round2_page.render(results_dir() / "round2")   # doctest: +SKIP
"""
from __future__ import annotations

import json
from pathlib import Path

from mlxprof.measure import CONFIDENCE, NOISE_RULE, Measurement, paired_ratio

__all__ = ["pooled", "render", "is_run"]

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


def pooled(folder: Path) -> dict[str, dict]:
    """Per model: tok/s and ratio Measurements over every call's rounds, and the checks."""
    out = {}
    for model, calls in _calls(folder).items():
        mlx, fast, mlx_p, fast_p = {}, {}, {}, {}
        for call, data in calls:
            for r in (data["stages"].get("rounds") or {}).get("raw", []):
                key = f"{call}/{r['round']}"
                mlx[key] = r["mlx_lm"]["decode_tok_per_s"]
                fast[key] = r["fast"]["decode_tok_per_s"]
                mlx_p[key] = r["mlx_lm"]["prompt_tok_per_s"]
                fast_p[key] = r["fast"]["prompt_tok_per_s"]
        out[model] = {
            "calls": [c for c, _ in calls],
            "provenance": [d["provenance"] for _, d in calls],
            "mlx_lm": Measurement(tuple(mlx.values()), label="mlx_lm", unit="tok/s"),
            "fast": Measurement(tuple(fast.values()), label="fast", unit="tok/s"),
            "ratio": paired_ratio(fast, mlx, label="fast / mlx_lm"),
            "prompt_ratio": paired_ratio(fast_p, mlx_p, label="fast / mlx_lm prompt"),
            "yardstick": _stage(calls, "yardstick"),
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


def _yard(y: dict | None) -> str:
    if not y:
        return "-"
    ref, cand = y["mlx_lm"], y["fast"]
    return (f"mlx_lm {ref['rel_max_diff']:.4f} / {ref['argmax_agreement']:.3f}; "
            f"fast {cand['rel_max_diff']:.4f} / {cand['argmax_agreement']:.3f} "
            f"({y['n_rows']} steps): {'passes' if cand['passes'] else 'FAILS'}"
            f"{'' if y['conditioned'] else ' (model not conditioned)'}")


def _det(d: dict | None) -> str:
    if not d:
        return "-"
    same = d.get("identical")
    return "same tokens every run" if same else f"runs differ (first at {d.get('first_diff_vs_run0')})"


def render(folder: Path, rel: str) -> str:
    """The markdown page of one run folder (``rel``: its path under data/results)."""
    models = pooled(folder)
    prov = next(iter(models.values()))["provenance"][0] if models else {}
    lines = [f"# `fast` vs mlx-lm on the GPU: {rel}", "",
             f"Generated from `data/results/{rel}/call*/gpu_round2_*.json` by "
             "`python -m mlxprof.lab.results_pages`; do not edit.", "",
             f"Measured on {prov.get('device', '?')} ({prov.get('backend', '?')}), MLX "
             f"{prov.get('mlx', '?')}, mlx-lm {prov.get('mlx_lm', '?')}, commit "
             f"{prov.get('git_commit', '?')}; command `{prov.get('command', '?')}`. "
             "Each call is a separate machine call; the rounds of all calls are pooled. "
             f"Cells: median [{CONFIDENCE:.0%} bootstrap interval of the median]; the ratio "
             "is the median of same-round ratios. `*`: noisy "
             f"({NOISE_RULE}). A target counts as reached only when the whole interval "
             "clears it.", "",
             "| model | calls | rounds | mlx_lm tok/s | fast tok/s | fast / mlx_lm | target | "
             "reached | prompt tok/s: fast / mlx_lm | ops / host ms / in async_eval ms per token: mlx_lm | ... fast | "
             "vs float32: max diff / argmax (yardstick) | repeatability |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for model, m in models.items():
        target = TARGETS.get(model)
        reached = ("-" if target is None or m["ratio"].n == 0
                   else "yes" if m["ratio"].ci[0] >= target else "no")
        lines.append(" | ".join([
            f"| {model}", str(len(m["calls"])), str(m["ratio"].n), m["mlx_lm"].text(1),
            m["fast"].text(1), m["ratio"].text(2), f">= {target}x" if target else "-",
            reached, m["prompt_ratio"].text(2), _ops(m["profile"], "mlx_lm"), _ops(m["profile"], "fast"),
            _yard(m["yardstick"]), _det(m["determinism"])]) + " |")
    return "\n".join(lines) + "\n"
