"""The one generic decoder: raw Modbus registers -> engineering values + HJ 212 flags.

Every device is described by a profile (drivers/profiles/*.json, compiled by
``drivers.profile``); this module turns the profile's register image into one value and
one flag per channel. It is the only place that knows how register words become numbers:

* register types ``uint16``, ``int16`` (two's complement), ``uint32``, ``int32`` and
  ``float32`` (IEEE 754 binary32). 32-bit types span two registers; the word order is
  ``ABCD`` (high word first, Modbus "big-endian", e.g. Teledyne T-series) or ``CDAB``
  (low word first, "float inverse", e.g. Teledyne 465M). Bytes within a register are
  always big-endian (Modbus Application Protocol v1.1b3, §4.2).
* ``value = raw * scale + offset`` in the instrument's raw unit, then ``* factor`` into the
  reported unit (see ``conversion_factor``).
* flags (HJ 212-2017 table 8, spec/standards.md §4), combined with
  ``drivers.flags.worse`` so the most serious condition wins:

  - D (instrument fault): the raw value is the profile's "no data" sentinel, or a float32
    that is NaN or infinite (never a measurement, whether or not the profile says the
    device uses NaN for "no data"); the value is set to NaN. Also from status registers.
  - T (above the upper measuring limit): value above ``range[1]`` (raw unit, after
    scale/offset); the value is kept. A value below ``range[0]`` is kept and not flagged:
    analysers legitimately report small negative concentrations around zero.
  - C, D, ... from status bits / status codes, applied to the channels they name.
  - B / D after a failed transaction: ``flag_for_failure`` and ``mark_all``.

``decode`` runs in the sampling loop, so it allocates nothing but the float objects that
arithmetic boxes on ports without immediate floats: it reads the profile's precomputed
tuples, decodes float32 with integer arithmetic and ``math.ldexp`` (``struct.unpack_from``
would allocate a result tuple per call) and writes into caller-owned containers.
"""

import math
import struct

from drivers._compat import const
from drivers.flags import (
    COMM_FAILURE,
    FAULT,
    NORMAL,
    OVER_RANGE,
    is_flag,
    worse,
)

# Register types. The code is an index into TYPE_NAMES and TYPE_WORDS.
UINT16 = const(0)
INT16 = const(1)
UINT32 = const(2)
INT32 = const(3)
FLOAT32 = const(4)
TYPE_NAMES = ("uint16", "int16", "uint32", "int32", "float32")
TYPE_WORDS = (1, 1, 2, 2, 2)

WORD_ORDERS = ("ABCD", "CDAB")

NAN = float("nan")
_INF = float("inf")

__all__ = [
    "FLOAT32",
    "INT16",
    "INT32",
    "TYPE_NAMES",
    "TYPE_WORDS",
    "UINT16",
    "UINT32",
    "WORD_ORDERS",
    "UnitError",
    "conversion_factor",
    "decode",
    "decode_value",
    "encode_value",
    "flag_for_failure",
    "mark_all",
    "read_info",
    "type_code",
]


class UnitError(ValueError):
    """No conversion is defined from a raw unit to a reported unit (for that gas)."""


def type_code(name):
    """The type code (``UINT16`` .. ``FLOAT32``) for a type name; ``ValueError`` if unknown."""
    for i in range(len(TYPE_NAMES)):
        if TYPE_NAMES[i] == name:
            return i
    raise ValueError("unknown register type %r (known: %s)" % (name, ", ".join(TYPE_NAMES)))


# ---------------------------------------------------------------------------------------
# Unit conversion (spec/standards.md §1; GB 3095-2012 amendment 2018 / GB 3095-2026
# reference state for gases: 298.15 K, 1013.25 hPa, molar volume 24.465 L/mol).
#
# factor = M / 24.465 converts ppb -> ug/m3 and, identically, ppm -> mg/m3. The values
# for the regulated gases are the spec's published (rounded) factors, so that a station
# reproduces the numbers regulators compute; isobutylene (the usual PID calibration gas,
# VOC reported "as isobutylene") is computed from its molar mass.
# ---------------------------------------------------------------------------------------

