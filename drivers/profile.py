"""Device profiles: load, validate and compile a sensor's register map (format 1).

A profile (drivers/profiles/<name>.json, reference: docs/device-profiles.md) describes
one device model as data: serial settings, timing, and which registers hold which
channel, in which type and word order, with which scale, unit, measuring range,
"no data" marker and status registers. One generic driver reads any profile.

Loading does all the work that must not happen in the sampling loop:

* validation: every mistake is a ``ProfileError`` naming the profile, the field and what
  is wrong (unknown type or flag, missing key, overlapping registers, a unit conversion
  that is not defined...). Unknown keys are errors too (a typo must not be ignored);
  keys starting with ``x-`` are left for other tools (e.g. the HIL emulator), and
  ``notes`` holds free text.
* the read plan: all registers (channels, status, info) coalesced per function code with
  ``drivers.modbus.plan.plan_reads`` (gaps of up to ``MAX_GAP`` unused registers are read
  rather than split into another transaction: 8 registers = 16 bytes = ~18 ms at 9600
  baud, less than the fixed cost of one more transaction).
* the register image: one ``array('H')`` holding every read block back to back, filled by
  ``store`` after each read, and per-channel tuples (image index, type code, word order,
  scale, offset, upper limit, sentinel words, unit factor, applicable status entries)
  that ``drivers.decoder.decode`` walks without any dict lookup or allocation.

Addresses are 0-based PDU addresses as sent on the wire (document numbering "40001" is
holding register 0, "30001" input register 0).
"""

from array import array

from drivers.decoder import (
    FLOAT32,
    TYPE_NAMES,
    TYPE_WORDS,
    WORD_ORDERS,
    UnitError,
    conversion_factor,
    encode_value,
)
from drivers.flags import NORMAL, is_flag
from drivers.modbus.plan import plan_reads

FORMAT = 1
MAX_GAP = 8  # unused registers a read may span to save a transaction (see above)
FUNCTIONS = (3, 4)  # FC03 read holding registers, FC04 read input registers

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789-_"
_PARITIES = ("N", "E", "O")

_TOP_KEYS = (
    "format",
    "name",
    "title",
    "source",
    "serial",
    "default_address",
    "response_timeout_ms",
    "warmup_s",
    "channels",
    "status",
    "info",
    "notes",
)
_SERIAL_KEYS = ("baudrate", "bytesize", "parity", "stopbits")
_CHANNEL_KEYS = (
    "name",
    "function",
    "address",
    "type",
    "word_order",
    "scale",
    "offset",
    "raw_unit",
    "unit",
    "gas",
    "range",
    "missing",
    "notes",
)
_STATUS_KEYS = (
    "function",
    "address",
    "type",
    "bits",
    "codes",
    "other",
    "meaning",
    "channels",
    "notes",
)
_INFO_KEYS = ("name", "function", "address", "type", "word_order", "unit", "meaning", "notes")
_MISSING_KEYS = ("nan", "sentinel")


class ProfileError(ValueError):
    """A profile that cannot be used; ``profile``, ``field`` and ``problem`` as attributes."""

    def __init__(self, profile, field, problem):
        super().__init__("profile %r: %s: %s" % (profile, field, problem))
        self.profile = profile
        self.field = field
        self.problem = problem


def _is_int(v):
    return type(v) is int  # JSON true/false are not numbers (bool is an int on CPython)


def _is_number(v):
    return type(v) is int or type(v) is float


