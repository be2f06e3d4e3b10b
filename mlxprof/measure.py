"""Measurements that print well, and the one timing policy mlxprof uses.

The policy (docs/measuring.md explains it at length):

1. warm every variant up first (compilation, caches, lazy allocation);
2. time them in interleaved rounds: round 1 runs every variant once, then
   round 2, ... so slow drift of the machine hits all variants alike;
3. report the median over rounds with a bootstrap confidence interval of
   the median (`CONFIDENCE`, `BOOTSTRAP` resamples, seeded: reproducible);
4. a ratio between two variants is the median of their same-round ratios,
   with its interval bootstrapped over rounds;
5. flag a quantity as noisy by `NOISE_RULE`.

Example:
    >>> import mlx.core as mx
    >>> from mlxprof.measure import time_rounds
    >>> x = mx.ones((256, 256))
    >>> r = time_rounds({"matmul": lambda: mx.eval(x @ x),
    ...                  "add": lambda: mx.eval(x + x)}, rounds=5)
    >>> r["matmul"]                                      # doctest: +SKIP
    matmul s: <median> (95% CI <low>-<high>, IQR <iqr>, n=5)
    >>> r.ratio("matmul", "add").median > 0
    True
"""
from __future__ import annotations

import html
import math
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Iterable, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = ["Measurement", "Rounds", "TokenTimes", "Compare", "median", "iqr",
           "paired_ratio", "ratio", "time_rounds", "time_tokens",
           "compare_measurements", "format_table", "html_table", "NOISE_RULE",
           "CONFIDENCE", "BOOTSTRAP"]

CONFIDENCE = 0.95       # of the interval of the median
BOOTSTRAP = 2000        # resamples behind each interval
SEED = 0                # of the resampling: the same values give the same interval
MIN_N = 3               # fewer values than this cannot show their spread
NOISY_IQR = 0.10        # IQR / |median| above this: noisy
NOISY_CI = 0.05         # CI half-width / |median| above this: noisy
NOISE_RULE = (f"n < {MIN_N}, or IQR > {NOISY_IQR:.0%} of the median, or the "
              f"{CONFIDENCE:.0%} CI half-width > {NOISY_CI:.0%} of the median")


# --------------------------------------------------------------------------
# plain statistics


def _finite(xs) -> np.ndarray:
    a = np.array([np.nan if x is None else x for x in xs], dtype=float)
    return a[np.isfinite(a)]


def median(xs: Sequence[float]) -> float:
    """Median of the finite values (linear interpolation, like numpy); nan if none.

    Example:
        >>> median([3.0, 1.0, 2.0, 10.0])
        2.5
    """
    a = _finite(xs)
    return float(np.median(a)) if a.size else float("nan")


def iqr(xs: Sequence[float]) -> float:
    """Interquartile range q75 - q25 of the finite values (linear interpolation).

    Example:
        >>> iqr([1.0, 2.0, 3.0, 4.0, 5.0])
        2.0
    """
    a = _finite(xs)
    return float(np.subtract(*np.percentile(a, [75, 25]))) if a.size else float("nan")


def _bootstrap_median_ci(values: np.ndarray, confidence: float, seed: int,
                         resamples: int = BOOTSTRAP) -> tuple[float, float]:
    """Percentile bootstrap interval of the median, widened to hold the median."""
    n = values.size
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, n))
    meds = np.median(values[idx], axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(meds, [alpha, 1 - alpha])
    mid = float(np.median(values))
    return min(float(lo), mid), max(float(hi), mid)


def _is_number(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


# --------------------------------------------------------------------------
# formatting


def _decimals(x: float) -> int:
    """At least three significant digits and one decimal: 120.5, 2.71, 0.0123."""
    if not math.isfinite(x) or x == 0:
        return 1
    return max(1, 2 - math.floor(math.log10(abs(x))))


def _num(x: Optional[float], decimals: int) -> str:
    if x is None or not math.isfinite(x):
        return "?"
    return f"{x:.{decimals}f}"


def _span(lo: float, hi: float, decimals: int) -> str:
    sep = "-" if lo >= 0 and hi >= 0 else " to "
    return f"{_num(lo, decimals)}{sep}{_num(hi, decimals)}"


def format_table(header: Sequence[str], body: Sequence[Sequence[str]],
                 left: int = 1) -> str:
    """A plain-text table: the first `left` columns left-aligned, the rest right.

    Example:
        >>> print(format_table(["name", "value"], [["a", "1.0"], ["bb", "22.5"]]))
        name  value
        ----  -----
        a       1.0
        bb     22.5
    """
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in body])


