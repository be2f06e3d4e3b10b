"""pyproject.toml declares ranges; environment.yml pins a version inside each."""
import re
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pyproject_requirements() -> list[Requirement]:
    reqs = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in PROJECT["optional-dependencies"].values():
        reqs += [Requirement(r) for r in extra if not r.startswith("mlxprof[")]
    return reqs


def _environment_pins() -> dict[str, str]:
    block = (ROOT / "environment.yml").read_text().split("- pip:", 1)[1]
    items = re.findall(r"^\s+- (\S.*)$", block, flags=re.M)
    pins = {}
    for item in items:
        if item.startswith("-e"):
            continue
        req = Requirement(item)
        (spec,) = req.specifier
        assert spec.operator == "==", f"environment.yml must pin exactly: {item}"
        pins[req.name + "".join(f"[{e}]" for e in sorted(req.extras))] = spec.version
    return pins


def test_core_dependencies_are_ranges_not_pins():
    for req in _pyproject_requirements():
        assert all(s.operator != "==" for s in req.specifier), f"{req} is pinned"


def test_environment_pins_every_requirement_inside_its_range():
    pins = _environment_pins()
    for req in _pyproject_requirements():
        key = req.name + "".join(f"[{e}]" for e in sorted(req.extras))
        assert key in pins, f"environment.yml does not pin {key}"
        assert req.specifier.contains(pins[key]), f"{key}=={pins[key]} outside {req}"


def test_profiler_core_needs_neither_plotly_nor_mlx_lm():
    names = {Requirement(r).name for r in PROJECT["dependencies"]}
    assert names == {"mlx", "numpy", "pandas"}


def test_environment_installs_the_package_itself():
    assert re.search(r"^\s+- -e \.$", (ROOT / "environment.yml").read_text(), re.M)


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("bash scripts/setup.sh", ".venv/bin/python -m pytest"):
        assert command in readme, f"README lost the command {command!r}"
        assert command in ci, f".ci/run does not run {command!r}"


def test_ci_runs_the_lowest_claimed_python():
    """requires-python's lower bound is the interpreter CI tests with."""
    low = re.fullmatch(r">=(\d+)\.(\d+)", PROJECT["requires-python"])
    assert low, PROJECT["requires-python"]
    if "CI" in __import__("os").environ:
        assert sys.version_info[:2] == (int(low[1]), int(low[2])), (
            f"CI runs Python {sys.version.split()[0]}, pyproject claims "
            f"{PROJECT['requires-python']}: test the lowest claimed version")
