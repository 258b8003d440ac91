"""Bus scheduler scenarios, run on the real micropython binary and on CPython.

    micropython tests/firmware/mp/bus_scenarios.py <scenario>

prints one JSON object: what the bus did (request log, samples handed to the sink, pin
events, counters, heap figures). tests/firmware/test_bus.py runs every scenario on both
interpreters and asserts on that object. Times are fake ms since the bus started; a NaN
value is written as null.
"""

import sys

sys.path.insert(0, ".")
sys.path.insert(0, "tests/firmware/mp")

import asyncio
import gc
import json
from array import array

from bus_harness import (
    ANSWER,
    CORRUPT,
    EXCEPTION,
    MISADDRESSED,
    SILENT,
    CountingPin,
    CountingSink,
    FakeModbusPort,
    FakePin,
    FakeSlave,
    FakeTime,
    ManualSerial,
    RecordingSink,
    float32_words,
    two_block_profile,
)

from drivers.profile import load_profile
from firmware.bus import Bus, Device
from firmware.clock import TICKS_PERIOD, ManualClock, SimulatedClock

IS_MP = sys.implementation.name == "micropython"


def _profile(name, warmup_s=None):
    p = load_profile(name)
    if warmup_s is not None:
        p.warmup_s = warmup_s
    return p


def _pm_slave(pm25, pm10, **kw):
    regs = array("H", [0] * 16)
    regs[0] = pm25
    regs[1] = pm10
    return FakeSlave(holding=regs, **kw)


def _nox_slave(no, no2, nox, status=0, **kw):
    regs = array("H", [0] * 16)
    k = 0
    for x in (no, no2, nox):
        hi, lo = float32_words(x)
        regs[k] = hi
        regs[k + 1] = lo
        k += 2
    regs[6] = status
    return FakeSlave(inputs=regs, **kw)


def _co_slave(raw, status):
    h = array("H", [0] * 16)
    i = array("H", [0] * 16)
    h[0] = raw
    i[0] = status
    return FakeSlave(holding=h, inputs=i)


def _run(bus, t, t0, end_ms, events=None):
    # Run bus.run() on FakeTime until end_ms after t0; events: [(ms, fn)] in time order.
    ev = list(events or [])

    def hook():
        now = t.ms() - t0
        while ev and ev[0][0] <= now:
            ev.pop(0)[1]()
        if now >= end_ms:
            bus.stop()

    t.on_sleep = hook
    asyncio.run(bus.run())
    t.on_sleep = None


def _num(v):
    if v != v:
        return None
    return round(v, 4)


def _samples(sink, t0):
    return [[s[0] - t0, s[1], _num(s[2]), s[3]] for s in sink.samples]


def _log(log, t0):
    return [[e[0] - t0, e[1], e[2]] for e in log]


def _setup(start_ms=0):
    t = FakeTime(start_ms)
    log = []
    port = FakeModbusPort(t.serial.ticks_us, log=log)
    return t, log, port


def scenario_schedule():
    # Three healthy devices, three intervals, one with two reads per poll; fake ticks
    # start 20 s before the 2**30 wrap, so the run crosses it.
    t, log, port = _setup(TICKS_PERIOD - 20000)
    t0 = t.ms()
    port.add(1, _pm_slave(35, 80))
    port.add(2, _nox_slave(12.5, 20.0, 39.1, status=0))
    port.add(3, _co_slave(123, 1))
    sink = RecordingSink(t)
    pm = Device("pm", _profile("particulate"), 1, 1000, (0, 1))
    nox = Device("nox", _profile("nox-analyser"), 2, 2500, (2, -1, 3))
    co = Device("co", two_block_profile(), 3, 700, (4,))
    slow = Device("slow", _profile("particulate"), 4, 60000, (5, 6))
    port.add(4, _pm_slave(1, 2))
    bus = Bus("rs485-1", port, 9600, (pm, nox, co, slow), sink, t, serial_clock=t.serial)
    states_boot = [pm.state, nox.state, co.state]
    _run(bus, t, t0, 150000)
    return {
        "log": _log(log, t0),
        "samples": _samples(sink, t0),
        "states_boot": states_boot,
        "counters": bus.counters(),
        "heartbeat_age": t.ticks_diff(t.ticks_ms(), bus.heartbeat),
        "end": t.ms() - t0,
        "sleeps": t.sleeps,
    }


