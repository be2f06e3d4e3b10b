"""Greedy decode loops for mlx-lm models, from naive to pipelined.

Every loop is a generator `fn(model, prompt, max_tokens) -> Iterator[int]` that
yields greedy token ids as Python ints. All of them handle the prompt exactly as
mlx-lm's `generate_step` does (prefill `prompt[:-1]` in chunks of 2048 with an
`mx.eval` of the cache state and `mx.clear_cache()` after each chunk, then
decode from the last prompt token; `logprobs = logits - logsumexp(logits)`,
`argmax`), so loops that do the same math give bit-identical tokens. Only
greedy decoding is supported: no sampler, no logits processors.

The stages, in the order the notebooks build them:

    sync       build a step, mx.eval it, item() it, then build the next
    mlx_lm     mlx_lm.generate.generate_step itself (the reference)
    async      build N+1 and async_eval it before item() of N (default stream)
    pipelined  the same on a dedicated generation stream (our own mlx-lm)
    compiled   pipelined + an mx.compile'd sampling tail (logsumexp, argmax)
    fast       pipelined on mlxprof.decode.optimize_model(model)

Example:
    >>> from mlxprof import decode                               # doctest: +SKIP
    >>> from mlxprof.lab import models                           # doctest: +SKIP
    >>> lm = models.load("qwen3-8b", scale="tiny", seed=0)      # doctest: +SKIP
    >>> list(decode.stream(lm.model, lm.prompt(8), 4))          # doctest: +SKIP
"""
from __future__ import annotations

import weakref
from contextlib import nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Iterator, Optional, Union

import mlx.core as mx
import numpy as np

__all__ = [
    "Loop", "LOOPS", "stream", "get_loop", "register", "check_args", "vocab_size",
    "sync_loop", "mlx_lm_loop", "async_loop", "pipelined_loop", "compiled_loop",
    "synchronize", "teacher_forced_logits", "compare_logits", "LogitsComparison",
    "PREFILL_STEP_SIZE", "CLEAR_CACHE_EVERY",
]

PREFILL_STEP_SIZE = 2048   # mlx-lm's default prefill_step_size
CLEAR_CACHE_EVERY = 256    # mlx-lm calls mx.clear_cache() every 256 tokens

LoopFn = Callable[..., Iterator[int]]


@dataclass(frozen=True)
class Loop:
    """A named decode loop.

    `fn(model, prompt, max_tokens, *, prefill_step_size=2048)` yields token ids.
    `prepare(model) -> model`, when set, rewrites the model once, outside any
    timing; it must not modify its input (bench reuses the model for other loops).

    Example:
        >>> loop = LOOPS["pipelined"]
        >>> loop.name, loop.prepare is None
        ('pipelined', True)
    """

    name: str
    fn: LoopFn
    description: str
    prepare: Optional[Callable] = None


# --------------------------------------------------------------------------
# argument checks and the shared pieces of every loop


def check_args(prompt, max_tokens: int, vocab: Optional[int] = None) -> mx.array:
    """Validate a prompt and token budget; return the prompt as a 1-D mx.array.

    With `vocab` (see :func:`vocab_size`), every id must lie in [0, vocab):
    MLX does not check embedding indices, so an id out of range decodes
    garbage and a huge one (2**31 - 1) crashes the process. Raises ValueError
    with a one-line message on bad input.

    Example:
        >>> check_args([1, 2, 3], 4).shape
        (3,)
        >>> check_args([1, 70000], 4, vocab=32000)
        Traceback (most recent call last):
        ...
        ValueError: prompt holds token id 70000 at position 1, outside the model's vocabulary [0, 32000)
    """
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
        raise ValueError(f"max_tokens must be an int, got {max_tokens!r}")
    if max_tokens <= 0:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    if not isinstance(prompt, mx.array):
        prompt = _as_ids(prompt)
    if prompt.ndim != 1:
        raise ValueError(
            f"prompt must be 1-D token ids, got shape {tuple(prompt.shape)}")
    if prompt.size == 0:
        raise ValueError("prompt is empty: give at least one token id")
    if not mx.issubdtype(prompt.dtype, mx.integer):
        raise ValueError(f"prompt must hold integer token ids, got {prompt.dtype}")
    _check_ids(prompt, vocab)
    return prompt


