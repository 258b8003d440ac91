"""Golden vectors for the aggregate kernels (GB 3095 validity table, HJ 663, HJ 212 flags).

Each test runs over both twins (`twin` fixture). Hand-computed expectations; the
percentile ones follow HJ 663's definition step by step in the comments.
"""

from __future__ import annotations

import math
from itertools import combinations
from types import ModuleType

import numpy as np
import numpy.typing as npt
import pytest

from native.aggregate import (
    DEFAULT_COUNTING,
    MAX8H_EXCEEDANCE,
    MAX8H_INVALID,
    MAX8H_VALID,
    NO_DATA,
    VALID,
    KernelInputError,
    counting_table,
    severity_table,
)

NAN = math.nan


def flags_of(text: str) -> npt.NDArray[np.uint8]:
    """HJ 212 flag letters as bytes; '.' stands for a minute with no record (byte 0)."""
    return np.frombuffer(text.replace(".", "\0").encode("ascii"), dtype=np.uint8).copy()


def minutes(n: int, start: float = 1.0) -> npt.NDArray[np.float64]:
    return np.arange(start, start + n, dtype=np.float64)


# ---------------------------------------------------------------- minute -> hour
def test_45_counting_minutes_make_a_valid_hour(twin: ModuleType) -> None:
    values = minutes(60)  # 1..60
    r = twin.hourly(values, flags_of("N" * 45 + "M" * 15), DEFAULT_COUNTING, 45)
    assert r.n_valid.tolist() == [45]
    assert r.mean.tolist() == [23.0]  # mean of 1..45
    assert r.partial.tolist() == [23.0]
    assert r.reason.tolist() == [VALID]


def test_44_counting_minutes_make_an_invalid_hour(twin: ModuleType) -> None:
    values = minutes(60)
    r = twin.hourly(values, flags_of("N" * 44 + "M" * 16), DEFAULT_COUNTING, 45)
    assert r.n_valid.tolist() == [44]
    assert math.isnan(r.mean[0])
    assert r.partial.tolist() == [22.5]  # mean of 1..44, kept for reports
    assert r.reason.tolist() == [ord("M")]


def test_the_threshold_is_a_parameter(twin: ModuleType) -> None:
    r = twin.hourly(minutes(60), flags_of("N" * 44 + "M" * 16), DEFAULT_COUNTING, 44)
    assert r.reason.tolist() == [VALID]
    assert r.mean.tolist() == [22.5]


@pytest.mark.parametrize("bad", [NAN, math.inf, -math.inf])
def test_a_non_finite_value_never_counts_even_flagged_normal(twin: ModuleType, bad: float) -> None:
    values = minutes(60)
    values[0] = bad
    r = twin.hourly(values, flags_of("N" * 45 + "." * 15), DEFAULT_COUNTING, 45)
    assert r.n_valid.tolist() == [44]
    assert math.isnan(r.mean[0])
    assert r.partial.tolist() == [sum(range(2, 46)) / 44]
    assert r.reason.tolist() == [NO_DATA]  # a normal flag without a value is a gap


def test_nan_under_a_non_counting_flag_reports_the_flag(twin: ModuleType) -> None:
    values = np.full(60, NAN)
    r = twin.hourly(values, flags_of("." * 30 + "C" * 30), DEFAULT_COUNTING, 45)
    assert r.reason.tolist() == [ord("C")]
    assert r.n_valid.tolist() == [0]
    assert math.isnan(r.partial[0])


def test_an_hour_without_any_record_is_no_data(twin: ModuleType) -> None:
    r = twin.hourly(np.full(60, NAN), flags_of("." * 60), DEFAULT_COUNTING, 45)
    assert r.reason.tolist() == [NO_DATA]
    assert r.n_valid.tolist() == [0]
    assert math.isnan(r.mean[0]) and math.isnan(r.partial[0])


@pytest.mark.parametrize("letter", list("NTFMSDCB."))
def test_each_flag_alone(twin: ModuleType, letter: str) -> None:
    """Default policy: N and T count (T keeps its value); the rest give their own reason."""
    r = twin.hourly(np.full(60, 7.0), flags_of(letter * 60), DEFAULT_COUNTING, 45)
    if letter in "NT":
        assert (r.n_valid[0], r.mean[0], r.reason[0]) == (60, 7.0, VALID)
    else:
        assert r.n_valid[0] == 0
        assert math.isnan(r.mean[0])
        assert r.reason[0] == (NO_DATA if letter == "." else ord(letter))


