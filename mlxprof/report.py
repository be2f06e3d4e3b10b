"""Pure functions from a Recording to tables, text and Chrome trace dicts.

Example:
    >>> from mlxprof import report
    >>> report.per_token(rec)                   # doctest: +SKIP
    >>> print(report.summary(rec))              # doctest: +SKIP
    >>> json.dump(report.chrome_trace(rec), f)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from bisect import bisect_left, bisect_right
from collections import Counter, defaultdict

from mlxprof.events import category

_FIXED = ["step", "wall_ms", "host_ms", "submit_ms", "blocked_ms", "lock_wait_ms",
          "n_eval", "n_async_eval", "n_sync"]
_OTHER = ["other_threads_ms", "other_threads_lock_wait_ms", "other_threads_calls"]


def _ms(ns) -> float:
    return ns / 1e6


# -- per-token table ---------------------------------------------------------------
# Thread model: a row describes the thread that marked the step (the "stepping
# thread"). Its wall time is split into its own host / submit / blocked / lock
# wait; a call is cut at the step's edges, so the parts never exceed the wall
# and host_ms is never negative. Calls of other threads that start inside the
# step are summed apart (other_threads_*), never subtracted from the wall.
def stepping_threads(rec) -> list[int]:
    """Per step, the thread whose time its row splits (old recordings: the busiest).

    Example:
        >>> stepping_threads(rec)[:2]   # doctest: +SKIP
        [140704, 140704]
    """
    if all(s.thread_id is not None for s in rec.steps):
        return [s.thread_id for s in rec.steps]
    counts = Counter(e.thread_id for e in rec.events)
    busiest = counts.most_common(1)[0][0] if counts else 0
    return [busiest if s.thread_id is None else s.thread_id for s in rec.steps]


def _overlap(a0, a1, b0, b1) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


class _Index:
    """Events sorted by start, per thread and overall, for window queries."""

    def __init__(self, events):
        self.all = sorted(events, key=lambda e: e.start_ns)
        self.starts = [e.start_ns for e in self.all]
        self.by_thread: dict = defaultdict(list)
        for e in self.all:
            self.by_thread[e.thread_id].append(e)
        self.thread_starts = {t: [e.start_ns for e in es] for t, es in self.by_thread.items()}

    def own(self, tid, t0, t1):
        """The thread's calls overlapping [t0, t1] (they never overlap each other)."""
        es, starts = self.by_thread.get(tid, []), self.thread_starts.get(tid, [])
        i = max(bisect_right(starts, t0) - 1, 0)
        j = bisect_right(starts, t1)
        return [e for e in es[i:j] if e.end_ns > t0 or e.start_ns >= t0]

    def others(self, tid, t0, t1):
        """Calls of other threads that start in [t0, t1)."""
        i, j = bisect_left(self.starts, t0), bisect_left(self.starts, t1)
        return [e for e in self.all[i:j] if e.thread_id != tid]


def _own_parts(r, seen, e, t0, t1) -> None:
    """Add the part of call `e` inside [t0, t1]: lock wait first, then the call."""
    wait_end = e.start_ns + e.lock_wait_ns
    r["lock_wait_ns"] += _overlap(e.start_ns, wait_end, t0, t1)
    busy = _overlap(wait_end, e.end_ns, t0, t1)
    cat = category(e.kind)
    r["submit_ns" if cat == "submit" else "blocked_ns"] += busy
    if not t0 <= e.start_ns < t1:
        return  # counted in the step where it started
    if cat == "submit":
        r["n_async_eval"] += 1
    elif cat == "eval":
        r["n_eval"] += 1
    else:
        r["n_sync"] += 1
        r["n_sync_" + e.kind] += 1
    if e.ops is not None:
        r["ops_total"] += sum(e.ops.values())
        for name, n in e.ops.items():
            r["ops_" + name] += n
            seen[name] += n


