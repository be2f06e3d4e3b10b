"""A finished profile: events, steps, lock holds, provenance; saved as JSON.

`save` writes what the file name says: gzipped JSON for a name ending in `.gz`
(`run.mlxprof.json.gz`), plain JSON otherwise (`run.json`). `load` reads both,
whatever the name (it looks at the first bytes).

A recording taken on a GPU box or a Mac can be loaded in a notebook anywhere
and gives the same per-token table, summary, trace and figures.

Example:
    >>> prof.save("run.mlxprof.json.gz")            # doctest: +SKIP
    >>> rec = mlxprof.load("run.mlxprof.json.gz")   # doctest: +SKIP
    >>> rec.per_token().equals(prof.per_token())    # doctest: +SKIP
    True
"""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

from mlxprof.events import Collective, Event, LockHold, MlxprofError, Step

FORMAT = "mlxprof-recording"
FORMAT_VERSION = 2   # 2: each step stores the thread that marked it
READABLE_VERSIONS = (1, 2)


class Recording:
    """What a profile left behind. Times are perf_counter ns of the recording host.

    Attributes: events (list[Event]), steps (list[Step]), holds (list[LockHold]),
    collectives (list[Collective]), threads ({thread id: name}), start_ns, end_ns,
    options, meta, provenance (with "distributed": rank, size, backend or None),
    clock ({"perf_ns", "wall_ns"}: the start in perf_counter and time.time_ns, or
    None in recordings made before mlxprof had it), format_version.

    Example:
        >>> rec = prof.recording                # doctest: +SKIP
        >>> print(rec.summary())                # doctest: +SKIP
    """

    def __init__(self, *, events, steps, holds=(), threads=None, start_ns=0,
                 end_ns=0, options=None, meta=None, provenance=None,
                 format_version=FORMAT_VERSION, collectives=(), clock=None, casts=()):
        self.events: list[Event] = list(events)
        self.steps: list[Step] = list(steps)
        self.holds: list[LockHold] = list(holds)
        self.collectives: list[Collective] = list(collectives)
        self.clock = dict(clock) if clock else None
        self.threads: dict[int, str] = dict(threads or {})
        self.start_ns, self.end_ns = int(start_ns), int(end_ns)
        self.options = dict(options or {})
        self.meta = dict(meta or {})
        if provenance is None:
            from mlxprof.provenance import collect
            provenance = collect()
        self.provenance = provenance
        self.format_version = format_version
        # (step, thread id, op, from dtype, to dtype, site): ops that widened a
        # half-precision operand (count_ops=True; see mlxprof.graph.widening)
        self.casts: list[tuple] = [tuple(c) for c in casts]

    @property
    def distributed(self) -> dict | None:
        """{"rank", "size", "backend"} when recorded in an mx.distributed job, else None."""
        return self.provenance.get("distributed")

    def __repr__(self) -> str:
        return (f"<mlxprof.Recording {len(self.steps)} steps, {len(self.events)} "
                f"events, {(self.end_ns - self.start_ns) / 1e6:.1f} ms>")

    # -- views -----------------------------------------------------------------
    def per_token(self, thread: int | None = None):
        """pandas DataFrame, one row per step, splitting the stepping thread's time
        (other threads in other_threads_*); `thread` splits it for that thread id."""
        from mlxprof import report
        return report.per_token(self, thread=thread)

    def per_thread(self):
        """pandas DataFrame, one row per thread: steps marked, calls, time in them."""
        from mlxprof import report
        return report.per_thread(self)

    def summary(self) -> str:
        """Printable table like torch's key_averages()."""
        from mlxprof import report
        return report.summary(self)

    def events_frame(self):
        """pandas DataFrame, one row per hooked call."""
        from mlxprof import report
        return report.events_frame(self)

    def casts_frame(self):
        """pandas DataFrame of the ops that widened half-precision values, per site.

        Example:
            >>> rec.casts_frame()[["site", "op", "cast", "per_token"]]  # doctest: +SKIP
        """
        from mlxprof import report
        return report.casts_frame(self)

    def lock_stats(self, by_step: bool = False):
        """pandas DataFrame of eval-lock acquisitions, waits and holds per thread."""
        from mlxprof import report
        return report.lock_table(self.holds, self.threads, by_step=by_step)

    def figure(self, kind: str = "tokens"):
        """plotly Figure: 'tokens' or 'timeline' (plotly is imported here)."""
        from mlxprof import plots
        return plots.figure(self, kind)

    def export_chrome_trace(self, path) -> str:
        """Write Chrome/Perfetto JSON ({"traceEvents": [...]}) to `path`."""
        from mlxprof import report
        trace = report.chrome_trace(self)
        with _open_for_write(path, "wt", "trace") as f:
            json.dump(trace, f)
        return str(path)

    # -- persistence ---------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict (columnar events, call sites interned)."""
        sites: dict = {}
        site_ix = [None if e.site is None else sites.setdefault(tuple(e.site), len(sites))
                   for e in self.events]
        cols = {f: [getattr(e, f) for e in self.events]
                for f in Event._fields if f != "site"}
        cols["site"] = site_ix
        return {
            "format": FORMAT, "format_version": FORMAT_VERSION,
            "provenance": self.provenance, "meta": self.meta, "options": self.options,
            "start_ns": self.start_ns, "end_ns": self.end_ns,
            "threads": {str(k): v for k, v in self.threads.items()},
            "sites": [list(s) for s in sites],
            "events": cols,
            "steps": [list(s) for s in self.steps],
            "holds": [list(h) for h in self.holds],
            "collectives": [list(c) for c in self.collectives],
            "clock": self.clock,
            "casts": [[*c[:5], None if c[5] is None else list(c[5])] for c in self.casts],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Recording":
        """Inverse of to_dict; checks the format and its version."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise MlxprofError("not an mlxprof recording (no 'format': "
                               f"'{FORMAT}' field)")
        version = d.get("format_version")
        if version not in READABLE_VERSIONS:
            raise MlxprofError(f"unknown mlxprof recording format_version {version!r}; "
                               f"this mlxprof reads versions "
                               f"{', '.join(map(str, READABLE_VERSIONS))}")
        try:
            return cls._read(d)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MlxprofError(f"corrupt mlxprof recording: {exc!r}") from exc

    @classmethod
    def _read(cls, d: dict) -> "Recording":
        """Versions 1 and 2 differ only in the steps (v1: no thread id)."""
        sites = [tuple(s) for s in d["sites"]]
        cols = d["events"]
        site_ix = cols["site"]
        events = [Event(**{f: (cols[f][i] if f != "site" else
                               None if site_ix[i] is None else sites[site_ix[i]])
                           for f in Event._fields}) for i in range(len(cols["kind"]))]
        return cls(
            events=events, steps=[Step(*s) for s in d["steps"]],
            holds=[LockHold(*h[:7], bool(h[7])) for h in d["holds"]],
            threads={int(k): v for k, v in d["threads"].items()},
            start_ns=d["start_ns"], end_ns=d["end_ns"], options=d["options"],
            meta=d["meta"], provenance=d["provenance"], format_version=d["format_version"],
            # optional keys: recordings from before collectives, clock anchors, casts
            collectives=[Collective(*c) for c in d.get("collectives", [])],
            clock=d.get("clock"),
            casts=[(*c[:5], None if c[5] is None else tuple(c[5]))
                   for c in d.get("casts", ())])

    def save(self, path) -> str:
        """Write the recording to `path`: gzipped if it ends in `.gz`, else plain JSON.

        Returns the path.

        In a distributed run (group size > 1, or launched with the size unknown)
        each rank writes its own file:
        `{rank}` in `path` is replaced by the rank, or `.rank<r>` is put
        before the suffix when `path` has no `{rank}`.

        Example:
            >>> prof.save("out/run.mlxprof.json.gz")   # doctest: +SKIP
            >>> prof.save("out/run.json")              # plain, readable JSON   # doctest: +SKIP
        """
        path = rank_path(path, self.distributed)
        data = json.dumps(self.to_dict()).encode()
        with _open_for_write(path, "wb", "recording") as raw:
            if is_gzip_name(path):
                with gzip.GzipFile(fileobj=raw, mode="wb") as f:
                    f.write(data)
            else:
                raw.write(data)
        return str(path)


GZIP_MAGIC = b"\x1f\x8b"


def is_gzip_name(path) -> bool:
    """Whether `save` gzips a file of this name (it ends in `.gz`).

    Example:
        >>> is_gzip_name("run.mlxprof.json.gz"), is_gzip_name("run.json")
        (True, False)
    """
    return os.fspath(path).lower().endswith(".gz")


def _read_json(path):
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    opener = gzip.open if gzipped else open
    with opener(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def rank_path(path, dist: dict | None) -> str:
    """`path` with the rank of `dist` in it when the group has more than one rank.

    Example:
        >>> rank_path("out/run.mlxprof.json.gz", {"rank": 1, "size": 2})
        'out/run.rank1.mlxprof.json.gz'
        >>> rank_path("qwen3.5.mlxprof.json.gz", {"rank": 0, "size": 2})
        'qwen3.5.rank0.mlxprof.json.gz'
        >>> rank_path("r{rank}.json.gz", {"rank": 0, "size": 2})
        'r0.json.gz'
    """
    path = os.fspath(path)
    if "{rank}" in path:
        return path.replace("{rank}", str(dist["rank"] if dist else 0))
    if not dist or dist.get("size") == 1:  # size None: launched, size not known
        return path
    stem, suffix = split_name(path)
    return str(Path(path).with_name(f"{stem}.rank{dist['rank']}{suffix}"))


SUFFIXES = (".mlxprof.json.gz", ".json.gz", ".gz", ".json")  # longest first


def split_name(path) -> tuple[str, str]:
    """(stem, suffix) of a recording's file name; the suffix is one of SUFFIXES or ''.

    Example:
        >>> split_name("out/qwen3.5.mlxprof.json.gz"), split_name("run.bin")
        (('qwen3.5', '.mlxprof.json.gz'), ('run.bin', ''))
    """
    name = os.path.basename(os.fspath(path))
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[:-len(suffix)], suffix
    return name, ""


def load(path) -> Recording:
    """Read a recording written by `Profiler.save` / `Recording.save`.

    Gzipped or plain JSON, whatever the file name.

    Example:
        >>> rec = mlxprof.load("run.mlxprof.json.gz")   # doctest: +SKIP
        >>> rec.provenance["device"]                     # doctest: +SKIP
    """
    try:
        data = _read_json(path)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MlxprofError(f"{path} is not an mlxprof recording (JSON or gzipped "
                           f"JSON expected): {exc}") from exc
    return Recording.from_dict(data)


def _open_for_write(path, mode: str, what: str):
    path = Path(os.fspath(path))
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode)
    except OSError as exc:
        raise MlxprofError(f"cannot write the {what} to {path}: {exc}") from exc