def _as_ids(prompt) -> mx.array:
    ids = np.asarray(prompt)
    if ids.dtype.kind in "iu":          # beyond int32 would wrap around in mx.array
        _refuse_outside(ids.ravel(), 2**31, "[0, 2**31)")
    return mx.array(prompt, dtype=mx.int32)


def _check_ids(prompt: mx.array, vocab: Optional[int]) -> None:
    """Refuse ids outside [0, vocab) before the model sees them."""
    # memoryview: read the ids without a hooked call, so a profile of the loop
    # does not show the check as a sync point of the user's code.
    ids = np.asarray(memoryview(prompt))
    if vocab is None:
        _refuse_outside(ids, np.inf, "[0, vocabulary size)")
    else:
        _refuse_outside(ids, vocab, f"[0, {vocab})")


def _refuse_outside(ids, high, where: str) -> None:
    bad = np.flatnonzero((ids < 0) | (ids >= high))
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"prompt holds token id {int(ids[i])} at position {i}, "
                         f"outside the model's vocabulary {where}")


def vocab_size(model) -> Optional[int]:
    """Rows of the model's token embedding (the ids it accepts), or None if unknown.

    Looks for an `embed_tokens` (or other Embedding) module, else `model.args.vocab_size`.

    Example:
        >>> from mlxprof.lab import models
        >>> vocab_size(models.load("qwen3-8b", scale="tiny").model)
        512
    """
    import mlx.nn as nn

    if not isinstance(model, nn.Module):
        return None                     # a stand-in: only the sign of ids is checked
    embeddings = [m for name, m in model.named_modules()
                  if name.endswith("embed_tokens")
                  or isinstance(m, (nn.Embedding, nn.QuantizedEmbedding))]
    if embeddings:
        return int(embeddings[-1].weight.shape[0])
    size = getattr(getattr(model, "args", None), "vocab_size", None)
    return int(size) if size else None


def _checked(model, prompt, max_tokens: int) -> mx.array:
    return check_args(prompt, max_tokens, vocab_size(model))


def _make_cache(model):
    from mlx_lm.models.cache import make_prompt_cache

    return make_prompt_cache(model)


def _prefill(model, prompt: mx.array, cache, step: int) -> mx.array:
    """Run prompt[:-1] through the model in chunks; return the tokens left (1)."""
    while prompt.size > 1:
        n = min(step, prompt.size - 1)
        model(prompt[:n][None], cache=cache)
        mx.eval([c.state for c in cache])
        prompt = prompt[n:]
        mx.clear_cache()
    return prompt


def _sample(logits: mx.array) -> mx.array:
    """Greedy token from last-position logits, as mlx-lm computes it."""
    logprobs = logits - mx.logsumexp(logits, keepdims=True)
    return mx.argmax(logprobs, axis=-1)


@lru_cache(maxsize=1)
def _compiled_sample():
    return mx.compile(_sample)


def _step(model, tokens: mx.array, cache, sample=_sample) -> mx.array:
    """Build (do not evaluate) the next greedy token, shape (1,)."""
    logits = model(tokens[None], cache=cache)[:, -1, :]
    return sample(logits)


@lru_cache(maxsize=None)
def _generation_stream(device_type: str) -> mx.Stream:
    # Created lazily (not at import) and kept: one per device, like mlx-lm's.
    return mx.new_thread_local_stream(mx.default_device())


def _stream_for_default_device():
    return _generation_stream(str(mx.default_device()))


def synchronize() -> None:
    """Wait for all work the loops may have queued (default stream, ours, mlx-lm's).

    mlx-lm's generate_step builds and schedules one step past the last token
    it yields; call this after a run so that work does not overlap the next.

    Example:
        >>> synchronize()
    """
    import sys

    mx.synchronize()
    mx.synchronize(_stream_for_default_device())
    mlx_gen = sys.modules.get("mlx_lm.generate")
    if mlx_gen is not None and hasattr(mlx_gen, "generation_stream"):
        mx.synchronize(mlx_gen.generation_stream)


