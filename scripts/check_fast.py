"""Teacher-forced logits of optimized models vs mlx-lm's, on one model (GPU check).

    python3 scripts/check_fast.py --model qwen3.5-35b-a3b --scale full --out r.json

For each variant of mlxprof.optimize.Options: max |diff| / max |logit| and argmax
agreement over the rows of a greedy mlx-lm continuation (the bar: <= 2%, >= 95%),
and the first step where greedy tokens differ.
"""
from __future__ import annotations

import argparse
import json
import time

VARIANTS = {
    "default": {},
    "gdn_ops": {"gated_delta": "ops"},
    "no_compile": {"compile": False},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--out", default="out/check_fast.json")
    args = ap.parse_args()

    import mlx.core as mx
    import mlxprof.generate as G
    import mlxprof.models as M
    from mlxprof.optimize import Options, optimize_model
    from mlxprof.provenance import collect

    lm = M.load(args.model, scale=args.scale, seed=0)
    prompt = lm.prompt(32, seed=0)
    ref_tokens = list(G.stream(lm.model, prompt, args.tokens, loop="mlx_lm"))
    feed = mx.array(prompt.tolist() + ref_tokens)
    ref = G.teacher_forced_logits(lm.model, feed, n_prompt=len(prompt))
    out = {"model": args.model, "scale": args.scale, "tokens": args.tokens,
           "provenance": collect(), "variants": {}}
    for name, opts in VARIANTS.items():
        t0 = time.perf_counter()
        fast = optimize_model(lm.model, Options(**opts))
        got = G.teacher_forced_logits(fast, feed, n_prompt=len(prompt))
        cmp = G.compare_logits(ref, got)
        toks = list(G.stream(fast, prompt, args.tokens, loop="pipelined"))
        first = next((i for i, (a, b) in enumerate(zip(ref_tokens, toks)) if a != b), None)
        out["variants"][name] = {
            "options": opts, "rel_max_diff": cmp.rel_max_diff,
            "argmax_agreement": cmp.argmax_agreement, "ok": cmp.ok,
            "greedy_first_mismatch": first, "seconds": round(time.perf_counter() - t0, 1)}
        print(name, out["variants"][name], flush=True)
        del fast
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
