"""Emulated Modbus RTU sensors on ptys, built from the device profiles (spec/devices.md).

Topology of one emulated RS-485 bus::

    product (drivers/firmware)            this module                       pymodbus 3.16.1
    opens ``port_path`` (outer pty)  <->  relay (asyncio)  <-> inner pty <-> ModbusSerialServer
                                          frames, filters, faults           SimDevice per address

Why a relay and not pymodbus's ``trace_packet`` hook (read in server/base.py and
transaction/transaction.py of 3.16.1): ``trace_packet(sending, data)`` is synchronous, so
it cannot delay an answer without blocking the server's loop; returning ``b""`` to
suppress an answer still goes through ``transport.write``; on receive it is handed the
whole cumulative ``recv_buffer`` rather than one frame, and on send it does not say which
device the frame is for. A relay that owns the wire does all byte-level faults the way a
bad bus does them (bit errors in the CRC, a cut frame, a 0x00 glitch byte after the
direction switch, a late answer, silence), counts them per device, and lets several
devices share one bus: it forwards to pymodbus only CRC-valid requests whose address
belongs to a device on the bus. That filter matters because pymodbus's SimCore answers
an unknown device id with exception 04 (``devices[0]`` raises KeyError, caught as a
device failure) and its RTU framer discards the whole buffer on a CRC error.

Register values are not stored ahead of time: the SimDevice ``action`` callback, which
pymodbus awaits on every access after its address check (simulator/simruntime.py),
fills the block from the signals at ``clock.now()``. With a frozen ``SimulatedClock`` a
test knows the exact value served. Addresses in ``SimData`` are 0-based PDU addresses,
identical to the request (unlike the deprecated ``ModbusSequentialDataBlock``, which
adds 1); holding (FC03) and input (FC04) registers are separate blocks, so FC04
address 0 and FC03 address 0 are different registers. Registers outside the profile's
map are INVALID and pymodbus answers exception 02 for them.

Exceptions: 02 for unmapped addresses comes from pymodbus; 01 for a function code the
profile does not use is built by the relay (pymodbus would answer 02, because a register
block cannot be empty); injected exceptions (``inject("exception", code=N)``) and the
warm-up "busy" answer (06) are returned by the ``action``, so pymodbus encodes them.

Encoding is this module's own ``struct`` code (raw = (value - offset) / scale; float32 /
32-bit integers ABCD = high word first, CDAB = low word first); it never imports
drivers.decoder, so tests check the product's decoder against an independent encoder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import struct
import threading
from pathlib import Path
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer
from pymodbus.simulator import DataType, SimData, SimDevice

from hil_tests import signals
from hil_tests.ptyport import open_pty

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
PROFILE_DIR = ROOT / "drivers" / "profiles"

# -- CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF, sent low byte first) -----------


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc16(data: bytes) -> int:
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC_TABLE[(crc ^ b) & 0xFF]
    return crc


def with_crc(body: bytes) -> bytes:
    return bytes(body) + crc16(body).to_bytes(2, "little")


def crc_ok(frame: bytes) -> bool:
    return len(frame) >= 4 and crc16(frame[:-2]) == int.from_bytes(frame[-2:], "little")


def exception_frame(address: int, function: int, code: int) -> bytes:
    return with_crc(bytes((address, function | 0x80, code)))


def request_length(buf: bytes | bytearray) -> int | None:
    """Length of the request frame at the start of ``buf``, None if not yet known."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc in (1, 2, 3, 4, 5, 6, 8):
        return 8
    if fc in (7, 11, 12, 17):
        return 4
    if fc in (15, 16):
        return 9 + buf[6] if len(buf) >= 7 else None
    if fc == 22:
        return 10
    if fc == 23:
        return 13 + buf[10] if len(buf) >= 11 else None
    return None  # unknown: the frame ends at a t3.5 gap


def response_length(buf: bytes | bytearray) -> int | None:
    """Length of the response frame at the start of ``buf``, None if not yet known."""
    if len(buf) < 2:
        return None
    fc = buf[1]
    if fc & 0x80:
        return 5
    if fc in (1, 2, 3, 4, 12, 17, 23):
        return 5 + buf[2] if len(buf) >= 3 else None
    if fc in (5, 6, 8, 11, 15, 16):
        return 8
    if fc == 7:
        return 5
    if fc == 22:
        return 10
    return None


# -- register encoding (independent of drivers.decoder) ---------------------------------

