"""Eval-lock emulation: contention between threads, recursion, no deadlock."""
from __future__ import annotations

import threading
import time

import mlx.core as mx

import mlxprof
from mlxprof import hooks
from mlxprof.lock import EvalLock

from mlx_threads import eval_on_own_stream


def _run_threads(n_threads=2, n_steps=15):
    errors: list = []
    threads = [threading.Thread(target=eval_on_own_stream, args=(range(n_steps), errors, 96),
                                name=f"dec{i}")
               for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "deadlock: a thread never finished"
    assert not errors, errors


def test_two_threads_contend_and_finish():
    with EvalLock() as lock:
        _run_threads()
    stats = lock.stats().set_index("thread")
    assert set(stats.index) == {"dec0", "dec1"}
    assert (stats["acquisitions"] == 30).all()  # 15 x (eval + item) per thread
    assert stats["contended"].sum() >= 1
    assert stats["wait_ms"].sum() > 0 and (stats["hold_ms"] > 0).all()
    assert not hooks.is_installed()


def test_forced_contention_is_measured_per_step_and_thread():
    waited = threading.Event()
    with mlxprof.Profiler(eval_lock=True) as prof:
        prof.step()
        with prof.lock.hold():  # this thread holds the global lock ...
            worker = threading.Thread(target=lambda: mx.eval(mx.ones((4,)) * 2),
                                      name="blocked-worker")
            worker.start()
            time.sleep(0.05)      # ... while the worker tries to evaluate
            waited.set()
            mx.eval(mx.ones((4,)) + 1)  # recursive acquisition: must not deadlock
        worker.join(timeout=30)
    assert not worker.is_alive()
    df = prof.per_token()  # rows split the main thread's time: it held the lock
    assert df.loc[1, "lock_wait_ms"] == 0 and df.loc[0, "lock_wait_ms"] == 0
    assert df.loc[1, "other_threads_lock_wait_ms"] >= 40  # the worker waited
    assert df.loc[1, "other_threads_calls"] == 1
    assert (df["host_ms"] >= 0).all()
    stats = prof.lock_stats().set_index("thread")
    assert stats.loc["blocked-worker", "contended"] == 1
    assert stats.loc["blocked-worker", "wait_ms"] >= 40
    main = stats.loc[threading.current_thread().name]
    assert main["contended"] == 0 and main["recursive"] == 1
    by_step = prof.lock_stats(by_step=True)
    assert set(by_step["step"]) == {1}


def test_without_eval_lock_nothing_is_locked(llama_model, prompt):
    from mlx_lm.generate import generate_step

    with mlxprof.Profiler() as prof:
        for _ in prof.track(generate_step(prompt, llama_model, max_tokens=3)):
            pass
    assert prof.lock is None and prof.recording.holds == []
    assert (prof.per_token()["lock_wait_ms"] == 0).all()
    with mlxprof.Profiler(eval_lock=True) as prof:
        for _ in prof.track(generate_step(prompt, llama_model, max_tokens=3)):
            pass
    holds = prof.recording.holds
    assert len(holds) == len(prof.recording.events) > 0
    assert {h.kind for h in holds} == {"eval", "async_eval", "item"}
    assert "Eval lock (emulated)" in prof.summary()
