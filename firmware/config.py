"""Station configuration: one JSON file with a schema version, validated whole at boot.

A station's behaviour is data: which UARTs carry which RS-485 buses, which Modbus
devices (by profile, drivers/profiles/) sit on them, which of their channels are
published under which names, where the broker is, how the flash ring and the watchdog
are sized. The file is checked completely before anything runs, so that a typo is
reported once, by field, instead of surfacing hours later as a device that never
answers. Schema 1::

    {"schema": 1, "station": "yb-town-01",
     "buses": [{"name": "rs485a", "uart": 1, "baudrate": 9600, "bits": 8, "parity": null,
                "stop": 1, "tx": 17, "rx": 16, "de_pin": 4}],
     "devices": [{"name": "pm", "bus": "rs485a", "profile": "particulate", "address": 1,
                  "poll_s": 5, "timeout_ms": null, "power_pin": null, "fail_limit": 3,
                  "backoff_s": 60}],
     "channels": [{"name": "pm25", "device": "pm", "source": "pm25"}],
     "uplink": {"host": "127.0.0.1", "port": 1883, "keepalive_s": 60, "client_id": null,
                "topic_prefix": "lantian/v1", "user": null, "password": null},
     "validity_fraction": 0.75,
     "store": {"dir": "ring", "slot_size": 512, "segments": 16, "slots_per_segment": 8},
     "time": {"ntp_host": "pool.ntp.org", "utc_offset_h": 8},
     "watchdog": {"timeout_ms": 8000}}

Rules (each broken rule is one ``ConfigError(field, problem)``; ``field`` is a path such
as ``devices[0].bus``):

- Every key shown is required, except those that may be null, which may also be left
  out (same meaning): ``parity``, ``tx``, ``rx``, ``de_pin`` (null: no direction pin, an
  auto-direction transceiver), ``timeout_ms`` (null: the profile's
  ``response_timeout_ms``), ``power_pin`` (null: not switchable), ``client_id`` (null:
  the station id), ``user``, ``password``, ``ntp_host`` (null: no NTP; records stay
  ``time_valid: false`` unless another source sets the clock). Unknown keys are errors
  (a misspelt key must not be silently ignored); keys starting with ``x-`` and ``notes``
  are left for other tools.
- ``schema`` is 1; a newer file is refused, not half-understood.
- Names (station, buses, devices, channels) use ``a-z 0-9 - _``, at most 32 characters,
  and are unique in their list. Buses, devices and channels are non-empty lists of at
  most 3, 32 and 64 entries (RAM on the board).
- A bus: UART id 0..2 (ESP32 has three, RP2040 two), one bus per UART; a standard baud
  rate; 8 data bits (Modbus RTU, spec. v1.02 §2.5.1: 1 start, 8 data, parity, stop);
  parity null/"N", "E" or "O" (stored as MicroPython's None/0/1 in ``parity``, the letter
  in ``parity_name``); 1 or 2 stop bits; GPIOs 0..48, none used twice across buses and
  power switches (devices may share a power pin: one rail, several sensors).
- A device: ``bus`` names a bus; ``profile`` loads (``drivers.profile.load_profile``,
  every ``ProfileError`` is reported under ``devices[i].profile``); Modbus ``address``
  1..247 (0 is broadcast, 248..255 reserved), unique on its bus; 0 < ``poll_s`` <= 3600;
  ``timeout_ms`` 1..10000; ``fail_limit`` >= 1; ``backoff_s`` >= 0.
- A channel: ``device`` names a device and ``source`` is a channel of that device's
  profile; one channel per (device, source).
- ``validity_fraction`` in (0, 1]; MQTT ``port`` 1..65535, ``keepalive_s`` 1..65535, no
  ``password`` without ``user``, ``topic_prefix`` without wildcards or empty levels;
  ``utc_offset_h`` in -12..14 in quarter hours; ``store`` slot_size 64..4096;
  ``watchdog.timeout_ms`` 1000..8000 (RP2040's watchdog tops out at 8388 ms; the
  supervisor feeds every quarter of it, firmware/watchdog.py).

Advice that is not an error goes to ``Config.warnings`` (the station publishes it in its
status): a bus whose serial settings differ from a device profile's factory settings, a
ring segment larger than one 4096-byte erase block (firmware/store.py), a device with no
channel, a bus with no device.

Files. ``load_config(path)`` reads ``path``, else ``path.bak``
(``firmware.atomic.read_with_fallback``: a copy that fails validation counts as
unusable); ``save_config`` validates first and writes with ``write_atomic``, so the file
on flash is always a complete, valid config or the previous one. When neither copy is
valid the station must not crash-loop: it boots into safe mode, keeps the uplink when
``safe_mode_uplink`` can salvage the station id and uplink section, and publishes
``safe_mode_status(error)`` as its retained status.

Device key. A separate file (``key.bin``) of raw bytes, 16..64 long (HMAC-SHA256 gains
nothing from more than its 64-byte block), never all one byte value (erased flash reads
0xFF, a zero-filled file 0x00). ``load_key`` returns it or raises ``DeviceKeyError``.
"""