_TYPES = {  # name: (struct code, registers, integer range or None)
    "uint16": ("H", 1, (0, 0xFFFF)),
    "int16": ("h", 1, (-0x8000, 0x7FFF)),
    "uint32": ("I", 2, (0, 0xFFFFFFFF)),
    "int32": ("i", 2, (-0x80000000, 0x7FFFFFFF)),
    "float32": ("f", 2, None),
}


def type_words(type_name: str) -> int:
    return _TYPES[type_name][1]


def encode_raw(raw: float, type_name: str, word_order: str = "ABCD") -> list[int]:
    """Register words for a raw (already scaled) value; ints must be in range."""
    code, words, limits = _TYPES[type_name]
    if limits is not None:
        raw = int(raw)
        if not limits[0] <= raw <= limits[1]:
            raise ValueError(f"{raw} does not fit {type_name}")
    data = struct.pack(">" + code, raw)
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if words == 2 and word_order == "CDAB":
        regs.reverse()
    elif words == 2 and word_order != "ABCD":
        raise ValueError(f"unknown word order {word_order!r}")
    return regs


def decode_raw(regs: list[int], type_name: str, word_order: str = "ABCD") -> float:
    code, words, _ = _TYPES[type_name]
    regs = list(regs[:words])
    if words == 2 and word_order == "CDAB":
        regs.reverse()
    data = b"".join(r.to_bytes(2, "big") for r in regs)
    return struct.unpack(">" + code, data)[0]


def encode_value(value: float, spec: dict, *, clamp: bool = True) -> list[int]:
    """Registers holding engineering ``value`` for a channel/status/info ``spec``."""
    type_name = spec["type"]
    scale = float(spec.get("scale", 1.0))
    offset = float(spec.get("offset", 0.0))
    raw = (value - offset) / scale
    _, _, limits = _TYPES[type_name]
    if limits is not None:
        if not math.isfinite(raw):
            raise ValueError(f"{value!r} cannot be held in a {type_name} register")
        raw = round(raw)
        if clamp:
            raw = min(max(raw, limits[0]), limits[1])
    return encode_raw(raw, type_name, spec.get("word_order", "ABCD"))


def decode_value(regs: list[int], spec: dict) -> float:
    raw = decode_raw(regs, spec["type"], spec.get("word_order", "ABCD"))
    return raw * float(spec.get("scale", 1.0)) + float(spec.get("offset", 0.0))


# -- profiles ---------------------------------------------------------------------------


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.json"))


def load_profile(profile: str | dict | os.PathLike) -> dict:
    """A profile dict from a dict, a profile name (drivers/profiles) or a JSON path."""
    if isinstance(profile, dict):
        return profile
    path = Path(profile)
    if not path.suffix:
        path = PROFILE_DIR / (str(profile) + ".json")
    if not path.exists():
        raise FileNotFoundError(
            f"no profile {str(profile)!r} (known: {', '.join(profile_names())})"
        )
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if data.get("format") != 1:
        raise ValueError(f"{path}: unsupported profile format {data.get('format')!r}")
    return data


# -- faults -----------------------------------------------------------------------------

BYTE_FAULTS = ("bad_crc", "truncate", "stray_byte", "wrong_address")
FAULT_KINDS = ("no_answer", "hang", "exception", "delay", *BYTE_FAULTS)
WARMUP_MODES = ("busy", "silent", "missing")


class Fault:
    """One injected fault: fires on a request with ``probability``, at most ``count`` times.

    Kinds: ``no_answer`` (this request is ignored), ``hang`` (silent until
    ``power_cycle()``), ``exception`` (``code`` 1/2/3/4/6), ``delay`` (``ms`` before the
    answer), ``bad_crc`` (last CRC byte inverted), ``truncate`` (only the first ``keep``
    bytes, default half), ``stray_byte`` (``byte``, default 0x00, sent first),
    ``wrong_address`` (answer from address ``to``, default address+1, valid CRC).
    """

    def __init__(self, kind: str, probability: float = 1.0, count: int | None = None, **params):
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r} (known: {', '.join(FAULT_KINDS)})")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be within 0..1")
        if kind == "exception" and int(params.get("code", 0)) not in (1, 2, 3, 4, 5, 6, 11):
            raise ValueError("exception fault needs code= 1/2/3/4/5/6/11")
        if kind == "delay" and float(params.get("ms", -1)) < 0:
            raise ValueError("delay fault needs ms= >= 0")
        self.kind = kind
        self.probability = probability
        self.remaining = count
        self.params = params
        self.fired = 0

    def __repr__(self) -> str:
        return (
            f"Fault({self.kind!r}, p={self.probability:g}, remaining={self.remaining!r}, "
            f"{self.params!r}, fired={self.fired})"
        )