def html_table(header: Sequence[str], body: Sequence[Sequence[str]],
               caption: str = "", notes: Sequence[str] = ()) -> str:
    """The same table as HTML (for Jupyter's `_repr_html_`), text escaped.

    Example:
        >>> html_table(["a"], [["<1>"]]).count("&lt;1&gt;")
        1
    """
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>"
                   for r in body)
    cap = (f"<caption style='text-align:left'>{esc(caption).replace(chr(10), '<br>')}"
           "</caption>" if caption else "")
    foot = ("<ul>" + "".join(f"<li>{esc(n)}</li>" for n in notes) + "</ul>"
            if notes else "")
    return (f"<div class='mlxprof-table'><table>{cap}<thead><tr>{head}</tr></thead>"
            f"<tbody>{rows}</tbody></table>{foot}</div>")


# --------------------------------------------------------------------------
# the value object


@dataclass(frozen=True)
class Measurement:
    """A measured quantity: its raw values and what they say.

    `values` are the raw numbers (None and nan are dropped); `rounds` (same
    length, optional) says which interleaved round each came from, so two
    Measurements of one run can be divided round by round (`ratio`).
    `median`, `iqr`, `ci` (the CONFIDENCE bootstrap interval of the median),
    `noisy` and `warning` follow from them (`NOISE_RULE`).

    Example:
        >>> m = Measurement([118.0, 121.0, 120.5, 119.0, 122.0],
        ...                 label="fast decode", unit="tok/s")
        >>> m.median, m.iqr, m.noisy
        (120.5, 2.0, False)
        >>> m
        fast decode tok/s: 120.5 (95% CI 118.0-122.0, IQR 2.0, n=5)
    """

    values: tuple
    label: str = ""
    unit: str = ""
    rounds: Optional[tuple] = None
    confidence: float = CONFIDENCE
    seed: int = SEED

    def __post_init__(self):
        bad = [v for v in self.values if v is not None and not _is_number(v)]
        if bad:
            raise TypeError(f"Measurement {self.label!r}: values must be numbers, got "
                            f"{type(bad[0]).__name__} (for results of time_rounds that "
                            "are dicts or objects, pick one: measurement(name, key))")
        vals = [np.nan if v is None else float(v) for v in self.values]
        keep = [i for i, v in enumerate(vals) if math.isfinite(v)]
        object.__setattr__(self, "values", tuple(vals[i] for i in keep))
        if self.rounds is not None:
            rounds = tuple(self.rounds)
            if len(rounds) != len(vals):
                raise ValueError(f"Measurement {self.label!r}: {len(vals)} values but "
                                 f"{len(rounds)} round labels; give one label per value")
            object.__setattr__(self, "rounds", tuple(rounds[i] for i in keep))
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be between 0 and 1, got {self.confidence}")

    @property
    def n(self) -> int:
        return len(self.values)

    @cached_property
    def median(self) -> float:
        return median(self.values)

    @cached_property
    def iqr(self) -> float:
        return iqr(self.values)

    @cached_property
    def ci(self) -> tuple[float, float]:
        """(low, high): the bootstrap interval of the median; nan below 2 values."""
        return _bootstrap_median_ci(np.array(self.values), self.confidence, self.seed)

    @property
    def title(self) -> str:
        return " ".join(p for p in (self.label, "" if self.unit == "x" else self.unit) if p)

    @cached_property
    def warning(self) -> str:
        """Why the value is noisy (NOISE_RULE), or "" when it is not."""
        if self.n < MIN_N:
            return f"only {self.n} value(s): too few to judge the spread (need >= {MIN_N})"
        scale = abs(self.median)
        rel_iqr = self.iqr / scale if scale else math.inf
        rel_ci = (self.ci[1] - self.ci[0]) / 2 / scale if scale else math.inf
        reasons = []
        if rel_iqr > NOISY_IQR:
            reasons.append(f"IQR {rel_iqr:.0%}")
        if rel_ci > NOISY_CI:
            reasons.append(f"{self.confidence:.0%} CI ±{rel_ci:.0%}")
        return ", ".join(reasons) + " of the median" if reasons else ""

    @property
    def noisy(self) -> bool:
        return bool(self.warning)

    def text(self, decimals: Optional[int] = None) -> str:
        """The value and its interval, e.g. '120.5 [118.0-122.0]' ('*' if noisy)."""
        d = _decimals(self.median) if decimals is None else decimals
        x = "x" if self.unit == "x" else ""
        core = _num(self.median, d) + x
        if self.n >= 2:
            core += f" [{_span(*self.ci, d)}]"
        return core + ("*" if self.noisy else "")

    def _summary(self) -> str:
        d = _decimals(self.median)
        x = "x" if self.unit == "x" else ""
        if self.n == 0:
            return "no values"
        ci = (f"{self.confidence:.0%} CI {_span(*self.ci, d)}{x}, "
              if self.n >= 2 else "")
        return f"{_num(self.median, d)}{x} ({ci}IQR {_num(self.iqr, d)}, n={self.n})"

    def __repr__(self) -> str:
        flag = f" [noisy: {self.warning}]" if self.noisy else ""
        return f"{self.title or 'value'}: {self._summary()}{flag}"

    def _repr_html_(self) -> str:
        esc = html.escape
        flag = (f" <span style='color:#b45309'>&#9888; noisy: {esc(self.warning)}</span>"
                if self.noisy else "")
        return (f"<span class='mlxprof-measurement'><b>{esc(self.title or 'value')}</b>: "
                f"{esc(self._summary())}{flag}</span>")

    def to_dict(self) -> dict:
        """JSON-ready: the raw values and rounds, and the statistics derived from them."""
        return {"label": self.label, "unit": self.unit, "n": self.n,
                "median": self.median, "iqr": self.iqr, "ci": list(self.ci),
                "confidence": self.confidence, "seed": self.seed, "noisy": self.noisy,
                "warning": self.warning, "values": list(self.values),
                "rounds": list(self.rounds) if self.rounds is not None else None}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Measurement":
        """Rebuild from `to_dict()` (statistics are recomputed from the values)."""
        return cls(tuple(d["values"]), label=d.get("label", ""), unit=d.get("unit", ""),
                   rounds=tuple(d["rounds"]) if d.get("rounds") is not None else None,
                   confidence=d.get("confidence", CONFIDENCE), seed=d.get("seed", SEED))


