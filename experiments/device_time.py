"""GPU time per decoded token and per quantized matvec, read from the GPU's clock.

    MLX_MAX_OPS_PER_BUFFER=1000 python3 experiments/device_time.py --model qwen3-8b \\
        --scale full --out out/device_time.json

Uses mlxprof.device_clock (CUDA only): the GPU is held while the host encodes
the work, so the stamps measure the device alone. Set MLX_MAX_OPS_PER_BUFFER
high enough that a token fits in fewer than ten command buffers (each
reading says whether its encode fit: "clean"). Parts:

* matvecs: every one-row quantized projection of one decode step (all layers'
  fused projections, lm_head), chained, run by MLX's quantized_matmul and by
  mlxprof's cuda_qmv: device ms and the bandwidth reached (weights + scales +
  biases bytes / device time); each shape's accuracy vs float32;
* tiny: device microseconds per tiny kernel (a chain of 200 bf16 scalings);
* tokens: device ms per token of mlx-lm's model and optimize_model variants
  (teacher-free greedy steps after a prompt), next to the host wall time per
  token of mlx-lm's generate_step on the same model in this process.

Repeated readings are taken with mlxprof.measure (interleaved rounds after a
warm-up; medians with 95% bootstrap intervals).
"""
from __future__ import annotations

import json

from common import parser


def _proj_list(fast):
    from mlxprof.decode.optimize.fuse import Proj
    projs = [m for l in fast.layers for _, m in l.named_modules()
             if isinstance(m, Proj) and m.qspec and m.qspec[1] == 4 and "biases" in m]
    return projs + ([fast.lm_head] if fast.lm_head is not None else [])


