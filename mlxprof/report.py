"""Pure functions from a Recording to tables, text and Chrome trace dicts.

Example:
    >>> from mlxprof import report
    >>> report.per_token(rec)                   # doctest: +SKIP
    >>> print(report.summary(rec))              # doctest: +SKIP
    >>> json.dump(report.chrome_trace(rec), f)  # doctest: +SKIP
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict

from mlxprof.events import category

_FIXED = ["step", "wall_ms", "host_ms", "submit_ms", "blocked_ms", "lock_wait_ms",
          "n_eval", "n_async_eval", "n_sync"]


def _ms(ns) -> float:
    return ns / 1e6


# -- per-token table ---------------------------------------------------------------
def _step_rows(rec, thread):
    rows = {s.index: defaultdict(int) for s in rec.steps}
    ops_seen: Counter = Counter()
    for e in rec.events:
        if thread is not None and e.thread_id != thread:
            continue
        r = rows.get(e.step)
        if r is None:
            continue
        busy = e.end_ns - e.start_ns - e.lock_wait_ns
        r["lock_wait_ns"] += e.lock_wait_ns
        cat = category(e.kind)
        if cat == "submit":
            r["submit_ns"] += busy
            r["n_async_eval"] += 1
        else:
            r["blocked_ns"] += busy
            if cat == "eval":
                r["n_eval"] += 1
            else:
                r["n_sync"] += 1
                r["n_sync_" + e.kind] += 1
        if e.ops is not None:
            r["ops_total"] += sum(e.ops.values())
            for name, n in e.ops.items():
                r["ops_" + name] += n
                ops_seen[name] += n
    return rows, ops_seen


def per_token(rec, thread: int | None = None):
    """DataFrame, one row per step, with the columns DESIGN.md lists.

    host_ms = wall_ms - submit_ms - blocked_ms - lock_wait_ms. With several
    threads (thread=None) their times add up, so host_ms can go negative:
    pass a thread id to see one thread. ops_* are <NA> without count_ops.
    """
    import pandas as pd

    rows, ops_seen = _step_rows(rec, thread)
    sync_kinds = sorted({k[len("n_sync_"):] for r in rows.values() for k in r
                         if k.startswith("n_sync_")})
    op_names = [name for name, _ in ops_seen.most_common()]
    counted = bool(rec.options.get("count_ops"))
    records = []
    for s in rec.steps:
        r = rows[s.index]
        wall = s.end_ns - s.start_ns
        row = {"step": s.index, "wall_ms": _ms(wall),
               "host_ms": _ms(wall - r["submit_ns"] - r["blocked_ns"] - r["lock_wait_ns"]),
               "submit_ms": _ms(r["submit_ns"]), "blocked_ms": _ms(r["blocked_ns"]),
               "lock_wait_ms": _ms(r["lock_wait_ns"]), "n_eval": r["n_eval"],
               "n_async_eval": r["n_async_eval"], "n_sync": r["n_sync"]}
        row.update({f"n_sync_{k}": r[f"n_sync_{k}"] for k in sync_kinds})
        row["ops_total"] = r["ops_total"] if counted else None
        row.update({f"ops_{k}": r[f"ops_{k}"] for k in op_names})
        row["active_bytes"], row["peak_bytes"] = s.active_bytes, s.peak_bytes
        records.append(row)
    columns = (_FIXED + [f"n_sync_{k}" for k in sync_kinds] + ["ops_total"]
               + [f"ops_{k}" for k in op_names] + ["active_bytes", "peak_bytes"])
    df = pd.DataFrame.from_records(records, columns=columns)
    df["ops_total"] = df["ops_total"].astype("Int64")
    return df


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
           f"threads: {names}", f"  on {describe(rec.provenance)}", ""]
    out += _table(["kind", "category", "calls", "total ms", "mean us", "per token"],
                  _kind_rows(rec, n))
    out.append("(times inside the calls, lock waits excluded)")
    out += ["", "Token time split (ms):"]
    split = [[c[:-3], f"{df[c].mean():.3f}", f"{df[c].median():.3f}", f"{df[c].sum():.3f}",
              f"{100 * df[c].sum() / wall:.1f}" if wall else "-"]
             for c in ("wall_ms", "host_ms", "submit_ms", "blocked_ms", "lock_wait_ms")]
    out += _table(["part", "mean", "median", "total", "% wall"], split)
    out += _ops_lines(rec, df)
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
    per_step = Counter(c[0] for c in rec.casts)
    counts = sorted(per_step.get(i, 0) for i in range(max(n_steps, 1)))
    median = counts[len(counts) // 2]
    kinds = ", ".join(sorted({f"{c[3]}->{c[4]}" for c in rec.casts}))
    frame = casts_frame(rec).head(top)
    return (["", f"Casts to a wider float: {len(rec.casts)} ops widened half-precision "
             f"values ({kinds}), median {median} per token, each an AsType plus float32 work "
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
    ev += [_count_event(rec, e, pid, lanes[e.thread_id]) for e in rec.events if e.count_ns]
    ev += _lock_events(rec, pid, lanes)
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