def scenario_dead_device():
    # pm1 dies at 35 s (after its 30 s boot warm-up) and comes back at 62 s; pm2 is fine.
    t, log, port = _setup()
    t0 = t.ms()
    s1 = port.add(1, _pm_slave(11, 22))
    port.add(2, _pm_slave(33, 44))
    sink = RecordingSink(t)
    pin = FakePin(t)
    pm1 = Device(
        "pm1",
        _profile("particulate", 30),
        1,
        1000,
        (0, 1),
        power_pin=pin,
        fail_limit=3,
        backoff_ms=20000,
        power_off_ms=2000,
    )
    pm2 = Device("pm2", _profile("particulate", 30), 2, 1000, (2, 3))
    bus = Bus("rs485-1", port, 9600, (pm1, pm2), sink, t, serial_clock=t.serial)
    seen = {}

    def die():
        s1.mode = SILENT

    def revive():
        s1.mode = ANSWER

    def look():
        seen["during_backoff"] = pm1.state
        seen["counters_40s"] = pm1.counters()

    def look_warm():
        seen["after_probe"] = pm1.state

    _run(
        bus,
        t,
        t0,
        90000,
        [(35000, die), (40000, look), (58500, look_warm), (62000, revive)],
    )
    return {
        "log": _log(log, t0),
        "samples": _samples(sink, t0),
        "pin": [[e[0] - t0, e[1]] for e in pin.events],
        "counters": bus.counters(),
        "seen": seen,
        "timeout_ms": pm1.timeout_ms,
    }


def scenario_boot_warmup():
    # "busy" answers exception 06 for 6 s after boot (warm-up 10 s); "mute" never answers.
    t, log, port = _setup()
    t0 = t.ms()
    busy = port.add(1, _pm_slave(5, 6, mode=EXCEPTION, exception_code=6))
    port.add(2, _pm_slave(0, 0, mode=SILENT))
    sink = RecordingSink(t)
    d1 = Device("busy", _profile("particulate", 10), 1, 1000, (0, 1))
    d2 = Device("mute", _profile("particulate", 10), 2, 1000, (2, 3), backoff_ms=10000)
    bus = Bus("rs485-1", port, 9600, (d1, d2), sink, t, serial_clock=t.serial)
    seen = {}

    def ready():
        busy.mode = ANSWER

    def look():
        seen["at_9s"] = [d1.state, d2.state, d2.consecutive_failures, d2.backoffs]

    _run(bus, t, t0, 40000, [(6000, ready), (9500, look)])
    return {
        "log": _log(log, t0),
        "samples": _samples(sink, t0),
        "counters": bus.counters(),
        "seen": seen,
    }