import json

from drivers.profile import ProfileError, load_profile
from firmware.atomic import SOURCE_BACKUP, NoValidCopy, read_with_fallback, write_atomic

SCHEMA = 1
NAME_MAX = 32
STATION_MAX = 32
MAX_BUSES = 3
MAX_DEVICES = 32
MAX_CHANNELS = 64
UART_MAX = 2
PIN_MAX = 48  # ESP32-S3 GPIO0..48; RP2040 GPIO0..29
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
WDT_MIN_MS = 1000
WDT_MAX_MS = 8000  # RP2040: 8388 ms hardware maximum, rounded down
ERASE_BLOCK = 4096  # flash erase block on ESP32 and RP2040
KEY_MIN_BYTES = 16
KEY_MAX_BYTES = 64
PROBLEM_MAX = 200  # characters of a problem text put in a status payload

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"
_PARITIES = {"N": None, "E": 0, "O": 1}  # MicroPython UART: None, 0 = even, 1 = odd

_TOP_REQUIRED = (
    "schema",
    "station",
    "buses",
    "devices",
    "channels",
    "uplink",
    "validity_fraction",
    "store",
    "time",
    "watchdog",
)
_BUS_REQUIRED = ("name", "uart", "baudrate", "bits", "stop")
_BUS_NULLABLE = ("parity", "tx", "rx", "de_pin")
_DEVICE_REQUIRED = ("name", "bus", "profile", "address", "poll_s", "fail_limit", "backoff_s")
_DEVICE_NULLABLE = ("timeout_ms", "power_pin")
_CHANNEL_REQUIRED = ("name", "device", "source")
_UPLINK_REQUIRED = ("host", "port", "keepalive_s", "topic_prefix")
_UPLINK_NULLABLE = ("client_id", "user", "password")
_STORE_REQUIRED = ("dir", "slot_size", "segments", "slots_per_segment")
_TIME_REQUIRED = ("utc_offset_h",)
_TIME_NULLABLE = ("ntp_host",)
_WATCHDOG_REQUIRED = ("timeout_ms",)
_NONE = ()  # type: tuple


class ConfigError(ValueError):
    """The station config is unusable: ``field`` (a path like ``devices[0].bus``) and
    ``problem`` (what is wrong, in words). ``reasons`` lists, after ``load_config``, why
    each copy (``path``, ``path.bak``) was rejected."""

    def __init__(self, field, problem):
        super().__init__("config %s: %s" % (field, problem))
        self.field = field
        self.problem = problem
        self.reasons = []  # type: list


class DeviceKeyError(ValueError):
    """The device key file is missing or unusable (``path``, ``problem``)."""

    def __init__(self, path, problem):
        super().__init__("device key %s: %s" % (path, problem))
        self.path = path
        self.problem = problem


# --------------------------------------------------------------------- the result


class _Section:
    """Attributes hold the validated values, nulls resolved as documented (``timeout_ms``
    from the profile, ``client_id`` from the station id). ``section[key]`` and
    ``section.get(key, default)`` read the section as written in the file (an omitted
    nullable key reads as None), for code that handles sections as dicts."""

    _nullable = _NONE

    def __init__(self):
        self._raw = {}  # type: dict

    def __getitem__(self, key):
        if key in self._raw:
            return self._raw[key]
        if key in self._nullable:
            return None
        raise KeyError(key)

    def get(self, key, default=None):
        if key in self._raw or key in self._nullable:
            return self[key]
        return default

    def __contains__(self, key):
        return key in self._raw or key in self._nullable


