"""Minute record bytes (docs/topics.md) and the signed payload."""

import json

from firmware import canonical, record, sign
from firmware.minute import MinuteAccumulator

RUNS_ON_MICROPYTHON = True

KEY = b"device-key-yb-town-01"
TS = 1764374400


def _closed():
    acc = MinuteAccumulator(3, [5000, 5000, 1000])
    for v in (38.0, 41.2, 45.0, 40.6, 41.2, 41.2, 41.2, 41.2, 41.2, 41.2, 41.2, 41.2):
        acc.add(0, v, "N")  # mean of these is 41.2
    for _ in range(12):
        acc.add(1, 0.8234567, "N")
    acc.add(1, 12.5, "T")
    for _ in range(10):
        acc.add(2, float("nan"), "D")  # 10 faults, 50 polls missing -> B
    return acc.close(TS)


GOLDEN = (
    b'{"v": 1, "type": "minute", "station": "yb-town-01", "seq": 1234, "ts": 1764374400, '
    b'"interval": 60, "time_valid": true, "fw": "0.1.0", "cal": 3, "ch": {'
    b'"pm25": {"mean": 41.2, "min": 38.0, "max": 45.0, "n": 12, "exp": 12, "flag": "N", '
    b'"unit": "ug/m3"}, '
    b'"co": {"mean": 1.72165, "min": 0.823457, "max": 12.5, "n": 13, "exp": 13, '
    b'"flag": "T", "unit": "mg/m3"}, '
    b'"so2": {"mean": null, "min": null, "max": null, "n": 0, "exp": 60, "flag": "B", '
    b'"unit": "ug/m3"}}}'
)

SIG_GOLDEN = b"f5f868f315e738dbfec4d48c2d4f599a96b4d628a4b7e64e712e15ff82f119fb"


def _body(time_valid=True):
    return record.minute_body(
        "yb-town-01",
        1234,
        _closed(),
        ["pm25", "co", "so2"],
        ["ug/m3", "mg/m3", "ug/m3"],
        time_valid,
        "0.1.0",
        3,
    )


def test_minute_body_golden_bytes():
    assert _body() == GOLDEN


def test_minute_body_parses_with_the_contract_fields():
    d = json.loads(_body(time_valid=False))
    assert d["time_valid"] is False
    assert d["type"] == "minute" and d["seq"] == 1234 and d["ts"] == TS
    assert d["ch"]["pm25"]["flag"] == "N"
    assert d["ch"]["so2"]["mean"] is None


def test_signed_minute_roundtrip_and_tamper():
    body = _body()
    p = record.signed_minute(KEY, body)
    assert p[: len(body)] == body and p[len(body)] == 0x0A and len(p) == len(body) + 65
    assert record.verify_signed(KEY, p) == body
    assert record.verify_signed(b"other key", p) is None
    assert record.verify_signed(KEY, p.replace(b'"seq": 1234', b'"seq": 1235')) is None
    assert record.verify_signed(KEY, body) is None  # unsigned
    assert sign.verify(KEY, body, p[-64:])


def test_signature_golden():
    # Pinned (computed with CPython's hmac module): any change of body or MAC shows here.
    assert sign.sign(KEY, GOLDEN) == SIG_GOLDEN


def test_body_has_no_newline_and_is_ascii():
    body = record.minute_body(
        'st\u00e9\n"x"',
        1,
        _closed(),
        ["pm25", "co", "so2"],
        ["\u00b5g/m\u00b3", "mg/m3", "ug/m3"],
        True,
        "0.1.0",
        0,
    )
    assert b"\n" not in body
    for b in body:
        assert b < 0x80
    d = json.loads(body)
    assert d["station"] == 'st\u00e9\n"x"'
    assert d["ch"]["pm25"]["unit"] == "\u00b5g/m\u00b3"


def test_channel_count_mismatch_is_refused():
    try:
        record.minute_body("s", 1, _closed(), ["a"], ["u"], True, "0.1.0", 0)
        raise AssertionError("mismatch accepted")
    except ValueError:
        pass


def test_float_format_golden():
    ff = canonical.format_float
    cases = [
        (41.2, "41.2"),
        (38.0, "38.0"),
        (0.0, "0.0"),
        (-0.0, "0.0"),
        (-3.25, "-3.25"),
        (0.1, "0.1"),
        (1.0 / 3.0, "0.333333"),
        (2.0 / 3.0, "0.666667"),
        (123456789.0, "123457000.0"),
        (999999.5, "1000000.0"),
        (0.0001, "0.0001"),
        (0.00012345678, "0.000123457"),
        (0.000099999, "9.9999e-05"),
        (1e15, "1.0e+15"),
        (99999999999999.0, "100000000000000.0"),
        (1e-7, "1.0e-07"),
        (0.125, "0.125"),
        (2.5e-5, "2.5e-05"),
        (1.5e300, "1.5e+300"),
        (5e-324, "4.94066e-324"),
        (0.8234567, "0.823457"),
        (12345.65, "12345.6"),
        (12345.75, "12345.8"),
    ]
    for x, want in cases:
        got = ff(x)
        assert got == want, (x, got, want)
    assert ff(1.0 / 3.0, 17) == "0.33333333333333331"
    for bad in (float("nan"), float("inf"), float("-inf")):
        try:
            ff(bad)
            raise AssertionError("non-finite formatted")
        except canonical.NotFinite:
            pass


def test_canonical_dumps():
    obj = canonical.Obj([("b", 1), ("a", [True, False, None, 0.5, "x"])])
    assert canonical.dumps(obj) == '{"b": 1, "a": [true, false, null, 0.5, "x"]}'
    try:
        canonical.dumps({"a": 1})
        raise AssertionError("dict accepted")
    except TypeError:
        pass