def scenario_errors():
    # No warm-up. "crc" sends bad CRCs, "exc" answers exception 02, "addr" answers with
    # another address; "ok1"/"ok2" are fine. At 2.5 s the port's next two writes fail
    # (crc's and exc's polls at 3 s).
    t, log, port = _setup()
    t0 = t.ms()
    port.add(1, _pm_slave(1, 2, mode=CORRUPT))
    port.add(2, _pm_slave(3, 4, mode=EXCEPTION, exception_code=2))
    port.add(3, _pm_slave(5, 6))
    port.add(4, _pm_slave(7, 8))
    port.add(5, _pm_slave(9, 10, mode=MISADDRESSED))
    sink = RecordingSink(t)
    devs = (
        Device("crc", _profile("particulate", 0), 1, 1000, (0, 1), fail_limit=5),
        Device("exc", _profile("particulate", 0), 2, 1000, (2, 3), fail_limit=5),
        Device("ok1", _profile("particulate", 0), 3, 1000, (4, 5)),
        Device("ok2", _profile("particulate", 0), 4, 1000, (6, 7)),
        Device("addr", _profile("particulate", 0), 5, 1000, (8, 9), fail_limit=100),
    )
    bus = Bus("rs485-1", port, 9600, devs, sink, t, serial_clock=t.serial)

    def break_port():
        port.fail_writes = 2

    _run(bus, t, t0, 9500, [(2500, break_port)])
    return {
        "log": _log(log, t0),
        "samples": _samples(sink, t0),
        "counters": bus.counters(),
    }


def scenario_idle():
    # One device polled once a minute: the loop still steps (heartbeat) every second.
    t, _unused, port = _setup()
    t0 = t.ms()
    port.add(1, _pm_slave(1, 2))
    beats = []
    d = Device("slow", _profile("particulate", 0), 1, 60000, (0, 1))
    bus = Bus("rs485-1", port, 9600, (d,), RecordingSink(t), t, serial_clock=t.serial)

    def hook():
        beats.append(t.ticks_diff(bus.heartbeat, t0))
        if t.ms() - t0 >= 10000:
            bus.stop()

    t.on_sleep = hook
    asyncio.run(bus.run())
    return {"beats": beats, "loops": bus.loops, "polls": d.polls}


def scenario_missed():
    # A dead analyser (450 ms timeout, polled every s, never backed off here) listed first
    # makes a 200 ms device miss slots; the misses are counted, the anchor kept.
    t, log, port = _setup()
    t0 = t.ms()
    port.add(1, _nox_slave(0.0, 0.0, 0.0, mode=SILENT))
    port.add(2, _co_slave(100, 0))
    sink = RecordingSink(t)
    dead = Device(
        "dead", _profile("nox-analyser", 0), 1, 1000, (0, 1, 2), timeout_ms=450, fail_limit=1000
    )
    fast = Device("fast", two_block_profile(), 2, 200, (3,))
    bus = Bus("rs485-1", port, 9600, (dead, fast), sink, t, serial_clock=t.serial)
    _run(bus, t, t0, 10000)
    return {
        "log": _log(log, t0),
        "samples": _samples(sink, t0),
        "counters": bus.counters(),
    }


def scenario_manual_clock():
    # The project's ManualClock (auto_advance) through the same path.
    m = ManualClock(auto_advance=True)
    serial = ManualSerial(m)
    log = []

    def now_us():
        return m.ticks_ms() * 1000 + serial._us

    port = FakeModbusPort(now_us, log=log)
    port.add(1, _pm_slave(10, 20))
    port.add(2, _pm_slave(30, 40))
    sink = _MsSink(m)
    a = Device("a", _profile("particulate", 0), 1, 1000, (0, 1))
    b = Device("b", _profile("particulate", 0), 2, 3000, (2, 3))
    bus = Bus("rs485-1", port, 9600, (a, b), sink, m, serial_clock=serial)

    async def main():
        task = asyncio.create_task(bus.run())
        while m.ticks_ms() < 30000:
            await asyncio.sleep(0)
        bus.stop()
        await task

    asyncio.run(main())
    return {"log": _log(log, 0), "samples": _samples(sink, 0), "counters": bus.counters()}


class _MsSink(RecordingSink):
    def sample(self, i, value, flag):
        self.samples.append((self.clock.ticks_ms(), i, value, flag))


