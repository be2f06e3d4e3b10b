"""Per-token time split of mlx-lm's loop vs the fast loop, counting mode (GPU run).

    python3 scripts/profile_split.py --model qwen3.5-35b-a3b --scale full --out out/split.json

Alternates mlx_lm and fast runs (`--rounds` each) under mlxprof.Profiler in counting
mode (no op counting, so host_ms is not inflated), reports per loop the median over
tokens (first token left out) of wall/host/submit/blocked ms, and then counts ops per
token in one short count_ops pass per loop.
"""
from __future__ import annotations

import argparse
import json
import statistics


def profile(model, prompt, tokens, loop, **opts):
    import mlxprof
    import mlxprof.decode as G
    with mlxprof.Profiler(**opts) as prof:
        for _ in prof.track(G.stream(model, prompt, tokens, loop=loop)):
            pass
    return prof.per_token().iloc[1:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen3.5-35b-a3b")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", default="mlx_lm,fast")
    ap.add_argument("--out", default="out/profile_split.json")
    args = ap.parse_args()

    import mlxprof.lab.models as M
    from mlxprof.provenance import collect, describe

    lm = M.load(args.model, scale=args.scale, seed=0)
    prompt = lm.prompt(32, seed=0)
    loops = args.loops.split(",")
    for loop in loops:                                   # warm up (compile, JIT)
        profile(lm.model, prompt, 8, loop)
    cols = ["wall_ms", "host_ms", "submit_ms", "blocked_ms", "n_eval", "n_async_eval", "n_sync"]
    runs = {loop: [] for loop in loops}
    for _ in range(args.rounds):
        for loop in loops:
            df = profile(lm.model, prompt, args.tokens, loop)
            runs[loop].append({c: float(df[c].median()) for c in cols})
    out = {"schema": "mlxprof.profile_split/1", "model": args.model, "scale": args.scale,
           "tokens": args.tokens, "rounds": args.rounds, "provenance": collect(), "loops": {}}
    for loop in loops:
        ops = profile(lm.model, prompt, 8, loop, count_ops=True)["ops_total"].median()
        med = {c: round(statistics.median(r[c] for r in runs[loop]), 3) for c in cols}
        out["loops"][loop] = {"median_per_token": med, "ops_per_token": float(ops),
                              "rounds": runs[loop]}
        print(loop, med, "ops/token", ops, flush=True)
    print(describe(out["provenance"]))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
