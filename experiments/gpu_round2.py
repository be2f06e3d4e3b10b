"""Round-2 GPU check of `fast` vs mlx-lm, one bounded device call (issue 14, 13/16).

    python3 experiments/gpu_round2.py --models qwen3-8b,qwen3.5-35b-a3b \
        --scale full --rounds 5 --tokens 256 --budget 520 --out "$OUT"

Per model, in this order, each stage written to ``<out>/gpu_round2_<model>.json``
as soon as it ends (a call cut short still leaves what it finished):

1. load the model, optimize it (what the "auto" kernel options picked) and the
   CUDA kernels' self-checks at its shapes (CUDA only);
2. determinism: `fast` --repeat times (the first run is also its warm-up, as
   in issue 13's report) and once more after filling MLX's buffer cache with
   NaN (a kernel reading memory it did not write then changes tokens);
   mlx-lm likewise; --tokens greedy tokens each, same prompt. If `fast` is
   not repeatable, the same for variants with one lever off (BISECT);
3. the correctness yardstick (mlxprof.decode.accuracy): mlx-lm bf16 and
   `fast` (and --yardstick-variants of it, YARD_VARIANTS) against the same
   model in float32, --steps teacher-forced steps;
4. interleaved rounds mlx_lm / fast (/ --variants of fast, / --loops of
   mlxprof on the original model, e.g. pipelined; the order
   rotates each round), --tokens decode
   tokens after a --prompt token prompt, until --rounds or the model's share of
   --budget is spent; raw rounds, median ratio and a bootstrap interval;
5. a profiled pass of each loop (ops per token, host ms, time in async_eval).

Each model gets a share of what is left of --budget in proportion to COST (its
expected load + JIT + run time). ``smollm2-shape`` is a synthetic llama with SmolLM2-135M's shapes (its real
weights are too big to carry to the device): 4-bit group 32 like the GGUF,
tied embeddings, random weights. A summary of every model goes to
``<out>/gpu_round2_summary.json``. At most 5 files.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))      # check_kernels
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # mlxprof

from common import first_diff  # noqa: E402

SMOLLM2_SHAPE = {     # SmolLM2-135M-Instruct's config (as read from its GGUF)
    "full": {"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30,
             "intermediate_size": 1536, "num_attention_heads": 9,
             "num_key_value_heads": 3, "rms_norm_eps": 1e-5, "vocab_size": 49152,
             "rope_theta": 100000.0, "max_position_embeddings": 8192,
             "tie_word_embeddings": True},
    "small": {"hidden_size": 64, "intermediate_size": 192, "num_attention_heads": 2,
              "num_key_value_heads": 1, "vocab_size": 1024},
    "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
             "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 512},
}
SMOLLM2_RECIPE = {"group_size": 32, "bits": 4, "mode": "affine"}
# relative time a model needs (load, JIT, runs): its share of the budget
COST = {"qwen3.5-35b-a3b": 3.0, "qwen3-30b-a3b": 3.0, "qwen3-8b": 2.0, "smollm2-shape": 1.0}


class Clock:
    """Seconds left of the call's budget."""

    def __init__(self, budget_s: float):
        self.t0, self.budget = time.perf_counter(), budget_s

    def used(self) -> float:
        return time.perf_counter() - self.t0

    def left(self) -> float:
        return self.budget - self.used()


def log(*parts) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, flush=True)


def load(name: str, scale: str):
    """An LM for a synthetic name or ``smollm2-shape``."""
    from mlxprof.lab import models
    if name != "smollm2-shape":
        return models.load(name, scale=scale, seed=0)
    from mlxprof.lab.models.configs import merge
    from mlxprof.lab.models.lm import LM
    from mlxprof.lab.models.synthetic import build
    cfg = SMOLLM2_SHAPE["full"] if scale == "full" else merge(
        SMOLLM2_SHAPE["full"], SMOLLM2_SHAPE[scale])
    model, qcfg = build(cfg, seed=0, recipe=SMOLLM2_RECIPE)
    return LM(model, None, name, scale, qcfg, 0)


