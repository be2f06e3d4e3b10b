"""Sharded decode under `mlx.launch`: every rank profiles itself and saves its recording.

`run(...)` launches the ranks on this machine and loads their recordings back
as one `mlxprof.RankSet`; `python -m mlxprof.lab.sharded ...` is what each
rank runs: join the group, load the model split over it
(`models.load(..., shard=group)`), decode once to warm up (the ring connects on
the first collective), then decode `--tokens` greedy tokens under
`mlxprof.Profiler` and save `<out>/<name>.rank<r>.mlxprof.json.gz`, with the
tokens in `meta["tokens"]`.

Example:
    >>> from mlxprof.lab import sharded
    >>> rs = sharded.run("qwen3-8b", scale="tiny", out="out/")   # doctest: +SKIP
    >>> rs.recordings[0].meta["tokens"]                          # doctest: +SKIP
"""
from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

__all__ = ["run", "rank_main"]


def run(model: str, scale: str = "tiny", *, out, parallel: str = "tensor",
        loop: str = "sync", tokens: int = 8, prompt: int = 8, n: int = 2,
        backend: str = "ring", seed: int = 0, count_ops: bool = False,
        dtype: str | None = None, name: str | None = None, timeout: float = 120):
    """Decode on `n` local ranks, return the recordings as a `mlxprof.RankSet`.

    Old recordings of the same `name` in `out` are removed first. `dtype`
    ("float32", "bfloat16", ...) overrides the model's float type: bf16 rounding
    in a different summation order can flip an MoE router's choice, so tokens
    of a tensor-parallel MoE match the unsharded model exactly only in float32.

    Example:
        >>> rs = run("qwen3.5-35b-a3b", parallel="pipeline", out="out/")  # doctest: +SKIP
        >>> rs.skew()                                                       # doctest: +SKIP
    """
    import mlxprof
    from mlxprof.lab.launch import launch

    name = name or f"{model}-{parallel}-{loop}"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pattern = str(out / f"{name}.rank*.mlxprof.json.gz")
    for old in glob.glob(pattern):
        os.remove(old)
    argv = ["-m", "mlxprof.lab.sharded", model, "--scale", scale, "--parallel", parallel,
            "--loop", loop, "--tokens", str(tokens), "--prompt", str(prompt),
            "--seed", str(seed), "--out", str(out), "--name", name]
    argv += ["--dtype", dtype] if dtype else []
    launch(argv + (["--count-ops"] if count_ops else []), n=n, backend=backend,
           timeout=timeout)
    return mlxprof.load_ranks(pattern)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mlxprof.lab.sharded",
                                description="one rank of a profiled sharded decode "
                                            "(start it with mlx.launch)")
    p.add_argument("model")
    p.add_argument("--scale", default="tiny")
    p.add_argument("--parallel", default="tensor", choices=("tensor", "pipeline"))
    p.add_argument("--loop", default="sync")
    p.add_argument("--tokens", type=int, default=8)
    p.add_argument("--prompt", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--count-ops", action="store_true")
    p.add_argument("--dtype", default=None, help="float type, e.g. float32")
    p.add_argument("--out", required=True)
    p.add_argument("--name", required=True)
    return p


def rank_main(argv=None) -> str:
    """One rank: join the group, load sharded, warm up, profile, save. Returns the path."""
    import mlx.core as mx

    import mlxprof
    from mlxprof import decode
    from mlxprof.lab import models
    from mlxprof.provenance import launcher_backend

    args = _parser().parse_args(argv)
    group = mx.distributed.init(strict=True, backend=launcher_backend() or "any")
    dtype = getattr(mx, args.dtype) if args.dtype else None
    lm = models.load(args.model, args.scale, args.seed, shard=group, parallel=args.parallel,
                     dtype=dtype)
    prompt = lm.prompt(args.prompt)
    list(decode.stream(lm.model, prompt, 2, loop=args.loop))
    meta = {"model": args.model, "scale": args.scale, "parallel": args.parallel,
            "loop": args.loop, "seed": args.seed, "prompt_tokens": args.prompt,
            "dtype": args.dtype}
    with mlxprof.Profiler(count_ops=args.count_ops, group=group, meta=meta) as prof:
        toks = list(prof.track(decode.stream(lm.model, prompt, args.tokens, loop=args.loop)))
    prof.meta["tokens"] = toks
    return prof.save(os.path.join(args.out, f"{args.name}.mlxprof.json.gz"))


if __name__ == "__main__":
    rank_main()
