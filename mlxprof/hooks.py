"""The only module that touches MLX functions: patch sync points, restore exactly.

While a `Recorder` is installed, every evaluation and host<->device sync point
reachable from Python goes through a thin wrapper that times the call and
appends one plain tuple (fields of `mlxprof.events.Event`) to `recorder.events`.

Hooked (checked by experiment on MLX 0.32.4 which of them evaluate):
  mlx.core: eval, async_eval, synchronize, save, savez, savez_compressed,
            save_safetensors, save_gguf
  mx.array: item, tolist, __bool__, __int__, __float__, __index__, __complex__,
            __repr__ (print/str/f-strings), __format__, __getstate__ (pickle),
            __bytes__, __array__, __dlpack__
  numpy:    array, asarray, asanyarray, ascontiguousarray when given an
            mx.array (kind 'numpy'). numpy reads an mx.array through the
            buffer protocol, a C slot Python cannot wrap; wrapping these numpy
            functions sees the usual spellings (`np.array(a)`, `np.asarray(a)`)
            but NOT `memoryview(a)`, names bound before the profile started
            (`from numpy import asarray`), or conversions done in C
            (`np.stack([a, b])`, other libraries reading the buffer).
  mx.distributed: all_sum, all_gather, all_max, all_min, sum_scatter, send,
            recv, recv_like. Not sync points: lazy ops. Each call is kept
            in `recorder.collectives` (kind, bytes, group) at build time.
Not sync points (checked): __copy__, __deepcopy__, __hash__, __len__, __iter__,
__getitem__, __setitem__, __dlpack_device__, mx.array(...), export_function.

With a Recorder made with ``watch_casts=True`` (Profiler(count_ops=True)) the ops
in ``mlxprof.graph.WATCHED_*`` (arithmetic operators, matmuls, mx.fast norms,
RoPE and attention, ...) are wrapped too: each call is checked for operands
mixing bfloat16/float16 with float32 (``mlxprof.graph.widening``) and, if so,
noted in ``recorder.casts`` with its call site. Nothing else changes.

A hooked call made while another hooked call runs on the same thread (e.g.
format() calling repr) is recorded once, as the outer call. Calls from every
thread are recorded with their thread id. One Recorder at a time per process.

Example:
    >>> rec = Recorder()
    >>> install(rec)
    >>> import mlx.core as mx; _ = (mx.array([1.0]) + 1).item()
    >>> uninstall(rec)
    >>> [e[0] for e in rec.events]
    ['item']
"""
from __future__ import annotations

import os
import sys
import threading
from time import perf_counter_ns

import mlx.core as mx

from mlxprof.events import (ARRAY_KINDS, ASYNC_EVAL, COLLECTIVES, EVAL, MODULE_KINDS,
                            NUMPY_KIND, MlxprofError)
from mlxprof.graph import widening

_NUMPY_FUNCS = ("array", "asarray", "asanyarray", "ascontiguousarray")
_ARRAY = mx.array

_active = None          # the installed Recorder, read on every hooked call
_saved: list = []       # (owner, name, had_own_attr, original) for restore
_install_lock = threading.Lock()


class _Busy(threading.local):
    busy = False


_tls = _Busy()


def _skip_prefixes() -> tuple:
    mlx_dir = os.path.dirname(os.path.abspath(mx.__file__)) + os.sep  # .../mlx/
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    own = ("hooks", "profiler", "lock", "graph", "events", "recording", "magic",
           "steps", "runner")
    return (mlx_dir,) + tuple(f"{here}{m}.py" for m in own)


_SKIP = _skip_prefixes()


# -- which arguments are the arrays a call evaluates --------------------------------
def _n_tree(tree) -> int:
    n = 0
    for x in tree:
        t = type(x)
        if t is _ARRAY:
            n += 1
        elif t is list or t is tuple:
            n += _n_tree(x)
        elif t is dict:
            n += _n_tree(x.values())
    return n


def _all_args(args, kwargs):          # mx.eval / mx.async_eval
    return args + tuple(kwargs.values()) if kwargs else args


def _save_args(args, kwargs):         # mx.save*: the first argument is the file
    return args[1:] + tuple(kwargs.values()) if kwargs else args[1:]


def _first_arg(args, kwargs):         # array methods (self), numpy conversions
    return args[:1] if args else tuple(kwargs.values())[:1]


def _no_args(args, kwargs):           # mx.synchronize
    return ()


_COLLECTIVE = "collective"            # arrays_of marker of mx.distributed targets