MOLAR_VOLUME_298 = 24.465  # L/mol at 298.15 K, 1013.25 hPa

GAS_FACTORS = {
    "NO2": 1.880,
    "NO": 1.227,
    "NOx": 1.880,  # NOx is reported as NO2 (GB 3095)
    "SO2": 2.619,
    "O3": 1.962,
    "CO": 1.145,
    "isobutylene": 56.106 / MOLAR_VOLUME_298,  # C4H8, 56.106 g/mol -> 2.2933
}

_MIXING = {"ppb": 1.0, "ppm": 1000.0}  # in ppb
_MASS = {"ug/m3": 1.0, "mg/m3": 1000.0}  # in ug/m3


def conversion_factor(raw_unit, unit, gas=None):
    """Multiplier from ``raw_unit`` to ``unit`` for ``gas`` (at 298.15 K).

    * same unit (any unit string, any gas): 1.0;
    * ppb/ppm -> ug/m3 or mg/m3: needs ``gas`` in ``GAS_FACTORS``; ppb -> ug/m3 and
      ppm -> mg/m3 use the factor itself, the cross pairs scale by 1000;
    * ug/m3 <-> mg/m3 and ppb <-> ppm: powers of 1000, gas-independent.

    Anything else raises ``UnitError`` (so a profile asking for it fails to load).
    """
    if raw_unit == unit:
        return 1.0
    if raw_unit in _MIXING and unit in _MIXING:
        return _MIXING[raw_unit] / _MIXING[unit]
    if raw_unit in _MASS and unit in _MASS:
        return _MASS[raw_unit] / _MASS[unit]
    if raw_unit in _MIXING and unit in _MASS:
        if gas is None:
            raise UnitError("converting %s to %s needs a gas" % (raw_unit, unit))
        if gas not in GAS_FACTORS:
            raise UnitError(
                "no ppb->ug/m3 factor for gas %r (known: %s)"
                % (gas, ", ".join(sorted(GAS_FACTORS)))
            )
        # x ppb * f = x*f ug/m3; a ppm is 1000 ppb, a mg/m3 is 1000 ug/m3.
        return GAS_FACTORS[gas] * _MIXING[raw_unit] / _MASS[unit]
    raise UnitError(
        "no conversion from %r to %r (targets: ug/m3, mg/m3, ppb, ppm, or the same unit)"
        % (raw_unit, unit)
    )


# ---------------------------------------------------------------------------------------
# Register words <-> raw values
# ---------------------------------------------------------------------------------------


def _f32(hi, lo):
    # IEEE 754 binary32 from its high and low 16-bit words, with integer arithmetic only
    # (no tuple from struct.unpack_from). Exact: the 24-bit significand times a power of
    # two is representable in binary32 and binary64 alike.
    e = (hi >> 7) & 0xFF
    m = ((hi & 0x7F) << 16) | lo
    if e == 0xFF:
        if m:
            return NAN
        return -_INF if hi & 0x8000 else _INF
    # normal: 1.m * 2^(e-127); zero and subnormals: 0.m * 2^-126
    v = math.ldexp(m | 0x800000, e - 150) if e else math.ldexp(m, -149)
    return -v if hi & 0x8000 else v


def decode_value(type, word_order, registers, index):
    """The raw value of one field at ``registers[index]`` (no scale, no flags).

    ``type`` is a type name or code; ``word_order`` ("ABCD"/"CDAB") matters only for
    32-bit types. Integer types give ``int`` for 16-bit and ``float`` for 32-bit (which
    keeps 32-bit values out of MicroPython's heap-allocated long integers).
    """
    t = type if isinstance(type, int) else type_code(type)
    a = registers[index]
    if t == UINT16:
        return a
    if t == INT16:
        return a - 0x10000 if a >= 0x8000 else a
    b = registers[index + 1]
    if word_order == "CDAB":
        a, b = b, a
    elif word_order != "ABCD":
        raise ValueError("word_order must be ABCD or CDAB, not %r" % (word_order,))
    if t == UINT32:
        return a * 65536.0 + b
    if t == INT32:
        return (a - 0x10000 if a >= 0x8000 else a) * 65536.0 + b
    return _f32(a, b)