def _step_rows(rec, thread):
    index = _Index(rec.events)
    rows, ops_seen = {}, Counter()
    for s, stepper in zip(rec.steps, stepping_threads(rec)):
        tid = thread if thread is not None else stepper
        r = rows[s.index] = defaultdict(int)
        for e in index.own(tid, s.start_ns, s.end_ns):
            _own_parts(r, ops_seen, e, s.start_ns, s.end_ns)
        for e in index.others(tid, s.start_ns, s.end_ns):
            r["other_ns"] += e.end_ns - e.start_ns
            r["other_wait_ns"] += e.lock_wait_ns
            r["other_calls"] += 1
    return rows, ops_seen


def collective_waits(rec) -> set[int]:
    """Indexes into rec.events of the calls that waited on a graph with collectives.

    A collective is a lazy op: its data moves when a later call evaluates the
    graph. After collectives were built on a thread, its async_eval calls
    (which run the graph on the CPU backend) and its first blocking call (eval
    or a sync) wait for them, and for the peers that must reach the same
    collective; that blocking call ends the attribution.
    """
    marks = sorted([(c.t_ns, 0, i) for i, c in enumerate(rec.collectives)]
                   + [(e.start_ns, 1, i) for i, e in enumerate(rec.events)])
    pending, out = set(), set()
    for _, what, i in marks:
        if what == 0:
            pending.add(rec.collectives[i].thread_id)
            continue
        e = rec.events[i]
        if e.thread_id in pending:
            out.add(i)
            if category(e.kind) != "submit":
                pending.discard(e.thread_id)
    return out


def _collective_rows(rec, thread) -> tuple[dict, list[str]]:
    """step -> {n_collectives, collective_bytes, collective_ns, n_coll_<kind>}."""
    rows: dict = defaultdict(lambda: defaultdict(int))
    kinds = []
    for c in rec.collectives:
        if thread is None or c.thread_id == thread:
            r = rows[c.step]
            r["n_collectives"] += 1
            r["collective_bytes"] += c.nbytes
            r["n_coll_" + c.kind] += 1
            if c.kind not in kinds:
                kinds.append(c.kind)
    for i in collective_waits(rec):
        e = rec.events[i]
        if thread is None or e.thread_id == thread:
            rows[e.step]["collective_ns"] += e.end_ns - e.start_ns - e.lock_wait_ns
    return rows, kinds


def _collective_columns(row, r, kinds) -> None:
    row["n_collectives"] = r["n_collectives"]
    row["collective_bytes"] = r["collective_bytes"]
    row["collective_ms"] = _ms(r["collective_ns"])
    row.update({f"n_coll_{k}": r[f"n_coll_{k}"] for k in kinds})


