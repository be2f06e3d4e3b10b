"""experiments/gpu_round2.py runs end to end at tiny scale on the CPU (the GPU call
must not be the first place it runs), and the experiments' statistics helpers."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_gpu_round2_tiny_writes_every_stage(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "experiments" / "gpu_round2.py"),
           "--models", "qwen3-30b-a3b,smollm2-shape", "--scale", "tiny",
           "--tokens", "6", "--steps", "4", "--rounds", "2", "--repeat", "2", "--variants", "qmv_ops",
           "--loops", "pipelined", "--yardstick-variants", "qmv_ops,moe_ops",
           "--profile-tokens", "4", "--budget", "200", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_round2_summary.json").read_text())
    assert [m["model"] for m in summary["models"]] == ["qwen3-30b-a3b", "smollm2-shape"]
    for name in ("qwen3-30b-a3b", "smollm2-shape"):
        res = json.loads((tmp_path / f"gpu_round2_{name}.json").read_text())
        st = res["stages"]
        assert not any("error" in v for v in st.values() if isinstance(v, dict)), st
        assert st["determinism"]["identical"] is True
        assert len(st["determinism"]["fast"]["tokens"]) == 3
        assert st["yardstick"]["n_rows"] == 4 and "fast" in st["yardstick"]
        spread = st["yardstick"]["spread"]
        assert set(spread) == {"mlx_lm", "fast", "qmv_ops"} | ({"moe_ops"} & set(spread))
        assert abs(spread["fast"]["max"] / st["yardstick"]["fast"]["rel_max_diff"] - 1) < 1e-6
        assert st["rounds"]["n_rounds"] == 2 and len(st["rounds"]["raw"]) == 2
        assert st["rounds"]["raw"][1]["order"] == ["fast", "fast_qmv_ops", "pipelined", "mlx_lm"]
        assert st["rounds"]["variants"]["fast_qmv_ops"]["decode"]["ratio_median"] > 0
        assert st["rounds"]["loops"]["pipelined"]["decode"]["pipelined_median"] > 0
        assert st["yardstick"]["variants"]["qmv_ops"]["passes"] in (True, False)
        assert "error" in st["yardstick"]["variants"]["moe_ops"] or \
            "passes" in st["yardstick"]["variants"]["moe_ops"]   # Options.experts may be there
        lo, hi = st["rounds"]["decode"]["ratio_ci95"]
        assert lo <= st["rounds"]["decode"]["ratio_median"] <= hi
        assert st["profile"]["fast"]["ops_per_tok"] < st["profile"]["mlx_lm"]["ops_per_tok"]
        assert res["provenance"]["backend"]


def test_gpu_round2_out_of_time_skips_stages(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "experiments" / "gpu_round2.py"),
           "--models", "qwen3-8b", "--scale", "tiny", "--tokens", "4", "--steps", "2",
           "--budget", "0", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads((tmp_path / "gpu_round2_qwen3-8b.json").read_text())
    assert res["stages"]["rounds"] == {"skipped": "out of time"}


def _gpu_round2():
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "gpu_round2", ROOT / "experiments" / "gpu_round2.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ratios_are_mlxprof_measure_paired_ratios():
    from mlxprof.measure import paired_ratio
    raw = [{"mlx_lm": {"decode_tok_per_s": b, "prompt_tok_per_s": 2 * b},
            "fast": {"decode_tok_per_s": a, "prompt_tok_per_s": a}}
           for a, b in ((11.0, 10.0), (60.0, 20.0), (44.0, 40.0), (30.0, 25.0))]
    got = _gpu_round2().ratios(raw, "fast")["decode"]
    want = paired_ratio([11.0, 60.0, 44.0, 30.0], [10.0, 20.0, 40.0, 25.0])
    assert got["ratios"] == list(want.values) == [1.1, 3.0, 1.1, 1.2]
    assert got["ratio_median"] == want.median == 1.15
    assert got["ratio_ci95"] == list(want.ci) and got["ratio_ci95"][0] < got["ratio_ci95"][1]
    assert got["mlx_lm_median"] == 22.5 and got["fast_median"] == 37.0
    one = _gpu_round2().ratios(raw[:1], "fast")["prompt"]
    assert one["ratio_median"] == 0.55 and one["ratio_ci95"] == []   # no interval from one round


def test_experiments_common_doctests():
    import doctest
    import importlib.util
    spec = importlib.util.spec_from_file_location("common", ROOT / "experiments" / "common.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert doctest.testmod(mod).attempted == 3 and doctest.testmod(mod).failed == 0
    assert mod.first_diff([1, 2], [1, 2]) is None


def test_experts_timing_per_call_ms_and_paired_ratio():
    import importlib.util

    from mlxprof.measure import time_rounds
    spec = importlib.util.spec_from_file_location(
        "experts_timing", ROOT / "experiments" / "experts_timing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    secs = {"kernels": iter([9.0, 0.3, 0.2, 0.25]), "ops": iter([9.0, 0.5, 0.5, 0.5])}
    r = time_rounds({k: (lambda v=v: next(v)) for k, v in secs.items()}, rounds=3)  # 1 warm-up
    got = mod.per_call_ms(r, calls=100)
    assert got["kernels"]["median"] == 2.5 and got["ops"]["median"] == 5.0   # ms per call
    assert got["kernels"]["ci95"][0] <= 2.5 <= got["kernels"]["ci95"][1]
    assert got["kernels"]["ci95"][1] > got["kernels"]["ci95"][0]
    assert got["kernels_over_ops"]["median"] == 0.5                           # 0.6, 0.4, 0.5
    assert got["kernels_over_ops"]["ci95"][0] < 0.5 < got["kernels_over_ops"]["ci95"][1]


def test_restrict_qmv_keeps_only_the_named_projections():
    """The yardstick's qmv_* variants: cuda_qmv stays on the kept projections
    only (set here by hand: the CPU has no kernel), and "unfused" turns the
    gate_up + SwiGLU kernel off; with nothing kept the model runs as before."""
    import mlx.core as mx

    import mlxprof.lab.models as M
    from mlxprof.decode.optimize import optimize_model
    from mlxprof.decode.optimize.ffn import MLP
    from mlxprof.decode.optimize.fuse import Proj
    g = _gpu_round2()
    lm = M.load("qwen3-8b", scale="tiny", seed=0)
    fast = optimize_model(lm.model)
    x = mx.array([[1, 2, 3]])
    before = fast(x)
    projs = [(n, m) for l in fast.layers for n, m in l.named_modules() if isinstance(m, Proj)]
    for _, m in projs:
        m.cuda_qmv = True
    g.restrict_qmv(fast, ("ffn.down",), unfused=True)
    assert {n for n, m in projs if m.cuda_qmv} == {"ffn.down"}
    mlp = fast.layers[0].ffn
    assert isinstance(mlp, MLP) and mlp.fused_swiglu(mx.zeros((1, 1, 8))) is False
    g.restrict_qmv(fast, ())
    assert not any(m.cuda_qmv for _, m in projs)
    assert mx.array_equal(fast(x), before)
