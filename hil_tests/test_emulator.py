"""The emulated sensors, checked with real frames over real ptys (no mocks).

The client here is deliberately independent of the emulator: pyserial on the pty path,
hand-built frames, its own bitwise CRC and its own struct decoding.
"""

from __future__ import annotations

import math
import os
import select
import signal
import struct
import subprocess
import sys
import time

import pytest
import serial

from hil_tests import signals
from hil_tests.conftest import EPOCH
from hil_tests.emulator import EmulatedBus, EmulatedSensor, load_profile, profile_names
from hil_tests.ptyport import PtyPort, open_pty

REFERENCE = ["particulate", "particulate-x10", "voc-pid", "nox-analyser", "nox-analyser-cdab"]


# -- an independent minimal Modbus RTU client --------------------------------------------


def crc(data: bytes) -> bytes:
    c = 0xFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0xA001 if c & 1 else c >> 1
    return bytes((c & 0xFF, c >> 8))


def frame(*body: int) -> bytes:
    return bytes(body) + crc(bytes(body))


def read_request(address: int, function: int, start: int, count: int) -> bytes:
    return frame(address, function, start >> 8, start & 0xFF, count >> 8, count & 0xFF)


def good(f: bytes) -> bool:
    return len(f) >= 4 and crc(f[:-2]) == f[-2:]


class Client:
    def __init__(self, path: str) -> None:
        self.ser = serial.Serial(path, 9600, timeout=0)

    def close(self) -> None:
        self.ser.close()

    def send(self, data: bytes) -> None:
        self.ser.reset_input_buffer()
        self.ser.write(data)

    def collect(self, timeout: float = 0.5, quiet: float = 0.04, expect: int = 0) -> bytes:
        """Bytes until ``quiet`` s of silence after the first byte, ``expect`` bytes,
        or ``timeout``."""
        buf = b""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            now = time.monotonic()
            if expect and len(buf) >= expect:
                return buf
            if now >= deadline or (last is not None and now - last >= quiet):
                return buf
            wait = deadline - now if last is None else min(deadline - now, quiet)
            ready, _, _ = select.select([self.ser.fileno()], [], [], wait)
            if ready:
                chunk = self.ser.read(4096)
                if chunk:
                    buf += chunk
                    last = time.monotonic()

    def transact(self, data: bytes, timeout: float = 0.5, expect: int = 0) -> bytes:
        self.send(data)
        return self.collect(timeout, expect=expect)

    def read(self, address, function, start, count, timeout=0.5, expect=0) -> bytes:
        return self.transact(read_request(address, function, start, count), timeout, expect)

    def registers(self, address, function, start, count) -> list[int]:
        r = self.read(address, function, start, count, expect=5 + 2 * count)
        assert good(r), r.hex()
        assert r[:3] == bytes((address, function, 2 * count)), r.hex()
        return [int.from_bytes(r[3 + 2 * i : 5 + 2 * i], "big") for i in range(count)]


@pytest.fixture
def client_for():
    made: list[Client] = []

    def make(path: str) -> Client:
        c = Client(path)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


def expected_words(spec: dict, value: float) -> list[int]:
    """The test's own encoding of an engineering value (ABCD/CDAB, scale, offset)."""
    raw = (value - spec.get("offset", 0.0)) / spec.get("scale", 1.0)
    t = spec["type"]
    if t == "float32":
        data = struct.pack(">f", raw)
    else:
        code = {"uint16": ">H", "int16": ">h", "uint32": ">I", "int32": ">i"}[t]
        data = struct.pack(code, round(raw))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if len(words) == 2 and spec.get("word_order", "ABCD") == "CDAB":
        words.reverse()
    return words


# -- codec and port basics --------------------------------------------------------------


def test_crc_golden_vector():
    # Modbus over Serial Line V1.02 §6.2.2 style example: read 1 holding register at 0
    assert frame(0x01, 0x03, 0x00, 0x00, 0x00, 0x01).hex() == "010300000001840a"


