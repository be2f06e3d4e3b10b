"""mlxprof.measure: statistics, bootstrap intervals, noise rule, timing, tables."""
import numpy as np
import pytest

from mlxprof import measure
from mlxprof.measure import Measurement, paired_ratio, time_rounds, time_tokens


def test_median_iqr_by_hand():
    m = Measurement([100.0, 1.0, 3.0, 2.0, 4.0])
    assert m.median == 3.0                 # sorted 1 2 3 4 100
    assert m.iqr == 2.0                    # q75 = 4, q25 = 2 (linear interpolation)
    assert m.n == 5 and m.values == (100.0, 1.0, 3.0, 2.0, 4.0)


def test_none_and_nan_are_dropped_with_their_rounds():
    m = Measurement([1.0, None, float("nan"), 3.0], rounds=(0, 1, 2, 3))
    assert m.values == (1.0, 3.0) and m.rounds == (0, 3) and m.median == 2.0
    with pytest.raises(ValueError, match="one label per value"):
        Measurement([1.0, 2.0], rounds=(0,))
    with pytest.raises(TypeError, match=r"got dict .*measurement\(name, key\)"):
        Measurement([{"tok_s": 1.0}])


def test_bootstrap_ci_by_hand():
    # three values: a resampled median is the smallest with probability 7/27 (> 2.5%),
    # the largest likewise, so the 95% interval runs from the smallest to the largest
    assert Measurement([1.0, 2.0, 3.0]).ci == (1.0, 3.0)
    assert Measurement([5.0] * 6).ci == (5.0, 5.0)
    lo, hi = Measurement([7.0]).ci
    assert np.isnan(lo) and np.isnan(hi)         # one value: no interval


def test_bootstrap_ci_is_seeded_and_holds_the_median():
    rng = np.random.default_rng(42)
    for _ in range(30):
        xs = tuple(rng.lognormal(size=int(rng.integers(2, 15))))
        m = Measurement(xs)
        assert m.ci == Measurement(xs).ci                   # same seed, same interval
        assert m.ci[0] <= m.median <= m.ci[1]
    xs = tuple(rng.normal(100, 10, size=12))
    assert Measurement.from_dict(Measurement(xs, seed=3).to_dict()).seed == 3
    narrow = Measurement(xs, confidence=0.5).ci
    wide = Measurement(xs, confidence=0.99).ci
    assert wide[0] < narrow[0] and narrow[1] < wide[1]


def test_noise_rule():
    tight = Measurement([99.0, 100.0, 100.0, 101.0, 100.5])
    assert not tight.noisy and tight.warning == ""
    wide_iqr = Measurement([80.0, 90.0, 100.0, 110.0, 120.0])   # IQR 20 = 20% of 100
    assert wide_iqr.noisy and "IQR 20%" in wide_iqr.warning
    # IQR 2% of the median, but the five values span 90..110: the interval is the range
    ci_only = Measurement([90.0, 99.0, 100.0, 101.0, 110.0])
    assert ci_only.ci == (90.0, 110.0)
    assert ci_only.warning == "95% CI ±10% of the median"
    few = Measurement([1.0, 1.0])
    assert few.noisy and "too few" in few.warning


def test_repr_is_one_readable_line():
    m = Measurement([118.0, 121.0, 120.5, 119.0, 122.0], label="fast decode", unit="tok/s")
    assert repr(m) == "fast decode tok/s: 120.5 (95% CI 118.0-122.0, IQR 2.0, n=5)"
    noisy = Measurement([80.0, 90.0, 100.0, 110.0, 120.0], label="x", unit="tok/s")
    assert repr(noisy).endswith("[noisy: IQR 20%, 95% CI ±20% of the median]")
    big = Measurement(tuple(range(1000)), label="many")
    assert "\n" not in repr(big) and len(repr(big)) < 120    # no dump of the values
    r = paired_ratio([2.0, 4.0, 6.6], [1.0, 2.0, 3.0], label="a / b")
    assert repr(r).startswith("a / b: 2.00x (95% CI 2.00-2.20x")
    html = Measurement([1.0, 2.0, 3.0], label="<b>")._repr_html_()
    assert "&lt;b&gt;" in html and "noisy" in html


def test_to_dict_roundtrip():
    m = Measurement([1.0, 2.0, 4.0], label="a", unit="s", rounds=(0, 1, 2))
    d = m.to_dict()
    assert d["median"] == 2.0 and d["ci"] == [1.0, 4.0] and d["values"] == [1.0, 2.0, 4.0]
    back = Measurement.from_dict(d)
    assert back == m and back.ci == m.ci


