"""Zero/span calibration, C/M flagging, version, audit log with rotation, REPL API."""

import binascii
import json
import os

from firmware.calibration import AuditError, AuditLog, Calibration, CalibrationError
from firmware.clock import ManualClock

RUNS_ON_MICROPYTHON = True

T0 = 1764374400
NAN = float("nan")


def _tmp(name):
    return "/tmp/lantian-" + name + "-" + binascii.hexlify(os.urandom(4)).decode()


def _rm(*paths):
    for p in paths:
        for q in (p, p + ".1"):
            try:  # noqa: SIM105 - no contextlib on MicroPython
                os.remove(q)
            except OSError:
                pass


def _lines(path):
    try:
        with open(path) as f:
            return [json.loads(ln) for ln in f if ln.strip()]
    except OSError:
        return []


def _cal(path, persist=None):
    clock = ManualClock(T0)
    return Calibration(["pm25", "so2"], clock, AuditLog(path), persist=persist), clock


def test_identity_by_default_and_apply():
    p = _tmp("cal")
    try:
        cal, _ = _cal(p)
        assert cal.version == 0
        assert cal.apply(0, 12.5, "N") == (12.5, "N")
        assert cal.apply(1, 3.0, "T") == (3.0, "T")
        v, f = cal.apply(0, NAN, "D")
        assert v != v and f == "D"
        assert _lines(p) == []
    finally:
        _rm(p)


def test_zero_and_span_on_site():
    p = _tmp("cal")
    saved = []
    try:
        cal, clock = _cal(p, persist=saved.append)
        cal.calibration("so2", True)
        assert cal.apply(1, 2.0, "N") == (2.0, "C")  # zero air reads 2.0
        assert cal.zero("so2") == 1
        clock.advance(s=120)
        cal.apply(1, 398.0, "N")  # span gas of 400 reads 398 raw
        assert cal.span("so2", 400.0) == 2
        assert abs(cal.gain[1] - 400.0 / 396.0) < 1e-12
        v, f = cal.apply(1, 398.0, "N")
        assert abs(v - 400.0) < 1e-9 and f == "C"
        cal.calibration("so2", False)
        v, f = cal.apply(1, 2.0, "N")
        assert v == 0.0 and f == "N"
        assert cal.version == 2 and len(saved) == 2
        lines = _lines(p)
        assert [ln["action"] for ln in lines] == ["calibration", "zero", "span", "calibration"]
        z = lines[1]
        assert z["who"] == "repl" and z["channel"] == "so2" and z["cal"] == 1
        assert z["before"] == {"zero": 0.0, "gain": 1.0}
        assert z["after"] == {"zero": 2.0, "gain": 1.0}
        assert z["ts"] == T0 and z["time_valid"] is True
        assert lines[2]["ts"] == T0 + 120
        assert lines[0]["before"] is False and lines[0]["after"] is True
    finally:
        _rm(p)


def test_explicit_values_set_reset_and_mqtt_source():
    p = _tmp("cal")
    try:
        cal, _ = _cal(p)
        cal.zero(0, 1.5, who="mqtt")
        cal.span(0, 100.0, 51.5, who="mqtt")  # gain = 100 / 50
        assert cal.gain[0] == 2.0
        assert cal.apply_value(0, 11.5) == 20.0
        cal.set("pm25", gain=4.0)
        assert cal.zero_offset[0] == 1.5 and cal.gain[0] == 4.0
        cal.reset("pm25")
        assert cal.zero_offset[0] == 0.0 and cal.gain[0] == 1.0
        assert cal.version == 4
        lines = _lines(p)
        assert [ln["who"] for ln in lines] == ["mqtt", "mqtt", "repl", "repl"]
        assert [ln["cal"] for ln in lines] == [1, 2, 3, 4]
    finally:
        _rm(p)


def test_maintenance_flags_m_and_calibration_wins():
    p = _tmp("cal")
    try:
        cal, _ = _cal(p)
        cal.maintenance(True)
        assert cal.apply(0, 1.0, "N")[1] == "M"
        assert cal.apply(0, 1.0, "T")[1] == "M"
        assert cal.apply(0, NAN, "D")[1] == "D"  # a fault says more
        assert cal.apply(0, NAN, "B")[1] == "B"
        cal.calibration(0, True)
        assert cal.apply_flag(0, "N") == "C"  # C over M
        assert cal.apply_flag(1, "N") == "M"
        cal.maintenance(False)
        cal.calibration(0, False)
        assert cal.apply_flag(0, "N") == "N"
        assert cal.version == 0  # modes are not constants
        m = _lines(p)[0]
        assert m["action"] == "maintenance" and m["channel"] is None
    finally:
        _rm(p)