# --------------------------------------------------------------------------
# ratios


def _by_round(xs) -> dict:
    return dict(xs) if isinstance(xs, Mapping) else dict(enumerate(xs))


def paired_ratio(a_rounds: Union[Sequence[float], Mapping],
                 b_rounds: Union[Sequence[float], Mapping], label: str = "") -> Measurement:
    """a / b as the median of same-round ratios, its interval bootstrapped over rounds.

    `a_rounds` and `b_rounds` are per-round values: sequences (index = round)
    or mappings round -> value. Rounds missing in either, non-finite, or
    with b == 0 are left out. Pairing cancels drift between rounds.

    Example:
        >>> paired_ratio([11.0, 60.0, 44.0], [10.0, 20.0, 40.0]).median   # 1.1, 3.0, 1.1
        1.1
    """
    if not isinstance(a_rounds, Mapping) and not isinstance(b_rounds, Mapping) \
            and len(a_rounds) != len(b_rounds):
        raise ValueError(f"paired_ratio: {len(a_rounds)} rounds against "
                         f"{len(b_rounds)}; give one value per round to both")
    a, b = _by_round(a_rounds), _by_round(b_rounds)
    keys = [k for k in a if k in b]
    pairs = [(k, _div(a[k], b[k])) for k in keys]
    return Measurement(tuple(v for _, v in pairs), label=label, unit="x",
                       rounds=tuple(k for k, _ in pairs))


def _div(x, y) -> float:
    if x is None or y is None or not y or not math.isfinite(x) or not math.isfinite(y):
        return float("nan")
    return x / y


