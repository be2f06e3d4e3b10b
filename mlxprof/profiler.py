"""Per-token profiler of MLX evaluations, host<->device syncs and graph ops.

    with mlxprof.Profiler() as prof:
        for tok, _ in prof.track(generate_step(prompt, model, max_tokens=32)):
            pass
    print(prof.summary()); df = prof.per_token()

What it sees: every call of mx.eval, mx.async_eval, mx.synchronize, mx.save*
and of the mx.array methods that evaluate (item, tolist, bool/int/float/
index/complex, printing, pickling, bytes, __array__, __dlpack__), from every
thread, with its call site. It never evaluates anything itself.

Gap: numpy reads an mx.array through the buffer protocol, which Python cannot
wrap. With numpy=True (default) the profiler wraps np.array, np.asarray,
np.asanyarray and np.ascontiguousarray (kind 'numpy'), but `memoryview(a)`,
numpy functions bound to other names before the profile started, and
conversions done in C (np.stack of mx arrays, other libraries) are not seen.

Steps: a step is a token. `step()` closes the current one; `track(it)` closes
one after each item's loop body, so step i holds the work that produced item
i (inside the iterator, e.g. mlx-lm's generate_step) and the work done with
it in the loop body. Without any step() the whole profile is step 0; after
the last step a tail row is kept only if its thread made any call.

Threads: steps can be marked from any thread; each thread's step runs from
its previous step() (or the profile start, or `begin_step()`) to the next, and
its per-token row splits THAT thread's time (host, submit, blocked, lock
wait). Hooked calls of other threads during the step are summed in the
other_threads_* columns, never subtracted; `per_thread()` has a row per thread.

Memory: active_bytes and peak_bytes are read at each step end
(mx.get_active_memory / mx.get_peak_memory; peak is the process high-water
mark since start or the last mx.reset_peak_memory(): the profiler does not
reset it).

One profile at a time per process (nesting raises MlxprofError). Importing
this module imports neither pandas nor plotly.
"""
from __future__ import annotations

import threading
from time import perf_counter_ns, time_ns
from typing import Iterable, Iterator

import mlx.core as mx

from mlxprof import hooks
from mlxprof.events import Event, MlxprofError, Step

_NEW, _RUNNING, _DONE = "new", "running", "stopped"