class BusConfig(_Section):
    """One RS-485 bus on one UART (arguments for ``machine.UART`` and the DE pin)."""

    _nullable = _BUS_NULLABLE

    def __init__(self):
        super().__init__()
        self.name = ""
        self.uart = 0
        self.baudrate = 0
        self.bits = 8
        self.parity = None  # type: int | None
        self.parity_name = "N"
        self.stop = 1
        self.tx = None  # type: int | None
        self.rx = None  # type: int | None
        self.de_pin = None  # type: int | None


class DeviceConfig(_Section):
    """One Modbus device: its bus, address, polling and failure policy, and its own
    compiled ``profile`` (a ``drivers.profile.Profile``; one instance per device)."""

    _nullable = _DEVICE_NULLABLE

    def __init__(self):
        super().__init__()
        self.name = ""
        self.bus = ""
        self.profile_name = ""
        self.profile = None  # type: object
        self.address = 0
        self.poll_s = 0  # type: float
        self.timeout_ms = 0  # the profile's response_timeout_ms when the file says null
        self.power_pin = None  # type: int | None
        self.fail_limit = 0
        self.backoff_s = 0  # type: float


class ChannelConfig(_Section):
    """A published channel: ``name`` in records, read from ``source`` of ``device``."""

    def __init__(self):
        super().__init__()
        self.name = ""
        self.device = ""
        self.source = ""


class UplinkConfig(_Section):
    """The MQTT broker and identity; ``client_id`` is the station id when the file
    says null."""

    _nullable = _UPLINK_NULLABLE

    def __init__(self):
        super().__init__()
        self.host = ""
        self.port = 0
        self.keepalive_s = 0
        self.client_id = ""
        self.topic_prefix = ""
        self.user = None  # type: str | None
        self.password = None  # type: str | None


class StoreConfig(_Section):
    """Geometry of the flash ring (``firmware.store.Ring`` arguments)."""

    def __init__(self):
        super().__init__()
        self.dir = ""
        self.slot_size = 0
        self.segments = 0
        self.slots_per_segment = 0


class TimeConfig(_Section):
    _nullable = _TIME_NULLABLE

    def __init__(self):
        super().__init__()
        self.ntp_host = None  # type: str | None
        self.utc_offset_h = 0  # type: float


class WatchdogConfig(_Section):
    def __init__(self):
        super().__init__()
        self.timeout_ms = 0


class Config:
    """A validated station config. ``source`` is ``"primary"``/``"backup"`` after
    ``load_config`` (None from ``validate``); ``warnings`` holds advice (strings)."""

    def __init__(self):
        self.schema = SCHEMA
        self.station = ""
        self.buses = []  # type: list
        self.devices = []  # type: list
        self.channels = []  # type: list
        self.uplink = UplinkConfig()
        self.validity_fraction = 0  # type: float
        self.store = StoreConfig()
        self.time = TimeConfig()
        self.watchdog = WatchdogConfig()
        self.warnings = []  # type: list
        self.source = None  # type: str | None

    def bus(self, name):
        for b in self.buses:
            if b.name == name:
                return b
        raise KeyError(name)

    def device(self, name):
        for d in self.devices:
            if d.name == name:
                return d
        raise KeyError(name)

    def devices_on(self, bus_name):
        return [d for d in self.devices if d.bus == bus_name]

    def channels_of(self, device_name):
        return [c for c in self.channels if c.device == device_name]


# ------------------------------------------------------------------- the checks


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _join(field, key):
    return key if not field else field + "." + key


def _obj(d, field, required, nullable):
    """``d`` must be an object with every required key and no unknown key."""
    if not isinstance(d, dict):
        raise ConfigError(field or "config", "must be a JSON object, not %s" % _kind(d))
    for k in d:
        if k in required or k in nullable or k == "notes":
            continue
        if isinstance(k, str) and k.startswith("x-"):
            continue
        raise ConfigError(
            _join(field, k), "unknown key (allowed: %s)" % ", ".join(required + nullable)
        )
    for k in required:
        if k not in d:
            raise ConfigError(_join(field, k), "missing")


def _kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    return "a number"