def per_token(rec, thread: int | None = None):
    """DataFrame, one row per step, with the columns DESIGN.md lists.

    A row splits the time of the thread that marked the step: host_ms =
    wall_ms - submit_ms - blocked_ms - lock_wait_ms >= 0. Hooked calls of other
    threads that started during the step are in other_threads_ms (time inside
    them, lock waits included), other_threads_lock_wait_ms and
    other_threads_calls. `thread` splits every row for that thread instead.
    ops_* are <NA> without count_ops. When the profile saw mx.distributed
    collectives, n_collectives, collective_bytes, collective_ms (the part of
    submit_ms + blocked_ms spent in calls that ran or waited on graphs with
    collectives: compute, transfer and waiting for peers; see
    collective_waits) and n_coll_<kind> follow the n_sync_* columns.

    Example:
        >>> per_token(rec)[["step", "wall_ms", "host_ms"]]   # doctest: +SKIP
    """
    import pandas as pd

    rows, ops_seen = _step_rows(rec, thread)
    sync_kinds = sorted({k[len("n_sync_"):] for r in rows.values() for k in r
                         if k.startswith("n_sync_")})
    op_names = [name for name, _ in ops_seen.most_common()]
    counted = bool(rec.options.get("count_ops"))
    coll_rows, coll_kinds = _collective_rows(rec, thread) if rec.collectives else ({}, None)
    records = []
    for s in rec.steps:
        r = rows[s.index]
        wall = s.end_ns - s.start_ns
        row = {"step": s.index, "wall_ms": _ms(wall),
               "host_ms": _ms(wall - r["submit_ns"] - r["blocked_ns"] - r["lock_wait_ns"]),
               "submit_ms": _ms(r["submit_ns"]), "blocked_ms": _ms(r["blocked_ns"]),
               "lock_wait_ms": _ms(r["lock_wait_ns"]), "n_eval": r["n_eval"],
               "n_async_eval": r["n_async_eval"], "n_sync": r["n_sync"],
               "other_threads_ms": _ms(r["other_ns"]),
               "other_threads_lock_wait_ms": _ms(r["other_wait_ns"]),
               "other_threads_calls": r["other_calls"]}
        row.update({f"n_sync_{k}": r[f"n_sync_{k}"] for k in sync_kinds})
        if coll_kinds is not None:
            _collective_columns(row, coll_rows.get(s.index, defaultdict(int)), coll_kinds)
        row["ops_total"] = r["ops_total"] if counted else None
        row.update({f"ops_{k}": r[f"ops_{k}"] for k in op_names})
        row["active_bytes"], row["peak_bytes"] = s.active_bytes, s.peak_bytes
        records.append(row)
    coll_cols = ([] if coll_kinds is None else
                 ["n_collectives", "collective_bytes", "collective_ms"]
                 + [f"n_coll_{k}" for k in coll_kinds])
    columns = (_FIXED + [f"n_sync_{k}" for k in sync_kinds] + coll_cols + ["ops_total"]
               + [f"ops_{k}" for k in op_names] + ["active_bytes", "peak_bytes"] + _OTHER)
    df = pd.DataFrame.from_records(records, columns=columns)
    df["ops_total"] = df["ops_total"].astype("Int64")
    return df


def per_thread(rec):
    """DataFrame, one row per thread: steps it marked, its calls and time in them.

    For a multi-threaded program (a server decoding on a worker thread) this
    says which thread did what; busy_ms is time inside hooked calls, lock
    waits included.

    Example:
        >>> per_thread(rec)[["thread", "steps", "calls", "busy_ms"]]   # doctest: +SKIP
    """
    import pandas as pd

    agg: dict = defaultdict(lambda: defaultdict(int))
    for tid in stepping_threads(rec):
        agg[tid]["steps"] += 1
    for e in rec.events:
        a = agg[e.thread_id]
        a["calls"] += 1
        cat = category(e.kind)
        a["n_" + ("async_eval" if cat == "submit" else cat)] += 1
        part = "submit_ns" if cat == "submit" else "blocked_ns"
        a[part] += e.end_ns - e.start_ns - e.lock_wait_ns
        a["lock_wait_ns"] += e.lock_wait_ns
    rows = [{"thread": rec.threads.get(tid, str(tid)), "thread_id": tid,
             "steps": a["steps"], "calls": a["calls"], "n_eval": a["n_eval"],
             "n_async_eval": a["n_async_eval"], "n_sync": a["n_sync"],
             "submit_ms": _ms(a["submit_ns"]), "blocked_ms": _ms(a["blocked_ns"]),
             "lock_wait_ms": _ms(a["lock_wait_ns"]),
             "busy_ms": _ms(a["submit_ns"] + a["blocked_ns"] + a["lock_wait_ns"])}
            for tid, a in agg.items()]
    rows.sort(key=lambda r: (-r["steps"], -r["busy_ms"]))
    return pd.DataFrame(rows, columns=[
        "thread", "thread_id", "steps", "calls", "n_eval", "n_async_eval", "n_sync",
        "submit_ms", "blocked_ms", "lock_wait_ms", "busy_ms"])


