"""The slider explorers redraw their output with the chosen value."""
import mlx.core as mx
import pytest

import mlxprof
from mlxprof import widgets

ipywidgets = pytest.importorskip("ipywidgets")


def small_profile(n=3):
    with mlxprof.Profiler() as p:
        for _ in p.track(range(n)):
            mx.eval(mx.ones(2) + 1)
    return p


def test_explore_renders_default_then_each_move():
    seen = []
    box = widgets.explore(lambda v: seen.append(v) or f"view {v}", [1, 2, 4], 4, "layers")
    slider, out = box.children
    assert seen == [4] and slider.value == 4 and isinstance(out, ipywidgets.Output)
    slider.value = 2
    slider.value = 1
    assert seen == [4, 2, 1]


def test_explore_bad_value_says_which():
    with pytest.raises(ValueError, match="not one of"):
        widgets.explore(str, [1, 2], 3)
    with pytest.raises(ValueError, match="at least one"):
        widgets.explore(str, [])


def test_timelines_title_names_the_run_and_steps(monkeypatch):
    profs = {"a": small_profile(), "b": small_profile()}
    box = widgets.explore_timelines(profs, "a", steps=(0, 1))
    assert box.children[0].options == ("a", "b")
    titles = []
    monkeypatch.setattr(widgets, "explore", lambda render, values, value, label: titles.extend(
        render(v).layout.title.text for v in values))
    widgets.explore_timelines(profs, steps=(0, 9))           # past the end: clipped
    assert titles[0].startswith("a, steps 0-2") and titles[1].startswith("b, steps 0-2")


def test_token_html_shows_text_so_far_and_the_time_split(monkeypatch):
    p = small_profile()
    html = widgets.token_html(p, ["Par", "is", "<b>"], 2)
    assert "Paris<span" in html and "&lt;b&gt;" in html
    assert "token 2: wall" in html and "1 eval" in html
    box = widgets.explore_tokens(p, ["Par", "is", "!"])
    assert box.children[0].value == 2 and len(box.children[0].options) == 3
    shown = []
    monkeypatch.setattr(widgets, "explore", lambda render, values, value, label: shown.extend(
        render(v).data for v in values))
    widgets.explore_tokens(p, ["Par", "is", "!"])
    assert shown == [widgets.token_html(p, ["Par", "is", "!"], i) for i in range(3)]


def test_explore_without_widgets_when_asked(monkeypatch):
    """MLXPROF_WIDGETS=0 (headless runs): the default view, no slider."""
    monkeypatch.setenv("MLXPROF_WIDGETS", "0")
    assert widgets.explore(lambda n: f"{n} layers", [1, 2, 4], 2, "layers") == "2 layers"
