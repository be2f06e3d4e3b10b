"""Many ranks, one view: the recordings of one `mx.distributed` run, side by side.

Under `mlx.launch` every rank profiles itself and saves its own recording
(`prof.save("run.mlxprof.json.gz")` writes `run.rank<r>.mlxprof.json.gz`).
`load_ranks` reads the set back, checks it is one whole run, and gives per-rank
per-token tables, the rank skew per token and one Perfetto trace with a process
per rank on a shared time axis.

Clock alignment: each recording keeps the wall clock (`time.time_ns()`) read
next to its perf_counter origin. `align="wall"` (default) places every rank by
that anchor: exact up to the two reads (microseconds) on one host; across hosts
as good as their clock sync (NTP: often a millisecond or worse).
`align="collective"` instead lines up the end of each rank's first call that
waited on a collective: the ranks leave a collective together, so this needs
no shared clock (error: the transfer's own skew, microseconds on one host).

Example:
    >>> rs = mlxprof.load_ranks("out/run.rank*.mlxprof.json.gz")  # doctest: +SKIP
    >>> rs.size, rs.backend                                          # doctest: +SKIP
    (2, 'ring')
    >>> rs.skew()[["step", "skew_ms", "slowest_rank"]]              # doctest: +SKIP
    >>> rs.export_chrome_trace("run.trace.json")                     # doctest: +SKIP
"""
from __future__ import annotations

import glob
import json
import os

from mlxprof.events import MlxprofError

ALIGNMENTS = ("wall", "collective")


def load_ranks(paths, align: str = "wall") -> "RankSet":
    """The recordings of one distributed run: a glob, a directory, or a list.

    Items of a list may be paths or `Recording`s. Raises MlxprofError (one
    line, saying what to do) for a set mixing runs, a missing or doubled rank,
    or a recording made without a process group.

    Example:
        >>> rs = load_ranks("out/")                        # doctest: +SKIP
        >>> rs.per_token().groupby("rank").wall_ms.mean()  # doctest: +SKIP
    """
    from mlxprof.recording import Recording, load

    if align not in ALIGNMENTS:
        raise MlxprofError(f"align must be one of {', '.join(ALIGNMENTS)}, got {align!r}")
    items = _expand(paths)
    recs = [(str(p), p if isinstance(p, Recording) else load(p)) for p in items]
    return RankSet(_check(recs), align=align)


def _expand(paths) -> list:
    if isinstance(paths, (str, os.PathLike)):
        path = os.fspath(paths)
        if os.path.isdir(path):
            path = os.path.join(path, "*.mlxprof.json.gz")
        found = sorted(glob.glob(path))
        if not found:
            raise MlxprofError(f"no recordings match {path!r}: pass the files each rank "
                               "saved (e.g. 'out/run.rank*.mlxprof.json.gz') or their folder")
        return found
    items = list(paths)
    if not items:
        raise MlxprofError("load_ranks() got an empty list: pass one recording per rank")
    return items


def _check(recs) -> list:
    """[(name, Recording)] sorted by rank, or one clear error."""
    for name, rec in recs:
        d = rec.distributed
        if not d or d.get("size") is None or d["size"] < 2:
            raise MlxprofError(
                f"{name} was recorded without a process group of 2+ ranks: profile each rank "
                "under mlx.launch (or pass Profiler(group=...)) and load those recordings")
        if rec.clock is None:
            raise MlxprofError(f"{name} has no clock anchor (recorded by an older mlxprof): "
                               "record the ranks again to put them on one time axis")
    sizes = {rec.distributed["size"] for _, rec in recs}
    if len(sizes) > 1:
        raise MlxprofError(f"the recordings come from groups of different sizes {sorted(sizes)}:"
                           " they are from different runs; load one run at a time")
    by_rank: dict = {}
    for name, rec in recs:
        r = rec.distributed["rank"]
        if r in by_rank:
            raise MlxprofError(f"two recordings of rank {r} ({by_rank[r][0]} and {name}): "
                               "they are from different runs; load one run at a time")
        by_rank[r] = (name, rec)
    size = sizes.pop()
    missing = sorted(set(range(size)) - set(by_rank))
    if missing:
        raise MlxprofError(f"rank(s) {missing} of {size} missing (have {sorted(by_rank)}): "
                           "load the recording of every rank of the run")
    ordered = [by_rank[r] for r in range(size)]
    _check_same_run(ordered)
    return ordered


