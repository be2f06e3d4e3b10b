"""Run a Python module on N local ranks with `mlx.launch`, bounded in time.

The ranks run on this machine only (127.0.0.1), with the Python running this
code and this mlxprof first on their path. On timeout the whole process group
(mlx.launch and every rank) is killed.

Example:
    >>> out = launch(["-m", "mlxprof.lab.sharded", "--help"], n=2)   # doctest: +SKIP
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import mlxprof

__all__ = ["launch", "free_port"]


class LaunchError(RuntimeError):
    """mlx.launch failed, or its ranks did not finish in time."""


def _launcher() -> list[str]:
    script = Path(sys.executable).with_name("mlx.launch")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c",
            "import sys; from mlx._distributed_utils.launch import main; sys.exit(main())"]


def free_port(n: int) -> int:
    """A port p on 127.0.0.1 such that p .. p+n-1 were free a moment ago."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + n < 65536 and all(_free(port + i) for i in range(n)):
            return port
    raise LaunchError(f"found no {n} consecutive free ports on 127.0.0.1")


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _env() -> dict:
    root = str(Path(mlxprof.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def launch(argv: list[str], n: int = 2, backend: str = "ring",
           timeout: float = 120) -> str:
    """Run `python <argv>` on `n` local ranks; return their merged output.

    Raises LaunchError with the last lines of output when a rank fails or
    the run takes longer than `timeout` seconds (then all ranks are killed).

    Example:
        >>> launch(["-c", "import mlx.core as mx; print(mx.distributed.init().size())"])  # doctest: +SKIP
        '2\\n2\\n'
    """
    cmd = _launcher() + ["-n", str(n), "--backend", backend, "--hosts", "127.0.0.1",
                         "--starting-port", str(free_port(n)), "--python", sys.executable,
                         "--", *argv]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(), start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise LaunchError(f"mlx.launch -n {n} did not finish in {timeout:g} s (killed); "
                          f"last output: {_tail(out)}") from None
    if proc.returncode != 0:
        raise LaunchError(f"mlx.launch -n {n} failed (exit {proc.returncode}): {_tail(out)}")
    return out


def _tail(out: str, n: int = 6) -> str:
    lines = [ln for ln in (out or "").splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) or "(no output)"
