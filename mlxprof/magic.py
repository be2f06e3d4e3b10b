"""IPython cell magic: `%load_ext mlxprof`, then `%%mlxprof` profiles a cell.

While the cell runs, the live Profiler is in the notebook namespace as `prof`
(or `--name NAME`), so the cell can mark tokens with `prof.step()` or
`prof.track(...)`; without them the whole cell is one step. Afterwards the
summary is printed and `prof` holds the finished profile (`prof.per_token()`,
`prof.figure()`, ...).

    %%mlxprof --count-ops
    for tok, _ in prof.track(generate_step(prompt, model, max_tokens=32)):
        pass

Options: --count-ops, --eval-lock, --no-call-sites, --name NAME,
--save PATH (recording), --trace PATH (Chrome trace), --quiet (no summary).

A bad option is a usage error (nothing runs). If --save or --trace cannot be
written, the summary and the cell's value are still shown and the error is
printed after them. `%mlxprof?` shows this help; `%mlxprof` on one line
prints it too.
"""
from __future__ import annotations

import argparse
import ast
import shlex
import sys

from mlxprof.profiler import Profiler


class _OptionError(Exception):
    """A bad `%%mlxprof` option line (argparse's message)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # raise instead of printing usage and exiting
        raise _OptionError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="%%mlxprof", add_help=False)
    p.add_argument("--count-ops", action="store_true")
    p.add_argument("--eval-lock", action="store_true")
    p.add_argument("--no-call-sites", action="store_true")
    p.add_argument("--name", default="prof")
    p.add_argument("--save")
    p.add_argument("--trace")
    p.add_argument("--quiet", action="store_true")
    return p


def mlxprof_cell(shell, line: str, cell: str):
    """Run `cell` in `shell` under a Profiler; returns the cell's last value.

    Errors in the cell propagate (after the summary is printed and MLX restored).

    Example:
        >>> mlxprof_cell(get_ipython(), "--count-ops", "prof.step()")  # doctest: +SKIP
    """
    opts = _options(line)
    prof = Profiler(count_ops=opts.count_ops, eval_lock=opts.eval_lock,
                    call_sites=not opts.no_call_sites, meta={"source": "%%mlxprof"})
    shell.user_ns[opts.name] = prof
    body, last, filename = _compile_cell(shell, cell)
    ok = False
    try:
        with prof:
            exec(body, shell.user_ns)
            value = eval(last, shell.user_ns) if last is not None else None
        ok = True
    finally:
        _report(prof, opts, ok)
    return value


USAGE = ("usage: %%mlxprof [--count-ops] [--eval-lock] [--no-call-sites] "
         "[--name NAME] [--save PATH] [--trace PATH] [--quiet]")


def _options(line: str) -> argparse.Namespace:
    from IPython.core.error import UsageError  # shown by IPython without a traceback

    try:
        return _parser().parse_args(shlex.split(line))
    except (_OptionError, ValueError) as err:  # ValueError: shlex's unclosed quote
        raise UsageError(f"%%mlxprof: {err}\n{USAGE}") from None


def _compile_cell(shell, cell: str):
    """(body code, last-expression code or None, filename), like IPython's %%time."""
    source = shell.transform_cell(cell)
    cache = getattr(getattr(shell, "compile", None), "cache", None)
    filename = cache(source) if cache else "<mlxprof-cell>"
    tree = ast.parse(source, filename)
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = compile(ast.Expression(tree.body.pop().value), filename, "eval")
    return compile(tree, filename, "exec"), last, filename


def _report(prof: Profiler, opts, ok: bool) -> None:
    """Summary first, then the files; a file that cannot be written is reported
    on stderr, so the summary and the cell's value are never lost to it."""
    if prof.state != "stopped":
        return
    if not opts.quiet:
        head = "" if ok else "(the cell raised: profile up to the error)\n"
        print(head + prof.summary())
    for flag, path, write in (("--save", opts.save, prof.save),
                              ("--trace", opts.trace, prof.export_chrome_trace)):
        if path:
            try:
                write(path)
            except Exception as err:  # noqa: BLE001 - report any failure, keep the cell
                print(f"%%mlxprof {flag}: {err}", file=sys.stderr)


def load_ipython_extension(ipython) -> None:
    """Register `%%mlxprof` (what `%load_ext mlxprof` calls); `%mlxprof` and
    `%mlxprof?` show the help."""
    def mlxprof(line, cell=None):
        if cell is None:
            print(__doc__)
            return None
        return mlxprof_cell(ipython, line, cell)

    mlxprof.__doc__ = __doc__
    ipython.register_magic_function(mlxprof, magic_kind="line_cell",
                                    magic_name="mlxprof")
