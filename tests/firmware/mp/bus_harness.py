"""Fakes for the bus scheduler tests (MicroPython subset; CPython imports it too).

* ``FakeTime``: one fake time base in µs with two views. The schedule view (the object
  itself) has ``ticks_ms``/``ticks_diff``/``ticks_add`` and an awaitable ``sleep_ms`` that
  advances time and yields once, allocating nothing on MicroPython (it returns
  ``asyncio.sleep_ms(0)``, a singleton generator), like ``SystemClock`` in the field.
  ``serial`` is the blocking view the ``BusMaster`` uses (``sleep_ms``/``sleep_us`` advance
  the same time), so a 200 ms response timeout costs 200 fake ms of the schedule.
  ``on_sleep`` (a callable or None) runs at every schedule sleep: tests stop the bus or
  take heap figures there.
* ``ManualSerial``: the blocking serial view over a ``firmware.clock.ManualClock``.
* ``FakeModbusPort``: a UART-like port that answers Modbus FC03/FC04 requests from
  per-address register tables (``FakeSlave``), byte by byte at the line rate after the
  slave's latency; a slave can be silent, answer an exception, corrupt its CRC or answer
  with another address. It
  allocates nothing per transaction unless ``log`` is a list.
* ``FakePin`` records ``(ticks_ms, value)``; ``CountingPin`` only counts (heap tests).
* ``RecordingSink`` records every sample with its time; ``CountingSink`` keeps counts and
  last values in preallocated arrays (heap tests).
"""

import asyncio
from array import array

from drivers.modbus.crc import append_crc, crc16
from firmware.clock import TICKS_PERIOD, ticks_add, ticks_diff

if hasattr(asyncio, "sleep_ms"):
    _yield = asyncio.sleep_ms  # MicroPython: returns a singleton, allocates nothing
else:  # CPython

    def _yield(ms):
        return asyncio.sleep(0)


_MASK = TICKS_PERIOD - 1


