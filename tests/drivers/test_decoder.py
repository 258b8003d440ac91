"""The generic decoder: golden register vectors, flags, unit conversion, failure mapping
(drivers/decoder.py).

Shared test module: MicroPython subset, plain assert, no pytest (tests/mp/runner.py).
"""

import sys
from array import array

from drivers.decoder import (
    GAS_FACTORS,
    UnitError,
    conversion_factor,
    decode,
    decode_value,
    encode_value,
    flag_for_failure,
    mark_all,
    read_info,
)
from drivers.flags import ALL
from drivers.profile import Profile, load_profile

RUNS_ON_MICROPYTHON = True

NAN = float("nan")


def _close(a, b, tol=1e-6):
    return abs(a - b) <= tol * max(1.0, abs(b))


def _is_nan(x):
    return x != x


def _run(profile, registers):
    profile.store(0, registers, len(registers))
    values = array("f", [0.0] * profile.channel_count)
    flags = ["?"] * profile.channel_count
    decode(profile, values, flags)
    return values, flags


def _run_list(profile, registers):
    profile.store(0, registers, len(registers))
    values = [0.0] * profile.channel_count
    flags = ["?"] * profile.channel_count
    decode(profile, values, flags)
    return values, flags


# --- golden vectors -------------------------------------------------------------------


def test_no2_golden_abcd():
    p = load_profile("nox-analyser")
    # NO 10.0 ppb = 0x41200000, NO2 21.5 ppb = 0x41AC0000, NOx 31.5 ppb = 0x41FC0000
    values, flags = _run_list(p, [0x4120, 0, 0x41AC, 0x0000, 0x41FC, 0, 0])
    assert flags == ["N", "N", "N"], flags
    assert _close(values[1], 40.42), values
    assert _close(values[0], 12.27), values
    assert _close(values[2], 31.5 * 1.880), values


def test_no2_golden_cdab():
    p = load_profile("nox-analyser-cdab")
    values, flags = _run_list(p, [0, 0x4120, 0x0000, 0x41AC, 0, 0x41FC, 0])
    assert flags == ["N", "N", "N"], flags
    assert _close(values[1], 40.42), values
    assert _close(values[0], 12.27), values


def test_array_f_values():
    p = load_profile("nox-analyser")
    values, flags = _run(p, [0, 0, 0x41AC, 0, 0, 0, 0])
    assert abs(values[1] - 40.42) < 1e-4  # binary32 storage
    assert values[0] == 0.0 and flags[0] == "N"


def test_particulate_golden():
    p = load_profile("particulate")
    values, flags = _run_list(p, [35, 72])
    assert values == [35.0, 72.0] and flags == ["N", "N"]
    x10 = load_profile("particulate-x10")
    values, flags = _run_list(x10, [355, 720])
    assert _close(values[0], 35.5) and _close(values[1], 72.0), values
    assert flags == ["N", "N"]


def test_voc_pid_golden():
    p = load_profile("voc-pid")
    # gas type 1, range 20 ppm, reading 1234 = 123.4 ppb, span 100, life 87 %, status OK
    values, flags = _run_list(p, [1, 20, 1234, 100, 87, 0])
    assert flags == ["N"]
    assert _close(values[0], 123.4 * 56.106 / 24.465), values
    assert read_info(p) == {"gas_type": 1, "range": 20, "span_value": 100, "sensor_life": 87}


# --- missing data ---------------------------------------------------------------------


def test_nan_means_no_data():
    p = load_profile("nox-analyser")
    values, flags = _run_list(p, [0x7FC0, 0, 0x41AC, 0, 0xFFC0, 0x0001, 0])
    assert flags == ["D", "N", "D"], flags
    assert _is_nan(values[0]) and _is_nan(values[2])
    assert _close(values[1], 40.42)


def test_infinity_is_a_fault_not_a_value():
    p = load_profile("nox-analyser")
    values, flags = _run_list(p, [0x7F80, 0, 0xFF80, 0, 0, 0, 0])
    assert flags == ["D", "D", "N"], flags
    assert _is_nan(values[0]) and _is_nan(values[1])


def test_sentinel_means_no_data():
    for name in ("particulate", "particulate-x10"):
        p = load_profile(name)
        values, flags = _run_list(p, [0xFFFF, 20])
        assert flags == ["D", "N"], flags
        assert _is_nan(values[0])
        assert not _is_nan(values[1])


