"""docs/schemas/*.schema.json against what the real firmware produces.

The firmware modules import on CPython, so a real ``firmware.station.Station`` (with a
stand-in ``machine``: no bus is polled here) produces the status, minute records,
acknowledgements, and ``firmware.sign.verify_command`` judges the commands. Every body
it makes must validate; hand-made mutations of them must not.
"""

from __future__ import annotations

import copy
import json
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from firmware import config as fw_config
from firmware import record, sign
from firmware.clock import ManualClock
from firmware.minute import MinuteAccumulator
from firmware.station import Station
from gateway.ingest import SCHEMA_DIR, LantianValidator, schema_error, validator_for
from hil_tests.rig import DeviceSpec, station_config

KEY = b"k" * 32
TS = 1764374400
SCHEMAS = sorted(p.name for p in SCHEMA_DIR.glob("*.schema.json"))


class _Pin:
    OUT = 1
    IN = 0

    def __init__(self, *a: object, value: int = 0, **kw: object) -> None:
        self._value = value

    def value(self, v: int | None = None) -> int | None:
        if v is None:
            return self._value
        self._value = v
        return None


class _UART:
    def __init__(self, *a: object, **kw: object) -> None:
        pass

    def any(self) -> int:
        return 0

    def read(self, n: int = -1) -> bytes | None:
        return None

    def write(self, b: bytes) -> int:
        return len(b)


class _WDT:
    def __init__(self, timeout: int) -> None:
        pass

    def feed(self) -> None:
        pass


MACHINE = types.SimpleNamespace(Pin=_Pin, UART=_UART, WDT=_WDT)


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    cfg = station_config(
        "yb-town-01",
        1883,
        [
            DeviceSpec("pm", "particulate", 1, 5, {"pm25": "pm25", "pm10": "pm10"}),
            DeviceSpec("nox", "nox-analyser", 2, 10, {"no2": "no2"}),
        ],
    )
    st = Station(fw_config.validate(cfg), KEY, ManualClock(TS), MACHINE, root=str(tmp_path))
    yield st
    st.ring.close()


def validator(name: str) -> Any:
    return validator_for(name)


def errors(name: str, doc: object) -> str | None:
    return schema_error(validator(name), doc)


# ---------------------------------------------------------------- the schema files


def test_the_station_schemas_are_there() -> None:
    assert {
        "ack.schema.json",
        "command.schema.json",
        "minute-record.schema.json",
        "station-status.schema.json",
    } <= set(SCHEMAS)


@pytest.mark.parametrize("name", SCHEMAS)
def test_schema_is_valid_draft_2020_12(name: str) -> None:
    schema = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    LantianValidator.check_schema(schema)


# ---------------------------------------------------------------- minute records


def _closed_minutes() -> Iterator[tuple[str, object, list[str], list[str]]]:
    acc = MinuteAccumulator(3, [5000, 5000, 1000])
    for v in (38.0, 41.2, 45.0, 40.6, 41.2, 41.2, 41.2, 41.2, 41.2, 41.2, 41.2, 41.2):
        acc.add(0, v, "N")
    for _ in range(12):
        acc.add(1, 0.8234567, "N")
    acc.add(1, 12.5, "T")
    for _ in range(10):
        acc.add(2, float("nan"), "D")
    yield "valid-T-and-B", acc.close(TS), ["pm25", "co", "so2"], ["ug/m3", "mg/m3", "ug/m3"]
    acc = MinuteAccumulator(1, [5000])
    for _ in range(12):
        acc.add(0, 3.0, "C")
    yield "calibration", acc.close(TS + 60), ["no2"], ["ug/m3"]
    acc = MinuteAccumulator(1, [5000])
    yield "nothing-received", acc.close(TS + 120, n_expected=0), ["no2"], ["ug/m3"]
    acc = MinuteAccumulator(2, [5000, 5000])
    for i in range(12):
        acc.add(0, -1.5e-05 * (i + 1), "N")
        acc.add(1, 1.0e20, "T")
    yield "tiny-and-huge", acc.close(TS + 180), ["t-air", "voc_1"], ["ug/m3", "ppb"]


