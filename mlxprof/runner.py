"""`mlxprof run`: profile a Python program as it is, from start to end.

The program runs in this interpreter as `python script.py args` or `python -m
module args` would run it (runpy: same sys.argv, `__main__`, sys.path[0],
exit code; stdout and stderr untouched), inside one `Profiler`. The recording
is written however the program ends: normally, by `sys.exit`, by an exception
(printed as Python prints it), by Ctrl-C or by SIGTERM; one line on stderr
says where it went and how the program ended.

Example:
    >>> program = Program.from_argv(["python", "-m", "mlx_lm", "generate", "--model", "m"])
    >>> program.kind, program.name, program.args
    ('module', 'mlx_lm', ['generate', '--model', 'm'])
    >>> run(program, output="gen.mlxprof.json.gz")          # doctest: +SKIP
    0
"""
from __future__ import annotations

import importlib.util
import os
import re
import runpy
import shlex
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path
from typing import NamedTuple

from mlxprof.events import MlxprofError
from mlxprof.profiler import Profiler
from mlxprof.steps import RULES, EvalSteps, MlxLmSteps

SUFFIX = ".mlxprof.json.gz"
STEP_MODES = ("auto", "none", "eval")
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")


class Program(NamedTuple):
    """What to run: kind 'path' (a script) or 'module' (`-m`), its name, its args."""

    kind: str
    name: str
    args: list

    @classmethod
    def from_argv(cls, argv) -> "Program":
        """Parse `[python] script.py args...` or `[python] -m module args...`.

        A leading `python` / `python3` means this interpreter.

        Example:
            >>> Program.from_argv(["train.py", "--lr", "1"])
            Program(kind='path', name='train.py', args=['--lr', '1'])
        """
        argv = list(argv)
        if argv and _PYTHON.match(os.path.basename(argv[0])):
            argv = argv[1:]
        if not argv:
            raise MlxprofError("no program given: mlxprof run -- script.py args... "
                               "or mlxprof run -m module args...")
        if argv[0] == "-m":
            if len(argv) < 2:
                raise MlxprofError("-m needs a module name (mlxprof run -m module args...)")
            return cls("module", argv[1], argv[2:])
        if argv[0].startswith("-"):
            raise MlxprofError(f"unsupported interpreter option {argv[0]!r}: give a "
                               "script path or -m module")
        return cls("path", argv[0], argv[1:])

    def check(self) -> None:
        """Fail early (MlxprofError) if the script or module cannot be found."""
        if self.kind == "path":
            p = Path(self.name)
            if not p.exists():
                raise MlxprofError(f"no such script: {self.name}")
            if not (p.is_file() or (p / "__main__.py").is_file()):
                raise MlxprofError(f"{self.name} is neither a Python file nor a "
                                   "folder with __main__.py")
            return
        saved = sys.path[0] if sys.path else None
        _set_path0(os.getcwd())  # where `python -m` looks first
        try:
            spec = importlib.util.find_spec(self.name)
        except (ImportError, ValueError) as exc:
            raise MlxprofError(f"no module named {self.name!r} ({exc})") from exc
        finally:
            if saved is not None:
                _set_path0(saved)
        if spec is None:
            raise MlxprofError(f"no module named {self.name!r} (check the name and "
                               "that it is installed in this Python)")

    def stem(self) -> str:
        """A file-name stem for the default output (script or module name)."""
        base = Path(self.name).stem if self.kind == "path" else self.name
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", base) or "program"

    def command(self) -> str:
        head = ["python", "-m", self.name] if self.kind == "module" else ["python", self.name]
        return shlex.join(head + list(self.args))


def default_output(program: Program, folder=".") -> Path:
    """`<stem>.mlxprof.json.gz`, or `<stem>.N.mlxprof.json.gz`: never an existing file.

    Example:
        >>> default_output(Program("path", "bench.py", [])).name  # doctest: +SKIP
        'bench.mlxprof.json.gz'
    """
    return unused_path(program.stem(), SUFFIX, folder)