class FakeTime:
    """Schedule clock on a fake µs counter; ``serial`` is the master's blocking view."""

    ticks_diff = staticmethod(ticks_diff)
    ticks_add = staticmethod(ticks_add)
    synced = True

    def __init__(self, start_ms=0):
        self.us = start_ms * 1000
        self.on_sleep = None
        self.sleeps = 0
        self.serial = _SerialView(self)

    def ticks_ms(self):
        return (self.us // 1000) & _MASK

    def ms(self):
        """Elapsed fake ms, not wrapped (for test bookkeeping)."""
        return self.us // 1000

    def sleep_ms(self, ms):
        self.us += ms * 1000
        self.sleeps += 1
        hook = self.on_sleep
        if hook is not None:
            hook()
        return _yield(0)


class _SerialView:
    ticks_diff = staticmethod(ticks_diff)

    def __init__(self, t):
        self.t = t

    def ticks_ms(self):
        return (self.t.us // 1000) & _MASK

    def ticks_us(self):
        return self.t.us

    def sleep_ms(self, ms):
        self.t.us += ms * 1000

    def sleep_us(self, us):
        self.t.us += us


class ManualSerial:
    """Blocking serial view over a ManualClock: a blocking sleep advances it."""

    ticks_diff = staticmethod(ticks_diff)

    def __init__(self, manual):
        self.m = manual
        self._us = 0  # sub-ms remainder of sleep_us

    def ticks_ms(self):
        return self.m.ticks_ms()

    def sleep_ms(self, ms):
        self.m.advance(ms=ms)

    def sleep_us(self, us):
        self._us += us
        if self._us >= 1000:
            self.m.advance(ms=self._us // 1000)
            self._us %= 1000


def _abs_diff_us(a, b):
    return a - b


# Slave behaviours
ANSWER = 0
SILENT = 1
EXCEPTION = 2
CORRUPT = 3
MISADDRESSED = 4  # a valid frame, but carrying another server's address


class FakeSlave:
    """Register tables of one emulated device and how it answers."""

    def __init__(self, holding=None, inputs=None, latency_ms=3, mode=ANSWER, exception_code=6):
        self.holding = holding if holding is not None else array("H", [0] * 16)
        self.inputs = inputs if inputs is not None else array("H", [0] * 16)
        self.latency_ms = latency_ms
        self.mode = mode
        self.exception_code = exception_code
        self.requests = 0


class FakeModbusPort:
    """UART-like: ``write``, ``readinto`` (count or None), ``any``; answers from tables.

    ``now_us``/``diff_us`` give the physical time (the fake serial view, or real
    ``time.ticks_us``/``time.ticks_diff``). ``fail_writes`` > 0: that many writes raise
    OSError (a UART gone away).
    """

    def __init__(self, now_us, diff_us=_abs_diff_us, baudrate=9600, bits_per_char=11, log=None):
        self.now_us = now_us
        self.diff_us = diff_us
        self.char_us = (bits_per_char * 1000000 + baudrate - 1) // baudrate
        self.slaves = [None] * 248
        self.log = log  # None, or a list getting (ms, address, function) per request
        self.requests = 0
        self.bad_requests = 0
        self.fail_writes = 0
        self._resp = bytearray(260)
        self._n = 0  # bytes of the current answer
        self._pos = 0  # bytes already read
        self._t0 = 0  # when the first byte starts arriving (µs)

    def add(self, address, slave):
        self.slaves[address] = slave
        return slave

    def write(self, buf):
        if self.fail_writes > 0:
            self.fail_writes -= 1
            raise OSError(5)  # EIO
        n = len(buf)
        now = self.now_us()
        self.requests += 1
        self._n = 0
        self._pos = 0
        if n != 8 or crc16(buf, 0, n) != 0:
            self.bad_requests += 1
            return n
        address = buf[0]
        fn = buf[1]
        start = (buf[2] << 8) | buf[3]
        count = (buf[4] << 8) | buf[5]
        if self.log is not None:
            self.log.append((now // 1000, address, fn))
        slave = self.slaves[address]
        if slave is None:
            return n
        slave.requests += 1
        if slave.mode == SILENT:
            return n
        r = self._resp
        r[0] = address
        if fn == 3:
            regs = slave.holding
        elif fn == 4:
            regs = slave.inputs
        else:
            regs = None
        if slave.mode == EXCEPTION or regs is None or start + count > len(regs):
            r[1] = fn | 0x80
            if slave.mode == EXCEPTION:
                r[2] = slave.exception_code
            else:
                r[2] = 1 if regs is None else 2  # illegal function / data address
            k = append_crc(r, 3)
        else:
            r[1] = fn
            r[2] = 2 * count
            k = 3
            for i in range(start, start + count):
                v = regs[i]
                r[k] = v >> 8
                r[k + 1] = v & 0xFF
                k += 2
            k = append_crc(r, k)
            if slave.mode == CORRUPT:
                r[k - 1] ^= 0x01
            elif slave.mode == MISADDRESSED:
                r[0] = address ^ 0x40
                k = append_crc(r, k - 2)
        self._n = k
        self._t0 = now + n * self.char_us + slave.latency_ms * 1000
        return n

    def _arrived(self):
        if self._n == 0:
            return 0
        dt = self.diff_us(self.now_us(), self._t0)
        if dt < 0:
            return 0
        k = dt // self.char_us  # whole characters on the wire so far
        return self._n if k > self._n else k

    def any(self):
        return self._arrived() - self._pos

    def readinto(self, buf):
        avail = self._arrived() - self._pos
        if avail <= 0:
            return None
        n = len(buf)
        if avail < n:
            n = avail
        r = self._resp
        p = self._pos
        for i in range(n):
            buf[i] = r[p + i]
        self._pos = p + n
        return n


class FakePin:
    def __init__(self, clock):
        self.clock = clock
        self.events = []
        self.state = None

    def value(self, v=None):
        if v is None:
            return self.state
        self.state = v
        self.events.append((self.clock.ms(), v))
        return None


class CountingPin:
    def __init__(self):
        self.state = None
        self.changes = 0

    def value(self, v=None):
        if v is None:
            return self.state
        self.state = v
        self.changes += 1
        return None


class RecordingSink:
    """``samples``: list of (ms, station index, value, flag)."""

    def __init__(self, clock):
        self.clock = clock
        self.samples = []

    def sample(self, i, value, flag):
        self.samples.append((self.clock.ms(), i, value, flag))

    def of(self, i):
        return [s for s in self.samples if s[1] == i]


class CountingSink:
    """Allocation-free sink: per station channel a count, the last value and flag."""

    def __init__(self, n):
        self.count = array("i", [0] * n)
        self.last = array("f", [0.0] * n)
        self.flags = [None] * n
        self.total = 0

    def sample(self, i, value, flag):
        self.count[i] += 1
        self.last[i] = value
        self.flags[i] = flag
        self.total += 1


def float32_words(x):
    """(high, low) register words of float32 ``x`` (ABCD), via struct: not the decoder."""
    import struct

    b = struct.pack(">f", x)
    return (b[0] << 8) | b[1], (b[2] << 8) | b[3]


def two_block_profile():
    """A profile needing two reads per poll (FC03 channel, FC04 status register)."""
    from drivers.profile import Profile

    return Profile.from_dict(
        {
            "format": 1,
            "name": "two-block",
            "title": "test: a channel in holding registers, status in input registers",
            "source": "test",
            "serial": {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1},
            "default_address": 1,
            "response_timeout_ms": 100,
            "warmup_s": 0,
            "channels": [
                {
                    "name": "co",
                    "function": 3,
                    "address": 0,
                    "type": "uint16",
                    "scale": 0.01,
                    "offset": 0.0,
                    "raw_unit": "mg/m3",
                    "unit": "mg/m3",
                    "range": [0, 100],
                }
            ],
            "status": [
                {
                    "function": 4,
                    "address": 0,
                    "type": "uint16",
                    "codes": {"0": "N", "1": "C"},
                    "other": "D",
                }
            ],
        }
    )
