"""Thread model of the per-token table (issue 13 item 4).

A row splits the time of the thread that marked the step; other threads'
hooked calls land in other_threads_* and are never subtracted from it.
"""
from __future__ import annotations

import re
import threading

import mlx.core as mx
import pytest

import mlxprof

from mlx_threads import eval_on_own_stream

N_STEPS = 6


def _decode_steps(prof, n=N_STEPS):
    """A decode-like loop: one async_eval and one item per step."""
    x = mx.random.normal((64, 64))
    y = mx.ones((64,))
    for _ in prof.track(range(n)):
        y = (x @ y) / 64
        mx.async_eval(y)
        y.sum().item()


def _profile(n_threads: int, eval_lock: bool, marker_is_main: bool = True):
    stop, errors = threading.Event(), []
    n_workers = n_threads - 1
    started = threading.Barrier(n_workers + 1)
    workers = [threading.Thread(target=eval_on_own_stream,  # evaluates until stop is set
                                args=(iter(stop.is_set, True), errors, 128, started),
                                name=f"busy{i}")
               for i in range(n_workers)]
    with mlxprof.Profiler(eval_lock=eval_lock) as prof:
        for w in workers:
            w.start()
        if n_workers:
            started.wait(timeout=30)
        if marker_is_main:
            _decode_steps(prof)
        else:  # a server: the token loop runs on a worker thread
            t = threading.Thread(target=_decode_steps, args=(prof,), name="generator")
            t.start()
            t.join(timeout=60)
        stop.set()
        for w in workers:
            w.join(timeout=60)
    assert not any(w.is_alive() for w in workers) and not errors, errors
    return prof.recording


def _split_shares(summary: str) -> dict:
    """{'wall': pct, 'host': pct, ...} from the 'Token time split' table."""
    lines = summary.split("Token time split (ms):")[1].splitlines()[3:8]
    return {ln.split()[0]: float(ln.split()[-1]) for ln in lines}


def _check_rows(rec, stepping_tid):
    df = rec.per_token()
    parts = df.host_ms + df.submit_ms + df.blocked_ms + df.lock_wait_ms
    assert (abs(parts - df.wall_ms) < 1e-6).all()
    assert (df[["host_ms", "submit_ms", "blocked_ms", "lock_wait_ms"]] >= 0).all().all()
    # the stepping thread's own calls only: its loop makes one of each per step
    assert df["n_async_eval"].tolist() == [1] * N_STEPS
    assert df["n_sync_item"].tolist() == [1] * N_STEPS
    assert df["n_eval"].tolist() == [0] * N_STEPS
    assert {s.thread_id for s in rec.steps} == {stepping_tid}
    shares = _split_shares(rec.summary())
    assert shares["wall"] == 100.0
    assert all(0 <= shares[p] <= 100 for p in ("host", "submit", "blocked", "lock_wait"))
    return df


@pytest.mark.parametrize("eval_lock", [False, True])
@pytest.mark.parametrize("n_threads", [1, 2, 4])
def test_rows_split_the_stepping_threads_time(n_threads, eval_lock):
    rec = _profile(n_threads, eval_lock)
    df = _check_rows(rec, threading.get_ident())
    pt = rec.per_thread()
    assert len(pt) == n_threads
    main = pt.set_index("thread_id").loc[threading.get_ident()]
    assert main["steps"] == N_STEPS and main["n_async_eval"] == N_STEPS
    if n_threads == 1:
        assert (df.other_threads_calls == 0).all() and (df.other_threads_ms == 0).all()
        assert "Per thread:" not in rec.summary()
    else:
        busy = pt[pt.thread.str.startswith("busy")]
        assert (busy["steps"] == 0).all() and (busy["calls"] > 0).all()
        assert df.other_threads_calls.sum() > 0 and df.other_threads_ms.sum() > 0
        assert "Per thread:" in rec.summary()
    if eval_lock and n_threads > 1:
        # the busy threads fight for the lock: some wait is seen, never as negative host
        assert df.lock_wait_ms.sum() + df.other_threads_lock_wait_ms.sum() > 0


def test_steps_marked_on_a_worker_thread_describe_that_thread():
    rec = _profile(3, eval_lock=True, marker_is_main=False)
    gen_tid = next(t for t, name in rec.threads.items() if name == "generator")
    _check_rows(rec, gen_tid)
    pt = rec.per_thread().set_index("thread")
    assert pt.loc["generator", "steps"] == N_STEPS


def test_a_thread_can_be_chosen_and_its_calls_are_cut_at_step_edges():
    rec = _profile(2, eval_lock=False)
    busy_tid = next(t for t, name in rec.threads.items() if name == "busy0")
    df = rec.per_token(thread=busy_tid)
    assert (df.host_ms >= 0).all()
    assert (df.blocked_ms <= df.wall_ms + 1e-9).all()
    assert df.other_threads_calls.sum() == 2 * N_STEPS  # the main loop's calls


def test_old_recordings_without_step_threads_still_split_one_thread():
    rec = _profile(2, eval_lock=False)
    d = rec.to_dict()
    d["steps"] = [s[:5] for s in d["steps"]]  # format 1: no thread ids
    d["format_version"] = 1
    old = mlxprof.Recording.from_dict(d)
    df = old.per_token()
    assert (df.host_ms >= 0).all()
    assert re.search(r"\d+ steps", old.summary())
