"""A MicroPython board on a serial port, driven through its raw REPL with mpremote.

Why mpremote's Python API (``mpremote.transport_serial.SerialTransport``) rather than the
``mpremote`` command: deploying is a conversation -- read the board's mpy version, hash
files, decide, write, hash again -- and each ``mpremote`` run would reopen the port and
(by default) soft-reset the board, and report failures only as text on stderr. The
transport keeps one raw-REPL session, returns the board's output as bytes, and raises
``TransportExecError`` with the board's traceback. Its API is not declared stable
upstream, so it is used in one place only, this module, through four methods
(``__init__``, ``enter_raw_repl``, ``exec_raw``, ``exit_raw_repl``/``close``); mpremote is
pinned in requirements/dev.txt.

The raw REPL (MicroPython docs, "raw REPL"): Ctrl-A enters it and the board answers
``raw REPL; CTRL-B to exit\\r\\n>``; the host sends code ending in Ctrl-D; the board
replies ``OK``, runs it, and sends its output, ``\\x04``, any traceback, ``\\x04`` and a new
``>``. Ctrl-D on an empty line soft-resets (``soft reboot``; on a board, boot.py runs but
not main.py while in raw mode). The transport also negotiates "raw-paste" mode (flow
controlled, ``\\x05A\\x01``) when the board offers it.

Modem-control lines. pyserial asserts DTR and RTS when it opens a port (on an ESP32
dev board they drive EN and IO0 through the auto-reset circuit, so the defaults matter and
are kept). A pseudo-terminal has no such lines: ``ioctl(TIOCMBIS)`` fails with ENOTTY (on
Linux; EINVAL on some systems). pyserial's ``open()`` already ignores those two errors;
mpremote's ``close()`` drops RTS/DTR and ignores only ENOTTY, so :class:`_Transport`
ignores EINVAL there too. Nothing else touches the lines.

The board's hardware watchdog. A station's firmware arms ``machine.WDT`` (at most 8 s,
firmware/watchdog.py), and no port can disarm it: after the Ctrl-C that stops the station,
the board would reset mid-copy. So the session's first act is to take the watchdog over
(``machine.WDT(timeout=8000)``: the same watchdog, re-armed) and every helper that runs on
the board feeds it. A board that had no watchdog running gets one, too: either way the
board resets by itself about 8 s after the session ends, and boots what was deployed.
Boards without ``machine`` (the unix port) skip this.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import errno
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import serial  # type: ignore[import-untyped]
from mpremote.transport import TransportError  # type: ignore[import-untyped]
from mpremote.transport_serial import SerialTransport  # type: ignore[import-untyped]

WATCHDOG_MS = 8000
CHUNK_BYTES = 1536  # raw bytes per write command (base64: 2 KiB of command text)
HASH_BATCH = 24  # files hashed per command


class BoardError(Exception):
    """The board could not be reached, or the session with it broke (``port`` names it)."""

    def __init__(self, port: str, message: str) -> None:
        self.port = port
        super().__init__(f"{port}: {message}")


class BoardCommandError(BoardError):
    """Code sent to the board raised; ``traceback`` is the board's own text."""

    def __init__(self, port: str, what: str, traceback: str) -> None:
        self.traceback = traceback
        last = traceback.strip().splitlines()[-1] if traceback.strip() else "no output"
        super().__init__(port, f"{what} failed on the board: {last}")


class _Transport(SerialTransport):  # type: ignore[misc]
    """SerialTransport that also tolerates EINVAL when dropping RTS/DTR on a line-less port."""

    def close(self) -> None:
        try:
            self.serial.rts = False
            self.serial.dtr = False
        except OSError as e:
            if e.errno not in (errno.ENOTTY, errno.EINVAL):
                raise
        self.serial.close()


