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

__all__ = ["count_ops", "safe_count_ops", "widening", "WATCHED_OPERATORS",
           "WATCHED_FUNCTIONS", "WATCHED_FAST"]

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


# -- dtype leaks: half-precision values widened to float32 ---------------------------
# MLX promotes bfloat16/float16 (op) float32 to float32 by inserting an AsType of the
# half-precision operand. The primitive names export_to_dot writes carry no dtype and
# MLX's Python API cannot walk a graph, so the profiler (count_ops=True) watches the
# ops that build such promotions and checks their operands' dtypes as they are called.
# A Python scalar is "weak" (takes the array's dtype) and is never flagged; explicit
# `.astype(...)` casts are deliberate and not watched.
WATCHED_OPERATORS = ("__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
                     "__truediv__", "__rtruediv__", "__matmul__", "__rmatmul__",
                     "__pow__", "__rpow__")
WATCHED_FUNCTIONS = ("add", "subtract", "multiply", "divide", "power", "maximum", "minimum",
                     "where", "matmul", "addmm", "quantized_matmul", "gather_qmm",
                     "gather_mm", "concatenate", "stack")
WATCHED_FAST = ("rms_norm", "layer_norm", "rope", "scaled_dot_product_attention")
_FLOATS: dict = {}     # mx dtype -> (name, is half precision); filled on first use


def _float_kinds() -> dict:
    if not _FLOATS:
        import mlx.core as mx

        _FLOATS.update({mx.bfloat16: ("bfloat16", True), mx.float16: ("float16", True),
                        mx.float32: ("float32", False), mx.float64: ("float64", False)})
    return _FLOATS


def widening(args, kwargs=None) -> tuple[str, str] | None:
    """(half dtype, wide dtype) if the arrays among an op's arguments mix them, else None.

    Looks at the arguments and one level of lists/tuples (concatenate, stack).
    Runs on every watched op while a profile counts ops, so it is kept cheap.

    Example:
        >>> import mlx.core as mx
        >>> x = mx.ones((2,), dtype=mx.bfloat16)
        >>> widening((x, mx.array(0.5)))
        ('bfloat16', 'float32')
        >>> widening((x, 0.5)) is None
        True
    """
    kinds = _FLOATS or _float_kinds()
    half = wide = None
    for a in (args if not kwargs else (*args, *kwargs.values())):
        for b in (a if type(a) is list or type(a) is tuple else (a,)):
            k = kinds.get(getattr(b, "dtype", None))
            if k is not None:
                if k[1]:
                    half = half or k[0]
                else:
                    wide = wide or k[0]
    return (half, wide) if half and wide else None