def test_sentinel_on_32_bit_types():
    d = _synthetic("int32", "CDAB", {"sentinel": -2})
    p = Profile.from_dict(d)
    values, flags = _run_list(p, [0xFFFE, 0xFFFF])
    assert flags == ["D"] and _is_nan(values[0])
    values, flags = _run_list(p, [0xFFFF, 0xFFFE])  # -65537 in CDAB: not the sentinel
    assert flags == ["N"] and values[0] == -65537.0, values


# --- range and status -----------------------------------------------------------------


def test_above_range_is_t_and_keeps_the_value():
    p = load_profile("particulate")
    values, flags = _run_list(p, [1001, 1000])
    assert flags == ["T", "N"], flags
    assert values == [1001.0, 1000.0]
    x10 = load_profile("particulate-x10")
    values, flags = _run_list(x10, [10001, 10000])  # the range is in ug/m3, after scale
    assert flags == ["T", "N"], flags
    nox = load_profile("nox-analyser")
    values, flags = _run_list(nox, [0, 0, 0x469C, 0x4040, 0, 0, 0])  # 20000.125 ppb
    assert flags == ["N", "T", "N"], flags
    assert _close(values[1], 20000.125 * 1.880)


def test_below_range_is_kept_unflagged():
    nox = load_profile("nox-analyser")
    values, flags = _run_list(nox, [0xBF00, 0, 0, 0, 0, 0, 0])  # -0.5 ppb around zero
    assert flags[0] == "N" and _close(values[0], -0.5 * 1.227)


def test_status_bit_calibration():
    p = load_profile("nox-analyser")
    values, flags = _run_list(p, [0, 0, 0x41AC, 0, 0, 0, 0x0001])
    assert flags == ["C", "C", "C"], flags
    assert _close(values[1], 40.42)  # the value is kept; the flag excludes it


def test_status_bit_fault_and_invalid():
    p = load_profile("nox-analyser")
    for word in (0x0002, 0x0004, 0x0006):
        _values, flags = _run_list(p, [0, 0, 0x41AC, 0, 0, 0, word])
        assert flags == ["D", "D", "D"], (word, flags)


def test_unmapped_status_bits_are_ignored():
    p = load_profile("nox-analyser")
    _values, flags = _run_list(p, [0, 0, 0x41AC, 0, 0, 0, 0xFFF8])
    assert flags == ["N", "N", "N"], flags


def test_combined_flags_use_severity():
    p = load_profile("nox-analyser")
    # calibration + fault -> D
    values, flags = _run_list(p, [0, 0, 0, 0, 0, 0, 0x0003])
    assert flags == ["D", "D", "D"], flags
    # above range + calibration -> C (C is more serious than T)
    values, flags = _run_list(p, [0x469C, 0x4040, 0, 0, 0, 0, 0x0001])
    assert flags[0] == "C", flags
    # NaN + calibration -> D, value NaN
    values, flags = _run_list(p, [0x7FC0, 0, 0, 0, 0, 0, 0x0001])
    assert flags == ["D", "C", "C"], flags
    assert _is_nan(values[0])


def test_status_codes():
    p = load_profile("voc-pid")
    for code, expected in ((0, "N"), (1, "C"), (2, "D"), (3, "D"), (4, "D"), (0xFFFF, "D")):
        values, flags = _run_list(p, [1, 20, 500, 100, 87, code])
        assert flags == [expected], (code, flags)
        assert _close(values[0], 50.0 * 56.106 / 24.465)


def test_status_applies_only_to_named_channels():
    d = {
        "format": 1,
        "name": "two-status",
        "title": "t",
        "source": "unit test",
        "serial": {"baudrate": 9600, "bytesize": 8, "parity": "E", "stopbits": 1},
        "default_address": 3,
        "response_timeout_ms": 100,
        "warmup_s": 0,
        "channels": [
            {
                "name": "a",
                "function": 3,
                "address": 0,
                "type": "uint16",
                "raw_unit": "ppm",
                "unit": "mg/m3",
                "gas": "CO",
                "range": [0, 100],
            },
            {
                "name": "b",
                "function": 3,
                "address": 1,
                "type": "int16",
                "raw_unit": "%",
                "unit": "%",
                "range": [-50, 50],
            },
        ],
        "status": [
            {"function": 3, "address": 2, "type": "uint16", "bits": {"15": "M"}, "channels": ["a"]},
            {
                "function": 3,
                "address": 3,
                "type": "uint16",
                "codes": {"0": "N", "7": "F"},
                "other": "D",
                "channels": ["b"],
            },
        ],
    }
    p = Profile.from_dict(d)
    values, flags = _run_list(p, [10, 0xFFF6, 0x8000, 0])
    assert flags == ["M", "N"], flags
    assert _close(values[0], 11.45) and values[1] == -10.0, values
    values, flags = _run_list(p, [10, 60, 0, 7])
    assert flags == ["N", "F"], flags
    values, flags = _run_list(p, [10, 60, 0, 1])
    assert flags == ["N", "D"], flags
    values, flags = _run_list(p, [10, 51, 0, 0])
    assert flags == ["N", "T"], flags


