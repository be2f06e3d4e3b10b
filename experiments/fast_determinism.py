"""Does `fast` give the same greedy tokens every run? Which lever makes it differ (GPU).

    python3 experiments/fast_determinism.py --model qwen3-8b --scale full --tokens 300 \
        --out out/fast_determinism.json

Issue 13 saw `fast`'s first (warm-up) run on the Qwen3-8B shape differ from the later
runs from token ~230 on. This runs mlx-lm's loop and several `optimize_model` variants
`--repeat` times each on the same prompt, in this order, and records where each run first
differs from the variant's first run. A fresh `optimize_model` per variant separates a
first-run-of-the-process effect (kernel JIT) from a first-trace-of-the-model effect.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import first_diff, parser  # noqa: E402  (experiments/ is on sys.path)

VARIANTS = {
    "default": {},
    "default_again": {},
    "no_kv_in_compile": {"kv_in_compile": False},
    "no_compile": {"compile": False},
    "kernels_off": {"add_norm": "ops", "qk_norm_rope": "ops", "qmv": "ops"},
}


def runs(model, prompt, n: int, loop: str, repeat: int) -> dict:
    from mlxprof import decode
    toks = [list(decode.stream(model, prompt, n, loop=loop)) for _ in range(repeat)]
    return {"first_diff_vs_run0": [first_diff(toks[0], t) for t in toks[1:]],
            "identical": all(t == toks[0] for t in toks), "tokens": toks}


def main() -> None:
    ap = parser(__doc__, model="qwen3-8b", tokens=300, prompt=32,
                out="out/fast_determinism.json")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--plain-loops", default="",
                    help="comma list of loops to also run on the unoptimized model, "
                         "e.g. sync,async,pipelined")
    ap.add_argument("--fast-loop", default="pipelined",
                    help="the loop the optimized variants run in (e.g. sync)")
    args = ap.parse_args()

    from mlxprof import provenance
    from mlxprof.decode.optimize import Options, optimize_model
    from mlxprof.lab import models

    lm = models.load(args.model, scale=args.scale, seed=0)
    prompt = lm.prompt(args.prompt)
    out = {"provenance": provenance.collect(), "config": vars(args), "loops": {}}
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)

    def save():
        path.write_text(json.dumps(out, indent=1))

    out["loops"]["mlx_lm"] = runs(lm.model, prompt, args.tokens, "mlx_lm", args.repeat)
    print("mlx_lm", {k: v for k, v in out["loops"]["mlx_lm"].items() if k != "tokens"},
          flush=True)
    save()
    ref = out["loops"]["mlx_lm"]["tokens"][-1]
    for loop in filter(None, args.plain_loops.split(",")):
        r = runs(lm.model, prompt, args.tokens, loop, args.repeat)
        out["loops"][f"plain_{loop}"] = r
        print(f"plain_{loop}", {k: v for k, v in r.items() if k != "tokens"}, flush=True)
        save()
    for name in filter(None, args.variants.split(",")):
        fast = optimize_model(lm.model, Options(**VARIANTS[name]))
        r = runs(fast, prompt, args.tokens, args.fast_loop, args.repeat)
        r["first_diff_vs_mlx_lm"] = first_diff(ref, r["tokens"][-1])
        out["loops"][name] = r
        print(name, {k: v for k, v in r.items() if k != "tokens"}, flush=True)
        save()


if __name__ == "__main__":
    main()
