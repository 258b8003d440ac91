"""Modbus RTU bus master: one transaction at a time over a UART-like port.

Follows Modbus over Serial Line V1.02 (master state diagram §2.4.1, RTU transmission
mode and timing §2.5.1) and Modbus Application Protocol V1.1b3 (FC03/04/06/16, §6).
The framing and parsing live in ``drivers.modbus.rtu``; this module adds the half-duplex
choreography: direction pin, silent intervals, draining, timeouts and counters.
"""

from drivers import _compat
from drivers._compat import const
from drivers.modbus.rtu import (
    BAD_LENGTH,
    CRC_ERROR,
    EXCEPTION,
    MAX_ADU,
    OK,
    TIMEOUT,
    WRITE_MULTIPLE_REGISTERS,
    WRITE_SINGLE_REGISTER,
    Response,
    build_read,
    build_write_multiple,
    build_write_single,
    frame_gap_us,
    parse_response,
)

_IDLE = const(0)  # no transaction started yet, or the last one was collected
_RECEIVING = const(1)  # request sent, waiting for the response
_DONE = const(2)  # response final; master.response holds it
_MIN_FRAME = const(5)  # shortest answer: an exception response, Serial Line §2.5.1


class BusMaster:
    """Master of one RS-485 Modbus RTU bus.

    Protocol facts this class implements:

    - One master, one outstanding request (Serial Line §2.4.1). Unicast addresses are
      1..247; address 0 is a broadcast write that no server answers, after which the
      master waits a turnaround delay (here: ``timeout_ms``) before the next request.
    - Frames are separated by at least 3.5 character times of silence (t3.5; fixed
      1.75 ms above 19200 baud, Serial Line §2.5.1.1). Before sending, the master waits
      until t3.5 has passed since the last byte it sent or received. Time is measured
      with millisecond ticks, so the wait is ``ceil(t3.5) + 1`` ms: one extra ms covers
      tick granularity.
    - A character is ``bits_per_char`` bits on the wire (11: start, 8 data, parity or
      second stop, stop). 8N1 devices send 10 bits; the default of 11 errs long.
    - Half duplex: the driver-enable pin (``de_pin``, DE/RE of the transceiver) goes high
      before the first byte and low once the last stop bit has left the wire; dropping
      it early truncates the CRC, dropping it late collides with the server's answer,
      which may start t3.5 after the request. ``port.flush()`` on machine.UART waits for
      transmission, but on rp2, esp8266 and nrf it returns while the last character is
      still being shifted out (MicroPython docs, machine.UART.flush), so the pin is held
      one more character time after it. A port without ``flush()`` is given the
      request's computed wire time instead. Either way the wait happens inside
      ``begin_*``: an event loop cannot promise to come back within a character time.
    - Stale input (late answers to an earlier request, line noise) is read and dropped
      before each request and counted in ``stale_bytes_dropped``.
    - Reception ends when a frame of ours with a valid CRC is complete (normal or
      exception response), when ``timeout_ms`` has passed since the end of
      transmission, or when bytes have arrived and the line has then been silent for
      longer than t3.5 (the end of a frame by the RTU definition, Serial Line §2.5.1.1;
      it keeps a corrupted answer from costing the whole timeout). The timeout covers
      the server's latency *and* the response's own wire time: at 2400 baud a
      125-register answer takes 1.2 s.
    - Garbage before the frame (the 0x00 glitch some transceivers emit after the
      direction switch) is skipped by the parser's resynchronisation and counted in
      ``resync_bytes``.

    The port is anything with ``write(buf)``, ``readinto(buf)`` (returns a count, or
    None when nothing is waiting, like machine.UART) and ``any()``; ``flush()`` is
    optional. ``clock`` is any object with ``ticks_ms()``, ``ticks_diff(a, b)``,
    ``sleep_ms(ms)`` and optionally ``sleep_us(us)``; the default is
    ``drivers._compat``.

    Counters (plain ints, never reset by the master): ``transactions``, ``ok``,
    ``timeouts``, ``crc_errors``, ``exceptions``, ``frame_errors`` (truncated, wrong
    address or function, bad length or echo), ``resync_bytes``, ``stale_bytes_dropped``.

    Use either the blocking methods (``read_registers``, ``write_register``,
    ``write_registers``) or the stepping interface for asyncio callers::

        master.begin_read(1, 3, 0, 2, timeout_ms=200)
        while not master.poll():
            await asyncio.sleep_ms(master.poll_interval_ms)
        resp = master.response

    Every method returns the master's single preallocated ``Response``: it is
    overwritten by the next transaction, so copy what must outlive it.
    """

    def __init__(self, port, *, baudrate, bits_per_char=11, de_pin=None, clock=None):
        self.port = port
        self.baudrate = baudrate
        self.bits_per_char = bits_per_char
        self.de_pin = de_pin
        if clock is None:
            clock = _compat
        self._ticks_ms = clock.ticks_ms
        self._ticks_diff = clock.ticks_diff
        self._sleep_ms = clock.sleep_ms
        self._sleep_us = getattr(clock, "sleep_us", None)
        self._has_flush = hasattr(port, "flush")
        self._char_us = (bits_per_char * 1000000 + baudrate - 1) // baudrate  # rounded up
        gap_us = frame_gap_us(baudrate, bits_per_char)
        # ms ticks: a measured difference of k ms may be k - 1 ms of real time.
        self.frame_gap_ms = (gap_us + 999) // 1000 + 1
        self.poll_interval_ms = gap_us // 1000 if gap_us >= 2000 else 1
        # Preallocated once; the per-transaction path only slices these.
        self._tx = memoryview(bytearray(MAX_ADU))
        self._rx = memoryview(bytearray(MAX_ADU))
        self.response = Response()
        self._state = _IDLE
        self._rx_n = 0
        self._value = -1
        self._timeout_ms = 0
        self._t_sent = 0
        self._t_last_rx = 0
        self._t_activity = None  # ticks of the last byte on the wire, None = never
        self._broadcast = False
        self.transactions = 0
        self.ok = 0
        self.timeouts = 0
        self.crc_errors = 0
        self.exceptions = 0
        self.frame_errors = 0
        self.resync_bytes = 0
        self.stale_bytes_dropped = 0

    # --- blocking interface ---

    def read_registers(self, address, function, start, count, timeout_ms):
        """FC03/FC04 read; blocks until the Response is final and returns it (shared)."""
        self.begin_read(address, function, start, count, timeout_ms)
        return self._finish_blocking()

    def write_register(self, address, register, value, timeout_ms):
        """FC06 write; blocks; returns the shared Response (echo checked)."""
        self.begin_write_register(address, register, value, timeout_ms)
        return self._finish_blocking()

    def write_registers(self, address, start, values, timeout_ms):
        """FC16 write of ``values``; blocks; returns the shared Response (echo checked)."""
        self.begin_write_registers(address, start, values, timeout_ms)
        return self._finish_blocking()

    def _finish_blocking(self):
        while not self.poll():
            self._sleep_ms(self.poll_interval_ms)
        return self.response

    # --- stepping interface ---

    @property
    def busy(self):
        """True while a transaction waits for its response."""
        return self._state == _RECEIVING

    def begin_read(self, address, function, start, count, timeout_ms):
        """Send an FC03/FC04 request; then call ``poll()`` until it returns True."""
        self._check_idle()
        n = build_read(self._tx, address, function, start, count)
        self._send(n, address, function, start, count, -1, timeout_ms)

    def begin_write_register(self, address, register, value, timeout_ms):
        """Send an FC06 request; then call ``poll()`` until it returns True."""
        self._check_idle()
        n = build_write_single(self._tx, address, register, value)
        self._send(n, address, WRITE_SINGLE_REGISTER, register, 1, value, timeout_ms)

    def begin_write_registers(self, address, start, values, timeout_ms):
        """Send an FC16 request; then call ``poll()`` until it returns True."""
        self._check_idle()
        n = build_write_multiple(self._tx, address, start, values)
        self._send(n, address, WRITE_MULTIPLE_REGISTERS, start, len(values), -1, timeout_ms)

    def poll(self):
        """Read what has arrived; True once ``self.response`` is final. Never blocks."""
        if self._state != _RECEIVING:
            return True
        now = self._ticks_ms()
        port = self.port
        rx = self._rx
        got = 0
        while self._rx_n < MAX_ADU and port.any():
            # The slice is a new small memoryview object: the one allocation per read
            # that readinto-at-an-offset needs.
            r = port.readinto(rx[self._rx_n :])
            if not r:
                break
            self._rx_n += r
            got += r
        if self._broadcast:
            if self._ticks_diff(now, self._t_sent) >= self._timeout_ms:
                self._complete(OK)  # turnaround delay over; no answer expected
                return True
            return False
        if got:
            self._t_last_rx = now
            if self._rx_n >= _MIN_FRAME:
                status = self._parse()
                if status == OK or status == EXCEPTION or status == BAD_LENGTH:  # noqa: SIM109
                    self._complete(status)  # a CRC-valid frame of ours
                    return True
            if self._rx_n >= MAX_ADU:
                self._complete(self._parse())
                return True
        elif self._rx_n and self._ticks_diff(now, self._t_last_rx) >= self.frame_gap_ms:
            self._complete(self._parse())  # t3.5 of silence ends the frame
            return True
        if self._ticks_diff(now, self._t_sent) >= self._timeout_ms:
            self._complete(self._parse() if self._rx_n else TIMEOUT)
            return True
        return False

    # --- internals ---

    def _check_idle(self):
        if self._state == _RECEIVING:
            raise RuntimeError("a transaction is in progress; poll() it to completion")

    def _parse(self):
        r = self.response
        return parse_response(
            r, self._rx, self._rx_n, r.address, r.function, r.start, r.count, self._value
        )

    def _send(self, n, address, function, start, count, value, timeout_ms):
        self.response.reset(address, function, start, count)
        self.transactions += 1
        self._value = value
        self._timeout_ms = timeout_ms
        self._broadcast = address == 0
        self._drain()
        self._wait_gap()
        de = self.de_pin
        if de is not None:
            de.value(1)
        # The slice aliases the shared TX buffer; write() has consumed it on return.
        self.port.write(self._tx[:n])
        self._wait_tx_done(n)
        if de is not None:
            de.value(0)
        self._t_sent = self._ticks_ms()
        self._t_last_rx = self._t_sent
        self._t_activity = self._t_sent
        self._rx_n = 0
        self._state = _RECEIVING

    def _drain(self):
        port = self.port
        while port.any():
            r = port.readinto(self._rx)
            if not r:
                break
            self.stale_bytes_dropped += r
            self._t_activity = self._ticks_ms()

    def _wait_gap(self):
        if self._t_activity is None:
            return
        elapsed = self._ticks_diff(self._ticks_ms(), self._t_activity)
        if 0 <= elapsed < self.frame_gap_ms:
            self._sleep_ms(self.frame_gap_ms - elapsed)

    def _wait_tx_done(self, n):
        if self._has_flush:
            self.port.flush()
            us = self._char_us  # flush() may return while the last char is shifted out
        else:
            # rounded up: dropping DE a µs early cuts the last stop bit
            us = (n * self.bits_per_char * 1000000 + self.baudrate - 1) // self.baudrate
        if self._sleep_us is not None:
            self._sleep_us(us)
        else:
            self._sleep_ms((us + 999) // 1000)

    def _complete(self, status):
        r = self.response
        r.status = status
        if self._rx_n:
            self._t_activity = self._t_last_rx
        if status == OK:
            self.ok += 1
        elif status == TIMEOUT:
            self.timeouts += 1
        elif status == CRC_ERROR:
            self.crc_errors += 1
        elif status == EXCEPTION:
            self.exceptions += 1
        else:
            self.frame_errors += 1
        self.resync_bytes += r.resync_skipped
        self._state = _DONE