@pytest.mark.parametrize("time_valid", [True, False])
def test_firmware_minute_records_validate(time_valid: bool) -> None:
    v = validator("minute-record.schema.json")
    for name, closed, channels, units in _closed_minutes():
        body = record.minute_body(
            "yb-town-01", 1234, closed, channels, units, time_valid, "0.1.0", 3
        )
        payload = record.signed_minute(KEY, body)
        received = record.verify_signed(KEY, payload)
        assert received == body
        assert schema_error(v, json.loads(received)) is None, name


def test_station_minute_records_from_the_ring_validate(station: Station) -> None:
    for minute in range(3):
        for k in range(12):
            station.sample(0, 30.0 + k, "N")
            station.sample(1, 50.0, "N")
        station.close_minute(TS + 60 * minute)
    v = validator("minute-record.schema.json")
    seen = 0
    while (item := station.ring.peek()) is not None:
        seq, view = item
        body = record.verify_signed(KEY, bytes(view))
        assert body is not None
        doc = json.loads(body)
        assert doc["seq"] == seq and set(doc["ch"]) == {"pm25", "pm10", "no2"}
        assert schema_error(v, doc) is None
        station.ring.ack(seq)
        seen += 1
    assert seen == 3


def _firmware_record() -> dict[str, Any]:
    _, closed, channels, units = next(_closed_minutes())
    body = record.minute_body("yb-town-01", 1234, closed, channels, units, True, "0.1.0", 3)
    doc: dict[str, Any] = json.loads(body)
    return doc


MUTATIONS: dict[str, Any] = {
    "extra-top-level": lambda d: d.update(extra=1),
    "missing-seq": lambda d: d.pop("seq"),
    "seq-zero": lambda d: d.update(seq=0),
    "seq-float": lambda d: d.update(seq=1234.0),
    "seq-bool": lambda d: d.update(seq=True),
    "ts-negative": lambda d: d.update(ts=-60),
    "ts-unaligned": lambda d: d.update(ts=TS + 30),
    "ts-string": lambda d: d.update(ts=str(TS)),
    "interval-30": lambda d: d.update(interval=30),
    "type-status": lambda d: d.update(type="status"),
    "v-2": lambda d: d.update(v=2),
    "time-valid-null": lambda d: d.update(time_valid=None),
    "station-uppercase": lambda d: d.update(station="YB-Town"),
    "station-long": lambda d: d.update(station="x" * 33),
    # Python's re.search lets "$" match before a final newline; the schemas anchor with
    # (?![\s\S]) instead, which means end of text in Python and ECMA-262 alike.
    "station-trailing-newline": lambda d: d.update(station="yb-town-01\n"),
    "channel-name-trailing-newline": lambda d: d["ch"].update({"pm25\n": d["ch"].pop("pm25")}),
    "fw-trailing-newline": lambda d: d.update(fw="0.1.0\n"),
    "unit-surrogate": lambda d: d["ch"]["pm25"].update(unit="ug\udc80"),
    "fw-empty": lambda d: d.update(fw=""),
    "cal-negative": lambda d: d.update(cal=-1),
    "ch-empty": lambda d: d.update(ch={}),
    "ch-list": lambda d: d.update(ch=[]),
    "channel-name-uppercase": lambda d: d["ch"].update(PM25=d["ch"]["pm25"]),
    "channel-extra": lambda d: d["ch"]["pm25"].update(sd=1.0),
    "channel-missing-unit": lambda d: d["ch"]["pm25"].pop("unit"),
    "flag-lowercase": lambda d: d["ch"]["pm25"].update(flag="n"),
    "flag-two-letters": lambda d: d["ch"]["pm25"].update(flag="NT"),
    "n-above-exp": lambda d: d["ch"]["pm25"].update(n=13),
    "n-negative": lambda d: d["ch"]["pm25"].update(n=-1),
    "exp-above-u16": lambda d: d["ch"]["pm25"].update(exp=65536),
    "min-above-max": lambda d: d["ch"]["pm25"].update(min=50.0),
    "mean-string": lambda d: d["ch"]["pm25"].update(mean="41.2"),
    "mean-null-with-n": lambda d: d["ch"]["pm25"].update(mean=None),
    "values-with-n-zero": lambda d: d["ch"]["so2"].update(mean=1.0, min=1.0, max=1.0),
    "valid-flag-with-n-zero": lambda d: d["ch"]["so2"].update(flag="N"),
    "unit-empty": lambda d: d["ch"]["pm25"].update(unit=""),
    "unit-control-char": lambda d: d["ch"]["pm25"].update(unit="ug\n"),
}


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_the_minute_schema_is_strict(mutation: str) -> None:
    doc = _firmware_record()
    assert errors("minute-record.schema.json", doc) is None
    MUTATIONS[mutation](doc)
    assert errors("minute-record.schema.json", doc) is not None