def kernels(fast) -> dict:
    """What the "auto" options picked, and the kernels' self-checks on CUDA."""
    from mlxprof.decode.kernels.cuda_common import on_cuda
    layers = fast.layers
    out = {"on_cuda": on_cuda(),
           "gated_delta": sorted({l.mixer.recurrence for l in layers
                                  if hasattr(l.mixer, "recurrence")}),
           "router_combine": sorted({f"{l.ffn.router_mode}/{l.ffn.combine}" for l in layers
                                     if hasattr(l.ffn, "router_mode")}),
           "add_norm": sorted({str(l.cuda_norm) for l in layers}),
           "experts_kernel": sorted({str(l.ffn.experts_kernel) for l in layers
                                     if hasattr(l.ffn, "experts_kernel")}),
           "experts_routed": sorted({str(l.ffn.experts_routed) for l in layers
                                     if hasattr(l.ffn, "experts_routed")}),
           "qk_norm_rope": sorted({str(l.mixer.cuda_rope) for l in layers
                                   if hasattr(l.mixer, "cuda_rope")}),
           "attention": sorted({str(l.mixer.cuda_attention) for l in layers
                                if hasattr(l.mixer, "cuda_attention")})}
    if on_cuda():
        from check_kernels import self_checks
        try:
            out["self_checks"] = self_checks(fast)
        except Exception as err:  # report, keep going: the bench still means something
            out["self_checks"] = {"error": f"{type(err).__name__}: {err}"}
    return out


def tokens_of(model, prompt, n: int, loop: str) -> list[int]:
    from mlxprof import decode
    toks = list(decode.LOOPS[loop].fn(model, prompt, n))
    decode.synchronize()
    return toks


def repeat_runs(model, prompt, n: int, loop: str, repeat: int) -> dict:
    """`repeat` runs (the first may be the process's first), then one after
    poisoning MLX's buffer cache with NaN (mlxprof.lab.testing.poison_buffer_cache):
    a kernel reading memory it did not write then changes the tokens. Issue 13
    item 16 saw only a process's first run differ, as fresh memory would."""
    from mlxprof.lab.testing import poison_buffer_cache
    runs = []
    for i in range(repeat + 1):
        if i == repeat:
            poison_buffer_cache()
        runs.append(tokens_of(model, prompt, n, loop))
    return {"identical": all(r == runs[0] for r in runs),
            "first_diff_vs_run0": [first_diff(runs[0], r) for r in runs[1:]],
            "last_is_poisoned": True, "tokens": runs}


BISECT = {"qmv_ops": {"qmv": "ops"}, "no_kv_in_compile": {"kv_in_compile": False},
          "norm_rope_ops": {"add_norm": "ops", "qk_norm_rope": "ops"},
          "no_compile": {"compile": False}}


def determinism(lm, fast, prompt, n: int, repeat: int, bisect: bool = True) -> dict:
    """`fast` `repeat` times + once after poisoning, mlx-lm likewise; if `fast`
    is not repeatable, the same for variants with one lever off (BISECT)."""
    from mlxprof.decode.optimize import optimize_model
    out = {"tokens": n, "fast": repeat_runs(fast, prompt, n, "fast", repeat),
           "mlx_lm": repeat_runs(lm.model, prompt, n, "mlx_lm", repeat)}
    ref, got = out["mlx_lm"]["tokens"][0], out["fast"]["tokens"][-1]
    out["identical"] = out["fast"]["identical"]
    out["greedy_vs_mlx_lm_first_diff"] = first_diff(ref, got)
    out["greedy_vs_mlx_lm_agreement"] = sum(a == b for a, b in zip(ref, got)) / n
    if bisect and not out["identical"]:
        out["bisect"] = {}
        for name, opts in BISECT.items():
            r = repeat_runs(optimize_model(lm.model, **opts), prompt, n, "fast", 2)
            out["bisect"][name] = {k: v for k, v in r.items() if k != "tokens"}
            log(f"  bisect {name}: identical={r['identical']} {r['first_diff_vs_run0']}")
    return out


