"""Pure-Python twin of `_aggregate_c.pyx`: the readable reference for every kernel.

Plain loops over Python lists, in exactly the order the Cython kernels use, so both give
the same counts and reasons and (summation order being the same) the same floats. numpy
is used only to allocate the results. The rules are documented in `native/aggregate.py`.
"""

from __future__ import annotations

import math

import numpy as np

from native._aggregate_common import (
    F64,
    HOURS_PER_DAY,
    MAX8H_EXCEEDANCE,
    MAX8H_INVALID,
    MAX8H_VALID,
    MINUTES_PER_HOUR,
    NO_DATA,
    U8,
    VALID,
    DailyMax8hResult,
    DailyResult,
    HourlyResult,
    MinuteToDayResult,
    RollingResult,
    check_f64,
    check_float,
    check_int,
    check_mask,
    check_minute_inputs,
    check_same_length,
)

__all__ = ["daily", "daily_max_8h", "hourly", "minute_to_day", "percentile", "rolling_mean"]

_NAN = math.nan


def _hour_sum(
    values: list[float], flags: list[int], counting: list[int], start: int
) -> tuple[float, int]:
    """Sum and count of the counting finite minutes in ``start .. start+59``.

    The sum runs in four lanes (minute j goes to lane j % 4) added as
    ``(lane0 + lane1) + (lane2 + lane3)``: the compiled twin's order, which lets the CPU
    overlap four additions instead of waiting on one chain."""
    lanes = [0.0, 0.0, 0.0, 0.0]
    count = 0
    for j in range(MINUTES_PER_HOUR):
        value = values[start + j]
        if counting[flags[start + j]] and math.isfinite(value):
            lanes[j % 4] += value
            count += 1
    return (lanes[0] + lanes[1]) + (lanes[2] + lanes[3]), count


def _hour_reason(
    values: list[float], flags: list[int], counting: list[int], severity: list[int], start: int
) -> int:
    """Why an hour is invalid: the first-seen flag of the highest severity rank among the
    minutes that did not count; NO_DATA when only gaps (flag 0, or a non-finite value under
    a counting flag) explain it."""
    best_rank = 0
    best = NO_DATA
    for i in range(start, start + MINUTES_PER_HOUR):
        flag = flags[i]
        if counting[flag]:
            if math.isfinite(values[i]):
                continue
            rank = 0  # a counting flag without a usable value: a gap
        else:
            rank = severity[flag]
        if rank > best_rank:
            best_rank = rank
            best = flag
    return best


