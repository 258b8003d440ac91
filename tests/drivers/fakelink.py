"""A scripted fake RS-485 link for the bus master tests (MicroPython subset).

``FakeUart`` behaves like ``machine.UART`` as the master uses it: ``write(buf)``,
``readinto(buf)`` returning a count or None, ``any()``. Each request written pops the
next scripted answer, which then arrives on the fake clock: after a delay, split into
chunks with gaps, with a stray prefix, a flipped bit, or not at all. ``FakeClock``
advances only when someone sleeps, so a 200 ms timeout costs no real time.
``FakeUartWithFlush`` adds ``flush()`` that, like rp2/esp8266 machine.UART, returns
while the last character is still on the wire.

Everything the link and the direction pin see is appended to one ``events`` list as
``(kind, value, time_us)`` so tests can check the order of DE, write, flush and reads.
"""

from drivers.modbus.crc import crc16


class FakeClock:
    """ticks_ms/ticks_diff/sleep_ms/sleep_us on a simulated microsecond counter."""

    def __init__(self, start_ms=1000):
        self.now_us = start_ms * 1000

    def ticks_ms(self):
        return self.now_us // 1000

    def ticks_us(self):
        return self.now_us

    def ticks_diff(self, a, b):
        return a - b

    def ticks_add(self, a, b):
        return a + b

    def sleep_ms(self, ms):
        self.now_us += ms * 1000

    def sleep_us(self, us):
        self.now_us += us


class FakePin:
    """A DE/RE direction pin that logs every change."""

    def __init__(self, clock, events):
        self.clock = clock
        self.events = events
        self.state = 0

    def value(self, v=None):
        if v is None:
            return self.state
        self.state = v
        self.events.append(("de", v, self.clock.now_us))
        return None


class FakeUart:
    """UART-like fake answering each request with the next scripted reply."""

    def __init__(self, clock, baudrate=9600, bits_per_char=11, events=None, max_read=0):
        self.clock = clock
        self.baudrate = baudrate
        self.bits_per_char = bits_per_char
        self.char_us = self.wire_us(1)
        self.events = events if events is not None else []
        self.max_read = max_read  # > 0: readinto returns at most this many bytes
        self.writes = []  # bytes of every request, in order
        self.readinto_calls = 0
        self.tx_end_us = 0  # when the last written byte has left the wire
        self._script = []  # per request: list of (arrival offset µs after tx end, bytes)
        self._pending = []  # (due µs, bytes) not yet arrived
        self._arrived = bytearray()

    def wire_us(self, nbytes):
        """Time ``nbytes`` take on the wire, in µs, rounded up."""
        bits = nbytes * self.bits_per_char * 1000000
        return (bits + self.baudrate - 1) // self.baudrate

    def reply(self, data, delay_ms=1, chunks=1, chunk_gap_ms=0, prefix=b"", flip=None):
        """Script the answer to the next request.

        ``data`` arrives ``delay_ms`` after the request left the wire, at the line rate,
        split into ``chunks`` parts separated by ``chunk_gap_ms`` of silence, preceded
        by ``prefix`` (e.g. the 0x00 direction-switch glitch). ``flip=(i, bit)`` flips
        one bit of byte ``i`` of ``data``.
        """
        frame = bytearray(prefix)
        body = bytearray(data)
        if flip is not None:
            body[flip[0]] ^= 1 << flip[1]
        frame.extend(body)
        size = (len(frame) + chunks - 1) // chunks
        parts = []
        t = delay_ms * 1000
        for i in range(0, len(frame), size):
            part = bytes(frame[i : i + size])
            t += self.wire_us(len(part))  # a part is readable once its last char is in
            parts.append((t, part))
            t += chunk_gap_ms * 1000
        self._script.append(parts)

    def silent(self):
        """Script no answer at all to the next request."""
        self._script.append([])

    def inject(self, data):
        """Bytes already waiting in the receive buffer (stale input)."""
        self._pending.append((self.clock.now_us, bytes(data)))

    def write(self, buf):
        data = bytes(buf)
        now = self.clock.now_us
        self.writes.append(data)
        self.events.append(("write", data, now))
        self.tx_end_us = now + self.wire_us(len(data))
        if self._script:
            for t, part in self._script.pop(0):
                self._pending.append((self.tx_end_us + t, part))
        return len(data)

    def _arrive(self):
        now = self.clock.now_us
        keep = []
        for due, part in self._pending:
            if due <= now:
                self._arrived.extend(part)
            else:
                keep.append((due, part))
        self._pending = keep

    def any(self):
        self._arrive()
        return len(self._arrived)

    def readinto(self, buf, nbytes=None):
        self._arrive()
        self.readinto_calls += 1
        if not self._arrived:
            return None
        n = len(buf) if nbytes is None else nbytes
        if n > len(self._arrived):
            n = len(self._arrived)
        if self.max_read and n > self.max_read:
            n = self.max_read
        for i in range(n):
            buf[i] = self._arrived[i]
        self._arrived = self._arrived[n:]
        self.events.append(("read", n, self.clock.now_us))
        return n

    def pending_bytes(self):
        """Bytes scripted but not yet arrived, plus arrived but unread."""
        total = len(self._arrived)
        for _, part in self._pending:
            total += len(part)
        return total


class FakeUartWithFlush(FakeUart):
    """Adds flush(), returning one character time before the wire is idle (rp2-like)."""

    def flush(self):
        last_char_starts = self.tx_end_us - self.char_us
        if self.clock.now_us < last_char_starts:
            self.clock.now_us = last_char_starts
        self.events.append(("flush", 0, self.clock.now_us))


def with_crc(body):
    """``body`` plus its CRC-16/MODBUS, low byte first (bytes)."""
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


def raises(exc_type, fn, *args):
    """True when ``fn(*args)`` raises ``exc_type`` (no pytest on MicroPython)."""
    try:
        fn(*args)
    except exc_type:
        return True
    return False
