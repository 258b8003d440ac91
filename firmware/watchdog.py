"""Task supervisor: feed the hardware watchdog only while every task shows signs of life.

Feeding ``machine.WDT`` from a timer, or from a loop of its own, proves only that the
scheduler runs: a task stuck awaiting a reply that never comes (a dead RS-485 bus, a
half-open TCP connection) would keep a station "alive" and silent forever. Instead,
each long-running task registers a heartbeat with the maximum age it may reach, and
calls ``beat()`` at least that often. The supervisor feeds the watchdog every
``timeout_ms / 4`` while every heartbeat is younger than its maximum age; as soon as one
is not, it stops feeding for good, records which task (``stale_task``) and lets the
hardware reset the board. A blocked event loop (a task that never yields) stops the
feeding too, since the supervisor itself is a task.

Timing. A stall is noticed at the first check after the heartbeat passed its maximum
age (checks are ``timeout_ms / 4`` apart) and the board resets ``timeout_ms`` after the
last feed, so it resets at most ``max_age_ms + timeout_ms * 5 / 4`` after the last beat.
``timeout_ms`` is at most 8000 (RP2040: 8388 ms hardware maximum; ESP32 allows more,
the shared configuration does not).

Allocation. ``beat()`` stores ``clock.ticks_ms()`` (a small int: ticks wrap at 2**30)
into a preallocated ``array('i')``, so it allocates nothing and may be called from any
hot loop. ``check()`` walks the arrays with ``clock.ticks_diff`` (on a 32-bit port the
pure-Python wrap arithmetic may box an intermediate int; it runs every ``timeout/4``,
not in a hot loop). The stale task's name is the string given at registration.

Usage::

    sup = Supervisor(machine.WDT(timeout=8000), clock, 8000)
    poll_hb = sup.register("poll", 15000)      # then poll_hb.beat() in the poll loop
    asyncio.create_task(sup.run())

``on_stale(name)`` (optional) is called once, synchronously, when feeding stops: enough
to write the name to flash or publish it in the status before the reset.
"""

from array import array

MAX_TIMEOUT_MS = 8000
DEFAULT_CAPACITY = 8


class SupervisorError(ValueError):
    """Bad supervisor or heartbeat parameters (raised at setup, never while running)."""


class Heartbeat:
    """The handle a task beats with; made by ``Supervisor.register``."""

    def __init__(self, supervisor, index, name):
        self.name = name
        self.index = index
        self._beats = supervisor._beats
        self._ticks_ms = supervisor._clock.ticks_ms

    def beat(self):
        """I am alive (allocation-free)."""
        self._beats[self.index] = self._ticks_ms()


class Supervisor:
    """Feeds ``wdt`` only while every registered heartbeat is fresh (module docstring).

    ``wdt`` has ``feed()`` (``machine.WDT`` or a fake); ``clock`` is a firmware clock
    (``ticks_ms``, ``sleep_ms``). Counters: ``feeds``; state: ``stale_task`` (None while
    all is well), ``stale_age_ms`` (age of that heartbeat when it was found stale).
    """

    def __init__(self, wdt, clock, timeout_ms, capacity=DEFAULT_CAPACITY, on_stale=None):
        if not isinstance(timeout_ms, int) or timeout_ms < 4 or timeout_ms > MAX_TIMEOUT_MS:
            raise SupervisorError(
                "timeout_ms must be an int in 4..%d, not %r" % (MAX_TIMEOUT_MS, timeout_ms)
            )
        if capacity < 1:
            raise SupervisorError("capacity must be >= 1")
        self._wdt = wdt
        self._clock = clock
        self.timeout_ms = timeout_ms
        self.interval_ms = timeout_ms // 4
        self._beats = array("i", [0] * capacity)
        self._max_age = array("i", [0] * capacity)
        self._names = []  # type: list
        self._on_stale = on_stale
        self.feeds = 0
        self.stale_task = None  # type: str | None
        self.stale_age_ms = 0

    def register(self, name, max_age_ms):
        """A heartbeat for task ``name`` that must beat at least every ``max_age_ms``.
        It counts as beaten now."""
        if name in self._names:
            raise SupervisorError("task %r is already registered" % (name,))
        if not isinstance(max_age_ms, int) or max_age_ms <= 0 or max_age_ms >= 1 << 29:
            raise SupervisorError("max_age_ms of %r must be a positive int" % (name,))
        i = len(self._names)
        if i >= len(self._beats):
            raise SupervisorError(
                "no room for task %r: capacity is %d heartbeats" % (name, len(self._beats))
            )
        self._names.append(name)
        self._max_age[i] = max_age_ms
        self._beats[i] = self._clock.ticks_ms()
        return Heartbeat(self, i, name)

    @property
    def tasks(self):
        return len(self._names)

    def check(self):
        """Index of the first heartbeat older than its maximum age, or -1 if all fresh."""
        now = self._clock.ticks_ms()
        diff = self._clock.ticks_diff
        beats = self._beats
        max_age = self._max_age
        for i in range(len(self._names)):
            if diff(now, beats[i]) > max_age[i]:
                return i
        return -1

    def age_ms(self, name):
        """Milliseconds since task ``name`` last beat."""
        i = self._names.index(name)
        return self._clock.ticks_diff(self._clock.ticks_ms(), self._beats[i])

    def poll(self):
        """One supervision step: feed if all are fresh (True); otherwise stop feeding
        for good, record the stale task and return False."""
        if self.stale_task is not None:
            return False
        i = self.check()
        if i < 0:
            self._wdt.feed()
            self.feeds += 1
            return True
        self.stale_task = self._names[i]
        self.stale_age_ms = self._clock.ticks_diff(self._clock.ticks_ms(), self._beats[i])
        if self._on_stale is not None:
            self._on_stale(self.stale_task)
        return False

    async def run(self):
        """Feed every ``timeout_ms / 4`` while all heartbeats are fresh. After a stall it
        keeps sleeping without feeding, so the other tasks can still report it until the
        watchdog resets the board."""
        clock = self._clock
        interval = self.interval_ms
        while True:
            self.poll()
            await clock.sleep_ms(interval)

    def status(self):
        """For the station's status payload."""
        return {
            "feeds": self.feeds,
            "tasks": len(self._names),
            "stale_task": self.stale_task,
            "stale_age_ms": self.stale_age_ms if self.stale_task is not None else None,
        }
