"""Time of cuda_experts' two kernels vs MLX's ops for one MoE block at one token (GPU).

    python3 experiments/experts_timing.py --out out/experts_timing.json [--model qwen3.5-35b-a3b]

Each contender runs --calls independent one-token calls in one graph, evaluated
once (so device time dominates), for --rounds interleaved rounds; the JSON
gives milliseconds per call and the paired ratio kernels / ops, each with its
95% interval. First on random weights at the model's MoE shape
(as cuda_experts.self_check draws them), then, with --model, on that model's
first MoE block (its own weights): kernels vs the same block with
experts_kernel off.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlx.core as mx  # noqa: E402

from mlxprof.decode.kernels import cuda_experts as ce  # noqa: E402
from mlxprof.measure import time_rounds  # noqa: E402

SHAPES = {"qwen3.5-35b-a3b": (256, 8, 2048, 512, True), "qwen3-30b-a3b": (128, 8, 2048, 768, False)}


def random_block(n_experts, k, dim, n, shared, gs=64):
    ks = mx.random.split(mx.random.key(3), 8)
    q = lambda key, shape: ce._quantized(key, shape, gs)
    b = {"gu": q(ks[0], (n_experts, 2 * n, dim)), "dn": q(ks[1], (n_experts, dim, n)),
         "sgu": q(ks[2], (2 * n, dim)) if shared else None,
         "sdn": q(ks[3], (dim, n)) if shared else None,
         "x": mx.random.normal((1, 1, dim), key=ks[4]).astype(mx.bfloat16),
         "h": mx.random.normal((1, 1, dim), key=ks[5]).astype(mx.bfloat16),
         "inds": mx.random.permutation(n_experts, key=ks[6])[:k].astype(mx.uint32).reshape(1, 1, k),
         "scores": mx.full((1, 1, k), 1.0 / k, mx.bfloat16),
         "sg": mx.full((1, 1, 1), 0.5, mx.bfloat16) if shared else None,
         "w": mx.ones((dim,), mx.bfloat16), "gs": gs}
    mx.eval([v for v in b.values() if isinstance(v, (mx.array, tuple))])
    return b


def kernels_call(b):
    act = ce.gate_up(b["x"], b["inds"], b["gu"], b["sgu"], b["gs"])
    out = ce.down_combine(act, b["inds"], b["scores"], b["sg"], b["h"], b["dn"], b["sdn"],
                          b["gs"])
    return out, mx.fast.rms_norm(out, b["w"], 1e-6)


def ops_call(b):
    gs, k = b["gs"], b["inds"].shape[-1]
    x = mx.expand_dims(b["x"], (-2, -3))
    gu = mx.gather_qmm(x, *b["gu"], rhs_indices=b["inds"], transpose=True, group_size=gs, bits=4)
    g, u = mx.split(gu, 2, axis=-1)
    a = (g * mx.sigmoid(g)) * u
    y = mx.gather_qmm(a, *b["dn"], rhs_indices=b["inds"], transpose=True, group_size=gs,
                      bits=4).squeeze(-2)
    r = (y * b["scores"][..., None]).sum(axis=-2)
    if b["sgu"] is not None:
        sg, su = mx.split(mx.quantized_matmul(b["x"], *b["sgu"], transpose=True,
                                              group_size=gs, bits=4), 2, axis=-1)
        s = mx.quantized_matmul((sg * mx.sigmoid(sg)) * su, *b["sdn"], transpose=True,
                                group_size=gs, bits=4)
        r = r + b["sg"] * s
    h = b["h"] + r
    return h, mx.fast.rms_norm(h, b["w"], 1e-6)


def per_call_ms(r, calls) -> dict:
    """{name: {median, ci95}} in ms per call from time_rounds' Measurements, and
    "kernels_over_ops": the paired ratio kernels / ops (same rounds; < 1: kernels faster)."""
    out = {k: {"median": r[k].median * 1e3 / calls,
               "ci95": [c * 1e3 / calls for c in r[k].ci]} for k in r.results}
    ratio = r.ratio("kernels", "ops")
    return {**out, "kernels_over_ops": {"median": ratio.median, "ci95": list(ratio.ci)}}


def batch(fn, calls):
    return lambda: mx.eval([fn() for _ in range(calls)])


def model_block(name):
    import mlxprof.lab.models as M
    from mlxprof.decode.optimize import optimize_model
    lm = M.load(name, scale="full", seed=0)
    fast = optimize_model(lm.model)
    moe = next(l.ffn for l in fast.layers if hasattr(l.ffn, "experts_kernel"))
    x = mx.random.normal((1, 1, moe.down.weight.shape[1])).astype(mx.bfloat16)
    norm = (mx.ones((x.shape[-1],), mx.bfloat16), 1e-6)
    mx.eval(x, norm[0])
    on = moe.experts_kernel

    def run(kernel):
        def f():
            moe.experts_kernel = kernel
            return moe.add_norm_to(x, x, *norm, cuda=True)
        return f
    return lm, moe, on, run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="qwen3.5-35b-a3b", choices=list(SHAPES))
    ap.add_argument("--model", default="")
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="out/experts_timing.json")
    args = ap.parse_args()
    from mlxprof.provenance import collect
    out = {"provenance": collect(), "args": vars(args)}
    b = random_block(*SHAPES[args.shape])
    act = ce.gate_up(b["x"], b["inds"], b["gu"], b["sgu"], b["gs"])
    mx.eval(act)
    fns = {"kernels": batch(lambda: kernels_call(b), args.calls),
           "ops": batch(lambda: ops_call(b), args.calls),
           "gate_up_kernel": batch(lambda: ce.gate_up(b["x"], b["inds"], b["gu"], b["sgu"],
                                                      b["gs"]), args.calls),
           "down_no_norm": batch(lambda: ce.down_combine(
               act, b["inds"], b["scores"], b["sg"], b["h"], b["dn"], b["sdn"], b["gs"]),
               args.calls)}
    r = time_rounds(fns, rounds=args.rounds, rotate=True)
    out["random_ms_per_call"] = per_call_ms(r, args.calls)
    print("random weights, ms per call:", out["random_ms_per_call"], flush=True)
    if args.model:
        lm, moe, on, run = model_block(args.model)
        out["model_experts_kernel_on"] = on
        if on:
            fns = {"kernels": batch(run(True), args.calls), "ops": batch(run(False), args.calls)}
            r = time_rounds(fns, rounds=args.rounds, rotate=True)
            out["model_ms_per_call"] = per_call_ms(r, args.calls)
            moe.experts_kernel = True
            print("model block, ms per call:", out["model_ms_per_call"], flush=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