class _Checker:
    # Small helpers that raise ProfileError with the profile's name and the field path.

    def __init__(self, name):
        self.name = name

    def fail(self, field, problem):
        raise ProfileError(self.name, field, problem)

    def obj(self, d, field, allowed, required):
        if not isinstance(d, dict):
            self.fail(field, "must be an object, not %r" % (d,))
        for key in required:
            if key not in d:
                self.fail(field, "missing key %r" % key)
        for key in d:
            if key not in allowed and not (isinstance(key, str) and key.startswith("x-")):
                self.fail(field, "unknown key %r (allowed: %s)" % (key, ", ".join(allowed)))

    def text(self, d, key, field):
        v = d[key]
        if not isinstance(v, str) or not v:
            self.fail(field + "." + key, "must be a non-empty string, not %r" % (v,))
        return v

    def int_in(self, d, key, field, lo, hi):
        v = d[key]
        if not _is_int(v) or v < lo or v > hi:
            self.fail(field + "." + key, "must be an integer %d..%d, not %r" % (lo, hi, v))
        return v

    def number(self, d, key, field, default):
        if key not in d:
            return default
        v = d[key]
        if not _is_number(v):
            self.fail(field + "." + key, "must be a number, not %r" % (v,))
        return float(v)


class Profile:
    """A validated, compiled device profile. Build with ``load_profile`` or ``from_dict``.

    Descriptive attributes: ``name``, ``title``, ``source``, ``baudrate``, ``bytesize``,
    ``parity``, ``stopbits``, ``default_address``, ``response_timeout_ms``, ``warmup_s``,
    ``channel_names``, ``units``, ``raw_units``, ``gases``, ``ranges``, ``channel_count``,
    and the validated source entries ``channels``, ``status``, ``info`` (lists of dicts as
    in the JSON, for tools such as the emulator).

    Polling: ``reads`` is the list of ``(function, start, count)`` transactions per poll;
    after read ``k`` succeeds, ``store(k, registers, count)``; then
    ``drivers.decoder.decode(profile, values, flags)``. ``image`` is the register image
    (``array('H')``), ``read_offsets[k]`` where read ``k`` starts in it.

    The image and ``status_flags`` are state of this instance: give every device on a
    bus its own ``Profile`` (load it once per device), so that interleaved polls of two
    devices of the same model never share an image.
    """

    def __init__(self):
        # Use from_dict / load_profile; this only declares the attributes (the type
        # comments are for the check against the MicroPython stubs; no typing at run time).
        self.name = ""
        self.title = ""
        self.source = ""
        self.notes = None  # type: str | None
        self.baudrate = 0
        self.bytesize = 0
        self.parity = ""
        self.stopbits = 0
        self.default_address = 0
        self.response_timeout_ms = 0
        self.warmup_s = 0  # type: float
        self.channels = []  # type: list
        self.status = []  # type: list
        self.info = []  # type: list
        self.channel_count = 0
        self.channel_names = ()  # type: tuple
        self.units = ()  # type: tuple
        self.raw_units = ()  # type: tuple
        self.gases = ()  # type: tuple
        self.ranges = ()  # type: tuple
        self.reads = []  # type: list
        self.read_offsets = ()  # type: tuple
        self.read_counts = ()  # type: tuple
        self.image = array("H")
        self.channel_index = ()  # type: tuple
        self.channel_type = ()  # type: tuple
        self.channel_low_word_first = ()  # type: tuple
        self.channel_scale = ()  # type: tuple
        self.channel_offset = ()  # type: tuple
        self.channel_upper = ()  # type: tuple
        self.channel_sentinel_first = ()  # type: tuple
        self.channel_sentinel_second = ()  # type: tuple
        self.channel_factor = ()  # type: tuple
        self.channel_missing_nan = ()  # type: tuple
        self.channel_status = ()  # type: tuple
        self.status_index = ()  # type: tuple
        self.status_is_codes = ()  # type: tuple
        self.status_table = ()  # type: tuple
        self.status_other = ()  # type: tuple
        self.status_flags = []  # type: list
        self.info_fields = ()  # type: tuple

    @classmethod
    def from_dict(cls, d, expected_name=None):
        """Validate and compile a decoded JSON document; ``ProfileError`` if unusable."""
        name = "?"
        if expected_name is not None:
            name = expected_name
        elif isinstance(d, dict) and isinstance(d.get("name"), str):
            name = d["name"]
        c = _Checker(name)
        if not isinstance(d, dict):
            c.fail("profile", "must be a JSON object")
        if expected_name is not None and "name" in d and d["name"] != expected_name:
            c.fail("name", "is %r but the file is %r.json" % (d.get("name"), expected_name))
        c.obj(d, "profile", _TOP_KEYS, _TOP_KEYS[:9])
        if not _is_int(d["format"]) or d["format"] != FORMAT:
            c.fail("format", "must be %d, not %r" % (FORMAT, d["format"]))
        c.text(d, "name", "profile")
        for ch in name:
            if ch not in _NAME_CHARS:
                c.fail("name", "use only a-z, 0-9, '-' and '_' (it is a file name)")

        p = cls()
        p.name = name
        p.title = c.text(d, "title", "profile")
        p.source = c.text(d, "source", "profile")
        p.notes = d.get("notes")

        serial = d["serial"]
        c.obj(serial, "serial", _SERIAL_KEYS, _SERIAL_KEYS)
        p.baudrate = c.int_in(serial, "baudrate", "serial", 300, 921600)
        p.bytesize = c.int_in(serial, "bytesize", "serial", 7, 8)
        p.parity = serial["parity"]
        if p.parity not in _PARITIES:
            c.fail("serial.parity", "must be one of N, E, O, not %r" % (p.parity,))
        p.stopbits = c.int_in(serial, "stopbits", "serial", 1, 2)
        p.default_address = c.int_in(d, "default_address", "profile", 1, 247)
        p.response_timeout_ms = c.int_in(d, "response_timeout_ms", "profile", 1, 10000)
        warmup = d["warmup_s"]
        if not _is_number(warmup) or warmup < 0:
            c.fail("warmup_s", "must be a number >= 0, not %r" % (warmup,))
        p.warmup_s = warmup

        channels = d["channels"]
        if not isinstance(channels, list) or not channels:
            c.fail("channels", "must be a non-empty list")
        status = d.get("status", [])
        if not isinstance(status, list):
            c.fail("status", "must be a list")
        info = d.get("info", [])
        if not isinstance(info, list):
            c.fail("info", "must be a list")
        p.channels = channels
        p.status = status
        p.info = info

        chans = [_check_channel(c, channels[i], i) for i in range(len(channels))]
        names = [ch[0] for ch in chans]
        for i in range(len(names)):
            if names[i] in names[:i]:
                c.fail("channels[%d].name" % i, "duplicate channel name %r" % names[i])
        _check_overlaps(c, chans)
        stats = [_check_status(c, status[i], i, names) for i in range(len(status))]
        for i in range(len(stats)):
            fn, addr = stats[i][0], stats[i][1]
            for ch in chans:
                if ch[1] == fn and ch[2] <= addr < ch[2] + TYPE_WORDS[ch[3]]:
                    c.fail(
                        "status[%d].address" % i,
                        "register %d overlaps channel %r" % (addr, ch[0]),
                    )
        infos = [_check_info(c, info[i], i) for i in range(len(info))]
        for i in range(len(infos)):
            for k in range(i):
                if infos[k][0] == infos[i][0]:
                    c.fail("info[%d].name" % i, "duplicate info name %r" % infos[i][0])

        # Read plan over everything the poll needs, and the image layout.
        spans = [(ch[1], ch[2], TYPE_WORDS[ch[3]]) for ch in chans]
        spans += [(s[0], s[1], 1) for s in stats]
        spans += [(f[1], f[2], TYPE_WORDS[f[3]]) for f in infos]
        p.reads = plan_reads(spans, max_gap=MAX_GAP)
        offsets = []
        total = 0
        for _fn, _start, count in p.reads:
            offsets.append(total)
            total += count
        p.read_offsets = tuple(offsets)
        p.read_counts = tuple(r[2] for r in p.reads)
        p.image = array("H", [0] * total)

        def index_of(function, address):
            for k in range(len(p.reads)):
                fn, start, count = p.reads[k]
                if fn == function and start <= address < start + count:
                    return offsets[k] + address - start
            raise AssertionError("register not in the read plan")  # plan_reads covers all

        # Per-channel tables for the decoder (parallel tuples, index = channel number).
        p.channel_count = len(chans)
        p.channel_names = tuple(names)
        p.units = tuple(ch[8] for ch in chans)
        p.raw_units = tuple(ch[7] for ch in chans)
        p.gases = tuple(ch[9] for ch in chans)
        p.ranges = tuple((ch[10], ch[11]) for ch in chans)
        p.channel_index = tuple(index_of(ch[1], ch[2]) for ch in chans)
        p.channel_type = tuple(ch[3] for ch in chans)
        p.channel_low_word_first = tuple(ch[4] == "CDAB" for ch in chans)
        p.channel_scale = tuple(ch[5] for ch in chans)
        p.channel_offset = tuple(ch[6] for ch in chans)
        p.channel_upper = tuple(ch[11] for ch in chans)
        p.channel_sentinel_first = tuple(ch[12] for ch in chans)
        p.channel_sentinel_second = tuple(ch[13] for ch in chans)
        p.channel_factor = tuple(ch[14] for ch in chans)
        p.channel_missing_nan = tuple(ch[15] for ch in chans)

        # Status tables and, per channel, which status entries apply to it.
        p.status_index = tuple(index_of(s[0], s[1]) for s in stats)
        p.status_is_codes = tuple(s[2] for s in stats)
        p.status_table = tuple(s[3] for s in stats)
        p.status_other = tuple(s[4] for s in stats)
        p.status_flags = [NORMAL] * len(stats)  # decode's scratch: one flag per entry
        per_channel = []
        for name_ in names:
            per_channel.append(
                tuple(k for k in range(len(stats)) if stats[k][5] is None or name_ in stats[k][5])
            )
        p.channel_status = tuple(per_channel)

        p.info_fields = tuple((f[0], index_of(f[1], f[2]), f[3], f[4]) for f in infos)
        return p

    def store(self, read_index, registers, count):
        """Copy the ``count`` registers of read ``read_index`` into the image.

        ``registers`` is an ``array('H')``, list or anything indexable holding 0..0xFFFF
        (as the Modbus master returns them; ``array('H')`` silently truncates larger
        values on MicroPython). ``count`` must equal the read's planned count: a short
        answer is the master's BAD_LENGTH, never a partial image. Allocates nothing.
        """
        n = self.read_counts[read_index]
        if count != n:
            raise ValueError("read %d has %d registers, got %d" % (read_index, n, count))
        img = self.image
        base = self.read_offsets[read_index]
        for i in range(n):
            img[base + i] = registers[i]

    def __repr__(self):
        return "<Profile %s: %s>" % (self.name, ", ".join(self.channel_names))