def _wall_span(rec) -> tuple[int, int]:
    w0 = rec.clock["wall_ns"] + rec.start_ns - rec.clock["perf_ns"]
    return w0, w0 + rec.end_ns - rec.start_ns


def _check_same_run(ordered) -> None:
    """Ranks of one run exchange data, so their profiles overlap in time."""
    spans = [_wall_span(rec) for _, rec in ordered]
    latest_start = max(s for s, _ in spans)
    earliest_end = min(e for _, e in spans)
    if latest_start > earliest_end:
        a = max(range(len(spans)), key=lambda i: spans[i][0])
        b = min(range(len(spans)), key=lambda i: spans[i][1])
        raise MlxprofError(
            f"{ordered[b][0]} ended before {ordered[a][0]} started: ranks of one run profile "
            "at the same time, so these are from different runs; load one run at a time")
    backends = {rec.distributed.get("backend") for _, rec in ordered}
    if len(backends) > 1:
        raise MlxprofError(f"the recordings name different backends {sorted(map(str, backends))}"
                           ": they are from different runs; load one run at a time")


class RankSet:
    """The recordings of every rank of one run (index = rank).

    Attributes: recordings (list[Recording]), names (where each came from),
    size, backend, align, offsets_ns (per rank: added to its perf_counter
    times to reach the shared axis, whose zero is the earliest rank's start).
    """

    def __init__(self, named, align: str = "wall"):
        self.names = [n for n, _ in named]
        self.recordings = [r for _, r in named]
        self.size = len(self.recordings)
        self.backend = self.recordings[0].distributed.get("backend")
        self.align = align
        offsets = _offsets(self.recordings, align)
        t0 = min(rec.start_ns + off for rec, off in zip(self.recordings, offsets))
        self.offsets_ns = [off - t0 for off in offsets]

    def __repr__(self) -> str:
        return f"<mlxprof.RankSet {self.size} ranks, backend {self.backend}, align {self.align}>"

    def per_token(self):
        """One DataFrame of every rank's per-token table, with `rank`, `start_ms`
        (the token's start on the shared axis) and `peer_wait_ms` columns.

        peer_wait_ms estimates how long the rank waited for its peers: the
        latest start, over all ranks, of the token's first call that waited on
        collectives, minus this rank's start of it (0 for the last to arrive).
        """
        import pandas as pd

        frames = []
        for rank, rec in enumerate(self.recordings):
            df = rec.per_token()
            df.insert(0, "rank", rank)
            df.insert(2, "start_ms", [(s.start_ns + self.offsets_ns[rank]) / 1e6
                                      for s in rec.steps])
            df["arrive_ms"] = _arrivals(rec, self.offsets_ns[rank], len(df))
            frames.append(df)
        out = pd.concat(frames, ignore_index=True)
        latest = out.groupby("step")["arrive_ms"].transform("max")
        out["peer_wait_ms"] = (latest - out["arrive_ms"]).clip(lower=0)
        return out.drop(columns="arrive_ms")

    def skew(self):
        """Per step: fastest and slowest wall_ms over the ranks, skew_ms (their
        difference), slowest_rank, and the largest peer_wait_ms."""
        df = self.per_token()
        g = df.groupby("step")
        out = g["wall_ms"].agg(["min", "max"]).rename(columns={"min": "fastest_ms",
                                                              "max": "slowest_ms"})
        out["skew_ms"] = out["slowest_ms"] - out["fastest_ms"]
        out["slowest_rank"] = df.loc[g["wall_ms"].idxmax(), "rank"].to_numpy()
        out["max_peer_wait_ms"] = g["peer_wait_ms"].max()
        return out.reset_index()

    def collectives(self):
        """Per rank and collective kind: calls and bytes per token, over all steps."""
        import pandas as pd

        from mlxprof.report import collective_totals

        rows = []
        for rank, rec in enumerate(self.recordings):
            n = max(len(rec.steps), 1)
            rows += [{"rank": rank, "kind": k, "calls": calls, "calls_per_token": calls / n,
                      "bytes_per_token": nbytes / n}
                     for k, (calls, nbytes) in collective_totals(rec).items()]
        return pd.DataFrame(rows, columns=["rank", "kind", "calls", "calls_per_token",
                                           "bytes_per_token"])

    def summary(self) -> str:
        """Printable: per rank the token time split and collectives, then the skew."""
        df, sk = self.per_token(), self.skew()
        cols = [c for c in ("wall_ms", "host_ms", "blocked_ms", "collective_ms",
                            "peer_wait_ms", "n_collectives") if c in df.columns]
        means = df.groupby("rank")[cols].mean()
        lines = [f"mlxprof: {self.size} ranks ({self.backend}), {len(sk)} steps, "
                 f"clocks aligned by {self.align}", "", "Mean per token, by rank:",
                 means.to_string(float_format=lambda v: f"{v:.3f}"), "",
                 f"Rank skew (slowest minus fastest wall_ms): mean {sk.skew_ms.mean():.3f} ms, "
                 f"max {sk.skew_ms.max():.3f} ms"]
        return "\n".join(lines)

    def export_chrome_trace(self, path) -> str:
        """Write one Chrome/Perfetto trace: a process per rank, one time axis."""
        from mlxprof.recording import _open_for_write

        with _open_for_write(path, "wt", "trace") as f:
            json.dump(self.chrome_trace(), f)
        return str(path)

    def chrome_trace(self) -> dict:
        """The trace dict: each rank's own trace, pid = rank + 1, shifted in time."""
        from mlxprof import report

        events = []
        for rank, rec in enumerate(self.recordings):
            shift_us = (rec.start_ns + self.offsets_ns[rank]) / 1e3
            for e in report.chrome_trace(rec)["traceEvents"]:
                e["pid"] = rank + 1
                if e.get("name") == "process_name":
                    e["args"] = {"name": f"rank {rank}"}
                if "ts" in e:
                    e["ts"] += shift_us
                events.append(e)
            events.append({"ph": "M", "name": "process_sort_index", "pid": rank + 1,
                           "tid": 0, "args": {"sort_index": rank}})
        return {"traceEvents": events, "displayTimeUnit": "ms",
                "otherData": {"ranks": self.size, "backend": self.backend, "align": self.align,
                              "provenance": [r.provenance for r in self.recordings],
                              "meta": [r.meta for r in self.recordings]}}


def _first_waits(rec) -> dict:
    """step -> the first event (by start) that waited on collectives in it."""
    from mlxprof.report import collective_waits

    first: dict = {}
    for i in sorted(collective_waits(rec), key=lambda i: rec.events[i].start_ns):
        first.setdefault(rec.events[i].step, rec.events[i])
    return first


def _arrivals(rec, offset_ns, n_steps) -> list:
    """Per step, when the rank started its first collective-waiting call (ms, shared axis)."""
    first = _first_waits(rec)
    return [(first[s].start_ns + offset_ns) / 1e6 if s in first else float("nan")
            for s in range(n_steps)]


def _offsets(recs, align) -> list[int]:
    """ns to add to each rank's perf_counter times to reach the shared axis."""
    if align == "wall":
        return [r.clock["wall_ns"] - r.clock["perf_ns"] for r in recs]
    ends = []
    for rank, rec in enumerate(recs):
        first = _first_waits(rec)
        if not first:
            raise MlxprofError(f"rank {rank} saw no collective: align='collective' needs one "
                               "in every rank's profile; use align='wall'")
        ends.append(first[min(first)].end_ns)
    return [-e for e in ends]