SEVERITY = "BDFCMS"  # most severe first


@pytest.mark.parametrize(("worse", "milder"), list(combinations(SEVERITY, 2)))
def test_dominant_reason_is_the_most_severe_flag(twin: ModuleType, worse: str, milder: str) -> None:
    # The milder flag comes first and is more frequent: severity, not order or count, wins.
    text = "N" * 30 + milder * 20 + worse * 5 + "." * 5
    r = twin.hourly(minutes(60), flags_of(text), DEFAULT_COUNTING, 45)
    assert r.reason.tolist() == [ord(worse)]


def test_any_flag_outranks_a_gap_and_ties_go_to_the_first_seen(twin: ModuleType) -> None:
    r = twin.hourly(minutes(60), flags_of("." * 50 + "S" + "N" * 9), DEFAULT_COUNTING, 45)
    assert r.reason.tolist() == [ord("S")]
    # X and Y are outside the severity order: both rank just above a gap; X comes first.
    r = twin.hourly(minutes(60), flags_of("." * 20 + "X" + "Y" + "N" * 38), DEFAULT_COUNTING, 45)
    assert r.reason.tolist() == [ord("X")]


def test_counting_policy_is_a_parameter(twin: ModuleType) -> None:
    """A rule set that does not count T: T minutes drop out and T becomes the reason."""
    only_n = counting_table("N")
    r = twin.hourly(minutes(60), flags_of("N" * 40 + "T" * 20), only_n, 45)
    assert r.n_valid.tolist() == [40]
    assert r.reason.tolist() == [ord("T")]
    r = twin.hourly(minutes(60), flags_of("N" * 40 + "T" * 10 + "S" * 10), only_n, 45)
    assert r.reason.tolist() == [ord("S")]  # a known flag outranks an excluded one


def test_severity_policy_is_a_parameter(twin: ModuleType) -> None:
    text = "N" * 40 + "M" * 10 + "B" * 10
    r = twin.hourly(minutes(60), flags_of(text), DEFAULT_COUNTING, 45)
    assert r.reason.tolist() == [ord("B")]
    r = twin.hourly(
        minutes(60), flags_of(text), DEFAULT_COUNTING, 45, severity=severity_table("MBDFCS")
    )
    assert r.reason.tolist() == [ord("M")]


def test_hours_are_independent(twin: ModuleType) -> None:
    text = "N" * 60 + "N" * 44 + "D" * 16 + "." * 60
    r = twin.hourly(minutes(180), flags_of(text), DEFAULT_COUNTING, 45)
    assert r.n_valid.tolist() == [60, 44, 0]
    assert r.reason.tolist() == [VALID, ord("D"), NO_DATA]
    assert r.mean[0] == 30.5
    assert r.n_valid.dtype == np.int32 and r.reason.dtype == np.uint8


