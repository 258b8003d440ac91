"""RS-485 bus scheduler: one asyncio task per bus polls its Modbus RTU devices.

A :class:`Bus` owns one ``drivers.modbus.master.BusMaster`` (one master, one transaction
at a time: Modbus over Serial Line V1.02 §2.4.1) and a tuple of :class:`Device`. Its
``run()`` coroutine loops forever:

1. Pick the device whose next poll slot is earliest (most overdue first; ties go to the
   device listed first). If none is due, sleep until one is (at most ``IDLE_MAX_MS``, so
   ``heartbeat`` keeps moving for the watchdog supervisor).
2. Poll it: every read of ``device.profile.reads`` through the master's stepping
   interface (``begin_read`` then ``poll()``, awaiting ``clock.sleep_ms`` between polls),
   so the event loop is never blocked for longer than the master's own frame-level waits
   (t3.5 gap and the request's wire time, a few ms). The registers go into the device's
   profile image, ``drivers.decoder.decode`` turns them into values and flags, and every
   channel is handed to ``sink.sample(station_index, value, flag)``.
3. On a failed read the poll stops (no more bus time for a device that just failed) and
   every channel gets NaN and ``drivers.decoder.flag_for_failure(status, exception_code)``
   (B for timeout / CRC / framing, D for a Modbus exception), handed all the same.

Schedule
--------
Each device has its own ``poll_ms``. Slots are anchored: after a slot at ``t`` the next is
``t + poll_ms`` however late the poll ran, so intervals do not drift. A device that is a
whole interval or more behind (a long timeout of another device, an overloaded bus) skips
the slots it missed: they are counted in ``missed`` and nothing is handed for them (the
minute accumulator already counts an expected sample that never came as B). ``late_max_ms``
records the worst lateness of a slot.

Failures, back-off and power cycling
------------------------------------
A device whose polls failed ``fail_limit`` times in a row backs off for ``backoff_ms``:
its slots are not polled (``skipped``), so a dead sensor costs the bus nothing and the
other devices keep their schedule. At every skipped slot the device's channels are still
handed to the sink, with NaN and flag **B**: the minute accounting then sees an explicit
communication failure at the schedule's rate instead of silence, which keeps ``n_expected``
arithmetic, the minute's reason flag and any per-sample consumer right without each of them
having to infer what an absent sample means. (Missed slots, above, are the one exception:
they are an overload of this scheduler, counted, not disguised as a device failure.)

With a ``power_pin`` the back-off also cycles the sensor's supply rail (spec/devices.md:
"sensor stops answering until power-cycled"): the pin goes to 0 when the back-off starts
and back to 1 ``power_off_ms`` later, as a scheduled event of this loop (never a sleep
that would stall the other devices). ``power_off_ms`` must be shorter than ``backoff_ms``.
After the back-off one poll is tried: a success resets the failure count and the state to
"ok"; a failure (outside warm-up) backs off again at once.

Warm-up
-------
Real sensors give no valid answer, or a Modbus exception, for 10 s .. 2 min after power-on
(spec/devices.md). So at boot (``run()`` starts; the power pin, if any, is set to 1) and
after every power cycle, a device is in "warmup" for ``profile.warmup_s``: it is polled as
usual and valid answers are handed as decoded (the device's own sentinels and status
registers say whether the value is ready), but a failed poll is handed with flag **D**
(instrument not ready: an instrument condition, not a broken link) and does not count
toward ``fail_limit``: a device is never backed off for not having warmed up yet. Such
polls are counted in ``warmup_failures`` as well as in the per-status counters. Warm-up
ends ``warmup_s`` after it began, not at the first valid answer.

Time
----
The schedule reads the injected ``clock`` (``firmware.clock``): ``ticks_ms``,
``ticks_diff``, ``ticks_add`` and ``await sleep_ms``, so a ``SimulatedClock`` runs the same
code path faster than real time and a ``ManualClock`` steps it in tests. The master's
serial timing (t3.5 gaps, direction pin hold, response timeout) stays on real time
(``serial_clock=None``: ``drivers._compat``): those are physical, and a real or emulated
device answers in real milliseconds whatever the simulation speed. Consequence: under a
``SimulatedClock`` of speed ``s`` a transaction of ``x`` real ms occupies ``s * x``
simulated ms of the schedule; choose ``s`` so that this stays well below the poll
intervals. Tests may pass a ``serial_clock`` that shares their fake time.

Errors
------
An ``OSError`` from the port (a UART or pty gone away) fails the poll like a lost frame
(flag B; counted in the device's ``port_errors`` and the bus's ``port_errors``); the loop
carries on. Anything else is a bug and ends the task: the watchdog supervisor, which
watches ``heartbeat``, is the place that reacts to a dead task.

Allocation
----------
The steady-state loop creates no list, dict, tuple, closure or string, and calls no
``async def`` of its own: values and flags live in per-device buffers made once, the poll
is inlined in ``run()`` and all helpers are plain methods. What remains per poll is made
elsewhere: the float objects the decoder and ``sink.sample`` box (ports without immediate
floats), the master's memoryview slices (one per write, one per ``readinto``), and
whatever the clock's ``sleep_ms`` builds (nothing for ``SystemClock`` on MicroPython:
``asyncio.sleep_ms`` returns a singleton; a float for ``SimulatedClock``; a coroutine for
``ManualClock``). tests/firmware/test_bus.py measures it.
"""