def test_reference_profiles_present():
    assert set(REFERENCE) <= set(profile_names())


def test_ptyport_is_raw_and_transparent_for_all_bytes():
    master, slave, _path = open_pty()
    a, b = PtyPort(master), PtyPort(slave)
    try:
        payload = bytes(range(256)) * 4  # includes CR, LF, XON/XOFF, ^C, ^D, DEL
        assert a.readinto(bytearray(8)) is None  # nothing waiting: None, not 0
        assert b.write(payload) == len(payload)
        got = bytearray()
        deadline = time.monotonic() + 2
        while len(got) < len(payload) and time.monotonic() < deadline:
            n = a.any()
            if n:
                buf = bytearray(n)
                assert a.readinto(buf) == n
                got += buf
            else:
                time.sleep(0.001)
        assert bytes(got) == payload
        a.write(b"\r\n\x11\x13")
        time.sleep(0.01)
        assert b.any() == 4
        assert b.read() == b"\r\n\x11\x13"
    finally:
        a.close()
        b.close()


def test_control_bytes_survive_both_ptys(emulator, client_for, sim_clock):
    dev = emulator("particulate", clock=sim_clock)
    dev.set_value("pm25", 0x0D11)  # CR, XON
    dev.set_value("pm10", 0x130A)  # XOFF, LF
    c = client_for(dev.port_path)
    assert c.registers(1, 3, 0, 2) == [0x0D11, 0x130A]
    # request bytes with CR/XON/XOFF in them reach pymodbus intact: exception 02 back
    assert c.read(1, 3, 0x0D13, 0x11) == frame(1, 0x83, 2)


# -- registers hold the encoded signal values -------------------------------------------


@pytest.mark.parametrize("name", REFERENCE)
def test_registers_hold_encoded_signals(name, emulator, client_for, sim_clock):
    dev = emulator(name, clock=sim_clock, seed=7)
    c = client_for(dev.port_path)
    for t in (EPOCH, EPOCH + 3 * 3600 + 17, EPOCH + 11 * 3600 + 901):
        sim_clock.set(t)
        for spec in load_profile(name)["channels"]:
            words = 2 if spec["type"] in ("uint32", "int32", "float32") else 1
            got = c.registers(1, spec["function"], spec["address"], words)
            value = dev.signal_value(spec["name"], t)
            assert got == expected_words(spec, value), (spec["name"], t)
            held = dev.held_value(spec["name"], t)
            assert held == pytest.approx(value, rel=1e-6, abs=spec.get("scale", 1.0) / 2)


def test_word_orders_are_swapped_images(emulator, client_for, sim_clock):
    bus = EmulatedBus()
    abcd = emulator("nox-analyser", 1, clock=sim_clock, seed=3, bus=bus)
    cdab = emulator("nox-analyser-cdab", 2, clock=sim_clock, seed=3, bus=bus)
    c = client_for(abcd.port_path)
    a = c.registers(1, 4, 0, 6)
    b = c.registers(2, 4, 0, 6)
    assert a == [b[1], b[0], b[3], b[2], b[5], b[4]]
    no, no2, nox = struct.unpack(">fff", b"".join(w.to_bytes(2, "big") for w in a))
    assert no == pytest.approx(signals.no(EPOCH, 3), rel=1e-6)
    assert no2 == pytest.approx(signals.no2(EPOCH, 3), rel=1e-6)
    assert nox == pytest.approx(no + no2, rel=1e-5)
    assert cdab.counters["answered"] == abcd.counters["answered"] == 1


def test_status_and_info_registers(emulator, client_for, sim_clock):
    bus = EmulatedBus()
    voc = emulator("voc-pid", 1, clock=sim_clock, bus=bus, info_values={"sensor_life": 87})
    nox = emulator("nox-analyser", 2, clock=sim_clock, bus=bus)
    c = client_for(voc.port_path)
    assert c.registers(1, 3, 4, 2) == [87, 0]  # sensor life, status "0" = N
    assert voc.set_status_flag("C") == 1
    assert c.registers(1, 3, 5, 1) == [1]
    assert c.registers(2, 4, 6, 1) == [0]
    assert nox.set_status_flag("C") == 1
    nox.set_status(0b110)
    assert c.registers(2, 4, 6, 1) == [0b110]


