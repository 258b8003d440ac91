"""``machine`` for the MicroPython unix port: the station firmware runs unchanged on a host.

The unix port's built-in ``machine`` has no UART, Pin or WDT. Put ``hil_tests/mpshim``
first on MicroPython's path: ``MICROPYPATH=hil_tests/mpshim:.:.frozen`` (keep ``.frozen``:
the port's ``asyncio`` lives there, and MICROPYPATH replaces the default path), or
``sys.path.insert(0, "hil_tests/mpshim")`` before the first ``import machine``. A
``machine.py`` on the path overrides the built-in module, which stays reachable as
``umachine``. Everything the host harness controls is named by environment variables;
``hil_tests/mpshim_host.py`` builds them, ``hil_tests/watchdog_host.py`` plays the WDT.

UART (``LANTIAN_UART_<id>`` = path of a pty slave, e.g. an emulator's ``port_path``)
    Opened read/write and switched to raw mode (``termios.setraw`` = cfmakeraw: no CR/LF
    translation, no XON/XOFF, no echo; Modbus frames contain all of 0x0A, 0x0D, 0x11,
    0x13), then VMIN = VTIME = 0 (c_cc indices 6 and 5 on Linux; the port's termios
    module does not name them), so a read never blocks: it returns what the kernel holds,
    0 bytes when nothing. ``any()`` must count without a FIONREAD ioctl (the port has no
    fcntl), so it moves waiting bytes into a small internal buffer of ``rxbuf`` bytes
    (like the driver's ring buffer on a board) and returns how many it holds; reads serve
    that buffer first. ``timeout`` is the wait for the first byte, ``timeout_char`` the
    wait between bytes (MicroPython's documented meaning), both via ``select.poll``.
    ``flush()`` is a no-op: a pty has no transmit shift register to drain, and
    ``FileIO.flush`` on a tty fails with EINVAL. The baud rate is not simulated: bytes
    arrive as fast as the other end writes them. EIO (the other end of the pty closed, a
    cut cable) reads as "nothing received" and a failed write as ``None``; both are
    counted in ``io_errors``.
    A UART works with ``asyncio.StreamReader``/``StreamWriter``: ``ioctl`` answers
    MP_STREAM_POLL and, while the internal buffer is empty, MP_STREAM_GET_FILENO, so the
    event loop waits on the fd itself. (A task that calls ``any()`` while another task
    waits on the same UART could leave bytes in the buffer unsignalled; one task owns a
    bus, so this does not arise.)

Pin (``LANTIAN_PIN_<id>`` = a file, optional)
    Every change of an output's value (including the first value set) is kept in
    ``transitions`` as ``(ticks_ms, value)`` (the last ``TRANSITIONS_KEPT``; older ones are
    counted in ``transitions_dropped``) and, when the variable names a file, appended to
    it as one line ``"<ticks_ms> <value>\\n"`` (one write, O_APPEND, file closed after each
    line, so a reader never sees half a line). ``ticks_ms`` is this process's
    ``time.ticks_ms()``: use it for ordering and durations, not as host time. A host-side
    emulator tails the file and, for a power-rail pin, switches its device off on
    ``0`` and on (cold start) on ``1``. An input pin's ``value()`` returns the last value
    written to it (or ``value=`` given), 0 by default.

WDT (``LANTIAN_WDT_FILE`` = a file, optional)
    A board's watchdog resets the chip when it is not fed within ``timeout`` ms; the unix
    port has none. Creating ``WDT`` arms it and every ``feed()`` atomically replaces the
    file (write ``<file>.tmp``, rename over ``<file>``) with one line
    ``"<feeds> <ticks_ms> <timeout_ms> <pid>\\n"`` (feeds: 0 at arming, +1 per feed; pid
    from /proc/self/stat, 0 if unknown). Overwriting, not appending: the file stays one
    line however long the station runs, and a rename is never seen half done.
    ``hil_tests/watchdog_host.py`` watches the file and SIGKILLs the process when the
    line has not changed for ``timeout_ms`` (+ a margin for its polling), as the
    hardware would. Without the variable, nothing resets the process. ``timeout`` above
    ``WDT_MAX_TIMEOUT_MS`` (8388 ms, the RP2040's limit) is a ValueError, so firmware that
    would not run on an RP2040 fails here too.

reset(), reset_cause(), unique_id(), freq()
    ``reset()`` exits the process with ``RESET_EXIT_CODE`` (82, "R") via SystemExit, which
    asyncio and ``except Exception`` do not swallow. ``reset_cause()`` returns
    ``LANTIAN_RESET_CAUSE`` (a number, or pwron/hard/wdt/deepsleep/soft), default
    PWRON_RESET; the watchdog host sets it to WDT_RESET when it restarts a bitten
    process. ``unique_id()`` is ``LANTIAN_UNIQUE_ID`` (hex) or ``b"LTSHIM01"``;
    ``freq()`` is 125 MHz (RP2040 default) until set.

A variable that is needed but unset, or malformed, raises ``ShimConfigError`` naming it.
"""

