"""plotly figures of a Recording (plotly is imported only when a figure is made).

Example:
    >>> fig = mlxprof.load("run.mlxprof.json.gz").figure("tokens")  # doctest: +SKIP
    >>> fig.show()                                                   # doctest: +SKIP
"""
from __future__ import annotations

from mlxprof.events import category

_PARTS = [("host_ms", "host (building the graph)", "#4C78A8"),
          ("submit_ms", "submit (in async_eval)", "#F58518"),
          ("blocked_ms", "blocked (eval / syncs)", "#E45756"),
          ("lock_wait_ms", "lock wait", "#72B7B2")]
_CAT_COLORS = {"submit": "#F58518", "eval": "#B279A2", "sync": "#E45756"}


def figure(rec, kind: str = "tokens"):
    """'tokens': stacked time split per step; 'timeline': calls per thread."""
    if kind == "tokens":
        return tokens_figure(rec)
    if kind == "timeline":
        return timeline_figure(rec)
    raise ValueError(f"figure kind must be 'tokens' or 'timeline', not {kind!r}")


def _title(rec, what: str) -> str:
    from mlxprof.provenance import describe

    model = rec.meta.get("model")
    head = f"{what} — {model}" if model else what
    return f"{head}<br><sup>{describe(rec.provenance)}</sup>"


def tokens_figure(rec):
    """Stacked bars per step: host, submit, blocked and lock-wait ms.

    Example:
        >>> tokens_figure(rec).show()   # doctest: +SKIP
    """
    import plotly.graph_objects as go

    df = rec.per_token()
    fig = go.Figure()
    for col, label, color in _PARTS:
        fig.add_bar(x=df["step"], y=df[col].clip(lower=0), name=label, marker_color=color)
    fig.update_layout(barmode="stack", title=_title(rec, "Time per token"),
                      xaxis_title="step (token)", yaxis_title="ms", legend_title="part")
    return fig


def timeline_figure(rec):
    """One horizontal bar per hooked call on a row per thread, steps as shading.

    Example:
        >>> timeline_figure(rec).show()   # doctest: +SKIP
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    by_cat: dict = {}
    for e in rec.events:
        lane = rec.threads.get(e.thread_id, str(e.thread_id))
        d = by_cat.setdefault(category(e.kind), {"x": [], "base": [], "y": [], "text": []})
        d["base"].append((e.start_ns - rec.start_ns) / 1e6)
        d["x"].append(max((e.end_ns - e.start_ns) / 1e6, 1e-4))
        d["y"].append(lane)
        d["text"].append(f"{e.kind} (step {e.step})")
    for cat, d in by_cat.items():
        fig.add_bar(orientation="h", name=cat, marker_color=_CAT_COLORS.get(cat),
                    hovertext=d["text"], **{k: d[k] for k in ("x", "base", "y")})
    for s in rec.steps[::2]:
        fig.add_vrect(x0=(s.start_ns - rec.start_ns) / 1e6, x1=(s.end_ns - rec.start_ns) / 1e6,
                      fillcolor="grey", opacity=0.08, line_width=0)
    fig.update_layout(barmode="overlay", title=_title(rec, "Timeline of evals and syncs"),
                      xaxis_title="ms since profile start", yaxis_title="thread")
    return fig
