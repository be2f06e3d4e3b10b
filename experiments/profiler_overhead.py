"""Benchmark (not a test): what the profiler costs a tiny-model decode loop.

Runs mlx-lm's generate_step on a tiny random Llama (mlx-lm ModelArgs),
interleaving unprofiled and profiled runs (counting mode, count_ops mode,
eval-lock mode) in rotating order, and reports median decode tok/s per mode
and the cost in % tok/s against the unprofiled median.

End-to-end numbers need a quiet machine: on a shared box other processes move
tok/s by far more than the profiler does. So the script also measures the
profiler's own work per token in isolation (one hooked call, one step, op
counting as recorded by the profile) and reports it as a share of the
unprofiled token time ("modelled %"), which other load disturbs much less.

    python scripts/profiler_overhead.py --tokens 64 --reps 15 --out out/profiler_overhead.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models import llama

import mlxprof
from mlxprof.graph import count_ops
from mlxprof.provenance import collect, describe

MODES = {
    "off": None,
    "counting": {},
    "count_ops": {"count_ops": True},
    "eval_lock": {"eval_lock": True},
}
CALLS_PER_TOKEN = 2  # generate_step: one async_eval and one item() per decode token


def tiny_model(hidden: int, layers: int, vocab: int, seed: int = 0):
    mx.random.seed(seed)
    args = llama.ModelArgs(model_type="llama", hidden_size=hidden, num_hidden_layers=layers,
                           intermediate_size=2 * hidden, num_attention_heads=4,
                           num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=vocab,
                           tie_word_embeddings=True)
    model = llama.Model(args)
    mx.eval(model.parameters())
    return model


def decode_run(model, prompt, n_tokens: int, opts) -> tuple[float, float, dict]:
    """Decode tok/s (wall), process CPU ms per token and op-count cost, measured
    from the first to the last token (prefill excluded)."""
    stamps = []
    gen = generate_step(prompt, model, max_tokens=n_tokens)
    extra = {}
    if opts is None:
        for _ in gen:
            stamps.append((time.perf_counter(), time.process_time()))
    else:
        with mlxprof.Profiler(**opts) as prof:
            for _ in prof.track(gen):
                stamps.append((time.perf_counter(), time.process_time()))
        extra = _count_cost(prof) if opts.get("count_ops") else {}
    n = len(stamps) - 1
    (w0, c0), (w1, c1) = stamps[0], stamps[-1]
    return n / (w1 - w0), (c1 - c0) / n * 1e3, extra


def _count_cost(prof) -> dict:
    """Op counting as the profile recorded it, decode steps only."""
    counted = [e for e in prof.recording.events if e.ops is not None and e.step > 0]
    evals = [e for e in counted if e.kind in ("eval", "async_eval")]
    steps = {e.step for e in counted}
    return {"us_per_eval": statistics.mean(e.count_ns for e in evals) / 1e3,
            "us_per_token": sum(e.count_ns for e in counted) / 1e3 / len(steps),
            "ops_per_eval": statistics.mean(sum(e.ops.values()) for e in evals)}


def _best_us(fn, n: int, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.thread_time()
        for _ in range(n):
            fn()
        best = min(best, (time.thread_time() - t) / n * 1e6)
    return best


def profiler_work_us(n: int = 20000) -> dict:
    """CPU us the profiler adds: per hooked call (item() of an evaluated
    scalar) and per step (a track() iteration, with its memory reads)."""
    y = mx.array(1.0)
    mx.eval(y)
    base = _best_us(y.item, n)
    with mlxprof.Profiler():
        hooked = _best_us(y.item, n)
    loop = _best_us(lambda: [None for _ in range(100)], n // 100) / 100
    with mlxprof.Profiler() as prof:
        tracked = _best_us(lambda: [None for _ in prof.track(range(100))], n // 100) / 100
    return {"hook_us_per_call": hooked - base, "step_us": tracked - loop}


def graph_count_us(model, prompt) -> tuple[float, int]:
    """Time of count_ops on one decode token's lazy graph, and its node count."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    mx.eval(model(prompt[None], cache=cache))
    logits = model(prompt[-1:][None], cache=cache)
    nodes = sum(count_ops(logits).values())
    return _best_us(lambda: count_ops(logits), 20), nodes


def end_to_end(model, prompt, args) -> tuple[dict, dict, list]:
    names = list(MODES)
    for name in names:  # warm-up
        decode_run(model, prompt, 8, MODES[name])
    tok_s = {name: [] for name in names}
    cpu_ms = {name: [] for name in names}
    extras = []
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            t, c, extra = decode_run(model, prompt, args.tokens, MODES[name])
            tok_s[name].append(t)
            cpu_ms[name].append(c)
            extras += [extra] if extra else []
    return tok_s, cpu_ms, extras