def _maybe_clear(n: int) -> None:
    if n % CLEAR_CACHE_EVERY == 0:
        mx.clear_cache()


# --------------------------------------------------------------------------
# the loops


def sync_loop(model, prompt, max_tokens: int, *,
              prefill_step_size: int = PREFILL_STEP_SIZE) -> Iterator[int]:
    """Build a step, evaluate it, read it, then build the next (greedy).

    No overlap between host and device: the pattern the original report
    suspected. Default stream.

    Example:
        >>> toks = list(sync_loop(model, prompt, 8))            # doctest: +SKIP
        >>> len(toks)                                           # doctest: +SKIP
        8
    """
    return _sync_gen(model, _checked(model, prompt, max_tokens), max_tokens,
                     prefill_step_size)


def _sync_gen(model, prompt, max_tokens, prefill_step_size):
    cache = _make_cache(model)
    y = _prefill(model, prompt, cache, prefill_step_size)
    for n in range(max_tokens):
        y = _step(model, y, cache)
        mx.eval(y)
        yield y.item()
        _maybe_clear(n)


def mlx_lm_loop(model, prompt, max_tokens: int, *,
                prefill_step_size: int = PREFILL_STEP_SIZE) -> Iterator[int]:
    """mlx_lm.generate.generate_step itself, greedy, yielding ints (the reference).

    Example:
        >>> toks = list(mlx_lm_loop(model, prompt, 8))          # doctest: +SKIP
        >>> toks == list(pipelined_loop(model, prompt, 8))      # doctest: +SKIP
        True
    """
    from mlx_lm.generate import generate_step

    steps = generate_step(_checked(model, prompt, max_tokens), model,
                          max_tokens=max_tokens,
                          prefill_step_size=prefill_step_size)
    return (int(y) for y, _ in steps)


def _double_buffered(model, prompt, max_tokens: int, prefill_step_size: int,
                     stream=None, sample=_sample) -> Iterator[int]:
    """Build N+1 and async_eval it, then item() N (on `stream` if given).

    The stream context covers only graph building, never the consumer's code
    between yields. Unlike generate_step, no step past max_tokens is built.
    """
    return _double_buffered_gen(model, _checked(model, prompt, max_tokens),
                                max_tokens, prefill_step_size, stream, sample)


def _double_buffered_gen(model, prompt, max_tokens, prefill_step_size,
                         stream, sample):
    on_stream = (lambda: mx.stream(stream)) if stream is not None else nullcontext
    cache = _make_cache(model)
    with on_stream():
        y = _prefill(model, prompt, cache, prefill_step_size)
        y = _step(model, y, cache, sample)
    mx.async_eval(y)
    for n in range(max_tokens):
        if n + 1 < max_tokens:
            with on_stream():
                next_y = _step(model, y, cache, sample)
            mx.async_eval(next_y)
        yield y.item()
        _maybe_clear(n)
        if n + 1 < max_tokens:
            y = next_y


def async_loop(model, prompt, max_tokens: int, *,
               prefill_step_size: int = PREFILL_STEP_SIZE) -> Iterator[int]:
    """Async double-buffering on the default stream (greedy).

    Builds step N+1 and calls mx.async_eval on it before item() of step N.

    Example:
        >>> toks = list(async_loop(model, prompt, 8))           # doctest: +SKIP
        >>> toks == list(sync_loop(model, prompt, 8))           # doctest: +SKIP
        True
    """
    return _double_buffered(model, prompt, max_tokens, prefill_step_size)


def pipelined_loop(model, prompt, max_tokens: int, *,
                   prefill_step_size: int = PREFILL_STEP_SIZE) -> Iterator[int]:
    """Async double-buffering on a dedicated generation stream (greedy).

    Our own version of mlx-lm's loop: same math, same tokens.

    Example:
        >>> toks = list(pipelined_loop(model, prompt, 8))       # doctest: +SKIP
        >>> toks == list(mlx_lm_loop(model, prompt, 8))         # doctest: +SKIP
        True
    """
    return _double_buffered(model, prompt, max_tokens, prefill_step_size,
                            stream=_stream_for_default_device())