def _fit(y, k):
    """y (1, n) -> (1, k): a slice, or y tiled (same for both implementations)."""
    n = y.shape[-1]
    if n < k:
        import mlx.core as mx
        y = mx.concatenate([y] * -(-k // n), axis=-1)
    return y[..., :k]


def matvecs(fast, reps: int) -> dict:
    import mlx.core as mx
    from mlxprof import measure
    from mlxprof.device_clock import device_ms
    from mlxprof.decode.kernels import cuda_qmv

    projs = _proj_list(fast)
    k0 = projs[0].scales.shape[-1] * projs[0].qspec[0]
    x = mx.random.normal((1, k0)).astype(projs[0].scales.dtype)

    def chain(mm):
        def run(v):
            for p in projs:
                v = mm(_fit(v, p.scales.shape[-1] * p.qspec[0]), p)
            return v
        return run

    impls = {
        "mlx": lambda v, p: mx.quantized_matmul(v, p.weight, p.scales, p.biases,
                                                transpose=True, group_size=p.qspec[0], bits=4),
        "cuda_qmv": lambda v, p: cuda_qmv.qmv(v, p.weight, p.scales, p.biases, p.qspec[0]),
    }
    nbytes = sum(p.weight.nbytes + p.scales.nbytes + p.biases.nbytes for p in projs)
    out = {"n_matvecs": len(projs), "weight_bytes": nbytes}
    rounds = measure.time_rounds({name: (lambda mm=mm: device_ms(chain(mm), x))
                                  for name, mm in impls.items()}, rounds=reps, warmup=1)
    for name in impls:
        runs = rounds.results[name]
        m = rounds.measurement(name, "device_ms", label=f"{name} matvec chain", unit="ms")
        out[name] = {"device_ms": list(m.values), "median_ms": m.median, "ci_ms": list(m.ci),
                     "noise": m.warning, "GB_per_s": nbytes / m.median / 1e6,
                     "clean": all(r.clean for r in runs),
                     "encode_ms": [r.encode_ms for r in runs]}
        print(f"matvecs {name}: {m!r}, {nbytes / m.median / 1e6:.0f} GB/s", flush=True)
    shapes = sorted({(p.weight.shape[0], p.scales.shape[-1] * p.qspec[0], p.qspec[0])
                     for p in projs})
    out["accuracy"] = {f"{n}x{k}/g{g}": cuda_qmv.accuracy(n, k, g) for n, k, g in shapes}
    return out


def qmv_edges() -> dict:
    """cuda_qmv accuracy at edge shapes: rows not a multiple of ROWS, K not a
    multiple of 1024, group 32/128, float16/float32, x at an odd offset."""
    import mlx.core as mx
    from mlxprof.decode.kernels import cuda_qmv
    out = {f"{n}x{k}/g{g}/{dt}": cuda_qmv.accuracy(n, k, g, dt) for n, k, g, dt in [
        (4096, 4096, 64, mx.bfloat16), (300, 2080, 32, mx.bfloat16),
        (17, 512, 128, mx.float16), (1000, 1024, 64, mx.float32)]}
    w = mx.random.normal((64, 256)).astype(mx.bfloat16)
    q, s, b = mx.quantize(w, group_size=64, bits=4)
    xb = mx.random.normal((1, 257)).astype(mx.bfloat16)
    x = xb[:, 1:]                                   # odd element offset
    ref = mx.quantized_matmul(mx.array(x), q, s, b, transpose=True, group_size=64, bits=4)
    out["odd_offset"] = cuda_qmv.rel_diff(cuda_qmv.qmv(x, q, s, b, 64), ref)
    print("qmv edges:", json.dumps(out), flush=True)
    return out


def tiny(reps: int, n: int = 200) -> dict:
    import mlx.core as mx
    from mlxprof import measure
    from mlxprof.device_clock import device_ms

    def run(v):
        v = v.astype(mx.bfloat16)
        for _ in range(n):
            v = v * 1.001
        return v
    rounds = measure.time_rounds({"tiny": lambda: device_ms(run, mx.ones((1, 4096)))},
                                 rounds=reps, warmup=1)
    m = rounds.measurement("tiny", "device_ms", label="tiny-kernel chain", unit="ms")
    print(f"tiny: {m.median * 1e3 / n:.2f} us per kernel ({m!r})", flush=True)
    return {"kernels": n + 1, "median_ms": m.median, "ci_ms": list(m.ci),
            "us_per_kernel": m.median * 1e3 / n,
            "clean": all(r.clean for r in rounds.results["tiny"])}


def wall_ms_per_token(model, prompt, tokens: int) -> float:
    """Median host time between consecutive tokens of mlx-lm's generate_step."""
    from mlx_lm.generate import generate_step
    from mlxprof import measure
    return measure.time_tokens(generate_step(prompt, model, max_tokens=tokens)).gaps().median


def token_device_ms(model, prompt, tokens: int) -> dict:
    import mlx.core as mx
    from mlx_lm.models.cache import make_prompt_cache
    from mlxprof import measure
    from mlxprof.device_clock import device_ms

    cache = make_prompt_cache(model)
    y = mx.argmax(model(prompt[None], cache=cache)[:, -1, :], axis=-1)
    step = lambda t: mx.argmax(model(t[None], cache=cache)[:, -1, :], axis=-1)
    runs, ids = [], []
    for _ in range(tokens + 2):
        r = device_ms(step, y)
        y = r.outputs[0]
        runs.append(r)
        ids.append(int(y.item()))
    runs = runs[2:]                      # first steps compile / warm up
    m = measure.Measurement(tuple(r.device_ms for r in runs), label="token", unit="ms")
    return {"device_ms": list(m.values), "median_ms": m.median, "ci_ms": list(m.ci),
            "encode_ms": [r.encode_ms for r in runs], "clean": all(r.clean for r in runs),
            "tokens": ids}


def main() -> None:
    ap = parser(__doc__, model="qwen3-8b", tokens=12, out="out/device_time.json")
    ap.add_argument("--wall-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--variants", default="mlx_lm,fast,fast_no_qmv")
    ap.add_argument("--parts", default="edges,matvecs,tiny,tokens")
    args = ap.parse_args()

    import os
    import mlx.core as mx
    import mlxprof.lab.models as M
    from mlxprof.decode.optimize import optimize_model
    from mlxprof.provenance import collect

    parts = args.parts.split(",")
    lm = M.load(args.model, scale=args.scale, seed=0)
    prompt = mx.random.randint(0, 1000, (32,), key=mx.random.key(1)).astype(mx.uint32)
    knobs = {k: os.environ.get(k) for k in ("MLX_MAX_OPS_PER_BUFFER", "MLX_USE_CUDA_GRAPHS")}
    res = {"model": args.model, "scale": args.scale, "env": knobs, "provenance": collect()}
    fast = optimize_model(lm.model)
    if "edges" in parts:
        res["qmv_edges"] = qmv_edges()
    if "matvecs" in parts:
        res["matvecs"] = matvecs(fast, args.reps)
    if "tiny" in parts:
        res["tiny"] = tiny(args.reps)
    if "tokens" in parts:
        models = {"mlx_lm": lambda: lm.model, "fast": lambda: fast,
                  "fast_no_qmv": lambda: optimize_model(lm.model, qmv="ops")}
        res["tokens"] = {}
        for v in args.variants.split(","):
            model = models[v]()
            r = token_device_ms(model, prompt, args.tokens)
            r["wall_ms_per_token"] = wall_ms_per_token(model, prompt, args.wall_tokens)
            res["tokens"][v] = r
            print(f"{v}: device {r['median_ms']:.2f} ms/token (clean {r['clean']}), "
                  f"wall {r['wall_ms_per_token']:.2f} ms/token", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    main()
