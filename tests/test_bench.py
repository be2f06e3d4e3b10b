"""Bench harness: interleaving, ratio math, statistics, roofline, outputs."""
import json
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest

import mlxprof
from mlxprof import measure
from mlxprof.lab import bench, roofline
from mlxprof.decode import Loop

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    """A fake timer: loops advance it by what they 'cost'."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class FakeLM:
    model = "fake-model"
    config = {"kind": "fake"}

    def prompt(self, n, seed=0):
        return mx.arange(n, dtype=mx.int32)


def fake_loop(name, clock, log, first_s, per_tok_s):
    """A loop whose cost per call comes from lists (one entry per call)."""
    calls = iter(zip(first_s, per_tok_s))

    def fn(model, prompt, max_tokens, **kw):
        first, per = next(calls)
        log.append(name)
        clock.now += first
        yield 0
        for _ in range(max_tokens - 1):
            clock.now += per
            yield 0

    return Loop(name, fn, f"fake {name}")


def run_fake(loops, clock, **kw):
    opts = dict(tokens=11, prompt_tokens=20, reps=3, warmup=1, progress=False,
                loader=lambda name, scale, seed: FakeLM(), timer=clock,
                baseline="base")
    opts.update(kw)
    models = opts.pop("models", ["m1"]) or ["m1", "m2"]
    return bench.run(models, loops, **opts)


def test_interleaved_order_and_exact_speeds():
    clock, log = Clock(), []
    # warm-up + 3 reps; baseline: 1 s to first token, 0.1 s/token; other 2x faster
    base = fake_loop("base", clock, log, [9, 1, 1, 1], [9, .1, .1, .1])
    fast = fake_loop("fast", clock, log, [9, .5, .5, .5], [9, .05, .05, .05])
    res = run_fake([base, fast], clock)
    assert log == ["base", "fast"] * 4  # warm-ups first, then rep 1: all, rep 2: all...
    assert [(r["loop"], r["rep"], r["seq"]) for r in res.raw] == [
        ("base", 0, 0), ("fast", 0, 1), ("base", 1, 2), ("fast", 1, 3),
        ("base", 2, 4), ("fast", 2, 5)]
    rows = {r["loop"]: r for r in res.rows}
    assert rows["base"]["decode_tok_per_s"] == pytest.approx(10.0)  # 10 tokens / 1 s
    assert rows["fast"]["decode_tok_per_s"] == pytest.approx(20.0)
    assert rows["base"]["prompt_tok_per_s"] == pytest.approx(20.0)  # 20 tokens / 1 s
    assert rows["fast"]["ratio_vs_baseline"] == pytest.approx(2.0)
    assert rows["fast"]["prompt_ratio_vs_baseline"] == pytest.approx(2.0)
    assert rows["base"]["ratio_vs_baseline"] == pytest.approx(1.0)
    assert rows["fast"]["decode_tok_per_s_iqr"] == pytest.approx(0.0)
    assert rows["fast"]["ratio_vs_baseline_ci"] == pytest.approx([2.0, 2.0])
    assert rows["fast"]["noise"] == {} and "noisy" not in res.table()


def test_ratio_is_median_of_same_round_ratios():
    clock, log = Clock(), []
    # decode tok/s per round: base 10, 20, 40; other 11, 60, 44
    # same-round ratios 1.1, 3.0, 1.1 -> median 1.1 (ratio of medians would be 2.2)
    base = fake_loop("base", clock, log, [1] * 4, [1, 1 / 10, 1 / 20, 1 / 40])
    other = fake_loop("other", clock, log, [1] * 4, [1, 1 / 11, 1 / 60, 1 / 44])
    row = run_fake([base, other], clock).rows[1]
    assert row["decode_tok_per_s"] == pytest.approx(44.0)
    assert row["ratio_vs_baseline"] == pytest.approx(1.1)
    assert row["ratio_vs_baseline_iqr"] == pytest.approx(np.subtract(
        *np.percentile([1.1, 3.0, 1.1], [75, 25])))
    assert "median over rounds" in " ".join(run_fake(
        [fake_loop("base", clock, [], [1] * 4, [1] * 4)], clock).notes)


def test_ratio_interval_and_noise_flags(tmp_path):
    clock, log = Clock(), []
    # same rounds as above: decode tok/s base 10, 20, 40; other 11, 60, 44
    base = fake_loop("base", clock, log, [1] * 4, [1, 1 / 10, 1 / 20, 1 / 40])
    other = fake_loop("other", clock, log, [1] * 4, [1, 1 / 11, 1 / 60, 1 / 44])
    res = run_fake([base, other], clock)
    row = res.rows[1]
    # three rounds: each extreme is the resampled median with probability 7/27, so
    # the 95% interval is the range of the ratios 1.1, 3.0, 1.1 and of 11, 60, 44
    assert row["ratio_vs_baseline_ci"] == pytest.approx([1.1, 3.0])
    assert row["decode_tok_per_s_ci"] == pytest.approx([11.0, 60.0])
    assert set(row["noise"]) == {"decode_tok_per_s", "ratio_vs_baseline"}
    assert res.ratio("m1", "other").values == pytest.approx((1.1, 3.0, 1.1))
    assert res.ratio("m1", "other").rounds == (0, 1, 2)
    text = repr(res)
    assert text == res.table() and "{'" not in text and len(text) < 3000
    assert "1.10x [1.10-3.00]*" in text and "44.0 [11.0-60.0]*" in text
    assert "* m1 (small) other: decode tok/s: IQR 56%" in text
    assert "1.10x [1.10-3.00]*" in res._repr_html_() and "<table>" in res._repr_html_()
    assert "other / base" in repr(res.compare())
    with pytest.raises(ValueError, match="no runs of loop 'nope'"):
        res.measurement("m1", "nope")
    d = json.loads(res.to_json(tmp_path / "r.json").read_text())
    assert d["rows"][1]["ratio_vs_baseline_ci"] == pytest.approx([1.1, 3.0])
    assert d["config"]["statistics"]["noise_rule"] == measure.NOISE_RULE
    assert [r["decode_tok_per_s"] for r in d["raw"] if r["loop"] == "other"] == \
        pytest.approx([11.0, 60.0, 44.0])


def test_pool_keeps_rounds_paired_across_runs():
    clock = Clock()
    runs = []
    for base_s, other_s in (([1 / 10, 1 / 20, 1 / 40], [1 / 11, 1 / 60, 1 / 44]),
                            ([1 / 10, 1 / 10, 1 / 10], [1 / 30, 1 / 30, 1 / 30])):
        runs.append(run_fake([fake_loop("base", clock, [], [1] * 4, [1, *base_s]),
                              fake_loop("other", clock, [], [1] * 4, [1, *other_s])], clock))
    pooled = bench.pool(runs)
    ratio = pooled.ratio("m1", "other")
    assert ratio.values == pytest.approx((1.1, 3.0, 1.1, 3.0, 3.0, 3.0))
    assert ratio.rounds == (0, 1, 2, 3, 4, 5) and pooled.config["reps"] == 6
    row = pooled.rows[1]
    assert row["ratio_vs_baseline"] == pytest.approx(3.0) and row["reps"] == 6
    assert row["ratio_vs_baseline_ci"] == pytest.approx(list(ratio.ci))
    assert [r["call"] for r in pooled.raw] == [0] * 6 + [1] * 6
    assert "6 interleaved reps in 2 runs" in pooled.table()
    other = run_fake([fake_loop("base", clock, [], [1] * 4, [1] * 4)], clock, tokens=5)
    with pytest.raises(bench.BenchError, match="differs from result 0 in loops, tokens"):
        bench.pool([runs[0], other])


def _stored_bench_files() -> list:
    files = [p for p in sorted((ROOT / "data" / "results").rglob("*.json"))
             if json.loads(p.read_text()).get("schema", "").startswith(
                 ("mlxprof.bench/", "mlxprof.lab.bench/"))]
    assert files, "data/results holds no bench JSON"
    return files


def test_stored_results_still_load_and_reproduce_their_ratios():
    for path in _stored_bench_files():
        res = bench.load_result(path)
        for row in res.rows:
            if row.get("ratio_vs_baseline") is not None:   # written before intervals
                assert res.ratio(row["model"], row["loop"]).median == pytest.approx(
                    row["ratio_vs_baseline"], rel=1e-9), (path.name, row["loop"])
        text = repr(res)
        assert "[95% CI]" in text and "{'" not in text and len(text) < 6000, path.name
        assert "values: median over repetitions" not in text   # the cells show CIs now


def test_baseline_added_when_missing_and_none_disables_ratios():
    cfg = bench.BenchConfig(models=["qwen3-8b"], loops=["sync"])
    loops = bench.check_config(cfg, custom_loader=True)
    assert [lp.name for lp in loops] == ["mlx_lm", "sync"]
    clock = Clock()
    res = run_fake([fake_loop("a", clock, [], [1] * 4, [1] * 4)], clock, baseline=None)
    header = res.table().split("\n\n")[1].splitlines()[0]
    assert res.rows[0]["ratio_vs_baseline"] is None and "x " not in header


@pytest.mark.parametrize("xs", [[1.0], [3.0, 1.0], [5.0, 1.0, 2.0, 8.0, 4.0]])
def test_median_and_iqr_match_numpy(xs):
    assert bench.median(xs) == pytest.approx(np.median(xs))
    assert bench.iqr(xs) == pytest.approx(np.subtract(*np.percentile(xs, [75, 25])))


@pytest.mark.parametrize("change, message", [
    (dict(tokens=1), "--tokens must be an integer >= 2"),
    (dict(tokens=0), "--tokens must be"),
    (dict(reps=0), "--reps must be >= 1"),
    (dict(prompt_tokens=0), "--prompt-tokens must be >= 1"),
    (dict(warmup=-1), "--warmup must be >= 0"),
    (dict(bandwidth_gbs=0.0), "--bandwidth-gbs must be a number > 0"),
    (dict(dtype="int8"), "--dtype must be one of auto, bfloat16"),
    (dict(warmup_tokens=0), "--warmup-tokens must be >= 1"),
    (dict(loops=["sync", "nope"]), "unknown loop 'nope'; known loops: sync"),
    (dict(loops=["sync", "sync"]), "listed twice"),
    (dict(baseline="nope"), "unknown baseline loop 'nope'"),
    (dict(models=["m", "m"]), "a model is listed twice: m, m"),
    (dict(seed=-1), "--seed must be an integer >= 0, got -1"),
    (dict(seed="abc"), "--seed must be an integer >= 0"),
])
def test_bad_config_is_one_clear_error(change, message):
    cfg = bench.BenchConfig(**{"models": ["m"], "loops": ["sync"], **change})
    with pytest.raises(bench.BenchError, match=message) as err:
        bench.check_config(cfg, custom_loader=True)
    assert "\n" not in str(err.value)


def test_check_writable(tmp_path):
    assert bench.check_writable(tmp_path / "a" / "b.json") == tmp_path / "a" / "b.json"
    assert not (tmp_path / "a" / "b.json").exists()     # the probe leaves nothing
    (tmp_path / "file").write_text("x")
    with pytest.raises(bench.BenchError, match="cannot write"):
        bench.check_writable(tmp_path / "file" / "out.json")   # parent is a file
    with pytest.raises(bench.BenchError, match="is a directory"):
        bench.check_writable(tmp_path)
    with pytest.raises(bench.BenchError, match="cannot write"):
        bench.check_writable(tmp_path / "file", directory=True)


def test_roofline_table_and_math():
    assert roofline.lookup("Apple M4 Max").gb_per_s == 546
    assert roofline.lookup("Apple M4").gb_per_s == 120
    assert roofline.lookup("Apple M3 Ultra").gb_per_s == 819
    assert roofline.lookup("NVIDIA H100 80GB HBM3").gb_per_s == 3350
    assert roofline.lookup("NVIDIA H100 PCIe").gb_per_s == 2000
    assert roofline.lookup("NVIDIA H200").gb_per_s == 4800
    assert roofline.lookup("AMD EPYC") is None and roofline.lookup("") is None
    assert roofline.roofline_tok_per_s(2e9, 4000) == pytest.approx(2000.0)
    assert roofline.roofline_fraction(500.0, 2e9, 4000) == pytest.approx(0.25)
    assert roofline.roofline_fraction(500.0, None, 4000) is None
    assert roofline.resolve("NVIDIA H200", 100)[0] == 100.0   # override wins
    bw, note = roofline.resolve("AMD EPYC")
    assert bw is None and "blank" in note


def test_roofline_columns_in_rows(monkeypatch):
    monkeypatch.setattr(bench, "_bytes_per_token", lambda lm: 10**9)
    clock = Clock()
    loop = fake_loop("base", clock, [], [1] * 4, [0.01] * 4)   # 100 tok/s
    res = run_fake([loop], clock, bandwidth_gbs=400.0)
    row = res.rows[0]
    assert row["weights_bytes_per_token"] == 10**9
    assert row["roofline_tok_per_s"] == pytest.approx(400.0)
    assert row["roofline_fraction"] == pytest.approx(0.25)
    assert "25.0" in res.table() and "1000.0" in res.table()   # % and MB/token


def test_outputs_roundtrip(tmp_path):
    clock = Clock()
    res = run_fake([fake_loop("base", clock, [], [1] * 4, [0.1] * 4)], clock)
    res.to_json(tmp_path / "r.json")
    res.to_csv(tmp_path / "r.csv")
    d = json.loads((tmp_path / "r.json").read_text())
    assert d["schema"] == bench.SCHEMA
    assert {"device", "backend", "mlx", "mlx_lm", "date", "git_commit"} <= set(d["provenance"])
    assert d["config"]["reps"] == 3 and d["config"]["loops"] == ["base"]
    assert len(d["raw"]) == 3 and len(d["rows"]) == 1
    back = bench.load_result(tmp_path / "r.json")
    assert back.rows == d["rows"] and back.table() == res.table()
    head, line = (tmp_path / "r.csv").read_text().splitlines()
    assert head.startswith("model,scale,loop") and "prov_device" in head
    assert line.startswith("m1,small,base,3")


class FakeProfiler:
    """Stands in for mlxprof.Profiler: per_token() as the contract gives it."""

    def __init__(self, count_ops=False, meta=None):
        self.count_ops, self.meta, self.n = count_ops, dict(meta or {}), 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def track(self, it):
        for x in it:
            self.n += 1
            yield x

    def per_token(self):
        import pandas as pd

        rows = [dict(step=i, n_eval=0, n_async_eval=1, n_sync=1, ops_total=100 + i,
                     host_ms=1.0, submit_ms=0.5, blocked_ms=0.25) for i in range(self.n)]
        rows[0].update(ops_total=10_000, host_ms=99.0)     # prefill row: excluded
        return pd.DataFrame(rows)

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.meta, f)


def test_profile_pass_adds_medians_and_saves(monkeypatch, tmp_path):
    monkeypatch.setitem(vars(mlxprof), "Profiler", FakeProfiler)
    clock, log = Clock(), []
    loop = fake_loop("base", clock, log, [1] * 5, [0.1] * 5)
    res = run_fake([loop], clock, profile=True, save_recordings=str(tmp_path / "rec"))
    assert log == ["base"] * 5 and len(res.raw) == 3    # profiled pass is not timed
    row = res.rows[0]
    assert row["ops_per_tok"] == pytest.approx(105.5)   # median of 101..110 (row 0 dropped)
    assert row["host_ms_per_tok"] == 1.0 and row["syncs_per_tok"] == 1.0
    saved = tmp_path / "rec" / "m1__small__base.mlxprof.json.gz"
    assert row["recording"] == str(saved)
    assert json.loads(saved.read_text())["loop"] == "base"
    assert "blocked ms" in res.table()


def test_prepare_must_not_modify_the_model():
    class Model:
        def __init__(self):
            self.p = {"w": mx.zeros(2)}

        def parameters(self):
            return self.p

    def bad_prepare(m):
        m.p["fused"] = m.p.pop("w")
        return m

    loop = Loop("x", lambda *a, **k: iter([0, 0]), "x", prepare=bad_prepare)
    with pytest.raises(RuntimeError, match="modified the model in place"):
        bench._prepare(loop, Model())


def test_on_result_after_each_model_and_complete_only_at_the_end():
    clock, seen = Clock(), []
    loop = fake_loop("base", clock, [], [1] * 8, [0.1] * 8)
    res = run_fake([loop], clock, models=None, on_result=lambda r: seen.append(
        (r.complete, r.status(), [row["model"] for row in r.rows])))
    assert res.complete
    assert seen == [(False, "partial: 1 of 2 models measured", ["m1"]),
                    (True, "complete", ["m1", "m2"])]


def test_prompt_ids_outside_the_vocabulary_are_refused_before_timing():
    from mlxprof.lab import models

    lm = models.load("qwen3-8b", scale="tiny", seed=0)

    class BadPrompt:
        model, config, context = lm.model, lm.config, lm.context

        def prompt(self, n, seed=0):
            return mx.array([lm.vocab_size] * n, dtype=mx.int32)

    clock, log = Clock(), []
    loop = fake_loop("base", clock, log, [1] * 4, [0.1] * 4)
    with pytest.raises(ValueError, match=r"token id 512 at position 0, outside the "
                                         r"model's vocabulary \[0, 512\)"):
        run_fake([loop], clock, loader=lambda name, scale, seed: BadPrompt())
    assert log == []


def test_context_known_only_after_loading_is_checked_before_timing():
    class ShortLM(FakeLM):
        context = 16

    clock, log = Clock(), []
    loop = fake_loop("base", clock, log, [1] * 4, [0.1] * 4)
    with pytest.raises(bench.BenchError, match=r"--prompt-tokens 20 \+ --tokens 11 = 31 "
                                               r"positions, more than m1's context of 16"):
        run_fake([loop], clock, loader=lambda name, scale, seed: ShortLM())
    assert log == []
