"""Token steps for a program nobody edited: the rules behind `mlxprof run --steps`.

`mlx_lm` rule: while a profile runs, mlx-lm's token generators are wrapped so
that each token they yield closes one step, exactly like `Profiler.track`:
`generate_step`, `speculative_generate_step` and `stream_generate` (so also
`generate`, which loops over `stream_generate`), and `BatchGenerator.next`
(one step per call that generated tokens, the step covering that call; the
batch generator behind `batch_generate` and `mlx_lm server`). When a wrapped
generator runs inside another (stream_generate over generate_step), only the
outer one marks steps, so step i holds the work that produced token i and
what the program did with it. A step starts when its generator is first asked
for a token, so loading a model or waiting for a request is in no step.
Names already bound elsewhere (`from mlx_lm.generate import stream_generate`)
are wrapped too; every original is put back by identity when the profile
ends, in every module that held it.

`eval` rule: one step per `mx.eval` / `mx.async_eval` call on the thread that
started the profile, closed when the call returns.

Example:
    >>> with Profiler() as prof, MlxLmSteps(prof) as steps:   # doctest: +SKIP
    ...     mlx_lm.generate(model, tokenizer, "Hi", max_tokens=8)
    >>> steps.marked                                          # doctest: +SKIP
    8
"""
from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import sys
import threading
from bisect import bisect_right

from mlxprof.events import ASYNC_EVAL, EVAL, Step

MODULE = "mlx_lm.generate"
GENERATORS = ("generate_step", "speculative_generate_step", "stream_generate")
BATCH_CLASS, BATCH_METHOD = "BatchGenerator", "next"

RULES = {
    "mlx_lm": "mlx_lm: one step per token of mlx-lm's generate_step / "
              "speculative_generate_step / stream_generate (outermost), one per "
              "BatchGenerator.next() that generated tokens",
    "eval": "eval: one step per mx.eval / mx.async_eval on the main thread",
    "none": "none: the whole run is one step",
}


class _Depth(threading.local):
    depth = 0  # > 0 while this thread runs inside a step-marking generator


class MlxLmSteps:
    """Wrap mlx-lm's token generators while `prof` runs; count the steps they mark.

    Example:
        >>> with Profiler() as prof, MlxLmSteps(prof) as steps:   # doctest: +SKIP
        ...     for r in mlx_lm.stream_generate(model, tok, "Hi", max_tokens=4): pass
    """

    def __init__(self, prof):
        self.prof = prof
        self.marked = 0
        self._local = _Depth()
        self._originals: dict = {}   # name -> original function / method
        self._wrappers: dict = {}    # name -> wrapper
        self._finder = None

    # -- install / restore ------------------------------------------------------
    def __enter__(self) -> "MlxLmSteps":
        module = sys.modules.get(MODULE)
        if module is not None:
            self._patch(module)
        else:  # patch it the moment the program imports it
            self._finder = _AfterImport(MODULE, self._patch)
            sys.meta_path.insert(0, self._finder)
        return self

    def __exit__(self, *exc) -> bool:
        if self._finder is not None and self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)
        self._restore()
        return False

    def _patch(self, module) -> None:
        for name in GENERATORS:
            orig = getattr(module, name, None)
            if callable(orig):
                self._originals[name] = orig
                self._wrappers[name] = self._wrap_generator(orig)
        cls = getattr(module, BATCH_CLASS, None)
        if cls is not None and BATCH_METHOD in vars(cls):
            self._batch = (cls, vars(cls)[BATCH_METHOD])
            setattr(cls, BATCH_METHOD, self._wrap_batch_next(vars(cls)[BATCH_METHOD]))
        _rebind(self._originals, self._wrappers)

    def _restore(self) -> None:
        _rebind(self._wrappers, self._originals)
        batch = getattr(self, "_batch", None)
        if batch is not None:
            setattr(batch[0], BATCH_METHOD, batch[1])
        self._originals, self._wrappers = {}, {}

    # -- wrappers -------------------------------------------------------------------
    def _live(self) -> bool:
        return self.prof.state == "running"

    def _wrap_generator(self, orig):
        @functools.wraps(orig)
        def wrapper(*args, **kwargs):
            gen = orig(*args, **kwargs)
            if self._local.depth or not self._live():
                return gen  # inside an outer generator: it marks the steps
            return self._marking(gen)
        return wrapper

    def _marking(self, gen):
        local, first = self._local, True
        while True:
            local.depth += 1
            try:
                if first and self._live():
                    self.prof.begin_step()
                first = False
                item = next(gen)
            except StopIteration:
                return
            finally:
                local.depth -= 1
            try:
                yield item
            except GeneratorExit:  # the consumer stopped: this token still counts
                self._mark()
                gen.close()
                raise
            self._mark()

    def _mark(self) -> None:
        if self._live():
            self.prof.step()
            self.marked += 1

    def _wrap_batch_next(self, orig):
        @functools.wraps(orig)
        def next_(batch_gen, *args, **kwargs):
            if self._local.depth or not self._live():
                return orig(batch_gen, *args, **kwargs)
            self.prof.begin_step()
            out = orig(batch_gen, *args, **kwargs)
            generated = out[1] if isinstance(out, tuple) and len(out) == 2 else out
            if generated:
                self._mark()
            return out
        return next_


