"""A finished profile: events, steps, lock holds, provenance; saved as gzipped JSON.

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

from mlxprof.events import Event, LockHold, MlxprofError, Step

FORMAT = "mlxprof-recording"
FORMAT_VERSION = 1


class Recording:
    """What a profile left behind. Times are perf_counter ns of the recording host.

    Attributes: events (list[Event]), steps (list[Step]), holds (list[LockHold]),
    threads ({thread id: name}), start_ns, end_ns, options, meta, provenance,
    format_version.

    Example:
        >>> rec = prof.recording                # doctest: +SKIP
        >>> print(rec.summary())                # doctest: +SKIP
    """

    def __init__(self, *, events, steps, holds=(), threads=None, start_ns=0,
                 end_ns=0, options=None, meta=None, provenance=None,
                 format_version=FORMAT_VERSION, casts=()):
        self.events: list[Event] = list(events)
        self.steps: list[Step] = list(steps)
        self.holds: list[LockHold] = list(holds)
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

    def __repr__(self) -> str:
        return (f"<mlxprof.Recording {len(self.steps)} steps, {len(self.events)} "
                f"events, {(self.end_ns - self.start_ns) / 1e6:.1f} ms>")

    # -- views -----------------------------------------------------------------
    def per_token(self, thread: int | None = None):
        """pandas DataFrame, one row per step; `thread` limits it to one thread id."""
        from mlxprof import report
        return report.per_token(self, thread=thread)

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
            "casts": [[*c[:5], None if c[5] is None else list(c[5])] for c in self.casts],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Recording":
        """Inverse of to_dict; checks the format and its version."""
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise MlxprofError("not an mlxprof recording (no 'format': "
                               f"'{FORMAT}' field)")
        version = d.get("format_version")
        if version != FORMAT_VERSION:
            raise MlxprofError(f"unknown mlxprof recording format_version {version!r}; "
                               f"this mlxprof reads version {FORMAT_VERSION}")
        try:
            return cls._from_v1(d)
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MlxprofError(f"corrupt mlxprof recording: {exc!r}") from exc

    @classmethod
    def _from_v1(cls, d: dict) -> "Recording":
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
            casts=[(*c[:5], None if c[5] is None else tuple(c[5]))
                   for c in d.get("casts", ())])

    def save(self, path) -> str:
        """Write gzipped JSON to `path`; returns the path.

        Example:
            >>> prof.save("out/run.mlxprof.json.gz")   # doctest: +SKIP
        """
        with _open_for_write(path, "wb", "recording") as raw:
            with gzip.GzipFile(fileobj=raw, mode="wb") as f:
                f.write(json.dumps(self.to_dict()).encode())
        return str(path)


def load(path) -> Recording:
    """Read a recording written by `Profiler.save` / `Recording.save`.

    Example:
        >>> rec = mlxprof.load("run.mlxprof.json.gz")   # doctest: +SKIP
        >>> rec.provenance["device"]                     # doctest: +SKIP
    """
    try:
        with gzip.open(path, "rt") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MlxprofError(f"{path} is not an mlxprof recording (gzipped JSON "
                           f"expected): {exc}") from exc
    return Recording.from_dict(data)


def _open_for_write(path, mode: str, what: str):
    path = Path(os.fspath(path))
    try:
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, mode)
    except OSError as exc:
        raise MlxprofError(f"cannot write the {what} to {path}: {exc}") from exc
