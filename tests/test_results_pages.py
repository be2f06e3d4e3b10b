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


def _round2_call(folder, call, rounds, prov_commit="abc", pipelined=(), yardstick=None):
    """A fake gpu_round2 JSON: rounds (mlx_lm, fast) tok/s, optionally pipelined tok/s."""
    raw = [{"round": i, "mlx_lm": {"decode_tok_per_s": m, "prompt_tok_per_s": 100.0},
            "fast": {"decode_tok_per_s": f, "prompt_tok_per_s": 110.0}}
           for i, (m, f) in enumerate(rounds)]
    for r, p in zip(raw, pipelined):
        r["pipelined"] = {"decode_tok_per_s": p, "prompt_tok_per_s": 100.0}
    data = {"model": "qwen3-8b", "provenance": {"device": "H200", "backend": "cuda",
                                                 "git_commit": prov_commit},
            "stages": {"rounds": {"raw": raw}, **({"yardstick": yardstick} if yardstick else {})}}
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


def _dist(diff, agree, **more):
    return {"rel_max_diff": diff, "argmax_agreement": agree, "agreement_with_mlx_lm": 1.0,
            **more}


def test_a_later_run_pools_pipelined_rounds_and_lists_yardstick_variants(tmp_path):
    from mlxprof.lab import round2_page
    run = tmp_path / "results" / "round3"
    yard = {"n_rows": 4, "mlx_lm": _dist(0.01, 1.0), "fast": _dist(0.011, 1.0, passes=True),
            "ok": True, "conditioned": True,
            "variants": {"qmv_ops": _dist(0.012, 0.75, passes=False),
                         "moe_ops": {"error": "TypeError: no field experts"}},
            "spread": {"mlx_lm": {"row_p50": 0.004, "mean": 0.0011},
                       "qmv_ops": {"row_p50": 0.005, "mean": 0.0012}}}
    _round2_call(run, "call1", [(100.0, 180.0), (110.0, 187.0)], pipelined=(96.0, 110.0),
                 yardstick=yard)
    _round2_call(run, "call2", [(90.0, 153.0), (105.0, 178.5)])
    m = round2_page.pooled(run)["qwen3-8b"]
    assert m["ratio"].n == 4 and m["ratio"].median == 1.7
    assert m["pipelined_ratio"].n == 2 and m["pipelined_ratio"].median == 0.98   # 0.96, 1.0
    assert [c for c, _ in m["yardstick_variants"]] == ["call1"]
    page = results_pages.render_all(tmp_path / "results")["round3.md"]
    assert page.startswith("# `fast` vs mlx-lm on the GPU: round3")
    row = next(l for l in page.splitlines() if l.startswith("| qwen3-8b"))
    assert "| >= 1.6x | yes | 0.98x [0.96-1.00]* |" in row
    assert "fast 0.0110 / 1.000 (4 steps): passes" in row
    assert ("- qwen3-8b, call1 (4 steps): mlx_lm 0.0100 / 1.000; qmv_ops 0.0120 / 0.750 "
            "FAILS; moe_ops not built (TypeError: no field experts). Typical differences (median "
            "over the steps of each step's max diff / mean diff): mlx_lm 0.0040 / 0.00110; "
            "qmv_ops 0.0050 / 0.00120.") in page


def test_a_run_without_pipelined_says_so(tmp_path):
    _round2_call(tmp_path / "round2", "call1", [(100.0, 180.0), (110.0, 187.0)])
    from mlxprof.lab import round2_page
    page = round2_page.render(tmp_path / "round2", "round2")
    assert "| >= 1.6x | yes | - |" in page and "Yardstick variants" not in page


def test_values_page_tells_a_stored_interval_from_a_list_of_values(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"ratio_ci95": [1.2, 1.5], "ratios": [1.0, 3.0, 1.3],
                                "ci_ms": [2.0, 2.5], "pair": [1, 2], "decimal": [4.0, 5.0, 6.0]}))
    page = results_pages.render_file(path)
    assert results_pages.VALUES_NOTE in page
    assert "| ratio_ci95 | interval 1.2 to 1.5 (as stored) |" in page
    assert "| ci_ms | interval 2 to 2.5 (as stored) |" in page
    assert "| ratios | median 1.3 (min-max 1-3, n=3) |" in page
    assert "| pair | median 1.5 (min-max 1-2, n=2) |" in page          # no ci word: values
    assert "| decimal | median 5 (min-max 4-6, n=3) |" in page


def test_a_run_page_shows_its_note_variant_ratios_and_calls(tmp_path):
    from mlxprof.lab import round2_page
    run = tmp_path / "round3"
    _round2_call(run, "call1", [(100.0, 180.0), (110.0, 187.0)], prov_commit="c1")
    _round2_call(run, "call2", [(90.0, 153.0)], prov_commit="c2")
    path = run / "call1" / "gpu_round2_qwen3-8b.json"
    data = json.loads(path.read_text())
    data["provenance"].update(command="gpu_round2.py --variants qmv_ops", date="2025-01-02T03:04")
    for r, v in zip(data["stages"]["rounds"]["raw"], (120.0, 99.0)):
        r["fast_qmv_ops"] = {"decode_tok_per_s": v, "prompt_tok_per_s": 100.0}
    path.write_text(json.dumps(data))
    (run / "NOTE.md").write_text("What this run measures.\n")
    page = round2_page.render(run, "round3")
    lines = page.splitlines()
    assert lines.index("What this run measures.") < lines.index(
        next(l for l in lines if l.startswith("| model |")))
    row = next(l for l in lines if l.startswith("| qwen3-8b"))
    assert "| fast_qmv_ops 1.05x [0.90-1.20]* |" in row                  # 1.2, 0.9: paired
    assert "from the first call that ran that stage" in page
    calls = lines[lines.index("## Calls") + 2:]
    assert calls == ["- call1: commit c1, 2025-01-02T03:04, `gpu_round2.py --variants qmv_ops`",
                     "- call2: commit c2, ?, command not recorded"]
