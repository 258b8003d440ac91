"""Unit tests of firmware/bus.py that need no event loop, on CPython and MicroPython.

Written in the MicroPython subset (plain asserts, no pytest): pytest runs it on CPython
and tests/test_on_micropython.py runs it again on the real micropython binary. The
scheduling behaviour is tested through whole runs in tests/firmware/test_bus.py.
"""

from drivers.profile import load_profile
from firmware.bus import IDLE_MAX_MS, STATE_WARMUP, Bus, Device
from firmware.clock import ManualClock

RUNS_ON_MICROPYTHON = True


class _Port:
    def write(self, buf):
        return len(buf)

    def readinto(self, buf):
        return None

    def any(self):
        return 0


class _Sink:
    def sample(self, i, value, flag):
        pass


class _Pin:
    def value(self, v=None):
        return None


def _raises(fn, *args, **kw):
    try:
        fn(*args, **kw)
    except ValueError:
        return True
    return False


def _pm():
    return load_profile("particulate")


def test_device_defaults_come_from_the_profile():
    p = _pm()
    d = Device("pm", p, 1, 1000, (0, 1))
    assert d.timeout_ms == p.response_timeout_ms == 200
    assert d.warmup_ms == 120000
    assert d.state == STATE_WARMUP
    assert len(d.values) == len(d.flags) == 2
    assert d.fail_limit == 3 and d.backoff_ms == 60000 and d.power_off_ms == 2000
    assert Device("pm", p, 1, 1000, [0, -1], timeout_ms=50).timeout_ms == 50
    assert Device("pm", p, 1, 1000, (0, 1), timeout_ms=None).timeout_ms == 200


def test_device_rejects_bad_configuration():
    p = _pm()
    assert _raises(Device, "x", p, 0, 1000, (0, 1))  # broadcast address cannot be read
    assert _raises(Device, "x", p, 248, 1000, (0, 1))
    assert _raises(Device, "x", p, 1, 0, (0, 1))
    assert _raises(Device, "x", p, 1, 1000, (0,))  # one index per channel
    assert _raises(Device, "x", p, 1, 1000, (0, -2))
    assert _raises(Device, "x", p, 1, 1000, (0, 1), timeout_ms=0)
    assert _raises(Device, "x", p, 1, 1000, (0, 1), fail_limit=0)
    assert _raises(Device, "x", p, 1, 1000, (0, 1), power_pin=_Pin(), backoff_ms=1000)
    assert not _raises(Device, "x", p, 1, 1000, (0, 1), power_pin=_Pin(), backoff_ms=3000)


def test_bus_rejects_shared_addresses_and_names():
    c = ManualClock()
    a = Device("a", _pm(), 1, 1000, (0, 1))
    b = Device("b", _pm(), 1, 1000, (2, 3))
    a2 = Device("a", _pm(), 2, 1000, (2, 3))
    assert _raises(Bus, "bus", _Port(), 9600, (a, b), _Sink(), c)
    assert _raises(Bus, "bus", _Port(), 9600, (a, a2), _Sink(), c)
    assert _raises(Bus, "bus", _Port(), 9600, (), _Sink(), c)


def test_counters_for_the_status_message():
    c = ManualClock(ticks_start=1234)
    a = Device("a", _pm(), 1, 1000, (0, 1))
    bus = Bus("rs485-1", _Port(), 9600, [a], _Sink(), c)
    assert bus.heartbeat == 1234
    got = bus.counters()
    for key in ("transactions", "ok", "timeouts", "crc_errors", "port_errors", "loops"):
        assert got[key] == 0
    dev = got["devices"]["a"]
    assert dev["state"] == "warmup"
    for key in (
        "polls",
        "ok",
        "timeouts",
        "crc_errors",
        "exceptions",
        "frame_errors",
        "skipped",
        "missed",
        "backoffs",
        "power_cycles",
        "consecutive_failures",
    ):
        assert dev[key] == 0, key
    assert IDLE_MAX_MS <= 1000  # heartbeat resolution the supervisor relies on
