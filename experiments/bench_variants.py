"""Bench optimize_model() variants side by side with mlx-lm (GPU experiment).

    python3 experiments/bench_variants.py --models qwen3.5-35b-a3b --scale full \
        --tokens 256 --reps 5 --out out/variants.json

Registers one loop per variant, `fast_<name>` (the pipelined loop on
`optimize_model(model, **options)`), then runs `mlxprof bench` with them and
mlx_lm; `--variants a,b` picks some; every other argument goes to
`mlxprof bench` unchanged.
"""
from __future__ import annotations

import sys
from functools import partial

VARIANTS = {
    # the custom CUDA kernels one family at a time; "prev" = the fast loop
    # before them (the recurrence kernel only)
    "prev": {"gated_delta": "cuda", "router": "exact", "combine": "exact"},
    "moe_kernels": {"gated_delta": "cuda"},
    "gdn_fused": {"router": "exact", "combine": "exact"},
    "shared_in_switch": {"shared_in_switch": True},
    # the add + RMSNorm and q/k norm + RoPE kernels left out
    "no_norm_kernels": {"add_norm": "ops", "qk_norm_rope": "ops"},
    # MLX's quantized_matmul for the one-row projections instead of cuda_qmv
    "no_qmv": {"qmv": "ops"},
    # cuda_qmv only for the dense MLPs' gate_up (with its SwiGLU in the kernel)
    "qmv_swiglu": {"qmv": "swiglu"},
}


def main() -> int:
    from mlxprof import cli, decode as generate
    from mlxprof.decode.optimize import optimize_model

    argv = sys.argv[1:]
    pick = list(VARIANTS)
    if "--variants" in argv:              # ours; the rest goes to mlxprof bench
        i = argv.index("--variants")
        pick, argv = argv[i + 1].split(","), argv[:i] + argv[i + 2:]
    names = ["mlx_lm", "fast"]
    for name in pick:
        opts = VARIANTS[name]
        generate.register(generate.Loop(
            f"fast_{name}", generate.pipelined_loop, f"pipelined on optimize_model({opts})",
            prepare=partial(optimize_model, **opts)))
        names.append(f"fast_{name}")
    return cli.main(["bench", "--loops", ",".join(names), *argv])


if __name__ == "__main__":
    sys.exit(main())