def test_values_follow_the_clock(emulator, client_for):
    clock = signals.SimulatedClock(EPOCH, speed=3600.0)  # an hour per second
    dev = emulator("nox-analyser", clock=clock, seed=1)
    c = client_for(dev.port_path)
    first = c.registers(1, 4, 0, 2)
    time.sleep(0.3)
    assert c.registers(1, 4, 0, 2) != first


# -- faults at the byte level -----------------------------------------------------------


@pytest.fixture
def pm(emulator, client_for, sim_clock):
    dev = emulator("particulate", clock=sim_clock, seed=5)
    dev.set_value("pm25", 35)
    dev.set_value("pm10", 61)
    return dev, client_for(dev.port_path)


OK_PM = frame(1, 3, 4, 0, 35, 0, 61)


def test_clean_answer(pm):
    dev, c = pm
    assert c.read(1, 3, 0, 2) == OK_PM
    assert dev.counters == {"seen": 1, "answered": 1, "faulted": 0, "silent": 0}


def test_bad_crc(pm):
    dev, c = pm
    dev.inject("bad_crc", count=1)
    r = c.read(1, 3, 0, 2)
    assert len(r) == len(OK_PM) and r[:-2] == OK_PM[:-2] and not good(r)
    assert c.read(1, 3, 0, 2) == OK_PM  # count=1: only once
    assert dev.fault_counts == {"bad_crc": 1}
    assert dev.counters["faulted"] == 1 and dev.counters["answered"] == 2


def test_truncated_frame(pm):
    dev, c = pm
    dev.inject("truncate", count=1)
    r = c.read(1, 3, 0, 2)
    assert 0 < len(r) < len(OK_PM) and OK_PM.startswith(r)
    dev.inject("truncate", count=1, keep=7)  # CRC cut in half
    assert c.read(1, 3, 0, 2) == OK_PM[:7]


def test_stray_leading_zero(pm):
    dev, c = pm
    dev.inject("stray_byte")
    assert c.read(1, 3, 0, 2) == b"\x00" + OK_PM


def test_wrong_address(pm):
    dev, c = pm
    dev.inject("wrong_address")
    r = c.read(1, 3, 0, 2)
    assert good(r) and r[0] == 2 and r[1:-2] == OK_PM[1:-2]
    dev.clear_faults()
    dev.inject("wrong_address", to=0x11)
    assert c.read(1, 3, 0, 2) == frame(0x11, *OK_PM[1:-2])


@pytest.mark.parametrize("code", [1, 2, 4, 6])
def test_injected_exceptions(pm, code):
    dev, c = pm
    dev.inject("exception", code=code, count=1)
    assert c.read(1, 3, 0, 2) == frame(1, 0x83, code)
    assert c.read(1, 3, 0, 2) == OK_PM


def test_natural_exceptions(pm):
    _dev, c = pm
    assert c.read(1, 4, 0, 2) == frame(1, 0x84, 1)  # FC04: particulate supports FC03 only
    assert c.transact(frame(1, 6, 0, 0, 0, 1)) == frame(1, 0x86, 1)  # no writes
    assert c.read(1, 3, 2, 1) == frame(1, 0x83, 2)  # beyond the map
    assert c.read(1, 3, 1, 2) == frame(1, 0x83, 2)  # straddles the end


def test_no_answer_then_recovers(pm):
    dev, c = pm
    dev.inject("no_answer", count=2)
    assert c.read(1, 3, 0, 2, timeout=0.15) == b""
    assert c.read(1, 3, 0, 2, timeout=0.15) == b""
    assert c.read(1, 3, 0, 2) == OK_PM
    assert dev.counters == {"seen": 3, "answered": 1, "faulted": 2, "silent": 2}


