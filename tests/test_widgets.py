"""The slider explorer redraws its output with the chosen value."""
import pytest

from mlxprof import widgets

ipywidgets = pytest.importorskip("ipywidgets")


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


def test_timelines_title_names_the_run():
    import mlx.core as mx
    import mlxprof

    profs = {}
    for name in ("a", "b"):
        with mlxprof.Profiler() as p:
            for _ in p.track(range(3)):
                mx.eval(mx.ones(2) + 1)
        profs[name] = p
    titles = []
    box = widgets.explore_timelines(profs, "a", steps=(0, 1))
    import plotly.graph_objects as go
    orig = widgets.explore
    try:  # capture the figures the slider renders
        widgets.explore = lambda render, values, value, label: titles.extend(
            render(v).layout.title.text for v in values)
        widgets.explore_timelines(profs, steps=(0, 1))
    finally:
        widgets.explore = orig
    assert titles[0].startswith("a, steps 0-1") and titles[1].startswith("b, steps 0-1")
    assert box.children[0].options == ("a", "b")