YARD_VARIANTS = {   # `fast` with one lever changed, held to the yardstick (--yardstick-variants)
    "qmv_ops": {"qmv": "ops"}, "qmv_swiglu": {"qmv": "swiglu"},
    "norm_ops": {"add_norm": "ops"}, "rope_ops": {"qk_norm_rope": "ops"},
    "no_compile": {"compile": False}, "moe_ops": {"experts": "ops"},
    "experts_cuda": {"experts": "cuda"},
    "attn_cuda": {"attention": "cuda"}, "attn_ops": {"attention": "ops"},
    # which dense-model projections run on cuda_qmv ("qmv_keep": the others
    # go back to MLX's qmv after the build; "unfused": SwiGLU by MLX ops)
    "qmv_attn_only": {"qmv_keep": ("mixer.qkv", "mixer.o_proj")},
    "qmv_down_only": {"qmv_keep": ("ffn.down",)},
    "qmv_no_gate_up": {"qmv_keep": ("mixer.qkv", "mixer.o_proj", "ffn.down")},
    "qmv_gate_up_unfused": {"qmv_keep": ("ffn.gate_up",), "unfused": True},
}


def restrict_qmv(fast, keep, unfused: bool = False):
    """`fast` with cuda_qmv only on the layers' projections named in `keep`
    (paths inside a layer, e.g. "ffn.down"), and with the MLPs' gate_up +
    SwiGLU kernel off when `unfused`; returns `fast`."""
    from mlxprof.decode.optimize.ffn import MLP
    from mlxprof.decode.optimize.fuse import Proj
    for layer in fast.layers:
        for name, m in layer.named_modules():
            if isinstance(m, Proj) and name not in keep:
                m.cuda_qmv = False
            if unfused and isinstance(m, MLP):
                m.fused_swiglu = lambda x: False
    return fast


def built(lm, table: dict, names: list[str]) -> tuple[dict, dict]:
    """({name: optimize_model(lm.model, **table[name])}, {name: error}) for `names`:
    a lever this model or backend refuses (or an Options field not there yet)
    is reported, not raised; "qmv_keep" / "unfused" entries go to restrict_qmv."""
    from mlxprof.decode.optimize import optimize_model
    models, errors = {}, {}
    for name in names:
        opts = dict(table[name])
        keep, unfused = opts.pop("qmv_keep", None), opts.pop("unfused", False)
        try:
            models[name] = optimize_model(lm.model, **opts)
        except (ValueError, TypeError) as err:  # e.g. an explicit "cuda" lever off CUDA
            errors[name] = f"{type(err).__name__}: {err}"
            log(f"  variant {name} skipped: {errors[name]}")
            continue
        if keep is not None:
            restrict_qmv(models[name], keep, unfused)
    return models, errors


def yardstick(lm, fast, prompt, steps: int, variants: list[str] = ()) -> dict:
    """mlx-lm's yardstick dict for `fast` (its "ok" is about `fast` alone),
    under "variants" each YARD_VARIANTS entry's distance, passes, or error,
    and under "spread" where each table's distance comes from (accuracy.spread)."""
    from dataclasses import asdict, replace

    from mlxprof.decode.accuracy import judge, logits_tables, spread
    models, errors = built(lm, YARD_VARIANTS, list(variants))
    tables = logits_tables(lm.model, {"fast": fast, **models}, prompt, steps)
    f32 = tables.pop("float32")
    y = judge(f32, tables["mlx_lm"], {n: t for n, t in tables.items() if n != "mlx_lm"})
    log(str(y))
    out = replace(y, candidates={"fast": y.candidates["fast"]}).to_dict()
    out["spread"] = {n: spread(f32, t) for n, t in tables.items()}
    if variants:
        out["variants"] = {**{n: {**asdict(y.candidates[n]), "passes": y.passes(n)}
                              for n in models}, **{n: {"error": e} for n, e in errors.items()}}
    return out