def test_delay_is_at_least_configured(pm):
    dev, c = pm
    dev.inject("delay", ms=150)
    c.send(read_request(1, 3, 0, 2))
    t0 = time.monotonic()
    r = c.collect(timeout=1.0)
    elapsed = time.monotonic() - t0
    assert r == OK_PM
    assert elapsed >= 0.150  # at least the configured delay; upper bounds are not asserted


def test_silent_until_power_cycled(pm):
    dev, c = pm
    dev.inject("hang", count=1)
    for _ in range(3):
        assert c.read(1, 3, 0, 2, timeout=0.1) == b""
    assert dev.hung
    dev.power_cycle()
    assert not dev.hung
    assert c.read(1, 3, 0, 2) == OK_PM
    assert dev.fault_counts == {"hang": 3}


def test_power_off_is_silent(pm):
    dev, c = pm
    dev.power_off()
    assert c.read(1, 3, 0, 2, timeout=0.1) == b""
    dev.power_on()
    assert c.read(1, 3, 0, 2) == OK_PM


def test_warmup_busy_then_ready(emulator, client_for, sim_clock):
    dev = emulator("nox-analyser", clock=sim_clock, warmup="busy")
    c = client_for(dev.port_path)
    assert dev.warmup_s == 60
    assert c.read(1, 4, 0, 2) == frame(1, 0x84, 6)
    sim_clock.advance(59.9)
    assert c.read(1, 4, 0, 2) == frame(1, 0x84, 6)
    sim_clock.advance(0.1)
    assert good(c.read(1, 4, 0, 2))
    dev.power_cycle()  # warm-up starts again
    assert c.read(1, 4, 0, 2) == frame(1, 0x84, 6)


def test_warmup_silent_and_missing(emulator, client_for, sim_clock):
    bus = EmulatedBus()
    pm_dev = emulator("particulate", 1, clock=sim_clock, bus=bus, warmup="silent")
    voc = emulator("voc-pid", 2, clock=sim_clock, bus=bus, warmup="missing")
    pm_x = emulator("particulate-x10", 3, clock=sim_clock, bus=bus, warmup="missing")
    c = client_for(pm_dev.port_path)
    assert c.read(1, 3, 0, 2, timeout=0.1) == b""
    assert c.registers(3, 3, 0, 2) == [0xFFFF, 0xFFFF]  # sentinel: no reading yet
    assert c.registers(2, 3, 5, 1) == [2]  # voc has no sentinel: status says D instead
    sim_clock.advance(120)
    assert good(c.read(1, 3, 0, 2))
    assert c.registers(3, 3, 0, 2) != [0xFFFF, 0xFFFF]
    assert c.registers(2, 3, 5, 1) == [0]
    assert not voc.in_warmup() and not pm_x.in_warmup()


def test_nan_and_sentinel(emulator, client_for, sim_clock):
    bus = EmulatedBus()
    abcd = emulator("nox-analyser", 1, clock=sim_clock, bus=bus)
    cdab = emulator("nox-analyser-cdab", 2, clock=sim_clock, bus=bus)
    pm_dev = emulator("particulate", 3, clock=sim_clock, bus=bus)
    abcd.set_missing("no2")
    cdab.set_missing("no2")
    pm_dev.set_missing("pm10")
    c = client_for(abcd.port_path)
    a = c.registers(1, 4, 2, 2)
    assert math.isnan(struct.unpack(">f", struct.pack(">HH", *a))[0])
    b = c.registers(2, 4, 2, 2)
    assert math.isnan(struct.unpack(">f", struct.pack(">HH", b[1], b[0]))[0])
    assert c.registers(3, 3, 1, 1) == [0xFFFF]
    assert abcd.held_value("no2") is None
    with pytest.raises(ValueError):
        emulator("voc-pid", start=False).set_missing("tvoc")  # profile has no marker
    abcd.set_missing("no2", False)
    assert not math.isnan(struct.unpack(">f", struct.pack(">HH", *c.registers(1, 4, 2, 2)))[0])


