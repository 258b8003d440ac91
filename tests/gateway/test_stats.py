"""HJ 663 percentile and annual statistics (gateway/standards/stats.py).

k = 1 + (n − 1)·p/100, s = int(k), P = X(s) + (X(s+1) − X(s))·(k − s); the worked
arithmetic is next to each golden. numpy's default ("linear", Hyndman & Fan type 7)
percentile is the same definition and serves as an independent cross-check.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.standards import (
    EmptyDataError,
    InvalidValueError,
    UnknownNameError,
    annual_statistics,
    mean,
    percentile,
    percentile_exact,
)


@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        (list(range(1, 11)), 50, 5.5),  # k = 1 + 9·0.5 = 5.5; 5 + (6 − 5)·0.5
        ([10, 20, 30, 40, 50], 90, 46),  # k = 1 + 4·0.9 = 4.6; 40 + 10·0.6
        ([50, 10, 40, 20, 30], 90, 46),  # sorted first
        (list(range(1, 366)), 95, 346.8),  # k = 1 + 364·0.95 = 346.8; 346 + 1·0.8
        (list(range(1, 22)), 95, 20),  # k = 1 + 20·0.95 = 20 exactly: X(20)
        ([7.5], 95, 7.5),  # n = 1: k = 1 = n, P = X(1)
        ([3, 1, 2], 100, 3),  # k = 3 = n: P = X(n), no X(n+1)
        ([3, 1, 2], 0, 1),  # k = 1: the minimum
        ([0.1, 0.2], 50, 0.15),  # exact: 0.1 + 0.1·0.5, not 0.15000000000000002
    ],
)
def test_percentile_goldens(values: list[float], p: int, expected: float) -> None:
    assert percentile(values, p) == expected


def test_percentile_o3_90th_of_20_days() -> None:
    # k = 1 + 19·0.9 = 18.1, s = 18: P = X(18) + 0.1·(X(19) − X(18)) = 180 + 0.1·10 = 181.
    values = [10 * i for i in range(1, 21)]
    assert percentile(values, 90) == 181
    assert percentile_exact(values, 90) == Fraction(181)


def test_percentile_errors() -> None:
    with pytest.raises(EmptyDataError):
        percentile([], 95)
    with pytest.raises(InvalidValueError):
        percentile([1, 2], 101)
    with pytest.raises(InvalidValueError):
        percentile([1, 2], -1)
    with pytest.raises(InvalidValueError):
        percentile([1, float("nan")], 50)


def test_mean_is_exact() -> None:
    assert mean([0.1, 0.2]) == 0.15
    assert mean([Decimal("1"), 2, 3.0]) == 2
    with pytest.raises(EmptyDataError):
        mean([])


def test_annual_statistics_pm25() -> None:
    daily = list(range(1, 366))  # mean (1 + 365)/2 = 183; p95 346.8 (above)
    result = annual_statistics("pm25", daily)
    assert (result.n_days, result.mean) == (365, 183)
    assert (result.percentile_rank, result.percentile_value) == (95, 346.8)
    assert result.percentile_confirmed


def test_annual_statistics_by_pollutant() -> None:
    daily = [float(i) for i in range(1, 11)]
    co = annual_statistics("co", daily)
    assert co.mean is None and co.percentile_rank == 95
    assert co.percentile_value == pytest.approx(9.55)  # k = 1 + 9·0.95 = 9.55
    o3 = annual_statistics("o3", daily)
    assert o3.mean is None and o3.percentile_rank == 90
    assert o3.percentile_value == pytest.approx(9.1)  # k = 9.1
    pm10 = annual_statistics("pm10", daily)
    assert pm10.mean == 5.5 and pm10.percentile_rank == 95
    so2 = annual_statistics("so2", daily)
    assert so2.mean == 5.5 and so2.percentile_rank == 98
    assert not so2.percentile_confirmed  # UNCONFIRMED in the spec
    nox = annual_statistics("nox", daily)
    assert nox.mean == 5.5 and nox.percentile_rank is None and nox.percentile_value is None
    assert not nox.percentile_confirmed
    custom = annual_statistics("no2", daily, percentile_rank=95)
    assert custom.percentile_rank == 95 and not custom.percentile_confirmed
    with pytest.raises(UnknownNameError):
        annual_statistics("tsp", daily)
    with pytest.raises(EmptyDataError):
        annual_statistics("pm25", [])


values = st.lists(st.integers(0, 10_000).map(lambda i: i / 10), min_size=1, max_size=400)
ranks = st.integers(0, 100)


@given(values, ranks)
def test_percentile_matches_numpy_linear(xs: list[float], p: int) -> None:
    assert percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)), rel=1e-12, abs=1e-9)


@given(values, ranks, ranks)
def test_percentile_is_bounded_and_monotone_in_p(xs: list[float], p: int, q: int) -> None:
    lo, hi = min(p, q), max(p, q)
    assert min(xs) <= percentile(xs, lo) <= percentile(xs, hi) <= max(xs)


@given(values, ranks, st.randoms(use_true_random=False))
def test_percentile_ignores_order(xs: list[float], p: int, rnd: object) -> None:
    shuffled = list(xs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert percentile_exact(shuffled, p) == percentile_exact(xs, p)