def one_run(loop: str, model, prompt, n: int) -> dict:
    """One timed run of decode loop `loop` (a decode.LOOPS name) on `model`."""
    from mlxprof import decode
    from mlxprof.lab.bench import time_run
    t = time_run(decode.LOOPS[loop].fn, model, prompt, n)
    return {"loop": loop, "prompt_tok_per_s": t.prompt_tok_per_s,
            "decode_tok_per_s": t.decode_tok_per_s, "ttft_s": t.ttft_s,
            "decode_s": t.decode_s, "n_tokens": t.n_tokens}


LOOPS = ("pipelined", "compiled", "async", "sync")   # on the original model (--loops)
VARIANTS = {   # `fast` with other levers, timed in the same rounds (--variants)
    "shared_in_switch": {"shared_in_switch": True},
    "qmv_cuda": {"qmv": "cuda"},
    "qmv_ops": {"qmv": "ops"},
    "moe_ops": {"experts": "ops"},
    "experts_cuda": {"experts": "cuda"},
    "attn_cuda": {"attention": "cuda"},
    "attn_ops": {"attention": "ops"},
    "rope_ops": {"qk_norm_rope": "ops"},
    "no_kernels": {"router": "exact", "combine": "exact", "add_norm": "ops",
                   "qk_norm_rope": "ops", "qmv": "ops", "gated_delta": "ops",
                   "attention": "ops"},
}


def contenders(lm, fast, names: list[str], loops: list[str] = ()) -> dict:
    """{label: (loop, model)} timed in the rounds: mlx_lm, fast, fast variants
    ("fast_<name>") and `loops` (e.g. "pipelined") on the original model."""
    variants, _ = built(lm, VARIANTS, names)
    return {"mlx_lm": ("mlx_lm", lm.model), "fast": ("fast", fast),
            **{f"fast_{n}": ("fast", m) for n, m in variants.items()},
            **{loop: (loop, lm.model) for loop in loops}}


def rounds(models: dict, prompt, n: int, want: int, deadline: float, clock: Clock) -> dict:
    """Interleaved rounds (each round starts one loop later) until `want` or the
    deadline; `models` maps labels to (decode loop, model)."""
    labels, raw, last = list(models), [], 0.0
    while len(raw) < want and (not raw or clock.used() + last < deadline):
        t = time.perf_counter()
        k = len(raw) % len(labels)
        order = labels[k:] + labels[:k]
        raw.append({"round": len(raw), "order": order,
                    **{x: one_run(*models[x], prompt, n) for x in order}})
        last = time.perf_counter() - t
        log(f"  round {len(raw)}: " + ", ".join(
            f"{x} {raw[-1][x]['decode_tok_per_s']:.1f}" for x in labels) + f" tok/s ({last:.1f}s)")
    return summarize(raw, labels)


def ratios(raw: list[dict], label: str) -> dict:
    """Medians and the paired ratio to mlx_lm (mlxprof.measure.paired_ratio: the
    median of same-round ratios, its bootstrap 95% interval; [] below 2 rounds)."""
    from mlxprof.measure import median, paired_ratio
    out = {}
    for key, name in (("decode_tok_per_s", "decode"), ("prompt_tok_per_s", "prompt")):
        mine, base = [r[label][key] for r in raw], [r["mlx_lm"][key] for r in raw]
        r = paired_ratio(mine, base)
        out[name] = {"mlx_lm_median": median(base), f"{label}_median": median(mine),
                     "ratio_median": r.median, "ratio_ci95": list(r.ci) if r.n >= 2 else [],
                     "ratios": list(r.values)}
    return out