import io
import os
import select
import sys
import termios
import time

try:
    import umachine as _builtin  # the port's own machine module (mem8, time_pulse_us...)
except ImportError:
    _builtin = None

_VMIN = 6  # c_cc index on Linux (asm-generic/termbits.h); termios here lacks the name
_VTIME = 5

_MP_STREAM_FLUSH = 1  # py/stream.h ioctl requests
_MP_STREAM_POLL = 3
_MP_STREAM_CLOSE = 4
_MP_STREAM_GET_FILENO = 10
_EIO = 5

RESET_EXIT_CODE = 82  # "R": the process ended through machine.reset()
WDT_MAX_TIMEOUT_MS = 8388  # RP2040 datasheet: 24-bit down-counter, 1 us ticks (RP2040-E1)
TRANSITIONS_KEPT = 64

PWRON_RESET = 1  # values of the esp32/rp2 ports
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_CAUSES = {
    "pwron": PWRON_RESET,
    "hard": HARD_RESET,
    "wdt": WDT_RESET,
    "deepsleep": DEEPSLEEP_RESET,
    "soft": SOFT_RESET,
}


class ShimConfigError(Exception):
    """An environment variable the shim needs is missing or malformed."""

    def __init__(self, variable, problem):
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


def _env(name):
    v = os.getenv(name)
    return v if v else None


def _pid():
    try:
        with open("/proc/self/stat") as f:
            return int(f.read().split(" ", 1)[0])
    except (OSError, ValueError):
        return 0


# ------------------------------------------------------------------------------- UART


