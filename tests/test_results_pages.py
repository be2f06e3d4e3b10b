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


def _round2_call(folder, call, rounds, prov_commit="abc"):
    raw = [{"round": i, "mlx_lm": {"decode_tok_per_s": m, "prompt_tok_per_s": 100.0},
            "fast": {"decode_tok_per_s": f, "prompt_tok_per_s": 110.0}}
           for i, (m, f) in enumerate(rounds)]
    data = {"model": "qwen3-8b", "provenance": {"device": "H200", "backend": "cuda",
                                                 "git_commit": prov_commit},
            "stages": {"rounds": {"raw": raw}}}
    (folder / call).mkdir(parents=True)
    (folder / call / "gpu_round2_qwen3-8b.json").write_text(json.dumps(data))


def test_gpu_calls_are_pooled_round_by_round(tmp_path):
    from mlxprof.lab import round2_page
    run = tmp_path / "results" / "round2"
    _round2_call(run, "call1", [(100.0, 180.0), (110.0, 187.0)])
    _round2_call(run, "call2", [(90.0, 153.0), (105.0, 178.5)])
    m = round2_page.pooled(run)["qwen3-8b"]
    assert m["ratio"].n == 4 and m["ratio"].median == 1.7        # 1.8 1.7 1.7 1.7
    assert m["calls"] == ["call1", "call2"]
    pages = results_pages.render_all(tmp_path / "results")
    assert "round2.md" in pages and "[round2](round2.md)" in pages["index.md"]
    row = next(l for l in pages["round2.md"].splitlines() if l.startswith("| qwen3-8b"))
    assert "| 2 | 4 |" in row and "1.70x" in row and ">= 1.6x | yes |" in row
