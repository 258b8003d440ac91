"""A machine.UART-like port over a pseudo-terminal, for CPython tests of drivers/.

``PtyPort`` offers the subset of MicroPython's ``machine.UART`` that the drivers use:
``write(buf)``, ``read(n)``, ``readinto(buf[, nbytes])`` returning the byte count or
``None`` when nothing is waiting (non-blocking, like a UART with ``timeout=0``),
``any()`` (bytes waiting, FIONREAD) and ``close()``.

Ptys start in cooked mode: the slave's line discipline turns CR into LF (ICRNL), eats
XON/XOFF (0x11/0x13, IXON), echoes, and turns LF into CRLF on output (OPOST/ONLCR).
Modbus frames contain all of those bytes, so every fd opened here is switched to raw
mode (``tty.setraw`` = cfmakeraw) before use; ``open_pty()`` sets both ends raw.
"""

from __future__ import annotations

import array
import errno
import fcntl
import os
import select
import termios
import tty


def set_raw(fd: int) -> None:
    """cfmakeraw on ``fd``; no-op for fds that are not ttys."""
    if os.isatty(fd):
        tty.setraw(fd, termios.TCSANOW)


def set_nonblocking(fd: int) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)


def open_pty() -> tuple[int, int, str]:
    """A raw pty pair: ``(master_fd, slave_fd, slave_path)``; master non-blocking.

    Keep ``slave_fd`` open for as long as the master is in use: when every slave fd is
    closed a read on the master fails with EIO (hang-up).
    """
    master, slave = os.openpty()
    try:
        set_raw(slave)
        set_raw(master)
        set_nonblocking(master)
        path = os.ttyname(slave)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave, path


def bytes_waiting(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf, True)
    return buf[0]


class PtyPort:
    """UART-like, non-blocking port over a pty fd (either end).

    ``PtyPort(fd)`` takes ownership of ``fd``; ``PtyPort.open(path)`` opens a tty path
    (e.g. an emulator's ``port_path``).
    """

    def __init__(self, fd: int, *, owns_fd: bool = True) -> None:
        set_raw(fd)
        set_nonblocking(fd)
        self._fd = fd
        self._owns = owns_fd

    @classmethod
    def open(cls, path: str) -> PtyPort:
        fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            return cls(fd)
        except BaseException:
            os.close(fd)
            raise

    def fileno(self) -> int:
        if self._fd < 0:
            raise ValueError("port is closed")
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def any(self) -> int:
        """Bytes waiting to be read."""
        return bytes_waiting(self.fileno())

    def write(self, buf) -> int:
        """Write all of ``buf`` (waits for room, at most 1 s); returns bytes written."""
        view = memoryview(buf).cast("B")
        done = 0
        while done < len(view):
            try:
                done += os.write(self.fileno(), view[done:])
            except BlockingIOError:
                _, ready, _ = select.select([], [self._fd], [], 1.0)
                if not ready:
                    break
        return done

    def readinto(self, buf, nbytes: int | None = None) -> int | None:
        """Read into ``buf``; the count read, or ``None`` when nothing is waiting."""
        view = memoryview(buf).cast("B")
        if nbytes is not None:
            view = view[:nbytes]
        if len(view) == 0:
            return 0
        try:
            n = os.readv(self.fileno(), [view])
        except BlockingIOError:
            return None
        except OSError as exc:
            if exc.errno == errno.EIO:  # other end hung up: nothing to read
                return None
            raise
        return n if n > 0 else None

    def read(self, nbytes: int | None = None) -> bytes | None:
        n = self.any() if nbytes is None else nbytes
        if n <= 0:
            return None
        buf = bytearray(n)
        got = self.readinto(buf)
        return None if got is None else bytes(buf[:got])

    def flush(self) -> None:
        """Wait until written bytes have left (tcdrain; immediate on a pty)."""
        if os.isatty(self.fileno()):
            termios.tcdrain(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            if self._owns:
                os.close(fd)

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()