# ---------------------------------------------------------------- hour -> day
def _day(valid_hours: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
    means = np.arange(1.0, 25.0)
    valid = np.zeros(24, dtype=np.uint8)
    valid[:valid_hours] = 1
    return means, valid


def test_20_valid_hours_make_a_valid_day(twin: ModuleType) -> None:
    r = twin.daily(*_day(20), 20)
    assert r.n_valid.tolist() == [20]
    assert r.mean.tolist() == [10.5]  # mean of 1..20: invalid hours' means are ignored


def test_19_valid_hours_make_an_invalid_day(twin: ModuleType) -> None:
    r = twin.daily(*_day(19), 20)
    assert r.n_valid.tolist() == [19]
    assert math.isnan(r.mean[0])
    assert r.partial.tolist() == [10.0]


def test_daily_ignores_nan_hours_and_accepts_a_bool_mask(twin: ModuleType) -> None:
    means, valid = _day(24)
    means[3] = NAN
    r = twin.daily(means, valid.astype(bool), 20)
    assert r.n_valid.tolist() == [23]
    assert r.mean[0] == pytest.approx((300 - 4) / 23)


def test_minute_to_day_golden(twin: ModuleType) -> None:
    # Day 1: 20 full hours of 2.0, then 4 hours with 44 minutes (invalid, reason F).
    # Day 2: 19 full hours of 3.0, the rest empty.
    day1 = "N" * 60 * 20 + ("N" * 44 + "F" * 16) * 4
    day2 = "N" * 60 * 19 + "." * 60 * 5
    values = np.concatenate([np.full(1440, 2.0), np.full(1440, 3.0)])
    r = twin.minute_to_day(values, flags_of(day1 + day2), DEFAULT_COUNTING, 45, 20)
    assert r.daily.n_valid.tolist() == [20, 19]
    assert r.daily.mean[0] == 2.0 and math.isnan(r.daily.mean[1])
    assert r.daily.partial.tolist() == [2.0, 3.0]
    assert r.hourly.reason.tolist() == [VALID] * 20 + [ord("F")] * 4 + [VALID] * 19 + [NO_DATA] * 5
    assert r.hourly.partial[20:24].tolist() == [2.0] * 4


# ---------------------------------------------------------------- O3 8-hour windows
def test_rolling_6_of_8(twin: ModuleType) -> None:
    values = np.arange(1.0, 11.0)  # hours 0..9
    valid = np.ones(10, dtype=np.uint8)
    valid[[2, 3]] = 0
    r = twin.rolling_mean(values, valid, 8, 6)
    # Entry 7 = hours 0..7 (window ending 08:00): 6 valid hours 1,2,5,6,7,8.
    assert r.n_valid[7] == 6
    assert r.mean[7] == pytest.approx((1 + 2 + 5 + 6 + 7 + 8) / 6)
    # Entry 9 = hours 2..9: 6 valid.
    assert r.n_valid[9] == 6 and r.mean[9] == pytest.approx((5 + 6 + 7 + 8 + 9 + 10) / 6)
    # Partial windows at the start count what exists: entry 5 = hours 0..5, 4 valid.
    assert r.n_valid[:8].tolist() == [1, 2, 2, 2, 3, 4, 5, 6]
    assert math.isnan(r.mean[5]) and r.partial[5] == pytest.approx((1 + 2 + 5 + 6) / 4)
    valid[4] = 0  # now 5 of 8 in the window ending 08:00
    r = twin.rolling_mean(values, valid, 8, 6)
    assert r.n_valid[7] == 5 and math.isnan(r.mean[7])


def test_rolling_partial_window_at_the_start_can_be_valid(twin: ModuleType) -> None:
    r = twin.rolling_mean(np.full(8, 2.0), np.ones(8, dtype=np.uint8), 8, 6)
    assert r.n_valid.tolist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert np.isnan(r.mean[:5]).all() and r.mean[5:].tolist() == [2.0] * 3


def _day_of_windows(valid_windows: int, peak: float) -> tuple[npt.NDArray[np.float64], ...]:
    """One day of 8-hour means: windows ending 01:00..07:00 (entries 0..6) hold 999 and must
    be ignored; windows ending 08:00..24:00 (entries 7..23) hold 100 + entry, with
    ``peak`` at the window ending 12:00 (entry 11); the first 17 - valid_windows of them
    invalid."""
    ma8 = 100.0 + np.arange(24.0)
    ma8[:7] = 999.0
    ma8[11] = peak
    valid = np.ones(24, dtype=np.uint8)
    valid[7 : 7 + 17 - valid_windows] = 0
    assert valid[7:].sum() == valid_windows
    return ma8, valid


def test_daily_max_8h_needs_14_of_17(twin: ModuleType) -> None:
    r = twin.daily_max_8h(*_day_of_windows(14, 50.0), 8, 24, 14, 160.0)
    assert r.n_valid.tolist() == [14]
    assert r.max.tolist() == [123.0]  # the window ending 24:00; not the 999s before 08:00
    assert r.valid.tolist() == [MAX8H_VALID]
    r = twin.daily_max_8h(*_day_of_windows(13, 50.0), 8, 24, 14, 160.0)
    assert r.n_valid.tolist() == [13]
    assert math.isnan(r.max[0]) and r.partial.tolist() == [123.0]
    assert r.valid.tolist() == [MAX8H_INVALID]


def test_daily_max_8h_exceedance_exception(twin: ModuleType) -> None:
    ma8, valid = _day_of_windows(3, 170.0)  # only windows ending 22, 23, 24 valid
    valid[11] = 1  # and the 170 peak ending 12:00: 4 windows
    r = twin.daily_max_8h(ma8, valid, 8, 24, 14, 160.0)
    assert (r.n_valid[0], r.max[0], r.valid[0]) == (4, 170.0, MAX8H_EXCEEDANCE)
    # Equal to the limit does not exceed it.
    r = twin.daily_max_8h(ma8, valid, 8, 24, 14, 170.0)
    assert r.valid.tolist() == [MAX8H_INVALID] and math.isnan(r.max[0])
    assert r.partial.tolist() == [170.0]


def test_daily_max_8h_with_no_window(twin: ModuleType) -> None:
    r = twin.daily_max_8h(np.full(24, 5.0), np.zeros(24, dtype=np.uint8), 8, 24, 14, -math.inf)
    assert (r.n_valid[0], r.valid[0]) == (0, MAX8H_INVALID)
    assert math.isnan(r.max[0]) and math.isnan(r.partial[0])


def test_o3_chain_window_indexing(twin: ModuleType) -> None:
    """Hourly means 0..23 (labelled by start) -> 8 h windows -> daily max: the window
    ending 24:00 covers hours 16..23, mean 19.5; the one ending 08:00 covers 0..7."""
    hours = np.arange(48.0) % 24
    ok = np.ones(48, dtype=np.uint8)
    ma8 = twin.rolling_mean(hours, ok, 8, 6)
    assert ma8.mean[7] == 3.5 and ma8.mean[23] == 19.5
    r = twin.daily_max_8h(ma8.mean, ma8.n_valid >= 6, 8, 24, 14, 160.0)
    assert r.max.tolist() == [19.5, 19.5]
    # Day 2's windows ending 01:00..07:00 mix day 1's evening in; they are not in the 17.
    assert ma8.mean[24] == pytest.approx((17 + 18 + 19 + 20 + 21 + 22 + 23 + 0) / 8)
    assert r.n_valid.tolist() == [17, 17]


# ---------------------------------------------------------------- percentile (HJ 663)
@pytest.mark.parametrize(
    ("values", "p", "expected"),
    [
        # n = 10, p = 95: k = 1 + 9 * 0.95 = 9.55, s = 9: X(9) + (X(10) - X(9)) * 0.55
        (list(range(1, 11)), 95, 9.55),
        # k = 1 + 9 * 0.5 = 5.5, s = 5: 5 + 1 * 0.5
        (list(range(1, 11)), 50, 5.5),
        # p = 100: k = 10 = n, s = n -> X(n)
        (list(range(1, 11)), 100, 10.0),
        # p = 0: k = 1 -> X(1)
        (list(range(1, 11)), 0, 1.0),
        # n = 4, p = 90: k = 1 + 3 * 0.9 = 3.7, s = 3: 30 + 10 * 0.7 (input unsorted)
        ([40, 10, 30, 20], 90, 37.0),
        # n = 365, p = 95: k = 1 + 364 * 0.95 = 346.8, s = 346: 346 + 0.8
        (list(range(1, 366)), 95, 346.8),
        # n = 5 daily means, p = 98: k = 1 + 4 * 0.98 = 4.92, s = 4: 55 + (80 - 55) * 0.92
        ([12, 80, 33, 55, 41], 98, 78.0),
        # a single value is every percentile
        ([42], 90, 42.0),
    ],
)
def test_percentile_hj663(twin: ModuleType, values: list[float], p: float, expected: float) -> None:
    assert twin.percentile(np.array(values, dtype=np.float64), p) == pytest.approx(
        expected, rel=1e-12
    )


def test_percentile_ignores_nan_and_is_nan_when_empty(twin: ModuleType) -> None:
    values = np.array([NAN, 3.0, 1.0, NAN, 2.0, math.inf])
    assert twin.percentile(values, 50) == 2.0
    assert math.isnan(twin.percentile(np.array([NAN, NAN]), 95))
    assert math.isnan(twin.percentile(np.array([], dtype=np.float64), 95))
    assert isinstance(twin.percentile(values, 50), float)


# ---------------------------------------------------------------- shapes and bad input
def test_empty_series_give_empty_results(twin: ModuleType) -> None:
    empty_f, empty_u = np.array([], dtype=np.float64), np.array([], dtype=np.uint8)
    assert twin.hourly(empty_f, empty_u, DEFAULT_COUNTING, 45).mean.shape == (0,)
    assert twin.daily(empty_f, empty_u, 20).n_valid.shape == (0,)
    r = twin.minute_to_day(empty_f, empty_u, DEFAULT_COUNTING, 45, 20)
    assert r.hourly.reason.shape == (0,) and r.daily.mean.shape == (0,)
    assert twin.rolling_mean(empty_f, empty_u, 8, 6).mean.shape == (0,)
    assert twin.daily_max_8h(empty_f, empty_u, 8, 24, 14, 160.0).valid.shape == (0,)


def test_strided_views_are_accepted(twin: ModuleType) -> None:
    values = np.repeat(minutes(60), 2)[::2]
    flags = np.repeat(flags_of("N" * 60), 2)[::2]
    assert not values.flags.c_contiguous
    assert twin.hourly(values, flags, DEFAULT_COUNTING, 45).mean.tolist() == [30.5]


GOOD_V, GOOD_F = minutes(1440), flags_of("N" * 1440)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.hourly(GOOD_V.astype(np.float32), GOOD_F, DEFAULT_COUNTING, 45), "dtype"),
        (lambda t: t.hourly(GOOD_V, GOOD_F.astype(np.int64), DEFAULT_COUNTING, 45), "dtype"),
        (lambda t: t.hourly(GOOD_V.tolist(), GOOD_F, DEFAULT_COUNTING, 45), "numpy array"),
        (lambda t: t.hourly(GOOD_V[:59], GOOD_F[:59], DEFAULT_COUNTING, 45), "multiple of 60"),
        (lambda t: t.hourly(GOOD_V, GOOD_F[:60], DEFAULT_COUNTING, 45), "flags has"),
        (lambda t: t.hourly(GOOD_V.reshape(24, 60), GOOD_F, DEFAULT_COUNTING, 45), "1-D"),
        (lambda t: t.hourly(GOOD_V, GOOD_F, DEFAULT_COUNTING[:255], 45), "256"),
        (lambda t: t.hourly(GOOD_V, GOOD_F, DEFAULT_COUNTING, 0), "min_valid"),
        (lambda t: t.hourly(GOOD_V, GOOD_F, DEFAULT_COUNTING, 61), "min_valid"),
        (lambda t: t.hourly(GOOD_V, GOOD_F, DEFAULT_COUNTING, 45.0), "int"),
        (lambda t: t.hourly(GOOD_V, GOOD_F, np.ones(256, np.uint8), 45), r"counting\[0\]"),
        (
            lambda t: t.hourly(GOOD_V, GOOD_F, DEFAULT_COUNTING, 45, np.ones(256, np.uint8)),
            r"severity\[0\]",
        ),
        (lambda t: t.minute_to_day(GOOD_V[:60], GOOD_F[:60], DEFAULT_COUNTING, 45, 20), "1440"),
        (lambda t: t.minute_to_day(GOOD_V, GOOD_F, DEFAULT_COUNTING, 45, 25), "min_hours"),
        (lambda t: t.daily(GOOD_V[:24], GOOD_F[:23], 20), "multiple of 24"),
        (lambda t: t.rolling_mean(GOOD_V, GOOD_F, 8, 9), "min_valid"),
        (lambda t: t.rolling_mean(GOOD_V, GOOD_F, 0, 1), "window"),
        (lambda t: t.daily_max_8h(GOOD_V, GOOD_F, 9, 8, 1, 160.0), "last_end"),
        (lambda t: t.daily_max_8h(GOOD_V, GOOD_F, 8, 24, 18, 160.0), "min_windows"),
        (lambda t: t.daily_max_8h(GOOD_V, GOOD_F, 8, 24, 14, NAN), "limit"),
        (lambda t: t.percentile(GOOD_V, 101.0), "p must be"),
        (lambda t: t.percentile(GOOD_V, NAN), "p must be"),
    ],
)
def test_bad_input_is_a_named_error(twin: ModuleType, call: object, message: str) -> None:
    assert callable(call)
    with pytest.raises(KernelInputError, match=message):
        call(twin)
