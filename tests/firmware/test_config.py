"""Station config schema 1: a valid example, and one ConfigError per rule, each naming
its field (firmware/config.py). Shared: runs on CPython and on the real micropython."""

import json

from firmware import config as cfgmod
from firmware.config import ConfigError, DeviceKeyError, safe_mode_status, validate

RUNS_ON_MICROPYTHON = True

EXAMPLE = {
    "schema": 1,
    "station": "yb-town-01",
    "buses": [
        {
            "name": "rs485a",
            "uart": 1,
            "baudrate": 9600,
            "bits": 8,
            "parity": None,
            "stop": 1,
            "tx": 17,
            "rx": 16,
            "de_pin": 4,
        }
    ],
    "devices": [
        {
            "name": "pm",
            "bus": "rs485a",
            "profile": "particulate",
            "address": 1,
            "poll_s": 5,
            "timeout_ms": None,
            "power_pin": None,
            "fail_limit": 3,
            "backoff_s": 60,
        }
    ],
    "channels": [{"name": "pm25", "device": "pm", "source": "pm25"}],
    "uplink": {
        "host": "127.0.0.1",
        "port": 1883,
        "keepalive_s": 60,
        "client_id": None,
        "topic_prefix": "lantian/v1",
        "user": None,
        "password": None,
    },
    "validity_fraction": 0.75,
    "store": {"dir": "ring", "slot_size": 512, "segments": 16, "slots_per_segment": 8},
    "time": {"ntp_host": "pool.ntp.org", "utc_offset_h": 8},
    "watchdog": {"timeout_ms": 8000},
}

DELETE = object()


def example():
    return json.loads(json.dumps(EXAMPLE))  # a deep copy on both interpreters


def two_buses():
    d = example()
    d["buses"].append(
        {
            "name": "rs485b",
            "uart": 2,
            "baudrate": 19200,
            "bits": 8,
            "parity": "E",
            "stop": 1,
            "tx": 25,
            "rx": 26,
            "de_pin": None,
        }
    )
    d["devices"].append(
        {
            "name": "voc",
            "bus": "rs485b",
            "profile": "voc-pid",
            "address": 7,
            "poll_s": 2.5,
            "timeout_ms": 400,
            "power_pin": 27,
            "fail_limit": 5,
            "backoff_s": 0,
        }
    )
    d["channels"].append({"name": "tvoc", "device": "voc", "source": "tvoc"})
    return d


def with_change(path, value, base=None):
    """A config with ``value`` at dotted ``path`` ("buses.0.uart"), or that key deleted."""
    d = example() if base is None else base
    keys = [int(k) if k.isdigit() else k for k in path.split(".")]
    node = d
    for k in keys[:-1]:
        node = node[k]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value
    return d


def check_cases(cases, base=None):
    """Each case ``(path, value, field, words)``: the changed config is refused with
    ``field`` and a problem containing ``words``. Collects every mismatch."""
    wrong = []
    for path, value, field, words in cases:
        d = with_change(path, value, None if base is None else base())
        try:
            validate(d)
            wrong.append("%r=%r accepted" % (path, value))
            continue
        except ConfigError as e:
            if e.field != field or words not in e.problem:
                wrong.append("%r=%r: got %s / %s" % (path, value, e.field, e.problem))
            elif not str(e).startswith("config " + field + ": "):
                wrong.append("%r=%r: message %s" % (path, value, e))
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------------- valid


