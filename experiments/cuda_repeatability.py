"""Which MLX ops give different bits on repeated runs of the same inputs? (GPU)

    python3 experiments/cuda_repeatability.py --out out/cuda_repeatability.json

mlx-lm's own greedy decode on the CUDA backend gave different tokens between runs
after ~250 tokens (experiments/fast_determinism.py). This evaluates single ops at
one-token decode shapes many times each on fixed random inputs and counts the
distinct results, also with different bytes left in the allocator's free buffers
before each run ("dirty pool": an op that reads memory it did not write shows it): scaled_dot_product_attention over key lengths around the KV
cache's 256-step growth (contiguous and as the cache's sliced view), the 4-bit
matvec, and a float32 sum.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def scribble(rep: int) -> None:
    """Leave different bytes in the allocator's free buffers before the next op."""
    import mlx.core as mx
    for size in (1 << 10, 1 << 14, 1 << 18, 1 << 22):
        junk = mx.full((size,), float(rep + 1) * 1e3, mx.float32)
        mx.eval(junk)
        del junk


def distinct(fn, reps: int, dirty: bool = False) -> int:
    import mlx.core as mx
    import numpy as np
    seen = set()
    for rep in range(reps):
        if dirty:
            scribble(rep)
        out = fn()
        mx.eval(out)
        seen.add(np.array(out.astype(mx.float32)).tobytes())
    return len(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--out", default="out/cuda_repeatability.json")
    args = ap.parse_args()
    import mlx.core as mx
    from mlxprof import provenance

    mx.random.seed(0)
    res = {"provenance": provenance.collect(), "reps": args.reps, "sdpa": {}, "sdpa_view": {}}
    h, hk, d = 32, 8, 128
    q = mx.random.normal((1, h, 1, d)).astype(mx.bfloat16)
    for n in (64, 255, 256, 257, 300, 511, 512, 600, 1024, 2048):
        k = mx.random.normal((1, hk, n, d)).astype(mx.bfloat16)
        v = mx.random.normal((1, hk, n, d)).astype(mx.bfloat16)
        f = lambda: mx.fast.scaled_dot_product_attention(q, k, v, scale=d ** -0.5)
        res["sdpa"][n] = distinct(f, args.reps)
        big_k = mx.concatenate([k, mx.zeros((1, hk, 512, d), mx.bfloat16)], axis=2)
        big_v = mx.concatenate([v, mx.zeros((1, hk, 512, d), mx.bfloat16)], axis=2)
        mx.eval(big_k, big_v)
        g = lambda: mx.fast.scaled_dot_product_attention(
            q, big_k[..., :n, :], big_v[..., :n, :], scale=d ** -0.5)
        res["sdpa_view"][n] = distinct(g, args.reps)
        res.setdefault("sdpa_dirty_pool", {})[n] = distinct(f, args.reps, dirty=True)
        res.setdefault("sdpa_view_dirty_pool", {})[n] = distinct(g, args.reps, dirty=True)
        print("sdpa", n, res["sdpa"][n], "view", res["sdpa_view"][n], "dirty pool",
              res["sdpa_dirty_pool"][n], res["sdpa_view_dirty_pool"][n], flush=True)
    w = mx.random.normal((4096, 4096)).astype(mx.bfloat16)
    wq, s, b = mx.quantize(w, group_size=64, bits=4)
    x = mx.random.normal((1, 4096)).astype(mx.bfloat16)
    res["quantized_matmul"] = distinct(
        lambda: mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=64, bits=4),
        args.reps)
    y = mx.random.normal((1 << 20,))
    res["sum_f32"] = distinct(lambda: y.sum(), args.reps)
    res["quantized_matmul_dirty_pool"] = distinct(
        lambda: mx.quantized_matmul(x, wq, s, b, transpose=True, group_size=64, bits=4),
        args.reps, dirty=True)
    print(res, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
