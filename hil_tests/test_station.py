"""The station firmware end to end: real MicroPython, emulated sensors on a pty, real mosquitto.

Each test runs ``micropython hil_tests/mp_station.py`` (firmware/main.py on the unix
port with the machine/network shims) against pymodbus emulators built from the device
profiles, in simulated time shared by both sides, and reads what a CPython subscriber
receives from a real mosquitto: the exact bytes, whose HMAC it verifies with the
station's key.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import random
import time
from typing import Any

from hil_tests.rig import DeviceSpec, StationRig
from hil_tests.stationkit import (
    NOX,
    PM,
    STATION,
    T0,
    body_of,
    records,
    signal_envelope,
    statuses,
    wait_records,
)
from hil_tests.subscriber import Subscriber


# ------------------------------------------------------------------ normal operation
def test_one_signed_record_per_minute_with_the_emulators_values(broker, subscriber, rig_factory):
    rig = rig_factory(broker, [PM, NOX])
    wait_records(rig, subscriber, 7)
    recs = records(rig, subscriber)
    seqs = [r["seq"] for r in recs]
    assert seqs == list(range(1, len(recs) + 1)), seqs  # in order, none missing
    stamps = [r["ts"] for r in recs]
    assert all(b - a == 60 for a, b in itertools.pairwise(stamps)), stamps
    assert all(ts % 60 == 0 for ts in stamps)
    channels = {
        "pm25": (PM, "pm25"),
        "pm10": (PM, "pm10"),
        "no2": (NOX, "no2"),
        "nox": (NOX, "nox"),
    }
    # The first minute started before the station booted (partial); judge whole ones.
    for r in recs[1:]:
        assert r["station"] == STATION and r["time_valid"] is True and r["cal"] == 0
        assert list(r["ch"]) == ["pm25", "pm10", "no", "no2", "nox"]
        for name, (dev, src) in channels.items():
            ch = r["ch"][name]
            assert ch["flag"] == "N", (name, r)
            assert ch["n"] >= 0.75 * ch["exp"] and ch["exp"] >= 11, (name, ch)
            assert ch["min"] <= ch["mean"] <= ch["max"]
            lo, avg, hi = signal_envelope(rig, dev, src, r["ts"])
            # Stated tolerance: samples lie inside what the emulator held during the
            # minute (+-0.5 unit of register rounding and float32 noise), and the mean
            # of ~12 samples is within 10 % of the minute's time average.
            slack = 0.5 + 1e-3 * hi
            assert lo - slack <= ch["min"] and ch["max"] <= hi + slack, (name, ch, lo, hi)
            assert abs(ch["mean"] - avg) <= 0.10 * avg + slack, (name, ch["mean"], avg)
            assert ch["unit"] == "ug/m3"
    st = statuses(rig, subscriber)
    assert st, "no retained status"
    last = st[-1]
    assert last["online"] is True and last["fw"] and last["ring"]["dropped"] == 0
    pm = last["buses"]["rs485a"]["devices"]["pm"]
    assert pm["ok"] > 0 and pm["timeouts"] == 0
    # The supervisor fed the (shimmed) hardware watchdog: "<feeds> <ticks> <timeout> <pid>"
    feeds = int((rig.root / "wdt").read_text().split()[0])
    assert feeds > 0 and last["watchdog"]["stale_task"] is None, last["watchdog"]


# ------------------------------------------------------------------ a sensor stops answering
def test_a_silent_sensor_flags_its_channels_while_the_other_keeps_its_schedule(
    broker, subscriber, rig_factory
):
    # Serial timeouts are physical (real time) while the schedule runs 60x faster, so a
    # 200 ms timeout would cost 12 simulated seconds of bus time. 50 ms (3 simulated s
    # against 5 s polls) keeps the field's proportions closer.
    pm = DeviceSpec("pm", "particulate", 1, 5, PM.channels, seed=1, extra={"timeout_ms": 50})
    rig = rig_factory(broker, [pm, NOX])
    wait_records(rig, subscriber, 2)
    rig.sensors["pm"].inject("hang")  # stays silent until power-cycled
    n = len(subscriber.on("/data"))
    wait_records(rig, subscriber, n + 5)
    recs = records(rig, subscriber)
    # Whole minutes after the failures escalated to back-off (the first two minutes
    # after the injection hold the N consecutive timeouts that lead to it).
    after = [r for r in recs if r["seq"] > n + 2]
    assert after
    for r in after:
        assert r["ch"]["pm25"]["flag"] == "B" and r["ch"]["pm25"]["n"] == 0, r["ch"]["pm25"]
        assert r["ch"]["pm25"]["mean"] is None
        for name in ("no", "no2", "nox"):
            ch = r["ch"][name]
            assert ch["flag"] == "N" and ch["n"] >= 0.75 * ch["exp"], (name, ch)
    wait_records(rig, subscriber, len(recs) + 1)
    counters = statuses(rig, subscriber)[-1]["buses"]["rs485a"]["devices"]
    assert counters["pm"]["timeouts"] >= 3 and counters["pm"]["backoffs"] >= 1, counters["pm"]
    assert counters["nox"]["timeouts"] == 0, counters["nox"]


# ------------------------------------------------------------------ uplink outage
def test_uplink_outage_loses_nothing(broker, subscriber, rig_factory):
    # 240x: 30 simulated minutes of outage take 7.5 s.
    slow_pm = DeviceSpec("pm", "particulate", 1, 30, {"pm25": "pm25"}, seed=3)
    rig = rig_factory(broker, [slow_pm], speed=240)
    wait_records(rig, subscriber, 2)
    broker.stop()
    t_stop = rig.clock.now()
    while rig.clock.now() - t_stop < 31 * 60:
        time.sleep(0.2)
    broker.start()
    n_expected = int((rig.clock.now() - T0) // 60) - 1
    wait_records(rig, subscriber, n_expected, timeout=90)
    recs = records(rig, subscriber)
    seqs = [r["seq"] for r in recs]
    # QoS 1 may repeat the one record in flight when the link died; nothing is lost and
    # nothing arrives out of order.
    dedup = sorted(set(seqs))
    assert dedup == list(range(1, dedup[-1] + 1)), seqs
    assert all(b >= a for a, b in itertools.pairwise(seqs)), seqs
    assert len(seqs) - len(dedup) <= 1
    stamps = [r["ts"] for r in recs]
    outage = [ts for ts in stamps if t_stop <= ts < t_stop + 30 * 60]
    assert len(set(outage)) >= 29, "every minute of the outage must arrive afterwards"


# ------------------------------------------------------------------ commands
def command(rig: StationRig, exp_in: int = 300, key: bytes | None = None, **body: Any) -> bytes:
    msg = {"station": STATION, "nonce": f"n{random.getrandbits(48):x}", "exp": 0, **body}
    msg["exp"] = msg["exp"] or int(rig.clock.now()) + exp_in
    raw = json.dumps(msg).encode()
    sig = hmac.new(key or rig.key, raw, hashlib.sha256).hexdigest().encode()
    return raw + b"\n" + sig


def acks(rig: StationRig, sub: Subscriber) -> list[dict[str, Any]]:
    return [body_of(rig, m) for m in sub.on("/ack")]


def test_calibration_mode_flags_C_and_bad_commands_are_refused_and_logged(
    broker, subscriber, rig_factory
):
    rig = rig_factory(broker, [PM, NOX])
    wait_records(rig, subscriber, 2)
    topic = f"lantian/v1/station/{STATION}/cmd"
    pub = subscriber.client

    good = command(rig, cmd="calibration", channel="no2", on=True)
    pub.publish(topic, good, qos=1)
    subscriber.wait_for(lambda s: len(s.on("/ack")) >= 1, 30, "ack")
    ack = acks(rig, subscriber)[0]
    assert ack["ok"] is True and ack["cmd"] == "calibration", ack

    forged = command(rig, key=b"not-the-station-key-0123456789", cmd="maintenance", on=True)
    unsigned = json.dumps({"station": STATION, "nonce": "u1", "exp": 2**31, "cmd": "reset"})
    expired = command(rig, exp_in=-120, cmd="maintenance", on=True)
    for payload in (forged, unsigned.encode(), good, expired):  # `good` again = replay
        pub.publish(topic, payload, qos=1)
    subscriber.wait_for(lambda s: len(s.on("/ack")) >= 5, 30, "acks")
    reasons = [a.get("reason") for a in acks(rig, subscriber)[1:]]
    assert reasons == ["bad_signature", "unsigned", "replayed", "expired"], reasons

    n = len(subscriber.on("/data"))
    wait_records(rig, subscriber, n + 2)
    last = records(rig, subscriber)[-1]
    assert last["ch"]["no2"]["flag"] == "C" and last["ch"]["no2"]["n"] == 0, last["ch"]["no2"]
    assert last["ch"]["no"]["flag"] == "N" and last["ch"]["pm25"]["flag"] == "N"

    audit = rig.audit_lines()
    assert [a["action"] for a in audit if a.get("who") == "mqtt"][:1] == ["calibration"]
    refused = [a["reason"] for a in audit if a.get("action") == "refused"]
    assert refused == ["bad_signature", "unsigned", "replayed", "expired"], audit


# ------------------------------------------------------------------ power loss
def test_power_loss_at_random_points_loses_at_most_the_record_in_flight(
    broker, subscriber, rig_factory
):
    """The whole firmware process is SIGKILLed at random moments and restarted on the same
    "flash" (the folder); tests/firmware/test_store.py does the same 50 + 50 times with
    torn writes at the ring's own level."""
    rng = random.Random(20261129)
    slow_pm = DeviceSpec("pm", "particulate", 1, 20, {"pm25": "pm25"}, seed=4)
    rig = rig_factory(broker, [slow_pm], speed=240)
    wait_records(rig, subscriber, 1)
    kills = 8
    for _ in range(kills):
        time.sleep(rng.uniform(0.2, 1.2))  # 48..288 simulated seconds
        rig.kill()
        rig.launch()
    n = len(subscriber.on("/data"))
    wait_records(rig, subscriber, n + 2)
    recs = records(rig, subscriber)  # every signature verified
    seqs = [r["seq"] for r in recs]
    assert len(set(seqs)) >= len(seqs) - kills  # a repeat only of a record in flight
    assert sorted(set(seqs)) == list(range(1, max(seqs) + 1)), seqs  # no record lost
    assert all(b >= a for a, b in itertools.pairwise(seqs)), seqs
    # A repeated seq is the same record (same bytes), never a new record reusing it.
    by_seq: dict[int, str] = {}
    for r in recs:
        key = json.dumps(r, sort_keys=True)
        assert by_seq.setdefault(r["seq"], key) == key, f"seq {r['seq']} reused"
    assert rig.starts == kills + 1