_pack_buf = bytearray(4)


def encode_value(value, type, word_order, out, index):
    """Write the register words of raw ``value`` into ``out[index]`` (and ``out[index+1]``).

    The inverse of ``decode_value``, for symmetric tests and for computing sentinel words
    at load time. Integer types need an integral value inside the type's range, float32 a
    finite value within binary32 range or inf/nan; otherwise ``ValueError``. For 16-bit
    types ``word_order`` is ignored (pass None).

    The HIL emulator (hil_tests/emulate) deliberately does NOT use this function: it
    encodes with its own ``struct``-based code, so that a word-order or sign bug here
    cannot hide behind the same bug on the other side of the wire. Returns ``out``.
    """
    t = type if isinstance(type, int) else type_code(type)
    if t == FLOAT32:
        try:
            struct.pack_into(">f", _pack_buf, 0, value)
        except OverflowError:
            raise ValueError("%r is outside the float32 range" % (value,))
        hi = (_pack_buf[0] << 8) | _pack_buf[1]
        lo = (_pack_buf[2] << 8) | _pack_buf[3]
        # MicroPython packs a finite value beyond the binary32 range as inf, not raising.
        if (hi & 0x7F80) == 0x7F80 and value - value == 0:
            raise ValueError("%r is outside the float32 range" % (value,))
    else:
        if value != value or value - value != 0 or int(value) != value:
            raise ValueError("%s needs an integer, not %r" % (TYPE_NAMES[t], value))
        v = int(value)
        if t == UINT16:
            lo_lim, hi_lim = 0, 0xFFFF
        elif t == INT16:
            lo_lim, hi_lim = -0x8000, 0x7FFF
        elif t == UINT32:
            lo_lim, hi_lim = 0, 0xFFFFFFFF
        else:
            lo_lim, hi_lim = -0x80000000, 0x7FFFFFFF
        if v < lo_lim or v > hi_lim:
            raise ValueError("%r is outside the %s range" % (value, TYPE_NAMES[t]))
        if TYPE_WORDS[t] == 1:
            out[index] = v & 0xFFFF
            return out
        v &= 0xFFFFFFFF
        hi = v >> 16
        lo = v & 0xFFFF
    if word_order == "ABCD":
        out[index] = hi
        out[index + 1] = lo
    elif word_order == "CDAB":
        out[index] = lo
        out[index + 1] = hi
    else:
        raise ValueError("word_order must be ABCD or CDAB, not %r" % (word_order,))
    return out


# ---------------------------------------------------------------------------------------
# The sampling-loop decoder
# ---------------------------------------------------------------------------------------


def decode(profile, values, flags):
    """Decode ``profile.image`` into ``values`` and ``flags`` (one slot per channel).

    ``values`` is an ``array('f')`` or list of floats and ``flags`` a list, both at least
    ``len(profile.channel_names)`` long and owned by the caller; they are overwritten.
    Values are in the channel's reported unit (``profile.units``); a missing value is NaN
    with flag D. Never raises on register contents: bad data becomes a flag.
    """
    n = profile.channel_count
    if len(values) < n or len(flags) < n:
        raise ValueError("values and flags need %d slots" % n)
    img = profile.image

    # Status registers first: one flag per status entry, into the profile's scratch list.
    st_flags = profile.status_flags
    st_index = profile.status_index
    st_is_codes = profile.status_is_codes
    st_table = profile.status_table
    st_other = profile.status_other
    for s in range(len(st_index)):
        w = img[st_index[s]]
        if st_is_codes[s]:
            f = st_other[s]
            for code, code_flag in st_table[s]:
                if w == code:
                    f = code_flag
                    break
        else:
            f = NORMAL
            for mask, bit_flag in st_table[s]:
                if w & mask:
                    f = worse(f, bit_flag)
        st_flags[s] = f

    ch_index = profile.channel_index
    ch_type = profile.channel_type
    ch_low_first = profile.channel_low_word_first
    ch_sent0 = profile.channel_sentinel_first
    ch_sent1 = profile.channel_sentinel_second
    ch_scale = profile.channel_scale
    ch_offset = profile.channel_offset
    ch_upper = profile.channel_upper
    ch_factor = profile.channel_factor
    ch_status = profile.channel_status
    for i in range(n):
        j = ch_index[i]
        t = ch_type[i]
        a = img[j]
        flag = NORMAL
        if t <= INT16:
            missing = a == ch_sent0[i]
            raw = a - 0x10000 if t == INT16 and a >= 0x8000 else a
        else:
            b = img[j + 1]
            missing = a == ch_sent0[i] and b == ch_sent1[i]
            if ch_low_first[i]:
                a, b = b, a
            if t == FLOAT32:
                if (a & 0x7F80) == 0x7F80:  # exponent all ones: NaN or +-inf, no value
                    missing = True
                    raw = 0
                else:
                    raw = _f32(a, b)
            elif t == UINT32:
                raw = a * 65536.0 + b
            else:
                raw = (a - 0x10000 if a >= 0x8000 else a) * 65536.0 + b
        if missing:
            v = NAN
            flag = FAULT
        else:
            v = raw * ch_scale[i] + ch_offset[i]
            if v > ch_upper[i]:
                flag = OVER_RANGE
            if ch_factor[i] != 1.0:  # same-unit channels skip one float box
                v = v * ch_factor[i]
        for s in ch_status[i]:
            flag = worse(flag, st_flags[s])
        # A status flag (C, D) keeps the value: raw data are kept, the flag excludes it.
        values[i] = v
        flags[i] = flag


