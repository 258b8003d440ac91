"""The injectable clock: one interface for the field, for fast simulation and for tests.

Every part of the station reads time from a clock object passed in, never from ``time``
directly, so that a test can run simulated hours in seconds through the same code path
the field runs (DESIGN.md "Time"). A clock has:

* ``now()``       UTC epoch seconds (int, UNIX epoch 1970) — stamps records;
* ``ticks_ms()``  a monotonic millisecond counter that wraps at ``TICKS_PERIOD``, to be
                  compared with ``ticks_diff`` only — schedules polls;
* ``ticks_diff(a, b)`` / ``ticks_add(t, delta)`` — wrap-safe arithmetic on ticks;
* ``await sleep_ms(n)`` — an awaitable sleep of ``n`` clock milliseconds;
* ``synced``      False until wall time has been set from NTP / a trusted RTC. Records
                  stamped while it is False carry ``"time_valid": false``.

Three implementations, no ``if simulated`` anywhere else:

* :class:`SystemClock`     the real one (field, HIL, demo);
* :class:`SimulatedClock`  real time scaled by ``speed`` (60: one minute per second);
* :class:`ManualClock`     stands still until a test calls ``advance()``.

Epoch. ``time.time()`` counts from 2000-01-01 on some MicroPython ports and from
1970-01-01 on others (MicroPython docs, library/time.rst: "Unix port uses standard for
POSIX systems epoch of 1970-01-01 00:00:00 UTC. However, some embedded ports use epoch of
2000-01-01 00:00:00 UTC. Epoch year may be determined with gmtime(0)[0]." — ESP32 builds
before MICROPY_EPOCH_IS_1970 use 2000). The port is therefore asked once, at run time,
with ``time.gmtime(0)[0]``, and 946684800 s (10957 days, 1970-01-01 to 2000-01-01) is
added when it answers 2000. CPython and the unix port answer 1970.
"""

import asyncio  # MicroPython >= 1.21 names it asyncio (uasyncio before)
import time

EPOCH_2000_OFFSET = 946684800  # s from 1970-01-01T00:00Z to 2000-01-01T00:00Z

# MicroPython's ticks wrap at a port-defined period; 2**30 on the ports we target
# (MICROPY_PY_TIME_TICKS_PERIOD). The simulated clocks use the same period so that
# wrap-around bugs show up in tests, not only in the field after 12.4 days.
TICKS_PERIOD = 1 << 30
_TICKS_MASK = TICKS_PERIOD - 1
_TICKS_HALF = TICKS_PERIOD >> 1


def epoch_offset(epoch_year):
    """Seconds to add to the port's ``time.time()`` to get UNIX epoch seconds."""
    if epoch_year == 1970:
        return 0
    if epoch_year == 2000:
        return EPOCH_2000_OFFSET
    raise ValueError("unknown time epoch year %r" % (epoch_year,))


def ticks_add(t, delta):
    return (t + delta) & _TICKS_MASK


def ticks_diff(a, b):
    """Signed ``a - b`` for wrapping ticks (valid while |a - b| < TICKS_PERIOD / 2)."""
    return ((a - b + _TICKS_HALF) & _TICKS_MASK) - _TICKS_HALF


if hasattr(time, "ticks_ms"):
    _real_ticks_ms = time.ticks_ms
else:  # CPython

    def _real_ticks_ms():
        return int(time.monotonic() * 1000) & _TICKS_MASK  # type: ignore[attr-defined]


if hasattr(asyncio, "sleep_ms"):
    _real_sleep_ms = asyncio.sleep_ms
else:  # CPython

    def _real_sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


class _ClockBase:
    """Shared wrap-safe helpers; subclasses provide now(), ticks_ms(), sleep_ms()."""

    synced = False
    ticks_add = staticmethod(ticks_add)
    ticks_diff = staticmethod(ticks_diff)

    def set_synced(self, synced=True):
        """Mark wall time as trusted (after ntptime.settime()/a verified RTC) or not."""
        self.synced = bool(synced)


