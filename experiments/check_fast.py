"""Teacher-forced logits of optimized models vs mlx-lm's, on one model (GPU check).

    python3 experiments/check_fast.py --model qwen3.5-35b-a3b --scale full --out r.json

For each variant of mlxprof.decode.optimize.Options, the correctness yardstick
(mlxprof.decode.accuracy) over the rows of a greedy mlx-lm continuation: its
distance to the same model run in float32 activations (max |diff| / max |logit|,
argmax agreement) against mlx-lm's own; the bar: at most 1.1x mlx-lm's distance
and at most one point less argmax agreement. Also the first step where greedy
tokens differ from mlx-lm's.
"""
from __future__ import annotations

import json

from common import parser

VARIANTS = {
    "default": {},
    "gdn_ops": {"gated_delta": "ops"},
    "gdn_ops_no_merge": {"gated_delta": "ops", "merge_qk_norm": False},
    "no_compile": {"compile": False},
    "no_compile_gdn_ops": {"compile": False, "gated_delta": "ops"},
    "general_path": {"compile": False, "decode_path": False},
    "gdn_mlx_lm": {"gated_delta": "mlx_lm"},
    "no_compile_gdn_mlx_lm": {"compile": False, "gated_delta": "mlx_lm"},
    # decode path on one kind of layer only (the other runs mlx-lm's math)
    "no_compile_gdn_only": {"compile": False, "gated_delta": "ops", "_only": "ssm"},
    "no_compile_attn_only": {"compile": False, "_only": "fa"},
    "no_compile_gdn_mlx_lm_only": {"compile": False, "gated_delta": "mlx_lm",
                                   "_only": "ssm"},
    "gdn_mlx_lm_attn_only": {"gated_delta": "mlx_lm", "_only": "fa"},
    "gdn_mlx_lm_gdn_only": {"gated_delta": "mlx_lm", "_only": "ssm"},
    # the custom CUDA kernels (default on a CUDA GPU), one family at a time
    "prev_fast": {"gated_delta": "cuda", "router": "exact", "combine": "exact"},
    "moe_kernels": {"gated_delta": "cuda"},
    "gdn_fused": {"router": "exact", "combine": "exact"},
}


def restrict(model, kind):
    """Use the decode path only on layers of mask kind `kind` ("ssm" / "fa")."""
    for layer in model.layers:
        if layer.mask_kind != kind:
            layer.can_step = lambda cache, mask: False


def timelines(model, prompt, tokens, loop, runs=2):
    """Per-token timing of `runs` greedy runs: median ms, spikes and decode tok/s."""
    import mlxprof.decode as G
    from mlxprof import measure
    out = {"timeline": [], "decode_tok_per_s": []}
    for _ in range(runs):
        t = measure.time_tokens(G.stream(model, prompt, tokens, loop=loop))
        times = [t.ttft_s] + [g / 1e3 for g in t.gaps().values]  # first: with the prefill
        out["timeline"].append(spikes(times))
        out["decode_tok_per_s"].append(round(t.decode_tok_per_s, 1))
    return out


def spikes(times, factor=3.0):
    """Steps (after the first) slower than factor x the median, with ms."""
    import statistics
    med = statistics.median(times[1:])
    return {"median_ms": round(med * 1e3, 3),
            "spikes": [(i, round(x * 1e3, 1)) for i, x in enumerate(times)
                       if i and x > factor * med]}


def check_variant(model, name, prompt, feed, f32, ref, ref_tokens, args) -> dict:
    """One variant against the yardstick (float32 logits) and mlx-lm's greedy tokens."""
    import mlxprof.decode as G
    from mlxprof.decode.accuracy import judge
    from mlxprof.decode.optimize import Options, optimize_model

    opts = dict(VARIANTS[name])
    only = opts.pop("_only", None)
    fast = optimize_model(model, Options(**opts))
    if only:
        restrict(fast, only)
    got = G.teacher_forced_logits(fast, feed, n_prompt=len(prompt))
    y = judge(f32, ref, {name: got})
    toks = list(G.stream(fast, prompt, args.tokens, loop="pipelined"))
    first = next((i for i, (a, b) in enumerate(zip(ref_tokens, toks)) if a != b), None)
    rec = {"options": dict(opts, **({"decode_path_layers": only} if only else {})),
           "vs_float32": y.candidates[name].__dict__, "ok": y.passes(name),
           "greedy_first_mismatch": first}
    if args.timeline:
        rec.update(timelines(fast, prompt, args.timeline, "pipelined"))
    return rec


def main() -> None:
    ap = parser(__doc__, model="qwen3.5-35b-a3b", tokens=64, out="out/check_fast.json")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--timeline", type=int, default=0,
                    help="also time each token of N-token runs (mlx_lm, fast, and "
                         "each variant), twice, to find recompilation spikes")
    args = ap.parse_args()

    import mlxprof.decode as G
    from mlxprof.decode.accuracy import float32_logits, judge, teacher_forced_tokens
    import mlxprof.lab.models as M
    from mlxprof.provenance import collect

    lm = M.load(args.model, scale=args.scale, seed=0)
    prompt = lm.prompt(32, seed=0)
    feed = teacher_forced_tokens(lm.model, prompt, args.tokens + 1)
    ref_tokens = feed[len(prompt):].tolist()
    ref = G.teacher_forced_logits(lm.model, feed, n_prompt=len(prompt))
    f32 = float32_logits(lm.model, feed, n_prompt=len(prompt))
    out = {"model": args.model, "scale": args.scale, "tokens": args.tokens,
           "provenance": collect(), "variants": {}, "kernels": picked(lm.model)}
    print("kernels", out["kernels"], flush=True)
    out["mlx_lm_vs_float32"] = judge(f32, ref, {}).reference.__dict__
    if args.timeline:
        out["mlx_lm"] = timelines(lm.model, prompt, args.timeline, "mlx_lm")
        print("mlx_lm", out["mlx_lm"], flush=True)
    for name in args.variants.split(","):
        out["variants"][name] = check_variant(lm.model, name, prompt, feed, f32, ref,
                                              ref_tokens, args)
        print(name, out["variants"][name], flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


def picked(model) -> dict:
    """What the "auto" kernel options chose here, and the kernels' self-checks."""
    from check_kernels import self_checks
    from mlxprof.decode.optimize import optimize_model
    from mlxprof.decode.kernels.cuda_common import on_cuda
    fast = optimize_model(model)
    out = {"gated_delta": sorted({l.mixer.recurrence for l in fast.layers
                                  if hasattr(l.mixer, "recurrence")}),
           "router_combine": sorted({(l.ffn.router_mode, l.ffn.combine) for l in fast.layers
                                     if hasattr(l.ffn, "router_mode")}),
           "add_norm_kernel": sorted({l.cuda_norm for l in fast.layers}),
           "qk_norm_rope_kernel": sorted({l.mixer.cuda_rope for l in fast.layers
                                          if hasattr(l.mixer, "cuda_rope")})}
    if on_cuda():
        out["self_checks"] = self_checks(fast)
    return out


if __name__ == "__main__":
    main()