def _int(d, key, field, lo, hi, nullable=False):
    v = d.get(key)
    f = _join(field, key)
    if v is None:
        if nullable:
            return None
        raise ConfigError(f, "must be an integer, not null")
    if not _is_int(v):
        raise ConfigError(f, "must be an integer, not %s (%r)" % (_kind(v), v))
    if v < lo or v > hi:
        raise ConfigError(f, "%d is out of range %d..%d" % (v, lo, hi))
    return v


def _number(d, key, field, lo, hi, lo_open=False):
    v = d.get(key)
    f = _join(field, key)
    if not _is_number(v):
        raise ConfigError(f, "must be a number, not %s" % _kind(v))
    if (v <= lo if lo_open else v < lo) or v > hi:
        raise ConfigError(f, "%r is out of range %s%r..%r]" % (v, "(" if lo_open else "[", lo, hi))
    return v


def _text(d, key, field, max_len, nullable=False):
    v = d.get(key)
    f = _join(field, key)
    if v is None:
        if nullable:
            return None
        raise ConfigError(f, "must be a string, not null")
    if not isinstance(v, str):
        raise ConfigError(f, "must be a string, not %s" % _kind(v))
    if not v:
        raise ConfigError(f, "must not be empty")
    if len(v) > max_len:
        raise ConfigError(f, "is %d characters long, at most %d allowed" % (len(v), max_len))
    for ch in v:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            raise ConfigError(f, "contains a control character")
    return v


def _name(d, key, field, max_len=NAME_MAX):
    v = _text(d, key, field, max_len)
    for ch in v:
        if ch not in _NAME_CHARS:
            raise ConfigError(_join(field, key), "%r: use only a-z, 0-9, '-' and '_'" % v)
    return v


def _list(d, key, max_len):
    v = d.get(key)
    if not isinstance(v, list):
        raise ConfigError(key, "must be a list, not %s" % _kind(v))
    if not v:
        raise ConfigError(key, "must not be empty")
    if len(v) > max_len:
        raise ConfigError(key, "has %d entries, at most %d allowed" % (len(v), max_len))
    return v


def _unique(names, name, field, what):
    if name in names:
        raise ConfigError(field, "%r is already the name of another %s" % (name, what))
    names.append(name)


def _claim_pin(pins, pin, field, shareable=False):
    """Record GPIO ``pin`` as used by ``field``; two uses are an error unless both are
    ``shareable`` (power switches)."""
    if pin is None:
        return
    owner = pins.get(pin)
    if owner is not None and not (shareable and owner[1]):
        raise ConfigError(field, "GPIO %d is already used by %s" % (pin, owner[0]))
    if owner is None:
        pins[pin] = (field, shareable)


def _check_bus(d, i, pins, uarts, names):
    field = "buses[%d]" % i
    _obj(d, field, _BUS_REQUIRED, _BUS_NULLABLE)
    b = BusConfig()
    b._raw = d
    b.name = _name(d, "name", field)
    _unique(names, b.name, field + ".name", "bus")
    b.uart = _int(d, "uart", field, 0, UART_MAX)
    if b.uart in uarts:
        raise ConfigError(
            field + ".uart", "UART %d already carries bus %r" % (b.uart, uarts[b.uart])
        )
    uarts[b.uart] = b.name
    b.baudrate = _int(d, "baudrate", field, 1, 1000000)
    if b.baudrate not in BAUDRATES:
        raise ConfigError(
            field + ".baudrate",
            "%d is not a standard rate (%s)" % (b.baudrate, ", ".join([str(r) for r in BAUDRATES])),
        )
    bits = d.get("bits")
    if bits != 8 or not _is_int(bits):
        raise ConfigError(
            field + ".bits", "must be 8, not %r (Modbus RTU sends 8 data bits)" % (bits,)
        )
    b.bits = 8
    parity = d.get("parity")
    if parity is not None and parity not in _PARITIES:
        raise ConfigError(field + ".parity", 'must be null, "N", "E" or "O", not %r' % (parity,))
    b.parity_name = parity or "N"
    b.parity = _PARITIES[b.parity_name]
    b.stop = _int(d, "stop", field, 1, 2)
    b.tx = _int(d, "tx", field, 0, PIN_MAX, nullable=True)
    b.rx = _int(d, "rx", field, 0, PIN_MAX, nullable=True)
    b.de_pin = _int(d, "de_pin", field, 0, PIN_MAX, nullable=True)
    _claim_pin(pins, b.tx, field + ".tx")
    _claim_pin(pins, b.rx, field + ".rx")
    _claim_pin(pins, b.de_pin, field + ".de_pin")
    return b