def ratio(a: Measurement, b: Measurement, label: str = "") -> Measurement:
    """a / b round by round (both need `rounds`: measure them in one time_rounds).

    Example:
        >>> a = Measurement([2.0, 4.0, 6.0], rounds=(0, 1, 2))
        >>> b = Measurement([1.0, 2.0, 2.0], rounds=(0, 1, 2))
        >>> ratio(a, b).values
        (2.0, 2.0, 3.0)
    """
    if a.rounds is None or b.rounds is None:
        raise ValueError("ratio needs round labels on both measurements (interleaved "
                         "rounds from time_rounds); for unpaired values divide medians")
    for m in (a, b):
        if len(set(m.rounds)) != len(m.rounds):
            raise ValueError(f"ratio: {m.label or 'a measurement'} has a round label "
                             "twice; pairing needs one value per round")
    return paired_ratio(dict(zip(a.rounds, a.values)), dict(zip(b.rounds, b.values)),
                        label=label or f"{a.label} / {b.label}")


# --------------------------------------------------------------------------
# timing


@dataclass
class Rounds:
    """What `time_rounds` ran: `results[name][r]` is what `name` gave in round r
    (its seconds when the callable returned None); `order` lists (round, name)
    in call order.

    Example:
        >>> r = time_rounds({"a": lambda: 1.0, "b": lambda: 2.0}, rounds=3, warmup=0)
        >>> r.ratio("b", "a").median, r.order[:2]
        (2.0, [(0, 'a'), (0, 'b')])
    """

    results: dict
    order: list
    timed: set = field(default_factory=set)   # names whose values are seconds

    def measurement(self, name: str, key: Optional[str] = None, *, label: str = "",
                    unit: Optional[str] = None) -> Measurement:
        """`name`'s values (or each result's `key`) as a Measurement with rounds."""
        if name not in self.results:
            raise KeyError(f"no variant {name!r}; measured: {', '.join(self.results)}")
        vals = [_pick(v, key) for v in self.results[name]]
        if unit is None:
            unit = "s" if name in self.timed and key is None else ""
        return Measurement(tuple(vals), label=label or " ".join(filter(None, [name, key])),
                           unit=unit, rounds=tuple(range(len(vals))))

    __getitem__ = measurement

    def ratio(self, name: str, baseline: str, key: Optional[str] = None) -> Measurement:
        """name / baseline, the median of same-round ratios (see `paired_ratio`)."""
        return ratio(self.measurement(name, key), self.measurement(baseline, key),
                     label=f"{name} / {baseline}" + (f" {key}" if key else ""))

    def compare(self, key: Optional[str] = None, baseline: Optional[str] = None,
                title: str = "") -> "Compare":
        """One row, a column per variant, ratios to `baseline` (see Compare)."""
        row = key or ("seconds" if self.timed else "value")
        return compare_measurements({(row, n): self.measurement(n, key)
                                     for n in self.results}, baseline=baseline, title=title)

    def __repr__(self) -> str:
        return repr(self.compare()) if self.results else "Rounds()"


def _pick(result, key):
    if key is None:
        return result
    return result[key] if isinstance(result, Mapping) else getattr(result, key)


def time_rounds(fns: Mapping[str, Callable[[], object]], rounds: int = 10,
                warmup: int = 1, *, rotate: bool = False,
                timer: Callable[[], float] = time.perf_counter,
                before_call: Optional[Callable[[Optional[int], str], None]] = None
                ) -> Rounds:
    """Warm each callable up, then run them in interleaved rounds.

    Each round calls every callable once, in the given order (`rotate=True`:
    round r starts at the r-th one, so none is always first). A callable
    that returns None is timed with `timer` (seconds); one that returns a
    value (a number, a dict, an object) has measured itself: its return is
    kept. Callables must finish their work before returning (with MLX:
    `mx.eval` the result). `before_call(round, name)` runs before each call
    (round None during warm-up), e.g. to move a progress bar.

    Example:
        >>> r = time_rounds({"sleep": lambda: time.sleep(0.001)}, rounds=3)
        >>> r["sleep"].n, r["sleep"].unit
        (3, 's')
    """
    _check_rounds(fns, rounds, warmup)
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            if before_call:
                before_call(None, name)
            fns[name]()
    results = {n: [] for n in names}
    order, timed = [], set(names)
    for r in range(rounds):
        k = r % len(names) if rotate else 0
        for name in names[k:] + names[:k]:
            if before_call:
                before_call(r, name)
            t0 = timer()
            out = fns[name]()
            elapsed = timer() - t0
            if out is not None:
                timed.discard(name)
            results[name].append(elapsed if out is None else out)
            order.append((r, name))
    return Rounds(results, order, timed)


