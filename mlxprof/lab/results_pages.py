"""Markdown pages for ``docs/results/``, generated from the JSON in ``data/results/``.

One page per stored run (its provenance, its configuration, its tables) and an
index. The pages are never edited by hand: a test renders them again and fails
when a page and its JSON disagree.

    python -m mlxprof.lab.results_pages            # rewrite docs/results/
    python -m mlxprof.lab.results_pages --check    # exit 1 if a page is stale

Example:
    >>> from mlxprof.lab import results_pages
    >>> pages = results_pages.render_all()           # doctest: +SKIP
    >>> sorted(pages)[0]                             # doctest: +SKIP
    'check_fast_diag2_qwen3.5_h200.md'
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from mlxprof.lab.results import results_dir

__all__ = ["render_all", "render_file", "write", "stale", "main"]

COMMAND = "python -m mlxprof.lab.results_pages"
VALUES_NOTE = ("Each value as stored; a list of numbers shows as its median, min-max and "
               "count (not an interval); an `interval` is one the file stored.")
PROVENANCE_KEYS = ("device", "backend", "mlx", "mlx_lm", "python", "date",
                   "git_commit", "command")


def _docs_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "docs" / "results"


def _sources(root: Path) -> list[Path]:
    files = [p for p in root.rglob("*") if p.suffix in (".json", ".jsonl")]
    return sorted(p for p in files if "recordings" not in p.parts)


def page_name(path: Path, root: Path) -> str:
    """``cpu/cpu_bench.json`` -> ``cpu__cpu_bench.md``."""
    rel = path.relative_to(root).with_suffix("")
    return "__".join(rel.parts) + ".md"


def _load(path: Path) -> Any:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    if isinstance(value, list):
        nums = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if nums and len(nums) == len(value):
            if len(nums) == 1:
                return _fmt(float(nums[0]))
            return (f"median {_fmt(float(statistics.median(nums)))} "
                    f"(min-max {_fmt(float(min(nums)))}-{_fmt(float(max(nums)))}, "
                    f"n={len(nums)})")
        return ", ".join(str(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


def _is_interval(key: str, value: Any) -> bool:
    """A stored (low, high) pair: the last key part has a ``ci`` word (``ratio_ci95``)."""
    words = key.rsplit(".", 1)[-1].split("_")
    return (isinstance(value, list) and len(value) == 2
            and any(w == "ci" or (w.startswith("ci") and w[2:].isdigit()) for w in words)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))


def _value_cell(key: str, value: Any) -> Any:
    """What the Values table shows: a stored interval as one, any other value by _fmt."""
    if _is_interval(key, value):
        return f"interval {_fmt(float(value[0]))} to {_fmt(float(value[1]))} (as stored)"
    return value


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> list[str]:
    header = list(header)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return out


def _provenance(data: Any) -> Optional[dict]:
    if isinstance(data, dict) and isinstance(data.get("provenance"), dict):
        return data["provenance"]
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return data[0].get("provenance")
    return None


def _provenance_lines(prov: Optional[dict]) -> list[str]:
    if not prov:
        return ["Provenance: not recorded in this file."]
    rows = [(k, prov[k]) for k in PROVENANCE_KEYS if prov.get(k) is not None]
    return _table(["measured with", "value"], rows)


def _flatten(data: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Scalar leaves (and lists of numbers) as (dotted path, value)."""
    if isinstance(data, dict):
        out = []
        for key, val in data.items():
            if key == "provenance":
                continue
            out += _flatten(val, f"{prefix}.{key}" if prefix else str(key))
        return out
    if isinstance(data, list) and data and all(isinstance(v, dict) for v in data):
        out = []
        for i, val in enumerate(data):
            out += _flatten(val, f"{prefix}[{i}]")
        return out
    return [(prefix, data)]


def _bench_lines(path: Path, data: dict) -> list[str]:
    from mlxprof.lab.bench import load_result
    from mlxprof.measure import CONFIDENCE, NOISE_RULE

    result = load_result(path)
    cfg = data.get("config", {})
    baseline = cfg.get("baseline")
    lines = ["## Configuration", ""]
    lines += _table(["setting", "value"], [(k, cfg[k]) for k in (
        "models", "scale", "loops", "baseline", "tokens", "prompt_tokens", "reps",
        "warmup", "warmup_tokens", "seed", "dtype") if k in cfg])
    lines += ["", "## Decode speed", "",
              f"Median over interleaved rounds [{CONFIDENCE:.0%} bootstrap interval of the "
              "median]; a ratio is the median of the same-round ratios to the baseline, "
              f"its interval bootstrapped over rounds. `*`: noisy ({NOISE_RULE}).", ""]
    rows = []
    for row in data.get("rows", []):
        model, loop = row["model"], row["loop"]
        ratio = result.ratio(model, loop) if baseline else None
        rows.append((model, loop, result.measurement(model, loop).n,
                     result.measurement(model, loop).text(1),
                     ratio.text(2) if ratio is not None else "-",
                     result.measurement(model, loop, "prompt_tok_per_s").text(0),
                     row.get("ops_per_tok", "-"), row.get("host_ms_per_tok", "-"),
                     row.get("submit_ms_per_tok", "-")))
    lines += _table(["model", "loop", "rounds", "decode tok/s", f"ratio to {baseline}",
                     "prompt tok/s", "ops/token", "host ms", "in async_eval ms"], rows)
    if data.get("notes"):
        lines += ["", "Notes:", ""] + [f"- {n}" for n in data["notes"]]
    return lines