def test_the_example_is_valid():
    c = validate(example())
    assert c.schema == 1 and c.station == "yb-town-01" and c.source is None
    b = c.bus("rs485a")
    assert (b.uart, b.baudrate, b.bits, b.parity, b.parity_name, b.stop) == (
        1,
        9600,
        8,
        None,
        "N",
        1,
    )
    assert (b.tx, b.rx, b.de_pin) == (17, 16, 4)
    dev = c.device("pm")
    assert dev.bus == "rs485a" and dev.profile_name == "particulate" and dev.address == 1
    assert dev.profile.name == "particulate" and dev.profile.channel_names == ("pm25", "pm10")
    assert dev.timeout_ms == 200  # null: the profile's response_timeout_ms
    assert dev.power_pin is None and dev.fail_limit == 3 and dev.backoff_s == 60
    assert dev.poll_s == 5
    assert [(x.name, x.device, x.source) for x in c.channels] == [("pm25", "pm", "pm25")]
    assert c.uplink.client_id == "yb-town-01"  # null: the station id
    assert (c.uplink.host, c.uplink.port, c.uplink.keepalive_s) == ("127.0.0.1", 1883, 60)
    assert c.uplink.topic_prefix == "lantian/v1" and c.uplink.user is None
    assert c.validity_fraction == 0.75
    s = c.store
    assert (s.dir, s.slot_size, s.segments, s.slots_per_segment) == ("ring", 512, 16, 8)
    assert c.time.ntp_host == "pool.ntp.org" and c.time.utc_offset_h == 8
    assert c.watchdog.timeout_ms == 8000
    assert c.warnings == []
    assert c.devices_on("rs485a") == [dev] and c.channels_of("pm") == c.channels


def test_a_richer_config_is_valid_with_warnings():
    d = two_buses()
    d["channels"].append({"name": "pm10", "device": "pm", "source": "pm10"})
    d["uplink"]["client_id"] = "yb-town-01-a"
    d["uplink"]["user"] = "station"
    d["uplink"]["password"] = "s3cret"
    d["time"]["ntp_host"] = None
    d["time"]["utc_offset_h"] = 5.75
    d["store"]["slots_per_segment"] = 16  # 8 KiB segments: advice, not an error
    d["x-deployer"] = {"by": "tool"}
    d["notes"] = "free text"
    for k in ("parity", "tx", "rx", "de_pin"):
        del d["buses"][0][k]  # nullable keys may be left out
    c = validate(d)
    b = c.bus("rs485b")
    assert (b.parity, b.parity_name, b.de_pin) == (0, "E", None)
    assert c.bus("rs485a").tx is None
    assert c.device("voc").timeout_ms == 400 and c.device("voc").poll_s == 2.5
    assert c.uplink.client_id == "yb-town-01-a" and c.uplink.password == "s3cret"
    assert c.time.ntp_host is None and c.time.utc_offset_h == 5.75
    assert len(c.warnings) == 2, c.warnings
    assert "profile voc-pid ships as 9600 8N1" in c.warnings[0]  # bus runs 19200 8E1
    assert "erase block" in c.warnings[1]


def test_sections_also_read_as_written():
    d = example()
    del d["devices"][0]["power_pin"]
    c = validate(d)
    dev = c.device("pm")
    assert dev["profile"] == "particulate" and dev["poll_s"] == 5
    assert dev["timeout_ms"] is None and dev.timeout_ms == 200  # as written / resolved
    assert dev["power_pin"] is None and "power_pin" in dev  # omitted nullable: null
    assert dev.get("nope", 7) == 7 and "nope" not in dev
    try:
        dev["nope"]
        raise AssertionError("unknown key read")
    except KeyError:
        pass
    assert c.uplink["client_id"] is None and c.uplink.client_id == "yb-town-01"
    assert c.bus("rs485a")["parity"] is None and c.store["slot_size"] == 512
    assert c.time.get("ntp_host") == "pool.ntp.org" and c.watchdog["timeout_ms"] == 8000
    assert c.channels[0]["source"] == "pm25"


def test_unused_bus_and_device_are_warnings():
    d = two_buses()
    d["channels"].pop()
    d["devices"].pop()
    c = validate(d)
    assert c.warnings == ["bus rs485b: no device on it"]
    d = example()
    d["devices"].append(dict(d["devices"][0], name="spare", address=2))
    assert validate(d).warnings == ["device spare: no channel publishes from it"]