def _field_type(c, e, field):
    # (type code, word order or None) of a channel/info entry.
    tname = e["type"]
    t = -1
    for k in range(len(TYPE_NAMES)):
        if TYPE_NAMES[k] == tname:
            t = k
    if t < 0:
        c.fail(field + ".type", "unknown type %r (known: %s)" % (tname, ", ".join(TYPE_NAMES)))
    wo = e.get("word_order")
    if TYPE_WORDS[t] == 2:
        if wo is None:
            c.fail(field + ".word_order", "missing: %s spans two registers (ABCD or CDAB)" % tname)
        if wo not in WORD_ORDERS:
            c.fail(field + ".word_order", "must be ABCD or CDAB, not %r" % (wo,))
    elif "word_order" in e:
        c.fail(field + ".word_order", "applies only to 32-bit types, not %s" % tname)
    return t, wo


def _register(c, e, field, words):
    fn = e["function"]
    if not _is_int(fn) or fn not in FUNCTIONS:
        c.fail(field + ".function", "must be 3 (holding) or 4 (input), not %r" % (fn,))
    c.int_in(e, "address", field, 0, 0x10000 - words)
    return fn, e["address"]


def _check_channel(c, e, i):
    field = "channels[%d]" % i
    if isinstance(e, dict) and isinstance(e.get("name"), str):
        field = "channels[%d] (%s)" % (i, e["name"])
    c.obj(
        e,
        field,
        _CHANNEL_KEYS,
        ("name", "function", "address", "type", "raw_unit", "unit", "range"),
    )
    name = c.text(e, "name", field)
    t, wo = _field_type(c, e, field)
    fn, addr = _register(c, e, field, TYPE_WORDS[t])
    scale = c.number(e, "scale", field, 1.0)
    if scale == 0:
        c.fail(field + ".scale", "must not be 0")
    offset = c.number(e, "offset", field, 0.0)
    raw_unit = c.text(e, "raw_unit", field)
    unit = c.text(e, "unit", field)
    gas = e.get("gas")
    if gas is not None and (not isinstance(gas, str) or not gas):
        c.fail(field + ".gas", "must be a non-empty string, not %r" % (gas,))
    try:
        factor = conversion_factor(raw_unit, unit, gas)
    except UnitError as err:
        c.fail(field + ".unit", str(err))
    rng = e["range"]
    if (
        not isinstance(rng, list)
        or len(rng) != 2
        or not _is_number(rng[0])
        or not _is_number(rng[1])
        or not rng[0] < rng[1]
    ):
        c.fail(
            field + ".range", "must be [lower, upper] numbers with lower < upper, not %r" % (rng,)
        )
    sent0 = -1  # never equal to a register (0..0xFFFF)
    sent1 = -1
    nan = False
    if "missing" in e:
        m = e["missing"]
        c.obj(m, field + ".missing", _MISSING_KEYS, ())
        if not m:
            c.fail(field + ".missing", "give nan and/or sentinel")
        if "nan" in m:
            if m["nan"] is not True and m["nan"] is not False:
                c.fail(field + ".missing.nan", "must be true or false")
            if m["nan"] and t != FLOAT32:
                c.fail(field + ".missing.nan", "only float32 has NaN, not %s" % TYPE_NAMES[t])
            nan = m["nan"]
        if "sentinel" in m:
            s = m["sentinel"]
            words = [0, 0]
            try:
                if not _is_number(s) or s != s:
                    raise ValueError("must be a number")
                encode_value(s, t, wo, words, 0)
            except ValueError as err:
                c.fail(field + ".missing.sentinel", "%r: %s" % (s, err))
            sent0 = words[0]
            if TYPE_WORDS[t] == 2:
                sent1 = words[1]
    # (name, fn, addr, type, word order, scale, offset, raw_unit, unit, gas,
    #  lower, upper, sentinel word 0, sentinel word 1, factor, nan-means-missing)
    return (
        name,
        fn,
        addr,
        t,
        wo,
        scale,
        offset,
        raw_unit,
        unit,
        gas,
        float(rng[0]),
        float(rng[1]),
        sent0,
        sent1,
        factor,
        nan,
    )