# Helpers defined on the board once per session (names start with _lt_ to stay out of the
# way of anything else in the REPL's globals). Paths are relative to the board's current
# folder, which is the flash root at the raw REPL.
_BOARD_HELPERS = """
import os, sys, hashlib, binascii
_lt_wdt = None
if _lt_feed_wdt:
    try:
        import machine
        _lt_wdt = machine.WDT(timeout=%d)
    except Exception:
        _lt_wdt = None
def _lt_feed():
    if _lt_wdt is not None:
        _lt_wdt.feed()
_lt_buf = bytearray(512)
def _lt_hash(p):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256()
    n = 0
    mv = memoryview(_lt_buf)
    while True:
        _lt_feed()
        k = f.readinto(_lt_buf)
        if not k:
            break
        h.update(mv[:k])
        n += k
    f.close()
    return [n, binascii.hexlify(h.digest()).decode()]
def _lt_open(p):
    global _lt_f
    _lt_f = open(p, 'wb')
def _lt_w(s):
    _lt_feed()
    _lt_f.write(binascii.a2b_base64(s))
def _lt_close():
    _lt_f.close()
def _lt_mv(a, b):
    try:
        os.rename(a, b)
    except OSError:
        os.remove(b)
        os.rename(a, b)
def _lt_rm(p):
    try:
        os.remove(p)
        return 1
    except OSError:
        return 0
def _lt_mkdirs(p):
    d = ''
    for part in p.split('/'):
        d = part if not d else d + '/' + part
        try:
            os.mkdir(d)
        except OSError:
            pass
def _lt_walk(d):
    out = []
    try:
        entries = list(os.ilistdir(d))
    except OSError:
        return out
    for e in entries:
        p = d + '/' + e[0]
        if e[1] & 0x4000:
            out.extend(_lt_walk(p))
        else:
            out.append(p)
    return out
def _lt_free():
    try:
        s = os.statvfs('.')
        return s[0] * s[4]
    except Exception:
        return None
"""


@dataclass(frozen=True)
class BoardInfo:
    """What the board says about itself."""

    sys_mpy: int | None  # sys.implementation._mpy (None: too old to say)
    version: str  # MicroPython version, e.g. "1.29.0"
    platform: str  # sys.platform: rp2, esp32, linux
    machine: str  # sys.implementation._machine
    has_sha256: bool
    free_bytes: int | None  # free flash, when os.statvfs exists
    watchdog: bool  # the session armed (took over) machine.WDT