class _Plan:
    """What the relay does with one request."""

    __slots__ = ("delay_s", "exception", "local_reply", "mangles", "silent")

    def __init__(self) -> None:
        self.silent = False
        self.exception: int | None = None
        self.local_reply: bytes | None = None
        self.delay_s = 0.0
        self.mangles: list[Fault] = []


def mangle(frame: bytes, fault: Fault, address: int) -> bytes:
    """Apply one byte-level fault to a response frame."""
    kind = fault.kind
    if kind == "bad_crc":
        return frame[:-1] + bytes((frame[-1] ^ 0xFF,))
    if kind == "truncate":
        keep = fault.params.get("keep")
        keep = max(1, len(frame) // 2) if keep is None else int(keep)
        return frame[:keep]
    if kind == "stray_byte":
        return bytes((int(fault.params.get("byte", 0x00)),)) + frame
    if kind == "wrong_address":
        to = fault.params.get("to")
        to = (address % 247) + 1 if to is None else int(to)
        return with_crc(bytes((to,)) + frame[1:-2])
    raise ValueError(kind)


# -- one emulated device ----------------------------------------------------------------


class _Channel:
    def __init__(self, spec: dict):
        self.spec = spec
        self.name = spec["name"]
        self.function = int(spec["function"])
        self.address = int(spec["address"])
        self.words = type_words(spec["type"])
        self.signal = signals.signal_for(spec)
        self.override: float | None = None
        self.missing = False
        self.stuck = False
        missing = spec.get("missing") or {}
        self.missing_nan = bool(missing.get("nan"))
        self.sentinel = missing.get("sentinel")


class EmulatedSensor:
    """A Modbus RTU slave built from a profile, served by pymodbus behind a fault relay.

    ``EmulatedSensor(profile, address=None, clock=None, seed=0, *, bus=None, ...)``:
    ``profile`` is a dict or a name under drivers/profiles; ``address`` defaults to the
    profile's ``default_address``; ``clock`` (``now()`` -> UTC epoch s) defaults to real
    time. Without ``bus`` the sensor gets a bus (pty) of its own; pass an
    ``EmulatedBus`` to put several sensors on one pty. ``port_path`` is the tty the
    product opens. ``warmup`` ("busy" = exception 06, "silent", "missing" = missing
    values and a D status, or None) applies for the profile's ``warmup_s`` after
    ``start()``/``power_cycle()``. ``latency_ms`` is the device's own answer delay.
    ``latency_ms``, ``warmup`` and ``info_values`` default to the profile's optional
    ``x-emulator`` hints, else 0 ms / no warm-up / 0.
    """

    def __init__(
        self,
        profile: str | dict,
        address: int | None = None,
        clock: signals.Clock | None = None,
        seed: int = 0,
        *,
        bus: EmulatedBus | None = None,
        latency_ms: float | None = None,
        warmup: str | None = None,
        info_values: dict[str, float] | None = None,
    ) -> None:
        self.profile = load_profile(profile)
        self.name = self.profile["name"]
        self.address = int(self.profile.get("default_address", 1) if address is None else address)
        if not 1 <= self.address <= 247:
            raise ValueError("address must be 1..247")
        self.clock = clock if clock is not None else signals.RealClock()
        self.seed = seed
        # Emulator hints a profile may carry (drivers/profile.py leaves "x-" keys alone):
        # "x-emulator": {"warmup": "busy", "latency_ms": 20, "info": {"sensor_life": 95}}
        hints = self.profile.get("x-emulator") or {}
        self.latency_ms = float(hints.get("latency_ms", 0.0)) if latency_ms is None else latency_ms
        warmup = hints.get("warmup") if warmup is None else warmup
        if warmup is not None and warmup not in WARMUP_MODES:
            raise ValueError(f"warmup must be one of {WARMUP_MODES} or None")
        self.warmup = warmup
        self.warmup_s = float(self.profile.get("warmup_s", 0))
        self._lock = threading.RLock()
        self._channels = [_Channel(c) for c in self.profile.get("channels", [])]
        self._by_name = {c.name: c for c in self._channels}
        self._status = list(self.profile.get("status", []))
        self._status_raw = [self._normal_status(s) for s in self._status]
        self._info = list(self.profile.get("info", []))
        self._info_values = {e["name"]: 0.0 for e in self._info}
        self._info_values.update(hints.get("info") or {})
        self._info_values.update(info_values or {})
        self._maps = self._register_maps()
        self.functions = frozenset(self._maps)
        self._faults: list[Fault] = []
        self._rng = random.Random(f"{seed}/{self.address}/faults")
        self._hung = False
        self._powered = True
        self._power_on_at = self.clock.now()
        self._pending_exception: int | None = None
        self.counters: dict[str, int] = {
            "seen": 0,  # CRC-valid requests addressed to this device
            "answered": 0,  # responses put on the wire (faulty ones included)
            "faulted": 0,  # requests on which at least one fault fired
            "silent": 0,  # requests left unanswered (fault, hang, power off, warm-up)
        }
        self.fault_counts: dict[str, int] = {}
        self._own_bus = bus is None
        if bus is None:
            bus = EmulatedBus(**self.profile.get("serial", {}))
        self.bus = bus
        self._started = False
        bus.attach(self)

    # -- register map ----------------------------------------------------------------

    def _register_maps(self) -> dict[int, dict[int, tuple[str, int, int]]]:
        """function -> {address: (kind, index, word)} for every mapped register."""
        maps: dict[int, dict[int, tuple[str, int, int]]] = {}
        entries = [("channel", i, c.spec) for i, c in enumerate(self._channels)]
        entries += [("status", i, s) for i, s in enumerate(self._status)]
        entries += [("info", i, e) for i, e in enumerate(self._info)]
        for kind, index, spec in entries:
            fc = int(spec["function"])
            if fc not in (3, 4):
                raise ValueError(f"{self.name}: only FC03/FC04 registers are emulated")
            m = maps.setdefault(fc, {})
            for w in range(type_words(spec["type"])):
                addr = int(spec["address"]) + w
                if addr in m:
                    raise ValueError(f"{self.name}: register {fc}/{addr} mapped twice")
                m[addr] = (kind, index, w)
        return maps

    def sim_device(self) -> SimDevice:
        """The pymodbus device: separate coil/discrete/holding/input blocks."""

        def block(fc: int) -> list[SimData]:
            addrs = sorted(self._maps.get(fc, {}))
            if not addrs:  # a block cannot be empty; a lone INVALID register answers 02
                return [SimData(address=0, datatype=DataType.INVALID)]
            return [SimData(address=a, values=0, datatype=DataType.REGISTERS) for a in addrs]

        bits = [SimData(address=0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            id=self.address,
            simdata=(bits, list(bits), block(3), block(4)),
            action=self._action,
        )

    async def _action(self, function_code, start_address, address, count, registers, set_values):
        code = self._pending_exception
        if code:
            return ExcCodes(code)
        if set_values is not None:
            return ExcCodes.ILLEGAL_FUNCTION  # read-only device
        regs = self.registers(function_code)
        for addr, value in regs.items():
            i = addr - start_address
            if 0 <= i < len(registers):
                registers[i] = value
        return None

    # -- values ----------------------------------------------------------------------

    def _normal_status(self, spec: dict) -> int:
        if "codes" in spec:
            for key, flag in spec["codes"].items():
                if flag == "N":
                    return int(key)
        return 0

    def _status_raw_for(self, spec: dict, flag: str) -> int:
        if flag == "N":
            return self._normal_status(spec)
        if "bits" in spec:
            for key, f in spec["bits"].items():
                if f == flag:
                    return 1 << int(key)
        if "codes" in spec:
            for key, f in spec["codes"].items():
                if f == flag:
                    return int(key)
        raise ValueError(f"{self.name}: status cannot express flag {flag!r}")

    def channel_names(self) -> list[str]:
        return [c.name for c in self._channels]

    def _channel(self, name: str) -> _Channel:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(
                f"{self.name} has no channel {name!r} (has {self.channel_names()})"
            ) from None

    def in_warmup(self, t: float | None = None) -> bool:
        if self.warmup is None:
            return False
        t = self.clock.now() if t is None else t
        return t - self._power_on_at < self.warmup_s

    def signal_value(self, name: str, t: float | None = None) -> float:
        """The signal (engineering raw-unit value) before register quantisation."""
        ch = self._channel(name)
        return ch.signal(self.clock.now() if t is None else t, self.seed)

    def _value(self, ch: _Channel, t: float) -> float | None:
        has_marker = ch.missing_nan or ch.sentinel is not None
        if has_marker and (ch.missing or (self.warmup == "missing" and self.in_warmup(t))):
            return None
        if ch.override is not None:
            return ch.override
        return ch.signal(t, self.seed)

    def _channel_registers(self, ch: _Channel, t: float) -> list[int]:
        value = self._value(ch, t)
        if value is None:
            if ch.missing_nan:
                return encode_raw(math.nan, ch.spec["type"], ch.spec.get("word_order", "ABCD"))
            return encode_raw(ch.sentinel, ch.spec["type"], ch.spec.get("word_order", "ABCD"))
        regs = encode_value(value, ch.spec)
        if ch.sentinel is not None and ch.override is None:
            # a signal that happens to hit the sentinel would read as "missing"
            sent = encode_raw(ch.sentinel, ch.spec["type"], ch.spec.get("word_order", "ABCD"))
            if regs == sent:
                regs = encode_value(value - float(ch.spec.get("scale", 1.0)), ch.spec)
        return regs

    def registers(self, function: int, t: float | None = None) -> dict[int, int]:
        """``{address: register}`` this device serves for ``function`` at ``t`` (now)."""
        t = self.clock.now() if t is None else t
        out: dict[int, int] = {}
        with self._lock:
            for ch in self._channels:
                if ch.function == function:
                    for w, r in enumerate(self._channel_registers(ch, t)):
                        out[ch.address + w] = r
            warm = self.warmup == "missing" and self.in_warmup(t)
            for spec, raw in zip(self._status, self._status_raw, strict=True):
                if int(spec["function"]) == function:
                    if warm and raw == self._normal_status(spec):
                        raw = self._status_raw_for(spec, "D")
                    words = encode_raw(raw, spec["type"], spec.get("word_order", "ABCD"))
                    for w, r in enumerate(words):
                        out[int(spec["address"]) + w] = r
            for spec in self._info:
                if int(spec["function"]) == function:
                    words = encode_value(self._info_values[spec["name"]], spec)
                    for w, r in enumerate(words):
                        out[int(spec["address"]) + w] = r
        return out

    def held_value(self, name: str, t: float | None = None) -> float | None:
        """The engineering value a master decodes from the registers at ``t`` (now).

        ``None`` when the registers hold the profile's missing marker (NaN/sentinel).
        """
        ch = self._channel(name)
        t = self.clock.now() if t is None else t
        with self._lock:
            regs = self._channel_registers(ch, t)
        if ch.sentinel is not None and regs == encode_raw(
            ch.sentinel, ch.spec["type"], ch.spec.get("word_order", "ABCD")
        ):
            return None
        v = decode_value(regs, ch.spec)
        return None if isinstance(v, float) and math.isnan(v) else v

    def held_values(self, t: float | None = None) -> dict[str, float | None]:
        t = self.clock.now() if t is None else t
        return {c.name: self.held_value(c.name, t) for c in self._channels}

    def set_value(self, name: str, value: float) -> None:
        """Hold ``value`` (engineering, raw unit) instead of the signal."""
        ch = self._channel(name)
        encode_value(value, ch.spec, clamp=False)  # fail here, not in the server
        with self._lock:
            ch.override = float(value)

    def clear_value(self, name: str) -> None:
        """Back to the signal (also releases ``stick``)."""
        ch = self._channel(name)
        with self._lock:
            ch.override = None
            ch.stuck = False

    def stick(self, name: str) -> float:
        """Freeze the channel at its current value (a stuck sensor); returns it."""
        ch = self._channel(name)
        with self._lock:
            value = self._value(ch, self.clock.now())
            ch.override = self.signal_value(name) if value is None else value
            ch.stuck = True
            return ch.override

    def set_missing(self, name: str, missing: bool = True) -> None:
        """Serve the profile's missing marker (NaN or sentinel) for the channel."""
        ch = self._channel(name)
        if missing and not (ch.missing_nan or ch.sentinel is not None):
            raise ValueError(f"{self.name}.{name} has no missing marker in its profile")
        with self._lock:
            ch.missing = missing

    def set_status(self, raw: int, index: int = 0) -> None:
        with self._lock:
            self._status_raw[index] = int(raw)

    def set_status_flag(self, flag: str, index: int = 0) -> int:
        """Set the status register to a value the profile maps to ``flag``; returns it."""
        raw = self._status_raw_for(self._status[index], flag)
        self.set_status(raw, index)
        return raw

    def set_info(self, name: str, value: float) -> None:
        with self._lock:
            self._info_values[name] = float(value)

    # -- faults and power ------------------------------------------------------------

    def inject(
        self, kind: str, probability: float = 1.0, count: int | None = None, **params: Any
    ) -> Fault:
        """Add a fault (see ``Fault``); returns it (``remove_fault`` takes it back)."""
        fault = Fault(kind, probability, count, **params)
        with self._lock:
            self._faults.append(fault)
        return fault

    def remove_fault(self, fault: Fault) -> None:
        with self._lock:
            if fault in self._faults:
                self._faults.remove(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    @property
    def hung(self) -> bool:
        return self._hung

    def power_off(self) -> None:
        with self._lock:
            self._powered = False

    def power_on(self) -> None:
        with self._lock:
            self._powered = True
            self._hung = False
            self._power_on_at = self.clock.now()

    def power_cycle(self) -> None:
        """Off and on: clears a hang, restarts warm-up; held values and faults stay."""
        self.power_off()
        self.power_on()

    def _count(self, name: str) -> None:
        self.fault_counts[name] = self.fault_counts.get(name, 0) + 1

    def _plan(self, frame: bytes) -> _Plan:
        """Decide, once per request, what happens to it (relay thread)."""
        plan = _Plan()
        with self._lock:
            self.counters["seen"] += 1
            fired = False
            if not self._powered or self._hung:
                plan.silent = True
                self._count("powered_off" if not self._powered else "hang")
                fired = True
            elif self.in_warmup():
                self._count("warmup")
                if self.warmup == "silent":
                    plan.silent = True
                elif self.warmup == "busy":
                    plan.exception = int(ExcCodes.DEVICE_BUSY)
            if not plan.silent:
                for fault in list(self._faults):
                    if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                        continue
                    fault.fired += 1
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    fired = True
                    self._count(fault.kind)
                    if fault.kind in ("no_answer", "hang"):
                        plan.silent = True
                        self._hung = self._hung or fault.kind == "hang"
                        break
                    if fault.kind == "exception":
                        plan.exception = int(fault.params["code"])
                    elif fault.kind == "delay":
                        plan.delay_s += float(fault.params["ms"]) / 1000.0
                    else:
                        plan.mangles.append(fault)
            if fired:
                self.counters["faulted"] += 1
            if plan.silent:
                self.counters["silent"] += 1
                return plan
            plan.delay_s += self.latency_ms / 1000.0
            function = frame[1]
            if function not in self.functions:
                code = plan.exception or int(ExcCodes.ILLEGAL_FUNCTION)
                plan.local_reply = exception_frame(self.address, function, code)
            return plan

    # -- lifecycle -------------------------------------------------------------------

    @property
    def port_path(self) -> str:
        return self.bus.port_path

    def start(self) -> EmulatedSensor:
        if not self._started:
            self._started = True
            self._power_on_at = self.clock.now()
            self.bus._retain()
        return self

    def stop(self) -> None:
        if self._started:
            self._started = False
            self.bus._release()

    def __enter__(self) -> EmulatedSensor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<EmulatedSensor {self.name} @{self.address} seed={self.seed}>"


# -- one emulated bus -------------------------------------------------------------------


class EmulatedBus:
    """One pty "RS-485 bus": a relay thread and a pymodbus server for all its devices.

    Devices attach when constructed with ``bus=``; the bus starts with the first
    ``start()`` (of the bus or of a device) and stops when ``stop()`` is called on it
    or every started device has stopped. Serial settings only matter to pymodbus's
    pyserial port (ptys ignore baud rate); ``wire_time=True`` delays every answer by the
    time request and answer would take on a real wire at ``baudrate``.
    """

    INNER_TIMEOUT_S = 1.0

    def __init__(
        self,
        baudrate: int = 9600,
        bytesize: int = 8,
        parity: str = "N",
        stopbits: int = 1,
        *,
        wire_time: bool = False,
    ) -> None:
        self.baudrate = baudrate
        self.bytesize = bytesize
        self.parity = parity
        self.stopbits = stopbits
        self.wire_time = wire_time
        self.bits_per_char = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
        # t3.5 ends a frame whose length the relay cannot tell; ptys add scheduling
        # jitter, so never less than 10 ms.
        self.gap_s = max(3.5 * self.bits_per_char / baudrate, 0.010)
        self.devices: dict[int, EmulatedSensor] = {}
        self.counters: dict[str, int] = {
            "frames": 0,  # request frames seen on the bus
            "bad_frames": 0,  # CRC errors / incomplete frames (ignored, as a slave does)
            "other_address": 0,  # valid frames for an address nobody emulates
            "inner_timeouts": 0,  # pymodbus did not answer
            "tx_dropped": 0,  # answer bytes the product's side had no room for
        }
        self._users = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fds: list[int] = []
        self._port_path: str | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._lock = threading.Lock()

    def attach(self, sensor: EmulatedSensor) -> None:
        """Put ``sensor`` on this bus (done by ``EmulatedSensor(bus=...)``).

        On a running bus the pymodbus server is rebuilt with the new device list (its
        SimCore fixes the devices when it is made); the pty stays the same.
        """
        with self._lock:
            if sensor.address in self.devices:
                raise ValueError(f"address {sensor.address} is already on this bus")
            self.devices[sensor.address] = sensor
            loop = self._loop if self._thread is not None else None
        if loop is not None:
            asyncio.run_coroutine_threadsafe(self._serve(), loop).result(10.0)

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def port_path(self) -> str:
        if self._port_path is None:
            raise RuntimeError("the bus is not started")
        return self._port_path

    # -- lifecycle -------------------------------------------------------------------

    def _retain(self) -> None:
        with self._lock:
            self._users += 1
        self.start()

    def _release(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.stop()

    def start(self) -> EmulatedBus:
        with self._lock:
            if self._thread is not None:
                return self
            if not self.devices:
                raise RuntimeError("no devices on the bus")
            self._outer, self._outer_slave, self._port_path = open_pty()
            self._fds = [self._outer, self._outer_slave]
            try:
                self._inner, self._inner_slave, self._inner_path = open_pty()
            except BaseException:
                self._close_fds()
                raise
            self._fds += [self._inner, self._inner_slave]
            self._ready.clear()
            self._error = None
            self._thread = threading.Thread(
                target=self._run, name=f"emulated-bus {self._port_path}", daemon=True
            )
            self._thread.start()
        if not self._ready.wait(10.0):
            self.stop()
            raise RuntimeError("emulated bus did not start")
        if self._error is not None:
            err = self._error
            self.stop()
            raise RuntimeError("emulated bus failed to start") from err
        return self

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            loop = self._loop
            self._users = 0
        if thread is None:
            return
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(self._stopping.set)
        thread.join(10.0)
        if thread.is_alive():
            raise RuntimeError("emulated bus thread did not stop")
        self._close_fds()
        self._port_path = None
        for dev in self.devices.values():
            dev._started = False

    def _close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def __enter__(self) -> EmulatedBus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- loop thread -----------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # reported to start() or logged
            if not self._ready.is_set():
                self._error = exc
            else:
                log.exception("emulated bus crashed")
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                self._loop = None
                loop.close()
                self._ready.set()

    async def _main(self) -> None:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._requests: asyncio.Queue[bytes] = asyncio.Queue()
        self._rx = bytearray()
        self._discarding = False
        self._gap_timer: asyncio.TimerHandle | None = None
        self._inner_rx = bytearray()
        self._inner_waiter: asyncio.Future[bytes] | None = None
        self._inner_timer: asyncio.TimerHandle | None = None
        self._late: set[asyncio.TimerHandle] = set()
        self._server: ModbusSerialServer | None = None
        await self._serve()
        loop.add_reader(self._outer, self._on_outer)
        loop.add_reader(self._inner, self._on_inner)
        worker = asyncio.create_task(self._worker(), name="emulated-bus relay")
        self._ready.set()
        try:
            await self._stopping.wait()
        finally:
            loop.remove_reader(self._outer)
            loop.remove_reader(self._inner)
            for handle in (self._gap_timer, self._inner_timer, *self._late):
                if handle is not None:
                    handle.cancel()
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            await self._shutdown_server()

    async def _serve(self) -> None:
        """(Re)start the pymodbus server with every attached device."""
        await self._shutdown_server()
        server = ModbusSerialServer(
            [d.sim_device() for d in list(self.devices.values())],
            port=self._inner_path,
            baudrate=self.baudrate,
            bytesize=self.bytesize,
            parity=self.parity,
            stopbits=self.stopbits,
            reconnect_delay=0.0,
        )
        await server.serve_forever(background=True)
        self._server = server

    async def _shutdown_server(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.shutdown()
            if getattr(type(server), "active_server", None) is server:
                type(server).active_server = None

    # master -> devices: cut the byte stream into request frames

    def _on_outer(self) -> None:
        try:
            data = os.read(self._outer, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # EIO: no slave fd open (cannot happen while we hold one)
            return
        if not data:
            return
        if self._gap_timer is not None:
            self._gap_timer.cancel()
        self._rx += data
        if not self._discarding:
            while True:
                need = request_length(self._rx)
                if need is None or len(self._rx) < need:
                    break
                frame = bytes(self._rx[:need])
                if not crc_ok(frame):
                    # A slave that sees a bad CRC ignores everything up to the next
                    # t3.5 silence: it cannot know where a following frame starts.
                    self._bad_frame()
                    self._discarding = True
                    break
                del self._rx[:need]
                self._requests.put_nowait(frame)
        if self._discarding:
            self._rx.clear()
        if self._rx or self._discarding:
            loop = asyncio.get_running_loop()
            self._gap_timer = loop.call_later(self.gap_s, self._on_gap)

    def _on_gap(self) -> None:
        self._gap_timer = None
        self._discarding = False
        if self._rx:
            frame = bytes(self._rx)
            self._rx.clear()
            self._requests.put_nowait(frame)  # judged (CRC) by the worker

    def _bad_frame(self) -> None:
        self.counters["frames"] += 1
        self.counters["bad_frames"] += 1

    async def _worker(self) -> None:
        while True:
            frame = await self._requests.get()
            try:
                await self._handle(frame)
            except Exception:
                log.exception("relay failed on %s", frame.hex())

    async def _handle(self, frame: bytes) -> None:
        if not crc_ok(frame):
            self._bad_frame()
            return
        self.counters["frames"] += 1
        dev = self.devices.get(frame[0])
        if dev is None:
            self.counters["other_address"] += 1
            return
        plan = dev._plan(frame)
        if plan.silent:
            return
        if plan.local_reply is not None:
            reply = plan.local_reply
        else:
            dev._pending_exception = plan.exception
            try:
                reply = await self._transact_inner(frame)
            finally:
                dev._pending_exception = None
            if reply is None:
                self.counters["inner_timeouts"] += 1
                return
        for fault in plan.mangles:
            reply = mangle(reply, fault, dev.address)
        delay = plan.delay_s
        if self.wire_time:
            delay += (len(frame) + len(reply)) * self.bits_per_char / self.baudrate
        if delay > 0:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def late() -> None:
                self._late.discard(handle)  # type: ignore[arg-type]
                self._emit(reply, dev)

            handle = loop.call_later(delay, late)
            self._late.add(handle)
        else:
            self._emit(reply, dev)

    def _emit(self, reply: bytes, dev: EmulatedSensor) -> None:
        with dev._lock:  # counted first: a test may read the counter as soon as it has the bytes
            dev.counters["answered"] += 1
        view = memoryview(reply)
        while view:
            try:
                n = os.write(self._outer, view)
            except BlockingIOError:
                self.counters["tx_dropped"] += len(view)
                break
            view = view[n:]

    # relay <-> pymodbus over the inner pty

    async def _transact_inner(self, frame: bytes) -> bytes | None:
        loop = asyncio.get_running_loop()
        self._inner_rx.clear()
        self._inner_waiter = loop.create_future()
        os.write(self._inner, frame)
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel
            # that arrives as the answer completes, and stop() then hangs on the worker.
            async with asyncio.timeout(self.INNER_TIMEOUT_S):
                return await self._inner_waiter
        except TimeoutError:
            return None
        finally:
            self._inner_waiter = None
            if self._inner_timer is not None:
                self._inner_timer.cancel()
                self._inner_timer = None

    def _on_inner(self) -> None:
        try:
            data = os.read(self._inner, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        waiter = self._inner_waiter
        if waiter is None or waiter.done():
            return  # nothing asked: stray output, dropped
        self._inner_rx += data
        need = response_length(self._inner_rx)
        if need is not None and len(self._inner_rx) >= need:
            waiter.set_result(bytes(self._inner_rx[:need]))
            return
        if self._inner_timer is not None:
            self._inner_timer.cancel()
        self._inner_timer = asyncio.get_running_loop().call_later(self.gap_s, self._inner_gap)

    def _inner_gap(self) -> None:
        self._inner_timer = None
        waiter = self._inner_waiter
        if waiter is not None and not waiter.done() and self._inner_rx:
            waiter.set_result(bytes(self._inner_rx))