def events_frame(rec):
    """DataFrame, one row per hooked call (times in ms from the profile start)."""
    import pandas as pd

    rows = [{"kind": e.kind, "category": category(e.kind),
             "start_ms": _ms(e.start_ns - rec.start_ns), "dur_ms": _ms(e.end_ns - e.start_ns),
             "lock_wait_ms": _ms(e.lock_wait_ns), "thread": rec.threads.get(e.thread_id, ""),
             "thread_id": e.thread_id, "step": e.step, "n_arrays": e.n_arrays,
             "file": e.site[0] if e.site else None, "line": e.site[1] if e.site else None,
             "function": e.site[2] if e.site else None,
             "ops_total": None if e.ops is None else sum(e.ops.values()),
             "count_ms": _ms(e.count_ns)} for e in rec.events]
    return pd.DataFrame(rows, columns=[
        "kind", "category", "start_ms", "dur_ms", "lock_wait_ms", "thread", "thread_id",
        "step", "n_arrays", "file", "line", "function", "ops_total", "count_ms"])


def lock_table(holds, threads, by_step: bool = False):
    """DataFrame of eval-lock use per thread (and per step with by_step=True).

    acquisitions counts every acquisition (recursive ones too); contended
    those that found the lock held by another thread; wait_ms and hold_ms
    sum the outermost acquisitions.
    """
    import pandas as pd

    agg: dict = defaultdict(lambda: [0, 0, 0, 0, 0])
    for h in holds:
        key = (h.thread_id, h.step) if by_step else (h.thread_id,)
        a = agg[key]
        a[0] += 1
        a[1] += bool(h.contended)
        if h.depth == 0:
            a[2] += h.acquired_ns - h.request_ns
            a[3] += h.released_ns - h.acquired_ns
        else:
            a[4] += 1
    rows = []
    for key, (n, cont, wait, hold, rec_) in sorted(agg.items()):
        row = {"thread": threads.get(key[0], str(key[0])), "thread_id": key[0]}
        if by_step:
            row["step"] = key[1]
        row.update(acquisitions=n, contended=cont, recursive=rec_,
                   wait_ms=_ms(wait), hold_ms=_ms(hold))
        rows.append(row)
    cols = (["thread", "thread_id"] + (["step"] if by_step else [])
            + ["acquisitions", "contended", "recursive", "wait_ms", "hold_ms"])
    return pd.DataFrame(rows, columns=cols)


# -- summary --------------------------------------------------------------------
def _table(header, rows) -> list[str]:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                              for i, (c, w) in enumerate(zip(r, widths)))
    line = "-" * len(fmt(header))
    return [fmt(header), line] + [fmt(r) for r in cells[1:]]


def _kind_rows(rec, n_steps):
    agg: dict = defaultdict(lambda: [0, 0])
    for e in rec.events:
        a = agg[e.kind]
        a[0] += 1
        a[1] += e.end_ns - e.start_ns - e.lock_wait_ns
    order = sorted(agg, key=lambda k: -agg[k][1])
    return [[k, category(k), agg[k][0], f"{_ms(agg[k][1]):.3f}",
             f"{agg[k][1] / agg[k][0] / 1e3:.1f}", f"{agg[k][0] / n_steps:.2f}"]
            for k in order]


def _site_rows(rec, top=8):
    agg: dict = defaultdict(lambda: [0, 0])
    for e in rec.events:
        if e.site is not None:
            a = agg[(e.site, e.kind)]
            a[0] += 1
            a[1] += e.end_ns - e.start_ns - e.lock_wait_ns
    order = sorted(agg, key=lambda k: -agg[k][1])[:top]
    return [[f"{os.path.basename(s[0])}:{s[1]} ({s[2]})", kind, agg[(s, kind)][0],
             f"{_ms(agg[(s, kind)][1]):.3f}"] for s, kind in order]