def _check_overlaps(c, chans):
    # Two channels must not share a register: that is always a transcription error.
    for i in range(len(chans)):
        a = chans[i]
        a_end = a[2] + TYPE_WORDS[a[3]]
        for k in range(i):
            b = chans[k]
            if a[1] == b[1] and a[2] < b[2] + TYPE_WORDS[b[3]] and b[2] < a_end:
                c.fail(
                    "channels[%d] (%s).address" % (i, a[0]),
                    "registers %d..%d (FC%02d) overlap channel %r" % (a[2], a_end - 1, a[1], b[0]),
                )


def _flag(c, field, v):
    if not isinstance(v, str) or not is_flag(v):
        c.fail(field, "unknown flag %r (HJ 212 flags: N T F M S D C B)" % (v,))
    return v


def _int_key(c, field, key, hi):
    if not isinstance(key, str) or not key.isdigit() or int(key) > hi:
        c.fail(field, "key %r must be a decimal integer 0..%d" % (key, hi))
    return int(key)


def _check_status(c, e, i, names):
    field = "status[%d]" % i
    c.obj(e, field, _STATUS_KEYS, ("function", "address", "type"))
    if e["type"] != "uint16":
        c.fail(field + ".type", "status registers are uint16, not %r" % (e["type"],))
    fn, addr = _register(c, e, field, 1)
    if ("bits" in e) == ("codes" in e):
        c.fail(field, "give exactly one of 'bits' or 'codes'")
    if "bits" in e:
        bits = e["bits"]
        if not isinstance(bits, dict) or not bits:
            c.fail(field + ".bits", "must be a non-empty object {bit: flag}")
        if "other" in e:
            c.fail(field + ".other", "applies only to 'codes'")
        pairs = []
        for key in bits:
            bit = _int_key(c, field + ".bits", key, 15)
            pairs.append((bit, _flag(c, field + ".bits." + key, bits[key])))
        pairs.sort()
        table = tuple((1 << bit, f) for bit, f in pairs)
        keys = bits
        is_codes = False
        other = NORMAL
    else:
        codes = e["codes"]
        if not isinstance(codes, dict) or not codes:
            c.fail(field + ".codes", "must be a non-empty object {code: flag}")
        if "other" not in e:
            c.fail(field, "missing key 'other' (the flag for a code not listed)")
        other = _flag(c, field + ".other", e["other"])
        pairs = []
        for key in codes:
            code = _int_key(c, field + ".codes", key, 0xFFFF)
            pairs.append((code, _flag(c, field + ".codes." + key, codes[key])))
        pairs.sort()
        table = tuple(pairs)
        keys = codes
        is_codes = True
    if "meaning" in e:
        meaning = e["meaning"]
        if not isinstance(meaning, dict):
            c.fail(field + ".meaning", "must be an object")
        for key in meaning:
            if key not in keys:
                c.fail(field + ".meaning", "%r is not one of the bits/codes above" % (key,))
            if not isinstance(meaning[key], str):
                c.fail(field + ".meaning." + key, "must be a string")
    applies = None
    if "channels" in e:
        applies = e["channels"]
        if not isinstance(applies, list) or not applies:
            c.fail(field + ".channels", "must be a non-empty list of channel names")
        for n in applies:
            if n not in names:
                c.fail(field + ".channels", "no channel named %r" % (n,))
    return fn, addr, is_codes, table, other, applies


