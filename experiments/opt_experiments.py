#!/usr/bin/env python3
"""Measure mlxprof.decode.optimize's levers: mlx-lm baseline vs optimized models.

For each model (random weights, 4-bit g64, router gates 8-bit):
  * correctness: teacher-forced logits of each variant vs mlx-lm (the bf16
    bar: max|diff| <= 2% of max|logit|, argmax equal on >= 95% of rows) and
    the first step where greedy tokens differ;
  * ops per decode step by primitive (mx.export_to_dot of one step's lazy
    graph: model forward + greedy sampling), for the baseline and for each
    variant (one lever off or on at a time);
  * decode tok/s: mlx-lm's generate_step on the original vs mlxprof's
    pipelined loop on the optimized model, interleaved pairwise (baseline,
    variant, baseline, variant, ...), median and per-round ratio;
  * host split per token (our instrumented copy of the pipelined loop):
    build (Python graph building), submit (inside mx.async_eval: on CUDA
    this encodes and launches the kernels), blocked (inside item());
  * micro-benchmarks that decide levers on the backend: GDN recurrence
    (mlx-lm's path vs mx.fast.gated_delta_update vs our compiled op paths vs
    our CUDA kernel: us/step and max|diff|), gather_qmm gate+up fused vs two,
    qmm q/k/v fused vs three, a compiled layer step vs the same uncompiled
    vs mlx-lm's layer.
The JSON is rewritten after every section, so a timeout keeps what was done.

GPU (one call, from the repo root; MLX CUDA on PYTHONPATH as the box has it):
    PYTHONPATH=. python3 experiments/opt_experiments.py --scale full \\
        --out $OUT/opt_full.json
CPU dry run (minutes on 2 cores):
    python experiments/opt_experiments.py --scale small --tokens 16 --reps 1 \\
        --out out/opt_small.json
"""
from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from pathlib import Path

import mlx.core as mx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mlxprof import decode as generate  # noqa: E402
from mlxprof import measure  # noqa: E402
from mlxprof.graph import count_ops  # noqa: E402
from mlxprof.decode.optimize import optimize_model  # noqa: E402

ARCH = {"qwen3.5-35b-a3b": "qwen3_5_moe", "qwen3-8b": "qwen3",
        "qwen3-30b-a3b": "qwen3_moe"}
VIEWS = {"Reshape", "Broadcast", "ExpandDims", "Squeeze", "Slice", "Transpose",
         "StopGradient", "Flatten", "Unflatten", "AsStrided", "Depends", "Split"}
# variants timed against the baseline (pairwise interleaved)
TIMED = {
    "exact": {},                                    # defaults: exact math
    "exact_ops": {"gated_delta": "ops"},            # GDN recurrence as ops
    "aggressive": {"router": "topk_softmax", "combine": "matmul",
                   "shared_in_switch": True, "gated_delta": "algebraic"},
    "exact_kv_outside": {"kv_in_compile": False},   # if DynamicSliceUpdate misbehaves
}
# variants only counted (one lever changed from the defaults)
COUNTED = {
    "no_fusion": {"fuse_qkv": False, "fuse_gate_up": False, "fuse_gdn_proj": False,
                  "fuse_router": False, "fuse_experts": False},
    "no_fuse_experts": {"fuse_experts": False},
    "no_merge_qk_norm": {"merge_qk_norm": False},
    "no_compile": {"compile": False},
    "kv_outside_compile": {"kv_in_compile": False},
    "algebraic": {"gated_delta": "algebraic"},
    "shared_in_switch": {"shared_in_switch": True},
    "router_topk_softmax": {"router": "topk_softmax"},
    "combine_matmul": {"combine": "matmul"},
}


# ----------------------------------------------------------------------------
# helpers


class Budget:
    def __init__(self, seconds: float):
        self.t0, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.t0)


def log(*a):
    print(*a, flush=True)


def free():
    gc.collect()
    mx.clear_cache()