def summary(rec) -> str:
    """Readable text: calls per kind, token time split, ops, call sites, lock."""
    from mlxprof.provenance import describe

    df = per_token(rec)
    n = max(len(df), 1)
    wall = df["wall_ms"].sum()
    names = ", ".join(sorted(set(rec.threads.values()))) or "-"
    out = [f"mlxprof: {len(df)} steps, {wall:.2f} ms, {len(rec.events)} calls, "
           f"threads: {names}", f"  on {describe(rec.provenance)}"]
    if rec.meta.get("steps_rule"):
        out.append(f"  steps: {rec.meta['steps_rule']}")
    out.append("")
    out += _table(["kind", "category", "calls", "total ms", "mean us", "per token"],
                  _kind_rows(rec, n))
    out.append("(times inside the calls, lock waits excluded)")
    out += ["", "Token time split (ms):"]
    split = [[c[:-3], f"{df[c].mean():.3f}", f"{df[c].median():.3f}", f"{df[c].sum():.3f}",
              f"{100 * df[c].sum() / wall:.1f}" if wall else "-"]
             for c in ("wall_ms", "host_ms", "submit_ms", "blocked_ms", "lock_wait_ms")]
    out += _table(["part", "mean", "median", "total", "% wall"], split)
    out += _thread_lines(rec, df)
    out += _ops_lines(rec, df)
    out += _collective_lines(rec, df)
    out += _cast_lines(rec, len(df))
    sites = _site_rows(rec)
    if sites:
        out += ["", "Top call sites:"] + _table(["site", "kind", "calls", "total ms"], sites)
    if rec.holds:
        lt = lock_table(rec.holds, rec.threads)
        out += ["", "Eval lock (emulated):"] + _table(
            list(lt.columns), [[r.thread, r.thread_id, r.acquisitions, r.contended,
                                r.recursive, f"{r.wait_ms:.3f}", f"{r.hold_ms:.3f}"]
                               for r in lt.itertuples()])
    return "\n".join(out)


def _thread_lines(rec, df) -> list[str]:
    """The split above is the stepping thread's; other threads get their own lines."""
    threads = {e.thread_id for e in rec.events} | set(stepping_threads(rec))
    if len(threads) < 2:
        return []
    other = df["other_threads_ms"].sum()
    out = ["(each row splits the time of the thread that marked the step)",
           f"Other threads, during steps: {df['other_threads_calls'].sum()} calls, "
           f"{other:.3f} ms inside them (not part of the split; threads run in parallel)",
           "", "Per thread:"]
    pt = per_thread(rec)
    return out + _table(["thread", "steps", "calls", "submit ms", "blocked ms",
                         "lock wait ms"],
                        [[r.thread, r.steps, r.calls, f"{r.submit_ms:.3f}",
                          f"{r.blocked_ms:.3f}", f"{r.lock_wait_ms:.3f}"]
                         for r in pt.itertuples()])


def _ops_lines(rec, df) -> list[str]:
    if not rec.options.get("count_ops"):
        return []
    ops = [c for c in df.columns if c.startswith("ops_") and c != "ops_total"]
    top = ", ".join(f"{c[4:]} {df[c].mean():.1f}" for c in ops[:8])
    counted = [e for e in rec.events if e.ops is not None]
    cost_ns = sum(e.count_ns for e in counted)
    per = cost_ns / len(counted) / 1e3 if counted else 0.0
    return ["", f"Ops per token: mean {df['ops_total'].mean():.1f}, median "
            f"{df['ops_total'].median():.0f} (top: {top})",
            f"  counting them cost the profiler {_ms(cost_ns):.3f} ms ({per:.1f} us per "
            "counted call), included in host_ms"]


def collective_totals(rec) -> dict[str, list[int]]:
    """{kind: [calls, bytes]} of the profile's collectives, kinds in first-seen order.

    Example:
        >>> collective_totals(rec)   # doctest: +SKIP
        {'all_sum': [3, 96]}
    """
    totals: dict = {}
    for c in rec.collectives:
        t = totals.setdefault(c.kind, [0, 0])
        t[0] += 1
        t[1] += c.nbytes
    return totals