def _check_device(d, i, buses, pins, names, addresses, profiles_dir, warnings):
    field = "devices[%d]" % i
    _obj(d, field, _DEVICE_REQUIRED, _DEVICE_NULLABLE)
    dev = DeviceConfig()
    dev._raw = d
    dev.name = _name(d, "name", field)
    _unique(names, dev.name, field + ".name", "device")
    dev.bus = _text(d, "bus", field, NAME_MAX)
    bus = None
    for b in buses:
        if b.name == dev.bus:
            bus = b
    if bus is None:
        raise ConfigError(
            field + ".bus",
            "%r is not a bus (buses: %s)" % (dev.bus, ", ".join([b.name for b in buses])),
        )
    dev.profile_name = _text(d, "profile", field, NAME_MAX)
    try:
        profile = load_profile(dev.profile_name, profiles_dir)
    except ProfileError as e:
        raise ConfigError(field + ".profile", "cannot be used: %s" % e)
    dev.profile = profile
    dev.address = _int(d, "address", field, 1, 247)
    key = (dev.bus, dev.address)
    if key in addresses:
        raise ConfigError(
            field + ".address",
            "address %d on bus %r is already device %r" % (dev.address, dev.bus, addresses[key]),
        )
    addresses[key] = dev.name
    dev.poll_s = _number(d, "poll_s", field, 0, 3600, lo_open=True)
    timeout_ms = _int(d, "timeout_ms", field, 1, 10000, nullable=True)
    dev.timeout_ms = profile.response_timeout_ms if timeout_ms is None else timeout_ms
    dev.power_pin = _int(d, "power_pin", field, 0, PIN_MAX, nullable=True)
    _claim_pin(pins, dev.power_pin, field + ".power_pin", shareable=True)
    dev.fail_limit = _int(d, "fail_limit", field, 1, 1000)
    dev.backoff_s = _number(d, "backoff_s", field, 0, 86400)
    if (
        profile.baudrate != bus.baudrate
        or profile.parity != bus.parity_name
        or profile.stopbits != bus.stop
    ):
        warnings.append(
            "%s: bus %s runs %d 8%s%d, profile %s ships as %d 8%s%d (reconfigured device?)"
            % (
                field,
                bus.name,
                bus.baudrate,
                bus.parity_name,
                bus.stop,
                profile.name,
                profile.baudrate,
                profile.parity,
                profile.stopbits,
            )
        )
    return dev


def _check_channel(d, i, devices, names, sources):
    field = "channels[%d]" % i
    _obj(d, field, _CHANNEL_REQUIRED, _NONE)
    ch = ChannelConfig()
    ch._raw = d
    ch.name = _name(d, "name", field)
    _unique(names, ch.name, field + ".name", "channel")
    ch.device = _text(d, "device", field, NAME_MAX)
    dev = None
    for x in devices:
        if x.name == ch.device:
            dev = x
    if dev is None:
        raise ConfigError(
            field + ".device",
            "%r is not a device (devices: %s)" % (ch.device, ", ".join([x.name for x in devices])),
        )
    ch.source = _text(d, "source", field, NAME_MAX)
    have = dev.profile.channel_names
    if ch.source not in have:
        raise ConfigError(
            field + ".source",
            "profile %r of device %r has no channel %r (it has: %s)"
            % (dev.profile_name, dev.name, ch.source, ", ".join(have)),
        )
    key = (ch.device, ch.source)
    if key in sources:
        raise ConfigError(
            field + ".source", "%s.%s is already channel %r" % (key[0], key[1], sources[key])
        )
    sources[key] = ch.name
    return ch


