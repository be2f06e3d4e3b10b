"""Count the primitives in the unevaluated graph behind some arrays.

`mx.export_to_dot` walks the lazy graph in C++ and writes one node per
primitive without evaluating anything; we only read the node labels. Arrays
already evaluated or already scheduled by an earlier `mx.async_eval` show no
primitive (MLX 0.32 detaches them), so nothing is counted twice.

Cost (MLX 0.32.4): about as much as building the graph did, a few us per node
on a slow CPU; see experiments/profiler_overhead.py.

Example:
    >>> import mlx.core as mx
    >>> x = mx.array([1.0, 2.0])
    >>> count_ops(mx.exp(x) + 1)
    {'Exp': 1, 'Broadcast': 1, 'Add': 1}
"""
from __future__ import annotations

import io
import re
from collections import Counter

_LABEL = re.compile(r'label ="([^"]*)"')


def count_ops(*arrays) -> dict:
    """Primitive name -> count in the lazy graph behind `arrays` (trees allowed).

    Never evaluates. Returns {} when everything is already evaluated.

    Example:
        >>> import mlx.core as mx
        >>> count_ops([mx.array([1, 2]) * 2])
        {'Broadcast': 1, 'Multiply': 1}
    """
    import mlx.core as mx

    buf = io.StringIO()
    mx.export_to_dot(buf, *arrays)
    return dict(Counter(_LABEL.findall(buf.getvalue())))


def safe_count_ops(args) -> dict | None:
    """count_ops(*args) for the arrays of a hooked call; never raises.

    mx.eval tolerates non-array leaves (None, ints) that export_to_dot rejects:
    then only the arrays are counted. None if even that fails.
    """
    try:
        return count_ops(*args)
    except Exception:
        pass
    try:
        return count_ops(*_arrays_in(args))
    except Exception:
        return None


def _arrays_in(tree) -> list:
    import mlx.core as mx

    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, mx.array):
            out.append(node)
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
        elif isinstance(node, dict):
            stack.extend(node.values())
    return out