def _rebind(old: dict, new: dict) -> None:
    """In every loaded module, replace attributes that are `old[name]` by `new[name]`."""
    for module in list(sys.modules.values()):
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for name, obj in old.items():
            if namespace.get(name) is obj:
                namespace[name] = new[name]


class _Loader(importlib.abc.Loader):
    """Runs the real loader, then `after(module)`."""

    def __init__(self, inner, after):
        self.inner, self.after = inner, after

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.after(module)

    def __getattr__(self, name):  # get_source, get_filename ... of the real loader
        return getattr(self.inner, name)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls `after(module)` once `name` has been imported (then steps aside)."""

    def __init__(self, name, after):
        self.name, self.after = name, after

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)  # what the other finders say
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self.after)
        return spec


class EvalSteps:
    """Step ends at each mx.eval / mx.async_eval return on one thread, kept aside.

    `install()` hooks the profiler's recorder; `steps` are Step tuples the
    runner can swap in with `apply` when no mlx-lm generator ran.
    """

    def __init__(self, prof, thread_id: int | None = None):
        import mlx.core as mx

        self._mem = (mx.get_active_memory, mx.get_peak_memory)
        self.prof = prof
        self.thread_id = thread_id or threading.get_ident()
        self.steps: list[Step] = []
        self.cast_ends: list[int] = []  # casts noted when each step ended (they have no time)
        self._last = None

    def install(self) -> None:
        self._last = self.prof._start_ns
        self.prof._rec.on_return = self._on_return

    def apply(self, rec):
        """`rec` with these steps (see `with_steps`)."""
        return with_steps(rec, self.final_steps(rec), cast_ends=self.cast_ends)

    def final_steps(self, rec) -> list[Step]:
        """The steps, plus a last one for the thread's calls after the last eval."""
        last = self.steps[-1].end_ns if self.steps else rec.start_ns
        steps = list(self.steps)
        if steps and any(e.thread_id == self.thread_id and e.start_ns >= last
                         for e in rec.events):
            steps.append(Step(len(steps), last, rec.end_ns, self._mem[0](),
                              self._mem[1](), self.thread_id))
        return steps

    def _on_return(self, kind, tid, end_ns) -> None:
        if tid != self.thread_id or kind not in (EVAL, ASYNC_EVAL):
            return
        active, peak = self._mem[0](), self._mem[1]()
        self.steps.append(Step(len(self.steps), self._last, end_ns, active, peak, tid))
        self.cast_ends.append(len(self.prof._rec.casts or ()))
        self._last = end_ns


def with_steps(rec, steps, cast_ends=None):
    """A copy of `rec` with these steps; its calls relabelled by time.

    An event's (lock hold's, collective's) step becomes the number of steps
    that ended before it started (what the live counter would have said).
    Casts carry no time: `cast_ends[i]`, the number of casts noted when step i
    ended, places them; without it they keep their step. No steps: `rec` itself.

    Example:
        >>> with_steps(rec, []) is rec    # doctest: +SKIP
        True
    """
    from mlxprof.recording import Recording

    steps = list(steps)
    if not steps:
        return rec
    ends = sorted(s.end_ns for s in steps)
    events = [e._replace(step=bisect_right(ends, e.start_ns)) for e in rec.events]
    holds = [h._replace(step=bisect_right(ends, h.request_ns)) for h in rec.holds]
    collectives = [c._replace(step=bisect_right(ends, c.t_ns)) for c in rec.collectives]
    casts = (rec.casts if cast_ends is None else
             [(bisect_right(cast_ends, i), *c[1:]) for i, c in enumerate(rec.casts)])
    return Recording(events=events, steps=steps, holds=holds, threads=rec.threads,
                     start_ns=rec.start_ns, end_ns=rec.end_ns, options=rec.options,
                     meta=rec.meta, provenance=rec.provenance,
                     format_version=rec.format_version, collectives=collectives,
                     clock=rec.clock, casts=casts)