def _costs(tok_s: dict, cpu_ms: dict) -> dict:
    med = {n: statistics.median(v) for n, v in tok_s.items()}
    cpu = {n: statistics.median(v) for n, v in cpu_ms.items()}
    off = tok_s["off"]
    return {n: {"median_tok_s": med[n],
                "cost_pct": 100 * (1 - med[n] / med["off"]),
                "paired_cost_pct": 100 * (1 - statistics.median(
                    p / o for p, o in zip(v, off))),
                "best_of_cost_pct": 100 * (1 - max(v) / max(off)),
                "median_cpu_ms_per_token": cpu[n],
                "cpu_cost_pct": 100 * (cpu[n] / cpu["off"] - 1)}
            for n, v in tok_s.items()}


def run(args) -> dict:
    model = tiny_model(args.hidden, args.layers, args.vocab)
    prompt = mx.array(list(range(1, 17)), dtype=mx.int32)
    tok_s, cpu_ms, extras = end_to_end(model, prompt, args)
    work = profiler_work_us()
    counting = {k: statistics.median(e[k] for e in extras) for k in extras[0]}
    g_us, g_nodes = graph_count_us(model, prompt)
    token_us = 1e6 / statistics.median(tok_s["off"])
    base_us = CALLS_PER_TOKEN * work["hook_us_per_call"] + work["step_us"]
    return {
        "provenance": collect(),
        "config": {"model": "llama (mlx-lm ModelArgs, random weights)", "hidden": args.hidden,
                   "layers": args.layers, "vocab": args.vocab, "tokens": args.tokens,
                   "reps": args.reps, "prompt_tokens": int(prompt.size)},
        "modes": _costs(tok_s, cpu_ms),
        "runs_tok_s": tok_s, "runs_cpu_ms_per_token": cpu_ms,
        "profiler_work_us": {**work, "per_token_counting": base_us,
                             "per_token_count_ops": base_us + counting["us_per_token"]},
        "modelled_cost_pct": {"counting": 100 * base_us / token_us,
                              "count_ops": 100 * (base_us + counting["us_per_token"]) / token_us},
        "count_ops": {**counting, "graph_us": g_us, "graph_nodes": g_nodes,
                      "us_per_node": g_us / g_nodes},
    }


def print_table(res: dict) -> None:
    c = res["config"]
    print(f"profiler overhead on {describe(res['provenance'])}")
    print(f"tiny llama hidden={c['hidden']} layers={c['layers']} vocab={c['vocab']}, "
          f"{c['tokens']} tokens x {c['reps']} interleaved reps\n")
    head = ["mode", "tok/s", "cost %", "paired %", "best-of %", "CPU ms/tok", "CPU cost %"]
    print("".join(f"{h:>11}" if i else f"{h:<10}" for i, h in enumerate(head)))
    for name, m in res["modes"].items():
        vals = [m["cost_pct"], m["paired_cost_pct"], m["best_of_cost_pct"]]
        cells = [f"{v:11.2f}" if name != "off" else f"{'-':>11}" for v in vals]
        cpu = f"{m['cpu_cost_pct']:11.2f}" if name != "off" else f"{'-':>11}"
        print(f"{name:<10}{m['median_tok_s']:11.1f}{''.join(cells)}"
              f"{m['median_cpu_ms_per_token']:11.3f}{cpu}")
    w, mc, co = res["profiler_work_us"], res["modelled_cost_pct"], res["count_ops"]
    print("\ncost % = 1 - median tok/s / unprofiled median; paired % = from the median of "
          "per-rep ratios;\nbest-of % = fastest run vs fastest run; CPU = process CPU time")
    print(f"\nprofiler work: {w['hook_us_per_call']:.2f} us per hooked call, "
          f"{w['step_us']:.2f} us per step")
    print(f"modelled cost: counting {mc['counting']:.2f}%, count_ops {mc['count_ops']:.2f}% "
          "of the median unprofiled token")
    print(f"count_ops: {co['us_per_eval']:.0f} us per eval ({co['ops_per_eval']:.0f} ops), "
          f"{co['us_per_token']:.0f} us per token, {co['us_per_node']:.2f} us per graph node")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=15)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--out", default="out/profiler_overhead.json")
    args = p.parse_args(argv)
    if args.reps < 5:
        p.error("--reps must be >= 5 (medians of fewer runs are noise)")
    res = run(args)
    print_table(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
