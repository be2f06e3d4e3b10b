"""What produced a number: device, backend, versions, date, git commit, command.

`git_dirty` says whether the checkout had uncommitted changes to tracked files
(None when unknown, e.g. outside git); `command` is the command line of the
process (`sys.argv`, shell-quoted).

Every table, recording and figure that mlxprof writes carries this dict, so a
number read later says where it came from.

Example:
    >>> from mlxprof.provenance import collect
    >>> collect()["backend"] in {"cpu", "metal", "cuda"}
    True
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path


__all__ = ["collect", "describe", "backend", "device_name", "git_commit"]

def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def backend() -> str:
    """The backend MLX computes on: 'metal', 'cuda' or 'cpu'."""
    import mlx.core as mx

    if mx.default_device().type == mx.DeviceType.cpu:
        return "cpu"
    if getattr(mx, "metal", None) is not None and mx.metal.is_available():
        return "metal"
    return "cuda"


def device_name() -> str:
    """A human name for the default device (e.g. 'NVIDIA H100 80GB HBM3')."""
    import mlx.core as mx

    try:
        info = mx.device_info()
    except Exception:  # older MLX or a backend without device_info
        info = {}
    name = info.get("device_name") or platform.processor() or platform.machine()
    return str(name)


def _git(args: list[str], here: Path) -> str | None:
    """stdout of `git args` run in `here`, or None if git fails or is missing."""
    try:
        out = subprocess.run(["git", *args], cwd=here, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _here(path: Path | None) -> Path:
    return path or Path(__file__).resolve().parent


def git_commit(path: Path | None = None) -> str | None:
    """The short commit of the checkout holding `path`, or None outside git.

    A copy of the tree without `.git` (a remote GPU box) can name its commit
    in the environment variable MLXPROF_GIT_COMMIT.
    """
    if os.environ.get("MLXPROF_GIT_COMMIT"):
        return os.environ["MLXPROF_GIT_COMMIT"]
    out = _git(["rev-parse", "--short", "HEAD"], _here(path))
    return (out or "").strip() or None


def git_dirty(path: Path | None = None) -> bool | None:
    """Whether tracked files of the checkout differ from its commit; None if unknown.

    Untracked files do not count. A copy without `.git` can say it in
    MLXPROF_GIT_DIRTY (1/0), next to MLXPROF_GIT_COMMIT.

    Example:
        >>> git_dirty() in (True, False, None)
        True
    """
    flag = os.environ.get("MLXPROF_GIT_DIRTY")
    if flag is not None:
        return flag.strip().lower() not in ("", "0", "false", "no")
    if os.environ.get("MLXPROF_GIT_COMMIT"):
        return None                 # a named commit without .git: cannot tell
    out = _git(["status", "--porcelain", "--untracked-files=no"], _here(path))
    return None if out is None else bool(out.strip())


def command_line() -> str:
    """This process's command line, shell-quoted (`python -m mlxprof bench ...`).

    Example:
        >>> isinstance(command_line(), str)
        True
    """
    argv = list(sys.argv) or [sys.executable]
    if argv[0] in ("", "-c"):
        argv[0] = "python -c"     # argv[0] is "-c" or empty for -c / interactive runs
    return " ".join(shlex.quote(a) for a in argv)


def launcher_backend(env=None) -> str | None:
    """The `mx.distributed` backend a launcher set up for this process, or None.

    Read from the environment `mlx.launch` (or mpirun) gives each rank: NCCL
    host and port -> 'nccl', a JACCL coordinator -> 'jaccl', a ring hostfile ->
    'ring', an MPI world -> 'mpi'. Reading it initializes nothing.

    Example:
        >>> launcher_backend({"MLX_HOSTFILE": "/tmp/h.json", "MLX_RANK": "0"})
        'ring'
    """
    env = os.environ if env is None else env
    if env.get("NCCL_HOST_IP") and env.get("MLX_WORLD_SIZE"):
        return "nccl"
    if env.get("MLX_JACCL_COORDINATOR") or env.get("MLX_IBV_DEVICES"):
        return "jaccl"
    if env.get("MLX_HOSTFILE"):
        return "ring"
    if env.get("OMPI_COMM_WORLD_SIZE") or env.get("PMI_SIZE") or env.get("MLX_MPI_LIBNAME"):
        return "mpi"
    return None


def distributed(group=None, seen=None, env=None) -> dict | None:
    """{"rank", "size", "backend"} of this process in an `mx.distributed` job, or None.

    Rank and size come from `group` (a Group), else `seen` ((rank, size) of a
    group a collective ran on), else the launcher's environment; the backend
    from the environment ('unknown' when a group is known but no launcher is).

    Example:
        >>> distributed(seen=(1, 2), env={"MLX_HOSTFILE": "h.json"})
        {'rank': 1, 'size': 2, 'backend': 'ring'}
    """
    env = os.environ if env is None else env
    backend_name = launcher_backend(env)
    if group is not None:
        seen = (group.rank(), group.size())
    if seen is None:
        rank = env.get("MLX_RANK", env.get("OMPI_COMM_WORLD_RANK"))
        size = env.get("MLX_WORLD_SIZE", env.get("OMPI_COMM_WORLD_SIZE")) or _ring_size(env)
        if rank is None or backend_name is None:
            return None
        seen = (int(rank), None if size is None else int(size))
    return {"rank": int(seen[0]), "size": seen[1], "backend": backend_name or "unknown"}


def _ring_size(env) -> int | None:
    """Ranks in the ring hostfile mlx.launch writes (a JSON list, one entry per rank)."""
    try:
        with open(env["MLX_HOSTFILE"]) as f:
            return len(json.load(f))
    except (KeyError, OSError, ValueError, TypeError):
        return None


def collect() -> dict:
    """Provenance of measurements taken in this process, now."""
    import mlx.core as mx

    return {
        "device": device_name(),
        "backend": backend(),
        "mlx": mx.__version__,
        "mlx_lm": _version("mlx-lm"),
        "mlxprof": _version("mlxprof"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "command": command_line(),
    }


def describe(prov: dict) -> str:
    """One line for a table caption: device, versions, date, commit (and whether
    the checkout had uncommitted changes), command line (cut at 100 characters).

    Example:
        >>> describe({"device": "NVIDIA H100", "backend": "cuda", "mlx": "0.32.4",
        ...           "mlx_lm": "0.32.2", "date": "2026-11-28T10:00:00+00:00",
        ...           "git_commit": "abc1234", "git_dirty": True, "command": "mlxprof bench"})
        'NVIDIA H100 (cuda), MLX 0.32.4, mlx-lm 0.32.2, 2026-11-28, commit abc1234 + uncommitted changes; command: mlxprof bench'
    """
    date = str(prov.get("date", ""))[:10]
    return (f"{prov.get('device', '?')} ({prov.get('backend', '?')}), "
            f"MLX {prov.get('mlx', '?')}, mlx-lm {prov.get('mlx_lm', '?')}, {date}"
            f"{_describe_commit(prov)}{_describe_command(prov)}")


def _describe_command(prov: dict, limit: int = 100) -> str:
    cmd = prov.get("command")
    if not cmd:
        return ""
    return f"; command: {cmd if len(cmd) <= limit else cmd[:limit - 3] + '...'}"


def _describe_commit(prov: dict) -> str:
    if "git_commit" not in prov:
        return ""                   # older files: say nothing rather than "?"
    dirty = {True: " + uncommitted changes", None: "", False: ""}
    return f", commit {prov.get('git_commit') or '?'}{dirty.get(prov.get('git_dirty'), '')}"
