"""Per-token time split of mlx-lm's loop vs the fast loop, counting mode (GPU run).

    python3 experiments/profile_split.py --model qwen3.5-35b-a3b --scale full --out out/split.json

Alternates mlx_lm and fast runs (`--rounds` interleaved rounds after a warm-up,
mlxprof.measure.time_rounds) under mlxprof.Profiler in counting mode (no op
counting, so host_ms is not inflated); per run the median over tokens (first
token left out) of wall/host/submit/blocked ms; per loop the median over rounds
with its 95% bootstrap interval. Then counts ops per token in one short
count_ops pass per loop.
"""
from __future__ import annotations

import json
from functools import partial

from common import parser


def profile(model, prompt, tokens, loop, **opts):
    import mlxprof
    import mlxprof.decode as G
    with mlxprof.Profiler(**opts) as prof:
        for _ in prof.track(G.stream(model, prompt, tokens, loop=loop)):
            pass
    return prof.per_token().iloc[1:]


def main() -> None:
    ap = parser(__doc__, model="qwen3.5-35b-a3b", tokens=128, out="out/profile_split.json")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", default="mlx_lm,fast")
    args = ap.parse_args()

    import mlxprof.lab.models as M
    from mlxprof import measure
    from mlxprof.provenance import collect, describe

    lm = M.load(args.model, scale=args.scale, seed=0)
    prompt = lm.prompt(32, seed=0)
    loops = args.loops.split(",")
    cols = ["wall_ms", "host_ms", "submit_ms", "blocked_ms", "n_eval", "n_async_eval", "n_sync"]

    def medians(loop):
        df = profile(lm.model, prompt, args.tokens, loop)
        return {c: float(df[c].median()) for c in cols}

    rounds = measure.time_rounds({loop: partial(medians, loop) for loop in loops},
                                 rounds=args.rounds, warmup=1)
    out = {"schema": "mlxprof.profile_split/1", "model": args.model, "scale": args.scale,
           "tokens": args.tokens, "rounds": args.rounds, "provenance": collect(), "loops": {}}
    for loop in loops:
        ops = profile(lm.model, prompt, 8, loop, count_ops=True)["ops_total"].median()
        stats = {c: rounds.measurement(loop, c, label=f"{loop} {c}") for c in cols}
        med = {c: round(m.median, 3) for c, m in stats.items()}
        out["loops"][loop] = {"median_per_token": med, "ops_per_token": float(ops),
                              "ci_per_token": {c: [round(x, 3) for x in m.ci]
                                               for c, m in stats.items()},
                              "rounds": rounds.results[loop]}
        print(loop, med, "ops/token", ops, flush=True)
        print(" ", stats["wall_ms"], flush=True)
    print(describe(out["provenance"]))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