# ---------------------------------------------------------------- status


def test_running_status_of_a_real_station_validates(station: Station) -> None:
    status = station.status()
    assert errors("station-status.schema.json", status) is None
    # as published: JSON text, then signed, then parsed by a consumer
    body = json.dumps(status).encode()
    assert record.verify_signed(KEY, sign.signed_payload(KEY, body)) == body
    assert errors("station-status.schema.json", json.loads(body)) is None


def test_status_with_heap_numbers_and_a_stale_task_validates(station: Station) -> None:
    status = station.status()
    status.update(heap_free=61440, heap_used=40960, uptime_s=86400, maintenance=True)
    status["watchdog"].update(stale_task="bus:rs485a", stale_age_ms=9000)
    assert errors("station-status.schema.json", status) is None


@pytest.mark.parametrize(
    "error",
    [
        fw_config.ConfigError("devices[0].poll_s", "must be > 0"),
        fw_config.DeviceKeyError("key.bin", "missing"),
        RuntimeError("x" * 500),
    ],
    ids=["config", "key", "internal"],
)
def test_safe_mode_status_validates(error: Exception) -> None:
    status = fw_config.safe_mode_status(error, "yb-town-01")
    status["ts"] = TS  # firmware/main.py stamps it before each publish
    assert errors("station-status.schema.json", status) is None
    unknown = fw_config.safe_mode_status(error, None)
    unknown["ts"] = TS
    assert errors("station-status.schema.json", unknown) is None


def test_last_wills_validate() -> None:
    # firmware/station.py's will, and firmware/mqtt.py's default (safe mode uses it)
    for will in (b'{"online": false, "station": "yb-town-01"}', b'{"online": false}'):
        assert errors("station-status.schema.json", json.loads(will)) is None


@pytest.mark.parametrize(
    "mutation",
    ["extra", "online-false", "ring-extra", "device-state", "mqtt-missing", "negative"],
)
def test_the_status_schema_is_strict(station: Station, mutation: str) -> None:
    status = copy.deepcopy(station.status())
    if mutation == "extra":
        status["color"] = "green"
    elif mutation == "online-false":
        status["online"] = False
    elif mutation == "ring-extra":
        status["ring"]["extra"] = 1
    elif mutation == "device-state":
        status["buses"]["rs485a"]["devices"]["pm"]["state"] = "asleep"
    elif mutation == "mqtt-missing":
        status["mqtt"].pop("puback")
    elif mutation == "negative":
        status["minutes"] = -1
    assert errors("station-status.schema.json", status) is not None


# ---------------------------------------------------------------- commands and acks