def compiled_loop(model, prompt, max_tokens: int, *,
                  prefill_step_size: int = PREFILL_STEP_SIZE) -> Iterator[int]:
    """`pipelined` with the sampling tail (logsumexp, subtract, argmax) compiled.

    Example:
        >>> toks = list(compiled_loop(model, prompt, 8))        # doctest: +SKIP
        >>> toks == list(pipelined_loop(model, prompt, 8))      # doctest: +SKIP
        True
    """
    return _double_buffered(model, prompt, max_tokens, prefill_step_size,
                            stream=_stream_for_default_device(),
                            sample=_compiled_sample())


# --------------------------------------------------------------------------
# registry


LOOPS: dict[str, Loop] = {}


def register(loop: Loop) -> Loop:
    """Add (or replace) a loop in LOOPS; returns it.

    Example:
        >>> register(Loop("mine", pipelined_loop, "my variant")).name
        'mine'
        >>> del LOOPS["mine"]
    """
    LOOPS[loop.name] = loop
    return loop


def _optimize_prepare(model):
    from mlxprof.decode.optimize import optimize_model  # lazy: loads the kernels

    return optimize_model(model)


def _fast_loop(model, prompt, max_tokens: int, *,
               prefill_step_size: int = PREFILL_STEP_SIZE) -> Iterator[int]:
    """The pipelined loop; run it on `optimize_model(model)` (Loop.prepare)."""
    return pipelined_loop(model, prompt, max_tokens,
                          prefill_step_size=prefill_step_size)


register(Loop("sync", sync_loop,
              "build, mx.eval, item() each token before building the next"))
register(Loop("mlx_lm", mlx_lm_loop,
              "mlx_lm.generate.generate_step itself (reference)"))
register(Loop("async", async_loop,
              "build N+1, async_eval, then item() of N; default stream"))
register(Loop("pipelined", pipelined_loop,
              "async double-buffering on a dedicated stream (ours)"))
register(Loop("compiled", compiled_loop,
              "pipelined + mx.compile'd sampling tail (logsumexp, argmax)"))
register(Loop("fast", _fast_loop,
              "pipelined on mlxprof.decode.optimize.optimize_model(model)",
              prepare=_optimize_prepare))


def get_loop(name: Union[str, Loop]) -> Loop:
    """The Loop registered as `name`; ValueError listing known names if none.

    Example:
        >>> get_loop("sync").name
        'sync'
    """
    if isinstance(name, Loop):
        return name
    try:
        return LOOPS[name]
    except KeyError:
        known = ", ".join(LOOPS)
        raise ValueError(f"unknown loop {name!r}; known loops: {known}") from None


# prepared models, kept while the original lives: id(model) -> (ref, {loop: m})
_PREPARED: dict[int, tuple] = {}


def _prepared(model, loop: Loop):
    if loop.prepare is None:
        return model
    key = id(model)
    entry = _PREPARED.get(key)
    if entry is None or entry[0]() is not model:
        entry = (weakref.ref(model), {})
        _PREPARED[key] = entry
        weakref.finalize(model, _PREPARED.pop, key, None)
    if loop.name not in entry[1]:
        entry[1][loop.name] = loop.prepare(model)
    return entry[1][loop.name]


def stream(model, prompt, max_tokens: int, loop: Union[str, Loop] = "pipelined",
           **kwargs) -> Iterator[int]:
    """Greedy token ids from `model` for `prompt`, decoded with the named loop.

    Applies `loop.prepare` once per model (cached while the model lives).

    Example:
        >>> for tok in stream(model, prompt, 16, loop="sync"):  # doctest: +SKIP
        ...     print(tok)
    """
    lp = get_loop(loop)
    prompt = _checked(model, prompt, max_tokens)
    return lp.fn(_prepared(model, lp), prompt, max_tokens, **kwargs)


# --------------------------------------------------------------------------
# tolerance checks for loops that change the math