def render_file(path: Path, root: Optional[Path] = None) -> str:
    """The markdown page of one results file."""
    root = root or path.parent
    data = _load(path)
    rel = path.relative_to(root).as_posix()
    lines = [f"# {rel}", "",
             f"Generated from `data/results/{rel}` by `{COMMAND}`; do not edit.", ""]
    lines += _provenance_lines(_provenance(data)) + [""]
    if isinstance(data, dict) and data.get("schema") == "mlxprof.bench/1":
        lines += _bench_lines(path, data)
    else:
        lines += ["## Values", "", VALUES_NOTE, ""]
        lines += _table(["key", "value"], [(k, _value_cell(k, v)) for k, v in _flatten(data)])
    return "\n".join(lines) + "\n"


def _index(root: Path, sources: list[Path], pooled: Sequence[str] = ()) -> str:
    rows = []
    for path in sources:
        data = _load(path)
        prov = _provenance(data) or {}
        kind = data.get("schema", "") if isinstance(data, dict) else "jsonl"
        name = page_name(path, root)
        rows.append((f"[{path.relative_to(root).as_posix()}]({name})", kind,
                     prov.get("device", "?"), prov.get("backend", "?"),
                     str(prov.get("date", "?"))[:10], prov.get("git_commit", "?")))
    lines = ["# Stored measurements", "",
             f"Every page here is generated from `data/results/` by `{COMMAND}`. "
             "Compare ratios measured in the same run, not rows of different files: "
             "absolute speed moved between calls on the same kind of card.", ""]
    if pooled:
        lines += ["Runs pooled over several machine calls (the published `fast` figures):", ""]
        lines += [f"- [{name[:-3]}]({name})" for name in pooled] + [""]
    lines += _table(["run", "schema", "device", "backend", "date", "commit"], rows)
    return "\n".join(lines) + "\n"


def render_all(root: Optional[Path] = None) -> dict[str, str]:
    """Every page (file name -> markdown), ``index.md`` included."""
    root = root or results_dir()
    sources = _sources(root)
    pages = {page_name(p, root): render_file(p, root) for p in sources}
    runs = _pooled_runs(root)
    for name, text in runs.items():
        pages[name] = text
    pages["index.md"] = _index(root, sources, sorted(runs))
    return pages


def _pooled_runs(root: Path) -> dict[str, str]:
    """One page per folder of gpu_round2 calls, their rounds pooled (round2_page)."""
    from mlxprof.lab import round2_page

    out = {}
    for folder in sorted(p for p in root.rglob("*") if p.is_dir() and round2_page.is_run(p)):
        rel = folder.relative_to(root).as_posix()
        out["__".join(folder.relative_to(root).parts) + ".md"] = round2_page.render(folder, rel)
    return out


def write(out: Optional[Path] = None, root: Optional[Path] = None) -> list[Path]:
    """Write every page to ``out`` (default: the checkout's docs/results/)."""
    out = out or _docs_dir()
    out.mkdir(parents=True, exist_ok=True)
    pages = render_all(root)
    for old in out.glob("*.md"):
        if old.name not in pages:
            old.unlink()
    for name, text in pages.items():
        (out / name).write_text(text)
    return [out / name for name in sorted(pages)]


def stale(out: Optional[Path] = None, root: Optional[Path] = None) -> list[str]:
    """Names of pages missing, extra or different from what the JSON gives."""
    out = out or _docs_dir()
    pages = render_all(root)
    have = {p.name: p.read_text() for p in out.glob("*.md")} if out.is_dir() else {}
    names = set(pages) | set(have)
    return sorted(n for n in names if pages.get(n) != have.get(n))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a page is stale")
    args = ap.parse_args(argv)
    if args.check:
        bad = stale()
        for name in bad:
            print(f"stale: docs/results/{name}")
        return 1 if bad else 0
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