COMMANDS: list[dict[str, Any]] = [
    {"cmd": "zero", "channel": "no2"},
    {"cmd": "zero", "channel": "no2", "value": 3.5},
    {"cmd": "span", "channel": "no2", "reference": 400.0},
    {"cmd": "span", "channel": "no2", "reference": 400.0, "measured": 396.5},
    {"cmd": "set", "channel": "pm25", "zero": 1.5, "gain": 1.02},
    {"cmd": "reset", "channel": "pm25"},
    {"cmd": "calibration", "channel": "no2", "on": True},
    {"cmd": "calibration", "channel": "no2", "on": False},
    {"cmd": "maintenance", "on": True},
    {"cmd": "maintenance", "on": False},
]


def _command(n: int, fields: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {"station": "yb-town-01", "nonce": f"n{n:04d}", "exp": TS + 300, **fields, **over}


def test_commands_validate_and_real_acks_validate(station: Station) -> None:
    cmd_v = validator("command.schema.json")
    ack_v = validator("ack.schema.json")
    # samples first, so that zero/span without a value have a latest raw reading
    for k in range(5):
        station.sample(0, 30.0 + k, "N")
        station.sample(2, 20.0, "N")
    for n, fields in enumerate(COMMANDS):
        cmd = _command(n, fields)
        assert schema_error(cmd_v, cmd) is None, cmd
        ack = station.handle_command(sign.signed_payload(KEY, json.dumps(cmd).encode()))
        assert schema_error(ack_v, ack) is None, ack
        assert ack["ok"] is True, ack


def test_refusal_acks_validate(station: Station) -> None:
    ack_v = validator("ack.schema.json")
    good = json.dumps(_command(1, COMMANDS[-1])).encode()
    cases = {
        "unsigned": b"{}",
        "bad_signature": good + b"\n" + b"0" * 64,
        "malformed": sign.signed_payload(KEY, b'{"cmd": 1}'),
        "wrong_station": sign.signed_payload(
            KEY, json.dumps(_command(2, COMMANDS[-1], station="yb-other")).encode()
        ),
        "expired": sign.signed_payload(
            KEY, json.dumps(_command(3, COMMANDS[-1], exp=TS - 1)).encode()
        ),
        "invalid": sign.signed_payload(
            KEY, json.dumps(_command(4, {"cmd": "reset", "channel": "co"})).encode()
        ),
    }
    for reason, payload in cases.items():
        ack = station.handle_command(payload)
        assert ack["ok"] is False and ack["reason"] == reason, ack
        assert schema_error(ack_v, ack) is None, ack
    station.handle_command(sign.signed_payload(KEY, good))
    replay = station.handle_command(sign.signed_payload(KEY, good))
    assert replay["reason"] == "replayed" and schema_error(ack_v, replay) is None


@pytest.mark.parametrize(
    "cmd",
    [
        _command(1, {"cmd": "reboot"}),
        _command(1, {"cmd": "zero"}),
        _command(1, {"cmd": "span", "channel": "no2"}),
        _command(1, {"cmd": "maintenance", "on": "yes"}),
        _command(1, {"cmd": "maintenance", "on": True, "channel": "no2"}),
        _command(1, {"cmd": "reset", "channel": "no2"}, nonce=""),
        _command(1, {"cmd": "reset", "channel": "no2"}, nonce="n" * 65),
        _command(1, {"cmd": "reset", "channel": "no2"}, exp=float(TS)),
        {"nonce": "n1", "exp": TS, "cmd": "reset", "channel": "no2"},
    ],
    ids=[
        "unknown-cmd",
        "zero-without-channel",
        "span-without-reference",
        "on-not-bool",
        "field-of-another-cmd",
        "empty-nonce",
        "long-nonce",
        "float-exp",
        "no-station",
    ],
)
def test_the_command_schema_is_strict(cmd: dict[str, Any]) -> None:
    assert errors("command.schema.json", cmd) is not None


def test_firmware_accepts_what_the_command_schema_accepts() -> None:
    nonces = sign.NonceCache(64)
    for n, fields in enumerate(COMMANDS):
        payload = sign.signed_payload(KEY, json.dumps(_command(n, fields)).encode())
        ok, reason, _ = sign.verify_command(KEY, payload, TS, nonces, "yb-town-01")
        assert ok, reason