def mark_all(profile, values, flags, flag):
    """After a failed read: every channel gets NaN and ``flag`` (see ``flag_for_failure``)."""
    if not is_flag(flag):
        raise ValueError("not an HJ 212 flag: %r" % (flag,))
    for i in range(profile.channel_count):
        values[i] = NAN
        flags[i] = flag


# Status codes of drivers.modbus.rtu (not imported: the codec is a separate layer and this
# module must not depend on its import order). Keep in step with rtu.py.
_OK = const(0)
_TIMEOUT = const(1)
_CRC_ERROR = const(2)
_TRUNCATED = const(3)
_WRONG_ADDRESS = const(4)
_WRONG_FUNCTION = const(5)
_BAD_LENGTH = const(6)
_EXCEPTION = const(7)


def flag_for_failure(status, exception_code=0):
    """The HJ 212 flag for a transaction's outcome (``drivers.modbus.rtu`` status codes).

    ==============================  =====  ============================================
    status                          flag   why
    ==============================  =====  ============================================
    OK = 0                          N      nothing failed (decode sets the real flags)
    TIMEOUT = 1, CRC_ERROR = 2,     B      no valid frame from the instrument: the link
    TRUNCATED = 3,                         between instrument and data logger failed
    WRONG_ADDRESS = 4,                     (or another device answered) -- HJ 212's
    WRONG_FUNCTION = 5,                    "communication failure"
    BAD_LENGTH = 6
    EXCEPTION = 7                   D      a valid, CRC-checked exception response: the
                                           link works, the instrument itself refuses to
                                           deliver data (04 device failure, 06 busy e.g.
                                           during warm-up, 01/02/03 = the profile does
                                           not match the device). That is an instrument
                                           condition, not a comm failure.
    ==============================  =====  ============================================

    ``exception_code`` (1..255, only meaningful with EXCEPTION) does not change the flag
    today; it is accepted so that callers log it next to the flag. An unknown ``status``
    is a ``ValueError``: the codec and this table must not drift apart silently.
    """
    if status == _OK:
        return NORMAL
    if _TIMEOUT <= status <= _BAD_LENGTH:
        return COMM_FAILURE
    if status == _EXCEPTION:
        return FAULT
    raise ValueError("unknown Modbus transaction status %r" % (status,))


def read_info(profile):
    """The profile's ``info`` registers as ``{name: raw value}`` from the current image.

    For diagnostics and commissioning (gas type, range, sensor life...); allocates a dict,
    so not for the sampling loop.
    """
    out = {}
    img = profile.image
    for name, index, t, word_order in profile.info_fields:
        out[name] = decode_value(t, word_order, img, index)
    return out