class Recorder:
    """Receives hooked calls; `events` holds Event-ordered tuples.

    `step` is the current token index (the profiler advances it), `count_ops`
    an optional callable(arrays) -> dict run before every call that evaluates
    (all but synchronize), `lock` an optional `mlxprof.lock.EvalLock` taken
    around every hooked call.

    Example:
        >>> rec = Recorder(call_sites=False)
        >>> rec.events, rec.step
        ([], 0)
    """

    def __init__(self, *, call_sites: bool = True, count_ops=None, lock=None,
                 watch_casts: bool = False):
        self.events: list[tuple] = []
        self.collectives: list[tuple] = []   # Collective-ordered tuples
        # (step, thread id, op, from dtype, to dtype, site) per op that widened a
        # half-precision operand; None when not watching (see mlxprof.graph.widening)
        self.casts: list[tuple] | None = [] if watch_casts else None
        self.threads: dict[int, str] = {}
        self.step = 0
        self.call_sites = call_sites
        self.count_ops = count_ops
        self.lock = lock
        self.on_return = None  # optional callable(kind, thread_id, end_ns)

    def call(self, kind, orig, args, kwargs, arrays_of):
        _tls.busy = True
        try:
            tid = threading.get_ident()
            if tid not in self.threads:
                self.threads[tid] = threading.current_thread().name
            site = _call_site() if self.call_sites else None
            arrays = arrays_of(args, kwargs)
            n = _n_tree(arrays)
            ops, count_ns = None, 0
            if self.count_ops is not None and arrays_of is not _no_args:
                c0 = perf_counter_ns()
                ops = self.count_ops(arrays)
                count_ns = perf_counter_ns() - c0
            step = self.step
            lock = self.lock
            wait_ns = 0
            t0 = perf_counter_ns()
            token = lock.enter(kind, step) if lock is not None else None
            try:
                return orig(*args, **kwargs)
            finally:
                if token is not None:
                    wait_ns = lock.leave(token)
                end = perf_counter_ns()
                self.events.append((kind, t0, end, tid, step, n, site, wait_ns, ops,
                                    count_ns))
                if self.on_return is not None:
                    self.on_return(kind, tid, end)
        finally:
            _tls.busy = False

    def collective(self, kind, orig, args, kwargs):
        """Run an mx.distributed op builder; note its kind, bytes and group."""
        _tls.busy = True
        try:
            out = orig(*args, **kwargs)
            t = perf_counter_ns()
            tid = threading.get_ident()
            if tid not in self.threads:
                self.threads[tid] = threading.current_thread().name
            src = out if kind.startswith("recv") else (args[0] if args else kwargs.get("x"))
            # The op itself resolved group=None to the global group: same call, no new init.
            group = kwargs.get("group") or mx.distributed.init()
            self.collectives.append((kind, t, tid, self.step, int(getattr(src, "nbytes", 0)),
                                     group.size(), group.rank()))
            return out
        finally:
            _tls.busy = False

    def note_cast(self, op, pair):
        """Record that `op` widened pair[0] to pair[1] (see mlxprof.graph.widening)."""
        site = _call_site() if self.call_sites else None
        self.casts.append((self.step, threading.get_ident(), op, pair[0], pair[1], site))


_skip_file: dict = {}  # co_filename -> belongs to MLX or the profiler?


def _call_site():
    """(filename, lineno, function) of the first frame outside MLX and the profiler."""
    f = sys._getframe(3)  # 0 _call_site, 1 Recorder.call, 2 the wrapper
    while f is not None:
        code = f.f_code
        name = code.co_filename
        skip = _skip_file.get(name)
        if skip is None:
            skip = _skip_file[name] = name.startswith(_SKIP)
        if not skip:
            return (name, f.f_lineno, code.co_name)
        f = f.f_back
    return None


# -- wrappers -------------------------------------------------------------------
def _wrap(orig, kind, arrays_of):
    def hooked(*args, **kwargs):
        rec = _active
        if rec is None or _tls.busy:
            return orig(*args, **kwargs)
        return rec.call(kind, orig, args, kwargs, arrays_of)

    return _dress(hooked, orig, kind)


def _wrap_cast(orig, op):
    def hooked(*args, **kwargs):  # installed only for a Recorder that watches casts
        rec = _active
        if rec is not None and not _tls.busy:
            pair = widening(args, kwargs)
            if pair is not None:
                rec.note_cast(op, pair)
        return orig(*args, **kwargs)

    return _dress(hooked, orig, "cast")


def _wrap_numpy(orig):
    def hooked(*args, **kwargs):
        rec = _active
        if rec is None or _tls.busy:
            return orig(*args, **kwargs)
        obj = args[0] if args else kwargs.get("object", kwargs.get("a"))
        if not isinstance(obj, _ARRAY):
            return orig(*args, **kwargs)
        return rec.call(NUMPY_KIND, orig, args, kwargs, _first_arg)

    return _dress(hooked, orig, NUMPY_KIND)


