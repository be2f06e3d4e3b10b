"""The three wings import one way: pyproject.toml's import-linter contracts hold."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_importing_mlxprof_loads_neither_wing():
    code = ("import sys, mlxprof; mlxprof.Profiler; mlxprof.load;"
            "print(sorted(m for m in sys.modules if m.startswith(('mlxprof.decode', "
            "'mlxprof.lab', 'mlx_lm', 'plotly'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip() == "[]"
