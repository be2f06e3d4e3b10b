"""Provenance: the command line and whether the checkout had uncommitted changes."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from mlxprof import provenance


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
                   cwd=repo, check=True, capture_output=True)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_git_dirty_follows_tracked_changes_only(tmp_path, monkeypatch):
    monkeypatch.delenv("MLXPROF_GIT_COMMIT", raising=False)
    monkeypatch.delenv("MLXPROF_GIT_DIRTY", raising=False)
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "commit", "-qm", "one")
    assert provenance.git_dirty(tmp_path) is False
    (tmp_path / "new.txt").write_text("untracked\n")
    assert provenance.git_dirty(tmp_path) is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert provenance.git_dirty(tmp_path) is True
    outside = tmp_path.parent / "not-a-repo"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    assert provenance.git_dirty(outside) is None


def test_dirty_from_the_environment_without_git(monkeypatch):
    monkeypatch.setenv("MLXPROF_GIT_COMMIT", "abc1234")
    monkeypatch.delenv("MLXPROF_GIT_DIRTY", raising=False)
    assert provenance.git_dirty() is None
    monkeypatch.setenv("MLXPROF_GIT_DIRTY", "1")
    assert provenance.git_dirty() is True
    monkeypatch.setenv("MLXPROF_GIT_DIRTY", "0")
    assert provenance.git_dirty() is False


def test_collect_records_the_command_line_and_describe_shows_both(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["mlxprof", "bench", "--out", "my file.json"])
    monkeypatch.setenv("MLXPROF_GIT_COMMIT", "abc1234")
    monkeypatch.setenv("MLXPROF_GIT_DIRTY", "1")
    prov = provenance.collect()
    assert prov["command"] == "mlxprof bench --out 'my file.json'"
    assert prov["git_dirty"] is True
    line = provenance.describe(prov)
    assert "commit abc1234 + uncommitted changes" in line
    assert line.endswith("; command: mlxprof bench --out 'my file.json'")
    clean = provenance.describe({**prov, "git_dirty": False})
    assert "uncommitted" not in clean and "commit abc1234;" in clean


def test_describe_cuts_a_long_command():
    line = provenance.describe({"command": "x" * 500})
    assert len(line) < 250 and line.endswith("...")