# --------------------------------------------------------------------- errors


def test_top_level_errors():
    check_cases(
        [
            ("schema", 2, "schema", "version 2 is not supported"),
            ("schema", "1", "schema", "must be an integer"),
            ("schema", DELETE, "schema", "missing"),
            ("stations", "typo", "stations", "unknown key"),
            ("station", "YB-Town", "station", "use only a-z"),
            ("station", "yb town", "station", "use only a-z"),
            ("station", "", "station", "must not be empty"),
            ("station", "s" * 33, "station", "at most 32"),
            ("station", 7, "station", "must be a string"),
            ("buses", [], "buses", "must not be empty"),
            ("buses", {}, "buses", "must be a list"),
            ("devices", [], "devices", "must not be empty"),
            ("channels", None, "channels", "must be a list"),
            ("validity_fraction", 0, "validity_fraction", "out of range"),
            ("validity_fraction", 1.01, "validity_fraction", "out of range"),
            ("validity_fraction", "0.75", "validity_fraction", "must be a number"),
            ("validity_fraction", True, "validity_fraction", "must be a number"),
            ("uplink", None, "uplink", "must be a JSON object"),
            ("store", [], "store", "must be a JSON object"),
        ]
    )
    try:
        validate([1, 2])
        raise AssertionError("a list accepted as a config")
    except ConfigError as e:
        assert e.field == "config"
    # the largest valid fraction
    assert validate(with_change("validity_fraction", 1)).validity_fraction == 1


def test_bus_errors():
    check_cases(
        [
            ("buses.0", "rs485a", "buses[0]", "must be a JSON object"),
            ("buses.0.name", "RS485", "buses[0].name", "use only a-z"),
            ("buses.0.uart", 3, "buses[0].uart", "out of range 0..2"),
            ("buses.0.uart", True, "buses[0].uart", "must be an integer"),
            ("buses.0.baudrate", 9601, "buses[0].baudrate", "not a standard rate"),
            ("buses.0.baudrate", 9600.0, "buses[0].baudrate", "must be an integer"),
            ("buses.0.bits", 7, "buses[0].bits", "must be 8"),
            ("buses.0.bits", DELETE, "buses[0].bits", "missing"),
            ("buses.0.parity", "even", "buses[0].parity", "must be null"),
            ("buses.0.parity", 0, "buses[0].parity", "must be null"),
            ("buses.0.stop", 3, "buses[0].stop", "out of range 1..2"),
            ("buses.0.tx", 49, "buses[0].tx", "out of range 0..48"),
            ("buses.0.rx", -1, "buses[0].rx", "out of range"),
            ("buses.0.rx", 17, "buses[0].rx", "GPIO 17 is already used by buses[0].tx"),
            ("buses.0.de_pin", 16, "buses[0].de_pin", "already used by buses[0].rx"),
            ("buses.0.flow", 0, "buses[0].flow", "unknown key"),
        ]
    )
    check_cases(
        [
            ("buses.1.name", "rs485a", "buses[1].name", "already the name of another bus"),
            ("buses.1.uart", 1, "buses[1].uart", "UART 1 already carries bus 'rs485a'"),
            ("buses.1.tx", 4, "buses[1].tx", "already used by buses[0].de_pin"),
        ],
        two_buses,
    )
    d = two_buses()
    d["buses"].append(dict(d["buses"][1], name="c", uart=0, tx=None, rx=None))
    d["buses"].append(dict(d["buses"][1], name="d", uart=0, tx=None, rx=None))
    try:
        validate(d)
        raise AssertionError("four buses accepted")
    except ConfigError as e:
        assert e.field == "buses" and "at most 3" in e.problem


