"""The board's hardware watchdog, played by the host for firmware on the MicroPython unix port.

On a board, ``machine.WDT(timeout=t)`` starts a hardware counter that resets the chip
unless ``feed()`` is called at least every ``t`` ms; nothing the firmware does can stop
it once started. The unix port has no such counter, so the ``machine`` shim
(hil_tests/mpshim/machine.py) reports arming and every feed in the file named by
``LANTIAN_WDT_FILE``: one line ``"<feeds> <ticks_ms> <timeout_ms> <pid>"``, atomically
replaced on each feed. :class:`WatchdogHost` polls that file from a thread and, when the
line has not changed for ``timeout_ms`` plus ``margin_ms``, SIGKILLs the process — the
closest a host gets to pulling the reset line: no ``finally``, no ``atexit``, no flush.

Semantics, as on the hardware:

- Nothing happens until the file appears (the firmware has not created its WDT yet).
  Give every run a fresh path: a file left over from an earlier run arms at once.
- Age is measured with the host's monotonic clock from the moment a *change* of the line
  was seen, so the two processes' clocks never need to agree; polling adds at most
  ``poll_s`` of lateness, which ``margin_ms`` (default 150 ms) absorbs.
- After a bite the feed file is removed (a reset disarms the watchdog: the next boot
  arms it again by creating ``machine.WDT``), and ``on_reset("wdt")`` is called; it may
  start the firmware again and return the new process (``subprocess.Popen`` or pid) to
  watch, or return None to stop. A watched ``Popen`` that ends on its own calls
  ``on_reset("reset")`` when it exited through ``machine.reset()`` (exit code 82) and
  ``on_reset("exit")`` otherwise.

Command line (restarts the firmware like a board would, with ``LANTIAN_RESET_CAUSE`` set
so that ``machine.reset_cause()`` answers WDT_RESET / SOFT_RESET after a restart)::

    python -m hil_tests.watchdog_host --feed-file /tmp/wdt --max-restarts 3 -- \\
        .venv/bin/micropython firmware/main.py
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

RESET_EXIT_CODE = 82  # machine.RESET_EXIT_CODE
WDT_RESET = 3  # machine.WDT_RESET
SOFT_RESET = 5  # machine.SOFT_RESET

Process = subprocess.Popen[bytes] | subprocess.Popen[str] | int


class Bite:
    """One watchdog reset: when (host monotonic s), how stale the last feed was (ms),
    how many feeds the process had made and which pid was killed."""

    def __init__(self, at: float, age_ms: float, feeds: int, pid: int) -> None:
        self.at = at
        self.age_ms = age_ms
        self.feeds = feeds
        self.pid = pid

    def __repr__(self) -> str:
        return f"Bite(pid={self.pid}, feeds={self.feeds}, age_ms={self.age_ms:.0f})"


class FeedFileError(ValueError):
    """The feed file does not hold ``<feeds> <ticks_ms> <timeout_ms> <pid>``."""


def parse_feed_line(text: str) -> tuple[int, int, int, int]:
    parts = text.split()
    if len(parts) != 4:
        raise FeedFileError(f"feed file line {text!r} has {len(parts)} fields, expected 4")
    try:
        feeds, ticks, timeout_ms, pid = (int(p) for p in parts)
    except ValueError as e:
        raise FeedFileError(f"feed file line {text!r} is not four integers") from e
    return feeds, ticks, timeout_ms, pid


class WatchdogHost:
    """Watch ``feed_file`` and SIGKILL ``process`` when it stops feeding (module docstring).

    ``process``: the firmware's ``Popen``, a pid, or None to take the pid the shim wrote
    into the feed file. ``timeout_ms`` overrides the timeout the firmware asked for.
    """

    def __init__(
        self,
        feed_file: str | os.PathLike[str],
        process: Process | None = None,
        *,
        timeout_ms: int | None = None,
        margin_ms: int = 150,
        poll_s: float = 0.02,
        on_reset: Callable[[str], Process | None] | None = None,
    ) -> None:
        self.feed_file = Path(feed_file)
        self.process = process
        self.timeout_override = timeout_ms
        self.margin_ms = margin_ms
        self.poll_s = poll_s
        self.on_reset = on_reset
        self.bites: list[Bite] = []
        self.resets: list[str] = []  # every reason on_reset was called with, in order
        self.armed = False
        self.feeds = -1
        self.timeout_ms = 0
        self.error: BaseException | None = None  # what stopped the thread, if not stop()
        self._file_pid = 0
        self._line: str | None = None
        self._changed_at = 0.0
        self._stop = threading.Event()
        self._done = threading.Event()
        self._bitten = threading.Condition()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> WatchdogHost:
        self._thread = threading.Thread(target=self._run, name="watchdog-host", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> WatchdogHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def watching(self) -> bool:
        """False once the thread ended (stopped, or nothing left to watch)."""
        return not self._done.is_set()

    def wait_for_bite(self, timeout: float, count: int = 1) -> bool:
        """Block until ``count`` bites happened in total; False on timeout."""
        with self._bitten:
            return self._bitten.wait_for(lambda: len(self.bites) >= count, timeout)

    def last_feed_age_ms(self) -> float | None:
        if not self.armed:
            return None
        return (time.monotonic() - self._changed_at) * 1000

    # ------------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_s):
                if not self.check():
                    break
        except BaseException as e:  # surfaced through .error, never lost in a thread
            self.error = e
        finally:
            self._done.set()

    def check(self) -> bool:
        """One poll (the thread calls it; tests may too). False when done watching."""
        self._read_feed()
        ended = self._process_ended()
        if ended is not None:
            return self._reset(ended)
        age = self.last_feed_age_ms()
        if age is not None and age > self.timeout_ms + self.margin_ms:
            self._bite(age)
            return self._reset("wdt")
        return True

    def _read_feed(self) -> None:
        try:
            line = self.feed_file.read_text(encoding="ascii")
        except FileNotFoundError:
            return
        if not line or line == self._line:
            return
        feeds, _ticks, timeout_ms, pid = parse_feed_line(line)
        self._line = line
        self._changed_at = time.monotonic()
        self.armed = True
        self.feeds = feeds
        self.timeout_ms = self.timeout_override or timeout_ms
        self._file_pid = pid

    def _pid(self) -> int:
        p = self.process
        if p is None:
            return self._file_pid
        return p if isinstance(p, int) else p.pid

    def _process_ended(self) -> str | None:
        p = self.process
        if isinstance(p, subprocess.Popen):
            code = p.poll()
            if code is None:
                return None
            return "reset" if code == RESET_EXIT_CODE else "exit"
        pid = self._pid()
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return "exit"
        return None

    def _bite(self, age_ms: float) -> None:
        pid = self._pid()
        p = self.process
        if isinstance(p, subprocess.Popen):
            p.kill()
            p.wait()
        elif pid > 0:
            with contextlib.suppress(ProcessLookupError):  # already gone
                os.kill(pid, signal.SIGKILL)
        with self._bitten:
            self.bites.append(Bite(time.monotonic(), age_ms, self.feeds, pid))
            self._bitten.notify_all()

    def _reset(self, reason: str) -> bool:
        """The board reset (bite, machine.reset() or exit): disarm, maybe restart."""
        self.resets.append(reason)
        self.feed_file.unlink(missing_ok=True)
        self._line = None
        self.armed = False
        self.feeds = -1
        self._file_pid = 0
        new = self.on_reset(reason) if self.on_reset is not None else None
        self.process = new
        return new is not None


# ---------------------------------------------------------------------- command line


def supervise(
    argv: Sequence[str],
    feed_file: str | os.PathLike[str],
    *,
    max_restarts: int = 3,
    margin_ms: int = 150,
    env: dict[str, str] | None = None,
) -> list[str]:
    """Run ``argv`` under a host watchdog, restarting it after a bite or machine.reset()
    (at most ``max_restarts`` times). Returns the reset reasons in order."""
    base = dict(os.environ if env is None else env)
    base["LANTIAN_WDT_FILE"] = str(feed_file)
    Path(feed_file).unlink(missing_ok=True)

    def launch(cause: int | None) -> subprocess.Popen[bytes]:
        e = dict(base)
        if cause is not None:
            e["LANTIAN_RESET_CAUSE"] = str(cause)
        return subprocess.Popen(list(argv), env=e)

    restarts = [0]

    def on_reset(reason: str) -> Process | None:
        print(f"watchdog_host: {reason}", file=sys.stderr, flush=True)
        if reason == "exit" or restarts[0] >= max_restarts:
            return None
        restarts[0] += 1
        return launch(WDT_RESET if reason == "wdt" else SOFT_RESET)

    host = WatchdogHost(feed_file, launch(None), margin_ms=margin_ms, on_reset=on_reset)
    host.start()
    try:
        while host.watching:
            time.sleep(0.1)
    finally:
        host.stop()
        p = host.process
        if isinstance(p, subprocess.Popen) and p.poll() is None:
            p.kill()
            p.wait()
    if host.error is not None:
        raise host.error
    return host.resets


def main(args: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--feed-file", required=True)
    ap.add_argument("--max-restarts", type=int, default=3)
    ap.add_argument("--margin-ms", type=int, default=150)
    ap.add_argument("command", nargs=argparse.REMAINDER)
    ns = ap.parse_args(args)
    cmd = ns.command[1:] if ns.command[:1] == ["--"] else ns.command
    if not cmd:
        ap.error("give the firmware command after --")
    resets = supervise(cmd, ns.feed_file, max_restarts=ns.max_restarts, margin_ms=ns.margin_ms)
    print("watchdog_host: resets " + (" ".join(resets) or "none"), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
