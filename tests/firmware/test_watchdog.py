"""The task supervisor (firmware/watchdog.py) with a fake WDT and the ManualClock:
feeds while every heartbeat is fresh, stops for good when one task stalls, names it.
Shared: runs on CPython and on the real micropython."""

import asyncio

from firmware.clock import TICKS_PERIOD, ManualClock
from firmware.watchdog import Supervisor, SupervisorError

RUNS_ON_MICROPYTHON = True


class FakeWdt:
    def __init__(self, clock):
        self.clock = clock
        self.fed_at = []

    def feed(self):
        self.fed_at.append(self.clock.ticks_ms())


def setup(timeout_ms=4000, ticks_start=0):
    clock = ManualClock(start_epoch=1764374400, ticks_start=ticks_start)
    wdt = FakeWdt(clock)
    return clock, wdt, Supervisor(wdt, clock, timeout_ms)


def expect_error(fn, words):
    try:
        fn()
    except SupervisorError as e:
        assert words in str(e), str(e)
        return
    raise AssertionError("no SupervisorError")


def test_parameters_are_checked():
    clock = ManualClock()
    wdt = FakeWdt(clock)
    expect_error(lambda: Supervisor(wdt, clock, 8001), "4..8000")
    expect_error(lambda: Supervisor(wdt, clock, 0), "4..8000")
    expect_error(lambda: Supervisor(wdt, clock, 5000.0), "4..8000")
    sup = Supervisor(wdt, clock, 8000, capacity=2)
    assert sup.interval_ms == 2000
    sup.register("a", 100)
    expect_error(lambda: sup.register("a", 100), "already registered")
    expect_error(lambda: sup.register("b", 0), "positive")
    sup.register("b", 100)
    expect_error(lambda: sup.register("c", 100), "capacity is 2")
    assert sup.tasks == 2


def test_poll_feeds_while_fresh_and_latches_on_a_stall():
    clock, wdt, sup = setup()
    stale = []
    sup._on_stale = stale.append
    poll = sup.register("poll", 3000)
    pub = sup.register("publish", 5000)
    for _ in range(10):  # 10 s of healthy running
        clock.advance(ms=1000)
        poll.beat()
        pub.beat()
        assert sup.poll() is True
    assert sup.feeds == 10 and sup.stale_task is None
    # "poll" stalls; "publish" keeps beating
    for _ in range(3):
        clock.advance(ms=1000)
        pub.beat()
        assert sup.poll() is True  # 3000 ms old: still within max age
    clock.advance(ms=1)
    pub.beat()
    assert sup.poll() is False
    assert sup.stale_task == "poll" and sup.stale_age_ms == 3001
    assert stale == ["poll"]
    # it recovers, but the decision stands: the board is going to reset
    poll.beat()
    clock.advance(ms=1000)
    assert sup.poll() is False
    assert sup.feeds == 13 and len(wdt.fed_at) == 13 and stale == ["poll"]
    assert sup.status() == {"feeds": 13, "tasks": 2, "stale_task": "poll", "stale_age_ms": 3001}


def test_ages_survive_the_ticks_wrap():
    clock, _wdt, sup = setup(ticks_start=TICKS_PERIOD - 500)
    hb = sup.register("poll", 2000)
    clock.advance(ms=1500)  # ticks wrapped past 0
    assert clock.ticks_ms() == 1000
    assert sup.age_ms("poll") == 1500 and sup.poll() is True
    hb.beat()
    clock.advance(ms=2001)
    assert sup.poll() is False and sup.stale_task == "poll"


def test_run_feeds_every_quarter_timeout_then_stops_when_a_task_stalls():
    clock, wdt, sup = setup(timeout_ms=4000)  # feeds every 1000 ms
    poll = sup.register("poll", 2500)
    pub = sup.register("publish", 2500)

    async def main():
        task = asyncio.create_task(sup.run())
        await asyncio.sleep(0)
        for step in range(40):  # 10 s in 250 ms steps
            if step < 20:
                poll.beat()  # the poll task hangs after 5 s
            pub.beat()
            clock.advance(ms=250)
            for _ in range(3):
                await asyncio.sleep(0)
        task.cancel()
        try:  # noqa: SIM105  (no contextlib on MicroPython)
            await task
        except asyncio.CancelledError:
            pass

    asyncio.run(main())
    assert sup.stale_task == "poll"
    # fed at 0, 1000, ... while fresh: the last beat was at 4750, stale after 7250
    assert wdt.fed_at == [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000], wdt.fed_at
    assert sup.feeds == 8
    assert 2500 < sup.stale_age_ms <= 2500 + sup.interval_ms


def test_beat_does_not_allocate():
    try:
        import micropython  # type: ignore[import-not-found]
    except ImportError:
        return  # CPython: nothing to measure
    from firmware.clock import SystemClock

    for clock in (ManualClock(), SystemClock()):
        sup = Supervisor(FakeWdt(clock), clock, 8000)
        hb = sup.register("poll", 1000)
        hb.beat()
        micropython.heap_lock()
        try:
            for _ in range(100):
                hb.beat()
        finally:
            micropython.heap_unlock()