def summarize(raw: list[dict], labels: list[str]) -> dict:
    out = {"raw": raw, "n_rounds": len(raw), **ratios(raw, "fast")}
    out["variants"] = {x: ratios(raw, x) for x in labels if x.startswith("fast_")}
    out["loops"] = {x: ratios(raw, x) for x in labels if x not in ("mlx_lm", "fast")
                    and not x.startswith("fast_")}
    return out


def profiled(lm, fast, prompt, n: int) -> dict:
    """Per-token medians of one profiled run of each loop (ops counted, in
    total and by primitive: where the remaining ops of `fast` are)."""
    from mlxprof import Profiler, decode
    out = {}
    for loop, model in (("mlx_lm", lm.model), ("fast", fast)):
        with Profiler(count_ops=True) as prof:
            for _ in prof.track(decode.LOOPS[loop].fn(model, prompt, n)):
                pass
        decode.synchronize()
        df = prof.per_token().iloc[1:]
        out[loop] = {k: float(df[c].median()) for k, c in (
            ("ops_per_tok", "ops_total"), ("host_ms", "host_ms"), ("wall_ms", "wall_ms"),
            ("submit_ms", "submit_ms"), ("blocked_ms", "blocked_ms")) if c in df}
        out[loop]["ops_by_primitive"] = {c[4:]: float(df[c].median()) for c in df.columns
                                         if c.startswith("ops_") and c != "ops_total"
                                         and df[c].median() > 0}
        log(f"  profile {loop}: {out[loop]}")
    return out


def write(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, default=str))


def run_model(name: str, args, clock: Clock, deadline: float, out: Path) -> dict:
    from mlxprof.decode.optimize import optimize_model
    from mlxprof.provenance import collect
    res = {"model": name, "scale": args.scale, "provenance": collect(),
           "config": {k: getattr(args, k) for k in ("tokens", "prompt", "steps", "rounds",
                                                     "repeat", "loops", "yardstick_variants",
                                                     "fast_options")},
           "stages": {}}
    path = out / f"gpu_round2_{name.replace('.', '_')}.json"

    def stage(key, fn, need_s=0.0):
        if clock.used() + need_s > deadline:
            res["stages"][key] = {"skipped": "out of time"}
            log(f"{name}: {key} skipped (out of time)")
            write(path, res)
            return None
        t = time.perf_counter()
        try:
            val = fn()
        except Exception as err:  # one failed stage must not lose the others
            val = {"error": f"{type(err).__name__}: {err}"}
        res["stages"][key] = val
        res.setdefault("seconds", {})[key] = round(time.perf_counter() - t, 1)
        log(f"{name}: {key} done in {res['seconds'][key]}s")
        write(path, res)
        return val

    log(f"{name}: loading ({args.scale})")
    lm = load(name, args.scale)
    prompt = lm.prompt(args.prompt, seed=0)
    fast = optimize_model(lm.model, **args.fast_options)
    stage("kernels", lambda: kernels(fast))
    if "determinism" not in args.skip:
        stage("determinism", lambda: determinism(lm, fast, prompt, args.tokens, args.repeat,
                                                 bisect="bisect" not in args.skip))
    if "yardstick" not in args.skip:
        stage("yardstick", lambda: yardstick(lm, fast, prompt, args.steps,
                                             args.yardstick_variants))
    stage("rounds", lambda: rounds(contenders(lm, fast, args.variants, args.loops), prompt,
                                   args.tokens, args.rounds, deadline - args.profile_reserve,
                                   clock))
    if "profile" not in args.skip:
        stage("profile", lambda: profiled(lm, fast, prompt, args.profile_tokens))
    return res


def free() -> None:
    """Drop the last model's arrays before loading the next (full sizes add up)."""
    import gc

    import mlx.core as mx
    gc.collect()
    mx.clear_cache()