def _collective_lines(rec, df) -> list[str]:
    if not rec.collectives:
        return []
    d = rec.distributed or {}
    n = max(len(df), 1)
    totals = collective_totals(rec)
    rows = [[k, calls, f"{calls / n:.2f}", f"{nbytes / n:.0f}"]
            for k, (calls, nbytes) in sorted(totals.items(), key=lambda kv: -kv[1][0])]
    wall, coll = df["wall_ms"].sum(), df["collective_ms"].sum()
    share = f"{100 * coll / wall:.1f}" if wall else "-"
    return (["", f"Collectives (rank {d.get('rank', '?')} of {d.get('size', '?')}, "
             f"backend {d.get('backend', '?')}):"]
            + _table(["kind", "calls", "per token", "bytes per token"], rows)
            + [f"  collective_ms: mean {df['collective_ms'].mean():.3f} ms per token, "
               f"{share}% of wall (calls that ran or waited on collectives)"])


def casts_frame(rec):
    """One row per (call site, op, cast): ops that widened a half-precision value.

    Columns: site ("file:line (function)" or "?"), op, cast ("bfloat16->float32"),
    calls, per_token (calls / steps). Empty without count_ops or without leaks.
    """
    import pandas as pd

    n = max(len(rec.steps), 1)
    agg = Counter((_site_name(c[5]), c[2], f"{c[3]}->{c[4]}") for c in rec.casts)
    rows = [{"site": k[0], "op": k[1], "cast": k[2], "calls": v, "per_token": v / n}
            for k, v in agg.most_common()]
    return pd.DataFrame(rows, columns=["site", "op", "cast", "calls", "per_token"])


def _site_name(site) -> str:
    return "?" if site is None else f"{os.path.basename(site[0])}:{site[1]} ({site[2]})"


def _cast_lines(rec, n_steps, top=6) -> list[str]:
    """The dtype-leak flag of summary(): widened half-precision values, per token."""
    if not rec.options.get("count_ops") or not rec.casts:
        return []
    from mlxprof.measure import median

    per_step = Counter(c[0] for c in rec.casts)
    per_token = median([per_step.get(i, 0) for i in range(max(n_steps, 1))])
    kinds = ", ".join(sorted({f"{c[3]}->{c[4]}" for c in rec.casts}))
    frame = casts_frame(rec).head(top)
    return (["", f"Casts to a wider float: {len(rec.casts)} ops widened half-precision "
             f"values ({kinds}), median {per_token:g} per token, each an AsType plus float32 work "
             "in a half-precision model. Deliberate where code keeps state in float32; a "
             "dtype leak where an mx.array constant (float32) meets a bf16/fp16 value: use a "
             "Python scalar or the model's dtype. Where:"]
            + _table(["site", "op", "cast", "per token"],
                     [[r.site, r.op, r.cast, f"{r.per_token:.2f}"]
                      for r in frame.itertuples()]))


# -- Chrome / Perfetto trace ---------------------------------------------------------
def _lanes(rec) -> dict:
    order = []
    for tid in [e.thread_id for e in rec.events] + [h.thread_id for h in rec.holds]:
        if tid not in order:
            order.append(tid)
    return {tid: i + 1 for i, tid in enumerate(order)}


def _us(rec, ns) -> float:
    return (ns - rec.start_ns) / 1e3