def test_stuck_value(emulator, client_for, sim_clock):
    dev = emulator("nox-analyser", clock=sim_clock, seed=2)
    c = client_for(dev.port_path)
    dev.stick("no")
    frozen = c.registers(1, 4, 0, 4)
    sim_clock.advance(2 * 3600)
    now = c.registers(1, 4, 0, 4)
    assert now[:2] == frozen[:2] and now[2:] != frozen[2:]  # no stuck, no2 still moving
    dev.clear_value("no")
    assert c.registers(1, 4, 0, 2) != frozen[:2]


def test_probability_knob_is_seeded(emulator, client_for, sim_clock):
    def pattern(seed: int) -> list[bool]:
        dev = emulator("particulate", clock=sim_clock, seed=seed)
        dev.set_value("pm25", 35)
        dev.set_value("pm10", 61)
        dev.inject("bad_crc", probability=0.25)
        c = client_for(dev.port_path)
        out = [c.read(1, 3, 0, 2, expect=len(OK_PM)) != OK_PM for _ in range(60)]
        assert dev.fault_counts.get("bad_crc", 0) == sum(out)
        assert dev.counters["seen"] == dev.counters["answered"] == 60
        dev.stop()
        return out

    first = pattern(11)
    assert 4 <= sum(first) <= 30
    assert pattern(11) == first
    assert pattern(12) != first


def test_bad_request_crc_is_ignored(pm):
    dev, c = pm
    bad = bytearray(read_request(1, 3, 0, 2))
    bad[-1] ^= 0x55
    assert c.transact(bytes(bad), timeout=0.15) == b""
    assert dev.bus.counters["bad_frames"] == 1 and dev.counters["seen"] == 0
    assert c.read(1, 3, 0, 2) == OK_PM


def test_request_split_across_writes(pm):
    _dev, c = pm
    req = read_request(1, 3, 0, 2)
    c.send(req[:3])
    time.sleep(0.003)
    c.ser.write(req[3:])
    assert c.collect() == OK_PM


# -- several devices on one bus ---------------------------------------------------------


def test_shared_bus_addresses(emulated_bus, emulator, client_for, sim_clock):
    bus = emulated_bus()
    a = emulator("particulate", 1, clock=sim_clock, bus=bus)
    b = emulator("nox-analyser", 7, clock=sim_clock, bus=bus)
    assert a.port_path == b.port_path
    c = client_for(bus.port_path)
    assert len(c.registers(1, 3, 0, 2)) == 2
    assert len(c.registers(7, 4, 0, 6)) == 6
    assert c.read(9, 3, 0, 1, timeout=0.1) == b""  # nobody at 9
    assert bus.counters["other_address"] == 1
    b.power_off()  # a dead neighbour does not slow the other device
    assert c.read(7, 4, 0, 2, timeout=0.1) == b""
    assert len(c.registers(1, 3, 0, 2)) == 2  # answered at once, first try
    with pytest.raises(ValueError):
        EmulatedSensor("particulate", 1, bus=EmulatedBus()).bus.attach(a)


def test_bus_refcount_and_restart(emulator, sim_clock):
    bus = EmulatedBus()
    a = emulator("particulate", 1, clock=sim_clock, bus=bus, start=False)
    b = emulator("particulate", 2, clock=sim_clock, bus=bus, start=False)
    a.start()
    b.start()
    path = bus.port_path
    a.stop()
    assert bus.running and bus.port_path == path
    b.stop()
    assert not bus.running
    a.start()
    assert bus.running
    a.stop()


# -- signals ----------------------------------------------------------------------------