def teacher_forced_logits(model, tokens, n_prompt: int = 1,
                          logprobs: bool = False) -> mx.array:
    """Logits the model gives when fed `tokens`, through the decode path.

    Processes tokens[:n_prompt] at once, then one token per call with a KV
    cache (as decoding does). Row i predicts tokens[n_prompt + i]; the result
    is float32 of shape (len(tokens) - n_prompt + 1, vocab). With
    `logprobs=True` rows are `logits - logsumexp(logits)` in the model's dtype,
    what the greedy sampler sees (in bf16 that rounding can tie near-equal
    logits, so argmax of raw logits may differ from the decoded token).

    Example:
        >>> ref = teacher_forced_logits(model, toks)            # doctest: +SKIP
        >>> new = teacher_forced_logits(fast_model, toks)       # doctest: +SKIP
        >>> compare_logits(ref, new).ok                         # doctest: +SKIP
    """
    tokens = _checked(model, tokens, 1)
    if not 1 <= n_prompt <= tokens.size:
        raise ValueError(f"n_prompt must be in 1..{tokens.size}, got {n_prompt}")
    cache = _make_cache(model)

    def row(chunk):
        logits = model(chunk[None], cache=cache)[:, -1, :]
        if logprobs:
            logits = logits - mx.logsumexp(logits, keepdims=True)
        mx.eval(logits)
        return logits[0]

    rows = [row(tokens[:n_prompt])]
    rows += [row(tokens[i:i + 1]) for i in range(n_prompt, tokens.size)]
    return mx.stack(rows).astype(mx.float32)


@dataclass(frozen=True)
class LogitsComparison:
    """How close two logits tables are (see compare_logits).

    Example:
        >>> c = compare_logits(mx.ones((2, 3)), mx.ones((2, 3)))
        >>> c.ok, c.rel_max_diff, c.argmax_agreement
        (True, 0.0, 1.0)
    """

    max_abs_diff: float
    max_abs_ref: float
    rel_max_diff: float          # max |ref - other| / max |ref|
    argmax_agreement: float      # fraction of rows with the same argmax
    n_rows: int
    max_rel_diff: float = 0.02
    min_agreement: float = 0.95

    @property
    def ok(self) -> bool:
        return (self.rel_max_diff <= self.max_rel_diff
                and self.argmax_agreement >= self.min_agreement)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAIL"
        return (f"{verdict}: max|diff|/max|logit| = {self.rel_max_diff:.4f} "
                f"(bar {self.max_rel_diff}), argmax agreement = "
                f"{self.argmax_agreement:.3f} over {self.n_rows} rows "
                f"(bar {self.min_agreement})")


def compare_logits(ref, other, max_rel_diff: float = 0.02,
                   min_agreement: float = 0.95) -> LogitsComparison:
    """Compare two (steps, vocab) logits tables: distance and argmax agreement.

    `.ok` applies fixed thresholds (by default the old bf16 bar of issue 3:
    max |diff| <= 2% of max |logit|, argmax equal on >= 95% of rows). To
    judge a loop that changes the math, use mlxprof.decode.accuracy.yardstick,
    which compares with the float32 run and with mlx-lm's own distance to it.

    Example:
        >>> a = mx.array([[1.0, 2.0], [3.0, 0.0]])
        >>> compare_logits(a, a + 0.01).ok
        True
    """
    ref = mx.array(ref).astype(mx.float32)
    other = mx.array(other).astype(mx.float32)
    if ref.shape != other.shape or ref.ndim != 2:
        raise ValueError(f"need two 2-D tables of one shape, got "
                         f"{tuple(ref.shape)} and {tuple(other.shape)}")
    max_abs_diff = mx.max(mx.abs(ref - other)).item()
    max_abs_ref = mx.max(mx.abs(ref)).item()
    agree = mx.mean(mx.argmax(ref, -1) == mx.argmax(other, -1)).item()
    rel = max_abs_diff / max_abs_ref if max_abs_ref > 0 else (
        0.0 if max_abs_diff == 0 else float("inf"))
    return LogitsComparison(max_abs_diff, max_abs_ref, rel, agree, ref.shape[0],
                            max_rel_diff, min_agreement)
