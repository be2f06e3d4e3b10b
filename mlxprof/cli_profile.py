"""Argument parsing of the profiling commands: run, show, trace, compare, report.

The work is done in the profiler wing (mlxprof.runner, mlxprof.compare,
mlxprof.html_report, mlxprof.recording); `mlxprof.cli` registers these
commands with `add_commands` and hands them to `dispatch`.

Example:
    >>> from mlxprof.cli import main
    >>> main(["run", "-o", "r.mlxprof.json.gz", "--", "python", "decode.py"])  # doctest: +SKIP
    0
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

COMMANDS = ("run", "show", "trace", "compare", "report")
_FORMAT = argparse.RawDescriptionHelpFormatter


def add_commands(sub) -> None:
    """Add the profiling commands to the `mlxprof` subparsers `sub`."""
    _add_run(sub)
    p = sub.add_parser(
        "show", help="print the summary of a recording", formatter_class=_FORMAT,
        description="Print the summary of a recording: calls per kind, the token time "
                    "split, threads, ops and call sites.",
        epilog="example:\n  mlxprof show generate.mlxprof.json.gz")
    p.add_argument("recording")
    p.add_argument("--per-token", action="store_true",
                   help="also print the per-token table")
    _add_view(sub, "trace", "write a Chrome/Perfetto trace of a recording",
              "Write the recording as Chrome trace JSON (open it in ui.perfetto.dev "
              "or chrome://tracing).", "trace.json", ".trace.json")
    p = sub.add_parser(
        "compare", help="per-token medians of recordings side by side",
        formatter_class=_FORMAT,
        description="Per-token medians of every column of two or more recordings, the "
                    "ratio of each to the first, and a noise flag (~) where the "
                    "difference is within the token-to-token spread.",
        epilog="example:\n  mlxprof compare sync.mlxprof.json.gz async.mlxprof.json.gz")
    p.add_argument("recordings", nargs="+", metavar="recording")
    p.add_argument("--csv", default=None, help="also write the comparison as CSV")
    _add_view(sub, "report", "write a self-contained HTML report of a recording",
              "Write one HTML page (plotly.js embedded, works offline): the per-token "
              "timeline, the time split, calls per thread, ops by primitive, sync call "
              "sites, threads and provenance.", "report.html", ".html")


def _add_view(sub, name, help_, description, example_out, suffix) -> None:
    """A command `name REC [-o FILE]` that writes one view of a recording."""
    p = sub.add_parser(
        name, help=help_, formatter_class=_FORMAT, description=description,
        epilog=f"example:\n  mlxprof {name} generate.mlxprof.json.gz -o {example_out}")
    p.add_argument("recording")
    p.add_argument("-o", "--output", default=None,
                   help=f"output file (default: the recording's name with {suffix}, "
                        "never an existing file)")


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run", help="profile a Python program as it is (script or -m module)",
        formatter_class=_FORMAT,
        usage="mlxprof run [options] -- [python] script.py args...\n"
              "       mlxprof run [options] -m module args...",
        description="Run a program as Python would (same sys.argv, __main__, exit "
                    "code, output) inside an mlxprof profile, and write a recording - "
                    "also when it raises, calls sys.exit or is stopped by Ctrl-C or "
                    "SIGTERM.",
        epilog="examples:\n"
               "  mlxprof run -- python -m mlx_lm generate --model DIR --prompt hi\n"
               "  mlxprof run -o mine.mlxprof.json.gz --html mine.html -- decode.py\n"
               "  mlxprof run --steps eval -m mypackage.decode --tokens 64\n\n"
               "steps (--steps):\n"
               "  auto  one step per token of mlx-lm's generate_step / stream_generate /\n"
               "        speculative_generate_step, one per BatchGenerator.next() that\n"
               "        generated tokens; if none ran: the eval rule\n"
               "  eval  one step per mx.eval / mx.async_eval on the main thread\n"
               "  none  the whole run is one step")
    p.add_argument("-o", "--output", default=None,
                   help="recording file (default: <script or module>.mlxprof.json.gz "
                        "here, numbered so no file is overwritten)")
    p.add_argument("--count-ops", action="store_true",
                   help="count graph primitives per evaluation (slower host)")
    p.add_argument("--eval-lock", action="store_true",
                   help="emulate mlx-swift's global eval lock")
    p.add_argument("--no-call-sites", action="store_true",
                   help="do not record the file:line of each call (less overhead)")
    p.add_argument("--trace", metavar="FILE", default=None,
                   help="also write a Chrome/Perfetto trace")
    p.add_argument("--html", metavar="FILE", default=None,
                   help="also write the HTML report")
    p.add_argument("--steps", choices=("auto", "none", "eval"), default="auto",
                   help="how tokens are found (default: %(default)s; see below)")
    p.add_argument("-m", dest="module", nargs=argparse.REMAINDER, metavar="MODULE",
                   help="run a module as `python -m` does (the rest are its args)")
    p.add_argument("program", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)


def dispatch(args, prog: str) -> int:
    """Run one of COMMANDS; bad input is one line `prog: error: ...`, exit 2."""
    from mlxprof.events import MlxprofError

    try:
        return _COMMANDS[args.cmd](args)
    except (MlxprofError, FileNotFoundError, IsADirectoryError, ValueError) as err:
        if os.environ.get("MLXPROF_DEBUG"):
            raise
        if isinstance(err, FileNotFoundError) and err.filename:
            err = f"no such file: {err.filename}"
        return fail(prog, err)


def fail(prog: str, err) -> int:
    """Print `prog: error: <err on one line>` on stderr; returns the exit code 2.

    Example:
        >>> fail("mlxprof show", ValueError("bad   input"))   # doctest: +SKIP
        2
    """
    print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
    return 2


def one_line(err) -> str:
    """An error's message on one line (its type's name when it has none).

    Example:
        >>> one_line(ValueError("bad   input")), one_line(KeyError())
        ('bad input', 'KeyError')
    """
    return " ".join(str(err).split()) or type(err).__name__


def _run(args) -> int:
    from mlxprof.runner import Program, run

    if args.module is not None:
        argv = ["-m"] + list(args.module)
    else:
        argv = list(args.program)
        if argv[:1] == ["--"]:
            argv = argv[1:]
    return run(Program.from_argv(argv), output=args.output, count_ops=args.count_ops,
               eval_lock=args.eval_lock, call_sites=not args.no_call_sites,
               trace=args.trace, html=args.html, steps=args.steps)


def _load(path):
    import mlxprof

    if Path(path).is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a recording")
    return mlxprof.load(path)


def _show(args) -> int:
    rec = _load(args.recording)
    print(rec.summary())
    if args.per_token:
        import pandas as pd

        with pd.option_context("display.max_rows", None, "display.width", 200):
            print()
            print(rec.per_token().to_string(index=False))
    return 0


def _derived(recording: str, suffix: str) -> Path:
    """REC's name with `suffix`, numbered so it never replaces a file."""
    from mlxprof.recording import split_name
    from mlxprof.runner import unused_path

    stem, known = split_name(recording)
    return unused_path(stem if known else Path(recording).stem, suffix)


def _write_view(args, suffix: str, what: str, write) -> int:
    """Load REC, write one view of it to -o (or a derived name); say where."""
    from mlxprof.runner import check_writable

    out = args.output or _derived(args.recording, suffix)
    check_writable(out, what)
    print(f"wrote {write(_load(args.recording), out)}")
    return 0


def _trace(args) -> int:
    return _write_view(args, ".trace.json", "trace",
                       lambda rec, out: rec.export_chrome_trace(out))


def _report(args) -> int:
    from mlxprof.html_report import write_report

    return _write_view(args, ".html", "HTML report", write_report)


def _compare(args) -> int:
    from mlxprof.compare import compare_recordings, format_comparison
    from mlxprof.runner import check_writable

    if args.csv:
        check_writable(args.csv, "CSV")
    for path in args.recordings:
        if Path(path).is_dir():
            raise IsADirectoryError(f"{path} is a folder, not a recording")
    df = compare_recordings(args.recordings)
    print(format_comparison(df))
    if args.csv:
        df.to_csv(args.csv)
        print(f"\nwrote {args.csv}")
    return 0


_COMMANDS = {"run": _run, "show": _show, "trace": _trace, "compare": _compare,
             "report": _report}