def _check_uplink(d, station):
    field = "uplink"
    _obj(d, field, _UPLINK_REQUIRED, _UPLINK_NULLABLE)
    u = UplinkConfig()
    u._raw = d
    u.host = _text(d, "host", field, 253)
    if " " in u.host:
        raise ConfigError("uplink.host", "%r contains a space" % u.host)
    u.port = _int(d, "port", field, 1, 65535)
    u.keepalive_s = _int(d, "keepalive_s", field, 1, 65535)
    cid = _text(d, "client_id", field, 64, nullable=True)
    u.client_id = station if cid is None else cid
    u.topic_prefix = _text(d, "topic_prefix", field, 64)
    p = u.topic_prefix
    if "+" in p or "#" in p:
        raise ConfigError("uplink.topic_prefix", "%r contains an MQTT wildcard (+ or #)" % p)
    if p[0] == "/" or p[-1] == "/" or "//" in p:
        raise ConfigError("uplink.topic_prefix", "%r has an empty topic level" % p)
    u.user = _text(d, "user", field, 256, nullable=True)
    u.password = _text(d, "password", field, 256, nullable=True)
    if u.password is not None and u.user is None:
        raise ConfigError("uplink.password", "is set without uplink.user (MQTT 3.1.1 §3.1.2.9)")
    return u


def _check_station(d):
    return _name(d, "station", "", STATION_MAX)


def validate(d, profiles_dir=None):
    """Check a decoded config document; the ``Config``, or ``ConfigError`` at the first
    problem. ``profiles_dir``: where device profiles live (default: the shipped ones)."""
    _obj(d, "", _TOP_REQUIRED, _NONE)
    schema = d["schema"]
    if not _is_int(schema):
        raise ConfigError("schema", "must be an integer, not %s" % _kind(schema))
    if schema != SCHEMA:
        raise ConfigError(
            "schema", "version %d is not supported (this firmware reads %d)" % (schema, SCHEMA)
        )
    cfg = Config()
    cfg.station = _check_station(d)
    pins = {}  # type: dict
    names = []  # type: list
    uarts = {}  # type: dict
    for i, b in enumerate(_list(d, "buses", MAX_BUSES)):
        cfg.buses.append(_check_bus(b, i, pins, uarts, names))
    names = []
    addresses = {}  # type: dict
    for i, x in enumerate(_list(d, "devices", MAX_DEVICES)):
        cfg.devices.append(
            _check_device(x, i, cfg.buses, pins, names, addresses, profiles_dir, cfg.warnings)
        )
    names = []
    sources = {}  # type: dict
    for i, c in enumerate(_list(d, "channels", MAX_CHANNELS)):
        cfg.channels.append(_check_channel(c, i, cfg.devices, names, sources))
    cfg.uplink = _check_uplink(d["uplink"], cfg.station)
    cfg.validity_fraction = _number(d, "validity_fraction", "", 0, 1, lo_open=True)

    s = d["store"]
    _obj(s, "store", _STORE_REQUIRED, _NONE)
    cfg.store._raw = s
    cfg.store.dir = _text(s, "dir", "store", 64)
    cfg.store.slot_size = _int(s, "slot_size", "store", 64, ERASE_BLOCK)
    cfg.store.segments = _int(s, "segments", "store", 1, 1024)
    cfg.store.slots_per_segment = _int(s, "slots_per_segment", "store", 1, 1024)
    seg = cfg.store.slot_size * cfg.store.slots_per_segment
    if seg > ERASE_BLOCK:
        cfg.warnings.append(
            "store: a segment of %d bytes spans more than one %d-byte erase block; LittleFS "
            "rewrites the rest of the file on every slot write" % (seg, ERASE_BLOCK)
        )

    t = d["time"]
    _obj(t, "time", _TIME_REQUIRED, _TIME_NULLABLE)
    cfg.time._raw = t
    cfg.time.ntp_host = _text(t, "ntp_host", "time", 253, nullable=True)
    off = _number(t, "utc_offset_h", "time", -12, 14)
    if off * 4 != int(off * 4):
        raise ConfigError("time.utc_offset_h", "%r is not a whole number of quarter hours" % off)
    cfg.time.utc_offset_h = off

    w = d["watchdog"]
    _obj(w, "watchdog", _WATCHDOG_REQUIRED, _NONE)
    cfg.watchdog._raw = w
    cfg.watchdog.timeout_ms = _int(w, "timeout_ms", "watchdog", WDT_MIN_MS, WDT_MAX_MS)

    for dev in cfg.devices:
        if not cfg.channels_of(dev.name):
            cfg.warnings.append("device %s: no channel publishes from it" % dev.name)
    for b in cfg.buses:
        if not cfg.devices_on(b.name):
            cfg.warnings.append("bus %s: no device on it" % b.name)
    return cfg