class Board:
    """One raw-REPL session with the board on ``port``::

        with Board("/dev/ttyUSB0") as board:
            print(board.info())

    ``soft_reset`` (default) soft-resets the board on entering the raw REPL, so a station
    that was running leaves a clean heap; ``feed_watchdog`` takes the watchdog over (see the
    module's docstring)."""

    def __init__(
        self,
        port: str,
        *,
        baudrate: int = 115200,
        soft_reset: bool = True,
        feed_watchdog: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.port = port
        self._baudrate = baudrate
        self._soft_reset = soft_reset
        self._feed_watchdog = feed_watchdog
        self._timeout_s = timeout_s
        self._t: Any = None

    # -- session

    def open(self) -> None:
        try:
            self._t = _Transport(self.port, baudrate=self._baudrate)
        except (TransportError, OSError, serial.SerialException) as e:
            raise BoardError(self.port, f"cannot open the serial port ({e})") from e
        try:
            self._t.enter_raw_repl(soft_reset=self._soft_reset)
        except (TransportError, OSError, serial.SerialException) as e:
            self._close_quietly()
            raise BoardError(
                self.port,
                f"no MicroPython raw REPL answered ({e}); is a MicroPython board on this port?",
            ) from e
        self.exec(
            f"_lt_feed_wdt = {self._feed_watchdog}\n" + _BOARD_HELPERS % WATCHDOG_MS,
            what="setting up the session",
        )

    def close(self) -> None:
        """Leave the raw REPL (back to the friendly ``>>>``) and close the port."""
        if self._t is None:
            return
        with contextlib.suppress(TransportError, OSError, serial.SerialException):
            self._t.exit_raw_repl()
        self._close_quietly()

    def _close_quietly(self) -> None:
        t, self._t = self._t, None
        try:
            t.close()
        except (OSError, serial.SerialException):
            with contextlib.suppress(OSError, serial.SerialException):
                t.serial.close()

    def __enter__(self) -> Board:
        self.open()
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- running code

    def exec(self, code: str, *, what: str = "a command") -> bytes:
        """Run ``code`` on the board; its printed output. ``BoardCommandError`` with the
        board's traceback if it raised; ``BoardError`` if the link broke."""
        if self._t is None:
            raise BoardError(self.port, "not connected")
        try:
            out, err = self._t.exec_raw(code, timeout=self._timeout_s)
        except (TransportError, OSError, serial.SerialException) as e:
            raise BoardError(self.port, f"connection lost during {what} ({e})") from e
        if err:
            raise BoardCommandError(self.port, what, err.decode("utf-8", "replace"))
        return bytes(out)

    def eval(self, expr: str, *, what: str = "a query") -> Any:
        """The value of ``expr`` on the board (``repr`` there, ``ast.literal_eval`` here)."""
        out = self.exec(f"print(repr({expr}))", what=what)
        text = out.decode("utf-8", "replace").strip()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise BoardError(self.port, f"unexpected reply to {what}: {text[:200]!r}") from e

    # -- queries

    def info(self) -> BoardInfo:
        d = self.eval(
            "{'mpy': getattr(sys.implementation, '_mpy', None),"
            " 'version': '.'.join(str(x) for x in sys.implementation.version[:3]),"
            " 'platform': sys.platform,"
            " 'machine': getattr(sys.implementation, '_machine', ''),"
            " 'sha256': hasattr(hashlib, 'sha256'),"
            " 'free': _lt_free(), 'wdt': _lt_wdt is not None}",
            what="reading the board's MicroPython version",
        )
        return BoardInfo(
            d["mpy"], d["version"], d["platform"], d["machine"], d["sha256"], d["free"], d["wdt"]
        )

    def hashes(self, paths: Iterable[str]) -> dict[str, tuple[int, str] | None]:
        """``path -> (size, sha256 hex)`` of files on the board; None for a missing file."""
        paths = list(paths)
        out: dict[str, tuple[int, str] | None] = {}
        for i in range(0, len(paths), HASH_BATCH):
            batch = paths[i : i + HASH_BATCH]
            values = self.eval(f"[_lt_hash(p) for p in {batch!r}]", what="hashing files")
            for p, v in zip(batch, values, strict=True):
                out[p] = None if v is None else (int(v[0]), str(v[1]))
        return out

    def walk(self, folder: str) -> list[str]:
        """Every file under ``folder`` on the board (``folder/...`` paths); [] if absent."""
        return [str(p) for p in self.eval(f"_lt_walk({folder!r})", what=f"listing {folder}")]

    def read_text(self, path: str) -> str | None:
        """A small text file's content; None when it does not exist."""
        return self.eval(  # type: ignore[no-any-return]
            f"(lambda p: open(p).read() if _lt_hash(p) else None)({path!r})", what=f"reading {path}"
        )

    # -- changes

    def mkdirs(self, folder: str) -> None:
        self.exec(f"_lt_mkdirs({folder!r})", what=f"creating {folder}")

    def remove(self, path: str) -> bool:
        return bool(self.eval(f"_lt_rm({path!r})", what=f"removing {path}"))

    def rename(self, old: str, new: str) -> None:
        """Rename ``old`` onto ``new`` (replacing it: LittleFS and POSIX do in one step; FAT
        refuses, so the old ``new`` is removed first there)."""
        self.exec(f"_lt_mv({old!r}, {new!r})", what=f"renaming {old} to {new}")

    def write_file(
        self, path: str, data: bytes, progress: Callable[[int], None] | None = None
    ) -> None:
        """Write ``data`` to ``path`` (created or truncated), in base64 chunks."""
        self.exec(f"_lt_open({path!r})", what=f"opening {path}")
        for i in range(0, len(data), CHUNK_BYTES):
            chunk = base64.b64encode(data[i : i + CHUNK_BYTES]).decode("ascii")
            self.exec(f"_lt_w({chunk!r})", what=f"writing {path}")
            if progress is not None:
                progress(min(i + CHUNK_BYTES, len(data)))
        self.exec("_lt_close()", what=f"closing {path}")