def test_device_errors():
    check_cases(
        [
            ("devices.0.name", "p m", "devices[0].name", "use only a-z"),
            ("devices.0.bus", "rs485b", "devices[0].bus", "'rs485b' is not a bus (buses: rs485a)"),
            ("devices.0.profile", "no-such-sensor", "devices[0].profile", "cannot be used"),
            ("devices.0.profile", "Bad/Name", "devices[0].profile", "cannot be used"),
            ("devices.0.profile", None, "devices[0].profile", "must be a string"),
            ("devices.0.address", 0, "devices[0].address", "out of range 1..247"),
            ("devices.0.address", 248, "devices[0].address", "out of range 1..247"),
            ("devices.0.poll_s", 0, "devices[0].poll_s", "out of range (0..3600]"),
            ("devices.0.poll_s", -1, "devices[0].poll_s", "out of range"),
            ("devices.0.poll_s", None, "devices[0].poll_s", "must be a number"),
            ("devices.0.timeout_ms", 0, "devices[0].timeout_ms", "out of range 1..10000"),
            ("devices.0.power_pin", 17, "devices[0].power_pin", "already used by buses[0].tx"),
            ("devices.0.fail_limit", 0, "devices[0].fail_limit", "out of range"),
            ("devices.0.backoff_s", -5, "devices[0].backoff_s", "out of range"),
            ("devices.0.backoff_s", DELETE, "devices[0].backoff_s", "missing"),
            ("devices.0.slave", 1, "devices[0].slave", "unknown key"),
        ]
    )
    check_cases(
        [("devices.1.name", "pm", "devices[1].name", "already the name of another device")],
        two_buses,
    )
    d = example()
    d["devices"].append(dict(d["devices"][0], name="pm2"))
    try:
        validate(d)
        raise AssertionError("two devices at one address accepted")
    except ConfigError as e:
        assert e.field == "devices[1].address"
        assert e.problem == "address 1 on bus 'rs485a' is already device 'pm'"
    d = two_buses()
    d["devices"][1]["address"] = 1  # the same address on another bus is fine
    d["devices"][1]["power_pin"] = 27
    d["devices"].append(dict(d["devices"][1], name="voc2", address=8))  # shared power rail
    assert len(validate(d).devices) == 3


def test_a_profile_error_is_reported_under_the_device():
    try:
        validate(with_change("devices.0.profile", "no-such-sensor"))
        raise AssertionError("unknown profile accepted")
    except ConfigError as e:
        assert "no-such-sensor" in e.problem and "cannot read" in e.problem


def test_channel_errors():
    check_cases(
        [
            ("channels.0.name", "PM2.5", "channels[0].name", "use only a-z"),
            (
                "channels.0.device",
                "voc",
                "channels[0].device",
                "'voc' is not a device (devices: pm)",
            ),
            (
                "channels.0.source",
                "pm1",
                "channels[0].source",
                "profile 'particulate' of device 'pm' has no channel 'pm1' (it has: pm25, pm10)",
            ),
            ("channels.0.unit", "ug/m3", "channels[0].unit", "unknown key"),
            ("channels.0.source", DELETE, "channels[0].source", "missing"),
        ]
    )
    d = example()
    d["channels"].append({"name": "pm25", "device": "pm", "source": "pm10"})
    try:
        validate(d)
        raise AssertionError("duplicate channel name accepted")
    except ConfigError as e:
        assert e.field == "channels[1].name" and "another channel" in e.problem
    d = example()
    d["channels"].append({"name": "pm25b", "device": "pm", "source": "pm25"})
    try:
        validate(d)
        raise AssertionError("one source published twice accepted")
    except ConfigError as e:
        assert e.field == "channels[1].source" and e.problem == "pm.pm25 is already channel 'pm25'"


