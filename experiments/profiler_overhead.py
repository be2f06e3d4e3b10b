"""Benchmark (not a test): what the profiler costs a tiny-model decode loop.

Runs mlx-lm's generate_step on a tiny random Llama (mlx-lm ModelArgs),
interleaving unprofiled and profiled runs (counting mode, count_ops mode,
eval-lock mode) in rotating order (mlxprof.measure.time_rounds), and reports
median decode tok/s per mode and the cost in % tok/s: from the median of
same-round ratios to the unprofiled run, with its 95% bootstrap interval.

End-to-end numbers need a quiet machine: on a shared box other processes move
tok/s by far more than the profiler does. So the script also measures the
profiler's own work per token in isolation (one hooked call, one step, op
counting as recorded by the profile) and reports it as a share of the
unprofiled token time ("modelled %"), which other load disturbs much less.

    python experiments/profiler_overhead.py --tokens 64 --reps 15 --out out/profiler_overhead.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from pathlib import Path

import mlx.core as mx
from mlx_lm.generate import generate_step
from mlx_lm.models import llama

import mlxprof
from mlxprof import measure
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


def decode_run(model, prompt, n_tokens: int, opts) -> dict:
    """Decode tok/s (wall), process CPU ms per token and op-count cost, measured
    from the first to the last token (prefill excluded)."""
    gen = generate_step(prompt, model, max_tokens=n_tokens)
    extra = {}
    if opts is None:
        t = measure.time_tokens(gen, cpu=True)
    else:
        with mlxprof.Profiler(**opts) as prof:
            t = measure.time_tokens(prof.track(gen), cpu=True)
        extra = _count_cost(prof) if opts.get("count_ops") else {}
    cpu_ms = t.decode_cpu_s / (t.n_tokens - 1) * 1e3
    return {"tok_s": t.decode_tok_per_s, "cpu_ms": cpu_ms, "extra": extra}


def _count_cost(prof) -> dict:
    """Op counting as the profile recorded it, decode steps only."""
    counted = [e for e in prof.recording.events if e.ops is not None and e.step > 0]
    evals = [e for e in counted if e.kind in ("eval", "async_eval")]
    steps = {e.step for e in counted}
    return {"us_per_eval": statistics.mean(e.count_ns for e in evals) / 1e3,
            "us_per_token": sum(e.count_ns for e in counted) / 1e3 / len(steps),
            "ops_per_eval": statistics.mean(sum(e.ops.values()) for e in evals)}


def _repeat(fn, n: int, profiled: str = "") -> None:
    """n calls of fn(); under a fresh Profiler when `profiled` is "calls" (hooks
    only) or "steps" (also tracking each call as a step)."""
    if not profiled:
        for _ in range(n):
            fn()
        return
    with mlxprof.Profiler() as prof:
        for _ in (prof.track(range(n)) if profiled == "steps" else range(n)):
            fn()


def _thread_us(fns: dict, n: int, rounds: int = 5) -> dict:
    """Median thread-CPU us per call of each `fns` entry, timed in interleaved rounds."""
    r = measure.time_rounds(fns, rounds=rounds, warmup=1, timer=time.thread_time)
    return {name: r[name].median / n * 1e6 for name in fns}


def profiler_work_us(n: int = 20000) -> dict:
    """CPU us the profiler adds: per hooked call (item() of an evaluated
    scalar) and per step (a track() iteration, with its memory reads)."""
    y = mx.array(1.0)
    mx.eval(y)
    item = lambda: y.item()  # noqa: E731 (looked up per call: inside the hooks)
    calls = _thread_us({"base": lambda: _repeat(item, n),
                        "hooked": lambda: _repeat(item, n, profiled="calls")}, n)
    steps = _thread_us({"loop": lambda: _repeat(lambda: None, n),
                        "tracked": lambda: _repeat(lambda: None, n, profiled="steps")}, n)
    return {"hook_us_per_call": calls["hooked"] - calls["base"],
            "step_us": steps["tracked"] - steps["loop"]}


def graph_count_us(model, prompt) -> tuple[float, int]:
    """Time of count_ops on one decode token's lazy graph, and its node count."""
    from mlx_lm.models.cache import make_prompt_cache

    cache = make_prompt_cache(model)
    mx.eval(model(prompt[None], cache=cache))
    logits = model(prompt[-1:][None], cache=cache)
    nodes = sum(count_ops(logits).values())
    def count() -> None:
        count_ops(logits)

    return _thread_us({"count": count}, 1, rounds=20)["count"], nodes


