"""Issue 7 item 3 on the MicroPython unix port: CPU per poll, heap growth and peak heap.

Run from the repository root (bench/firmware.py does, and takes the medians)::

    micropython -X heapsize=256K bench/mp/firmware_bench.py ROOT POLLS RUNS CYCLES

prints one JSON object on its last line. ``ROOT`` is an empty folder for the station's
ring, audit log and calibration state.

What runs is the station's own code: a real ``firmware.station.Station`` built from a
validated config (the HIL station: a particulate monitor and a NOx analyser on one
RS-485 bus, five channels), with a fake ``machine`` whose UART is :class:`InstantPort`.
The poll is what ``firmware.bus.Bus.run`` does for one slot, minus the schedule and the
event loop: ``_begin`` (encode the request, CRC), ``master.poll()`` until the answer is
parsed (CRC, frame checks, registers), ``_end`` (into the profile image), ``_finish``
(``drivers.decoder.decode``, counters, then ``_hand``: ``Station.sample`` calibrates,
applies the mode flags and adds to the minute accumulator).

``InstantPort`` has the whole answer waiting the moment the request is written (no wire,
no latency; a canned, CRC-valid frame per address and function code), and the serial
clock never sleeps, so the loop measures CPU only. Its own cost (a Python loop copying
the answer into the master's buffer, where a board's UART driver copies in C) stays in
the figure: it errs high, and is reported alone as ``port_us``.

This MicroPython subset script is not type-annotated (it runs on the device's interpreter).
"""

import sys

# argv[5], when given, is a folder of the firmware compiled with mpy-cross (as it is
# deployed): it goes first, so the modules load as bytecode without the compiler.
sys.path.insert(0, ".")
if len(sys.argv) > 5:
    sys.path.insert(0, sys.argv[5])

import gc
import json
import struct
import time

from drivers.decoder import decode
from drivers.modbus.crc import append_crc
from drivers.modbus.rtu import OK
from firmware import config as _config
from firmware import record, sign
from firmware.bus import Bus
from firmware.clock import ticks_add, ticks_diff
from firmware.station import FW_VERSION, Station

T0 = 1700000040  # a minute start (UTC s)
KEY = b"bench-station-key-0123456789abcd"
MINUTE_CYCLES = 12  # polls of every device per minute at poll_s = 5


class NullClock:
    """Station and serial clock that never moves and never sleeps (CPU only)."""

    synced = True
    ticks_add = staticmethod(ticks_add)
    ticks_diff = staticmethod(ticks_diff)

    def __init__(self, epoch):
        self.epoch = epoch

    def now(self):
        return self.epoch

    def ticks_ms(self):
        return 0

    def sleep_ms(self, ms):
        return None

    def sleep_us(self, us):
        return None


class InstantPort:
    """A UART whose answer is complete the moment the request is written."""

    def __init__(self):
        self._answers = {}  # address * 256 + function -> CRC-valid response frame
        self._cur = b""
        self._n = 0
        self._pos = 0
        self.writes = 0

    def answer(self, address, function, registers):
        frame = bytearray(5 + 2 * len(registers))
        frame[0] = address
        frame[1] = function
        frame[2] = 2 * len(registers)
        for i in range(len(registers)):
            frame[3 + 2 * i] = registers[i] >> 8
            frame[4 + 2 * i] = registers[i] & 0xFF
        append_crc(frame, 3 + 2 * len(registers))
        self._answers[address * 256 + function] = frame
        return len(frame)

    def write(self, buf):
        self.writes += 1
        self._cur = self._answers[buf[0] * 256 + buf[1]]
        self._n = len(self._cur)
        self._pos = 0
        return len(buf)

    def any(self):
        return self._n - self._pos

    def readinto(self, buf):
        n = self._n - self._pos
        if n <= 0:
            return None
        if n > len(buf):
            n = len(buf)
        cur = self._cur
        p = self._pos
        for i in range(n):
            buf[i] = cur[p + i]
        self._pos = p + n
        return n


class _Pin:
    OUT = 1
    IN = 0

    def __init__(self, pin_id, mode=-1, value=None, **kw):
        self._v = value

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = v
        return None


class _WDT:
    def __init__(self, id=0, timeout=5000):
        self.feeds = 0

    def feed(self):
        self.feeds += 1


class FakeMachine:
    """What ``Station`` takes from ``machine``: UART, Pin, WDT."""

    Pin = _Pin
    WDT = _WDT

    def __init__(self):
        self.ports = []

    def UART(self, uart_id, **kw):  # the name machine.UART has
        port = InstantPort()
        self.ports.append(port)
        return port