def _wrap_collective(orig, kind):
    def hooked(*args, **kwargs):
        rec = _active
        if rec is None or _tls.busy:
            return orig(*args, **kwargs)
        return rec.collective(kind, orig, args, kwargs)

    return _dress(hooked, orig, kind)


def _dress(hooked, orig, kind):
    hooked.__name__ = getattr(orig, "__name__", kind)
    hooked.__qualname__ = hooked.__name__
    hooked.__doc__ = getattr(orig, "__doc__", None)
    hooked.__wrapped__ = orig
    hooked._mlxprof_kind = kind
    return hooked


def targets(numpy: bool = True) -> list[tuple]:
    """(owner, attribute, kind, arrays_of) for every entry point to hook."""
    out = []
    for name, kind in MODULE_KINDS.items():
        if hasattr(mx, name):
            arrays_of = (_no_args if kind == "synchronize"
                         else _all_args if kind in (EVAL, ASYNC_EVAL) else _save_args)
            out.append((mx, name, kind, arrays_of))
    own = vars(_ARRAY)
    for name, kind in ARRAY_KINDS.items():
        if name in own:  # e.g. __str__ is inherited and goes through __repr__
            out.append((_ARRAY, name, kind, _first_arg))
    dist = getattr(mx, "distributed", None)
    out += [(dist, name, name, _COLLECTIVE) for name in COLLECTIVES if hasattr(dist, name)]
    if numpy:
        import numpy as np

        out += [(np, name, NUMPY_KIND, None) for name in _NUMPY_FUNCS]
    return out


def cast_targets() -> list[tuple]:
    """(owner, attribute, op name) of the MLX ops watched for dtype promotion."""
    from mlxprof.graph import WATCHED_FAST, WATCHED_FUNCTIONS, WATCHED_OPERATORS

    own = vars(_ARRAY)
    return ([(_ARRAY, n, n) for n in WATCHED_OPERATORS if n in own]
            + [(mx, n, n) for n in WATCHED_FUNCTIONS if hasattr(mx, n)]
            + [(mx.fast, n, f"fast.{n}") for n in WATCHED_FAST if hasattr(mx.fast, n)])


# -- install / restore ------------------------------------------------------------
def install(recorder: Recorder, numpy: bool = True) -> None:
    """Patch every target and route calls to `recorder` (one at a time)."""
    global _active
    with _install_lock:
        if _active is not None or _saved:
            raise MlxprofError(
                "another mlxprof Profiler or EvalLock is already active; "
                "nesting is not supported (use Profiler(eval_lock=True) for both)")
        try:
            for owner, name, kind, arrays_of in targets(numpy):
                _patch(owner, name, lambda orig: (
                    _wrap_numpy(orig) if arrays_of is None
                    else _wrap_collective(orig, kind) if arrays_of is _COLLECTIVE
                    else _wrap(orig, kind, arrays_of)))
            if recorder.casts is not None:
                for owner, name, op in cast_targets():
                    _patch(owner, name, lambda orig: _wrap_cast(orig, op))
            _active = recorder
        except BaseException:  # includes KeyboardInterrupt mid-install
            _restore_all()
            raise


def _patch(owner, name, wrap) -> None:
    """Replace `owner.name` by `wrap(original)`; remember how to put it back."""
    own = vars(owner) if isinstance(owner, type) else owner.__dict__
    had = name in own
    orig = own[name] if had else getattr(owner, name)
    _saved.append((owner, name, had, orig))
    setattr(owner, name, wrap(orig))


def uninstall(recorder: Recorder | None = None) -> None:
    """Restore every original exactly (identity), even if interrupted meanwhile."""
    global _active
    with _install_lock:
        if recorder is not None and _active is not recorder and _saved:
            raise MlxprofError("uninstall() of a recorder that is not the active one")
        _active = None
        _restore_all()


def _restore_all() -> None:
    global _active
    _active = None
    interrupted = None
    while _saved:
        try:
            while _saved:
                owner, name, had, orig = _saved[-1]
                if had:
                    setattr(owner, name, orig)
                else:
                    delattr(owner, name)
                _saved.pop()
        except BaseException as exc:  # a KeyboardInterrupt must not leave patches
            interrupted = exc
    if interrupted is not None:
        raise interrupted


def active() -> Recorder | None:
    """The installed Recorder, or None."""
    return _active


def is_installed() -> bool:
    """True while any MLX entry point is patched."""
    return bool(_saved)
