"""Hooks: what is patched, exact restore, reentrancy, threads, nesting."""
from __future__ import annotations

import pickle
import sys
import threading
from collections import Counter

import mlx.core as mx
import numpy as np
import pytest

import mlxprof
from mlxprof import hooks
from mlxprof.events import MlxprofError
from mlxprof.graph import count_ops


def _lazy(n=3):
    return mx.arange(n, dtype=mx.float32) * 2 + 1  # unevaluated


def _snapshot():
    snap = {}
    for owner, name, _, _ in hooks.targets(numpy=True):
        own = vars(owner) if isinstance(owner, type) else owner.__dict__
        snap[(owner, name)] = own.get(name, "<absent>")
    return snap


def _assert_restored(before):
    for (owner, name), orig in before.items():
        own = vars(owner) if isinstance(owner, type) else owner.__dict__
        assert own.get(name, "<absent>") is orig, f"{owner}.{name} not restored"


def test_originals_patched_then_restored_by_identity():
    before = _snapshot()
    with mlxprof.Profiler():
        for (owner, name), orig in before.items():
            assert getattr(owner, name) is not orig, f"{name} not hooked"
    _assert_restored(before)
    assert not hooks.is_installed()


@pytest.mark.parametrize("exc", [ZeroDivisionError, KeyboardInterrupt])
def test_restored_after_exception(exc):
    before = _snapshot()
    with pytest.raises(exc):
        with mlxprof.Profiler(count_ops=True, eval_lock=True):
            mx.eval(_lazy())
            raise exc()
    _assert_restored(before)


def test_restore_finishes_when_interrupted_midway():
    class Flaky:
        calls = 0

    class Owner:
        pass

    def interrupting_setattr(self, name, value):
        Flaky.calls += 1
        if Flaky.calls == 1:
            raise KeyboardInterrupt
        object.__setattr__(self, name, value)

    Owner.__setattr__ = interrupting_setattr
    owner = Owner()
    sentinel = object()
    hooks._saved.append((owner, "x", True, sentinel))
    with pytest.raises(KeyboardInterrupt):
        hooks.uninstall()
    assert owner.__dict__["x"] is sentinel and not hooks.is_installed()


SYNC_POINTS = [
    ("item", lambda a: a.sum().item(), 1),
    ("tolist", lambda a: a.tolist(), 1),
    ("bool", lambda a: bool(a.sum()), 1),
    ("int", lambda a: int(a.sum()), 1),
    ("float", lambda a: float(a.sum()), 1),
    ("complex", lambda a: complex(a.sum()), 1),
    ("index", lambda a: list(range(20))[a.sum().astype(mx.int32)], 1),
    ("repr", lambda a: repr(a), 1),
    ("repr", lambda a: str(a), 1),
    ("format", lambda a: f"{a}", 1),
    ("pickle", lambda a: pickle.dumps(a), 1),
    ("bytes", lambda a: bytes(a), 1),
    ("array", lambda a: a.__array__(), 1),
    ("dlpack", lambda a: a.__dlpack__(), 1),
    ("numpy", lambda a: np.array(a), 1),
    ("numpy", lambda a: np.asarray(a), 1),
    ("eval", lambda a: mx.eval(a, [a * 2, None]), 2),
    ("async_eval", lambda a: mx.async_eval(a), 1),
    ("synchronize", lambda a: mx.synchronize(), 0),
]


@pytest.mark.parametrize("kind,fn,n_arrays", SYNC_POINTS,
                         ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(SYNC_POINTS)])
def test_each_sync_point_is_recorded_once(kind, fn, n_arrays):
    a = _lazy()
    with mlxprof.Profiler() as prof:
        fn(a)
    events = prof.recording.events
    assert [e.kind for e in events] == [kind]  # also: nested repr inside format not recorded
    assert events[0].n_arrays == n_arrays
    assert events[0].end_ns >= events[0].start_ns


@pytest.mark.parametrize("name", ["save", "savez", "savez_compressed", "save_safetensors",
                                  "save_gguf"])
def test_save_functions_are_recorded(tmp_path, name):
    a = _lazy(4)
    with mlxprof.Profiler() as prof:
        if name in ("save",):
            mx.save(str(tmp_path / "a.npy"), a)
        elif name.startswith("savez"):
            getattr(mx, name)(str(tmp_path / "a.npz"), a=a, b=a + 1)
        else:
            getattr(mx, name)(str(tmp_path / f"a.{name[5:]}"), {"a": a})
    (e,) = prof.recording.events
    assert e.kind == name and e.n_arrays == (2 if name.startswith("savez") else 1)


def test_numpy_hook_ignores_other_inputs_and_can_be_off():
    with mlxprof.Profiler() as prof:
        np.array([1, 2, 3])
    assert prof.recording.events == []
    with mlxprof.Profiler(numpy=False) as prof:
        np.array(_lazy())
    assert prof.recording.events == []


def test_call_site_is_the_caller():
    a = _lazy()
    with mlxprof.Profiler() as prof:
        line = sys._getframe().f_lineno + 1
        a.sum().item()
    (e,) = prof.recording.events
    assert e.site == (__file__, line, "test_call_site_is_the_caller")
    with mlxprof.Profiler(call_sites=False) as prof:
        a.sum().item()
    assert prof.recording.events[0].site is None


def test_other_threads_recorded_with_their_id():
    got = {}

    def worker():
        got["tid"] = threading.get_ident()
        (mx.ones((3,)) * 3).sum().item()

    with mlxprof.Profiler() as prof:
        t = threading.Thread(target=worker, name="decoder-2")
        t.start()
        t.join()
        _lazy().sum().item()
    rec = prof.recording
    by_thread = {e.thread_id: e.kind for e in rec.events}
    assert by_thread == {got["tid"]: "item", threading.get_ident(): "item"}
    assert rec.threads[got["tid"]] == "decoder-2"


def test_nesting_is_a_clear_error_and_outer_keeps_working():
    before = _snapshot()
    with mlxprof.Profiler() as outer:
        with pytest.raises(MlxprofError, match="nesting"):
            with mlxprof.Profiler():
                pass
        with pytest.raises(MlxprofError, match="nesting"):
            with mlxprof.EvalLock():
                pass
        _lazy().sum().item()
    assert [e.kind for e in outer.recording.events] == ["item"]
    _assert_restored(before)


def test_profiler_never_evaluates():
    a = _lazy()
    before = count_ops(a)
    with mlxprof.Profiler(count_ops=True, eval_lock=True) as prof:
        b = a * 3
        prof.step()
    prof.summary()
    assert before and count_ops(a) == before, "the profiler evaluated an array"
    expected = Counter(before) + Counter({"Broadcast": 1, "Multiply": 1})
    assert count_ops(b) == dict(expected)


def test_unprofiled_calls_are_not_recorded():
    with mlxprof.Profiler() as prof:
        pass
    _lazy().sum().item()  # after the profile
    assert prof.recording.events == []