def test_refusals_change_nothing():
    p = _tmp("cal")
    try:
        cal, _ = _cal(p)
        for call in (
            lambda: cal.zero("no2"),  # unknown channel
            lambda: cal.zero(5),
            lambda: cal.zero("pm25"),  # no raw reading yet
            lambda: cal.span("pm25", 100.0, 0.0),  # measured == zero
            lambda: cal.span("pm25", -1.0, 10.0),
            lambda: cal.span("pm25", 100.0, -10.0),  # negative gain
            lambda: cal.set("pm25", gain=float("inf")),
            lambda: cal.zero("pm25", NAN),
        ):
            try:
                call()
                raise AssertionError("accepted")
            except CalibrationError:
                pass
        cal.apply(0, 7.0, "D")  # a faulty sample is not a raw reading to zero on
        try:
            cal.zero("pm25")
            raise AssertionError("zeroed on a faulty sample")
        except CalibrationError:
            pass
        try:
            cal.zero("pm25", 1.0, who="someone")
            raise AssertionError("unknown source accepted")
        except ValueError:
            pass
        assert cal.version == 0 and _lines(p) == []
    finally:
        _rm(p)


def test_audit_failure_refuses_the_change():
    cal = Calibration(["pm25"], ManualClock(T0), AuditLog("/nonexistent-dir/x/audit.log"))
    try:
        cal.zero("pm25", 1.0)
        raise AssertionError("unaudited change applied")
    except AuditError:
        pass
    assert cal.version == 0 and cal.zero_offset[0] == 0.0
    assert cal.audit.failures == 1


def test_audit_rotates_to_dot_1():
    p = _tmp("audit")
    try:
        log = AuditLog(p, max_bytes=600)
        cal = Calibration(["pm25"], ManualClock(T0), log)
        for k in range(10):
            cal.zero("pm25", float(k))
        assert log.rotations >= 2
        assert os.stat(p)[6] <= 600 and os.stat(p + ".1")[6] <= 600
        cur = _lines(p)
        old = _lines(p + ".1")
        assert cur[-1]["cal"] == 10
        assert old[-1]["cal"] + 1 == cur[0]["cal"]  # nothing lost between the two
        tail = log.tail(3)
        assert [json.loads(t)["cal"] for t in tail] == [8, 9, 10]
    finally:
        _rm(p)


def test_state_roundtrip_is_exact():
    p = _tmp("cal")
    try:
        cal, _ = _cal(p)
        cal.zero("so2", 0.1)
        cal.span("so2", 1.0, 3.0)  # gain = 1 / 2.9
        state = cal.state_bytes()
        d = json.loads(state)
        assert d["version"] == 2 and sorted(d["ch"]) == ["pm25", "so2"]
        other, _ = _cal(_tmp("unused"))
        other.load_state(state)
        assert other.version == 2
        assert other.zero_offset[1] == cal.zero_offset[1] and other.gain[1] == cal.gain[1]
        for bad in (
            b"{",
            b'{"version": 1}',
            b'{"version": 1, "ch": {"no2": {"zero": 0, "gain": 1}}}',
            b'{"version": 1, "ch": {"so2": {"zero": 0, "gain": 0}}}',
        ):
            try:
                other.load_state(bad)
                raise AssertionError("bad state accepted")
            except CalibrationError:
                pass
        assert other.version == 2
    finally:
        _rm(p)


def test_show_and_history_for_the_technician():
    p = _tmp("cal")
    try:
        cal, _ = _cal(p)
        cal.apply(0, 12.25, "N")
        cal.zero("pm25", 0.5)
        cal.maintenance(True)
        text = cal.status_text()
        assert "calibration version 1" in text and "maintenance ON" in text
        assert "pm25" in text and "0.5" in text and "12.25" in text
        cal.show()
        cal.history(2)
        assert len(cal.audit.tail(10)) == 2
    finally:
        _rm(p)
