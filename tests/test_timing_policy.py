"""One timing policy: scripts and the lab time through mlxprof.measure, not their own loops."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TIMERS = {"perf_counter", "perf_counter_ns", "process_time", "thread_time", "monotonic"}
# a per-phase split inside each token (build / submit / blocked), which is what the
# Profiler measures in the library: not a repeated timing of a whole run
# a deadline, not a timing: the fetch watchdog's clock of how long pip sent nothing
# and a GPU call's clock of its time budget (each run's tok/s comes from bench.time_run)
EXEMPT = {("opt_experiments.py", "host_split"), ("download.py", "_watch"),
          ("gpu_round2.py", "rounds")}
TIMING_SCRIPTS = ["profiler_overhead.py", "profile_split.py", "device_time.py",
                  "cuda_knobs.py", "check_fast.py", "opt_experiments.py"]
LOOPS = (ast.For, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _timer_calls_in_loops(path: Path, root: Path = ROOT) -> list:
    tree = ast.parse(path.read_text())
    owner = {}
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                owner.setdefault(id(node), fn.name)  # outermost function wins
    hits = set()
    for loop in (n for n in ast.walk(tree) if isinstance(n, LOOPS)):
        for node in ast.walk(loop):
            f = getattr(node, "func", None)
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", None)
            if isinstance(node, ast.Call) and name in TIMERS \
                    and (path.name, owner.get(id(node))) not in EXEMPT:
                hits.add(f"{path.relative_to(root)}:{node.lineno} {name}()")
    return sorted(hits)


def _sources() -> list:
    files = sorted((ROOT / "experiments").glob("*.py"))
    files += sorted((ROOT / "mlxprof" / "lab").rglob("*.py"))
    files += sorted((ROOT / "mlxprof" / "decode").rglob("*.py"))
    assert len(files) > 10
    return files


def test_no_private_timing_loops():
    hits = [h for p in _sources() for h in _timer_calls_in_loops(p)]
    assert not hits, ("time repeated runs with mlxprof.measure.time_rounds / "
                      "time_tokens, not a timer in a loop: " + ", ".join(hits))


def test_the_checker_finds_a_timing_loop(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text("import time\nts = [time.perf_counter() for _ in range(3)]\n"
                   "for _ in ts:\n    t0 = time.process_time()\n")
    assert _timer_calls_in_loops(bad, tmp_path) == ["probe.py:2 perf_counter()",
                                                    "probe.py:4 process_time()"]


@pytest.mark.parametrize("name", TIMING_SCRIPTS)
def test_timing_scripts_use_mlxprof_measure(name):
    tree = ast.parse((ROOT / "experiments" / name).read_text())
    imports = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               for a in n.names}
    assert ("mlxprof", "measure") in imports, f"{name} does not use mlxprof.measure"