class UART(io.IOBase):
    """A hardware UART stand-in on a pty; see the module docstring."""

    INV_TX = 1
    INV_RX = 2
    RTS = 1
    CTS = 2

    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, **kw):
        self.id = id
        self.io_errors = 0
        self.breaks = 0
        self._f = None
        self._fd = -1
        self._poller = None
        self._buf = bytearray(0)
        self._mv = memoryview(self._buf)
        self._pos = 0
        self._end = 0
        self.init(baudrate, bits, parity, stop, **kw)

    def init(
        self,
        baudrate=9600,
        bits=8,
        parity=None,
        stop=1,
        tx=None,
        rx=None,
        txbuf=256,
        rxbuf=256,
        timeout=0,
        timeout_char=0,
        invert=0,
        flow=0,
        **kw,
    ):
        if bits not in (5, 6, 7, 8, 9):
            raise ValueError(f"bits must be 5..9, not {bits!r}")
        if parity not in (None, 0, 1):
            raise ValueError(f"parity must be None, 0 (even) or 1 (odd), not {parity!r}")
        if stop not in (1, 2):
            raise ValueError(f"stop must be 1 or 2, not {stop!r}")
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self.tx = tx
        self.rx = rx
        self.timeout = timeout
        self.timeout_char = timeout_char
        if self._f is None:
            self._open()
        if len(self._buf) != rxbuf:
            self._buf = bytearray(max(rxbuf, 1))
            self._mv = memoryview(self._buf)
            self._pos = self._end = 0

    def _open(self):
        var = f"LANTIAN_UART_{self.id}"
        path = _env(var)
        if path is None:
            raise ShimConfigError(var, f"not set: name the pty for UART({self.id!r})")
        try:
            f = open(path, "r+b")  # noqa: SIM115  (closed by deinit)
        except OSError as e:
            raise ShimConfigError(var, f"cannot open {path} ({e})")  # noqa: B904
        fd = f.fileno()
        try:
            termios.setraw(fd)
            attrs = termios.tcgetattr(fd)
            cc = attrs[6]
            cc[_VMIN] = 0  # a read returns at once with what is there
            cc[_VTIME] = 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except OSError as e:
            f.close()
            raise ShimConfigError(var, f"{path} is not a tty ({e})")  # noqa: B904
        self.path = path
        self._f = f
        self._fd = fd
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN)

    def _check(self):
        if self._f is None:
            raise OSError(9, "UART deinitialised")  # EBADF

    def _read_fd(self, view):
        """Read what the kernel holds into ``view``; 0 when nothing (or EIO)."""
        try:
            n = self._f.readinto(view)
        except OSError as e:
            if e.args and e.args[0] == _EIO:
                self.io_errors += 1
                return 0
            raise
        return n or 0

    def _wait(self, ms):
        """True when the fd became readable within ``ms``."""
        return bool(self._poller.poll(ms))

    def _fill(self):
        """Move bytes waiting in the kernel into the internal buffer."""
        if self._pos == self._end:
            self._pos = self._end = 0
        elif self._end == len(self._buf) and self._pos > 0:
            n = self._end - self._pos
            self._buf[0:n] = self._mv[self._pos : self._end]
            self._pos, self._end = 0, n
        while self._end < len(self._buf):
            got = self._read_fd(self._mv[self._end :])
            if got <= 0:
                break
            self._end += got

    def any(self):
        """Bytes that can be read without waiting (at most ``rxbuf``)."""
        self._check()
        self._fill()
        return self._end - self._pos

    def readinto(self, buf, nbytes=None):
        """Read into ``buf`` (at most ``nbytes``); the count, or None when nothing came."""
        self._check()
        mv = memoryview(buf)
        want = len(mv) if nbytes is None else min(nbytes, len(mv))
        got = 0
        held = self._end - self._pos
        if held:
            got = min(held, want)
            mv[0:got] = self._mv[self._pos : self._pos + got]
            self._pos += got
        if got < want:
            got += self._read_fd(mv[got:want])
        if got == 0 and self.timeout > 0 and want > 0 and self._wait(self.timeout):
            got = self._read_fd(mv[0:want])
        while 0 < got < want and self.timeout_char > 0 and self._wait(self.timeout_char):
            n = self._read_fd(mv[got:want])
            if n <= 0:
                break
            got += n
        if got == 0 and want > 0:
            return None
        return got

    def read(self, nbytes=None):
        """Up to ``nbytes`` bytes (all waiting bytes when omitted), or None when none."""
        if nbytes is None:
            chunks = []
            while True:
                n = self.any()
                if n == 0:
                    break
                chunks.append(bytes(self._mv[self._pos : self._end]))
                self._pos = self._end
            if not chunks:
                return None
            return b"".join(chunks)
        buf = bytearray(nbytes)
        n = self.readinto(buf)
        if n is None:
            return None
        return bytes(buf[:n])

    def readline(self):
        line = bytearray()
        while True:
            c = self.read(1)
            if c is None:
                break
            line.extend(c)
            if c == b"\n":
                break
        return bytes(line) if line else None

    def write(self, buf):
        """Write all of ``buf``; the count, or None when the other end is gone (EIO)."""
        self._check()
        try:
            return self._f.write(buf)
        except OSError as e:
            if e.args and e.args[0] == _EIO:
                self.io_errors += 1
                return None
            raise

    def flush(self):
        """No-op: nothing to drain on a pty (and FileIO.flush on a tty is EINVAL)."""
        self._check()

    def txdone(self):
        return True

    def sendbreak(self):
        self.breaks += 1

    def ioctl(self, req, arg):
        if req == _MP_STREAM_POLL:
            ready = 0
            if arg & select.POLLIN and (self._end > self._pos or self._wait(0)):
                ready |= select.POLLIN
            if arg & select.POLLOUT:
                ready |= select.POLLOUT
            return ready
        if req == _MP_STREAM_GET_FILENO:
            if self._f is not None and self._end == self._pos:
                return self._fd
            return -1
        if req == _MP_STREAM_CLOSE:
            self.deinit()
            return 0
        if req == _MP_STREAM_FLUSH:
            return 0
        return -1

    def deinit(self):
        f, self._f = self._f, None
        if f is not None:
            self._poller.unregister(self._fd)
            self._fd = -1
            f.close()

    close = deinit

    def __repr__(self):
        return f"UART({self.id}, baudrate={self.baudrate}, path={getattr(self, 'path', None)!r})"