def station_config():
    # The HIL station of hil_tests/test_station.py: PM and NOx analyser, 5 s polls.
    return {
        "schema": 1,
        "station": "bench-01",
        "buses": [
            {"name": "rs485a", "uart": 1, "baudrate": 9600, "bits": 8, "parity": None, "stop": 1}
        ],
        "devices": [
            {
                "name": "pm",
                "bus": "rs485a",
                "profile": "particulate",
                "address": 1,
                "poll_s": 5,
                "fail_limit": 3,
                "backoff_s": 60,
            },
            {
                "name": "nox",
                "bus": "rs485a",
                "profile": "nox-analyser",
                "address": 2,
                "poll_s": 5,
                "fail_limit": 3,
                "backoff_s": 60,
            },
        ],
        "channels": [
            {"name": "pm25", "device": "pm", "source": "pm25"},
            {"name": "pm10", "device": "pm", "source": "pm10"},
            {"name": "no", "device": "nox", "source": "no"},
            {"name": "no2", "device": "nox", "source": "no2"},
            {"name": "nox", "device": "nox", "source": "nox"},
        ],
        "uplink": {
            "host": "127.0.0.1",
            "port": 1883,
            "keepalive_s": 30,
            "topic_prefix": "lantian/v1",
        },
        "validity_fraction": 0.75,
        "store": {"dir": "ring", "slot_size": 1024, "segments": 16, "slots_per_segment": 16},
        "time": {"ntp_host": None, "utc_offset_h": 8},
        "watchdog": {"timeout_ms": 8000},
    }


def _f32_words(x):
    b = struct.pack(">f", x)
    return [(b[0] << 8) | b[1], (b[2] << 8) | b[3]]


def _registers(profile_name):
    if profile_name == "particulate":
        return [35, 80]  # pm25, pm10 in ug/m3
    # nox-analyser: NO, NO2, NOx ppb as float32 ABCD, then the status register
    return _f32_words(12.5) + _f32_words(20.0) + _f32_words(39.1) + [0]


def poll(bus, dev):
    """One poll slot of ``dev`` as ``Bus.run`` makes it, without the schedule."""
    master = bus.master
    status = OK
    for k in range(len(dev.profile.reads)):
        status = bus._begin(dev, k)
        if status != OK:
            break
        while not master.poll():
            pass
        status = bus._end(dev, k)
        if status != OK:
            break
    bus._finish(dev, status, 0)


def transaction(bus, dev):
    master = bus.master
    for k in range(len(dev.profile.reads)):
        bus._begin(dev, k)
        while not master.poll():
            pass
        bus._end(dev, k)


def timed_us(fn, a, b, n):
    gc.collect()
    t0 = time.ticks_us()
    for _ in range(n):
        fn(a, b)
    return time.ticks_diff(time.ticks_us(), t0) / n


def port_only(port, request):
    buf = bytearray(256)
    port.write(request)
    while port.any():
        port.readinto(buf)


def cycle(bus, devices, station, k, clock):
    for d in devices:
        poll(bus, d)
    if k % MINUTE_CYCLES == MINUTE_CYCLES - 1:
        station.close_minute(clock.epoch)
        clock.epoch += 60


