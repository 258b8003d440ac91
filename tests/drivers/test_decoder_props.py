"""Property tests of the decoder (CPython only, hypothesis).

* encode -> decode round trip for every register type and word order, both through
  ``decode_value`` and through a compiled profile and ``decode``;
* the integer-arithmetic float32 decoder agrees with ``struct`` on every bit pattern;
* arbitrary register images never make ``decode`` raise: bad data only ever becomes a
  flag, and the flags are consistent with the values.
"""

from __future__ import annotations

import math
import struct
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.decoder import (
    TYPE_NAMES,
    WORD_ORDERS,
    decode,
    decode_value,
    encode_value,
    flag_for_failure,
)
from drivers.flags import ALL
from drivers.profile import Profile, list_profiles, load_profile

INT_RANGES = {
    "uint16": (0, 0xFFFF),
    "int16": (-0x8000, 0x7FFF),
    "uint32": (0, 0xFFFFFFFF),
    "int32": (-0x80000000, 0x7FFFFFFF),
}

TYPE_AND_ORDER = [
    (t, o) for t in TYPE_NAMES for o in ((None,) if t in ("uint16", "int16") else WORD_ORDERS)
]


def raw_values(t: str) -> st.SearchStrategy[float]:
    if t == "float32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    lo, hi = INT_RANGES[t]
    return st.integers(lo, hi)


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[str, str | None, float]:
    t, order = draw(st.sampled_from(TYPE_AND_ORDER))
    return t, order, draw(raw_values(t))


def _one_channel(t: str, order: str | None, missing: dict[str, object] | None = None) -> Profile:
    ch: dict[str, object] = {
        "name": "x",
        "function": 4,
        "address": 0,
        "type": t,
        "raw_unit": "ppb",
        "unit": "ppb",
        "range": [-1e40, 1e40],
    }
    if order is not None:
        ch["word_order"] = order
    if missing is not None:
        ch["missing"] = missing
    return Profile.from_dict(
        {
            "format": 1,
            "name": "prop",
            "title": "t",
            "source": "property test",
            "serial": {"baudrate": 9600, "bytesize": 8, "parity": "N", "stopbits": 1},
            "default_address": 1,
            "response_timeout_ms": 100,
            "warmup_s": 0,
            "channels": [ch],
        }
    )


PROFILES = {(t, o): _one_channel(t, o) for t, o in TYPE_AND_ORDER}


@given(typed_values())
def test_encode_decode_value_round_trip(case: tuple[str, str | None, float]) -> None:
    t, order, raw = case
    out = [0, 0]
    encode_value(raw, t, order, out, 0)
    assert all(0 <= w <= 0xFFFF for w in out)
    got = decode_value(t, order, out, 0)
    assert got == raw
    if raw == 0 and t == "float32":
        assert math.copysign(1, got) == math.copysign(1, raw)  # -0.0 keeps its sign


@given(typed_values())
def test_encode_decode_through_a_profile(case: tuple[str, str | None, float]) -> None:
    t, order, raw = case
    p = PROFILES[(t, order)]
    out = [0, 0]
    encode_value(raw, t, order, out, 0)
    p.store(0, out, len(p.image))
    values = [0.0]
    flags = ["?"]
    decode(p, values, flags)
    assert flags == ["N"]
    assert values[0] == raw


@given(st.integers(0, 0xFFFFFFFF), st.sampled_from(WORD_ORDERS))
def test_float32_matches_struct_on_every_bit_pattern(bits: int, order: str) -> None:
    (expected,) = struct.unpack(">f", bits.to_bytes(4, "big"))
    hi, lo = bits >> 16, bits & 0xFFFF
    regs = [hi, lo] if order == "ABCD" else [lo, hi]
    got = decode_value("float32", order, regs, 0)
    if math.isnan(expected):
        assert math.isnan(got)
    else:
        assert got == expected
        assert math.copysign(1, got) == math.copysign(1, expected)


@given(st.sampled_from(["nan", "inf", "-inf"]), st.sampled_from(WORD_ORDERS))
def test_encoding_non_finite_floats(which: str, order: str) -> None:
    out = [0, 0]
    encode_value(float(which), "float32", order, out, 0)
    got = decode_value("float32", order, out, 0)
    assert str(got) == which


SHIPPED = [load_profile(name) for name in list_profiles()]
ALL_PROFILES = (
    SHIPPED
    + list(PROFILES.values())
    + [
        _one_channel("float32", "CDAB", {"nan": True, "sentinel": -9999.0}),
        _one_channel("int32", "ABCD", {"sentinel": -1}),
        _one_channel("uint16", None, {"sentinel": 0}),
    ]
)


@settings(max_examples=300)
@given(st.data())
def test_random_images_never_raise(data: st.DataObject) -> None:
    p = data.draw(st.sampled_from(ALL_PROFILES))
    for k, (_fn, _start, count) in enumerate(p.reads):
        regs = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
        p.store(k, array("H", regs), count)
    values = array("f", [0.0] * p.channel_count)
    flags = ["?"] * p.channel_count
    decode(p, values, flags)
    for i in range(p.channel_count):
        f = flags[i]
        assert len(f) == 1 and f in ALL
        if math.isnan(values[i]):
            assert f == "D", (p.name, i, f)
        if f in "NT":
            assert not math.isnan(values[i])
            upper = p.channel_upper[i] * p.channel_factor[i]  # reported unit
            if f == "T":  # (values are binary32 here, hence the tolerance)
                assert values[i] >= upper * (1 - 1e-6), (p.name, i, values[i])
            else:  # N: within range (T outranks N whatever the status says)
                assert values[i] <= upper * (1 + 1e-6), (p.name, i, values[i])


def test_failure_mapping_matches_the_codec_constants() -> None:
    rtu = pytest.importorskip("drivers.modbus.rtu")
    assert flag_for_failure(rtu.OK, 0) == "N"
    for status in (
        rtu.TIMEOUT,
        rtu.CRC_ERROR,
        rtu.TRUNCATED,
        rtu.WRONG_ADDRESS,
        rtu.WRONG_FUNCTION,
        rtu.BAD_LENGTH,
    ):
        assert flag_for_failure(status, 0) == "B"
    assert flag_for_failure(rtu.EXCEPTION, rtu.SERVER_DEVICE_BUSY) == "D"
