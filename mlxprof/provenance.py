"""What produced a number: device, backend, versions, date and git commit.

Every table, recording and figure that mlxprof writes carries this dict, so a
number read later says where it came from.

Example:
    >>> from mlxprof.provenance import collect
    >>> collect()["backend"] in {"cpu", "metal", "cuda"}
    True
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
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


def git_commit(path: Path | None = None) -> str | None:
    """The short commit of the checkout holding `path`, or None outside git.

    A copy of the tree without `.git` (a remote GPU box) can name its commit
    in the environment variable MLXPROF_GIT_COMMIT.
    """
    if os.environ.get("MLXPROF_GIT_COMMIT"):
        return os.environ["MLXPROF_GIT_COMMIT"]
    here = path or Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here,
            capture_output=True, text=True, timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


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
    }


def describe(prov: dict) -> str:
    """One line for a table caption: 'NVIDIA H100 (cuda), MLX 0.32.4, 2026-11-28'."""
    date = str(prov.get("date", ""))[:10]
    return (f"{prov.get('device', '?')} ({prov.get('backend', '?')}), "
            f"MLX {prov.get('mlx', '?')}, mlx-lm {prov.get('mlx_lm', '?')}, {date}")
