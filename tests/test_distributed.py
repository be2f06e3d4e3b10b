"""Collectives in the profile, per-rank recordings and their merge (one process)."""
from __future__ import annotations

import json

import mlx.core as mx
import pytest

import mlxprof
from mlxprof.events import MlxprofError, Step
from mlxprof.provenance import distributed, launcher_backend
from mlxprof.recording import Recording, rank_path


def _profile_collectives(n_steps=3):
    x = mx.ones((8,), dtype=mx.float32)
    with mlxprof.Profiler(count_ops=True) as prof:
        for i in prof.track(range(n_steps)):
            y = mx.distributed.all_sum(x * (i + 1))
            z = mx.distributed.all_gather(y)
            mx.eval(z)
            z.sum().item()
    return prof


def test_collectives_are_counted_per_token_with_bytes():
    prof = _profile_collectives()
    df = prof.per_token()
    assert df["n_collectives"].tolist() == [2, 2, 2]
    assert df["n_coll_all_sum"].tolist() == [1, 1, 1]
    assert df["n_coll_all_gather"].tolist() == [1, 1, 1]
    assert df["collective_bytes"].tolist() == [64, 64, 64]  # 8 float32 in, twice
    kinds = [c.kind for c in prof.recording.collectives]
    assert kinds == ["all_sum", "all_gather"] * 3
    assert {(c.group_size, c.rank) for c in prof.recording.collectives} == {(1, 0)}


def test_collective_ms_is_the_eval_that_waited_not_the_item():
    prof = _profile_collectives()
    rec = prof.recording
    df = prof.per_token()
    evals = [e for e in rec.events if e.kind == "eval"]
    for row, e in zip(df.itertuples(), evals):
        assert row.collective_ms == pytest.approx((e.end_ns - e.start_ns) / 1e6)
        assert row.collective_ms <= row.blocked_ms + row.submit_ms
    assert "Collectives (rank 0 of 1" in prof.summary()


def test_no_collective_columns_without_collectives():
    with mlxprof.Profiler() as prof:
        (mx.ones(3) * 2).sum().item()
    assert "n_collectives" not in prof.per_token().columns


def test_collectives_clock_and_group_survive_save_and_load(tmp_path):
    prof = _profile_collectives(2)
    path = prof.save(tmp_path / "run.mlxprof.json.gz")
    rec = mlxprof.load(path)
    assert rec.collectives == prof.recording.collectives
    assert rec.clock == prof.recording.clock and rec.clock["wall_ns"] > 0
    assert rec.distributed == {"rank": 0, "size": 1, "backend": rec.distributed["backend"]}
    assert rec.per_token().equals(prof.per_token())


def test_trace_marks_collectives():
    from mlxprof import report

    trace = report.chrome_trace(_profile_collectives(2).recording)
    marks = [e for e in trace["traceEvents"] if e.get("cat") == "collective"]
    waits = [e for e in trace["traceEvents"] if e.get("args", {}).get("waits_on_collectives")]
    assert len(marks) == 4 and len(waits) == 2


def test_rank_in_saved_name():
    assert rank_path("a/run.mlxprof.json.gz", {"rank": 1, "size": 2}) == \
        "a/run.rank1.mlxprof.json.gz"
    assert rank_path("a/run.mlxprof.json.gz", {"rank": 0, "size": 1}) == "a/run.mlxprof.json.gz"
    assert rank_path("r{rank}.json.gz", {"rank": 3, "size": 4}) == "r3.json.gz"
    assert rank_path("run.json", {"rank": 1, "size": None}) == "run.rank1.json"


def test_backend_and_rank_from_the_launcher_environment():
    assert launcher_backend({"NCCL_HOST_IP": "10.0.0.1", "MLX_WORLD_SIZE": "2"}) == "nccl"
    assert launcher_backend({"MLX_JACCL_COORDINATOR": "h:1"}) == "jaccl"
    assert launcher_backend({"OMPI_COMM_WORLD_SIZE": "2"}) == "mpi"
    assert launcher_backend({}) is None
    env = {"MLX_RANK": "1", "MLX_WORLD_SIZE": "2", "NCCL_HOST_IP": "h"}
    assert distributed(env=env) == {"rank": 1, "size": 2, "backend": "nccl"}
    assert distributed(env={}) is None


def test_ring_size_from_the_hostfile(tmp_path):
    hostfile = tmp_path / "hosts.json"
    hostfile.write_text(json.dumps([["127.0.0.1:5000"], ["127.0.0.1:5001"]]))
    env = {"MLX_RANK": "1", "MLX_HOSTFILE": str(hostfile)}
    assert distributed(env=env) == {"rank": 1, "size": 2, "backend": "ring"}