def test_uplink_errors():
    check_cases(
        [
            ("uplink.host", "", "uplink.host", "must not be empty"),
            ("uplink.host", "broker .local", "uplink.host", "contains a space"),
            ("uplink.port", 0, "uplink.port", "out of range 1..65535"),
            ("uplink.port", 65536, "uplink.port", "out of range"),
            ("uplink.port", "1883", "uplink.port", "must be an integer"),
            ("uplink.keepalive_s", 0, "uplink.keepalive_s", "out of range 1..65535"),
            ("uplink.client_id", "", "uplink.client_id", "must not be empty"),
            ("uplink.client_id", "c" * 65, "uplink.client_id", "at most 64"),
            ("uplink.topic_prefix", "lantian/#", "uplink.topic_prefix", "wildcard"),
            ("uplink.topic_prefix", "lantian/+/v1", "uplink.topic_prefix", "wildcard"),
            ("uplink.topic_prefix", "/lantian", "uplink.topic_prefix", "empty topic level"),
            ("uplink.topic_prefix", "lantian//v1", "uplink.topic_prefix", "empty topic level"),
            ("uplink.topic_prefix", "lantian\x00", "uplink.topic_prefix", "control character"),
            ("uplink.password", "s3cret", "uplink.password", "without uplink.user"),
            ("uplink.user", 5, "uplink.user", "must be a string"),
            ("uplink.tls", True, "uplink.tls", "unknown key"),
            ("uplink.port", DELETE, "uplink.port", "missing"),
        ]
    )


def test_store_time_watchdog_errors():
    check_cases(
        [
            ("store.dir", "", "store.dir", "must not be empty"),
            ("store.slot_size", 63, "store.slot_size", "out of range 64..4096"),
            ("store.slot_size", 8192, "store.slot_size", "out of range"),
            ("store.segments", 0, "store.segments", "out of range 1..1024"),
            ("store.slots_per_segment", 0, "store.slots_per_segment", "out of range"),
            ("store.cursor_every", 1, "store.cursor_every", "unknown key"),
            ("time.utc_offset_h", 15, "time.utc_offset_h", "out of range"),
            ("time.utc_offset_h", 8.1, "time.utc_offset_h", "quarter hours"),
            ("time.utc_offset_h", DELETE, "time.utc_offset_h", "missing"),
            ("time.ntp_host", "", "time.ntp_host", "must not be empty"),
            ("watchdog.timeout_ms", 8001, "watchdog.timeout_ms", "out of range 1000..8000"),
            ("watchdog.timeout_ms", 999, "watchdog.timeout_ms", "out of range"),
            ("watchdog.timeout_ms", 8000.0, "watchdog.timeout_ms", "must be an integer"),
            ("watchdog", {}, "watchdog.timeout_ms", "missing"),
        ]
    )
    assert validate(with_change("time.utc_offset_h", -3.5)).time.utc_offset_h == -3.5


# ---------------------------------------------------------------- safe mode


def test_safe_mode_status_reports_the_error():
    try:
        validate(with_change("devices.0.bus", "rs485z"))
        raise AssertionError("accepted")
    except ConfigError as e:
        err = e
    s = safe_mode_status(err, "yb-town-01")
    assert s["online"] is True and s["mode"] == "safe" and s["station"] == "yb-town-01"
    assert s["schema"] == 1
    assert s["error"]["kind"] == "config"
    assert s["error"]["field"] == "devices[0].bus"
    assert "rs485z" in s["error"]["problem"]
    assert "copies" not in s["error"]
    json.dumps(s)  # publishable as is

    err.reasons = ["config.json invalid (x)", "config.json.bak missing"]
    assert safe_mode_status(err)["error"]["copies"] == err.reasons
    assert safe_mode_status(err)["station"] is None

    s = safe_mode_status(DeviceKeyError("key.bin", "3 bytes, at least 16 needed"))
    assert s["error"] == {"kind": "key", "field": "key", "problem": "3 bytes, at least 16 needed"}

    s = safe_mode_status(OSError(28, "x" * 500))
    assert s["error"]["kind"] == "internal" and s["error"]["field"] == "OSError"
    assert len(s["error"]["problem"]) == cfgmod.PROBLEM_MAX
