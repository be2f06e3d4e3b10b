"""The correctness yardstick (mlxprof.decode.accuracy) and the conditioned init.

CPU, tiny models. Every synthetic shape must be well-conditioned (mlx-lm's bf16
argmax agrees with the float32 run of the same quantized weights on >= 95% of
128 teacher-forced steps), and `fast` must be as close to float32 as mlx-lm is.
"""
from __future__ import annotations

import mlx.core as mx
import pytest
from mlx.utils import tree_flatten

from mlxprof.decode.accuracy import (Distance, Yardstick, float32_logits, judge,
                                     logits_tables, spread, yardstick)
from mlxprof.decode.optimize import optimize_model
from mlxprof.lab import models
from mlxprof.lab.models import synthetic
from mlxprof.lab.testing import random_model

STEPS = 128
_LMS: dict = {}


def lm(name):
    if name not in _LMS:
        _LMS[name] = models.load(name, scale="tiny", seed=0)
    return _LMS[name]


@pytest.mark.parametrize("name", models.SYNTHETIC)
def test_synthetic_models_conditioned_and_fast_within_the_bar(name):
    m = lm(name)
    y = yardstick(m.model, {"fast": optimize_model(m.model)}, m.prompt(32), STEPS)
    assert y.n_rows == STEPS
    assert y.conditioned, str(y)
    assert y.ok, str(y)
    assert 0 < y.reference.rel_max_diff < 0.2, str(y)   # bf16 is not float32


@pytest.mark.parametrize("arch", ["llama", "qwen3_5", "qwen3_next"])
def test_fast_within_the_bar_on_the_other_architectures(arch):
    model = random_model(arch, "tiny", seed=0)
    prompt = mx.arange(3, 35, dtype=mx.int32)
    y = yardstick(model, {"fast": optimize_model(model)}, prompt, 64)
    assert y.ok, str(y)


def test_old_init_was_not_conditioned_on_the_moe_shape(monkeypatch):
    """Without the bigram prior and the peaked router, bf16 and float32
    disagree too often on the tiny Qwen3.5 shape to judge anything."""
    monkeypatch.setattr(synthetic, "BIGRAM_MARGIN", None)
    monkeypatch.setattr(synthetic, "ROUTER_GAIN", 1.0)
    m = models.load("qwen3.5-35b-a3b", scale="tiny", seed=0)
    y = yardstick(m.model, {}, m.prompt(32), STEPS)
    assert not y.conditioned, str(y)


def test_a_wrong_model_fails_the_bar():
    m = lm("qwen3-8b")
    wrong = optimize_model(m.model)
    layer = wrong.layers[1]
    layer.post_w = layer.post_w * 1.5          # a bug: a norm weight off by 50%
    y = yardstick(m.model, {"wrong": wrong}, m.prompt(32), 32)
    assert not y.ok and not y.passes("wrong"), str(y)
    assert "FAIL" in str(y)


def test_float32_logits_restore_the_model_exactly():
    m = lm("qwen3.5-35b-a3b")
    before = {k: (id(v), v.dtype) for k, v in tree_flatten(m.model.parameters())}
    toks = m.prompt(12)
    ref = float32_logits(m.model, toks, n_prompt=8)
    assert ref.dtype == mx.float32 and ref.shape == (5, m.vocab_size)
    after = {k: (id(v), v.dtype) for k, v in tree_flatten(m.model.parameters())}
    assert after == before
    assert any(d == mx.bfloat16 for _, d in before.values())


def test_float32_logits_restore_the_model_after_an_error():
    m = lm("qwen3-8b")
    before = {k: id(v) for k, v in tree_flatten(m.model.parameters())}
    with pytest.raises(ValueError):
        float32_logits(m.model, m.prompt(4), n_prompt=9)
    assert {k: id(v) for k, v in tree_flatten(m.model.parameters())} == before


def test_the_bar_is_relative_to_mlx_lm():
    ref = Distance(0.030, 0.96, 1.0)

    def y(cand):
        return Yardstick(ref, {"c": cand}, 128)
    assert y(Distance(0.033, 0.95, 0.9)).ok                 # 1.1x and -1 point: ok
    assert not y(Distance(0.0331, 0.96, 1.0)).ok            # further from float32
    assert not y(Distance(0.020, 0.9499, 1.0)).ok           # argmax more than 1 point lower
    assert Yardstick(Distance(0.03, 0.9499, 1.0), {}, 128).conditioned is False
    d = y(Distance(0.02, 0.97, 0.98)).to_dict()
    assert d["c"]["passes"] and d["ok"] and d["mlx_lm"]["rel_max_diff"] == 0.030


def test_spread_locates_the_largest_difference_and_the_typical_one():
    f32 = mx.ones((10, 4)) * mx.array([1.0, -2.0, 4.0, 0.5])
    table = f32 + 0.01
    table[7, 1] = -2.5                               # one outlier: 0.5 off, max |f32| is 4
    s = spread(f32, table)
    assert (s["argmax_row"], s["argmax_col"], s["f32_at_argmax"]) == (7, 1, -2.0)
    assert s["max"] == pytest.approx(0.5 / 4) and s["row_p50"] == pytest.approx(0.01 / 4, rel=1e-3)
    assert s["row_p50"] <= s["row_p90"] <= s["max"] and 0 < s["mean"] < s["max"]


def test_yardstick_is_judge_over_logits_tables():
    m = lm("qwen3-8b")
    fast = optimize_model(m.model)
    tables = logits_tables(m.model, {"fast": fast}, m.prompt(8), 6)
    assert list(tables) == ["float32", "mlx_lm", "fast"]
    assert all(t.shape == (6, m.vocab_size) and t.dtype == mx.float32 for t in tables.values())
    by_hand = judge(tables.pop("float32"), tables.pop("mlx_lm"), tables)
    assert by_hand == yardstick(m.model, {"fast": fast}, m.prompt(8), 6)


def test_yardstick_rejects_bad_steps():
    m = lm("qwen3-8b")
    with pytest.raises(ValueError, match="steps"):
        yardstick(m.model, {}, m.prompt(4), 0)


def test_bigram_prior_puts_the_successor_on_top():
    """The lm_head leans on the embedding of the previous token id."""
    cfg = models.model_config("qwen3-8b", "tiny")
    model, _ = synthetic.build(cfg, seed=0)
    toks = mx.arange(10, 42, dtype=mx.int32)
    logits = model(toks[None])[0]
    succ = mx.mean(mx.argmax(logits, -1) == toks + 1).item()
    assert succ > 0.5


@pytest.mark.skipif(not models.cached_path("smollm2").is_file(),
                    reason="SmolLM2 weights not fetched (python -m mlxprof models fetch smollm2)")
def test_smollm2_fast_within_the_bar():
    """Real weights, float32 on the CPU (its default there): mlx-lm's run is the
    float32 reference itself, so the bar asks `fast` for the same logits."""
    m = models.load("smollm2")
    y = yardstick(m.model, {"fast": optimize_model(m.model)}, m.prompt(32), 8)
    assert y.reference.rel_max_diff == 0.0 and y.ok, str(y)
