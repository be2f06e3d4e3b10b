"""docs/results/ is generated from data/results/: a page and its JSON never disagree."""
import json

from mlxprof.lab import results_pages
from mlxprof.lab.results import results_dir


def test_every_page_matches_its_json():
    bad = results_pages.stale()
    assert not bad, (f"docs/results/ is stale for {bad}: run "
                     f"`{results_pages.COMMAND}` and commit the pages")


def test_every_stored_run_has_a_page():
    root = results_dir()
    pages = results_pages.render_all(root)
    for path in results_pages._sources(root):
        assert results_pages.page_name(path, root) in pages
        assert f"[{path.relative_to(root).as_posix()}]" in pages["index.md"]


def test_a_changed_number_makes_the_page_stale(tmp_path):
    root = tmp_path / "results"
    root.mkdir()
    raw = [{"model": "m", "scale": "tiny", "loop": lp, "rep": rep, "decode_tok_per_s": tps,
            "prompt_tok_per_s": 5.0}
           for rep, (a, b) in enumerate([(10.0, 20.0), (11.0, 21.0), (12.0, 25.0)])
           for lp, tps in (("a", a), ("b", b))]
    run = {"schema": "mlxprof.bench/1", "provenance": {"device": "X", "backend": "cpu"},
           "config": {"baseline": "a", "models": ["m"], "loops": ["a", "b"]},
           "rows": [{"model": "m", "scale": "tiny", "loop": lp, "reps": 3,
                     "decode_tok_per_s": 0.0, "prompt_tok_per_s": 5.0} for lp in "ab"],
           "raw": raw}
    (root / "run.json").write_text(json.dumps(run))
    out = tmp_path / "pages"
    results_pages.write(out, root)
    assert results_pages.stale(out, root) == []
    assert "| m | b | 3 | 21.0 [20.0-25.0]* | 2.00x [1.91-2.08] |" in (out / "run.md").read_text()
    run["raw"][1]["decode_tok_per_s"] = 30.0
    (root / "run.json").write_text(json.dumps(run))
    assert results_pages.stale(out, root) == ["run.md"]
