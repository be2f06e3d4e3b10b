"""Recordings side by side: per-token medians of every column, ratios to the first.

A ratio is flagged as noise when the two medians differ by no more than half
the sum of the two recordings' interquartile ranges of that column (the
difference is smaller than the usual token-to-token spread), so a "1.04x"
that means nothing says so.

Example:
    >>> df = compare_recordings(["before.mlxprof.json.gz", "after.mlxprof.json.gz"])  # doctest: +SKIP
    >>> print(format_comparison(df))                                                  # doctest: +SKIP
"""
from __future__ import annotations

import math
import os

from mlxprof.events import MlxprofError
from mlxprof.measure import iqr, median
from mlxprof.recording import split_name
from mlxprof.report import _table

_SKIP = {"step"}


def _label(path_or_rec, i: int) -> str:
    if isinstance(path_or_rec, (str, os.PathLike)):
        return split_name(path_or_rec)[0]
    return f"rec{i}"


def _unique(labels: list[str]) -> list[str]:
    seen: dict = {}
    out = []
    for lab in labels:
        seen[lab] = seen.get(lab, 0) + 1
        out.append(lab if seen[lab] == 1 else f"{lab}#{seen[lab]}")
    return out


def compare_recordings(recordings, labels=None):
    """DataFrame: one row per per-token column, medians per recording, ratios, noise.

    `recordings`: Recording objects or paths (loaded with `mlxprof.load`), the
    first is the reference. Columns: `<label>` (median per token), and for
    every other recording `<label>/<first>` (ratio of medians, NaN when the
    reference median is 0) and `<label> noise` (True when the difference is
    within the spread, see the module doc). `df.attrs["steps"]` holds the
    number of steps of each.

    Example:
        >>> df = compare_recordings([rec_a, rec_b], labels=["sync", "async"])  # doctest: +SKIP
        >>> df.loc["wall_ms", "async/sync"]                                    # doctest: +SKIP
    """
    import pandas as pd

    from mlxprof.recording import Recording, load

    items = list(recordings)
    if len(items) < 2:
        raise MlxprofError("compare needs at least two recordings")
    recs = [r if isinstance(r, Recording) else load(r) for r in items]
    labels = _unique(list(labels) if labels else [_label(r, i) for i, r in enumerate(items)])
    if len(labels) != len(recs):
        raise MlxprofError(f"{len(labels)} labels for {len(recs)} recordings")
    frames = [r.per_token() for r in recs]
    columns = []
    for df in frames:
        columns += [c for c in df.columns if c not in _SKIP and c not in columns
                    and pd.api.types.is_numeric_dtype(df[c])]
    stats = [{c: _median_iqr(df[c]) if c in df else (math.nan, math.nan) for c in columns}
             for df in frames]
    rows = {}
    for c in columns:
        ref, ref_iqr = stats[0][c]
        row = {labels[0]: ref}
        for lab, st in zip(labels[1:], stats[1:]):
            med, iqr = st[c]
            row[lab] = med
            row[f"{lab}/{labels[0]}"] = med / ref if ref else math.nan
            row[f"{lab} noise"] = bool(abs(med - ref) <= (iqr + ref_iqr) / 2)
        rows[c] = row
    out = pd.DataFrame.from_dict(rows, orient="index")
    out.index.name = "column"
    out.attrs["steps"] = {lab: len(r.steps) for lab, r in zip(labels, recs)}
    out.attrs["labels"] = labels
    return out


def _median_iqr(series) -> tuple[float, float]:
    values = series.dropna().astype(float)  # Int64 columns hold <NA> without count_ops
    return median(values), iqr(values)


def format_comparison(df) -> str:
    """The comparison as a printable table (ratios as 1.23x, noise as '~')."""
    labels = df.attrs.get("labels") or [c for c in df.columns
                                        if "/" not in c and not c.endswith(" noise")]
    first = labels[0]
    header = ["per-token median", first]
    for lab in labels[1:]:
        header += [lab, f"vs {first}"]
    body = []
    for col, row in df.iterrows():
        cells = [col, _num(row[first])]
        for lab in labels[1:]:
            ratio = row[f"{lab}/{first}"]
            mark = " ~" if row[f"{lab} noise"] else ""
            cells += [_num(row[lab]), "-" if math.isnan(ratio) else f"{ratio:.2f}x{mark}"]
        body.append(cells)
    steps = df.attrs.get("steps", {})
    lines = [", ".join(f"{lab}: {n} steps" for lab, n in steps.items())] if steps else []
    lines += _table(header, body)
    lines.append("(~: within the token-to-token spread, half the summed interquartile "
                 "ranges: likely noise)")
    return "\n".join(lines)


def _num(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.4g}" if isinstance(x, float) and not float(x).is_integer() else f"{x:.0f}"