def main(argv):
    root = argv[1]
    n_polls = int(argv[2])
    runs = int(argv[3])
    n_cycles = int(argv[4])
    gc.collect()
    modules_bytes = gc.mem_alloc()  # the imported modules (bytecode, tables)
    clock = NullClock(T0)
    machine = FakeMachine()
    cfg = _config.validate(station_config())
    station = Station(cfg, KEY, clock, machine, root=root)
    devices = station.buses[0].devices
    port = InstantPort()
    out = {"devices": {}}
    for d in devices:
        fn = d.profile.reads[0][0]
        resp_len = port.answer(d.address, fn, _registers(d.profile.name))
        out["devices"][d.profile.name] = {
            "reads": [list(r) for r in d.profile.reads],
            "channels": d.profile.channel_count,
            "request_len": 8,
            "response_len": resp_len,
        }
    # The bench bus: the station's devices, an instant port, a serial clock that never
    # sleeps; the station itself is the sink (Station.sample).
    bus = Bus("bench", port, 9600, devices, station, clock, serial_clock=clock)
    for d in devices:
        for _ in range(20):
            poll(bus, d)  # warm: first-call allocations, interned names

    for d in devices:
        o = out["devices"][d.profile.name]
        request = bytearray(8)
        request[0] = d.address
        request[1] = d.profile.reads[0][0]
        o["cpu_us"] = [timed_us(poll, bus, d, n_polls) for _ in range(runs)]
        o["transaction_us"] = [timed_us(transaction, bus, d, n_polls) for _ in range(runs)]
        o["decode_us"] = [_timed_decode(d, n_polls) for _ in range(runs)]
        o["hand_us"] = [timed_us(_hand, bus, d, n_polls) for _ in range(runs)]
        o["port_us"] = [timed_us(port_only, port, request, n_polls) for _ in range(runs)]
        o["ok"] = d.ok
        o["state"] = d.state
        # allocation per poll with the collector off (garbage made, not kept)
        gc.collect()
        gc.disable()
        a = gc.mem_alloc()
        for _ in range(100):
            poll(bus, d)
        o["alloc_bytes_per_poll"] = (gc.mem_alloc() - a) / 100
        gc.enable()

    # Heap growth: heap in use after gc.collect() before and after n_cycles poll cycles
    # (every device once per cycle, a minute record closed, signed and stored every 12),
    # after a warm-up of 2 simulated minutes; `runs` windows one after the other.
    k = 0
    for _ in range(2 * MINUTE_CYCLES):
        cycle(bus, devices, station, k, clock)
        k += 1
    growth = []
    for _ in range(runs):
        gc.collect()
        a = gc.mem_alloc()
        for _ in range(n_cycles):
            cycle(bus, devices, station, k, clock)
            k += 1
        gc.collect()
        growth.append((gc.mem_alloc() - a) / n_cycles)

    # Peak heap: from the live heap after gc.collect(), the collector off, the heaviest
    # steps of the station's loop: (a) close a minute, build its record, sign it, store
    # it; (b) build the status dict, its JSON and signature. The peak of a step is
    # gc.mem_alloc() at its end (with the collector off the heap in use only grows).
    peaks = []
    live = []
    minute_step = []
    status_step = []
    for _ in range(runs):
        for _ in range(MINUTE_CYCLES):  # a full minute of samples to close
            for d in devices:
                poll(bus, d)
        gc.collect()
        base = gc.mem_alloc()
        gc.disable()
        station.close_minute(clock.epoch)
        clock.epoch += 60
        after_minute = gc.mem_alloc()
        gc.enable()
        gc.collect()
        base2 = gc.mem_alloc()
        gc.disable()
        body = json.dumps(station.status()).encode()
        payload = sign.signed_payload(KEY, body)
        after_status = gc.mem_alloc()
        gc.enable()
        live.append(base)
        minute_step.append(after_minute - base)
        status_step.append(after_status - base2)
        peaks.append(max(after_minute, after_status))
        del body, payload
    # Where the minute step's allocation goes: the same calls as Station.close_minute,
    # one by one, the collector off (bytes allocated by each; garbage, not kept).
    for _ in range(MINUTE_CYCLES):
        for d in devices:
            poll(bus, d)
    gc.collect()
    gc.disable()
    m0 = gc.mem_alloc()
    closed = station.acc.close(clock.epoch)
    m1 = gc.mem_alloc()
    body = record.minute_body(
        station.station_id,
        station.ring.next_seq,
        closed,
        station.channel_names,
        station.units,
        clock.synced,
        FW_VERSION,
        station.calibration.version,
    )
    m2 = gc.mem_alloc()
    payload = record.signed_minute(KEY, body)
    m3 = gc.mem_alloc()
    station.ring.append(payload)
    m4 = gc.mem_alloc()
    gc.enable()
    clock.epoch += 60
    minute_parts = {
        "accumulator_close": m1 - m0,
        "record_body": m2 - m1,
        "hmac": m3 - m2,
        "ring_append": m4 - m3,
        "body_bytes": len(body),
    }
    del body, payload, closed
    gc.collect()
    out["heap"] = {
        "minute_step_parts": minute_parts,
        "growth_bytes_per_cycle": growth,
        "cycles": n_cycles,
        "live_bytes": live,
        "minute_step_bytes": minute_step,
        "status_step_bytes": status_step,
        "peak_bytes": peaks,
        "modules_bytes": modules_bytes,
        "heap_total_bytes": gc.mem_alloc() + gc.mem_free(),
        "minutes_closed": station.minute_closed,
        "ring": station.ring.counters(),
    }
    out["micropython"] = sys.version
    out["implementation"] = [sys.implementation.name, list(sys.implementation.version)]
    out["polls"] = n_polls
    out["runs"] = runs
    sys.stdout.write(json.dumps(out) + "\n")


def _hand(bus, dev):
    bus._hand(dev)


def _timed_decode(dev, n):
    gc.collect()
    profile = dev.profile
    values = dev.values
    flags = dev.flags
    t0 = time.ticks_us()
    for _ in range(n):
        decode(profile, values, flags)
    return time.ticks_diff(time.ticks_us(), t0) / n


if __name__ == "__main__":
    main(sys.argv)