def hourly(
    values: F64, flags: U8, counting: U8, min_valid: int, severity: U8 | None = None
) -> HourlyResult:
    values_, flags_, counting_, severity_ = check_minute_inputs(
        values, flags, counting, severity, MINUTES_PER_HOUR
    )
    min_valid = check_int("min_valid", min_valid, 1, MINUTES_PER_HOUR)
    vals, flgs = values_.tolist(), flags_.tolist()
    cnt, sev = counting_.tolist(), severity_.tolist()
    mean: list[float] = []
    partial: list[float] = []
    n_valid: list[int] = []
    reason: list[int] = []
    for hour in range(len(vals) // MINUTES_PER_HOUR):
        start = hour * MINUTES_PER_HOUR
        total, count = _hour_sum(vals, flgs, cnt, start)
        average = total / count if count else _NAN
        partial.append(average)
        n_valid.append(count)
        if count >= min_valid:
            mean.append(average)
            reason.append(VALID)
        else:
            mean.append(_NAN)
            reason.append(_hour_reason(vals, flgs, cnt, sev, start))
    return HourlyResult(
        np.array(mean, dtype=np.float64),
        np.array(partial, dtype=np.float64),
        np.array(n_valid, dtype=np.int32),
        np.array(reason, dtype=np.uint8),
    )


def daily(hour_mean: F64, hour_valid: U8, min_valid: int) -> DailyResult:
    means = check_f64("hour_mean", hour_mean, HOURS_PER_DAY)
    valid = check_mask("hour_valid", hour_valid, HOURS_PER_DAY)
    check_same_length("hour_mean", means, "hour_valid", valid)
    min_valid = check_int("min_valid", min_valid, 1, HOURS_PER_DAY)
    m, ok = means.tolist(), valid.tolist()
    mean: list[float] = []
    partial: list[float] = []
    n_valid: list[int] = []
    for day in range(len(m) // HOURS_PER_DAY):
        total = 0.0
        count = 0
        for i in range(day * HOURS_PER_DAY, (day + 1) * HOURS_PER_DAY):
            if ok[i] and math.isfinite(m[i]):
                total += m[i]
                count += 1
        average = total / count if count else _NAN
        partial.append(average)
        n_valid.append(count)
        mean.append(average if count >= min_valid else _NAN)
    return DailyResult(
        np.array(mean, dtype=np.float64),
        np.array(partial, dtype=np.float64),
        np.array(n_valid, dtype=np.int32),
    )


def minute_to_day(
    values: F64,
    flags: U8,
    counting: U8,
    min_minutes: int,
    min_hours: int,
    severity: U8 | None = None,
) -> MinuteToDayResult:
    minutes_per_day = MINUTES_PER_HOUR * HOURS_PER_DAY
    values_, flags_, counting_, severity_ = check_minute_inputs(
        values, flags, counting, severity, minutes_per_day
    )
    min_minutes = check_int("min_minutes", min_minutes, 1, MINUTES_PER_HOUR)
    min_hours = check_int("min_hours", min_hours, 1, HOURS_PER_DAY)
    vals, flgs = values_.tolist(), flags_.tolist()
    cnt, sev = counting_.tolist(), severity_.tolist()
    h_mean: list[float] = []
    h_partial: list[float] = []
    h_n: list[int] = []
    h_reason: list[int] = []
    d_mean: list[float] = []
    d_partial: list[float] = []
    d_n: list[int] = []
    for day in range(len(vals) // minutes_per_day):
        day_total = 0.0
        day_count = 0
        for hour in range(day * HOURS_PER_DAY, (day + 1) * HOURS_PER_DAY):
            start = hour * MINUTES_PER_HOUR
            total, count = _hour_sum(vals, flgs, cnt, start)
            average = total / count if count else _NAN
            h_partial.append(average)
            h_n.append(count)
            if count >= min_minutes:
                h_mean.append(average)
                h_reason.append(VALID)
                if math.isfinite(average):  # as `daily` does: a sum can overflow to inf
                    day_total += average
                    day_count += 1
            else:
                h_mean.append(_NAN)
                h_reason.append(_hour_reason(vals, flgs, cnt, sev, start))
        day_average = day_total / day_count if day_count else _NAN
        d_partial.append(day_average)
        d_n.append(day_count)
        d_mean.append(day_average if day_count >= min_hours else _NAN)
    return MinuteToDayResult(
        HourlyResult(
            np.array(h_mean, dtype=np.float64),
            np.array(h_partial, dtype=np.float64),
            np.array(h_n, dtype=np.int32),
            np.array(h_reason, dtype=np.uint8),
        ),
        DailyResult(
            np.array(d_mean, dtype=np.float64),
            np.array(d_partial, dtype=np.float64),
            np.array(d_n, dtype=np.int32),
        ),
    )


def rolling_mean(values: F64, valid: U8, window: int, min_valid: int) -> RollingResult:
    means = check_f64("values", values)
    ok_ = check_mask("valid", valid)
    check_same_length("values", means, "valid", ok_)
    window = check_int("window", window, 1, 1 << 20)
    min_valid = check_int("min_valid", min_valid, 1, window)
    m, ok = means.tolist(), ok_.tolist()
    mean: list[float] = []
    partial: list[float] = []
    n_valid: list[int] = []
    for end in range(len(m)):
        total = 0.0
        count = 0
        for i in range(max(0, end - window + 1), end + 1):  # oldest first
            if ok[i] and math.isfinite(m[i]):
                total += m[i]
                count += 1
        average = total / count if count else _NAN
        partial.append(average)
        n_valid.append(count)
        mean.append(average if count >= min_valid else _NAN)
    return RollingResult(
        np.array(mean, dtype=np.float64),
        np.array(partial, dtype=np.float64),
        np.array(n_valid, dtype=np.int32),
    )


def daily_max_8h(
    ma8: F64, ma8_valid: U8, first_end: int, last_end: int, min_windows: int, limit: float
) -> DailyMax8hResult:
    means = check_f64("ma8", ma8, HOURS_PER_DAY)
    ok_ = check_mask("ma8_valid", ma8_valid, HOURS_PER_DAY)
    check_same_length("ma8", means, "ma8_valid", ok_)
    first_end = check_int("first_end", first_end, 1, HOURS_PER_DAY)
    last_end = check_int("last_end", last_end, first_end, HOURS_PER_DAY)
    min_windows = check_int("min_windows", min_windows, 1, last_end - first_end + 1)
    limit = check_float("limit", limit, low=-math.inf, high=math.inf)
    m, ok = means.tolist(), ok_.tolist()
    maximum: list[float] = []
    partial: list[float] = []
    n_valid: list[int] = []
    code: list[int] = []
    for day in range(len(m) // HOURS_PER_DAY):
        best = _NAN
        count = 0
        for end in range(first_end, last_end + 1):
            # the window ending at end:00 has its last hour starting at end-1
            i = day * HOURS_PER_DAY + end - 1
            if ok[i] and math.isfinite(m[i]):
                count += 1
                if count == 1 or m[i] > best:
                    best = m[i]
        if count >= min_windows:
            verdict = MAX8H_VALID
        elif count and best > limit:
            verdict = MAX8H_EXCEEDANCE
        else:
            verdict = MAX8H_INVALID
        partial.append(best)
        n_valid.append(count)
        code.append(verdict)
        maximum.append(best if verdict != MAX8H_INVALID else _NAN)
    return DailyMax8hResult(
        np.array(maximum, dtype=np.float64),
        np.array(partial, dtype=np.float64),
        np.array(n_valid, dtype=np.int32),
        np.array(code, dtype=np.uint8),
    )


def percentile(values: F64, p: float) -> float:
    listed: list[float] = check_f64("values", values).tolist()
    xs = sorted(x for x in listed if math.isfinite(x))
    p = check_float("p", p, low=0.0, high=100.0)
    n = len(xs)
    if n == 0:
        return _NAN
    k = 1 + (n - 1) * p / 100
    s = int(k)
    if s >= n:
        return xs[n - 1]
    return xs[s - 1] + (xs[s] - xs[s - 1]) * (k - s)