class SystemClock(_ClockBase):
    """The board's clock: ``time.time()`` normalised to the UNIX epoch, ``time.ticks_ms``.

    ``synced`` starts False: after a power cycle the RTC may hold anything. Call
    :meth:`sync_ntp` (or ``set_synced()`` after another trusted source set the RTC).
    ``epoch_year`` is for tests only; by default the port is asked (module docstring).
    """

    def __init__(self, epoch_year=None, time_fn=None):
        if epoch_year is None:
            epoch_year = time.gmtime(0)[0]
        self.offset = epoch_offset(epoch_year)
        self._time = time_fn or time.time
        self.synced = False
        self.sync_failures = 0

    def now(self):
        return int(self._time()) + self.offset

    def ticks_ms(self):
        return _real_ticks_ms()

    def sleep_ms(self, ms):
        return _real_sleep_ms(ms)

    def sync_ntp(self, host=None):
        """Set the RTC from NTP (MicroPython ``ntptime``); True and ``synced`` on success.

        Blocks for up to the ntptime socket timeout (1 s). A failure is counted in
        ``sync_failures`` and leaves ``synced`` as it was.
        """
        try:
            import ntptime  # type: ignore[import-not-found]  # network ports only

            if host:
                ntptime.host = host
            ntptime.settime()
        except (ImportError, OSError, OverflowError):
            self.sync_failures += 1
            return False
        self.synced = True
        return True


class SimulatedClock(_ClockBase):
    """Real time scaled by ``speed``: ``speed=60`` runs one simulated minute per second.

    ``now()`` starts at ``start_epoch``; ``sleep_ms(n)`` sleeps ``n / speed`` real ms (at
    least the port's 0-ms yield), so code written against the clock does not change.
    ``synced`` is True unless asked otherwise (a simulation of an unsynced boot).
    """

    def __init__(self, start_epoch, speed=1, synced=True):
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.synced = synced
        self._start_ms = int(start_epoch * 1000)  # sub-second starts keep processes in step
        self._real0 = _real_ticks_ms()

    def _sim_elapsed_ms(self):
        return int(ticks_diff(_real_ticks_ms(), self._real0) * self.speed)

    def now(self):
        return (self._start_ms + self._sim_elapsed_ms()) // 1000

    def ticks_ms(self):
        return self._sim_elapsed_ms() & _TICKS_MASK

    def sleep_ms(self, ms):
        real = ms / self.speed
        ir = int(real)
        if ir < real:
            ir += 1  # never wake early in simulated time
        return _real_sleep_ms(ir)


class ManualClock(_ClockBase):
    """A clock that moves only when told: ``advance(ms=..., s=...)`` or ``set_epoch()``.

    ``sleep_ms(n)`` waits until the clock has been advanced past its deadline by another
    task. With ``auto_advance=True`` a sleep instead advances the clock itself and yields
    once, so single-task code runs simulated hours in no real time.
    """

    def __init__(self, start_epoch=0, synced=True, auto_advance=False, ticks_start=0):
        self._epoch_ms = int(start_epoch) * 1000
        self._ticks = ticks_start & _TICKS_MASK
        self.synced = synced
        self.auto_advance = auto_advance
        self._moved = None  # asyncio.Event, made on first sleep (needs a running loop)

    def now(self):
        return self._epoch_ms // 1000

    def ticks_ms(self):
        return self._ticks

    def advance(self, ms=0, s=0):
        """Move wall time and ticks forward together; wakes due sleepers."""
        step = int(ms) + int(s) * 1000
        if step < 0:
            raise ValueError("a clock does not run backwards; use set_epoch()")
        self._epoch_ms += step
        self._ticks = (self._ticks + step) & _TICKS_MASK
        ev = self._moved
        if ev is not None:
            self._moved = None
            ev.set()

    def set_epoch(self, epoch):
        """Step wall time (as an NTP sync does) without moving the monotonic ticks."""
        self._epoch_ms = int(epoch) * 1000

    async def sleep_ms(self, ms):
        if self.auto_advance:
            self.advance(ms=ms)
            await _real_sleep_ms(0)
            return
        deadline = ticks_add(self._ticks, int(ms))
        while ticks_diff(deadline, self._ticks) > 0:
            if self._moved is None:
                self._moved = asyncio.Event()
            await self._moved.wait()