def _check_rounds(fns, rounds, warmup) -> None:
    if not fns:
        raise ValueError("time_rounds: nothing to time (give a dict name -> callable)")
    bad = [n for n, f in fns.items() if not callable(f)]
    if bad:
        raise ValueError(f"time_rounds: not callable: {', '.join(map(str, bad))}")
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"time_rounds: rounds must be an integer >= 1, got {rounds!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"time_rounds: warmup must be an integer >= 0, got {warmup!r}")


@dataclass
class TokenTimes:
    """When a token stream started, each token arrived and the stream ended
    (timer seconds); `cpu` holds the process CPU time at the same moments
    (start, each token, end) when `time_tokens(..., cpu=True)` took it.

    Example:
        >>> t = TokenTimes(start=0.0, stamps=[1.0, 1.5, 2.0], end=2.0)
        >>> t.ttft_s, t.decode_tok_per_s
        (1.0, 2.0)
    """

    start: float
    stamps: list
    end: float
    cpu: Optional[list] = None

    @property
    def n_tokens(self) -> int:
        return len(self.stamps)

    @property
    def ttft_s(self) -> float:
        """Time to the first token (prefill and the first decode step)."""
        return self.stamps[0] - self.start if self.stamps else float("nan")

    @property
    def decode_s(self) -> float:
        """Time from the first token to the end of the stream (its last token)."""
        return self.end - self.stamps[0] if self.stamps else float("nan")

    @property
    def decode_tok_per_s(self) -> float:
        """Tokens 2..N over `decode_s`."""
        n, s = self.n_tokens, self.decode_s
        return (n - 1) / s if n > 1 and s > 0 else float("nan")

    @property
    def decode_cpu_s(self) -> float:
        """Process CPU seconds over the same window as `decode_s` (needs cpu=True)."""
        if not self.cpu or not self.stamps:
            return float("nan")
        return self.cpu[-1] - self.cpu[1]

    def gaps(self, label: str = "per-token", unit: str = "ms") -> Measurement:
        """The times between consecutive tokens ("ms" or "s") as a Measurement."""
        scale = 1e3 if unit == "ms" else 1.0
        return Measurement(tuple(np.diff(self.stamps) * scale), label=label, unit=unit)


def time_tokens(tokens: Iterable, timer: Callable[[], float] = time.perf_counter,
                cpu: bool = False) -> TokenTimes:
    """Drain a token stream, stamping each token as it arrives.

    The clock starts before the first `next()`, so a lazy generator's
    prefill counts in `ttft_s`. Work the stream queued but did not wait for
    is not drained: synchronize afterwards, outside the timing. `cpu=True`
    also notes the process CPU time (time.process_time) at each stamp.

    Example:
        >>> t = time_tokens(iter(range(5)), cpu=True)
        >>> t.n_tokens, t.decode_cpu_s >= 0
        (5, True)
    """
    if not cpu:
        start = timer()
        stamps = [timer() for _ in tokens]
        return TokenTimes(start, stamps, timer())
    both = [(timer(), time.process_time())]
    both += [(timer(), time.process_time()) for _ in tokens]
    both.append((timer(), time.process_time()))
    wall, cpus = zip(*both)
    return TokenTimes(wall[0], list(wall[1:-1]), wall[-1], list(cpus))


# --------------------------------------------------------------------------
# tables of measurements


