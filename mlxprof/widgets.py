"""Sliders over recordings for Jupyter: pick a token or a run, the view redraws.

`explore(render, values, value, label)` is the one building block: a slider
over `values` above an output area that is cleared and redrawn with
`render(value)` whenever the slider moves (plotly figures included: the
figure is drawn anew, not patched, so JupyterLab shows the new one).
`explore_tokens` and `explore_timelines` are the two uses the notebooks need.

ipywidgets and IPython load only when called; without ipywidgets, or with the
environment variable MLXPROF_WIDGETS=0 (for headless runs: papermill's client can
stall on widget messages, nbclient issue #312), `explore` returns `render(value)`
so the cell still shows the default view.

Example:
    >>> from mlxprof import widgets
    >>> box = widgets.explore(lambda n: f"{n} layers", [1, 2, 4], 4, "layers")  # doctest: +SKIP
    >>> box                                        # the cell's last line shows it
"""
from __future__ import annotations

import html
import os

__all__ = ["explore", "token_html", "explore_tokens", "explore_timelines"]


def explore(render, values, value=None, label: str = "value"):
    """A slider over `values` and an output redrawn with `render(value)` on every move.

    Returns the widget (an ipywidgets VBox: ``.children`` = slider, output);
    put it last in a cell to show it. `value` defaults to the last of `values`.

    Example:
        >>> box = explore(lambda i: i * i, range(4), 2, "i")     # doctest: +SKIP
        >>> box.children[0].value = 3                             # doctest: +SKIP
    """
    values = list(values)
    if not values:
        raise ValueError("explore() needs at least one value to show")
    value = values[-1] if value is None else value
    if value not in values:
        raise ValueError(f"explore(): {value!r} is not one of the values {values!r}")
    if os.environ.get("MLXPROF_WIDGETS") == "0":
        return render(value)
    try:
        import ipywidgets as widgets
        from IPython.display import display
    except ImportError:
        return render(value)
    slider = widgets.SelectionSlider(options=values, value=value, description=label,
                                     continuous_update=False, layout={"width": "500px"},
                                     style={"description_width": "initial"})
    out = widgets.Output()

    def draw(v):
        with out:
            out.clear_output(wait=True)
            display(render(v))

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(value)
    return widgets.VBox([slider, out])


def token_html(rec, pieces, i: int) -> str:
    """HTML: the text up to token `i` (highlighted) and where token `i`'s time went.

    `rec` is a Profiler or Recording, `pieces` the decoded text of each token.

    Example:
        >>> token_html(prof, ["Par", "is"], 1)                   # doctest: +SKIP
        "<div ...>Par<span ...>is</span></div><p>token 1: wall ...</p>"
    """
    return _token_html(rec.per_token().iloc[i], pieces, i)


def _token_html(row, pieces, i: int) -> str:
    text = "".join(html.escape(p) for p in pieces[:i])
    cur = html.escape(pieces[i]).replace("\n", "\\n") or "&nbsp;"
    return (f"<div style='font-family:monospace;white-space:pre-wrap'>{text}"
            f"<span style='background:#F58518;color:white'>{cur}</span></div>"
            f"<p>token {i}: wall {row.wall_ms:.1f} ms = host {row.host_ms:.1f} + submit "
            f"{row.submit_ms:.1f} + blocked {row.blocked_ms:.1f} + lock wait "
            f"{row.lock_wait_ms:.1f} ms; {int(row.n_async_eval)} async_eval, {int(row.n_eval)} eval, "
            f"{int(row.n_sync)} sync</p>")


def explore_tokens(rec, pieces, value: int | None = None):
    """A token slider over a profile: the text as it grew, and each token's time split.

    Example:
        >>> explore_tokens(prof, [tok.decode([t]) for t in tokens])   # doctest: +SKIP
    """
    from IPython.display import HTML

    df = rec.per_token()  # once: the slider redraws one of its rows
    n = min(len(pieces), len(df))
    return explore(lambda i: HTML(_token_html(df.iloc[i], pieces, i)), range(n),
                   n - 1 if value is None else value, "token")


def explore_timelines(recs: dict, value=None, steps: tuple | None = None,
                      height: int = 260, label: str = "run"):
    """A slider over named profiles or recordings, showing each one's timeline figure.

    `steps=(first, last)` zooms the x axis onto those steps (clipped to the
    recording). The figure's title names the chosen run.

    Example:
        >>> explore_timelines({"sync": p1, "pipelined": p2}, steps=(4, 8))  # doctest: +SKIP
    """
    def render(name):
        r = recs[name]
        rec = getattr(r, "recording", r)
        fig = rec.figure("timeline")
        title = f"{name} — {fig.layout.title.text}"
        if steps is not None and rec.steps:
            last = len(rec.steps) - 1
            s0, s1 = rec.steps[min(steps[0], last)], rec.steps[min(steps[1], last)]
            fig.update_xaxes(range=[(s0.start_ns - rec.start_ns) / 1e6,
                                    (s1.end_ns - rec.start_ns) / 1e6])
            title = f"{name}, steps {s0.index}-{s1.index} — {fig.layout.title.text}"
        fig.update_layout(height=height, title=title)
        return fig

    return explore(render, list(recs), value, label)