def test_paired_ratio_is_median_of_same_round_ratios():
    r = paired_ratio([11.0, 60.0, 44.0], [10.0, 20.0, 40.0])   # 1.1, 3.0, 1.1
    assert r.median == pytest.approx(1.1)                      # ratio of medians: 2.2
    assert r.ci == pytest.approx((1.1, 3.0)) and r.unit == "x"
    skip = paired_ratio({0: 2.0, 1: None, 2: 6.0, 3: 1.0}, {0: 1.0, 1: 1.0, 2: 3.0, 3: 0.0})
    assert skip.values == (2.0, 2.0) and skip.rounds == (0, 2)
    with pytest.raises(ValueError, match="one value per round"):
        paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="round labels"):
        measure.ratio(Measurement([1.0]), Measurement([1.0]))
    with pytest.raises(ValueError, match="round label twice"):
        measure.ratio(Measurement([1.0, 2.0], rounds=(0, 0)), Measurement([1.0], rounds=(0,)))


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_time_rounds_interleaves_and_times():
    clock, log = Clock(), []

    def work(name, seconds):
        def fn():
            log.append(name)
            clock.now += seconds
        return fn

    r = time_rounds({"a": work("a", 1.0), "b": work("b", 3.0)}, rounds=3, warmup=2,
                    timer=clock)
    assert log == ["a", "b"] * 5          # two warm-up rounds, then three timed
    assert r.order == [(0, "a"), (0, "b"), (1, "a"), (1, "b"), (2, "a"), (2, "b")]
    assert r["b"].values == (3.0, 3.0, 3.0) and r["b"].unit == "s"
    assert r.ratio("b", "a").median == 3.0
    log.clear()
    rot = time_rounds({"a": work("a", 1), "b": work("b", 1), "c": work("c", 1)},
                      rounds=3, warmup=0, rotate=True, timer=clock)
    assert log == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert [n for _, n in rot.order] == log


def test_time_rounds_keeps_what_callables_return():
    seen = []
    r = time_rounds({"x": lambda: {"tok_s": 10.0}, "y": lambda: {"tok_s": 25.0}},
                    rounds=4, warmup=1, before_call=lambda rd, n: seen.append((rd, n)))
    assert r.measurement("y", "tok_s").values == (25.0,) * 4
    assert r.measurement("y", "tok_s").unit == ""            # not seconds
    assert r.ratio("y", "x", "tok_s").median == 2.5
    assert seen[:2] == [(None, "x"), (None, "y")] and seen[2] == (0, "x")
    assert "y / x" in repr(r.compare("tok_s", baseline="x"))


@pytest.mark.parametrize("fns, kw, message", [
    ({}, {}, "nothing to time"),
    ({"a": 1}, {}, "not callable: a"),
    ({"a": lambda: None}, {"rounds": 0}, "rounds must be an integer >= 1"),
    ({"a": lambda: None}, {"warmup": -1}, "warmup must be an integer >= 0"),
])
def test_time_rounds_bad_input(fns, kw, message):
    with pytest.raises(ValueError, match=message):
        time_rounds(fns, **kw)


def test_time_tokens():
    clock = Clock()

    def stream():
        for dt in (2.0, 0.5, 0.5, 1.0):
            clock.now += dt
            yield 0

    t = time_tokens(stream(), timer=clock)
    assert t.n_tokens == 4 and t.ttft_s == 2.0 and t.decode_s == 2.0
    assert t.decode_tok_per_s == 1.5
    assert t.gaps().values == (500.0, 500.0, 1000.0) and t.gaps().unit == "ms"
    assert t.cpu is None and np.isnan(t.decode_cpu_s)
    c = time_tokens(iter(range(3)), cpu=True)       # process CPU at start, 3 tokens, end
    assert len(c.cpu) == 5 and c.cpu == sorted(c.cpu) and c.decode_cpu_s >= 0


def test_compare_table():
    rounds = (0, 1, 2)
    cells = {"tiny": {"base": Measurement([10.0, 20.0, 40.0], rounds=rounds),
                      "fast": Measurement([11.0, 60.0, 44.0], rounds=rounds)},
             "big": {"base": Measurement([5.0, 5.0, 5.0], rounds=rounds),
                     "fast": Measurement([10.0, 10.0, 10.0], rounds=rounds)}}
    c = measure.compare_measurements(cells, baseline="base", title="decode tok/s")
    text = repr(c)
    assert text.splitlines()[0] == "decode tok/s"
    assert text.splitlines()[1].split() == ["row", "base", "fast", "fast", "/", "base"]
    assert "1.10x [1.10-3.00]*" in text and "2.00x [2.00-2.00]" in text
    assert "tiny, fast / base: IQR" in text and "big, fast" not in text
    assert c.ratios[("big", "fast")].median == 2.0
    assert "<table>" in c._repr_html_() and "1.10x" in c._repr_html_()
    df = c.dataframe()
    assert set(df["kind"]) == {"value", "ratio"} and len(df) == 6
    with pytest.raises(ValueError, match="baseline 'nope' is not a column"):
        measure.compare_measurements(cells, baseline="nope")
    with pytest.raises(ValueError, match="not a Measurement"):
        measure.compare_measurements({("a", "b"): 1.0})


def test_docstring_examples_hold():
    import doctest

    res = doctest.testmod(measure, optionflags=doctest.ELLIPSIS)
    assert res.failed == 0 and res.attempted > 20