def chrome_trace(rec) -> dict:
    """{"traceEvents": [...]}: X per call on a lane per thread, a step lane,
    C counters for memory and ops, M names. Times in us from the profile start."""
    lanes = _lanes(rec)
    pid = 1
    ev = [{"ph": "M", "name": "process_name", "pid": pid, "tid": 0,
           "args": {"name": "mlxprof"}},
          {"ph": "M", "name": "thread_name", "pid": pid, "tid": 0, "args": {"name": "steps"}}]
    for tid, lane in lanes.items():
        name = rec.threads.get(tid, str(tid))
        ev.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": lane,
                   "args": {"name": f"{name} ({tid})"}})
        ev.append({"ph": "M", "name": "thread_sort_index", "pid": pid, "tid": lane,
                   "args": {"sort_index": lane}})
    ev += [_call_event(rec, e, pid, lanes[e.thread_id]) for e in rec.events]
    for i in collective_waits(rec) if rec.collectives else ():
        ev[len(ev) - len(rec.events) + i]["args"]["waits_on_collectives"] = True
    ev += [_count_event(rec, e, pid, lanes[e.thread_id]) for e in rec.events if e.count_ns]
    ev += _lock_events(rec, pid, lanes)
    ev += [{"ph": "i", "s": "t", "name": c.kind, "cat": "collective", "pid": pid,
            "tid": lanes.get(c.thread_id, 0), "ts": _us(rec, c.t_ns),
            "args": {"step": c.step, "bytes": c.nbytes, "group_size": c.group_size}}
           for c in rec.collectives]
    ev += _step_events(rec, pid)
    return {"traceEvents": ev, "displayTimeUnit": "ms",
            "otherData": {"provenance": rec.provenance, "meta": rec.meta}}


def _call_event(rec, e, pid, lane) -> dict:
    args = {"step": e.step, "n_arrays": e.n_arrays}
    if e.site:
        args["site"] = f"{e.site[0]}:{e.site[1]} ({e.site[2]})"
    if e.ops is not None:
        args["ops_total"] = sum(e.ops.values())
    if e.lock_wait_ns:
        args["lock_wait_us"] = e.lock_wait_ns / 1e3
    return {"ph": "X", "name": e.kind, "cat": category(e.kind), "pid": pid, "tid": lane,
            "ts": _us(rec, e.start_ns), "dur": (e.end_ns - e.start_ns) / 1e3, "args": args}


def _count_event(rec, e, pid, lane) -> dict:
    """The profiler's own op counting, which ran just before the call."""
    return {"ph": "X", "name": "count_ops (profiler)", "cat": "profiler", "pid": pid,
            "tid": lane, "ts": _us(rec, e.start_ns - e.count_ns), "dur": e.count_ns / 1e3,
            "args": {"ops_total": sum(e.ops.values()) if e.ops else 0}}


def _lock_events(rec, pid, lanes) -> list[dict]:
    out = []
    for h in rec.holds:
        if h.depth:
            continue
        lane = lanes[h.thread_id]
        if h.acquired_ns > h.request_ns:
            out.append({"ph": "X", "name": "lock wait", "cat": "lock", "pid": pid,
                        "tid": lane, "ts": _us(rec, h.request_ns),
                        "dur": (h.acquired_ns - h.request_ns) / 1e3,
                        "args": {"kind": h.kind, "step": h.step}})
        if h.kind == "hold":  # explicit holds have no call event of their own
            out.append({"ph": "X", "name": "lock hold", "cat": "lock", "pid": pid,
                        "tid": lane, "ts": _us(rec, h.acquired_ns),
                        "dur": (h.released_ns - h.acquired_ns) / 1e3, "args": {}})
    return out


def _step_events(rec, pid) -> list[dict]:
    df = per_token(rec)
    counted = bool(rec.options.get("count_ops"))
    out = []
    for s, row in zip(rec.steps, df.itertuples(index=False)):
        out.append({"ph": "X", "name": f"step {s.index}", "cat": "step", "pid": pid,
                    "tid": 0, "ts": _us(rec, s.start_ns), "dur": (s.end_ns - s.start_ns) / 1e3,
                    "args": {"n_eval": row.n_eval, "n_async_eval": row.n_async_eval,
                             "n_sync": row.n_sync, "host_ms": round(row.host_ms, 4),
                             "blocked_ms": round(row.blocked_ms, 4)}})
        out.append({"ph": "C", "name": "memory", "pid": pid, "ts": _us(rec, s.end_ns),
                    "args": {"active_bytes": s.active_bytes, "peak_bytes": s.peak_bytes}})
        if counted:
            out.append({"ph": "C", "name": "ops", "pid": pid, "ts": _us(rec, s.start_ns),
                        "args": {"ops_total": int(row.ops_total)}})
    return out
