"""`%load_ext mlxprof` and `%%mlxprof` in an IPython shell."""
from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell

from mlxprof import hooks

CELL = """
import mlx.core as mx
x = mx.array([1.0, 2.0])
for i in prof.track(range(3)):
    (x * i).sum().item()
"""


@pytest.fixture(scope="module")
def shell():
    sh = InteractiveShell.instance()
    sh.run_cell("%load_ext mlxprof", store_history=False)
    return sh


def test_cell_magic_profiles_the_cell_and_prints_the_summary(shell, capsys):
    result = shell.run_cell("%%mlxprof --count-ops\n" + CELL)
    assert result.success
    out = capsys.readouterr().out
    assert "mlxprof: 3 steps" in out and "Token time split" in out
    prof = shell.user_ns["prof"]
    df = prof.per_token()
    assert df["n_sync_item"].tolist() == [1, 1, 1]
    assert df["ops_total"].tolist() == [4, 4, 4]  # Broadcast, Multiply, Sum, Squeeze
    assert not hooks.is_installed()


def test_cell_magic_options_and_errors(shell, tmp_path, capsys):
    trace, rec = tmp_path / "t.json", tmp_path / "r.json.gz"
    result = shell.run_cell(f"%%mlxprof --name p2 --quiet --trace {trace} --save {rec}\n"
                            + CELL.replace("prof.", "p2."))
    assert result.success and trace.exists() and rec.exists()
    assert "Token time split" not in capsys.readouterr().out
    failing = shell.run_cell("%%mlxprof\nmx.ones((2,)).sum().item()\n1/0\n")
    assert not failing.success
    assert "the cell raised" in capsys.readouterr().out
    assert not hooks.is_installed()
    assert shell.user_ns["prof"].per_token()["n_sync_item"].tolist() == [1]


def test_cell_value_is_returned_and_call_sites_point_into_the_cell(shell, capsys):
    result = shell.run_cell("%%mlxprof --quiet\nimport mlx.core as mx\n"
                            "v = mx.array(2.0) * 3\nv.item() + 1\n")
    assert result.success and result.result == 7.0
    (event,) = shell.user_ns["prof"].recording.events
    assert event.site[1] == 3 and event.site[2] == "<module>"


@pytest.mark.parametrize("line, message", [
    ("--frobnicate", "unrecognized arguments: --frobnicate"),
    ("--name", "argument --name: expected one argument"),
    ("--save 'unclosed", "No closing quotation"),
])
def test_bad_option_is_a_usage_error_without_traceback(shell, capsys, line, message):
    shell.user_ns.pop("ran", None)
    result = shell.run_cell(f"%%mlxprof {line}\nran = True\n")
    assert not result.success and "ran" not in shell.user_ns
    out, err = capsys.readouterr()
    text = out + err
    assert "UsageError" in text and message in text and "usage: %%mlxprof" in text
    assert "Traceback" not in text and "magic.py" not in text


def test_unwritable_trace_keeps_the_summary_and_the_value(shell, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rec = tmp_path / "r.json"
    result = shell.run_cell(f"%%mlxprof --trace {blocker / 't.json'} --save {rec}\n"
                            "import mlx.core as mx\n(mx.array(2.0) * 3).item()\n")
    assert result.success and result.result == 6.0
    out, err = capsys.readouterr()
    assert "Token time split" in out
    assert "%%mlxprof --trace" in err and str(blocker / "t.json") in err
    assert rec.exists()                      # the other file is still written
    assert not hooks.is_installed()


def test_help_is_found_with_a_question_mark(shell, capsys):
    shell.run_cell("%mlxprof?")
    out = capsys.readouterr().out
    assert "%%mlxprof" in out and "--count-ops" in out and "--trace PATH" in out
    shell.run_cell("%mlxprof")
    assert "--trace PATH" in capsys.readouterr().out
