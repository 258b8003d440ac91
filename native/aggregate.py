"""Validity-checked averages of minute records: GB 3095 §"data validity", HJ 663, HJ 212.

The selector for the aggregate kernels: the compiled twin `_aggregate_c` (built by
`make setup`) when it imports, else the pure-Python twin `_aggregate_py`, which is also
the readable reference. ``LANTIAN_PURE_PYTHON=1`` forces the Python twin. `IMPLEMENTATION`
says which one is in use and `FALLBACK_REASON` why the compiled one is not.

The kernels are timezone- and standard-agnostic: the caller aligns index 0 of a series to
local midnight (UTC+8 by default) and passes the rule set's policy (which flags count, the
minimum counts, the limit) as arguments. Series are 1-D; several stations or channels are
concatenated, each a whole number of days.

Rules (one line each; the twins follow them in the same loop order):

- Minute → hour (`hourly`): a minute counts when ``counting[flag]`` and its value is
  finite (NaN and ±inf never count, whatever the flag). ``mean`` is the mean of the counting
  minutes when at least ``min_valid`` (45) counted, else NaN; ``partial`` is that mean
  regardless (NaN when nothing counted) for reports; ``n_valid`` the number that counted.
- Reason of an hour (uint8): ``VALID`` (0) when valid. Otherwise the dominant flag among
  the minutes that did not count, by the ``severity`` rank table (default
  B > D > F > C > M > S > any other non-zero byte, e.g. T when a rule set excludes it);
  ties go to the first minute seen. ``NO_DATA`` (``ord("-")``) only when nothing but gaps
  explains the hour: minutes with flag 0 (no record) or a non-finite value under a
  counting flag. A flag outranks a gap because it says what happened; a gap does not.
- Hour → day (`daily`): the mean of the hourly means with ``hour_valid`` set (and finite),
  valid with at least ``min_valid`` (20) of them. ``minute_to_day`` fuses both steps in
  one pass and returns exactly what `hourly` then `daily(mean, reason == VALID)` return.
- 8-hour moving average (`rolling_mean`): hours are labelled by their start, so entry
  ``i`` is the window of hours ``i-window+1 .. i``, which ENDS at ``(i+1):00``. The first
  ``window-1`` entries use the hours that exist; a window is valid with at least
  ``min_valid`` (6) valid hours. Each window is summed afresh (no running-sum drift).
- O3 daily maximum 8-hour average (`daily_max_8h`): ``first_end``/``last_end`` are the
  window END clock hours as HJ 663 names them (8 and 24 → 17 windows), so the window
  ending at ``e:00`` of day ``d`` is ``ma8[24*d + e - 1]``: ending 08:00 covers hours
  00..07, ending 24:00 covers 16..23; all 17 lie inside the day. Valid (``MAX8H_VALID``)
  with at least ``min_windows`` (14) valid windows; with fewer but at least one, valid
  (``MAX8H_EXCEEDANCE``) when the maximum strictly exceeds ``limit``; else
  ``MAX8H_INVALID`` and ``max`` is NaN (``partial`` keeps the maximum of what exists).
- Percentile (`percentile`, HJ 663): sort the finite values X(1)..X(n);
  k = 1 + (n − 1)·p/100, s = int(k), P = X(s) + (X(s+1) − X(s))·(k − s), and X(n) when
  s = n; NaN when n = 0.

Bad arguments (wrong dtype, shape, length, range) raise `KernelInputError`; arrays are
never cast (a cast could wrap a flag or truncate a value). Validity masks may be uint8
(non-zero = valid) or bool.
"""

from __future__ import annotations

import os
from typing import Final, Literal

from native._aggregate_common import (
    DEFAULT_COUNTING,
    DEFAULT_COUNTING_FLAGS,
    DEFAULT_SEVERITY,
    DEFAULT_SEVERITY_ORDER,
    MAX8H_EXCEEDANCE,
    MAX8H_INVALID,
    MAX8H_VALID,
    NO_DATA,
    NO_RECORD,
    VALID,
    DailyMax8hResult,
    DailyResult,
    HourlyResult,
    KernelInputError,
    MinuteToDayResult,
    RollingResult,
    counting_table,
    severity_table,
)

__all__ = [
    "DEFAULT_COUNTING",
    "DEFAULT_COUNTING_FLAGS",
    "DEFAULT_SEVERITY",
    "DEFAULT_SEVERITY_ORDER",
    "FALLBACK_REASON",
    "IMPLEMENTATION",
    "MAX8H_EXCEEDANCE",
    "MAX8H_INVALID",
    "MAX8H_VALID",
    "NO_DATA",
    "NO_RECORD",
    "VALID",
    "DailyMax8hResult",
    "DailyResult",
    "HourlyResult",
    "KernelInputError",
    "MinuteToDayResult",
    "RollingResult",
    "counting_table",
    "daily",
    "daily_max_8h",
    "hourly",
    "minute_to_day",
    "percentile",
    "rolling_mean",
    "severity_table",
]

PURE_PYTHON_ENV: Final = "LANTIAN_PURE_PYTHON"

IMPLEMENTATION: Literal["cython", "python"]
FALLBACK_REASON: str | None  # why the compiled twin is not in use; None when it is

if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
    from native._aggregate_py import (
        daily,
        daily_max_8h,
        hourly,
        minute_to_day,
        percentile,
        rolling_mean,
    )

    IMPLEMENTATION = "python"
    FALLBACK_REASON = f"{PURE_PYTHON_ENV}={os.environ[PURE_PYTHON_ENV]} forces the Python twin"
else:
    try:
        from native._aggregate_c import (
            daily,
            daily_max_8h,
            hourly,
            minute_to_day,
            percentile,
            rolling_mean,
        )

        IMPLEMENTATION = "cython"
        FALLBACK_REASON = None
    except ImportError as error:  # not built: `make setup` builds it
        from native._aggregate_py import (
            daily,
            daily_max_8h,
            hourly,
            minute_to_day,
            percentile,
            rolling_mean,
        )

        IMPLEMENTATION = "python"
        FALLBACK_REASON = f"native._aggregate_c did not import ({error}); run `make setup`"
