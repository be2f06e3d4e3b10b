"""pyproject.toml and environment.yml must install the same set."""
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = set(project["dependencies"])
    for name in ("cpu", "notebooks", "dev"):
        reqs |= set(project["optional-dependencies"][name])
    return reqs


def _environment_requirements() -> set[str]:
    text = (ROOT / "environment.yml").read_text()
    block = text.split("- pip:", 1)[1]
    items = re.findall(r"^\s+- (\S.*)$", block, flags=re.M)
    return {item.strip() for item in items if not item.startswith("-e")}


def test_environment_matches_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_environment_installs_the_package_itself():
    assert re.search(r"^\s+- -e \.$", (ROOT / "environment.yml").read_text(), re.M)


def test_ci_runs_the_readme_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for command in ("bash scripts/setup.sh", "python -m pytest"):
        assert command in readme, f"README lost the command {command!r}"
        assert command in ci, f".ci/run does not run {command!r}"
