"""The correctness yardstick: how far a model's bf16 logits are from float32.

A loop that changes the math (``fast``: fused weights, compiled pieces,
custom kernels) cannot give mlx-lm's bf16 logits bit for bit on every
backend. What it must not do is move *further from the exact answer* than
mlx-lm's own bf16 rounding does. The exact answer here is the same model,
same quantized weights, run with float32 activations (its bf16 scales,
biases and norm weights cast to float32, which is exact).

Measure, over ``steps`` teacher-forced decode steps (tokens = a prompt plus
mlx-lm's own greedy continuation, so every model sees the same inputs):

* ``rel_max_diff``: max |logits - logits_f32| / max |logits_f32| over the table;
* ``argmax_agreement``: fraction of steps whose argmax matches float32's.

The bar for a candidate (``Yardstick.ok``): its ``rel_max_diff`` is at most
1.1x mlx-lm's, and its argmax agreement at most one point below mlx-lm's.
``Yardstick.conditioned`` says whether the model can judge anything at all:
mlx-lm's bf16 argmax agrees with float32 on >= 95% of the steps (on a chaotic
model, bf16 and float32 disagree everywhere and any loop would "pass").

``rel_max_diff`` is one entry of the whole table: in half precision it can
move between paths that round in different places while their typical
differences stay the same. ``spread`` shows those (quantiles of each step's
largest difference, the mean) beside it; ``logits_tables`` gives the tables.

Example:
    >>> from mlxprof.lab import models                        # doctest: +SKIP
    >>> from mlxprof.decode.optimize import optimize_model     # doctest: +SKIP
    >>> lm = models.load("qwen3-8b", scale="tiny")             # doctest: +SKIP
    >>> y = yardstick(lm.model, {"fast": optimize_model(lm.model)},
    ...               lm.prompt(32), steps=128)                # doctest: +SKIP
    >>> y.ok, y.conditioned                                    # doctest: +SKIP
    (True, True)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from mlxprof.decode.loops import check_args, compare_logits, stream, teacher_forced_logits

__all__ = ["float32_logits", "teacher_forced_tokens", "logits_tables", "yardstick",
           "judge", "distance", "spread",
           "Yardstick", "Distance", "MAX_DIST_RATIO", "MAX_AGREEMENT_DROP", "MIN_CONDITIONED"]

MAX_DIST_RATIO = 1.1       # candidate's distance to float32 <= 1.1x mlx-lm's
MAX_AGREEMENT_DROP = 0.01  # candidate's argmax agreement >= mlx-lm's - 1 point
MIN_CONDITIONED = 0.95     # mlx-lm bf16 vs float32 argmax agreement for a usable model


def float32_logits(model, tokens, n_prompt: int = 1) -> mx.array:
    """Teacher-forced logits of ``model`` run in float32 activations.

    Every floating parameter is cast to float32 for the run (quantized
    weights are integers and stay as they are, so it is the same quantized
    model); afterwards the original arrays are put back by identity, so the
    model is exactly as before even if the run raises.

    Example:
        >>> ref = float32_logits(model, toks, n_prompt=32)     # doctest: +SKIP
    """
    saved = tree_flatten(model.parameters())
    try:
        model.set_dtype(mx.float32)
        return teacher_forced_logits(model, tokens, n_prompt)
    finally:
        model.update(tree_unflatten(saved))


def teacher_forced_tokens(model, prompt, steps: int) -> mx.array:
    """``prompt`` followed by mlx-lm's greedy continuation: ``steps`` rows of logits.

    Example:
        >>> teacher_forced_tokens(model, prompt, 128).size      # doctest: +SKIP
        159
    """
    prompt = check_args(prompt, max(steps, 1))
    cont = list(stream(model, prompt, steps - 1, loop="mlx_lm")) if steps > 1 else []
    return mx.concatenate([prompt, mx.array(cont, dtype=prompt.dtype)])


@dataclass(frozen=True)
class Distance:
    """One logits table against the float32 reference (and against mlx-lm)."""

    rel_max_diff: float         # max |x - f32| / max |f32|
    argmax_agreement: float     # with float32's argmax
    agreement_with_mlx_lm: float  # with mlx-lm bf16's argmax (teacher-forced)


@dataclass(frozen=True)
class Yardstick:
    """Distances to float32 of mlx-lm (``reference``) and of each candidate.

    Example:
        >>> d = Distance(0.03, 0.97, 1.0)
        >>> Yardstick(d, {"fast": Distance(0.031, 0.965, 0.99)}, 128).ok
        True
    """

    reference: Distance
    candidates: dict
    n_rows: int
    max_dist_ratio: float = MAX_DIST_RATIO
    max_agreement_drop: float = MAX_AGREEMENT_DROP
    min_conditioned: float = MIN_CONDITIONED

    def passes(self, name: str) -> bool:
        """Whether candidate ``name`` meets the bar relative to mlx-lm."""
        c, r = self.candidates[name], self.reference
        return (c.rel_max_diff <= self.max_dist_ratio * r.rel_max_diff
                and c.argmax_agreement >= r.argmax_agreement - self.max_agreement_drop
                - 1e-9)

    @property
    def ok(self) -> bool:
        return all(self.passes(n) for n in self.candidates)

    @property
    def conditioned(self) -> bool:
        return self.reference.argmax_agreement >= self.min_conditioned

    def to_dict(self) -> dict:
        return {"n_rows": self.n_rows, "mlx_lm": asdict(self.reference),
                **{n: {**asdict(d), "passes": self.passes(n)}
                   for n, d in self.candidates.items()},
                "bar": {"max_dist_ratio": self.max_dist_ratio,
                        "max_agreement_drop": self.max_agreement_drop,
                        "min_conditioned": self.min_conditioned},
                "ok": self.ok, "conditioned": self.conditioned}

    def __str__(self) -> str:
        def line(name, d, verdict=""):
            return (f"{name:>10}: max|diff|/max|logit| vs f32 {d.rel_max_diff:.4f}, "
                    f"argmax vs f32 {d.argmax_agreement:.3f}, vs mlx_lm "
                    f"{d.agreement_with_mlx_lm:.3f}{verdict}")
        rows = [line("mlx_lm", self.reference,
                     "" if self.conditioned else "  (NOT conditioned: < "
                     f"{self.min_conditioned:.2f} argmax vs f32)")]
        rows += [line(n, d, "  ok" if self.passes(n) else "  FAIL")
                 for n, d in self.candidates.items()]
        return f"yardstick over {self.n_rows} teacher-forced steps\n" + "\n".join(rows)


def distance(f32, table, mlx_lm) -> Distance:
    """How far ``table`` is from the float32 table ``f32`` (and from mlx-lm's).

    Example:
        >>> t = mx.array([[1.0, 2.0], [3.0, 0.0]])
        >>> distance(t, t, t).argmax_agreement
        1.0
    """
    c = compare_logits(f32, table)
    return Distance(c.rel_max_diff, c.argmax_agreement,
                    compare_logits(mlx_lm, table).argmax_agreement)


def judge(f32, mlx_lm, tables: dict) -> Yardstick:
    """The yardstick from logits tables already computed (same tokens, rows).

    Example:
        >>> t = mx.array([[1.0, 2.0], [3.0, 0.0]])
        >>> judge(t, t + 0.01, {"same": t + 0.01}).ok
        True
    """
    return Yardstick(distance(f32, mlx_lm, mlx_lm),
                     {n: distance(f32, t, mlx_lm) for n, t in tables.items()},
                     int(f32.shape[0]))


def logits_tables(model, candidates: dict, prompt, steps: int = 128) -> dict:
    """The teacher-forced logits tables the yardstick compares: "float32",
    "mlx_lm" and one per candidate, each ``steps`` rows over the same tokens
    (``prompt`` plus ``steps - 1`` greedy tokens of ``model``).

    Example:
        >>> t = logits_tables(lm.model, {"fast": fast}, lm.prompt(32))  # doctest: +SKIP
        >>> judge(t.pop("float32"), t.pop("mlx_lm"), t).ok              # doctest: +SKIP
        True
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    tokens = teacher_forced_tokens(model, prompt, steps)
    n_prompt = tokens.size - steps + 1
    tables = {"mlx_lm": teacher_forced_logits(model, tokens, n_prompt)}
    tables |= {n: teacher_forced_logits(m, tokens, n_prompt) for n, m in candidates.items()}
    return {"float32": float32_logits(model, tokens, n_prompt), **tables}


def yardstick(model, candidates: dict, prompt, steps: int = 128) -> Yardstick:
    """Hold each candidate model to mlx-lm's own distance from float32.

    ``model`` is the mlx-lm model (its bf16 run is the reference);
    ``candidates`` maps names to models with the same call convention (e.g.
    ``optimize_model(model)``). Tokens: ``prompt`` plus ``steps - 1`` greedy
    tokens of ``model``; every table has ``steps`` rows.

    Example:
        >>> y = yardstick(lm.model, {"fast": fast}, lm.prompt(32))  # doctest: +SKIP
        >>> print(y)                                                # doctest: +SKIP
    """
    tables = logits_tables(model, candidates, prompt, steps)
    return judge(tables.pop("float32"), tables.pop("mlx_lm"), tables)


def spread(f32, table) -> dict:
    """Where a table's distance to float32 comes from, beyond its one maximum:
    each row's max |diff| / max |f32| as quantiles over the rows, the mean
    |diff| / max |f32|, and the row and column of the largest difference.

    Example:
        >>> s = spread(mx.zeros((4, 3)) + 1, mx.ones((4, 3)) + mx.eye(4, 3))
        >>> s["row_p50"], s["argmax_row"], s["argmax_col"]
        (1.0, 0, 0)
    """
    diff = mx.abs(table.astype(mx.float32) - f32)
    scale = max(mx.abs(f32).max().item(), 1e-30)
    rows = mx.sort(diff.max(axis=1)) / scale
    q = lambda p: rows[min(int(p * rows.size), rows.size - 1)].item()
    at = divmod(int(mx.argmax(diff).item()), diff.shape[1])
    return {"row_p50": q(0.5), "row_p90": q(0.9), "max": rows[-1].item(),
            "mean": (diff.mean() / scale).item(), "argmax_row": at[0], "argmax_col": at[1],
            "f32_at_argmax": f32[at].item()}
