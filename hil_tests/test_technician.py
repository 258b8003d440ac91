"""The technician's commands end to end: `lantian calibrate/maintenance/calibrations`
against the real firmware on MicroPython, emulated sensors and a real mosquitto."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway import technician
from gateway.keys import KeyStore
from hil_tests.stationkit import NOX, PM, STATION, records, signal_envelope, wait_records


def _args(broker, tmp_path: Path) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "--broker",
        f"127.0.0.1:{broker.port}",
        "--keys",
        str(tmp_path / "keys.json"),
        "--db",
        str(tmp_path / "gateway.db"),
        "--timeout",
        "20",
        "--station-time",
        "status",  # the station runs in simulated time
    ]


def test_zero_calibration_round_trip_changes_later_records_and_is_audited_at_both_ends(
    broker, subscriber, rig_factory, tmp_path, capsys
):
    rig = rig_factory(broker, [PM, NOX])
    keys = KeyStore.load(tmp_path / "keys.json", missing_ok=True)
    keys.add(STATION, rig.key)
    wait_records(rig, subscriber, 2)

    rc = technician.calibrate_main([STATION, "no2", "zero", "10", *_args(broker, tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "before:" in out and '"zero": 0.0' in out and '"zero": 10.0' in out, out

    n = len(subscriber.on("/data"))
    wait_records(rig, subscriber, n + 3)
    recs = records(rig, subscriber)
    later = [r for r in recs if r["seq"] > n + 1]  # whole minutes after the command
    for r in later:
        assert r["cal"] == 1, r
        ch = r["ch"]["no2"]
        lo, avg, hi = signal_envelope(rig, NOX, "no2", r["ts"])
        # (value - zero) * gain with zero = 10 ug/m3, gain 1
        assert lo - 10 - 1 <= ch["min"] and ch["max"] <= hi - 10 + 1, (ch, lo, hi)
        assert abs(ch["mean"] - (avg - 10)) <= 0.10 * avg + 1, (ch["mean"], avg)
        # the other channels are untouched
        assert r["ch"]["no"]["flag"] == "N"

    # station side: on-device audit log
    station_audit = [a for a in rig.audit_lines() if a.get("action") == "zero"]
    assert station_audit and station_audit[0]["who"] == "mqtt" and station_audit[0]["cal"] == 1
    # gateway side: lantian calibrations
    rc = technician.calibrations_main([STATION, "--db", str(tmp_path / "gateway.db")])
    history = capsys.readouterr().out
    assert rc == 0 and "zero" in history and "no2" in history and "cal=1" in history, history


def test_maintenance_on_flags_M_and_a_command_nobody_answers_is_audited(
    broker, subscriber, rig_factory, tmp_path, capsys
):
    rig = rig_factory(broker, [PM])
    keys = KeyStore.load(tmp_path / "keys.json", missing_ok=True)
    keys.add(STATION, rig.key)
    wait_records(rig, subscriber, 2)
    assert technician.maintenance_main([STATION, "on", *_args(broker, tmp_path)]) == 0
    n = len(subscriber.on("/data"))
    wait_records(rig, subscriber, n + 2)
    last = records(rig, subscriber)[-1]
    assert last["ch"]["pm25"]["flag"] == "M" and last["ch"]["pm25"]["n"] == 0, last

    keys.add("yb-nobody-01", b"k" * 32)
    short = [a if a != "20" else "1" for a in _args(broker, tmp_path)[:-2]]  # wall clock
    assert technician.maintenance_main(["yb-nobody-01", "on", *short]) == 1
    capsys.readouterr()
    technician.calibrations_main(["yb-nobody-01", "--db", str(tmp_path / "gateway.db")])
    assert "no_ack" in capsys.readouterr().out


@pytest.mark.parametrize("bad", ["unknown-station"])
def test_a_station_without_a_key_is_refused_before_sending(bad, tmp_path, capsys):
    KeyStore.load(tmp_path / "keys.json", missing_ok=True).add("other", b"x" * 32)
    args = ["--keys", str(tmp_path / "keys.json"), "--db", str(tmp_path / "g.db")]
    assert technician.maintenance_main([bad, "on", *args]) == 2
    assert "no key" in capsys.readouterr().out
