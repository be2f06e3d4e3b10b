"""Loading the stored GPU results: one explicit source run, compact tables, recordings."""
import json
import shutil

import pytest

from mlxprof.lab import results


def test_gpu_run_is_the_profiled_run_of_all_loops():
    res = results.gpu_run()
    assert {(r["model"], r["loop"]) for r in res.rows} >= {
        (m, l) for m in ("qwen3-8b", "qwen3.5-35b-a3b")
        for l in ("sync", "mlx_lm", "pipelined", "fast")}
    assert results.gpu_row("qwen3-8b", "mlx_lm")["ops_per_tok"] > 0
    assert results.gpu_row("smollm2-135m", "mlx_lm") is None


def test_gpu_table_one_line_per_model_and_loop_with_caption():
    t = results.gpu_table(loops=["sync", "mlx_lm"])
    assert list(t.index.names) == ["model", "loop"] and not t.index.duplicated().any()
    assert set(t.index.get_level_values("loop")) == {"sync", "mlx_lm"}
    cap = t.attrs["caption"]
    assert "NVIDIA H200" in cap and results.GPU_RUN in cap and "64 decode tokens" in cap
    assert cap.count("commit") == 1, cap      # provenance.describe already names it


def test_recordings_come_from_the_same_run():
    recs = results.recordings("mlx_lm")
    assert set(recs) == {("qwen3-8b", "mlx_lm"), ("qwen3.5-35b-a3b", "mlx_lm")}
    run_date = results.gpu_run().provenance["date"][:13]
    assert all(r.provenance["date"][:13] == run_date for r in recs.values())


def test_bench_results_are_the_bench_schema_only(tmp_path, monkeypatch):
    src = results.results_dir() / results.GPU_RUN
    old = json.loads(src.read_text())
    (tmp_path / "a.json").write_text(json.dumps(old))
    (tmp_path / "b.json").write_text(json.dumps(old))
    (tmp_path / "c.json").write_text(json.dumps({"schema": "something else"}))
    (tmp_path / "d.json").write_text("not json")
    monkeypatch.setenv("MLXPROF_RESULTS", str(tmp_path))
    assert [p.name for p, _ in results.bench_results()] == ["a.json", "b.json"]
    assert results.gpu_run() is None
    assert results.gpu_table().empty and "no stored run" in results.gpu_table().attrs["caption"]
    assert results.cuda_knobs().empty


def test_cuda_knobs_defaults():
    k = results.cuda_knobs(defaults_only=True)
    assert set(k["setting"]) == {"default"} and not k["model"].duplicated().any()
    assert (k["tok/s"] > 0).all()