# ------------------------------------------------------------------------ files


def _parse(raw):
    try:
        return json.loads(raw)
    except ValueError as e:  # includes UnicodeDecodeError on CPython
        raise ConfigError("file", "not valid JSON (%s)" % e)


def load_config(path, fs=None, profiles_dir=None):
    """The ``Config`` from ``path``, else from ``path.bak`` (``source`` says which; a
    warning names why the primary was passed over). ``ConfigError`` when neither copy is
    usable: the primary's own error when it exists (else the backup's, else field
    ``file``), with ``reasons`` listing every copy's."""
    errors = []  # type: list

    def check(raw):
        try:
            return validate(_parse(raw), profiles_dir)
        except ConfigError as e:
            errors.append(e)
            raise

    try:
        cfg, source = read_with_fallback(path, check, fs)
    except NoValidCopy as e:
        err = errors[0] if errors else ConfigError("file", "; ".join(e.reasons))
        err.reasons = e.reasons
        raise err
    cfg.source = source
    if source == SOURCE_BACKUP:
        why = str(errors[0]) if errors else "missing or unreadable"
        cfg.warnings.append("loaded %s.bak: %s was unusable (%s)" % (path, path, why))
    return cfg


def save_config(path, d, fs=None, profiles_dir=None):
    """Validate ``d`` and write it atomically (the old file becomes ``path.bak``).
    Returns the ``Config``; ``ConfigError`` (and nothing written) when ``d`` is invalid."""
    cfg = validate(d, profiles_dir)
    write_atomic(path, json.dumps(d).encode(), fs)
    return cfg


def safe_mode_uplink(path, fs=None):
    """``(station, UplinkConfig)`` salvaged from the first copy of an unusable config
    whose ``station`` and ``uplink`` are valid by themselves, else ``(None, None)``: in
    safe mode the station still reports itself when it can."""

    def check(raw):
        d = _parse(raw)
        if not isinstance(d, dict):
            raise ConfigError("config", "must be a JSON object")
        station = _check_station(d)
        return station, _check_uplink(d.get("uplink"), station)

    try:
        return read_with_fallback(path, check, fs)[0]
    except NoValidCopy:
        return None, None


def _clip(text):
    text = str(text)
    if len(text) > PROBLEM_MAX:
        return text[: PROBLEM_MAX - 3] + "..."
    return text


def safe_mode_status(error, station=None):
    """The retained status a station publishes when it cannot run its config:
    ``{"online": true, "mode": "safe", "station": ..., "schema": 1, "error": {...}}``
    where ``error`` has ``kind`` ("config", "key" or "internal"), ``field`` and
    ``problem`` (texts clipped to ``PROBLEM_MAX``), and for a config the reason each
    copy was rejected (``copies``)."""
    if isinstance(error, ConfigError):
        info = {"kind": "config", "field": error.field, "problem": _clip(error.problem)}
        if error.reasons:
            info["copies"] = [_clip(r) for r in error.reasons]
    elif isinstance(error, DeviceKeyError):
        info = {"kind": "key", "field": "key", "problem": _clip(error.problem)}
    else:
        info = {
            "kind": "internal",
            "field": type(error).__name__,
            "problem": _clip(error),
        }
    return {"online": True, "mode": "safe", "station": station, "schema": SCHEMA, "error": info}


def _check_key(raw):
    n = len(raw)
    if n < KEY_MIN_BYTES:
        raise ValueError("%d bytes, at least %d needed" % (n, KEY_MIN_BYTES))
    if n > KEY_MAX_BYTES:
        raise ValueError("%d bytes, at most %d allowed" % (n, KEY_MAX_BYTES))
    first = raw[0]
    for b in raw:
        if b != first:
            return bytes(raw)
    raise ValueError("every byte is 0x%02x (erased or zero-filled, not a key)" % first)


def load_key(path, fs=None):
    """The device key (raw bytes) from ``path``, else ``path.bak``; ``DeviceKeyError``
    naming the path and every copy's problem when neither is usable."""
    try:
        return read_with_fallback(path, _check_key, fs)[0]
    except NoValidCopy as e:
        raise DeviceKeyError(path, "; ".join(e.reasons))