def brief(res: dict) -> dict:
    st = res["stages"]
    r, y, d = st.get("rounds") or {}, st.get("yardstick") or {}, st.get("determinism") or {}
    return {"model": res["model"], "decode": {k: v for k, v in (r.get("decode") or {}).items()
                                              if k != "ratios"},
            "prompt_ratio_median": (r.get("prompt") or {}).get("ratio_median"),
            "loops_decode_ratio_median": {k: v["decode"]["ratio_median"]
                                          for k, v in (r.get("loops") or {}).items()},
            "n_rounds": r.get("n_rounds"), "yardstick_ok": y.get("ok"),
            "yardstick_conditioned": y.get("conditioned"),
            "yardstick_variants": {k: v.get("passes", v.get("error"))
                                   for k, v in (y.get("variants") or {}).items()},
            "deterministic": d.get("identical"), "profile": st.get("profile"),
            "seconds": res.get("seconds")}


def parse(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="qwen3-8b,qwen3.5-35b-a3b,qwen3-30b-a3b,smollm2-shape")
    ap.add_argument("--scale", default="full", choices=("tiny", "small", "full"))
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--prompt", type=int, default=32)
    ap.add_argument("--steps", type=int, default=128, help="teacher-forced steps")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="fast runs for determinism")
    ap.add_argument("--profile-tokens", type=int, default=64)
    ap.add_argument("--profile-reserve", type=float, default=20.0,
                    help="seconds kept for the profiled pass of each model")
    ap.add_argument("--budget", type=float, default=520.0, help="seconds for the call")
    ap.add_argument("--skip", default="",
                    help="comma list: determinism,bisect,yardstick,profile")
    ap.add_argument("--variants", default="",
                    help=f"fast variants also timed in the rounds: {','.join(VARIANTS)}")
    ap.add_argument("--loops", default="",
                    help=f"mlxprof loops on the original model also timed: {','.join(LOOPS)}")
    ap.add_argument("--yardstick-variants", default="",
                    help=f"fast variants also held to the yardstick: {','.join(YARD_VARIANTS)}")
    ap.add_argument("--fast-options", default="",
                    help="Options for `fast` other than the defaults, e.g. experts=cuda")
    ap.add_argument("--out", default="out")
    args = ap.parse_args(argv)
    try:
        args.fast_options = dict(kv.split("=", 1) for kv in args.fast_options.split(",") if kv)
    except ValueError:
        ap.error("--fast-options: a comma list of NAME=VALUE (string values)")
    args.skip = set(filter(None, args.skip.split(",")))
    if "profile" in args.skip:
        args.profile_reserve = 0.0
    for flag, known in (("variants", VARIANTS), ("loops", LOOPS),
                        ("yardstick_variants", YARD_VARIANTS)):
        setattr(args, flag, [v for v in getattr(args, flag).split(",") if v])
        if any(v not in known for v in getattr(args, flag)):
            ap.error(f"--{flag.replace('_', '-')}: known ones are {', '.join(known)}")
    if args.tokens < 2 or args.rounds < 1 or args.steps < 1 or args.repeat < 1:
        ap.error("need --tokens >= 2, --rounds >= 1, --steps >= 1, --repeat >= 1")
    return args


def main(argv=None) -> int:
    args = parse(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.budget)
    names = [m for m in args.models.split(",") if m]
    summary = {"argv": sys.argv, "models": []}
    for i, name in enumerate(names):
        share = clock.left() * COST.get(name, 2.0) / sum(COST.get(n, 2.0) for n in names[i:])
        log(f"== {name}: {share:.0f}s of {clock.left():.0f}s left")
        try:
            res = run_model(name, args, clock, clock.used() + share, out)
            summary["models"].append(brief(res))
        except Exception as err:  # a model that fails to load: say so, go on
            log(f"{name}: FAILED {type(err).__name__}: {err}")
            summary["models"].append({"model": name, "error": f"{type(err).__name__}: {err}"})
        free()
        write(out / "gpu_round2_summary.json", summary)
    log("done in", round(clock.used(), 1), "s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
