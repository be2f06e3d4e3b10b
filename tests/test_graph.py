"""Op counts on hand-built graphs: exact numbers, no evaluation, no double counts."""
from __future__ import annotations

import mlx.core as mx

import mlxprof
from mlxprof.graph import count_ops, safe_count_ops


def _ab():
    a, b = mx.array([1.0, 2.0, 3.0]), mx.array([4.0, 5.0, 6.0])  # no primitive
    return a, b


def test_exact_counts_on_a_small_graph():
    a, b = _ab()
    assert count_ops(mx.sum((a + b) * (a - b))) == {
        "Add": 1, "Subtract": 1, "Multiply": 1, "Sum": 1, "Squeeze": 1}


def test_shared_subgraph_and_several_outputs_counted_once():
    a, b = _ab()
    c = a + b
    assert count_ops(c * c, c) == {"Add": 1, "Multiply": 1}
    q, r = mx.divmod(a, b)
    assert count_ops(q, r) == {"DivMod": 1}
    assert count_ops([q, {"r": r}]) == {"DivMod": 1}


def test_compiled_region_is_one_node():
    a, b = _ab()
    fused = mx.compile(lambda x, y: mx.exp(x * y) + x)
    assert count_ops(fused(a, b)) == {"CompiledMultiplyExpAdd": 1}


def test_evaluated_or_scheduled_arrays_count_nothing():
    a, b = _ab()
    c = a * b
    mx.eval(c)
    assert count_ops(c) == {}
    d = mx.exp(a) + b
    mx.async_eval(d)  # scheduled: a later graph must not count it again
    assert count_ops(d * d) == {"Multiply": 1}


def test_counting_does_not_evaluate():
    a, b = _ab()
    c = mx.sqrt(a * b)
    assert count_ops(c) == count_ops(c) == {"Multiply": 1, "Sqrt": 1}


def test_non_array_leaves_are_skipped():
    a, b = _ab()
    assert safe_count_ops(([a + b, None, 3],)) == {"Add": 1}


def test_profiler_counts_ops_per_step_exactly():
    a, b = _ab()
    with mlxprof.Profiler(count_ops=True) as prof:
        for _ in prof.track(range(3)):
            y = (a + b) * (a - b)
            mx.async_eval(y)      # counts Add, Subtract, Multiply
            z = y * 2             # y is scheduled: only Broadcast + Multiply remain
            z.item() if z.size == 1 else z.tolist()
    df = prof.per_token()
    assert df["ops_total"].tolist() == [5, 5, 5]
    assert df["ops_Multiply"].tolist() == [2, 2, 2]
    assert df[["ops_Add", "ops_Subtract", "ops_Broadcast"]].values.tolist() == [[1, 1, 1]] * 3
    events = prof.recording.events
    assert [e.ops for e in events[:2]] == [{"Add": 1, "Subtract": 1, "Multiply": 1},
                                           {"Broadcast": 1, "Multiply": 1}]
    assert all(e.count_ns > 0 for e in events)