def _check_info(c, e, i):
    field = "info[%d]" % i
    if isinstance(e, dict) and isinstance(e.get("name"), str):
        field = "info[%d] (%s)" % (i, e["name"])
    c.obj(e, field, _INFO_KEYS, ("name", "function", "address", "type"))
    name = c.text(e, "name", field)
    t, wo = _field_type(c, e, field)
    fn, addr = _register(c, e, field, TYPE_WORDS[t])
    return name, fn, addr, t, wo


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------


def profiles_directory():
    """drivers/profiles next to this module (source, .mpy or installed package alike).

    Frozen firmware has no file system path for its modules: pass ``directory``.
    """
    path = __file__
    cut = max(path.rfind("/"), path.rfind("\\"))
    base = path[:cut] if cut >= 0 else "."
    return base + "/profiles"


def list_profiles(directory=None):
    """Names of the profiles in ``directory`` (default: the shipped ones), sorted."""
    import os

    names = [f[:-5] for f in os.listdir(directory or profiles_directory()) if f.endswith(".json")]
    names.sort()
    return names


def _read_json(path, name):
    import json

    try:
        with open(path) as f:
            return json.load(f)
    except OSError as err:
        raise ProfileError(name, "file", "cannot read %s (%s)" % (path, err))
    except ValueError as err:
        raise ProfileError(name, "file", "%s is not valid JSON (%s)" % (path, err))


def load_profile(name, directory=None):
    """Load, validate and compile ``<directory>/<name>.json`` (default: the shipped ones).

    The file's ``name`` must equal ``name``. ``ProfileError`` on any problem.
    """
    if not isinstance(name, str) or not name:
        raise ProfileError(name, "name", "must be a non-empty string")
    for ch in name:
        if ch not in _NAME_CHARS:
            raise ProfileError(name, "name", "use only a-z, 0-9, '-' and '_'")
    path = (directory or profiles_directory()) + "/" + name + ".json"
    return Profile.from_dict(_read_json(path, name), name)


def load_profile_file(path):
    """Load, validate and compile a profile from any path. ``ProfileError`` on any problem."""
    return Profile.from_dict(_read_json(path, path))
