"""The correctness yardstick for mlx-lm and `fast` on a set of models (any backend).

    python experiments/yardstick_cpu.py --models qwen3-8b,qwen3-30b-a3b \
        --scales tiny,small --out data/results/cpu/yardstick_cpu.json

For each model and scale: mlx-lm's bf16 logits and `fast`'s against the same
model run in float32 activations over --steps teacher-forced steps
(mlxprof.decode.accuracy.yardstick), and whether the model is conditioned
(mlx-lm's argmax agrees with float32's on >= 95% of the steps). Entries are
merged into --out by (model, scale, dtype), each with its provenance.
``smollm2`` (real weights) has one scale; --smollm2-dtype picks its
activations (float16 as stored; the CPU default float32 would make mlx-lm's
run the float32 reference itself).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def measure(name: str, scale: str, steps: int, dtype: str | None) -> dict:
    import mlx.core as mx

    from mlxprof.decode.accuracy import yardstick
    from mlxprof.decode.optimize import optimize_model
    from mlxprof.lab import models
    from mlxprof.provenance import collect

    t0 = time.perf_counter()
    kw = {"dtype": getattr(mx, dtype)} if dtype else {}
    lm = models.load(name, scale=scale, seed=0, **kw)
    y = yardstick(lm.model, {"fast": optimize_model(lm.model)}, lm.prompt(32, seed=0), steps)
    print(f"{name} ({lm.scale}, {dtype or 'bfloat16'})\n{y}", flush=True)
    return {"model": name, "scale": lm.scale, "dtype": dtype or "bfloat16",
            "steps": steps, "prompt_tokens": 32, **y.to_dict(),
            "seconds": round(time.perf_counter() - t0, 1), "provenance": collect()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qwen3-8b,qwen3-30b-a3b,qwen3.5-35b-a3b")
    ap.add_argument("--scales", default="tiny,small")
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--smollm2-dtype", default="float16")
    ap.add_argument("--out", default="data/results/cpu/yardstick_cpu.json")
    args = ap.parse_args(argv)
    out = Path(args.out)
    rows = json.loads(out.read_text())["rows"] if out.exists() else []
    for name in filter(None, args.models.split(",")):
        real = name.startswith("smollm2")
        for scale in (["full"] if real else args.scales.split(",")):
            row = measure(name, scale, args.steps, args.smollm2_dtype if real else None)
            key = (row["model"], row["scale"], row["dtype"])
            rows = [r for r in rows if (r["model"], r["scale"], r["dtype"]) != key] + [row]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps({"schema": "mlxprof.yardstick/1", "rows": rows},
                                      indent=1))


if __name__ == "__main__":
    main()
