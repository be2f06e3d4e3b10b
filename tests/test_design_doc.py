"""docs/design.md draws the imports that exist: its edge list is the real import graph,
and its wing diagram names every module of the package."""
import re
from pathlib import Path

import grimp

DOC = Path(__file__).resolve().parents[1] / "docs" / "design.md"


def _unit(module: str) -> str:
    """A module of the profiler wing, or one of the two wings as a whole."""
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("decode", "lab"):
        return ".".join(parts[:2])
    return module


def real_edges() -> list[str]:
    graph = grimp.build_graph("mlxprof")
    edges = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = _unit(module), _unit(imported)
            if a != b and a != "mlxprof":  # the package's lazy __getattr__ re-exports
                edges.add(f"{a} -> {b}")
    return sorted(edges)


def documented_edges() -> list[str]:
    block = re.search(r"<!-- imports -->\n```\n(.*?)```", DOC.read_text(), re.S)
    assert block, "docs/design.md lost its import list"
    return sorted(line.strip() for line in block[1].splitlines() if "->" in line)


def test_design_doc_lists_the_real_imports():
    real, doc = real_edges(), documented_edges()
    assert doc == real, ("docs/design.md's import list differs from the code; "
                         "replace it with:\n" + "\n".join(real))


def diagram() -> str:
    """The indented picture under "Three wings", without the prose around it."""
    section = DOC.read_text().split("## Three wings", 1)[1].split("An arrow is", 1)[0]
    return "\n".join(line for line in section.splitlines() if line.startswith("    "))


def test_the_wing_diagram_names_every_module():
    picture = diagram()
    modules = grimp.build_graph("mlxprof").modules
    missing = sorted(m for m in modules if m != "mlxprof" and m not in picture
                     and not re.search(rf"(?<![\w.]){re.escape(m.rsplit('.', 1)[1])}\b", picture))
    assert not missing, f"docs/design.md's diagram does not name {missing}"


if __name__ == "__main__":  # python tests/test_design_doc.py rewrites the list
    text = DOC.read_text()
    start = text.index("<!-- imports -->\n```\n") + len("<!-- imports -->\n```\n")
    end = text.index("```", start)
    DOC.write_text(text[:start] + "\n".join(real_edges()) + "\n" + text[end:])