# -------------------------------------------------------------------------------- Pin


class Pin:
    """A GPIO stand-in that records its output transitions; see the module docstring."""

    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    ALT = 3
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, value=None, **kw):
        self.id = id
        self.mode = None
        self.pull = None
        self._value = None
        self.transitions = []
        self.transitions_dropped = 0
        self._file = _env(f"LANTIAN_PIN_{id}")
        self.init(mode, pull, value=value, **kw)

    def init(self, mode=-1, pull=-1, value=None, **kw):
        if mode != -1:
            self.mode = mode
        if pull != -1:
            self.pull = pull
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._value or 0
        v = 1 if v else 0
        if v != self._value:
            self._value = v
            self._record(v)
        return None

    __call__ = value

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    high = on
    low = off

    def toggle(self):
        self.value(0 if self._value else 1)

    def irq(self, handler=None, trigger=0, **kw):
        return None  # no input events on the host

    def _record(self, v):
        t = time.ticks_ms()
        if len(self.transitions) >= TRANSITIONS_KEPT:
            self.transitions.pop(0)
            self.transitions_dropped += 1
        self.transitions.append((t, v))
        if self._file is not None:
            with open(self._file, "a") as f:
                f.write(f"{t} {v}\n")

    def __repr__(self):
        return f"Pin({self.id!r}, value={self._value!r})"


class Signal:
    """A Pin with an optional inversion (active-low enables)."""

    def __init__(self, pin, invert=False):
        self._pin = pin
        self._invert = bool(invert)

    def value(self, v=None):
        if v is None:
            return self._pin.value() ^ self._invert
        self._pin.value(bool(v) ^ self._invert)
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


# -------------------------------------------------------------------------------- WDT


class WDT:
    """A watchdog stand-in: arming and feeds go to ``LANTIAN_WDT_FILE``; see above."""

    def __init__(self, id=0, timeout=5000):
        if not isinstance(timeout, int) or timeout <= 0:
            raise ValueError(f"WDT timeout must be a positive int of ms, not {timeout!r}")
        if timeout > WDT_MAX_TIMEOUT_MS:
            raise ValueError(f"WDT timeout {timeout} ms exceeds {WDT_MAX_TIMEOUT_MS} ms (RP2040)")
        self.timeout = timeout
        self.feeds = 0
        self._file = _env("LANTIAN_WDT_FILE")
        self._pid = _pid()
        self._publish()  # armed from here on, as on a board

    def feed(self):
        self.feeds += 1
        self._publish()

    def _publish(self):
        if self._file is None:
            return
        tmp = self._file + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{self.feeds} {time.ticks_ms()} {self.timeout} {self._pid}\n")
        os.rename(tmp, self._file)


# ------------------------------------------------------------------------ the rest


def reset():
    """End the process as a reset does; the supervising harness restarts it."""
    sys.exit(RESET_EXIT_CODE)


soft_reset = reset


def reset_cause():
    v = _env("LANTIAN_RESET_CAUSE")
    if v is None:
        return PWRON_RESET
    if v in _CAUSES:
        return _CAUSES[v]
    try:
        return int(v)
    except ValueError:
        problem = f"{v!r} is not a number nor one of pwron/hard/wdt/deepsleep/soft"
        raise ShimConfigError("LANTIAN_RESET_CAUSE", problem)  # noqa: B904


def unique_id():
    v = _env("LANTIAN_UNIQUE_ID")
    if v is None:
        return b"LTSHIM01"
    try:
        import binascii

        return binascii.unhexlify(v)
    except ValueError:
        raise ShimConfigError("LANTIAN_UNIQUE_ID", f"{v!r} is not hex")  # noqa: B904


_freq = [125_000_000]


def freq(hz=None):
    if hz is None:
        return _freq[0]
    _freq[0] = int(hz)
    return None


def idle():
    time.sleep_ms(1)


def lightsleep(ms=None):
    time.sleep_ms(ms or 0)


def disable_irq():
    return 0


def enable_irq(state=0):
    return None


if _builtin is not None:
    for _name in ("mem8", "mem16", "mem32", "time_pulse_us"):
        if hasattr(_builtin, _name):
            globals()[_name] = getattr(_builtin, _name)