def scenario_simulated():
    # SimulatedClock (speed 10) for the schedule, real time for the serial line.
    import time

    if IS_MP:
        now_us = time.ticks_us
        diff_us = time.ticks_diff
    else:
        from drivers import _compat

        now_us = _compat.ticks_us
        diff_us = _compat.ticks_diff
    clock = SimulatedClock(1764374400, speed=10)
    log = []
    port = FakeModbusPort(now_us, diff_us, log=log)
    port.add(1, _pm_slave(10, 20, latency_ms=2))
    port.add(2, _pm_slave(30, 40, latency_ms=2))
    sink = _MsSink(clock)
    a = Device("a", _profile("particulate", 0), 1, 1000, (0, 1))
    b = Device("b", _profile("particulate", 0), 2, 2000, (2, 3))
    bus = Bus("rs485-1", port, 9600, (a, b), sink, clock)
    t_start = clock.ticks_ms()

    async def main():
        task = asyncio.create_task(bus.run())
        await clock.sleep_ms(20000)
        bus.stop()
        await task

    asyncio.run(main())
    return {
        "samples": _samples(sink, t_start),
        "counters": bus.counters(),
        "elapsed_sim_ms": clock.ticks_diff(clock.ticks_ms(), t_start),
    }


class _HeapProbe:
    # Called at every schedule sleep (no allocation itself): after `warm` polls it records
    # gc.mem_alloc() after a collection, again after `cycles` more poll cycles, then stops.
    def __init__(self, bus, devices, warm, cycles, collect):
        self.bus = bus
        self.devices = devices
        self.warm = warm
        self.cycles = cycles
        self.collect = collect
        self.state = 0
        self.base = 0
        self.end = 0
        self.polls0 = 0
        self.polls1 = 0
        self.sleeps0 = 0
        self.first0 = 0

    def polls(self):
        n = 0
        for d in self.devices:
            n += d.polls + d.skipped
        return n

    def __call__(self):
        if self.state == 2:
            return
        first = self.devices[0]
        if self.state == 0 and first.polls >= self.warm:
            if self.collect:
                gc.collect()
            self.base = gc.mem_alloc()
            self.polls0 = self.polls()
            self.first0 = first.polls
            self.state = 1
        elif self.state == 1 and first.polls >= self.first0 + self.cycles:
            if self.collect:
                gc.collect()
            self.end = gc.mem_alloc()
            self.polls1 = self.polls()
            self.state = 2
            self.bus.stop()


def _heap_bus():
    t = FakeTime(TICKS_PERIOD - 500000)  # crosses the ticks wrap during the run
    port = FakeModbusPort(t.serial.ticks_us)  # no log: nothing grows
    port.add(1, _pm_slave(35, 80))
    port.add(2, _nox_slave(12.5, 20.0, 39.1))
    port.add(3, _co_slave(4321, 0))
    port.add(4, _pm_slave(0, 0, mode=SILENT))
    sink = CountingSink(10)
    devices = (
        Device("pm", _profile("particulate", 5), 1, 1000, (0, 1)),
        Device("nox", _profile("nox-analyser", 5), 2, 1000, (2, 3, 4)),
        Device("co", two_block_profile(), 3, 500, (5,)),
        # dead, with a power pin: timeouts, back-off, B slots, power cycles, warm-up D
        Device(
            "dead",
            _profile("particulate", 3),
            4,
            1000,
            (6, 7),
            power_pin=CountingPin(),
            backoff_ms=10000,
        ),
    )
    bus = Bus("rs485-1", port, 9600, devices, sink, t, serial_clock=t.serial)
    return t, bus, devices, sink