def unused_path(stem: str, suffix: str, folder=".") -> Path:
    """`folder/stem+suffix`, else the first free `folder/stem.N+suffix`.

    Example:
        >>> unused_path("run", ".html").name   # doctest: +SKIP
        'run.html'
    """
    folder = Path(folder)
    path, n = folder / f"{stem}{suffix}", 1
    while path.exists():
        path, n = folder / f"{stem}.{n}{suffix}", n + 1
    return path


def check_writable(path, what: str) -> None:
    """MlxprofError unless `path` can be written: tried before the program runs.

    Missing parent folders are created (as saving would); a new file is
    created and removed again, an existing one opened for appending.
    """
    p = Path(path)
    if p.is_dir():
        raise MlxprofError(f"cannot write the {what} to {p}: it is a folder")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        if p.exists():
            open(p, "ab").close()
        else:
            open(p, "xb").close()
            p.unlink()
    except OSError as exc:
        raise MlxprofError(f"cannot write the {what} to {p}: "
                           f"{exc.strerror or exc}") from exc


class _Terminated(BaseException):
    """Raised in the main thread on SIGTERM so the recording can still be written."""


def _on_sigterm(signum, frame):
    raise _Terminated()


def run(program: Program, *, output=None, count_ops: bool = False,
        eval_lock: bool = False, call_sites: bool = True, trace=None, html=None,
        steps: str = "auto", log=None) -> int:
    """Run `program` under a profile, write the outputs; returns its exit code.

    Example:
        >>> run(Program("path", "decode.py", []), steps="eval")   # doctest: +SKIP
        0
    """
    log = log or sys.stderr
    if steps not in STEP_MODES:
        raise MlxprofError(f"--steps must be one of {', '.join(STEP_MODES)}, got {steps!r}")
    program.check()
    output = Path(output) if output else default_output(program)
    outputs = [(output, "recording")] + [(p, w) for p, w in ((trace, "trace"),
                                                                (html, "HTML report")) if p]
    for path, what in outputs:
        check_writable(path, what)
    replaced = [str(p) for p, _ in outputs if Path(p).exists()]

    prof = Profiler(count_ops=count_ops, eval_lock=eval_lock, call_sites=call_sites,
                    meta={"command": program.command(), "steps_requested": steps})
    shield = _Shield()
    try:
        code, ending, terminated, rec = _profile(program, prof, steps, shield)
        output, wrote = _write(rec, output, trace, html, log)
    finally:
        shield.down()
    note = f" (replaced {', '.join(replaced)})" if replaced else ""
    print(f"mlxprof: {ending}; recording written to {output}{note} [{wrote}]",
          file=log, flush=True)
    if terminated:  # as SIGTERM would have: no clean-up, other threads or not
        sys.stdout.flush()
        os._exit(code)
    return code


def _profile(program: Program, prof: Profiler, steps: str, shield: "_Shield"):
    """Run the program inside the profile; (exit code, how it ended, by SIGTERM?,
    the recording with the steps of the rule that applied)."""
    shield.catch_sigterm()
    eval_steps = EvalSteps(prof) if steps in ("auto", "eval") else None
    mlx_steps = MlxLmSteps(prof) if steps == "auto" else None
    prof.start()
    try:
        if eval_steps is not None:
            eval_steps.install()
        if mlx_steps is not None:
            with mlx_steps:
                code, ending, terminated = _execute(program)
        else:
            code, ending, terminated = _execute(program)
    finally:
        shield.up()
        used_mlx = mlx_steps is not None and mlx_steps.marked > 0
        prof.keep_tail = not used_mlx
        prof.stop()
    rule = "mlx_lm" if used_mlx else "eval" if eval_steps is not None else "none"
    prof.meta.update(steps=rule, steps_rule=RULES[rule])
    rec = prof.recording
    if rule == "eval":
        rec = eval_steps.apply(rec)
    return code, ending, terminated, rec


