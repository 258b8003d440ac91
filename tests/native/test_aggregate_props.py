"""Properties of the aggregate kernels: the twins agree, the fused kernel is the composition.

Random minute series are drawn from hypothesis-chosen parameters (share of counting flags,
of NaN and ±inf values, which flags exist, the counting and severity policies), then
filled by a seeded generator: every mix of flags, with hours on both sides of 45.
Counts and reasons must be equal; floats close (the twins sum in the same order, so in
practice they are bit-identical).
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from native import _aggregate_py
from native.aggregate import VALID, counting_table, severity_table
from tests.native.conftest import compiled_twin

LETTERS = "NTFMSDCBX"  # X: a byte outside HJ 212's table
CODES = [0, *(ord(c) for c in LETTERS)]


def assert_same(a: Any, b: Any) -> None:
    """Two result tuples: equal integer arrays, close float arrays (NaN where NaN)."""
    assert type(a) is type(b)
    for field, x, y in zip(a._fields, a, b, strict=True):
        if isinstance(x, tuple):
            assert_same(x, y)
        elif x.dtype.kind == "f":
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, equal_nan=True, err_msg=field)
        else:
            assert x.dtype == y.dtype, field
            np.testing.assert_array_equal(x, y, err_msg=field)


@st.composite
def minute_series(draw: st.DrawFn, unit: int = 60, max_units: int = 5) -> dict[str, Any]:
    n = unit * draw(st.integers(0, max_units))
    seed = draw(st.integers(0, 2**32 - 1))
    p_counting = draw(st.sampled_from([0.0, 0.5, 0.7, 0.75, 0.8, 0.95, 1.0]))
    p_nan = draw(st.sampled_from([0.0, 0.01, 0.2]))
    p_inf = draw(st.sampled_from([0.0, 0.01]))
    others = draw(st.lists(st.sampled_from(CODES), min_size=1, max_size=5))
    counting = draw(st.sets(st.sampled_from(LETTERS)))
    order = draw(st.permutations("BDFCMS"))
    scale = draw(st.sampled_from([1.0, 1e3, 1e300]))
    rng = np.random.default_rng(seed)
    counting_codes = [ord(c) for c in sorted(counting)] or [ord("N")]
    flags = np.where(
        rng.random(n) < p_counting,
        rng.choice(counting_codes, n),
        rng.choice(others, n),
    ).astype(np.uint8)
    values = rng.normal(50.0, 20.0, n) * scale
    values[rng.random(n) < p_nan] = math.nan
    values[rng.random(n) < p_inf] = math.inf
    return {
        "values": values,
        "flags": flags,
        "counting": counting_table("".join(sorted(counting))),
        "severity": severity_table("".join(order)),
    }


def hour_series(unit: int = 1) -> Any:
    """(values, valid) lists of hourly means, a multiple of ``unit`` long, up to 3 days."""
    return (
        st.integers(0, 3 * 24 // unit)
        .map(lambda units: units * unit)
        .flatmap(
            lambda n: st.tuples(
                st.lists(
                    st.one_of(
                        st.floats(-1e6, 1e6),
                        st.just(math.nan),
                        st.just(math.inf),
                    ),
                    min_size=n,
                    max_size=n,
                ),
                st.lists(st.integers(0, 1), min_size=n, max_size=n),
            )
        )
    )


def as_arrays(pair: tuple[list[float], list[int]]) -> tuple[npt.NDArray[Any], ...]:
    return np.array(pair[0], dtype=np.float64), np.array(pair[1], dtype=np.uint8)


# ---------------------------------------------------------------- the twins agree
@settings(max_examples=150, deadline=None)
@given(series=minute_series(), min_valid=st.integers(1, 60))
def test_twins_agree_on_hourly(series: dict[str, Any], min_valid: int) -> None:
    c = compiled_twin()
    args = (series["values"], series["flags"], series["counting"], min_valid)
    sev = series["severity"]
    assert_same(c.hourly(*args, severity=sev), _aggregate_py.hourly(*args, severity=sev))


@settings(max_examples=60, deadline=None)
@given(
    series=minute_series(unit=1440, max_units=2),
    min_minutes=st.integers(1, 60),
    min_hours=st.integers(1, 24),
)
def test_twins_agree_on_minute_to_day(
    series: dict[str, Any], min_minutes: int, min_hours: int
) -> None:
    c = compiled_twin()
    args = (series["values"], series["flags"], series["counting"], min_minutes, min_hours)
    sev = series["severity"]
    assert_same(
        c.minute_to_day(*args, severity=sev), _aggregate_py.minute_to_day(*args, severity=sev)
    )


@settings(max_examples=150, deadline=None)
@given(
    pair=hour_series(unit=24),
    min_valid=st.integers(1, 24),
)
def test_twins_agree_on_daily(pair: tuple[list[float], list[int]], min_valid: int) -> None:
    args = (*as_arrays(pair), min_valid)
    assert_same(compiled_twin().daily(*args), _aggregate_py.daily(*args))


@settings(max_examples=150, deadline=None)
@given(pair=hour_series(), window=st.integers(1, 10), data=st.data())
def test_twins_agree_on_rolling_mean(
    pair: tuple[list[float], list[int]], window: int, data: st.DataObject
) -> None:
    min_valid = data.draw(st.integers(1, window))
    args = (*as_arrays(pair), window, min_valid)
    assert_same(compiled_twin().rolling_mean(*args), _aggregate_py.rolling_mean(*args))


@st.composite
def window_days(draw: st.DrawFn) -> tuple[npt.NDArray[Any], ...]:
    days = draw(st.integers(0, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    p_valid = draw(st.sampled_from([0.5, 0.8, 0.85, 1.0]))
    rng = np.random.default_rng(seed)
    ma8 = rng.uniform(50.0, 250.0, 24 * days).round(1)  # round: ties for the max
    ma8[rng.random(24 * days) < 0.05] = math.nan
    valid = (rng.random(24 * days) < p_valid).astype(np.uint8)
    return ma8, valid


@settings(max_examples=150, deadline=None)
@given(
    arrays=window_days(),
    first_end=st.integers(1, 24),
    data=st.data(),
    limit=st.sampled_from([160.0, 200.0, math.inf, -math.inf]),
)
def test_twins_agree_on_daily_max_8h(
    arrays: tuple[npt.NDArray[Any], ...], first_end: int, data: st.DataObject, limit: float
) -> None:
    last_end = data.draw(st.integers(first_end, 24))
    min_windows = data.draw(st.integers(1, last_end - first_end + 1))
    args = (*arrays, first_end, last_end, min_windows, limit)
    assert_same(compiled_twin().daily_max_8h(*args), _aggregate_py.daily_max_8h(*args))


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(
        st.one_of(st.floats(-1e9, 1e9), st.just(math.nan), st.just(-math.inf)), max_size=400
    ),
    p=st.floats(0.0, 100.0),
)
def test_twins_agree_on_percentile(values: list[float], p: float) -> None:
    array = np.array(values, dtype=np.float64)
    c, py = compiled_twin().percentile(array, p), _aggregate_py.percentile(array, p)
    assert (math.isnan(c) and math.isnan(py)) or c == pytest.approx(py, rel=1e-12, abs=1e-300)


# ---------------------------------------------------------------- properties of each twin
@settings(max_examples=60, deadline=None)
@given(
    series=minute_series(unit=1440, max_units=2),
    min_minutes=st.integers(1, 60),
    min_hours=st.integers(1, 24),
)
def test_minute_to_day_is_hourly_then_daily(
    twin: ModuleType, series: dict[str, Any], min_minutes: int, min_hours: int
) -> None:
    values, flags, counting, sev = (series[k] for k in ("values", "flags", "counting", "severity"))
    fused = twin.minute_to_day(values, flags, counting, min_minutes, min_hours, severity=sev)
    hours = twin.hourly(values, flags, counting, min_minutes, severity=sev)
    days = twin.daily(hours.mean, hours.reason == VALID, min_hours)
    assert_same(fused.hourly, hours)
    assert_same(fused.daily, days)


@settings(max_examples=100, deadline=None)
@given(series=minute_series(), min_valid=st.integers(1, 60))
def test_hourly_matches_a_numpy_restatement(
    twin: ModuleType, series: dict[str, Any], min_valid: int
) -> None:
    values, flags, counting = series["values"], series["flags"], series["counting"]
    r = twin.hourly(values, flags, counting, min_valid)
    counts = (counting[flags].astype(bool) & np.isfinite(values)).reshape(-1, 60)
    n_valid = counts.sum(axis=1)
    np.testing.assert_array_equal(r.n_valid, n_valid)
    np.testing.assert_array_equal(r.reason == VALID, n_valid >= min_valid)
    with np.errstate(invalid="ignore", over="ignore"):
        sums = np.where(counts, values.reshape(-1, 60), 0.0).sum(axis=1)
        expected = np.where(n_valid > 0, sums / np.maximum(n_valid, 1), math.nan)
    finite = np.isfinite(expected) & np.isfinite(r.partial)
    np.testing.assert_allclose(r.partial[finite], expected[finite], rtol=1e-9)
    np.testing.assert_array_equal(np.isnan(r.partial), n_valid == 0)
    # an invalid hour's reason is a flag present in the hour among those that did not count
    for hour in np.flatnonzero(n_valid < min_valid):
        hour_flags = flags[hour * 60 : hour * 60 + 60]
        reason = int(r.reason[hour])
        assert reason == ord("-") or (reason in hour_flags.tolist() and reason != 0)


@settings(max_examples=150, deadline=None)
@given(pair=hour_series(), window=st.integers(1, 10), data=st.data())
def test_rolling_mean_matches_a_naive_window(
    twin: ModuleType, pair: tuple[list[float], list[int]], window: int, data: st.DataObject
) -> None:
    values, valid = as_arrays(pair)
    min_valid = data.draw(st.integers(1, window))
    r = twin.rolling_mean(values, valid, window, min_valid)
    for end in range(len(values)):
        lo = max(0, end - window + 1)
        usable = [
            x
            for x, ok in zip(values[lo : end + 1], valid[lo : end + 1], strict=True)
            if ok and math.isfinite(x)
        ]
        assert r.n_valid[end] == len(usable)
        if len(usable) >= min_valid:
            assert r.mean[end] == pytest.approx(sum(usable) / len(usable), rel=1e-12)
        else:
            assert math.isnan(r.mean[end])


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
    p=st.floats(0.0, 100.0),
)
def test_percentile_is_numpy_linear(twin: ModuleType, values: list[float], p: float) -> None:
    """HJ 663's k = 1 + (n-1)p/100 is numpy's default ('linear') method, 1-based."""
    array = np.array(values, dtype=np.float64)
    got = twin.percentile(array, p)
    assert got == pytest.approx(float(np.percentile(array, p)), rel=1e-9, abs=1e-6)
    slack = 1e-12 * max(abs(min(values)), abs(max(values)))
    assert min(values) - slack <= got <= max(values) + slack