# ------------------------------------------------------------------ clock and safe mode
def test_records_before_clock_sync_are_flagged_time_invalid(broker, subscriber, rig_factory):
    rig = rig_factory(broker, [PM], unsynced=True)
    wait_records(rig, subscriber, 2)
    assert all(r["time_valid"] is False for r in records(rig, subscriber))


def test_invalid_config_reports_safe_mode_instead_of_crash_looping(broker, subscriber, rig_factory):
    bad = DeviceSpec("pm", "particulate", 1, 0, {"pm25": "pm25"})  # poll_s must be > 0
    rig = rig_factory(broker, [bad])
    subscriber.wait_for(lambda s: len(statuses(rig, s)) >= 1, 30, "safe-mode status")
    st = statuses(rig, subscriber)[-1]
    assert st["mode"] == "safe" and st["station"] == STATION, st
    assert st["error"]["kind"] == "config" and st["error"]["field"] == "devices[0].poll_s", st
    assert rig.alive(), "safe mode keeps running (and feeding the watchdog)"
    assert not subscriber.on("/data")


# ------------------------------------------------------------------ memory
def test_heap_does_not_grow_over_1000_poll_cycles(broker, subscriber, rig_factory):
    """Heap in use after gc.collect(), as the station reports it in its status, does not
    grow after warm-up while the buses run 1000 poll cycles (records, signing, MQTT and
    status included)."""
    rig = rig_factory(broker, [PM, NOX], speed=90)

    def polls(st: dict[str, Any]) -> int:
        return sum(d["polls"] for d in st["buses"]["rs485a"]["devices"].values())

    subscriber.wait_for(lambda s: len(statuses(rig, s)) >= 3, 60, "warm-up statuses")
    base = statuses(rig, subscriber)[2]
    subscriber.wait_for(
        lambda s: polls(statuses(rig, s)[-1]) - polls(base) >= 1000, 120, "1000 poll cycles"
    )
    later = [st for st in statuses(rig, subscriber) if st["ts"] > base["ts"]]
    growth = [st["heap_used"] - base["heap_used"] for st in later]
    print(
        f"heap after warm-up {base['heap_used']} B; growth over"
        f" {polls(later[-1]) - polls(base)} polls: {growth}"
    )
    # A status is built while other tasks may hold a short-lived object (a message in
    # flight, a timeout task), so one sample can sit above the floor; a leak raises the
    # floor itself. Compare the floor of the last five statuses with the start.
    assert len(later) >= 5
    assert abs(min(growth[-5:])) <= 256, growth
    assert sum(1 for g in growth if abs(g) > 256) <= len(growth) // 10, growth
