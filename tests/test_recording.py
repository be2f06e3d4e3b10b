"""Save / load round trips and the errors for files that are not recordings."""
from __future__ import annotations

import gzip
import json

import pandas as pd
import pytest
from mlx_lm.generate import generate_step

import mlxprof
from mlxprof.events import MlxprofError
from mlxprof.recording import FORMAT_VERSION


@pytest.fixture(scope="module")
def profiled(llama_model):
    import mlx.core as mx

    prompt = mx.array([1, 5, 9, 3, 7], dtype=mx.int32)
    with mlxprof.Profiler(count_ops=True, eval_lock=True, meta={"model": "tiny-llama"}) as prof:
        for _ in prof.track(generate_step(prompt, llama_model, max_tokens=5)):
            pass
    return prof


def test_round_trip_gives_identical_results(tmp_path, profiled):
    path = profiled.save(tmp_path / "run.mlxprof.json.gz")
    rec = mlxprof.load(path)
    pd.testing.assert_frame_equal(rec.per_token(), profiled.per_token())
    pd.testing.assert_frame_equal(rec.events_frame(), profiled.events())
    pd.testing.assert_frame_equal(rec.lock_stats(), profiled.lock_stats())
    assert rec.summary() == profiled.summary()
    assert rec.events == profiled.recording.events and rec.steps == profiled.recording.steps
    rec.export_chrome_trace(tmp_path / "a.json")
    profiled.export_chrome_trace(tmp_path / "b.json")
    assert (tmp_path / "a.json").read_text() == (tmp_path / "b.json").read_text()
    assert rec.figure("tokens").to_dict()["data"] == profiled.figure("tokens").to_dict()["data"]


def test_recording_carries_provenance_meta_and_version(tmp_path, profiled):
    rec = mlxprof.load(profiled.save(tmp_path / "r.json.gz"))
    assert rec.format_version == FORMAT_VERSION
    assert rec.meta == {"model": "tiny-llama"}
    assert {"device", "backend", "mlx", "mlx_lm", "date"} <= set(rec.provenance)
    assert rec.options["count_ops"] and rec.options["eval_lock"]
    with gzip.open(tmp_path / "r.json.gz", "rt") as f:
        assert json.load(f)["format"] == "mlxprof-recording"


def _write_gz(path, obj):
    with gzip.open(path, "wt") as f:
        json.dump(obj, f)
    return path


def test_unknown_version_and_foreign_files_are_clear_errors(tmp_path, profiled):
    data = profiled.recording.to_dict()
    data["format_version"] = 99
    with pytest.raises(MlxprofError, match="format_version 99"):
        mlxprof.load(_write_gz(tmp_path / "future.json.gz", data))
    with pytest.raises(MlxprofError, match="not an mlxprof recording"):
        mlxprof.load(_write_gz(tmp_path / "other.json.gz", {"traceEvents": []}))
    plain = tmp_path / "plain.txt"
    plain.write_text("hello")
    with pytest.raises(MlxprofError, match="not an mlxprof recording"):
        mlxprof.load(plain)
    del data["events"], data["format_version"]
    data["format_version"] = FORMAT_VERSION
    with pytest.raises(MlxprofError, match="corrupt"):
        mlxprof.load(_write_gz(tmp_path / "corrupt.json.gz", data))
    with pytest.raises(FileNotFoundError):
        mlxprof.load(tmp_path / "missing.json.gz")


def test_extension_decides_the_format_and_load_reads_both(tmp_path, profiled):
    plain = profiled.save(tmp_path / "run.json")
    with open(plain, "rb") as f:
        assert f.read(1) == b"{"                       # .json: plain JSON
    assert json.loads(open(plain).read())["format"] == "mlxprof-recording"
    gz = profiled.save(tmp_path / "run.json.gz")
    with open(gz, "rb") as f:
        assert f.read(2) == b"\x1f\x8b"                # .gz: gzip
    gunzipped = tmp_path / "gunzipped.json.gz"          # a misleading name still loads
    gunzipped.write_bytes(gzip.decompress((tmp_path / "run.json.gz").read_bytes()))
    for path in (plain, gz, gunzipped):
        pd.testing.assert_frame_equal(mlxprof.load(path).per_token(), profiled.per_token())
