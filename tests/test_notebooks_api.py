"""Notebooks use mlxprof's public API only: public modules, names in their __all__.

The public modules are listed here on purpose (a new one is a decision, not an
accident): the profiler (`mlxprof`, its figures' `widgets`, `graph`,
`provenance`, `device_clock`), the decode wing (`mlxprof.decode`, its optimizer
`mlxprof.decode.optimize`) and the lab
(`mlxprof.lab` with `models`, `bench`, `results`, `opcount`, `roofline`, `sharded`, `launch`). A
notebook fails this test when it imports another mlxprof module (e.g.
`mlxprof.lab.models.synthetic`) or a name its module does not list in `__all__`
(underscore names never are).
"""
import ast
import importlib
import json
from pathlib import Path

import pytest

PUBLIC = {"mlxprof", "mlxprof.widgets", "mlxprof.graph", "mlxprof.provenance",
          "mlxprof.device_clock", "mlxprof.decode", "mlxprof.decode.optimize", "mlxprof.lab",
          "mlxprof.lab.models",
          "mlxprof.lab.bench", "mlxprof.lab.results", "mlxprof.lab.opcount",
          "mlxprof.lab.roofline", "mlxprof.lab.sharded", "mlxprof.lab.launch"}
NOTEBOOKS = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))


def code_of(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    lines = []
    for c in cells:
        if c["cell_type"] == "code":
            src = "".join(c["source"])
            if src.lstrip().startswith("%%"):
                continue                      # a cell magic: its body is not plain Python
            lines += ["" if l.lstrip().startswith(("%", "!")) else l for l in src.splitlines()]
    return "\n".join(lines)


def exported(module: str) -> set:
    mod = importlib.import_module(module)
    names = set(getattr(mod, "__all__", ()))
    return names | {m.rsplit(".", 1)[1] for m in PUBLIC if "." in m and m.rsplit(".", 1)[0] == module}


def violations(source: str) -> list[str]:
    """Each use of a non-public mlxprof module or name, as 'line N: what'."""
    bad, modules = [], {}                      # local name -> public module it is
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] != "mlxprof":
                    continue
                if a.name not in PUBLIC:
                    bad.append(f"line {node.lineno}: import {a.name}")
                modules[a.asname or "mlxprof"] = a.name if a.asname else "mlxprof"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mlxprof":
            if node.module not in PUBLIC:
                bad.append(f"line {node.lineno}: from {node.module} import ...")
                continue
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if full in PUBLIC:
                    modules[a.asname or a.name] = full
                elif a.name not in exported(node.module):
                    bad.append(f"line {node.lineno}: from {node.module} import {a.name}")
    for node in ast.walk(ast.parse(source)):  # attribute chains on module names
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            mod = modules.get(node.value.id)
            if mod is None:
                continue
            full = f"{mod}.{node.attr}"
            dunder = node.attr.startswith("__") and node.attr.endswith("__")
            if not dunder and full not in PUBLIC and node.attr not in exported(mod):
                bad.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute):
            chain = ast.unparse(node.value)
            head = chain.split(".")[0]
            if head in modules:
                full = modules[head] + chain[len(head):]
                if full.startswith("mlxprof") and full in PUBLIC and \
                        node.attr not in exported(full) and f"{full}.{node.attr}" not in PUBLIC:
                    bad.append(f"line {node.lineno}: {chain}.{node.attr}")
    return sorted(set(bad))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_uses_public_api_only(path):
    assert violations(code_of(path)) == []


def test_the_check_catches_internal_paths_and_private_names():
    src = ("from mlxprof.lab.models.synthetic import build\n"
           "from mlxprof.lab.models import _load_synthetic\n"
           "import mlxprof.lab.models\n"
           "mlxprof.lab.models.configs.spec('qwen3-8b')\n"
           "from mlxprof import decode\n"
           "decode._prefill\n")
    bad = violations(src)
    assert len(bad) == 4, bad
    assert violations("import mlxprof\nfrom mlxprof.lab import results\nresults.gpu_table()\n"
                      "mlxprof.Profiler()\nmlxprof.lab.models.load('x')\n") == []