def scenario_heap():
    # Heap in use after gc.collect() before and after 1000 poll cycles (every device's
    # slot passes 1000 times), after a warm-up of 100 cycles.
    t, bus, devices, sink = _heap_bus()
    probe = _HeapProbe(bus, devices, 100, 1000, True)
    t.on_sleep = probe
    gc.collect()
    asyncio.run(bus.run())
    growth = probe.end - probe.base
    # Per-poll allocation: the same loop with the collector off, 200 cycles.
    t2, bus2, devices2, _sink2 = _heap_bus()
    probe2 = _HeapProbe(bus2, devices2, 50, 200, False)
    t2.on_sleep = probe2
    gc.collect()
    gc.disable()
    try:
        asyncio.run(bus2.run())
    finally:
        gc.enable()
    allocated = probe2.end - probe2.base
    n_polls = probe2.polls1 - probe2.polls0
    return {
        "base": probe.base,
        "end": probe.end,
        "growth": growth,
        "cycles": 1000,
        "polls": probe.polls1 - probe.polls0,
        "alloc_bytes": allocated,
        "alloc_polls": n_polls,
        "alloc_per_poll": allocated / n_polls if n_polls else None,
        "sink_total": sink.total,
        "counters": bus.counters(),
    }


def scenario_alloc_parts():
    # Where the per-poll allocation comes from: the pieces measured alone (gc off).
    from drivers.decoder import decode
    from firmware.clock import ManualClock as _MC
    from firmware.clock import SimulatedClock as _SC
    from firmware.clock import SystemClock

    out = {}
    t, bus, devices, _sink = _heap_bus()
    pm, nox = devices[0], devices[1]
    nox.profile.store(0, array("H", [0x4148, 0, 0x41A0, 0, 0x421C, 0x6666, 0]), 7)

    def measure(name, fn, n=100):
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        for _ in range(n):
            fn()
        b = gc.mem_alloc()
        gc.enable()
        out[name] = (b - a) / n

    measure("decode_particulate", lambda: decode(pm.profile, pm.values, pm.flags))
    measure("decode_nox", lambda: decode(nox.profile, nox.values, nox.flags))
    measure("hand_particulate", lambda: bus._hand(pm))
    measure("hand_nox", lambda: bus._hand(nox))
    m = bus.master
    port = bus.master.port

    def transaction():
        m.begin_read(1, 3, 0, 2, 200)
        while not m.poll():
            t.serial.sleep_ms(m.poll_interval_ms)

    measure("transaction", transaction)
    sys_clock = SystemClock()
    sim = _SC(0, speed=60)
    man = _MC(auto_advance=True)
    res = {}

    async def sleeps():
        for name, c in (("SystemClock", sys_clock), ("SimulatedClock", sim), ("ManualClock", man)):
            gc.collect()
            gc.disable()
            a = gc.mem_alloc()
            for _ in range(50):
                await c.sleep_ms(0)
            b = gc.mem_alloc()
            gc.enable()
            res[name] = (b - a) / 50

    asyncio.run(sleeps())
    out["sleep_ms"] = res
    # One healthy particulate device alone: the whole poll, to compare with its parts.
    t1 = FakeTime(0)
    port1 = FakeModbusPort(t1.serial.ticks_us)
    port1.add(1, _pm_slave(35, 80))
    one = Device("pm", _profile("particulate", 0), 1, 1000, (0, 1))
    bus1 = Bus("one", port1, 9600, (one,), CountingSink(2), t1, serial_clock=t1.serial)
    probe = _HeapProbe(bus1, (one,), 20, 100, False)
    t1.on_sleep = probe
    gc.collect()
    gc.disable()
    try:
        asyncio.run(bus1.run())
    finally:
        gc.enable()
    out["whole_poll_particulate"] = (probe.end - probe.base) / (probe.polls1 - probe.polls0)
    out["port_requests"] = port.requests
    return out


SCENARIOS = {
    "schedule": scenario_schedule,
    "dead_device": scenario_dead_device,
    "boot_warmup": scenario_boot_warmup,
    "errors": scenario_errors,
    "missed": scenario_missed,
    "idle": scenario_idle,
    "manual_clock": scenario_manual_clock,
    "simulated": scenario_simulated,
    "heap": scenario_heap,
    "alloc_parts": scenario_alloc_parts,
}


def main(argv):
    result = SCENARIOS[argv[1]]()
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main(sys.argv)
