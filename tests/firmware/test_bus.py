"""The RS-485 bus scheduler (firmware/bus.py) on the real micropython binary and CPython.

Each scenario of tests/firmware/mp/bus_scenarios.py drives a real ``Bus`` with its real
``BusMaster`` against a fake Modbus port (tests/firmware/mp/bus_harness.py) on fake time,
and reports what happened as JSON: every request on the wire, every sample handed to the
sink, power-pin changes and counters. The scenarios run once per interpreter: on the
MicroPython unix port in a subprocess and in-process on CPython. The heap checks run on
MicroPython only (``gc.mem_alloc``).

Times are fake ms since the bus started. The end-to-end run against pymodbus emulators on
ptys belongs to hil_tests/.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from typing import Any

import pytest

from tests.tooling import ROOT, micropython_binary

SCRIPT = "tests/firmware/mp/bus_scenarios.py"
MP_DIR = ROOT / "tests" / "firmware" / "mp"
INTERPRETERS = ("micropython", "cpython")
_cache: dict[tuple[str, str], Any] = {}


def scenario(interp: str, name: str) -> Any:
    key = (interp, name)
    if key not in _cache:
        if interp == "micropython":
            proc = subprocess.run(
                [micropython_binary(), SCRIPT, name],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert proc.returncode == 0, f"{name}: {proc.stdout}\n{proc.stderr}"
            _cache[key] = json.loads(proc.stdout.splitlines()[-1])
        else:
            if str(MP_DIR) not in sys.path:
                sys.path.insert(0, str(MP_DIR))
            import bus_scenarios  # type: ignore[import-not-found]

            _cache[key] = json.loads(json.dumps(bus_scenarios.SCENARIOS[name]()))
    return _cache[key]


@pytest.fixture(params=INTERPRETERS)
def interp(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def polls_of(log: list[list[int]], address: int, function: int | None = None) -> list[int]:
    """Start times of the requests to ``address`` (first read of a poll: ``function``)."""
    return [t for t, a, fn in log if a == address and (function is None or fn == function)]


def samples_of(samples: list[list[Any]], index: int) -> list[list[Any]]:
    return [s for s in samples if s[1] == index]


def assert_on_grid(times: list[int], poll_ms: int, max_late: int, start: int = 0) -> None:
    """Poll k started within [slot k, slot k + max_late): anchored, no drift."""
    for k, t in enumerate(times):
        slot = start + k * poll_ms
        assert 0 <= t - slot < max_late, f"poll {k} at {t}, slot {slot}"


# ------------------------------------------------------------------ schedule and values


def test_per_device_intervals_are_kept_without_drift(interp: str) -> None:
    r = scenario(interp, "schedule")
    log = r["log"]
    end = r["end"]
    # One transaction at 9600 baud takes 25-35 ms; at boot all four devices are due at
    # once (five transactions, co has two reads): the last one starts < 150 ms late.
    for address, poll_ms in ((1, 1000), (2, 2500), (3, 700), (4, 60000)):
        times = polls_of(log, address, 3 if address == 3 else None)
        assert_on_grid(times, poll_ms, 150)
        assert len(times) >= (end - 200) // poll_ms, (address, len(times))
    # the two-block device makes two reads per poll, FC03 then FC04
    co = [fn for _t, a, fn in log if a == 3]
    assert co[:4] == [3, 4, 3, 4]
    c = r["counters"]
    assert c["devices"]["slow"]["polls"] == 3  # 0, 60 s, 120 s
    assert c["transactions"] == len(log) == c["ok"]
    for d in c["devices"].values():
        assert d["polls"] == d["ok"]
        assert d["missed"] == d["skipped"] == d["backoffs"] == 0


def test_samples_reach_the_sink_with_decoded_values_and_flags(interp: str) -> None:
    r = scenario(interp, "schedule")
    s = r["samples"]
    c = r["counters"]["devices"]
    expected = {
        0: (35.0, "N", "pm"),
        1: (80.0, "N", "pm"),
        2: (12.5 * 1.227, "N", "nox"),  # NO ppb -> ug/m3
        3: (39.1 * 1.880, "N", "nox"),  # NOx ppb -> ug/m3 as NO2; no2 (index -1) dropped
        4: (1.23, "C", "co"),  # status register code 1 = calibration
        5: (1.0, "N", "slow"),
        6: (2.0, "N", "slow"),
    }
    assert {x[1] for x in s} == set(expected)
    for index, (value, flag, dev) in expected.items():
        got = samples_of(s, index)
        assert len(got) == c[dev]["polls"]
        for _t, _i, v, f in got:
            assert f == flag
            assert math.isclose(v, value, rel_tol=1e-5), (index, v, value)


def test_states_warm_up_at_boot_then_ok(interp: str) -> None:
    r = scenario(interp, "schedule")
    assert r["states_boot"] == ["warmup", "warmup", "warmup"]
    states = {n: d["state"] for n, d in r["counters"]["devices"].items()}
    # pm: 120 s warm-up and nox: 60 s are over at 150 s; co's profile has none
    assert states == {"pm": "ok", "nox": "ok", "co": "ok", "slow": "ok"}


def test_idle_loop_keeps_the_heartbeat_moving(interp: str) -> None:
    r = scenario(interp, "idle")
    assert r["polls"] == 1
    beats = r["beats"]
    assert max(b - a for a, b in itertools.pairwise(beats)) <= 1000
    assert beats[-1] >= 9000


# ------------------------------------------------------------------ a dead device


def test_dead_device_is_backed_off_and_power_cycled(interp: str) -> None:
    r = scenario(interp, "dead_device")
    timeout = r["timeout_ms"]
    log = r["log"]
    pm1 = samples_of(r["samples"], 0)
    # healthy until it dies at 35 s
    assert all(f == "N" and v == 11.0 for t, _i, v, f in pm1 if t < 35000)
    # three polls time out (35, 36, 37 s): B, NaN, each ~timeout after its slot
    failed = [x for x in pm1 if 35000 <= x[0] < 38000]
    assert [(x[2], x[3]) for x in failed] == [(None, "B")] * 3
    assert all(0 <= x[0] % 1000 - timeout < 20 for x in failed)
    # back-off for 20 s: a B sample exactly at each of its 20 slots, nothing on the wire
    skipped = [x for x in pm1 if 38000 <= x[0] < 58000]
    assert [x[0] for x in skipped] == list(range(38000, 58000, 1000))
    assert all(x[2] is None and x[3] == "B" for x in skipped)
    to_pm1 = polls_of(log, 1)
    assert not [t for t in to_pm1 if 37000 < t < 58000]
    assert [t for t in to_pm1 if 57000 <= t < 59000] == [58000]  # the probe, on its slot
    # power rail: on at boot, off when the back-off starts, on 2 s later
    pin = r["pin"]
    assert [v for _t, v in pin] == [1, 0, 1]
    assert pin[0][0] == 0
    assert 37000 + timeout <= pin[1][0] < 37000 + timeout + 20
    assert pin[2][0] - pin[1][0] == 2000
    # warm-up after the power cycle: the probe and later failures are D, no new back-off
    assert r["seen"]["during_backoff"] == "backoff"
    assert r["seen"]["after_probe"] == "warmup"
    at_40s = r["seen"]["counters_40s"]
    assert (at_40s["state"], at_40s["backoffs"], at_40s["skipped"]) == ("backoff", 1, 2)
    assert at_40s["consecutive_failures"] == 0  # the power cycle restarted the count
    warm = [x for x in pm1 if 58000 <= x[0] < 62000]
    assert [(x[2], x[3]) for x in warm] == [(None, "D")] * 4
    # revived at 62 s: a success resets
    assert all(v == 11.0 and f == "N" for t, _i, v, f in pm1 if t >= 62000)
    c = r["counters"]["devices"]["pm1"]
    assert c["timeouts"] == 7
    assert c["backoffs"] == 1
    assert c["power_cycles"] == 1
    assert c["skipped"] == 20
    assert c["warmup_failures"] == 4
    assert c["consecutive_failures"] == 0
    assert c["state"] == "ok"
    assert c["polls"] == c["ok"] + c["timeouts"]
    assert c["polls"] + c["skipped"] + c["missed"] == 90
    assert len(pm1) == 90  # one sample per slot, polled or skipped


def test_other_device_keeps_its_schedule_while_one_is_dead(interp: str) -> None:
    r = scenario(interp, "dead_device")
    timeout = r["timeout_ms"]
    pm2 = polls_of(r["log"], 2)
    assert len(pm2) == 90
    # Listed after the dead one, it waits at most for its timeout (+ request wire time,
    # ~9 ms at 9600 baud, and the t3.5 gap); never drifts.
    assert_on_grid(pm2, 1000, timeout + 15)
    during_backoff = [t for t in pm2 if 38000 <= t < 58000]
    assert all(t % 1000 == 0 for t in during_backoff)  # the dead device costs nothing
    samples = samples_of(r["samples"], 2)
    assert len(samples) == 90
    assert all(v == 33.0 and f == "N" for _t, _i, v, f in samples)
    c = r["counters"]["devices"]["pm2"]
    assert c["ok"] == c["polls"] == 90
    assert c["late_max_ms"] <= timeout + 15


# ------------------------------------------------------------------ warm-up, errors, misses


def test_failures_during_boot_warm_up_are_d_and_do_not_escalate(interp: str) -> None:
    r = scenario(interp, "boot_warmup")
    busy = samples_of(r["samples"], 0)
    assert [(x[2], x[3]) for x in busy[:6]] == [(None, "D")] * 6  # exception 06, 0..5 s
    assert all(x[2] == 5.0 and x[3] == "N" for x in busy[6:])
    mute = samples_of(r["samples"], 2)
    assert [x[3] for x in mute[:10]] == ["D"] * 10  # warm-up: 0..9 s
    assert r["seen"]["at_9s"] == ["warmup", "warmup", 0, 0]
    assert [x[3] for x in mute[10:]] == ["B"] * (len(mute) - 10)
    to_mute = polls_of(r["log"], 2)
    assert [t // 1000 for t in to_mute] == [*range(13), 23, 34]
    c = r["counters"]["devices"]
    assert c["busy"]["exceptions"] == 6
    assert c["busy"]["last_exception_code"] == 6
    assert c["busy"]["warmup_failures"] == 6
    assert c["busy"]["state"] == "ok"
    m = c["mute"]
    assert m["warmup_failures"] == 10
    assert m["timeouts"] == 15
    # no power pin: after each 10 s back-off one probe fails and it backs off again
    assert m["backoffs"] == 3
    assert m["power_cycles"] == 0
    assert m["skipped"] == 10 + 10 + 5
    assert m["state"] == "backoff"


def test_error_kinds_are_flagged_and_counted(interp: str) -> None:
    r = scenario(interp, "errors")
    s = r["samples"]
    c = r["counters"]
    d = c["devices"]
    crc = samples_of(s, 0)
    exc = samples_of(s, 2)
    addr = samples_of(s, 8)
    assert all(x[2] is None and x[3] == "B" for x in crc)
    # an exception response is the instrument refusing (D); the port error at 3 s is B
    assert [x[3] for x in exc[:5]] == ["D", "D", "D", "B", "D"]
    assert [x[3] for x in exc[5:]] == ["B"] * 5  # backed off after 5 failures
    assert all(x[3] == "B" for x in addr)
    assert d["crc"]["crc_errors"] == 4
    assert d["crc"]["port_errors"] == 1
    assert d["exc"]["exceptions"] == 4
    assert d["exc"]["last_exception_code"] == 2
    assert d["exc"]["port_errors"] == 1
    assert d["addr"]["frame_errors"] == 10
    assert d["addr"]["state"] == "failing"
    for name in ("crc", "exc"):
        assert d[name]["backoffs"] == 1
        assert d[name]["skipped"] == 5
        assert d[name]["state"] == "backoff"
    assert c["port_errors"] == 2
    assert c["crc_errors"] == 4
    assert c["exceptions"] == 4
    assert c["frame_errors"] == 10
    for name, index, value in (("ok1", 4, 5.0), ("ok2", 6, 7.0)):
        assert d[name]["ok"] == d[name]["polls"] == 10
        assert all(x[2] == value and x[3] == "N" for x in samples_of(s, index))


def test_missed_slots_are_counted_and_the_anchor_kept(interp: str) -> None:
    r = scenario(interp, "missed")
    log = r["log"]
    dead = polls_of(log, 1)
    assert dead == list(range(0, 1000 * len(dead), 1000))  # listed first: always on time
    fast = polls_of(log, 2, 3)
    c = r["counters"]["devices"]["fast"]
    assert c["missed"] >= 18  # two slots lost behind every 450 ms timeout
    assert c["polls"] + c["missed"] in (50, 51)
    assert c["late_max_ms"] < 200
    for t in fast:
        assert t % 200 < 100  # on its own grid, late by less than one interval
    # missed slots hand nothing (the minute accumulator counts them as absent -> B)
    assert len(samples_of(r["samples"], 3)) == c["polls"]


# ------------------------------------------------------------------ the project's clocks


def test_manual_clock_drives_the_same_path(interp: str) -> None:
    r = scenario(interp, "manual_clock")
    a = polls_of(r["log"], 1)
    b = polls_of(r["log"], 2)
    assert a == list(range(0, 30000, 1000))
    assert_on_grid(b, 3000, 60)
    assert len(b) == 10
    assert {(x[2], x[3]) for x in samples_of(r["samples"], 0)} == {(10.0, "N")}
    assert {(x[2], x[3]) for x in samples_of(r["samples"], 3)} == {(40.0, "N")}


def test_simulated_clock_runs_faster_than_real_time(interp: str) -> None:
    r = scenario(interp, "simulated")  # 20 simulated s in ~2 real s, serial on real time
    assert r["elapsed_sim_ms"] >= 20000
    d = r["counters"]["devices"]
    assert 19 <= d["a"]["polls"] + d["a"]["missed"] <= 21
    assert 9 <= d["b"]["polls"] + d["b"]["missed"] <= 11
    assert d["a"]["ok"] == d["a"]["polls"]
    assert {(x[2], x[3]) for x in samples_of(r["samples"], 1)} == {(20.0, "N")}


# ------------------------------------------------------------------ heap (MicroPython)


def test_heap_does_not_grow_over_1000_poll_cycles() -> None:
    r = scenario("micropython", "heap")
    print(
        f"heap after gc.collect(): {r['base']} -> {r['end']} bytes "
        f"(growth {r['growth']}) over {r['cycles']} cycles = {r['polls']} slots; "
        f"allocated per slot (gc off): {r['alloc_per_poll']:.1f} bytes"
    )
    assert abs(r["growth"]) <= 256
    assert r["polls"] == 5000  # 4 devices, one at 500 ms: 5 slots per cycle
    d = r["counters"]["devices"]
    assert d["dead"]["backoffs"] > 50  # the failure paths ran in the measured window
    assert d["dead"]["power_cycles"] == d["dead"]["backoffs"]


def test_the_scheduler_itself_allocates_nothing_per_poll() -> None:
    r = scenario("micropython", "alloc_parts")
    print(json.dumps(r, sort_keys=True))
    parts = r["decode_particulate"] + r["hand_particulate"] + r["transaction"]
    # a whole poll costs what its parts (decoder floats, sink floats, master slices) cost
    assert r["whole_poll_particulate"] <= parts
    assert r["sleep_ms"]["SystemClock"] < 1  # asyncio.sleep_ms returns a singleton