def test_decode_needs_enough_slots():
    p = load_profile("nox-analyser")
    try:
        decode(p, [0.0], ["N"])
    except ValueError:
        return
    raise AssertionError("short values accepted")


# --- unit conversion --------------------------------------------------------------------


def test_conversion_factors_from_the_spec():
    assert conversion_factor("ppb", "ug/m3", "NO2") == 1.880
    assert conversion_factor("ppb", "ug/m3", "NO") == 1.227
    assert conversion_factor("ppb", "ug/m3", "NOx") == 1.880
    assert conversion_factor("ppb", "ug/m3", "SO2") == 2.619
    assert conversion_factor("ppb", "ug/m3", "O3") == 1.962
    assert conversion_factor("ppm", "mg/m3", "CO") == 1.145
    assert _close(conversion_factor("ppb", "ug/m3", "isobutylene"), 2.29332, 1e-5)
    assert _close(conversion_factor("ppb", "mg/m3", "CO"), 0.001145)
    assert _close(conversion_factor("ppm", "ug/m3", "SO2"), 2619.0)
    for gas in GAS_FACTORS:
        assert conversion_factor("ppm", "mg/m3", gas) == conversion_factor("ppb", "ug/m3", gas)


def test_same_unit_and_powers_of_1000():
    assert conversion_factor("ug/m3", "ug/m3") == 1.0
    assert conversion_factor("ppb", "ppb", "NO2") == 1.0
    assert conversion_factor("%", "%") == 1.0
    assert conversion_factor("mg/m3", "ug/m3") == 1000.0
    assert conversion_factor("ug/m3", "mg/m3") == 0.001
    assert conversion_factor("ppm", "ppb") == 1000.0


def test_unknown_conversions_are_named_errors():
    for args in (
        ("ppb", "ug/m3", None),
        ("ppb", "ug/m3", "H2S"),
        ("ug/m3", "ppb", "NO2"),
        ("ppb", "mg", "NO2"),
        ("degC", "K", None),
    ):
        try:
            conversion_factor(*args)
        except UnitError as e:
            assert isinstance(e, ValueError)
            continue
        raise AssertionError(args)


# --- failures -----------------------------------------------------------------------


def test_flag_for_failure():
    assert flag_for_failure(0, 0) == "N"
    for status in (1, 2, 3, 4, 5, 6):  # TIMEOUT CRC_ERROR TRUNCATED WRONG_ADDRESS ...
        assert flag_for_failure(status, 0) == "B", status
    for code in (1, 2, 3, 4, 6):
        assert flag_for_failure(7, code) == "D", code
    try:
        flag_for_failure(8, 0)
    except ValueError:
        return
    raise AssertionError("unknown status accepted")


def test_mark_all():
    p = load_profile("nox-analyser")
    values = array("f", [1.0, 2.0, 3.0])
    flags = ["N", "N", "N"]
    mark_all(p, values, flags, flag_for_failure(1, 0))
    assert flags == ["B", "B", "B"]
    assert _is_nan(values[0]) and _is_nan(values[1]) and _is_nan(values[2])
    try:
        mark_all(p, values, flags, "X")
    except ValueError:
        return
    raise AssertionError("bad flag accepted")


# --- encode / decode of single values ---------------------------------------------------


def test_encode_golden_words():
    out = [0, 0]
    assert encode_value(21.5, "float32", "ABCD", out, 0) == [0x41AC, 0]
    assert encode_value(21.5, "float32", "CDAB", out, 0) == [0, 0x41AC]
    assert encode_value(-1, "int16", None, out, 0)[0] == 0xFFFF
    assert encode_value(-2, "int32", "ABCD", out, 0) == [0xFFFF, 0xFFFE]
    assert encode_value(0x12345678, "uint32", "CDAB", out, 0) == [0x5678, 0x1234]
    assert encode_value(65535, "uint16", None, out, 1) == [0x5678, 0xFFFF]


