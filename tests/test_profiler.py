"""Profiler: steps, per-token table, counts on known programs, misuse, trace."""
from __future__ import annotations

import json
import subprocess
import sys

import mlx.core as mx
import pytest
from mlx_lm.generate import generate_step
from mlx_lm.models.base import create_attention_mask
from mlx_lm.models.cache import make_prompt_cache

import mlxprof
from mlxprof.events import MlxprofError

N_TOKENS = 8


def _generate(model, prompt, prof=None, n=N_TOKENS):
    gen = generate_step(prompt, model, max_tokens=n)
    return [tok for tok, _ in (prof.track(gen) if prof else gen)]


def test_generate_step_has_one_async_eval_and_one_item_per_decode_token(tiny_model, prompt):
    with mlxprof.Profiler() as prof:
        _generate(tiny_model, prompt, prof)
    df = prof.per_token()
    assert len(df) == N_TOKENS
    decode = df.iloc[1:]
    assert (decode["n_async_eval"] == 1).all()
    assert (decode["n_sync_item"] == 1).all()
    assert (decode["n_sync"] == 1).all() and (decode["n_eval"] == 0).all()
    # the first token also holds the prefill eval, the first eval(y) and 2 async_evals
    assert df.loc[0, ["n_eval", "n_async_eval", "n_sync_item"]].tolist() == [2, 2, 1]


def test_profiled_generation_gives_identical_tokens(tiny_model, prompt):
    reference = _generate(tiny_model, prompt)
    for opts in ({}, {"count_ops": True, "eval_lock": True}):
        with mlxprof.Profiler(**opts) as prof:
            assert _generate(tiny_model, prompt, prof) == reference


def _per_layer_sync_forward(model, tokens, cache):
    """A decode step that (badly) syncs after every layer, like dbrx's tolist()."""
    h = model.model.embed_tokens(tokens)
    mask = create_attention_mask(h, cache[0])
    lines = []
    for layer, c in zip(model.model.layers, cache):
        h = layer(h, mask, c)
        lines.append(sys._getframe().f_lineno + 1)
        h.sum().item()
    return model.model.embed_tokens.as_linear(model.model.norm(h)), lines[0]


def test_item_per_layer_is_seen_with_its_call_site(llama_model, prompt):
    cache = make_prompt_cache(llama_model)
    tok = prompt[None]
    n_layers = len(llama_model.model.layers)
    with mlxprof.Profiler() as prof:
        for _ in prof.track(range(3)):
            logits, line = _per_layer_sync_forward(llama_model, tok, cache)
            tok = mx.argmax(logits[:, -1:], axis=-1)
            mx.async_eval(tok)
    df = prof.per_token()
    assert df["n_sync_item"].tolist() == [n_layers] * 3
    assert df["n_async_eval"].tolist() == [1] * 3
    items = [e for e in prof.recording.events if e.kind == "item"]
    assert {e.site for e in items} == {(__file__, line, "_per_layer_sync_forward")}


def test_columns_follow_the_design_and_times_add_up(llama_model, prompt):
    with mlxprof.Profiler(count_ops=True) as prof:
        _generate(llama_model, prompt, prof)
    df = prof.per_token()
    cols = list(df.columns)
    fixed = ["step", "wall_ms", "host_ms", "submit_ms", "blocked_ms", "lock_wait_ms",
             "n_eval", "n_async_eval", "n_sync"]
    assert cols[:9] == fixed
    assert cols[9] == "n_sync_item" and cols[10] == "ops_total"
    assert all(c.startswith("ops_") for c in cols[11:-5])
    assert cols[-5:-3] == ["active_bytes", "peak_bytes"]
    assert cols[-3:] == ["other_threads_ms", "other_threads_lock_wait_ms",
                         "other_threads_calls"]
    assert (df.other_threads_calls == 0).all()  # one thread
    parts = df.host_ms + df.submit_ms + df.blocked_ms + df.lock_wait_ms
    assert (abs(parts - df.wall_ms) < 1e-9).all()
    assert (df.submit_ms > 0).all() and (df.host_ms > 0).all()
    assert (df.active_bytes > 0).all() and (df.peak_bytes >= df.active_bytes).all()
    total = prof.recording.steps[-1].end_ns - prof.recording.steps[0].start_ns
    assert abs(df.wall_ms.sum() - total / 1e6) < 1e-6
    op_cols = [c for c in cols if c.startswith("ops_") and c != "ops_total"]
    assert (df[op_cols].sum(axis=1) == df.ops_total).all()
    assert (df.ops_total.iloc[1:] == df.ops_total.iloc[1]).all() and df.ops_total.iloc[1] > 50