def test_signals_are_pure_functions_of_time_and_seed():
    ts = [EPOCH + k * 977.0 for k in range(50)]
    for fn in (signals.pm25, signals.pm10, signals.no, signals.no2, signals.nox, signals.voc):
        assert [fn(t, 4) for t in ts] == [fn(t, 4) for t in ts]
        assert [fn(t, 4) for t in ts] != [fn(t, 5) for t in ts]
        assert all(fn(t, 4) >= 0 for t in ts)
    assert all(signals.pm10(t, 1) >= signals.pm25(t, 1) for t in ts)
    assert all(signals.nox(t, 1) == signals.no(t, 1) + signals.no2(t, 1) for t in ts)


def _mean_at(fn, hour, seed, days=28):
    day0 = (EPOCH // 86400) * 86400 - 8 * 3600  # a local midnight
    vals = [
        fn(day0 + d * 86400 + hour * 3600 + m * 60, seed)
        for d in range(days)
        for m in range(0, 60, 10)
    ]
    return sum(vals) / len(vals)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diurnal_shapes(seed):
    assert signals.local_hour(EPOCH) == pytest.approx(6 + 13 / 60 + 20 / 3600)
    pm_night, pm_morning, pm_afternoon = (_mean_at(signals.pm25, h, seed) for h in (2, 8, 15))
    assert pm_night > 1.2 * pm_afternoon and pm_morning > 1.2 * pm_afternoon
    no = {h: _mean_at(signals.no, h, seed) for h in (3, 8, 13, 18, 23)}
    assert no[8] > 3 * no[3] and no[18] > 2 * no[13] and no[18] > 3 * no[23]
    no2 = {h: _mean_at(signals.no2, h, seed) for h in (3, 9, 19)}
    assert no2[9] > 1.5 * no2[3] and no2[19] > 1.5 * no2[3]


def test_voc_has_episodes():
    day0 = EPOCH
    vals = sorted(signals.voc(day0 + m * 60, 3) for m in range(3 * 24 * 60))
    median, top = vals[len(vals) // 2], vals[-1]
    assert median < 80 and top > 4 * median
    eps = signals.voc_episodes(day0 + 7200, 3)
    assert all(200 <= p <= 2000 for _, _, p in eps)


def test_simulated_clock():
    clk = signals.SimulatedClock(EPOCH)
    assert clk.now() == EPOCH
    clk.advance(30)
    assert clk.now() == EPOCH + 30
    fast = signals.SimulatedClock(EPOCH, speed=1000.0)
    time.sleep(0.05)
    assert EPOCH + 40 < fast.now() < EPOCH + 1000
    fast.set_speed(0)
    assert fast.now() == fast.now()


# -- the CLI ----------------------------------------------------------------------------


def test_cli_lists_profiles():
    out = subprocess.run(
        [sys.executable, "-m", "hil_tests.emulate", "--list"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for name in REFERENCE:
        assert name in out


def test_cli_serves_until_sigint(client_for):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hil_tests.emulate",
            "--profile",
            "nox-analyser",
            "--pty",
            "--address",
            "5",
            "--seed",
            "2",
            "--speed",
            "60",
            "--fault",
            "stray_byte",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready, "no pty path printed"
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/pts/") and os.path.exists(path)
        c = client_for(path)
        r = c.read(5, 4, 0, 6)
        assert r[0] == 0 and good(r[1:]) and r[1:4] == bytes((5, 4, 12))
        c.close()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
        err = proc.stderr.read()
        assert "'answered': 1" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_pymodbus_client_interoperates(emulator, sim_clock):
    from pymodbus.client import ModbusSerialClient

    dev = emulator("nox-analyser-cdab", 3, clock=sim_clock, seed=8)
    client = ModbusSerialClient(port=dev.port_path, baudrate=9600, timeout=1, retries=0)
    try:
        assert client.connect()
        rr = client.read_input_registers(0, count=6, device_id=3)
        assert not rr.isError()
        no = client.convert_from_registers(
            rr.registers[0:2], client.DATATYPE.FLOAT32, word_order="little"
        )
        assert no == pytest.approx(dev.held_value("no"), rel=1e-7)
        assert client.read_holding_registers(0, count=1, device_id=3).exception_code == 1
    finally:
        client.close()
