"""mlx-lm's own CLI and server, unmodified, profiled by `mlxprof run` (real SmolLM2)."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import mlxprof

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write one sentence about the sea."
TEXT = "The quick brown fox, 42 times: naïve café!\n  <|im_start|>user hi"


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def _between_rules(stdout: str) -> str:
    """The generated text: what mlx-lm prints between its '==========' lines."""
    parts = stdout.split("==========")
    assert len(parts) >= 3, stdout
    return parts[1]


def test_exported_tokenizer_gives_the_gguf_tokenizers_ids(smollm2_dir):
    import mlx.core as mx
    from transformers import AutoTokenizer

    from mlxprof.lab.models import smollm2
    from mlxprof.lab.models.gguf_tokenizer import hf_tokenizer_from_gguf

    _, meta = mx.load(str(smollm2.ensure()), return_metadata=True)
    ours = hf_tokenizer_from_gguf(meta)
    loaded = AutoTokenizer.from_pretrained(str(smollm2_dir))
    ids = loaded.encode(TEXT)
    assert ids == ours.encode(TEXT) and len(ids) > 10
    assert loaded.decode(ids) == TEXT
    chat = [{"role": "user", "content": "hi"}]
    assert (loaded.apply_chat_template(chat, tokenize=False)
            == ours.apply_chat_template(chat, tokenize=False))
    cfg = json.loads((smollm2_dir / "config.json").read_text())
    assert cfg["model_type"] == "llama" and "quantization" in cfg


def test_mlx_lm_generate_prints_the_same_and_gets_one_step_per_token(smollm2_dir, tmp_path):
    cmd = ["python", "-m", "mlx_lm", "generate", "--model", str(smollm2_dir),
           "--prompt", PROMPT, "--max-tokens", "32"]
    plain = subprocess.run([sys.executable] + cmd[1:], cwd=tmp_path, env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert plain.returncode == 0, plain.stderr
    prof = subprocess.run([sys.executable, "-m", "mlxprof", "run", "-o", "r", "--"] + cmd,
                          cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert prof.returncode == 0, prof.stderr
    assert _between_rules(prof.stdout) == _between_rules(plain.stdout)
    assert "recording written to r" in prof.stderr
    rec = mlxprof.load(tmp_path / "r")
    assert rec.meta["steps"] == "mlx_lm"
    generated = int(prof.stdout.split("Generation: ")[1].split(" tokens")[0])
    df = rec.per_token()
    assert len(df) == generated == 32
    # mlx-lm's loop: one async_eval and one item() per token; step 0 also prefills
    assert (df["n_async_eval"].iloc[1:] == 1).all() and (df["n_sync_item"] == 1).all()
    assert (df["n_eval"].iloc[1:] == 0).all() and df["n_async_eval"].iloc[0] == 2
    assert (df["host_ms"] >= 0).all()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(model_dir, cwd: Path, profiled: bool):
    """Start `mlx_lm server` (under `mlxprof run` if profiled); output goes to files."""
    port = _free_port()
    cmd = ["python", "-m", "mlx_lm", "server", "--model", str(model_dir), "--host",
           "127.0.0.1", "--port", str(port)]
    argv = ([sys.executable, "-m", "mlxprof", "run", "-o", "server.mlxprof.json.gz", "--"]
            + cmd if profiled else [sys.executable] + cmd[1:])
    log = cwd / f"server-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=out, stderr=out,
                                preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                 signal.SIG_DFL))
    proc.port, proc.log = port, log
    return proc


def _wait_ready(proc, seconds=180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{proc.port}/health", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"server did not come up in {seconds} s")


def _ask(port: int, question: str) -> str:
    body = json.dumps({"messages": [{"role": "user", "content": question}],
                       "max_tokens": 8, "temperature": 0.0}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                 data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        return json.loads(resp.read())["choices"][0]["message"]["content"]


def _clients(port: int, n_clients=3, n_requests=2) -> dict:
    answers: dict = {}

    def client(c):
        for r in range(n_requests):
            q = f"Name a colour. (client {c}, question {r})"
            answers[q] = _ask(port, q)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a client never got its answers"
    return answers


def _stop(proc):
    """SIGINT (Ctrl-C), as a user stops the server; returns (exit code, its output)."""
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
    finally:
        proc.kill()
    return proc.returncode, proc.log.read_text()


def test_mlx_lm_server_profiled_answers_the_same_and_records_threads(smollm2_dir, tmp_path):
    # both load at once; the clients then ask one server at a time
    servers = [_launch(smollm2_dir, tmp_path, profiled) for profiled in (False, True)]
    try:
        for proc in servers:
            _wait_ready(proc)
        plain, answers = (_clients(proc.port) for proc in servers)
    finally:
        _stop(servers[0])
        code, err = _stop(servers[1])
    assert len(answers) == 6 and all(answers.values())
    assert answers == plain
    assert code == 0 and "recording written to server.mlxprof.json.gz" in err, err[-2000:]
    rec = mlxprof.load(tmp_path / "server.mlxprof.json.gz")
    assert rec.meta["steps"] == "mlx_lm"
    threads = rec.per_thread().set_index("thread")
    stepping = threads[threads["steps"] > 0]
    assert len(stepping) == 1 and stepping.index[0] != "MainThread"  # the generation thread
    assert 8 <= stepping["steps"].iloc[0] <= 6 * 8
    df = rec.per_token()
    assert (df[["host_ms", "submit_ms", "blocked_ms", "lock_wait_ms"]] >= 0).all().all()
    parts = df.host_ms + df.submit_ms + df.blocked_ms + df.lock_wait_ms
    assert (abs(parts - df.wall_ms) < 1e-6).all()
    split = rec.summary().split("Token time split (ms):")[1].splitlines()[3:8]
    assert all(0 <= float(line.split()[-1]) <= 100 for line in split)


def test_export_refuses_bad_input_before_any_work(tmp_path, capsys):
    from mlxprof.cli import main

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    assert main(["models", "export", "smollm2", str(tmp_path / "full")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    assert main(["models", "export", "qwen3-8b", str(tmp_path / "new")]) == 2
    assert "exportable: smollm2" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()