def end_to_end(model, prompt, args) -> measure.Rounds:
    """Every mode once per round, the order rotating from round to round."""
    fns = {name: partial(decode_run, model, prompt, args.tokens, opts)
           for name, opts in MODES.items()}
    return measure.time_rounds(fns, rounds=args.reps, warmup=1, rotate=True)


def _costs(rounds: measure.Rounds) -> dict:
    out = {}
    for n in rounds.results:
        tok, cpu = rounds.measurement(n, "tok_s"), rounds.measurement(n, "cpu_ms")
        paired = rounds.ratio(n, "off", "tok_s")
        cpu_off = rounds.measurement("off", "cpu_ms").median
        out[n] = {"median_tok_s": tok.median, "tok_s_ci": list(tok.ci),
                  "cost_pct": 100 * (1 - tok.median / rounds.measurement("off", "tok_s").median),
                  "paired_cost_pct": 100 * (1 - paired.median),
                  "paired_cost_pct_ci": [100 * (1 - paired.ci[1]), 100 * (1 - paired.ci[0])],
                  "paired_noise": paired.warning,
                  "median_cpu_ms_per_token": cpu.median,
                  "cpu_cost_pct": 100 * (cpu.median / cpu_off - 1)}
    return out


def run(args) -> dict:
    model = tiny_model(args.hidden, args.layers, args.vocab)
    prompt = mx.array(list(range(1, 17)), dtype=mx.int32)
    rounds = end_to_end(model, prompt, args)
    tok_s = {n: [r["tok_s"] for r in v] for n, v in rounds.results.items()}
    cpu_ms = {n: [r["cpu_ms"] for r in v] for n, v in rounds.results.items()}
    extras = [r["extra"] for r in rounds.results["count_ops"]]
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
        "statistics": {"confidence": measure.CONFIDENCE, "noise_rule": measure.NOISE_RULE,
                       "order": "rotating interleaved rounds (mlxprof.measure.time_rounds)"},
        "modes": _costs(rounds),
        "runs_tok_s": tok_s, "runs_cpu_ms_per_token": cpu_ms,
        "round_order": rounds.order,
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
    head = ["mode", "tok/s", "cost %", "paired % [95% CI]", "CPU ms/tok", "CPU cost %"]
    body = []
    for name, m in res["modes"].items():
        off = name == "off"
        lo, hi = m["paired_cost_pct_ci"]
        paired = f"{m['paired_cost_pct']:.2f} [{lo:.2f} to {hi:.2f}]" + (
            "*" if m["paired_noise"] else "")
        body.append([name, f"{m['median_tok_s']:.1f}",
                     "-" if off else f"{m['cost_pct']:.2f}", "-" if off else paired,
                     f"{m['median_cpu_ms_per_token']:.3f}",
                     "-" if off else f"{m['cpu_cost_pct']:.2f}"])
    print(measure.format_table(head, body))
    w, mc, co = res["profiler_work_us"], res["modelled_cost_pct"], res["count_ops"]
    print("\ncost % = 1 - median tok/s / unprofiled median; paired % = from the median of "
          "same-round ratios,\nwith its bootstrap interval; * noisy "
          f"({measure.NOISE_RULE}); CPU = process CPU time")
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
