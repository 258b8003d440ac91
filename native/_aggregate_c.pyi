"""Signatures of the compiled twin (`_aggregate_c.pyx`), identical to `_aggregate_py.py`."""

from native._aggregate_common import (
    F64,
    U8,
    DailyMax8hResult,
    DailyResult,
    HourlyResult,
    MinuteToDayResult,
    RollingResult,
)

__all__ = ["daily", "daily_max_8h", "hourly", "minute_to_day", "percentile", "rolling_mean"]

def hourly(
    values: F64, flags: U8, counting: U8, min_valid: int, severity: U8 | None = None
) -> HourlyResult: ...
def daily(hour_mean: F64, hour_valid: U8, min_valid: int) -> DailyResult: ...
def minute_to_day(
    values: F64,
    flags: U8,
    counting: U8,
    min_minutes: int,
    min_hours: int,
    severity: U8 | None = None,
) -> MinuteToDayResult: ...
def rolling_mean(values: F64, valid: U8, window: int, min_valid: int) -> RollingResult: ...
def daily_max_8h(
    ma8: F64, ma8_valid: U8, first_end: int, last_end: int, min_windows: int, limit: float
) -> DailyMax8hResult: ...
def percentile(values: F64, p: float) -> float: ...