def test_without_count_ops_ops_total_is_missing(llama_model, prompt):
    with mlxprof.Profiler() as prof:
        _generate(llama_model, prompt, prof, n=2)
    df = prof.per_token()
    assert df["ops_total"].isna().all()
    assert not [c for c in df.columns if c.startswith("ops_") and c != "ops_total"]


def test_steps_without_step_calls_and_tail():
    a = mx.ones((4,)) * 2
    with mlxprof.Profiler() as prof:
        a.sum().item()
    assert len(prof.per_token()) == 1  # whole profile = step 0
    with mlxprof.Profiler() as prof:
        prof.step()
        prof.step()
    assert len(prof.per_token()) == 2  # empty tail dropped
    with mlxprof.Profiler() as prof:
        assert prof.step() == 0
        (a + 1).sum().item()
    df = prof.per_token()
    assert df["n_sync_item"].tolist() == [0, 1]  # tail with a call is kept


def test_misuse_raises_one_clear_error(tmp_path):
    prof = mlxprof.Profiler()
    with pytest.raises(MlxprofError, match="outside a running profile"):
        prof.step()
    with pytest.raises(MlxprofError, match="outside a running profile"):
        prof.track([1])
    with prof:
        with pytest.raises(MlxprofError, match="still running"):
            prof.export_chrome_trace(tmp_path / "t.json")
        with pytest.raises(MlxprofError, match="still running"):
            prof.per_token()
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(MlxprofError, match="cannot write the trace"):
        prof.export_chrome_trace(blocker / "trace.json")
    with pytest.raises(MlxprofError, match="cannot write the recording"):
        prof.save(blocker / "run.json.gz")
    with pytest.raises(MlxprofError, match="records once"):
        prof.start()
    with pytest.raises(MlxprofError, match="outside a running profile"):
        prof.step()
    assert issubclass(MlxprofError, RuntimeError)


def test_track_stops_marking_once_the_profile_ended():
    with mlxprof.Profiler() as prof:
        it = prof.track(range(5))
        next(it)
    with pytest.raises(MlxprofError):
        next(it)


def test_chrome_trace_parses_and_has_the_expected_events(tmp_path, llama_model, prompt):
    with mlxprof.Profiler(count_ops=True) as prof:
        _generate(llama_model, prompt, prof, n=4)
    path = prof.export_chrome_trace(tmp_path / "trace.json")
    trace = json.loads(open(path).read())
    ev = trace["traceEvents"]
    calls = [e for e in ev if e["ph"] == "X" and e["cat"] in ("eval", "submit", "sync")]
    assert {e["name"] for e in calls} == {"eval", "async_eval", "item"}
    assert len(calls) == len(prof.recording.events)
    steps = [e for e in ev if e["ph"] == "X" and e["cat"] == "step"]
    assert [e["name"] for e in steps] == [f"step {i}" for i in range(4)]
    own = [e for e in ev if e["ph"] == "X" and e["cat"] == "profiler"]
    assert len(own) == len(calls) and {e["name"] for e in own} == {"count_ops (profiler)"}
    counters = {e["name"] for e in ev if e["ph"] == "C"}
    assert counters == {"memory", "ops"}
    names = {(e["tid"], e["args"]["name"]) for e in ev
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert (0, "steps") in names
    lanes = {tid for tid, _ in names}
    assert {e["tid"] for e in calls} <= lanes - {0}
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in calls + steps)
    assert all("site" in e["args"] for e in calls)


def test_summary_is_a_readable_table(llama_model, prompt):
    with mlxprof.Profiler(count_ops=True) as prof:
        _generate(llama_model, prompt, prof, n=4)
    text = prof.summary()
    for needle in ("4 steps", "async_eval", "item", "Token time split", "host",
                   "blocked", "Ops per token", "Top call sites", "generate.py"):
        assert needle in text, needle


def test_figures(llama_model, prompt):
    with mlxprof.Profiler() as prof:
        _generate(llama_model, prompt, prof, n=3)
    tokens = prof.figure("tokens")
    assert [t.name.split()[0] for t in tokens.data] == ["host", "submit", "blocked", "lock"]
    assert len(tokens.data[0].x) == 3
    timeline = prof.figure("timeline")
    assert {t.name for t in timeline.data} == {"eval", "submit", "sync"}
    with pytest.raises(ValueError):
        prof.figure("pie")


def test_importing_the_profiler_stays_light():
    code = ("import sys, mlxprof, mlxprof.profiler; mlxprof.Profiler; "
            "bad = [m for m in ('pandas', 'plotly') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_track_closes_the_step_on_break():
    a = mx.ones((4,)) * 2
    with mlxprof.Profiler() as prof:
        for i in prof.track(range(10)):
            (a + i).sum().item()
            if i == 2:
                break
        (a * 5).sum().item()
    assert prof.per_token()["n_sync_item"].tolist() == [1, 1, 1, 1]
