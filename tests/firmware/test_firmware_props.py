"""Property tests (CPython, hypothesis) of the station's pure logic against references:
HMAC against Python's hmac module, minute statistics against a direct computation,
canonical floats against CPython's correctly rounded "%.6g", records against json."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from fractions import Fraction
from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from drivers import flags
from firmware import canonical, record, sign
from firmware.minute import MinuteAccumulator


@given(st.binary(max_size=200), st.binary(max_size=500))
def test_hmac_equals_python_hmac(key: bytes, msg: bytes) -> None:
    want = hmac.new(key, msg, hashlib.sha256)
    assert sign.hmac_sha256(key, msg) == want.digest()
    assert sign.sign(key, msg) == want.hexdigest().encode()
    assert sign.verify(key, msg, want.hexdigest())


@given(st.binary(max_size=80), st.binary(max_size=80), st.binary(min_size=1, max_size=80))
def test_verify_refuses_other_messages(key: bytes, msg: bytes, other: bytes) -> None:
    if other != msg:
        assert not sign.verify(key, other, sign.sign(key, msg))


# ---------------------------------------------------------------- minute statistics
values = st.one_of(
    st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
    st.just(math.nan),
    st.just(math.inf),
    st.sampled_from([0.0, -0.0, 1.0, 41.2]),
)
flag_st = st.one_of(st.sampled_from(list(flags.ALL)), st.sampled_from(["N", "N", "T", "X"]))
sample_st = st.tuples(values, flag_st)


def reference_minute(samples, scheduled, permille, counting):
    """Straightforward reference for one channel (module docstring of firmware.minute)."""
    eff = []
    for v, f in samples:
        if not flags.is_flag(f):
            f = "D"
        if f in counting and not math.isfinite(v):
            f = "D"
        eff.append((v, f))
    valid = [v for v, f in eff if f in counting]
    exp = max(scheduled, len(samples))
    total = 0.0
    for v in valid:
        total += v
    mean = total / len(valid) if valid else None
    need = math.ceil(Fraction(permille, 1000) * exp)
    if valid and len(valid) >= need:
        flag = "T" if any(f == "T" for _, f in eff if f in counting) else "N"
    else:
        counts = {f: 0 for f in flags.ALL}
        for _, f in eff:
            if f not in counting:
                counts[f] += 1
        counts["B"] += exp - len(samples)
        cands = [f for f in flags.ALL if f not in counting]
        best = max(cands, key=lambda f: (counts[f], -flags.SEVERITY.find(f)))
        flag = best if counts[best] > 0 else "B"
    return SimpleNamespace(
        mean=mean,
        min=min(valid) if valid else None,
        max=max(valid) if valid else None,
        n_valid=len(valid),
        exp=exp,
        flag=flag,
    )


@settings(max_examples=300)
@given(
    st.lists(st.lists(sample_st, max_size=70), min_size=1, max_size=3),
    st.sampled_from([1000, 2000, 5000, 7000, 60000]),
    st.integers(min_value=1, max_value=1000),
    st.sampled_from(["NT", "N", "NTS"]),
)
def test_minute_matches_reference(per_channel, poll_ms, permille, counting) -> None:
    n = len(per_channel)
    acc = MinuteAccumulator(n, poll_ms, fraction=permille / 1000, counting=counting)
    # interleave the channels as the sampler does
    longest = max(len(s) for s in per_channel)
    for k in range(longest):
        for i, samples in enumerate(per_channel):
            if k < len(samples):
                acc.add(i, *samples[k])
    r = acc.close(123)
    for i, samples in enumerate(per_channel):
        ref = reference_minute(samples, 60000 // poll_ms, permille, counting)
        assert r.value("mean", i) == ref.mean
        assert r.value("min", i) == ref.min
        assert r.value("max", i) == ref.max
        assert r.n_valid[i] == ref.n_valid
        assert r.n_expected[i] == ref.exp
        assert r.flag[i] == ref.flag, (samples, ref)


# ---------------------------------------------------------------- canonical numbers
finite = st.floats(allow_nan=False, allow_infinity=False)


@given(finite)
def test_format_float_is_correctly_rounded_six_digits(x: float) -> None:
    text = canonical.format_float(x)
    assert float(text) == float(f"{x:.6g}")
    assert "." in text or "e" in text
    assert canonical.format_float(float(text)) == text  # idempotent: re-encoding is stable
    assert json.loads(text) == float(text)


@given(finite)
def test_format_float_17_digits_roundtrips(x: float) -> None:
    assert float(canonical.format_float(x, 17)) == x or x == 0.0


@given(st.text())
def test_encode_str_roundtrips_and_is_ascii(s: str) -> None:
    enc = canonical.encode_str(s)
    assert enc.isascii()
    assert json.loads(enc) == s


# ---------------------------------------------------------------- records
names_st = st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3, unique=True)


@settings(max_examples=150)
@given(
    names_st,
    st.data(),
    st.text(max_size=12),
    st.integers(min_value=0, max_value=2**40),
    st.booleans(),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=64),
)
def test_record_parses_as_json_and_roundtrips(names, data, station, seq, tv, cal, key) -> None:
    n = len(names)
    acc = MinuteAccumulator(n, 5000)
    for i in range(n):
        for v, f in data.draw(st.lists(sample_st, max_size=14)):
            acc.add(i, v, f)
    r = acc.close(1764374400)
    units = ["ug/m3"] * n
    body = record.minute_body(station, seq, r, names, units, tv, "0.1.0", cal)
    d = json.loads(body)
    assert list(d) == [
        "v",
        "type",
        "station",
        "seq",
        "ts",
        "interval",
        "time_valid",
        "fw",
        "cal",
        "ch",
    ]
    assert (d["station"], d["seq"], d["time_valid"], d["cal"]) == (station, seq, tv, cal)
    assert list(d["ch"]) == names
    for i, name in enumerate(names):
        c = d["ch"][name]
        assert list(c) == ["mean", "min", "max", "n", "exp", "flag", "unit"]
        for stat in ("mean", "min", "max"):
            want = r.value(stat, i)
            assert c[stat] == (None if want is None else float(f"{want:.6g}"))
        assert (c["n"], c["exp"], c["flag"]) == (r.n_valid[i], r.n_expected[i], r.flag[i])
    # round trip: the parsed record, serialised again, gives the same bytes
    nan = float("nan")
    again = SimpleNamespace(
        n_channels=n,
        ts=d["ts"],
        mean=[nan if d["ch"][k]["mean"] is None else d["ch"][k]["mean"] for k in names],
        min=[nan if d["ch"][k]["min"] is None else d["ch"][k]["min"] for k in names],
        max=[nan if d["ch"][k]["max"] is None else d["ch"][k]["max"] for k in names],
        n_valid=[d["ch"][k]["n"] for k in names],
        n_expected=[d["ch"][k]["exp"] for k in names],
        flag=[d["ch"][k]["flag"] for k in names],
    )
    assert record.minute_body(station, seq, again, names, units, tv, "0.1.0", cal) == body
    payload = record.signed_minute(key, body)
    assert record.verify_signed(key, payload) == body
    want = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    assert payload == body + b"\n" + want