# -- many ranks, one view -------------------------------------------------------------
def _fake(rank, size=2, wall_s=1000, perf0=5_000_000, steps_ms=(10, 12), backend="ring"):
    """A recording of one rank: one eval per step, waiting on an all_sum."""
    from mlxprof.events import Collective, Event

    steps, events, colls, t = [], [], [], perf0
    for i, ms in enumerate(steps_ms):
        end = t + int(ms * 1e6)
        colls.append(Collective("all_sum", t + 1000, 7, i, 64, size, rank))
        events.append(Event("eval", t + 2000, end - 1000, 7, i, 1, None, 0, None, 0))
        steps.append(Step(i, t, end, 0, 0))
        t = end
    prov = {"device": "cpu", "backend": "cpu",
            "distributed": {"rank": rank, "size": size, "backend": backend}}
    return Recording(events=events, steps=steps, collectives=colls, start_ns=perf0, end_ns=t,
                     provenance=prov, threads={7: "MainThread"},
                     clock={"perf_ns": perf0, "wall_ns": int(wall_s * 1e9)})


def test_load_ranks_tables_skew_and_wait():
    rs = mlxprof.load_ranks([_fake(1, steps_ms=(10, 20), wall_s=1000.001), _fake(0)])
    assert rs.size == 2 and rs.backend == "ring"
    df = rs.per_token()
    assert df["rank"].tolist() == [0, 0, 1, 1]
    sk = rs.skew()
    assert sk["skew_ms"].round(6).tolist() == [0.0, 8.0]
    assert sk["slowest_rank"].tolist()[1] == 1
    # rank 1 starts 1 ms later (wall anchor): rank 0 waited 1 ms for it at step 0
    w = df.set_index(["rank", "step"])["peer_wait_ms"]
    assert w[(0, 0)] == pytest.approx(1.0) and w[(1, 0)] == 0
    assert rs.collectives()["calls_per_token"].tolist() == [1.0, 1.0]


def test_trace_has_one_process_per_rank_on_a_shared_axis(tmp_path):
    rs = mlxprof.load_ranks([_fake(0), _fake(1, wall_s=1000.002)])
    path = rs.export_chrome_trace(tmp_path / "t.json")
    ev = json.load(open(path))["traceEvents"]
    names = {e["pid"]: e["args"]["name"] for e in ev if e.get("name") == "process_name"}
    assert names == {1: "rank 0", 2: "rank 1"}
    step0 = {e["pid"]: e["ts"] for e in ev if e.get("name") == "step 0"}
    assert step0[1] == 0 and step0[2] == pytest.approx(2000.0)  # us
    rs2 = mlxprof.load_ranks([_fake(0), _fake(1, wall_s=1000.002)], align="collective")
    assert rs2.offsets_ns[0] - rs2.offsets_ns[1] == 0  # same step shapes: same first wait


def test_load_ranks_from_a_folder(tmp_path):
    for r in (0, 1):
        _fake(r).save(tmp_path / "run.mlxprof.json.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run.rank0.mlxprof.json.gz", "run.rank1.mlxprof.json.gz"]
    assert mlxprof.load_ranks(tmp_path).size == 2


@pytest.mark.parametrize("recs,message", [
    ([_fake(0)], r"rank\(s\) \[1\] of 2 missing"),
    ([_fake(0), _fake(0)], "two recordings of rank 0"),
    ([_fake(0), _fake(1, wall_s=2000)], "different runs"),
    ([_fake(0), _fake(1, size=3)], "groups of different sizes"),
    ([_fake(0), _fake(1, backend="mpi")], "different backends"),
    ([_fake(0, size=1)], "without a process group"),
])
def test_bad_rank_sets_get_one_clear_error(recs, message):
    with pytest.raises(MlxprofError, match=message):
        mlxprof.load_ranks(recs)


def test_no_group_at_all_is_an_error():
    rec = _fake(0)
    rec.provenance["distributed"] = None
    with pytest.raises(MlxprofError, match="without a process group"):
        mlxprof.load_ranks([rec, _fake(1)])
    with pytest.raises(MlxprofError, match="no recordings match"):
        mlxprof.load_ranks("/nonexistent/*.mlxprof.json.gz")


def test_cli_ranks_prints_the_set_and_writes_one_trace(tmp_path, capsys):
    from mlxprof.cli import main

    for r in (0, 1):
        _fake(r).save(tmp_path / "run.mlxprof.json.gz")
    trace = tmp_path / "t.json"
    assert main(["ranks", str(tmp_path), "--trace", str(trace)]) == 0
    out = capsys.readouterr().out
    assert "2 ranks (ring)" in out and "skew_ms" in out
    pids = {e["pid"] for e in json.load(open(trace))["traceEvents"]}
    assert pids == {1, 2}


def test_cli_ranks_bad_set_is_one_line_exit_2(tmp_path, capsys):
    from mlxprof.cli import main

    path = _fake(0).save(tmp_path / "run.mlxprof.json.gz")
    assert main(["ranks", path]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlxprof ranks: error: rank(s) [1] of 2 missing")
    assert "\n" not in err