from array import array

from drivers import flags as _flags
from drivers.decoder import decode, flag_for_failure, mark_all
from drivers.modbus.master import BusMaster
from drivers.modbus.rtu import CRC_ERROR, EXCEPTION, OK, TIMEOUT

IDLE_MAX_MS = 1000  # longest idle sleep: heartbeat resolution when all devices are slow

# Device states (the values status messages carry).
STATE_OK = "ok"
STATE_FAILING = "failing"
STATE_BACKOFF = "backoff"
STATE_WARMUP = "warmup"

_PORT_ERROR = -1  # our status for an OSError from the port (not a drivers.modbus code)
_B = _flags.COMM_FAILURE
_D = _flags.FAULT
_NAN = float("nan")


class Device:
    """One Modbus device on a bus: its profile, address, schedule, buffers and counters.

    ``profile`` is this device's own ``drivers.profile.Profile`` instance (its register
    image is per device). ``sink_indices[i]`` is the station channel that profile channel
    ``i`` goes to, or -1 to ignore it. ``timeout_ms`` defaults to the profile's
    ``response_timeout_ms``. ``power_pin`` is anything with ``value(v)`` (machine.Pin);
    1 = rail powered. See the module docstring for back-off and warm-up.

    Counters (ints, never reset): ``polls`` (polls made), ``ok``, ``timeouts``,
    ``crc_errors``, ``exceptions`` (Modbus exception responses; ``last_exception_code``),
    ``frame_errors`` (truncated, wrong address/function, bad length), ``port_errors``,
    ``warmup_failures`` (failed polls during warm-up, also in the above), ``skipped``
    (slots not polled during back-off), ``missed`` (slots the scheduler was too late
    for), ``backoffs``, ``power_cycles``, ``late_max_ms``; and ``consecutive_failures``.
    ``state`` is "warmup", "ok", "failing" or "backoff".

    ``values`` (``array('f')``) and ``flags`` (list) hold the last poll's result per
    profile channel; they are overwritten by every poll.
    """

    def __init__(
        self,
        name,
        profile,
        address,
        poll_ms,
        sink_indices,
        timeout_ms=None,
        power_pin=None,
        fail_limit=3,
        backoff_ms=60000,
        power_off_ms=2000,
    ):
        n = profile.channel_count
        if not isinstance(address, int) or not 1 <= address <= 247:
            raise ValueError("device %r: address must be 1..247, not %r" % (name, address))
        if not isinstance(poll_ms, int) or poll_ms < 1:
            raise ValueError("device %r: poll_ms must be an int >= 1, not %r" % (name, poll_ms))
        sink_indices = tuple(sink_indices)
        if len(sink_indices) != n:
            raise ValueError(
                "device %r: %d sink indices for %d channels" % (name, len(sink_indices), n)
            )
        for j in sink_indices:
            if not isinstance(j, int) or j < -1:
                raise ValueError("device %r: bad sink index %r" % (name, j))
        if timeout_ms is None:
            timeout_ms = profile.response_timeout_ms
        if not isinstance(timeout_ms, int) or timeout_ms < 1:
            raise ValueError("device %r: timeout_ms must be an int >= 1" % (name,))
        if not isinstance(fail_limit, int) or fail_limit < 1:
            raise ValueError("device %r: fail_limit must be an int >= 1" % (name,))
        if backoff_ms < 0 or power_off_ms < 0:
            raise ValueError("device %r: backoff_ms and power_off_ms must be >= 0" % (name,))
        if power_pin is not None and power_off_ms >= backoff_ms:
            raise ValueError("device %r: power_off_ms must be shorter than backoff_ms" % (name,))
        self.name = name
        self.profile = profile
        self.address = address
        self.poll_ms = poll_ms
        self.sink_indices = sink_indices
        self.timeout_ms = timeout_ms
        self.power_pin = power_pin
        self.fail_limit = fail_limit
        self.backoff_ms = int(backoff_ms)
        self.power_off_ms = int(power_off_ms)
        self.warmup_ms = int(profile.warmup_s * 1000)
        self.values = array("f", [_NAN] * n)
        self.flags = [_B] * n
        self.state = STATE_WARMUP
        self.polls = 0
        self.ok = 0
        self.timeouts = 0
        self.crc_errors = 0
        self.exceptions = 0
        self.frame_errors = 0
        self.port_errors = 0
        self.warmup_failures = 0
        self.skipped = 0
        self.missed = 0
        self.backoffs = 0
        self.power_cycles = 0
        self.late_max_ms = 0
        self.consecutive_failures = 0
        self.last_exception_code = 0
        # Schedule state, in clock ticks. Flags rather than comparisons against old ticks:
        # ticks_diff is only meaningful within half the ticks period (~6 days at 2**30).
        self._next_due = 0
        self._backoff = False
        self._backoff_until = 0
        self._power_off = False
        self._power_on_at = 0
        self._warming = False
        self._warmup_until = 0

    def counters(self):
        """The counters and state as a new dict (for the status message)."""
        return {
            "state": self.state,
            "address": self.address,
            "polls": self.polls,
            "ok": self.ok,
            "timeouts": self.timeouts,
            "crc_errors": self.crc_errors,
            "exceptions": self.exceptions,
            "last_exception_code": self.last_exception_code,
            "frame_errors": self.frame_errors,
            "port_errors": self.port_errors,
            "warmup_failures": self.warmup_failures,
            "skipped": self.skipped,
            "missed": self.missed,
            "backoffs": self.backoffs,
            "power_cycles": self.power_cycles,
            "late_max_ms": self.late_max_ms,
            "consecutive_failures": self.consecutive_failures,
        }

    def __repr__(self):
        return "<Device %s @%d %s>" % (self.name, self.address, self.state)


