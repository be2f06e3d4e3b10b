"""One self-contained HTML page of a recording: opens offline, in any browser.

plotly.js is embedded from plotly's own offline bundle (no CDN, no network).
The page shows: how it was run (command, steps rule, provenance), the
per-token timeline (stacked host / submit / blocked / lock-wait ms per step),
the time split of the whole run, the hooked calls on a timeline per thread,
ops per token by primitive (with --count-ops), the top sync call sites, the
threads, and the full provenance.

Example:
    >>> write_report(mlxprof.load("run.mlxprof.json.gz"), "report.html")  # doctest: +SKIP
    'report.html'
"""
from __future__ import annotations

import html
import json

from mlxprof.recording import _open_for_write

MAX_TIMELINE_EVENTS = 20_000  # above this the calls timeline is left out (page size)

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 8px;
text-align:right}th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.note{color:#666;font-size:.9em}"""


def write_report(rec, path) -> str:
    """Write the HTML page of `rec` to `path`; returns the path.

    Example:
        >>> write_report(prof.recording, "out/report.html")   # doctest: +SKIP
    """
    page = report_html(rec)
    with _open_for_write(path, "w", "HTML report") as f:
        f.write(page)
    return str(path)


def report_html(rec) -> str:
    """The page as a string (plotly.js inlined, about 5 MB).

    Example:
        >>> "<html" in report_html(rec)   # doctest: +SKIP
        True
    """
    from plotly.offline import get_plotlyjs

    from mlxprof.provenance import describe

    df = rec.per_token()
    title = f"mlxprof report: {rec.meta.get('command') or rec.meta.get('model') or 'recording'}"
    body = [f"<h1>{_e(title)}</h1>",
            f"<p>{len(df)} steps, {len(rec.events)} calls, {df['wall_ms'].sum():.2f} ms in "
            f"steps; on {_e(describe(rec.provenance))}</p>"]
    if rec.meta.get("steps_rule"):
        body.append(f"<p class='note'>steps: {_e(rec.meta['steps_rule'])}</p>")
    body += _section("Per-token timeline", _fig(rec.figure("tokens"), "tokens"),
                     "Each bar is one step (token), split into the stepping thread's host "
                     "time (building graphs), time submitting work (async_eval), time "
                     "blocked in evaluations and syncs, and eval-lock waits.")
    body += _section("Time split", _fig(_split_figure(df), "split"))
    if len(rec.events) <= MAX_TIMELINE_EVENTS:
        body += _section("Calls per thread", _fig(rec.figure("timeline"), "timeline"))
    else:
        body += _section("Calls per thread", f"<p class='note'>{len(rec.events)} calls: "
                         "too many to draw here; use `mlxprof trace` and Perfetto.</p>")
    body += _section("Ops by primitive", _ops_part(rec, df))
    body += _section("Sync call sites", _sites_table(rec))
    body += _section("Threads", _frame_html(rec.per_thread()))
    body += _section("Provenance", _dict_table({**rec.provenance, **_meta(rec)}))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
            f"<title>{_e(title)}</title><style>{_CSS}</style>"
            f"<script type='text/javascript'>{get_plotlyjs()}</script></head><body>"
            + "\n".join(body) + "</body></html>")


def _e(text) -> str:
    return html.escape(str(text))


def _section(name: str, content: str, note: str | None = None) -> list[str]:
    out = [f"<h2>{_e(name)}</h2>"]
    if note:
        out.append(f"<p class='note'>{_e(note)}</p>")
    return out + [content]


def _fig(fig, div_id: str) -> str:
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id,
                       default_height="420px")


def _split_figure(df):
    import plotly.graph_objects as go

    from mlxprof.plots import _PARTS

    fig = go.Figure()
    for col, label, color in _PARTS:
        fig.add_bar(x=[float(df[col].sum())], y=["all steps"], orientation="h",
                    name=label, marker_color=color)
    fig.update_layout(barmode="stack", xaxis_title="ms (sum over steps)", height=260)
    return fig


def _ops_part(rec, df) -> str:
    if not rec.options.get("count_ops"):
        return "<p class='note'>Not counted: record with --count-ops to see them.</p>"
    import plotly.graph_objects as go

    cols = [c for c in df.columns if c.startswith("ops_") and c != "ops_total"]
    means = {c[4:]: float(df[c].mean()) for c in cols}
    fig = go.Figure(go.Bar(x=list(means), y=list(means.values()), marker_color="#4C78A8"))
    fig.update_layout(yaxis_title="mean ops per token", xaxis_title="primitive", height=380)
    return _fig(fig, "ops")


def _sites_table(rec, top: int = 20) -> str:
    from mlxprof.report import _site_rows

    rows = _site_rows(rec, top=top)
    if not rows:
        return "<p class='note'>No call sites recorded (--no-call-sites).</p>"
    head = "".join(f"<th>{h}</th>" for h in ("site", "kind", "calls", "total ms"))
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _frame_html(df) -> str:
    return df.to_html(index=False, float_format=lambda x: f"{x:.3f}", border=0)


def _meta(rec) -> dict:
    return {f"meta.{k}": v for k, v in rec.meta.items()} | {
        f"option.{k}": v for k, v in rec.options.items()}


def _dict_table(d: dict) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td style='text-align:left'>"
                   f"{_e(v if isinstance(v, str) else json.dumps(v))}</td></tr>"
                   for k, v in d.items())
    return f"<table>{rows}</table>"