class Profiler:
    """Profile MLX decoding token by token.

    Args:
        count_ops: count primitives by name in the lazy graph each call is
            about to evaluate (eval, async_eval, item, ...); costs about as much
            as building the graph again and lands in host_ms. Also notes every
            op that widens a bfloat16/float16 value to float32 (a dtype leak;
            `Recording.casts_frame()`, flagged by `summary()`).
        eval_lock: emulate mlx-swift's global recursive eval lock.
        call_sites: record file, line and function of each call's caller.
        numpy: also see np.array/np.asarray(... mx.array ...).
        meta: free-form dict saved with the recording (model, loop, ...).
        group: the `mx.distributed.Group` this process decodes in; without it
            rank and size come from the first collective the profile sees,
            or from the `mlx.launch` environment (see docs/distributed.md).

    Example:
        >>> with Profiler() as prof:                           # doctest: +SKIP
        ...     for tok, _ in prof.track(generate_step(prompt, model)): pass
        >>> prof.per_token()[["step", "n_async_eval", "n_sync_item"]]  # doctest: +SKIP
    """

    def __init__(self, count_ops: bool = False, eval_lock: bool = False,
                 call_sites: bool = True, numpy: bool = True, meta: dict | None = None,
                 group=None):
        self.options = {"count_ops": bool(count_ops), "eval_lock": bool(eval_lock),
                        "call_sites": bool(call_sites), "numpy": bool(numpy)}
        self.meta = dict(meta or {})
        self.group = group
        self.lock = None
        self.keep_tail = True  # a last row for calls after the last step()
        self._state = _NEW
        self._recording = None

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> "Profiler":
        """Install the hooks (what `with` does on entry)."""
        if self._state != _NEW:
            raise MlxprofError("a Profiler records once; create a new Profiler()")
        from mlxprof.graph import safe_count_ops
        from mlxprof.lock import EvalLock

        opts = self.options
        self.lock = EvalLock() if opts["eval_lock"] else None
        self._rec = hooks.Recorder(
            call_sites=opts["call_sites"], lock=self.lock,
            count_ops=safe_count_ops if opts["count_ops"] else None,
            watch_casts=opts["count_ops"])
        self._steps: list[Step] = []
        # A wall-clock anchor next to the perf_counter origin puts the ranks of a
        # distributed run on one time axis (mlxprof.ranks).
        self._wall_ns = time_ns()
        self._open: dict[int, int] = {}  # thread id -> start of its open step
        self._steps_lock = threading.Lock()
        self._start_ns = perf_counter_ns()
        hooks.install(self._rec, numpy=opts["numpy"])
        self._state = _RUNNING
        return self

    def stop(self) -> "Profiler":
        """Restore MLX and freeze the recording (what `with` does on exit)."""
        if self._state != _RUNNING:
            raise MlxprofError("stop() of a Profiler that is not running")
        try:
            hooks.uninstall(self._rec)
        finally:
            self._state = _DONE
            end_ns = perf_counter_ns()
        self._recording = self._freeze(end_ns)
        return self

    @property
    def state(self) -> str:
        """'new', 'running' or 'stopped'."""
        return self._state

    def __enter__(self) -> "Profiler":
        return self.start()

    def __exit__(self, *exc) -> bool:
        self.stop()
        return False

    # -- steps -------------------------------------------------------------------
    def step(self) -> int:
        """Mark a token boundary; returns the index of the step it closed.

        Example:
            >>> with Profiler() as prof:
            ...     prof.step()
            0
        """
        if self._state != _RUNNING:
            raise MlxprofError("step() called outside a running profile "
                               "(use it inside `with mlxprof.Profiler() as prof:`)")
        now = perf_counter_ns()
        tid = threading.get_ident()
        with self._steps_lock:
            index = len(self._steps)
            self._steps.append(Step(index, self._open.get(tid, self._start_ns), now,
                                    mx.get_active_memory(), mx.get_peak_memory(), tid))
            self._open[tid] = now
            self._rec.step = index + 1
            if self.lock is not None:
                self.lock.step = index + 1
        return index

    def begin_step(self) -> None:
        """Start the calling thread's next step now instead of at its last step's end.

        Each thread's steps run from its previous step() (or the profile start)
        to its next step(); call this where a token's work begins when the time
        before it (loading, waiting for a request) belongs to no token.

        Example:
            >>> with Profiler() as prof:
            ...     prof.begin_step(); prof.step()
            0
        """
        if self._state != _RUNNING:
            raise MlxprofError("begin_step() called outside a running profile")
        self._open[threading.get_ident()] = perf_counter_ns()

    def track(self, iterable: Iterable) -> Iterator:
        """Yield the items of `iterable`; close a step after each item's loop body.

        Example:
            >>> with Profiler() as prof:
            ...     toks = [t for t in prof.track(range(3))]
            >>> len(prof.per_token())
            3
        """
        if self._state != _RUNNING:
            raise MlxprofError("track() called outside a running profile")
        return self._track(iter(iterable))

    def _track(self, it: Iterator) -> Iterator:
        for item in it:
            try:
                yield item
            except GeneratorExit:  # `break` or an error in the loop body
                if self._state == _RUNNING:
                    self.step()
                raise
            self.step()  # raises if the loop goes on after the profile ended

    # -- results -------------------------------------------------------------------
    def _freeze(self, end_ns: int):
        from mlxprof.events import Collective
        from mlxprof.provenance import collect, distributed
        from mlxprof.recording import Recording

        collectives = [Collective._make(t) for t in list(self._rec.collectives)]
        seen = next(((c.rank, c.group_size) for c in collectives), None)
        provenance = collect()
        provenance["distributed"] = distributed(self.group, seen)
        events = [Event._make(t) for t in list(self._rec.events)]
        steps = list(self._steps)
        tid = steps[-1].thread_id if steps else threading.get_ident()
        tail = [e for e in events if e.step == len(steps) and e.thread_id == tid]
        if (tail and self.keep_tail) or not steps:
            steps.append(Step(len(steps), self._open.get(tid, self._start_ns), end_ns,
                              mx.get_active_memory(), mx.get_peak_memory(), tid))
        threads = dict(self._rec.threads)
        holds = list(self.lock.holds) if self.lock is not None else []
        if self.lock is not None:
            threads.update({k: v for k, v in self.lock.threads.items() if k not in threads})
        return Recording(events=events, steps=steps, holds=holds, threads=threads,
                         start_ns=self._start_ns, end_ns=end_ns,
                         options=dict(self.options), meta=self.meta,
                         collectives=collectives, provenance=provenance,
                         clock={"perf_ns": self._start_ns, "wall_ns": self._wall_ns},
                         casts=list(self._rec.casts or ()))

    @property
    def recording(self):
        """The Recording this profile left behind (after it stopped)."""
        if self._state != _DONE:
            raise MlxprofError(
                "the profile is still running (or never ran): read results after "
                "the `with mlxprof.Profiler()` block ends")
        self._recording.meta = self.meta
        return self._recording

    def per_token(self, thread: int | None = None):
        """pandas DataFrame, one row per step (see DESIGN.md for the columns and threads)."""
        return self.recording.per_token(thread=thread)

    def per_thread(self):
        """pandas DataFrame, one row per thread (see `Recording.per_thread`)."""
        return self.recording.per_thread()

    def summary(self) -> str:
        """A printable table: calls per kind, token time split, call sites."""
        return self.recording.summary()

    def export_chrome_trace(self, path) -> str:
        """Write Chrome/Perfetto trace JSON to `path`; returns the path."""
        return self.recording.export_chrome_trace(path)

    def save(self, path) -> str:
        """Save the recording (gzipped if `path` ends in `.gz`, else plain JSON);
        `mlxprof.load(path)` reads either back.

        In a distributed run (group size > 1) the rank goes into the name:
        `{rank}` in `path` is replaced, else `.rank<r>` goes before the suffix.
        """
        return self.recording.save(path)

    def figure(self, kind: str = "tokens"):
        """plotly Figure: 'tokens' (stacked time split per step) or 'timeline'."""
        return self.recording.figure(kind)

    def events(self):
        """pandas DataFrame, one row per hooked call."""
        return self.recording.events_frame()

    def lock_stats(self, by_step: bool = False):
        """pandas DataFrame of eval-lock use per thread (and step)."""
        return self.recording.lock_stats(by_step=by_step)
