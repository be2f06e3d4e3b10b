"""A worker thread that keeps MLX busy on its own stream (test_lock, test_threads)."""
from __future__ import annotations

import mlx.core as mx


def eval_on_own_stream(rounds, errors: list, size: int, ready=None) -> None:
    """Per item of `rounds`: build x @ x @ x on a thread-local CPU stream, eval, item.

    `ready` (a threading.Barrier) is waited on after the first round, so a
    thread waiting on it too knows this one has evaluated (on 2 busy cores a
    worker may otherwise not get to run before the test is over). An
    exception is appended to `errors` for the test to surface.

    Example:
        >>> eval_on_own_stream(range(2), errors := [], size=8); errors
        []
    """
    try:
        stream = mx.new_thread_local_stream(mx.cpu)
        x = mx.random.normal((size, size))
        for i, _ in enumerate(rounds):
            with mx.stream(stream):
                y = x @ x @ x
            mx.eval(y)
            y.sum().item()
            if i == 0 and ready is not None:
                ready.wait(timeout=30)
    except BaseException as exc:  # surfaced by the test
        errors.append(exc)