def load(name: str, scale: str, seed: int):
    """(model, prompt_fn) from mlxprof.lab.models if it has load(), else our builder."""
    try:
        import mlxprof.lab.models as models
        if hasattr(models, "load"):
            lm = models.load(name, scale=scale, seed=seed)
            return lm.model, lm.prompt
    except ImportError:
        pass
    from mlxprof.lab.testing import random_model
    model = random_model(ARCH[name], scale, seed)
    vocab = _vocab(model)
    return model, (lambda n, seed=0: mx.random.randint(
        0, vocab, (n,), key=mx.random.key(seed)).astype(mx.int32))


def _vocab(model) -> int:
    inner = getattr(model, "language_model", model).model
    return inner.embed_tokens.weight.shape[0]


def summarize_ops(ops: dict) -> dict:
    total = sum(ops.values())
    views = sum(v for k, v in ops.items() if k in VIEWS)
    return {"total": total, "views": views, "non_view": total - views,
            "by_primitive": dict(sorted(ops.items(), key=lambda kv: -kv[1]))}


@contextlib.contextmanager
def gpu_like_fast_ops():
    """Count like a GPU on the CPU: each mx.fast op becomes ONE placeholder node.

    On the CPU, rms_norm / rope / sdpa / dequantize run as MLX's composed
    fallbacks (many primitives); on a GPU each is one kernel. Inside this
    context they build a single placeholder primitive of the right shape
    (CumMax / CumMin / CumSum / Full; Depends nodes keep k, v and the
    quantized inputs in the graph and are counted as views). Values computed
    here are junk: count only, and never trace a compiled function here that
    is used afterwards (use fresh models).
    """
    saved = (mx.fast.rms_norm, mx.fast.rope, mx.fast.scaled_dot_product_attention,
             mx.dequantize)

    def rms_norm(x, weight=None, eps=1e-5, **kw):
        return mx.cummax(x, axis=-1)

    def rope(x, dims, **kw):
        return mx.cummin(x, axis=-1)

    def sdpa(q, k, v, scale=1.0, mask=None, sinks=None, **kw):
        return mx.depends(mx.cumsum(q, axis=-1), [k, v])

    def dequantize(w, scales, biases=None, group_size=64, bits=4, mode="affine", **kw):
        shape = (*w.shape[:-1], w.shape[-1] * 32 // bits)
        deps = [a for a in (w, scales, biases) if a is not None]
        return mx.depends(mx.zeros(shape, scales.dtype), deps)
    mx.fast.rms_norm, mx.fast.rope = rms_norm, rope
    mx.fast.scaled_dot_product_attention, mx.dequantize = sdpa, dequantize
    try:
        yield
    finally:
        (mx.fast.rms_norm, mx.fast.rope, mx.fast.scaled_dot_product_attention,
         mx.dequantize) = saved


def gpu_like_ops(orig, prompt, kw: dict | None) -> dict:
    """step_ops under gpu_like_fast_ops, on a fresh optimized model (or orig)."""
    with gpu_like_fast_ops():
        model = orig if kw is None else optimize_model(orig, **kw)
        from mlx_lm.models.cache import make_prompt_cache
        cache = make_prompt_cache(model)
        model(prompt[:-1][None], cache=cache)
        mx.eval([c.state for c in cache])      # placeholder math: values are junk
        logits = model(prompt[-1:][None], cache=cache)[:, -1, :]
        y = mx.argmax(logits - mx.logsumexp(logits, keepdims=True), axis=-1)
        ops = count_ops(y)
    return summarize_ops(ops)


def step_ops(model, prompt) -> dict:
    """Primitives in one decode step (forward + greedy sampling), unevaluated."""
    from mlx_lm.models.cache import make_prompt_cache
    cache = make_prompt_cache(model)
    model(prompt[:-1][None], cache=cache)
    mx.eval([c.state for c in cache])
    logits = model(prompt[-1:][None], cache=cache)[:, -1, :]
    fwd = count_ops(logits)
    y = mx.argmax(logits - mx.logsumexp(logits, keepdims=True), axis=-1)
    full = count_ops(y)
    mx.eval(y)
    return {"forward": summarize_ops(fwd), "step": summarize_ops(full)}


def decode_timing(fn, model, prompt, tokens: int) -> dict:
    t = measure.time_tokens(fn(model, prompt, tokens))
    mx.synchronize()
    return {"ttft_s": t.ttft_s, "decode_s": t.decode_s, "decode_tok_s": t.decode_tok_per_s}


def host_split(model, prompt, tokens: int, skip: int = 4) -> dict:
    """Per-token build / submit (async_eval) / blocked (item) medians, ms."""
    from mlx_lm.models.cache import make_prompt_cache
    stream = mx.new_thread_local_stream(mx.default_device())
    cache = make_prompt_cache(model)
    with mx.stream(stream):
        model(prompt[:-1][None], cache=cache)
        mx.eval([c.state for c in cache])

    def build(tok):
        with mx.stream(stream):
            logits = model(tok[None], cache=cache)[:, -1, :]
            return mx.argmax(logits - mx.logsumexp(logits, keepdims=True), axis=-1)

    y = build(prompt[-1:])
    mx.async_eval(y)
    rows = []
    for _ in range(tokens):
        t0 = time.perf_counter()
        nxt = build(y)
        t1 = time.perf_counter()
        mx.async_eval(nxt)
        t2 = time.perf_counter()
        y.item()
        t3 = time.perf_counter()
        rows.append((t1 - t0, t2 - t1, t3 - t2))
        y = nxt
    y.item()
    rows = rows[skip:] or rows
    med = [statistics.median(r[i] for r in rows) * 1e3 for i in range(3)]
    return {"build_ms": med[0], "submit_ms": med[1], "blocked_ms": med[2],
            "wall_ms": statistics.median(sum(r) for r in rows) * 1e3,
            "tokens": len(rows)}


def correctness(orig, opt, prompt, n: int) -> dict:
    ref_toks = list(generate.mlx_lm_loop(orig, prompt, n))
    opt_toks = list(generate.pipelined_loop(opt, prompt, n))
    first = next((i for i, (a, b) in enumerate(zip(ref_toks, opt_toks)) if a != b),
                 None)
    seq = mx.concatenate([prompt, mx.array(ref_toks[:-1], mx.int32)])
    ref = generate.teacher_forced_logits(orig, seq, n_prompt=prompt.size)
    new = generate.teacher_forced_logits(opt, seq, n_prompt=prompt.size)
    c = generate.compare_logits(ref, new)
    return {"ok": c.ok, "rel_max_diff": c.rel_max_diff, "max_abs_diff": c.max_abs_diff,
            "argmax_agreement": c.argmax_agreement, "rows": c.n_rows,
            "greedy_first_mismatch": first, "greedy_tokens": n}


def resolved(opt) -> dict:
    """What optimize_model chose (e.g. gated_delta 'auto' -> 'cuda')."""
    rec = sorted({getattr(l.mixer, "recurrence", None) for l in opt.layers} - {None})
    return {"gdn_recurrence": rec}


# ----------------------------------------------------------------------------
# micro-benchmarks


def _median_us(run, n: int, reps: int) -> float:
    """Median over `reps` timed calls of run() (after one warm-up), us per 1/n of it."""
    return measure.time_rounds({"run": run}, rounds=reps, warmup=1)["run"].median / n * 1e6


def per_call_us(fn, n: int, reps: int = 3) -> float:
    """fn() builds one call's graph; n calls evaluated together; us per call."""
    return _median_us(lambda: mx.eval([fn() for _ in range(n)]), n, reps)


def chain_us(step, x0, n: int, reps: int = 3) -> float:
    """x = step(x) n times, then eval: us per step (serial, like decode)."""
    def run():
        x = x0
        for _ in range(n):
            x = step(x)
        mx.eval(x)
    return _median_us(run, n, reps)


def _maxdiff(a, b) -> float:
    return float(mx.abs(a.astype(mx.float32) - b.astype(mx.float32)).max().item())


def micro_gdn(hk, hv, dk, dv, n=100) -> dict:
    from mlx_lm.models.gated_delta import compute_g, gated_delta_update
    from mlxprof.decode.optimize.gdn import _delta_step, _delta_step_algebraic
    from mlxprof.decode.optimize.probe import fast_gated_delta_is_fused
    ks = mx.random.split(mx.random.key(0), 7)
    bf = mx.bfloat16
    qk = mx.random.normal((1, 1, 2 * hk, dk), key=ks[0])
    qk = (qk / mx.sqrt((qk * qk).sum(-1, keepdims=True))).astype(bf)
    q, k = qk[:, :, :hk] * dk ** -0.5, qk[:, :, hk:]
    qk = mx.concatenate([q, k], axis=2)
    v = mx.random.normal((1, 1, hv, dv), key=ks[1]).astype(bf)
    a = mx.random.normal((1, 1, hv), key=ks[2]).astype(bf)
    b = mx.random.normal((1, 1, hv), key=ks[3]).astype(bf)
    A_log = mx.log(mx.random.uniform(1, 16, (hv,), key=ks[4]))
    dt_bias = mx.ones((hv,), bf)
    s0 = mx.random.normal((1, hv, dv, dk), key=ks[5]) * 0.1
    g, beta = compute_g(A_log, a, dt_bias), mx.sigmoid(b)
    mx.eval(q, k, qk, v, a, b, A_log, dt_bias, s0, g, beta)
    f32 = mx.float32
    comp_ops = mx.compile(_delta_step)
    comp_alg = mx.compile(_delta_step_algebraic)
    paths = {
        "mlx_lm_gated_delta_update": lambda s: gated_delta_update(
            q, k, v, a, b, A_log, dt_bias, s),
        "fast_bf16_inputs": lambda s: mx.fast.gated_delta_update(q, k, v, g, beta, s),
        "fast_f32_inputs": lambda s: mx.fast.gated_delta_update(
            q.astype(f32), k.astype(f32), v.astype(f32), g, beta.astype(f32), s),
        "ours_ops_compiled": lambda s: comp_ops(q, k, v, g, beta, s),
        "ours_algebraic_compiled": lambda s: comp_alg(qk, v, g, beta, s),
    }
    if mx.default_device() == mx.gpu and mx.cuda.is_available():
        from mlxprof.decode.kernels.cuda_gdn import gated_delta_cuda
        paths["ours_cuda_kernel"] = lambda s: gated_delta_cuda(q, k, v, g, beta, s)
    y_ref, s_ref = paths["mlx_lm_gated_delta_update"](s0)
    mx.eval(y_ref, s_ref)
    res = {"shape": [hk, hv, dk, dv],
           "fast_is_one_kernel": fast_gated_delta_is_fused(hk, hv, dk, dv)}
    for name, fn in paths.items():
        try:
            y, s = fn(s0)
            ops = count_ops(y, s)
            mx.eval(y, s)
            res[name] = {"us_per_step": chain_us(lambda st: fn(st)[1], s0, n),
                         "ops": sum(ops.values()), "by_primitive": ops,
                         "max_abs_diff_y": _maxdiff(y, y_ref),
                         "max_abs_diff_state": _maxdiff(s, s_ref)}
        except Exception as e:  # noqa: BLE001 - report, keep going
            res[name] = {"error": f"{type(e).__name__}: {e}"[:300]}
    return res


def _qweights(shape, bits=4, gs=64, key=None):
    w = (mx.random.normal(shape, key=key) * shape[-1] ** -0.5).astype(mx.bfloat16)
    out = mx.quantize(w, gs, bits)
    mx.eval(out)
    return out


def micro_gather(d, n, e, k, n_calls=200) -> dict:
    ks = mx.random.split(mx.random.key(1), 3)
    wg, wu = _qweights((e, n, d), key=ks[0]), _qweights((e, n, d), key=ks[1])
    wf = tuple(mx.concatenate([a, b], axis=1) for a, b in zip(wg, wu))
    mx.eval(wf)
    x = mx.random.normal((1, 1, 1, 1, d), key=ks[2]).astype(mx.bfloat16)
    inds = mx.array([[list(range(0, e, e // k))[:k]]], mx.uint32)
    lhs = mx.zeros((1, 1, 1), mx.uint32)
    mx.eval(x, inds, lhs)

    def g(w, lhs_i=None):
        return mx.gather_qmm(x, *w, lhs_indices=lhs_i, rhs_indices=inds,
                             transpose=True, group_size=64, bits=4)
    sep = per_call_us(lambda: [g(wg), g(wu)], n_calls)
    fused = per_call_us(lambda: g(wf), n_calls)
    fused_lhs = per_call_us(lambda: g(wf, lhs), n_calls)
    diff = _maxdiff(g(wf)[..., :n], g(wg))
    res = {"shape": [d, n, e, k], "separate_us": sep, "fused_us": fused,
           "fused_const_lhs_us": fused_lhs, "max_abs_diff": diff}
    del wg, wu, wf
    free()
    return res


def micro_qmm(d, outs, n_calls=200) -> dict:
    ks = mx.random.split(mx.random.key(2), len(outs) + 1)
    ws = [_qweights((o, d), key=kk) for o, kk in zip(outs, ks)]
    wf = tuple(mx.concatenate(p, axis=0) for p in zip(*ws))
    x = mx.random.normal((1, 1, d), key=ks[-1]).astype(mx.bfloat16)
    mx.eval(wf, x)

    def f(w):
        return mx.quantized_matmul(x, *w, transpose=True, group_size=64, bits=4)
    res = {"shape": [d, outs], "separate_us": per_call_us(lambda: [f(w) for w in ws], n_calls),
           "fused_us": per_call_us(lambda: f(wf), n_calls),
           "max_abs_diff": _maxdiff(f(wf)[..., :outs[0]], f(ws[0]))}
    del ws, wf
    free()
    return res


def micro_layers(orig, opt, n=30) -> dict:
    """One decoder layer step: mlx-lm's vs ours uncompiled vs ours compiled."""
    from mlx_lm.models.cache import make_prompt_cache
    res = {}
    inner = getattr(orig, "language_model", orig).model
    kinds = {}
    for i, l in enumerate(opt.layers):
        kinds.setdefault(type(l).__name__, i)
    for kind, i in kinds.items():
        lo, lr = opt.layers[i], inner.layers[i]
        dim = lo.in_w.shape[0]
        x0 = (mx.random.normal((1, 1, dim), key=mx.random.key(3)) * 0.1).astype(mx.bfloat16)
        mx.eval(x0)
        r = {}
        cache = make_prompt_cache(orig)[i]
        r["mlx_lm_us"] = chain_us(lambda x: lr(x, None, cache), x0, n)
        for tag, fn in (("ours_uncompiled_us", False), ("ours_compiled_us", True)):
            cache = make_prompt_cache(orig)[i]
            if kind == "GDNLayer":
                f = lo._step if fn else lo._step_fn
                m = lo.mixer
                conv = mx.zeros((1, m.kernel - 1, m.conv_dim), mx.bfloat16)
                st = mx.zeros((1, m.hv, m.dv, m.dk), mx.float32)
                mx.eval(conv, st)
                r[tag] = chain_us(lambda x: f(x, x, conv, st)[0], x0, n)   # x as its own norm
            else:
                if not fn:
                    lo2 = type(lo)(_fake_layer(lo), lo.mixer, lo.ffn, lo.mask_kind, False)
                    r[tag] = chain_us(lambda x: lo2.step(x, x, None, cache, {})[0], x0, n)
                else:
                    r[tag] = chain_us(lambda x: lo.step(x, x, None, cache, {})[0], x0, n)
        res[kind] = r
    return res


class _Norm:
    def __init__(self, w, eps):
        self.weight, self.eps = w, eps


class _fake_layer:  # the two norms an AttentionLayer reads from an mlx-lm layer
    def __init__(self, lo):
        self.input_layernorm = _Norm(lo.in_w, lo.in_eps)
        self.post_attention_layernorm = _Norm(lo.post_w, lo.post_eps)


# ----------------------------------------------------------------------------
# per model


def time_variant(orig, prompt, vname, args) -> dict:
    """Correctness, pairwise-interleaved decode timing and host split of one variant."""
    kw = TIMED[vname]
    t = time.perf_counter()
    opt = optimize_model(orig, **kw)
    rec = {"options": kw, **resolved(opt), "optimize_s": time.perf_counter() - t}
    rec["correctness"] = correctness(orig, opt, prompt, args.check_tokens)
    log(f"  {vname}: correctness {rec['correctness']}")
    timed = measure.time_rounds({   # warm-up included (compile traces)
        "baseline": lambda: decode_timing(generate.mlx_lm_loop, orig, prompt, args.tokens),
        "optimized": lambda: decode_timing(generate.pipelined_loop, opt, prompt, args.tokens),
    }, rounds=args.reps, warmup=1)
    rounds = [{"baseline_tok_s": b["decode_tok_s"], "optimized_tok_s": o["decode_tok_s"],
               "ratio": o["decode_tok_s"] / b["decode_tok_s"]}
              for b, o in zip(timed.results["baseline"], timed.results["optimized"])]
    ratio = timed.ratio("optimized", "baseline", "decode_tok_s")
    for name, label in (("baseline", "mlx-lm decode"), ("optimized", f"{vname} decode")):
        log(f"    {timed.measurement(name, 'decode_tok_s', label=label, unit='tok/s')!r}")
    log(f"    {ratio!r}")
    rec["rounds"] = rounds
    rec["median"] = {k: statistics.median(x[k] for x in rounds)
                     for k in ("baseline_tok_s", "optimized_tok_s", "ratio")}
    rec["ratio_ci"], rec["ratio_noise"] = list(ratio.ci), ratio.warning
    n_split = min(64, args.tokens)
    rec["split_baseline"] = host_split(orig, prompt, n_split)
    rec["split_optimized"] = host_split(opt, prompt, n_split)
    log(f"    median x{rec['median']['ratio']:.2f}; split ms/token "
        f"baseline {rec['split_baseline']} | optimized {rec['split_optimized']}")
    del opt
    return rec




def run_model(name, args, budget, out, save):
    entry = out["models"].setdefault(name, {})
    log(f"\n=== {name} ({args.scale}) ===")
    t = time.perf_counter()
    orig, prompt_fn = load(name, args.scale, args.seed)
    mx.eval(orig.parameters())
    entry["build_s"] = time.perf_counter() - t
    prompt = prompt_fn(args.prompt)
    log(f"built in {entry['build_s']:.1f}s")
    entry["baseline_ops"] = step_ops(orig, prompt)
    b = entry["baseline_ops"]["step"]
    log(f"baseline ops/step: {b['total']} ({b['non_view']} non-view)")
    gpu_like = args.gpu_like_counts or mx.default_device() == mx.cpu
    if gpu_like:
        entry["baseline_ops"]["gpu_like_step"] = g = gpu_like_ops(orig, prompt, None)
        log(f"baseline ops/step, GPU-like count: {g['total']} ({g['non_view']} non-view)")
    save()

    # counted-only variants (one lever at a time)
    entry["variant_ops"] = {}
    for vname, kw in {**TIMED, **COUNTED}.items():
        if budget.left() < 60:
            break
        try:
            opt = optimize_model(orig, **kw)
            ops = step_ops(opt, prompt)
        except Exception as e:  # noqa: BLE001 - one lever failing must not stop the run
            entry["variant_ops"][vname] = {"options": kw, "error": f"{type(e).__name__}: {e}"[:400]}
            log(f"  {vname}: ERROR {e}")
            free()
            continue
        entry["variant_ops"][vname] = {"options": kw, **resolved(opt), **ops}
        s = ops["step"]
        msg = f"  {vname:22s} ops/step {s['total']:5d} ({s['non_view']} non-view)"
        del opt
        if gpu_like:
            g = entry["variant_ops"][vname]["gpu_like_step"] = gpu_like_ops(orig, prompt, kw)
            msg += f"; GPU-like {g['total']:5d} ({g['non_view']} non-view)"
        log(msg)
        free()
    save()

    # correctness + timing + split, pairwise with the baseline
    entry["timed"] = {}
    todo = list(args.variants)
    while todo:
        vname = todo.pop(0)
        if budget.left() < 90:
            log(f"  (budget) skipping {vname}")
            break
        try:
            rec = time_variant(orig, prompt, vname, args)
        except Exception as e:  # noqa: BLE001 - report and go on with the next
            entry["timed"][vname] = {"options": TIMED[vname],
                                     "error": f"{type(e).__name__}: {e}"[:400]}
            log(f"  {vname}: ERROR {e}")
            if vname == "exact" and "exact_kv_outside" not in args.variants:
                todo.insert(0, "exact_kv_outside")   # the same levers, KV write outside
            free()
            save()
            continue
        entry["timed"][vname] = rec
        save()
        if vname == args.variants[0] and not args.no_micro and "micro_layers" not in entry:
            try:
                opt = optimize_model(orig, **TIMED[vname])
                entry["micro_layers"] = micro_layers(orig, opt)
                del opt
                log(f"  layer steps (us): {entry['micro_layers']}")
            except Exception as e:  # noqa: BLE001
                entry["micro_layers"] = {"error": f"{type(e).__name__}: {e}"[:300]}
        free()
        save()

    # micro-benchmarks at this model's shapes
    if not args.no_micro and budget.left() > 60:
        try:
            run_micro(orig, entry, save)
        except Exception as e:  # noqa: BLE001
            entry.setdefault("micro", {})["error"] = f"{type(e).__name__}: {e}"[:400]
            log(f"  micro: ERROR {e}")
    del orig
    free()


def run_micro(orig, entry, save):
    """Micro-benchmarks at this model's shapes (see the module doc)."""
    cfg = _text_args(orig)
    micro = entry.setdefault("micro", {})
    if getattr(cfg, "linear_num_value_heads", 0):
        micro["gated_delta"] = micro_gdn(cfg.linear_num_key_heads,
                                         cfg.linear_num_value_heads,
                                         cfg.linear_key_head_dim,
                                         cfg.linear_value_head_dim)
        log(f"  gated delta: {json.dumps(micro['gated_delta'], default=str)[:600]}")
    if getattr(cfg, "num_experts", 0):
        micro["gather_qmm_gate_up"] = micro_gather(
            cfg.hidden_size, cfg.moe_intermediate_size, cfg.num_experts,
            cfg.num_experts_per_tok)
        log(f"  gather_qmm: {micro['gather_qmm_gate_up']}")
    hd = cfg.head_dim or cfg.hidden_size // cfg.num_attention_heads
    outs = [cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd,
            cfg.num_key_value_heads * hd]
    micro["qmm_qkv"] = micro_qmm(cfg.hidden_size, outs)
    log(f"  qmm q/k/v: {micro['qmm_qkv']}")
    save()


def _text_args(model):
    lm = getattr(model, "language_model", model)
    return lm.args


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", default="small", choices=["tiny", "small", "full"])
    p.add_argument("--models", default="qwen3.5-35b-a3b,qwen3-8b")
    p.add_argument("--out", default="out/opt_experiments.json")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--check-tokens", type=int, default=48)
    p.add_argument("--variants", default="exact,aggressive,exact_ops",
                   help=f"timed variants, from {', '.join(TIMED)}")
    p.add_argument("--budget-s", type=float, default=540,
                   help="stop starting new sections after this many seconds")
    p.add_argument("--no-micro", action="store_true")
    p.add_argument("--gpu-like-counts", action="store_true",
                   help="also count with mx.fast ops as one node each (always on CPU)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    bad = [v for v in args.variants if v not in TIMED]
    if bad:
        p.error(f"unknown variants {bad}; known: {', '.join(TIMED)}")
    models = [m for m in args.models.split(",") if m]
    for m in models:
        if m not in ARCH:
            p.error(f"unknown model {m!r}; known: {', '.join(ARCH)}")
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        from mlxprof.provenance import collect
        prov = collect()
    except Exception:  # noqa: BLE001
        prov = {"device": str(mx.default_device()), "mlx": mx.__version__}
    out = {"schema": "mlxprof.opt_experiments/1", "provenance": prov,
           "config": vars(args), "models": {}}

    def save():
        out_path.write_text(json.dumps(out, indent=1, default=str))
    budget = Budget(args.budget_s)
    log(f"device {mx.default_device()}, out {out_path}")
    for m in models:
        if budget.left() < 120:
            log(f"(budget) skipping model {m}")
            continue
        run_model(m, args, budget, out, save)
    out["elapsed_s"] = args.budget_s - budget.left()
    save()
    log(f"done in {out['elapsed_s']:.0f}s -> {out_path}")


if __name__ == "__main__":
    main()
