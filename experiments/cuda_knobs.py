"""How MLX's CUDA-graph settings move mlx-lm decode speed (a GPU benchmark).

MLX's CUDA backend records kernels into CUDA graphs and launches one graph per
`MLX_MAX_OPS_PER_BUFFER` ops, caching instantiated graphs by topology
(`MLX_CUDA_GRAPH_CACHE_SIZE`); `MLX_USE_CUDA_GRAPHS=0` launches kernels one by one.
These are read once per process, so each setting runs in its own process:

    for env in "" "MLX_MAX_OPS_PER_BUFFER=100" "MLX_USE_CUDA_GRAPHS=0"; do
        env $env python3 experiments/cuda_knobs.py --model qwen3.5-35b-a3b --out r.jsonl
    done

Each run appends one JSON line: the settings, build time, median decode tok/s of
mlx-lm's generate_step over --reps runs after a warm-up (mlxprof.measure), with
its 95% bootstrap interval, and provenance.
"""
from __future__ import annotations

import json
import os
import time

from common import parser

KNOBS = ("MLX_MAX_OPS_PER_BUFFER", "MLX_CUDA_GRAPH_CACHE_SIZE", "MLX_USE_CUDA_GRAPHS")


def decode_tok_per_s(model, prompt, tokens: int) -> float:
    from mlx_lm.generate import generate_step
    from mlxprof import measure

    return measure.time_tokens(generate_step(prompt, model, max_tokens=tokens)).decode_tok_per_s


def main() -> None:
    ap = parser(__doc__, model="qwen3.5-35b-a3b", tokens=128, prompt=32,
                out="out/cuda_knobs.jsonl")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    import mlx.core as mx
    from mlxprof import measure
    from mlxprof.lab.models.configs import model_config
    from mlxprof.lab.models.synthetic import build
    from mlxprof.provenance import collect

    t0 = time.perf_counter()
    model, _ = build(model_config(args.model, args.scale), seed=0)
    build_s = time.perf_counter() - t0
    prompt = mx.random.randint(0, 1000, (args.prompt,), key=mx.random.key(0))
    rounds = measure.time_rounds(  # the warm-up fills the kernel and graph caches
        {"mlx_lm": lambda: decode_tok_per_s(model, prompt, args.tokens)},
        rounds=args.reps, warmup=1)
    m = rounds.measurement("mlx_lm", unit="tok/s")
    row = {
        "model": args.model, "scale": args.scale, "tokens": args.tokens,
        "settings": {k: os.environ.get(k) for k in KNOBS},
        "build_s": round(build_s, 2),
        "decode_tok_per_s": list(m.values), "median_tok_per_s": m.median,
        "ci_tok_per_s": list(m.ci), "noise": m.warning,
        "provenance": collect(),
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps({k: row[k] for k in ("model", "settings", "build_s", "median_tok_per_s")}))


if __name__ == "__main__":
    main()