class Compare:
    """Rows x columns of Measurements, with ratios to a baseline column.

    Like torch.utils.benchmark's Compare: each cell prints as
    'median [CI]', '*' marks a noisy cell (`NOISE_RULE`); with a baseline,
    each other column gets 'col / baseline' with the median of same-round
    ratios and its interval (cells need round labels: `time_rounds` gives
    them). Print it, or show it in Jupyter.

    Example:
        >>> cells = {("model A", "slow"): Measurement([10, 11, 10.5], rounds=(0, 1, 2)),
        ...          ("model A", "fast"): Measurement([20, 22, 21.5], rounds=(0, 1, 2))}
        >>> print(compare_measurements(cells, baseline="slow"))  # doctest: +ELLIPSIS
        row                  slow              fast        fast / slow
        -------  ----------------  ----------------  -----------------
        model A  10.5 [10.0-11.0]  21.5 [20.0-22.0]  2.00x [2.00-2.05]
        <BLANKLINE>
        no noisy cell (noisy: n < 3, ...)
    """

    def __init__(self, cells: Mapping, baseline: Optional[str] = None, title: str = ""):
        self.cells = {(str(r), str(c)): m for (r, c), m in cells.items()}
        self.rows = list(dict.fromkeys(r for r, _ in self.cells))
        self.columns = list(dict.fromkeys(c for _, c in self.cells))
        if baseline is not None and baseline not in self.columns:
            raise ValueError(f"baseline {baseline!r} is not a column; columns: "
                             f"{', '.join(self.columns)}")
        self.baseline, self.title = baseline, title

    @cached_property
    def ratios(self) -> dict:
        """(row, column) -> Measurement of column / baseline, where both exist."""
        out = {}
        for (r, c), m in self.cells.items():
            base = self.cells.get((r, self.baseline))
            if self.baseline is None or c == self.baseline or base is None:
                continue
            out[(r, c)] = ratio(m, base, label=f"{r} {c} / {self.baseline}")
        return out

    def _header(self) -> list[str]:
        extra = [f"{c} / {self.baseline}" for c in self.columns if c != self.baseline]
        return ["row"] + self.columns + (extra if self.baseline else [])

    def _body(self) -> list[list[str]]:
        body = []
        for r in self.rows:
            cells = [self.cells[(r, c)].text() if (r, c) in self.cells else ""
                     for c in self.columns]
            if self.baseline:
                cells += [self.ratios[(r, c)].text(2) if (r, c) in self.ratios else ""
                          for c in self.columns if c != self.baseline]
            body.append([r] + cells)
        return body

    def warnings(self) -> list[str]:
        """One line per noisy cell or ratio: where, and why."""
        out = [f"{r}, {c}: {m.warning}" for (r, c), m in self.cells.items() if m.noisy]
        out += [f"{r}, {c} / {self.baseline}: {m.warning}"
                for (r, c), m in self.ratios.items() if m.noisy]
        return out

    def _notes(self) -> list[str]:
        w = self.warnings()
        return [f"* noisy ({NOISE_RULE}):"] + w if w else [f"no noisy cell (noisy: {NOISE_RULE})"]

    def __repr__(self) -> str:
        head = f"{self.title}\n" if self.title else ""
        return (head + format_table(self._header(), self._body()) + "\n\n"
                + "\n".join(self._notes()))

    __str__ = __repr__

    def _repr_html_(self) -> str:
        return html_table(self._header(), self._body(), self.title, self._notes())

    def dataframe(self):
        """Long format: one line per cell and ratio (row, column, kind, statistics)."""
        import pandas as pd

        lines = [{"row": r, "column": c, "kind": kind, **_stats(m)}
                 for kind, cells in (("value", self.cells), ("ratio", self.ratios))
                 for (r, c), m in cells.items()]
        return pd.DataFrame(lines)


def _stats(m: Measurement) -> dict:
    return {"median": m.median, "ci_low": m.ci[0], "ci_high": m.ci[1], "iqr": m.iqr,
            "n": m.n, "noisy": m.noisy, "warning": m.warning}


def compare_measurements(cells: Mapping, baseline: Optional[str] = None,
                         title: str = "") -> Compare:
    """A Compare table from {(row, column): Measurement} or {row: {column: Measurement}}.

    Example:
        >>> c = compare_measurements({"A": {"x": Measurement([1, 2, 3])}})
        >>> c.rows, c.columns
        (['A'], ['x'])
    """
    flat = {}
    for k, v in cells.items():
        if isinstance(v, Mapping):
            flat.update({(k, c): m for c, m in v.items()})
        else:
            flat[k] = v
    bad = [k for k, m in flat.items() if not isinstance(m, Measurement)]
    if bad:
        raise ValueError(f"compare_measurements: not a Measurement at {bad[0]!r}; "
                         "build cells with Measurement(...) or time_rounds(...)[name]")
    return Compare(flat, baseline=baseline, title=title)
