"""The wheel works outside the checkout: README's example and a tiny bench in a fresh venv."""
import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    code = re.search(r"## Profile an mlx-lm generation in five lines\n\n```python\n(.*?)```",
                     (ROOT / "README.md").read_text(), re.S)
    assert code, "README lost its five-line example"
    return code[1]


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """A venv outside the checkout with only the built wheel installed in it.

    Its dependencies come from this environment's site-packages through a .pth line
    (not its .pth files, so the editable install of the checkout stays out of sight).
    """
    base = tmp_path_factory.mktemp("wheel")
    dist = base / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(dist), str(ROOT)], check=True, timeout=300)
    (wheel,) = dist.glob("mlxprof-*.whl")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", str(wheel)], check=True, timeout=300)
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "zz_outer_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return py, base


def _run(py, cwd, *args, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLXPROF_RESULTS")}
    return subprocess.run([str(py), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_wheel_is_what_runs_and_carries_the_model_specs(fresh_venv):
    py, cwd = fresh_venv
    out = _run(py, cwd, "-c", "import mlxprof, mlxprof.lab.models as m; print(mlxprof.__file__);"
               "print(m.model_config('qwen3.5-35b-a3b', 'tiny')['model_type'])")
    assert out.returncode == 0, out.stderr
    where, arch = out.stdout.split()
    assert str(cwd) in where and str(ROOT) not in where
    assert arch == "qwen3_5_moe"


def test_tiny_bench_runs_from_the_wheel(fresh_venv):
    py, cwd = fresh_venv
    out = _run(py, cwd, "-m", "mlxprof", "bench", "--models", "qwen3-8b", "--scale", "tiny",
               "--loops", "mlx_lm,pipelined", "--tokens", "4", "--prompt-tokens", "4",
               "--reps", "1", "--warmup-tokens", "2", "--no-progress", "--out",
               str(cwd / "b.json"))
    assert out.returncode == 0, out.stderr
    assert (cwd / "b.json").is_file() and "pipelined" in out.stdout


@pytest.mark.smollm2
def test_readme_example_runs_from_the_wheel(fresh_venv):
    from mlxprof.lab import models
    if not models.cached_path("smollm2").is_file():
        pytest.skip("SmolLM2 weights not fetched (mlxprof models fetch smollm2)")
    py, cwd = fresh_venv
    out = _run(py, cwd, "-c", _readme_example())
    assert out.returncode == 0, out.stderr
    assert "token" in out.stdout.lower()
