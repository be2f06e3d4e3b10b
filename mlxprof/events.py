"""What a profile records: hooked calls, step boundaries and eval-lock holds.

Plain NamedTuples, so a recording is cheap to build, to save as JSON and to
turn into DataFrames. Times are `time.perf_counter_ns()` values.

Example:
    >>> from mlxprof.events import Event, category
    >>> category("item"), category("async_eval"), category("eval")
    ('sync', 'submit', 'eval')
"""
from __future__ import annotations

from typing import NamedTuple, Optional


class MlxprofError(RuntimeError):
    """Misuse of the profiler: step() outside a profile, nesting, exporting early..."""


class Event(NamedTuple):
    """One call of a hooked MLX entry point.

    `site` is (filename, lineno, function) of the first frame outside MLX and
    the profiler, or None when call sites are off. `ops` maps primitive name to
    count in the lazy graph the call evaluated (count_ops=True; None for
    synchronize, {} when its arrays were already evaluated or scheduled).
    `count_ns` is what counting those ops cost the profiler itself.
    """

    kind: str
    start_ns: int
    end_ns: int
    thread_id: int
    step: int
    n_arrays: int
    site: Optional[tuple]
    lock_wait_ns: int
    ops: Optional[dict]
    count_ns: int


class Step(NamedTuple):
    """A token boundary: the step `index` ended at `end_ns` (started at `start_ns`).

    `thread_id` is the thread that marked it (the "stepping thread" whose time
    the per-token row splits); None in recordings made before it was stored.
    """

    index: int
    start_ns: int
    end_ns: int
    active_bytes: int
    peak_bytes: int
    thread_id: Optional[int] = None


class LockHold(NamedTuple):
    """One acquisition of the emulated eval lock (depth > 0: recursive)."""

    thread_id: int
    step: int
    kind: str
    request_ns: int
    acquired_ns: int
    released_ns: int
    depth: int
    contended: bool


class Collective(NamedTuple):
    """One call of an `mx.distributed` collective while profiling.

    Collectives are lazy graph ops: the call only builds the op (`t_ns`); the
    data moves when an evaluation runs the graph. `nbytes` is what the rank
    contributes (the input's nbytes; for recv/recv_like the received array's).
    `group_size` and `rank` describe the group the op runs on.
    """

    kind: str
    t_ns: int
    thread_id: int
    step: int
    nbytes: int
    group_size: int
    rank: int


EVAL = "eval"
ASYNC_EVAL = "async_eval"

# Kind names of the hooked array methods (attribute -> kind).
ARRAY_KINDS = {
    "item": "item", "tolist": "tolist", "__bool__": "bool", "__int__": "int",
    "__float__": "float", "__index__": "index", "__complex__": "complex",
    "__repr__": "repr", "__str__": "str", "__format__": "format",
    "__getstate__": "pickle", "__bytes__": "bytes", "__array__": "array",
    "__dlpack__": "dlpack",
}
MODULE_KINDS = {
    "eval": EVAL, "async_eval": ASYNC_EVAL, "synchronize": "synchronize",
    "save": "save", "savez": "savez", "savez_compressed": "savez_compressed",
    "save_safetensors": "save_safetensors", "save_gguf": "save_gguf",
}
NUMPY_KIND = "numpy"

# mx.distributed functions -> the primitive name `mx.export_to_dot` gives their op
# (checked on MLX 0.32.4 with 2 ranks; a group of one returns the input, no op).
COLLECTIVES = {
    "all_sum": "Sum AllReduce", "all_max": "Max AllReduce", "all_min": "Min AllReduce",
    "all_gather": "AllGather", "sum_scatter": "Sum ReduceScatter",
    "send": "Send", "recv": "Recv", "recv_like": "Recv",
}


def category(kind: str) -> str:
    """'eval' (mx.eval), 'submit' (mx.async_eval) or 'sync' (everything else)."""
    if kind == EVAL:
        return "eval"
    if kind == ASYNC_EVAL:
        return "submit"
    return "sync"