class Bus:
    """The scheduler of one RS-485 bus; see the module docstring.

    ``port`` is the UART (or a fake) and ``de_pin`` the transceiver's direction pin, both
    handed to the ``BusMaster``; ``sink`` has ``sample(index, value, flag)``; ``clock`` is
    a ``firmware.clock`` clock for the schedule; ``serial_clock`` the master's clock
    (default: real time). ``heartbeat`` holds the clock ticks of the loop's last step.
    """

    def __init__(
        self,
        name,
        port,
        baudrate,
        devices,
        sink,
        clock,
        de_pin=None,
        bits_per_char=11,
        serial_clock=None,
    ):
        devices = tuple(devices)
        if not devices:
            raise ValueError("bus %r: no devices" % (name,))
        for i in range(len(devices)):
            for k in range(i):
                if devices[k].address == devices[i].address:
                    raise ValueError(
                        "bus %r: devices %r and %r share address %d"
                        % (name, devices[k].name, devices[i].name, devices[i].address)
                    )
                if devices[k].name == devices[i].name:
                    raise ValueError("bus %r: two devices named %r" % (name, devices[i].name))
        self.name = name
        self.devices = devices
        self.sink = sink
        self.clock = clock
        self.master = BusMaster(
            port, baudrate=baudrate, bits_per_char=bits_per_char, de_pin=de_pin, clock=serial_clock
        )
        self.heartbeat = clock.ticks_ms()
        self.loops = 0
        self.port_errors = 0
        self._running = False
        self._wait_ms = 0

    def stop(self):
        """Make ``run()`` return at its next step (tests, orderly shutdown)."""
        self._running = False

    def counters(self):
        """Bus and device counters as a new dict (for the status message)."""
        m = self.master
        devices = {}
        for d in self.devices:
            devices[d.name] = d.counters()
        return {
            "loops": self.loops,
            "transactions": m.transactions,
            "ok": m.ok,
            "timeouts": m.timeouts,
            "crc_errors": m.crc_errors,
            "exceptions": m.exceptions,
            "frame_errors": m.frame_errors,
            "resync_bytes": m.resync_bytes,
            "stale_bytes_dropped": m.stale_bytes_dropped,
            "port_errors": self.port_errors,
            "devices": devices,
        }

    # ------------------------------------------------------------------ the task

    async def run(self):
        """Poll the devices forever (until ``stop()``). One task per bus."""
        clock = self.clock
        master = self.master
        now = clock.ticks_ms()
        for d in self.devices:
            self._boot(d, now)
        self._running = True
        while self._running:
            now = clock.ticks_ms()
            self.heartbeat = now
            self.loops += 1
            dev = self._due(now)
            if dev is None:
                await clock.sleep_ms(self._wait_ms)
                continue
            if self._slot(dev, now):
                # The poll, inlined: an async helper would cost a coroutine object per poll.
                reads = dev.profile.reads
                status = OK
                for k in range(len(reads)):
                    status = self._begin(dev, k)
                    if status != OK:
                        break
                    try:
                        while not master.poll():
                            await clock.sleep_ms(master.poll_interval_ms)
                            self.heartbeat = clock.ticks_ms()
                    except OSError:
                        status = self._port_error(dev)
                        break
                    status = self._end(dev, k)
                    if status != OK:
                        break
                self._finish(dev, status, clock.ticks_ms())
            # One yield per poll or skipped slot even when every answer was already
            # waiting: the other tasks of the station must run.
            await clock.sleep_ms(0)

    # ------------------------------------------------------------------ steps (plain
    # methods: calling them allocates nothing)

    def _boot(self, dev, now):
        # Power-on at boot: the rail on, warm-up from now, first slot now.
        if dev.power_pin is not None:
            dev.power_pin.value(1)
        dev._next_due = now
        dev._backoff = False
        dev._power_off = False
        self._start_warmup(dev, now)

    def _start_warmup(self, dev, now):
        dev._warming = dev.warmup_ms > 0
        dev._warmup_until = self.clock.ticks_add(now, dev.warmup_ms)
        dev.consecutive_failures = 0
        if dev._warming and not dev._backoff:
            dev.state = STATE_WARMUP

    def _due(self, now):
        # Runs due power-on events, returns the most overdue device whose slot has come,
        # or None with self._wait_ms set to the time until the next event.
        diff = self.clock.ticks_diff
        wait = IDLE_MAX_MS
        best = None
        best_dt = 0
        for d in self.devices:
            if d._power_off:
                dt = diff(d._power_on_at, now)
                if dt <= 0:
                    d._power_off = False
                    d.power_pin.value(1)
                    self._start_warmup(d, now)
                elif dt < wait:
                    wait = dt
            dt = diff(d._next_due, now)
            if dt <= 0:
                if best is None or dt < best_dt:
                    best = d
                    best_dt = dt
            elif dt < wait:
                wait = dt
        self._wait_ms = wait
        return best

    def _slot(self, dev, now):
        # Book the slot that has come; True when it is to be polled, False when it was
        # handled here (back-off: B samples, no bus traffic).
        clock = self.clock
        poll_ms = dev.poll_ms
        late = clock.ticks_diff(now, dev._next_due)
        if late >= poll_ms:  # whole slots missed: jump to the latest one
            n = late // poll_ms
            dev.missed += n
            dev._next_due = clock.ticks_add(dev._next_due, n * poll_ms)
            late -= n * poll_ms
        if late > dev.late_max_ms:
            dev.late_max_ms = late
        dev._next_due = clock.ticks_add(dev._next_due, poll_ms)
        if dev._backoff:
            if clock.ticks_diff(now, dev._backoff_until) < 0:
                dev.skipped += 1
                mark_all(dev.profile, dev.values, dev.flags, _B)
                self._hand(dev)
                return False
            dev._backoff = False  # back-off over: try once
        if dev._warming and clock.ticks_diff(now, dev._warmup_until) >= 0:
            dev._warming = False
        dev.polls += 1
        return True

    def _begin(self, dev, k):
        # Send read k of dev's plan; OK when the master is now waiting for the answer.
        master = self.master
        fn, start, count = dev.profile.reads[k]
        try:
            if master.busy and not master.poll():
                # A transaction interrupted by an OSError (or by cancelling the task
                # mid-poll) is still open: the master closes it once its timeout has
                # passed with the port readable again. Until then: a port error.
                return self._port_error(dev)
            master.begin_read(dev.address, fn, start, count, dev.timeout_ms)
        except OSError:
            return self._port_error(dev)
        return OK

    def _port_error(self, dev):
        dev.port_errors += 1
        self.port_errors += 1
        return _PORT_ERROR

    def _end(self, dev, k):
        # The master's answer to read k: into the profile image when OK.
        resp = self.master.response
        status = resp.status
        if status == OK:
            dev.profile.store(k, resp.registers, resp.count)
        elif status == TIMEOUT:
            dev.timeouts += 1
        elif status == CRC_ERROR:
            dev.crc_errors += 1
        elif status == EXCEPTION:
            dev.exceptions += 1
            dev.last_exception_code = resp.exception_code
        else:
            dev.frame_errors += 1
        return status

    def _finish(self, dev, status, now):
        # Decode or flag the poll, hand it, and run the failure policy.
        if status == OK:
            decode(dev.profile, dev.values, dev.flags)
            dev.ok += 1
            dev.consecutive_failures = 0
            dev.state = STATE_WARMUP if dev._warming else STATE_OK
        else:
            if dev._warming:
                flag = _D
                dev.warmup_failures += 1
                dev.state = STATE_WARMUP
            else:
                if status == _PORT_ERROR:
                    flag = _B
                else:
                    flag = flag_for_failure(status, self.master.response.exception_code)
                dev.consecutive_failures += 1
                if dev.consecutive_failures >= dev.fail_limit:
                    self._back_off(dev, now)
                else:
                    dev.state = STATE_FAILING
            mark_all(dev.profile, dev.values, dev.flags, flag)
        self._hand(dev)

    def _back_off(self, dev, now):
        clock = self.clock
        dev._backoff = True
        dev._backoff_until = clock.ticks_add(now, dev.backoff_ms)
        dev.backoffs += 1
        dev.state = STATE_BACKOFF
        pin = dev.power_pin
        if pin is not None:
            pin.value(0)
            dev._power_off = True
            dev._power_on_at = clock.ticks_add(now, dev.power_off_ms)
            dev.power_cycles += 1

    def _hand(self, dev):
        sink = self.sink
        idx = dev.sink_indices
        values = dev.values
        flags = dev.flags
        for i in range(len(idx)):
            j = idx[i]
            if j >= 0:
                sink.sample(j, values[i], flags[i])
