"""The profiler flags half-precision values widened to float32 (a dtype leak), with sites."""
import mlx.core as mx
import mlx.nn as nn
import pytest

import mlxprof
from mlxprof import decode, hooks
from mlxprof.graph import widening
from mlxprof.lab import models


class Scaled(nn.Module):
    """mlp(x) * c: c a Python float (weak: keeps bf16) or a float32 mx.array (widens)."""

    def __init__(self, inner, c):
        super().__init__()
        self.inner, self.c = inner, c

    def __call__(self, x):
        return self.inner(x) * self.c


def profile_bf16(c, count_ops=True):
    lm = models.load("qwen3-8b", "tiny", seed=0, dtype=mx.bfloat16)
    for layer in lm.model.layers:
        layer.mlp = Scaled(layer.mlp, c)
    with mlxprof.Profiler(count_ops=count_ops) as prof:
        toks = list(prof.track(decode.stream(lm.model, lm.prompt(8), 4)))
    return prof.recording, toks


def test_float32_constant_in_bf16_model_is_flagged_with_its_site():
    rec, _ = profile_bf16(mx.array(1.0, dtype=mx.float32))
    frame = rec.casts_frame()
    assert len(rec.casts) > 0 and (frame["cast"] == "bfloat16->float32").all()
    here = frame[frame["site"].str.startswith("test_dtype_leak.py:")]
    assert set(here["op"]) == {"__mul__"}          # the line `self.inner(x) * self.c`
    # the promotion spreads: mlx-lm's own layer code widens again downstream
    assert any(s.startswith("qwen3.py:") for s in frame["site"])
    text = rec.summary()
    assert "Casts to a wider float" in text and "bfloat16->float32" in text
    assert "test_dtype_leak.py:" in text


def test_python_scalar_is_not_flagged():
    rec, _ = profile_bf16(1.0)
    assert rec.casts == [] and rec.casts_frame().empty
    assert "Casts to a wider float" not in rec.summary()


def test_casts_survive_save_and_load(tmp_path):
    rec, _ = profile_bf16(mx.array(1.0, dtype=mx.float32))
    back = mlxprof.load(rec.save(tmp_path / "leak.mlxprof.json.gz"))
    assert back.casts == rec.casts
    assert back.casts_frame().equals(rec.casts_frame())


def test_watching_changes_no_result_and_restores_mlx():
    before = (mx.array.__mul__, mx.multiply, mx.fast.rms_norm)
    c = mx.array(1.0, dtype=mx.float32)
    _, watched = profile_bf16(c)
    _, plain = profile_bf16(c, count_ops=False)
    assert watched == plain
    assert (mx.array.__mul__, mx.multiply, mx.fast.rms_norm) == before
    assert not hooks.is_installed()


@pytest.mark.parametrize("args,expect", [
    ((mx.ones(2, dtype=mx.float16), mx.ones(2)), ("float16", "float32")),
    (([mx.ones(2, dtype=mx.bfloat16), mx.ones(2)],), ("bfloat16", "float32")),
    ((mx.ones(2, dtype=mx.bfloat16), mx.ones(2, dtype=mx.bfloat16)), None),
    ((mx.ones(2), 2.0), None),
])
def test_widening(args, expect):
    assert widening(args) == expect
