"""Emulation of mlx-swift's global recursive `evalLock`.

mlx-swift wraps every eval/asyncEval/synchronize (and so item(), which
evaluates) in one process-wide NSRecursiveLock. `EvalLock` does the same for
Python MLX: each hooked call takes a `threading.RLock` first, and every
acquisition is recorded (thread, step, wait ns, hold ns, contended or not),
so you can see whether such a lock would cost anything in your program.

Use it through `Profiler(eval_lock=True)` (per-token `lock_wait_ms`) or alone:

    with EvalLock() as lock:            # hooks MLX while the block runs
        run_two_decoders_in_threads()
    print(lock.stats())                 # per thread: acquisitions, waits, holds

Threads and streams (MLX 0.32, checked on the CPU backend): a second thread
may evaluate on its own default stream or on `mx.new_thread_local_stream(dev)`
or on a stream it made with `mx.new_stream` itself; a stream made with
`mx.new_stream` in another thread fails there ("There is no Stream(cpu, N) in
current thread"). MLX releases the GIL while it evaluates, so two threads
really do contend for the emulated lock. Graph building takes no lock, as in
Swift. `mx.clear_cache` and stream creation, which take the lock in Swift, are
not hooked.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from time import perf_counter_ns

from mlxprof.events import LockHold


class _Depth(threading.local):
    depth = 0


class EvalLock:
    """A global recursive eval lock with per-acquisition records.

    Example:
        >>> with EvalLock() as lock:            # doctest: +SKIP
        ...     mx.eval(mx.ones((4,)) * 2)
        >>> lock.stats()                        # doctest: +SKIP
    """

    def __init__(self):
        self._rlock = threading.RLock()
        self._local = _Depth()
        self._holds: list[tuple] = []  # LockHold-ordered tuples (cheap to append)
        self.threads: dict[int, str] = {}
        self.step = 0  # the profiler keeps this in step with its token index
        self._recorder = None

    # -- used on the hot path by mlxprof.hooks --------------------------------
    def enter(self, kind: str, step: int) -> tuple:
        """Acquire (recursively); returns a token for `leave`."""
        request_ns = perf_counter_ns()
        contended = not self._rlock.acquire(blocking=False)
        if contended:
            self._rlock.acquire()
        acquired_ns = perf_counter_ns() if contended else request_ns
        depth = self._local.depth
        self._local.depth = depth + 1
        return (kind, step, request_ns, acquired_ns, depth, contended)

    def leave(self, token: tuple) -> int:
        """Release; records the hold and returns the ns spent waiting for it."""
        kind, step, request_ns, acquired_ns, depth, contended = token
        released_ns = perf_counter_ns()
        self._local.depth = depth
        self._rlock.release()
        tid = threading.get_ident()
        if tid not in self.threads:
            self.threads[tid] = threading.current_thread().name
        self._holds.append((tid, step, kind, request_ns, acquired_ns,
                            released_ns, depth, contended))
        return acquired_ns - request_ns

    @property
    def holds(self) -> list[LockHold]:
        """Every acquisition so far, oldest first."""
        return [LockHold._make(t) for t in list(self._holds)]

    # -- public ----------------------------------------------------------------
    @contextmanager
    def hold(self, kind: str = "hold"):
        """Hold the lock explicitly, like Swift code inside `evalLock.withLock`.

        Example:
            >>> lock = EvalLock()
            >>> with lock.hold():
            ...     pass
            >>> len(lock.holds)
            1
        """
        token = self.enter(kind, self.step)
        try:
            yield self
        finally:
            self.leave(token)

    def __enter__(self) -> "EvalLock":
        from mlxprof import hooks

        self._recorder = hooks.Recorder(call_sites=False, lock=self)
        hooks.install(self._recorder)
        return self

    def __exit__(self, *exc) -> bool:
        from mlxprof import hooks

        hooks.uninstall(self._recorder)
        return False

    def stats(self):
        """pandas DataFrame, one row per thread: acquisitions, contended, wait_ms, hold_ms."""
        from mlxprof import report

        return report.lock_table(self.holds, self.threads)
