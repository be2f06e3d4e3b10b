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
"""
from __future__ import annotations

import argparse
import ast
import shlex

from mlxprof.profiler import Profiler


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="%%mlxprof", add_help=False)
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


def _options(line: str) -> argparse.Namespace:
    try:
        return _parser().parse_args(shlex.split(line))
    except SystemExit:
        raise ValueError(f"%%mlxprof: bad options {line!r}; "
                         "see `mlxprof.magic.__doc__`") from None


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
    if prof.state != "stopped":
        return
    if opts.save:
        prof.save(opts.save)
    if opts.trace:
        prof.export_chrome_trace(opts.trace)
    if not opts.quiet:
        head = "" if ok else "(the cell raised: profile up to the error)\n"
        print(head + prof.summary())


def load_ipython_extension(ipython) -> None:
    """Register `%%mlxprof` (what `%load_ext mlxprof` calls)."""
    def mlxprof(line, cell):
        return mlxprof_cell(ipython, line, cell)

    ipython.register_magic_function(mlxprof, magic_kind="cell", magic_name="mlxprof")
