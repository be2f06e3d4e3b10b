"""`mlxprof run`: a program profiled as it is; the recording written however it ends."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlx.core as mx
import pytest

import mlxprof
from mlxprof import hooks
from mlxprof.cli import main
from mlxprof.runner import Program, default_output, run

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""\
    import sys
    import mlx.core as mx
    print("argv", sys.argv, __name__)
    x = mx.ones((4,))
    for i in range(3):
        x = x * 2
        mx.eval(x)
        print(x.sum().item())
    if sys.argv[1:] == ["raise"]:
        raise ValueError("boom")
    if sys.argv[1:] == ["exit"]:
        sys.exit(3)
    if sys.argv[1:] == ["loop"]:
        import time
        print("ready", flush=True)
        while True:
            mx.eval(x + 1)
            time.sleep(0.005)
    """)


@pytest.fixture
def script(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "prog.py"
    path.write_text(SCRIPT)
    return path


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def _mlxprof(*args, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "mlxprof", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=120, **kw)


def test_the_program_sees_what_python_gives_it_and_prints_the_same(script):
    plain = subprocess.run([sys.executable, script.name, "a", "--b"], cwd=script.parent,
                           capture_output=True, text=True, timeout=120)
    out = _mlxprof("run", "--", "python", script.name, "a", "--b", cwd=script.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout == plain.stdout
    assert "argv ['prog.py', 'a', '--b'] __main__" in out.stdout
    assert "recording written to prog.mlxprof.json.gz" in out.stderr
    rec = mlxprof.load(script.parent / "prog.mlxprof.json.gz")
    assert rec.meta["steps"] == "eval" and rec.meta["command"] == "python prog.py a --b"
    df = rec.per_token()  # one step per mx.eval, plus the item() after the last one
    assert df["n_eval"].tolist() == [1, 1, 1, 0]
    assert df["n_sync_item"].tolist() == [0, 1, 1, 1]
    assert "steps: eval" in rec.summary()


def test_exceptions_and_sys_exit_keep_exit_code_and_recording(script, capfd):
    assert run(Program.from_argv([str(script), "raise"]), output="r1.mlxprof.json.gz") == 1
    err = capfd.readouterr().err
    assert 'raise ValueError("boom")' in err and "ValueError: boom" in err
    assert "runner.py" not in err and "runpy" not in err
    assert "the program raised ValueError; recording written to r1.mlxprof.json.gz" in err
    assert len(mlxprof.load("r1.mlxprof.json.gz").events) == 6
    assert run(Program.from_argv([str(script), "exit"]), output="r2.mlxprof.json.gz") == 3
    assert "sys.exit(3)" in capfd.readouterr().err
    assert mlxprof.load("r2.mlxprof.json.gz").meta["steps"] == "eval"
    assert not hooks.is_installed()


def test_default_output_never_overwrites(script):
    prog = Program.from_argv([str(script)])
    first = default_output(prog)
    assert first.name == "prog.mlxprof.json.gz"
    assert run(prog) == 0 and first.exists()
    before = first.read_bytes()
    assert run(prog) == 0
    assert first.read_bytes() == before
    assert (script.parent / "prog.1.mlxprof.json.gz").exists()


@pytest.mark.parametrize("sig, code, word", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated")])
def test_a_signal_still_writes_the_recording(script, sig, code, word):
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlxprof", "run", "-o", "sig.mlxprof.json.gz", "--",
         script.name, "loop"], cwd=script.parent, env=_env(), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert proc.stdout.readline().startswith("argv")
        for _ in range(3):
            proc.stdout.readline()
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    assert word in err and "recording written to sig.mlxprof.json.gz" in err
    rec = mlxprof.load(script.parent / "sig.mlxprof.json.gz")
    assert rec.per_token()["n_eval"].sum() > 3


def test_a_module_runs_as_python_dash_m(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "__main__.py").write_text(
        "import sys, mlx.core as mx\nmx.eval(mx.ones(2))\n"
        "assert __name__ == '__main__'\nsys.exit(int(sys.argv[1]))\n")
    assert main(["run", "--steps", "none", "-o", "m.mlxprof.json.gz",
                 "-m", "mypkg", "7"]) == 7
    rec = mlxprof.load("m.mlxprof.json.gz")
    assert rec.meta["steps"] == "none" and len(rec.steps) == 1
    assert rec.meta["command"] == "python -m mypkg 7"


TINY_GENERATE = textwrap.dedent("""\
    import mlx.core as mx
    from mlx_lm.generate import generate_step
    from mlx_lm.models import llama
    args = llama.ModelArgs(model_type="llama", hidden_size=32, num_hidden_layers=2,
                           intermediate_size=64, num_attention_heads=4,
                           num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=64,
                           tie_word_embeddings=True, rope_theta=10000.0)
    model = llama.Model(args)
    mx.eval(model.parameters())
    prompt = mx.array([1, 5, 9, 3], dtype=mx.int32)
    toks = [t for t, _ in generate_step(prompt, model, max_tokens=5)]
    mx.eval(mx.ones(3))   # after the tokens: in no step
    print(len(toks))
    """)
SPECULATIVE = TINY_GENERATE.replace(
    "toks = [t for t, _ in generate_step(prompt, model, max_tokens=5)]",
    "from mlx_lm.generate import speculative_generate_step\n"
    "toks = [t for t, _, _ in speculative_generate_step(prompt, model, model,\n"
    "                                                  num_draft_tokens=2, max_tokens=5)]")


@pytest.mark.parametrize("steps, rule, n_steps", [("auto", "mlx_lm", 5),
                                                  ("eval", "eval", None)])
def test_mlx_lm_generators_mark_one_step_per_token_and_are_restored(
        tmp_path, monkeypatch, steps, rule, n_steps):
    import mlx_lm.generate  # noqa: F401  (the package's `generate` hides the module)

    gen = sys.modules["mlx_lm.generate"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "g.py").write_text(TINY_GENERATE)
    originals = {n: getattr(gen, n) for n in ("generate_step", "stream_generate",
                                              "speculative_generate_step")}
    batch_next = vars(gen.BatchGenerator)["next"]
    assert run(Program.from_argv(["g.py"]), output="g.mlxprof.json.gz", steps=steps) == 0
    assert all(getattr(gen, n) is f for n, f in originals.items())
    assert vars(gen.BatchGenerator)["next"] is batch_next
    rec = mlxprof.load("g.mlxprof.json.gz")
    assert rec.meta["steps"] == rule
    df = rec.per_token()
    if rule == "mlx_lm":
        assert len(df) == n_steps
        assert (df["n_sync_item"] == 1).all()
        assert (df["n_async_eval"].iloc[1:] == 1).all()
        assert df["n_eval"].iloc[1:].sum() == 0  # the eval after the loop is in no step
    else:
        assert len(df) > 5 and df["n_eval"].sum() + df["n_async_eval"].sum() >= len(df) - 1


def test_options_reach_the_profile_and_the_extra_outputs(script, capfd):
    import json

    assert main(["run", "--count-ops", "--eval-lock", "--no-call-sites", "--trace",
                 "t.json", "--html", "out/r.html", "-o", "o.mlxprof.json.gz", "--",
                 str(script)]) == 0
    assert "trace t.json; HTML report out/r.html" in capfd.readouterr().err
    rec = mlxprof.load("o.mlxprof.json.gz")
    assert rec.options == {"count_ops": True, "eval_lock": True, "call_sites": False,
                           "numpy": True}
    assert rec.per_token()["ops_total"].sum() > 0 and rec.holds
    assert all(e.site is None for e in rec.events)
    assert {e["name"] for e in json.load(open("t.json"))["traceEvents"]} >= {"eval", "item"}
    assert "Plotly" in (script.parent / "out" / "r.html").read_text()


def test_the_eval_rule_keeps_collectives_casts_and_the_clock_on_their_steps(tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "coll.py").write_text(textwrap.dedent("""\
        import mlx.core as mx
        x, c = mx.ones((8,), dtype=mx.bfloat16), mx.array(0.5)
        for i in range(3):
            mx.eval(mx.distributed.all_sum(x * c))   # one widening, one collective
        """))
    assert run(Program("path", "coll.py", []), output="c.mlxprof.json.gz",
               count_ops=True, log=open(os.devnull, "w")) == 0
    rec = mlxprof.load("c.mlxprof.json.gz")
    assert rec.meta["steps"] == "eval" and len(rec.steps) == 3
    assert [c.step for c in rec.collectives] == [0, 1, 2]
    assert [c[0] for c in rec.casts] == [0, 1, 2]
    assert rec.per_token()["n_collectives"].tolist() == [1, 1, 1]
    assert rec.clock is not None and rec.clock["wall_ns"] > 0
    assert "median 1 per token" in rec.summary()


def test_mlx_lm_imported_by_the_program_is_wrapped_when_imported(tmp_path):
    (tmp_path / "g.py").write_text(
        "import sys\nassert 'mlx_lm.generate' not in sys.modules\n" + TINY_GENERATE)
    out = _mlxprof("run", "-o", "lazy.mlxprof.json.gz", "g.py", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    rec = mlxprof.load(tmp_path / "lazy.mlxprof.json.gz")
    assert rec.meta["steps"] == "mlx_lm" and len(rec.steps) == 5


def test_speculative_decoding_gets_one_step_per_token(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "spec.py").write_text(SPECULATIVE)
    assert run(Program.from_argv(["spec.py"]), output="s.mlxprof.json.gz") == 0
    rec = mlxprof.load("s.mlxprof.json.gz")
    assert rec.meta["steps"] == "mlx_lm" and len(rec.steps) == 5


def test_bad_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ok.py").write_text("print('ran')\n")
    (tmp_path / "not_a_rec.gz").write_text("hello")
    rec = _recording(tmp_path, "good.mlxprof.json.gz", 2)
    cases = [(["trace", rec, "-o", "/proc/nope/t.json"], "cannot write the trace"),
             (["report", rec, "-o", str(tmp_path)], "is a folder"),
             (["run", "--html", "/proc/nope/r.html", "ok.py"], "cannot write the HTML"),
             (["run", "--steps", "tokens", "ok.py"], "invalid choice: 'tokens'"),(["run", "--", "missing.py"], "no such script: missing.py"),
             (["run", "-m", "no_such_module_xyz"], "no module named 'no_such_module_xyz'"),
             (["run", "-o", "/proc/nope/r.gz", "ok.py"], "cannot write the recording"),
             (["run"], "no program given"),
             (["show", "not_a_rec.gz"], "is not an mlxprof recording"),
             (["show", "missing.gz"], "no such file: missing.gz"),
             (["trace", str(tmp_path)], "is a folder"),
             (["compare", "not_a_rec.gz", "not_a_rec.gz"], "is not an mlxprof recording"),
             (["report", "not_a_rec.gz"], "is not an mlxprof recording")]
    for argv, message in cases:
        assert main(argv) == 2, argv
        out = capsys.readouterr()
        assert "ran" not in out.out  # nothing ran before the check
        line = out.err.strip()
        assert "\n" not in line and f"mlxprof {argv[0]}: error:" in line, line
        assert message in line, line


def test_every_command_has_help_with_an_example(capsys):
    for cmd in ("run", "show", "trace", "compare", "report"):
        assert main([cmd, "--help"]) == 0
        assert "example" in capsys.readouterr().out


def _recording(tmp_path, name, n):
    with mlxprof.Profiler() as prof:
        x = mx.ones((8,))
        for _ in prof.track(range(n)):
            x = x + 1
            mx.async_eval(x)
            x.sum().item()
    return prof.save(tmp_path / name)


def test_show_trace_compare_from_the_shell(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = _recording(tmp_path, "a.mlxprof.json.gz", 4), _recording(tmp_path, "b.mlxprof.json.gz", 6)
    assert main(["show", a, "--per-token"]) == 0
    out = capsys.readouterr().out
    assert "Token time split" in out and "other_threads_ms" in out
    assert main(["trace", a]) == 0 and main(["trace", a]) == 0  # default names: no overwrite
    assert {p.name for p in tmp_path.glob("a*.trace.json")} == {"a.trace.json",
                                                                "a.1.trace.json"}
    assert main(["compare", a, b, "--csv", "cmp.csv"]) == 0
    out = capsys.readouterr().out
    assert "a: 4 steps, b: 6 steps" in out and "vs a" in out
    assert "n_async_eval" in out and "1.00x" in out
    assert (tmp_path / "cmp.csv").exists()


def test_compare_recordings_from_python(tmp_path):
    a, b = _recording(tmp_path, "a.mlxprof.json.gz", 4), _recording(tmp_path, "b.mlxprof.json.gz", 5)
    df = mlxprof.compare_recordings([a, b])
    assert list(df.columns) == ["a", "b", "b/a", "b noise"]
    assert df.loc["n_async_eval", "b/a"] == 1.0 and df.loc["n_async_eval", "b noise"]
    assert df.loc["wall_ms", "a"] > 0
    assert df.attrs["steps"] == {"a": 4, "b": 5}
    with pytest.raises(mlxprof.MlxprofError, match="at least two"):
        mlxprof.compare_recordings([a])


def test_plain_json_recordings_are_named_like_gzipped_ones(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a, b = _recording(tmp_path, "a.json", 3), _recording(tmp_path, "b.mlxprof.json.gz", 3)
    assert list(mlxprof.compare_recordings([a, b]).columns) == ["a", "b", "b/a", "b noise"]
    assert main(["report", a]) == 0 and (tmp_path / "a.html").exists()
