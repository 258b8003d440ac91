"""The injectable clock: epoch normalisation, wrapping ticks, and one caller that runs
unchanged on the system, simulated and manual clocks."""

import asyncio
import time

from firmware import clock as clk
from firmware.clock import ManualClock, SimulatedClock, SystemClock

RUNS_ON_MICROPYTHON = True

START = 1764374400  # 2025-11-29T00:00:00Z


def test_epoch_offset_is_1970_to_2000():
    # 30 years of 365 days + 7 leap days (1972..1996) = 10957 days
    assert clk.EPOCH_2000_OFFSET == (30 * 365 + 7) * 86400
    assert clk.epoch_offset(1970) == 0
    assert clk.epoch_offset(2000) == 946684800
    try:
        clk.epoch_offset(1980)
        raise AssertionError("unknown epoch accepted")
    except ValueError:
        pass


def test_system_clock_normalises_a_2000_epoch_port():
    c = SystemClock(epoch_year=2000, time_fn=lambda: 0)
    assert c.now() == 946684800  # 2000-01-01T00:00:00Z in UNIX seconds
    c = SystemClock(epoch_year=2000, time_fn=lambda: 817948800.5)
    assert c.now() == 1764633600
    assert SystemClock(epoch_year=1970, time_fn=lambda: 12.9).now() == 12


def test_system_clock_on_this_interpreter():
    c = SystemClock()  # asks the port; CPython and the unix port are 1970-based
    assert c.offset == 0
    assert abs(c.now() - time.time()) <= 2
    assert c.synced is False  # records are time_valid false until a sync
    c.set_synced()
    assert c.synced is True
    t0 = c.ticks_ms()
    assert 0 <= t0 < clk.TICKS_PERIOD


def test_sync_ntp_without_network_counts_a_failure():
    c = SystemClock()
    if c.sync_ntp():  # a port with ntptime and network: fine too
        assert c.synced
    else:
        assert c.synced is False and c.sync_failures == 1


def test_ticks_diff_and_add_wrap():
    p = clk.TICKS_PERIOD
    assert clk.ticks_add(p - 10, 20) == 10
    assert clk.ticks_diff(10, p - 10) == 20
    assert clk.ticks_diff(p - 10, 10) == -20
    assert clk.ticks_diff(5, 5) == 0


async def _poll_loop(clock, n, interval_ms, out):
    """A caller written once for every clock: what the sampler does in the field."""
    deadline = clock.ticks_ms()
    for _ in range(n):
        out.append(clock.now())
        deadline = clock.ticks_add(deadline, interval_ms)
        wait = clock.ticks_diff(deadline, clock.ticks_ms())
        if wait > 0:
            await clock.sleep_ms(wait)


def test_manual_clock_advance_wakes_sleepers():
    c = ManualClock(START)
    done = []

    async def sleeper():
        await c.sleep_ms(1000)
        done.append(c.now())

    async def main():
        t = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        c.advance(ms=500)
        for _ in range(3):
            await asyncio.sleep(0)
        assert done == []
        c.advance(ms=500)
        for _ in range(3):
            await asyncio.sleep(0)
        assert done == [START + 1]
        await t

    asyncio.run(main())


def test_manual_clock_ticks_wrap_and_set_epoch():
    c = ManualClock(START, ticks_start=clk.TICKS_PERIOD - 100)
    t0 = c.ticks_ms()
    c.advance(s=1)
    assert c.ticks_ms() == 900
    assert c.ticks_diff(c.ticks_ms(), t0) == 1000
    assert c.now() == START + 1
    c.set_epoch(START + 3600)  # an NTP step moves wall time, not the monotonic ticks
    assert c.now() == START + 3600 and c.ticks_ms() == 900
    try:
        c.advance(ms=-1)
        raise AssertionError("clock ran backwards")
    except ValueError:
        pass


def test_same_loop_on_manual_auto_advance_clock_runs_an_hour_instantly():
    c = ManualClock(START, auto_advance=True)
    out = []
    asyncio.run(_poll_loop(c, 3600, 1000, out))
    assert out[0] == START and out[-1] == START + 3599
    assert c.now() == START + 3600


def test_same_loop_on_simulated_clock_runs_faster_than_real_time():
    c = SimulatedClock(START, speed=600)
    assert c.synced
    out = []
    r0 = time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)
    asyncio.run(_poll_loop(c, 10, 6000, out))  # 60 simulated s
    r1 = time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.monotonic() * 1000)
    assert out[0] == START
    assert c.now() >= START + 60
    assert out == sorted(out)
    assert out[-1] - out[0] >= 53  # 9 intervals of 6 s, allowing a second of rounding
    assert r1 - r0 < 2000  # 60 simulated s in ~0.1 real s (generous bound for CI)


def test_same_loop_on_system_clock():
    c = SystemClock()
    out = []
    asyncio.run(_poll_loop(c, 3, 10, out))
    assert len(out) == 3 and out[-1] - out[0] <= 1


def test_simulated_clock_rejects_bad_speed_and_can_start_unsynced():
    try:
        SimulatedClock(START, speed=0)
        raise AssertionError("speed 0 accepted")
    except ValueError:
        pass
    assert SimulatedClock(START, speed=60, synced=False).synced is False