def test_decode_golden_words():
    assert decode_value("float32", "ABCD", [0x41AC, 0], 0) == 21.5
    assert decode_value("float32", "CDAB", [0, 0x41AC], 0) == 21.5
    assert decode_value("int16", None, [0x8000], 0) == -32768
    assert decode_value("uint16", None, [0x8000], 0) == 32768
    assert decode_value("int32", "ABCD", [0x8000, 0], 0) == -2147483648.0
    assert decode_value("uint32", "ABCD", [0xFFFF, 0xFFFF], 0) == 4294967295.0
    assert decode_value("float32", "ABCD", [0x0000, 0x0001], 0) == 2.0**-149
    assert decode_value("float32", "ABCD", [0x7F7F, 0xFFFF], 0) == 3.4028234663852886e38
    assert str(decode_value("float32", "ABCD", [0x8000, 0], 0)) == "-0.0"


def test_encode_rejects_what_the_type_cannot_hold():
    cases = (
        (65536, "uint16", None),
        (-1, "uint16", None),
        (32768, "int16", None),
        (1.5, "int16", None),
        (2**32, "uint32", "ABCD"),
        (-(2**31) - 1, "int32", "ABCD"),
        (1e39, "float32", "ABCD"),
        (NAN, "uint16", None),
        (1.0, "float32", "BADC"),
        (1, "float64", None),
    )
    for value, t, order in cases:
        try:
            encode_value(value, t, order, [0, 0], 0)
        except ValueError:
            continue
        raise AssertionError((value, t, order))


def _synthetic(t, order, missing=None):
    ch = {
        "name": "x",
        "function": 3,
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
    return {
        "format": 1,
        "name": "synthetic",
        "title": "t",
        "source": "unit test",
        "serial": {"baudrate": 19200, "bytesize": 8, "parity": "N", "stopbits": 2},
        "default_address": 1,
        "response_timeout_ms": 100,
        "warmup_s": 0,
        "channels": [ch],
    }


def test_decode_matches_encode_for_every_type():
    cases = (
        ("uint16", None, 40000),
        ("int16", None, -123),
        ("uint32", "ABCD", 3000000000),
        ("uint32", "CDAB", 70000),
        ("int32", "ABCD", -70000),
        ("int32", "CDAB", -5),
        ("float32", "ABCD", -1.25),
        ("float32", "CDAB", 1.5e-3),
    )
    for t, order, raw in cases:
        p = Profile.from_dict(_synthetic(t, order))
        regs = encode_value(raw, t, order, [0, 0], 0)
        values, flags = _run_list(p, regs[: len(p.image)])
        assert flags == ["N"], (t, order, flags)
        assert _close(values[0], raw, 1e-7), (t, order, raw, values)


# --- allocation -------------------------------------------------------------------------


def test_decode_allocates_only_float_boxes_on_micropython():
    if sys.implementation.name != "micropython":
        return  # CPython has no comparable counter; the loop is the same code
    import gc

    p = load_profile("nox-analyser")
    p.store(0, [0x4120, 0, 0x41AC, 0, 0x41FC, 0, 0x0001], 7)
    values = array("f", [0.0] * 3)
    flags = ["N"] * 3
    decode(p, values, flags)
    gc.collect()
    gc.disable()
    try:
        before = gc.mem_alloc()
        x = values[0] * 1.5  # one boxed float: the unit of unavoidable allocation
        box = gc.mem_alloc() - before
        before = gc.mem_alloc()
        for _ in range(100):
            decode(p, values, flags)
        per_call = (gc.mem_alloc() - before) / 100
    finally:
        gc.enable()
    assert x == values[0] * 1.5 and box > 0
    # float32 channel: ldexp, *scale, +offset, *factor (+ a sign flip) = at most 5 boxes.
    # A tuple, list, slice or struct result per call would push this over.
    assert per_call <= 3 * 5 * box, (per_call, box)


def test_all_flags_are_hj212_letters():
    p = load_profile("nox-analyser")
    for word in range(8):
        _values, flags = _run_list(p, [0x7FC0, 0, 0x41AC, 0, 0x469C, 0x4040, word])
        for f in flags:
            assert len(f) == 1 and f in ALL