def _execute(program: Program):
    """runpy the program as Python would; (exit code, how it ended, by SIGTERM?)."""
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    try:
        sys.argv = [program.name] + list(program.args)
        if program.kind == "path":
            _set_path0(str(Path(program.name).resolve().parent))
            runpy.run_path(program.name, run_name="__main__")
        else:
            _set_path0(os.getcwd())
            runpy.run_module(program.name, run_name="__main__", alter_sys=True)
        return 0, "the program finished", False
    except SystemExit as exc:
        return _exit_code(exc), f"the program called sys.exit({exc.code!r})", False
    except KeyboardInterrupt:
        return 130, "the program was interrupted (Ctrl-C)", False
    except _Terminated:
        return 143, "the program was terminated (SIGTERM)", True
    except BaseException as exc:  # noqa: BLE001 - printed as Python prints it
        traceback.print_exception(type(exc), exc, _user_frames(exc.__traceback__))
        return 1, f"the program raised {type(exc).__name__}", False
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None:
            _set_path0(saved_path0)


def _set_path0(path: str) -> None:
    if sys.path:
        sys.path[0] = path
    else:
        sys.path.insert(0, path)


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter would exit with (a message is printed, as it would be)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    print(exc.code, file=sys.stderr)
    return 1


def _user_frames(tb):
    """Drop the frames of mlxprof and runpy from the top of a traceback."""
    def ours(name: str) -> bool:
        return name in (__file__, runpy.__file__) or name.startswith("<frozen runpy")

    while tb is not None and ours(tb.tb_frame.f_code.co_filename):
        tb = tb.tb_next
    return tb


def _write(rec, output, trace, html, log) -> tuple[Path, str]:
    """Save the recording and the asked-for views; (where it went, a short note).

    If the recording cannot be written where asked (the disk changed while the
    program ran), it goes to the temp folder instead, and the note says so.
    """
    parts = [f"{len(rec.steps)} steps, steps rule {rec.meta['steps']}"]
    try:
        rec.save(output)
    except MlxprofError as exc:
        print(f"mlxprof: error: {exc}", file=log)
        output = Path(tempfile.mkstemp(prefix="mlxprof-", suffix=SUFFIX)[1])
        rec.save(output)
    for path, what, write in ((trace, "trace", rec.export_chrome_trace),
                              (html, "HTML report", _html_writer(rec))):
        if not path:
            continue
        try:
            write(path)
            parts.append(f"{what} {path}")
        except (MlxprofError, OSError, ImportError) as exc:
            print(f"mlxprof: error: could not write the {what} to {path}: {exc}",
                  file=log)
    return output, "; ".join(parts)


def _html_writer(rec):
    def write(path):
        from mlxprof.html_report import write_report
        return write_report(rec, path)
    return write


class _Shield:
    """Signal handling around the program (main thread only; elsewhere a no-op).

    While it runs, SIGTERM raises `_Terminated` so the recording can be written;
    from its end until the recording is written (`up` .. `down`), Ctrl-C and
    SIGTERM are ignored so a second one cannot lose it.
    """

    NAMES = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.active = threading.current_thread() is threading.main_thread()
        self._saved = ({n: signal.getsignal(getattr(signal, n)) for n in self.NAMES}
                       if self.active else {})

    def catch_sigterm(self) -> None:
        if self.active:
            signal.signal(signal.SIGTERM, _on_sigterm)

    def up(self) -> None:
        if self.active:
            for name in self.NAMES:
                signal.signal(getattr(signal, name), signal.SIG_IGN)

    def down(self) -> None:
        if self.active:
            for name, handler in self._saved.items():
                if handler is not None:  # None: set outside Python, cannot be put back
                    signal.signal(getattr(signal, name), handler)
