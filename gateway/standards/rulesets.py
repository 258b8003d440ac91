"""Data-validity rule sets: how much data makes an hour, a day, a month or a year valid.

GB 3095-2012 / GB 3095-2026 statistics-validity table with HJ 663-2013 / HJ 663-2026
(spec/standards.md §2; the counts are the same in both generations)::

    1-hour average       ≥ 45 valid minutes in the hour
    24-hour average      ≥ 20 valid hourly values in the local calendar day
    8-hour moving mean   ≥ 6 valid hourly values in the 8 hours (O3)
    O3 daily max 8 h     over the 8-h means ending 08:00..24:00 (17 windows), ≥ 14 valid;
                         fewer still give a valid result when it exceeds the limit
    monthly average      ≥ 27 valid days (≥ 25 in February)
    annual average       ≥ 324 valid days AND every month's minimum

Samples count only when their HJ 212 flag is in ``counted_flags`` (default N and T); the
others are excluded from both the average and the sampled-time count (§4).

Four named rule sets: ``"GB3095-2012/HJ663-2013"`` (default), ``"GB3095-2026/HJ663-2026"``,
``"EU-2008/50/EC"`` and ``"US-EPA"``. The spec gives for the EU 75 % for an hourly (45 min)
and an 8-h value (6 h), 18 of 24 8-h values for the daily max and 90 % annual capture; for
the US 75 % completeness (18 h for a daily value). Every other number of those two
profiles is a placeholder: its field name is listed in ``RuleSet.unconfirmed`` and
``docs`` must present it as such. A :class:`RuleSet` is a frozen dataclass: configure with
``dataclasses.replace``.

The predicates return :class:`Verdict` ``(valid, reason)``; ``reason`` is ``None`` when
valid (``"exceedance_exception"`` when valid only by the O3 exception) and otherwise one of
``insufficient_minutes``, ``insufficient_hours``, ``insufficient_8h_hours``,
``insufficient_windows``, ``insufficient_days``, ``month_short:<m>`` — several joined by
``;`` (the total first, then months in calendar order).
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Final, NamedTuple

from ._common import InvalidValueError, Number, UnknownNameError, to_decimal

FLAGS: Final[tuple[str, ...]] = ("N", "T", "F", "M", "S", "D", "C", "B")  # HJ 212-2017 table 8

INSUFFICIENT_MINUTES: Final = "insufficient_minutes"
INSUFFICIENT_HOURS: Final = "insufficient_hours"
INSUFFICIENT_8H_HOURS: Final = "insufficient_8h_hours"
INSUFFICIENT_WINDOWS: Final = "insufficient_windows"
INSUFFICIENT_DAYS: Final = "insufficient_days"
MONTH_SHORT: Final = "month_short"  # reported as "month_short:<m>", m = 1..12
EXCEEDANCE_EXCEPTION: Final = "exceedance_exception"


class Verdict(NamedTuple):
    """Whether a statistic is valid, and why (see module doc for the reasons)."""

    valid: bool
    reason: str | None


@dataclass(frozen=True, slots=True)
class RuleSet:
    """The validity numbers of one jurisdiction's rules.

    ``min_o3_8h_windows`` counts valid 8-h means among those ending at hours
    ``o3_8h_first_window_end``..24 of the day. Annual validity needs
    ``min_days_per_year`` days (if set), ``min_year_capture`` of the year's days (if set),
    and, when ``annual_requires_monthly_minimum``, every month's minimum.
    """

    name: str
    source: str
    counted_flags: frozenset[str]
    min_minutes_per_hour: int
    min_hours_per_day: int
    min_hours_per_8h: int
    o3_8h_first_window_end: int
    min_o3_8h_windows: int
    o3_exceedance_exception: bool
    min_days_per_month: int
    min_days_february: int
    min_days_per_year: int | None
    min_year_capture: Fraction | None
    annual_requires_monthly_minimum: bool
    unconfirmed: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        unknown = self.counted_flags - set(FLAGS)
        if unknown:
            raise InvalidValueError("counted_flags", sorted(unknown), "not HJ 212 flags")
        if not 1 <= self.o3_8h_first_window_end <= 24:
            raise InvalidValueError(
                "o3_8h_first_window_end", self.o3_8h_first_window_end, "must be 1..24"
            )
        if self.min_o3_8h_windows > self.o3_8h_windows_per_day:
            raise InvalidValueError(
                "min_o3_8h_windows", self.min_o3_8h_windows, "more than the day's windows"
            )
        bad = [
            ("min_minutes_per_hour", self.min_minutes_per_hour, 60),
            ("min_hours_per_day", self.min_hours_per_day, 24),
            ("min_hours_per_8h", self.min_hours_per_8h, 8),
            ("min_days_per_month", self.min_days_per_month, 28),
            ("min_days_february", self.min_days_february, 28),
        ]
        for what, value, most in bad:
            if not 0 < value <= most:
                raise InvalidValueError(what, value, f"must be 1..{most}")

    @property
    def o3_8h_windows_per_day(self) -> int:
        """Number of 8-h means that belong to a day (17 for windows ending 08:00..24:00)."""
        return 24 - self.o3_8h_first_window_end + 1

    def counts(self, flag: str) -> bool:
        """Whether a sample with HJ 212 ``flag`` counts toward an average."""
        if flag not in FLAGS:
            raise UnknownNameError("HJ 212 flag", flag, FLAGS)
        return flag in self.counted_flags

    def o3_8h_windows(self) -> tuple[range, ...]:
        """Hour labels (hour starts, relative to the day's 00:00) of each of the day's 8-h
        windows. The window ending 08:00 holds hours 0..7; negative labels are the
        previous day's hours (EU windows ending 01:00..07:00)."""
        return tuple(range(end - 8, end) for end in range(self.o3_8h_first_window_end, 25))

    def min_days_in_month(self, month: int) -> int:
        """Minimum valid days for ``month`` (1..12) to be valid."""
        if not 1 <= month <= 12:
            raise InvalidValueError("month", month, "must be 1..12")
        return self.min_days_february if month == 2 else self.min_days_per_month

    def min_days_in_year(self, year: int) -> int:
        """Minimum valid days for ``year``: the larger of the count and the capture rule."""
        days_in_year = 366 if calendar.isleap(year) else 365
        need = self.min_days_per_year or 0
        if self.min_year_capture is not None:
            need = max(need, math.ceil(self.min_year_capture * days_in_year))
        return need


_N_AND_T: Final = frozenset({"N", "T"})

GB3095_2012: Final = RuleSet(
    name="GB3095-2012/HJ663-2013",
    source="GB 3095-2012 table 4 (statistics validity), HJ 663-2013",
    counted_flags=_N_AND_T,
    min_minutes_per_hour=45,
    min_hours_per_day=20,
    min_hours_per_8h=6,
    o3_8h_first_window_end=8,
    min_o3_8h_windows=14,
    o3_exceedance_exception=True,
    min_days_per_month=27,
    min_days_february=25,
    min_days_per_year=324,
    min_year_capture=None,
    annual_requires_monthly_minimum=True,
)

GB3095_2026: Final = RuleSet(
    name="GB3095-2026/HJ663-2026",
    source="GB 3095-2026 statistics-validity table, HJ 663-2026 (same counts as 2012)",
    counted_flags=_N_AND_T,
    min_minutes_per_hour=45,
    min_hours_per_day=20,
    min_hours_per_8h=6,
    o3_8h_first_window_end=8,
    min_o3_8h_windows=14,
    o3_exceedance_exception=True,
    min_days_per_month=27,
    min_days_february=25,
    min_days_per_year=324,
    min_year_capture=None,
    annual_requires_monthly_minimum=True,
)

EU_2008_50: Final = RuleSet(
    name="EU-2008/50/EC",
    source="Directive 2008/50/EC annex VII/XI data aggregation (75 %, 18 of 24, 90 %)",
    counted_flags=_N_AND_T,
    min_minutes_per_hour=45,
    min_hours_per_day=18,
    min_hours_per_8h=6,
    o3_8h_first_window_end=1,  # 8-h means ending 01:00..24:00, each on the day it ends
    min_o3_8h_windows=18,
    o3_exceedance_exception=False,
    min_days_per_month=27,
    min_days_february=25,
    min_days_per_year=None,
    min_year_capture=Fraction(9, 10),
    annual_requires_monthly_minimum=False,
    unconfirmed=frozenset(
        {
            "counted_flags",
            "min_hours_per_day",
            "o3_8h_first_window_end",
            "o3_exceedance_exception",
            "min_days_per_month",
            "min_days_february",
        }
    ),
)

US_EPA: Final = RuleSet(
    name="US-EPA",
    source="US EPA 75 % completeness (40 CFR 50 appendices); only 18 h/day is from the spec",
    counted_flags=_N_AND_T,
    min_minutes_per_hour=45,
    min_hours_per_day=18,
    min_hours_per_8h=6,
    o3_8h_first_window_end=8,
    min_o3_8h_windows=13,  # 75 % of 17, rounded up
    o3_exceedance_exception=True,
    min_days_per_month=27,
    min_days_february=25,
    min_days_per_year=None,
    min_year_capture=Fraction(3, 4),
    annual_requires_monthly_minimum=False,
    unconfirmed=frozenset(
        {
            "counted_flags",
            "min_minutes_per_hour",
            "min_hours_per_8h",
            "o3_8h_first_window_end",
            "min_o3_8h_windows",
            "o3_exceedance_exception",
            "min_days_per_month",
            "min_days_february",
            "min_year_capture",
            "annual_requires_monthly_minimum",
        }
    ),
)

DEFAULT_RULESET: Final = GB3095_2012

RULESETS: Final[Mapping[str, RuleSet]] = MappingProxyType(
    {r.name: r for r in (GB3095_2012, GB3095_2026, EU_2008_50, US_EPA)}
)


def get_ruleset(name: str) -> RuleSet:
    """The named rule set (see module doc)."""
    try:
        return RULESETS[name]
    except KeyError:
        raise UnknownNameError("rule set", name, tuple(RULESETS)) from None


def _count(what: str, n: int, most: int) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= most:
        raise InvalidValueError(what, n, f"must be an integer 0..{most}")


def hour_valid(n_valid_minutes: int, rules: RuleSet = DEFAULT_RULESET) -> Verdict:
    """1-hour average: enough valid (counted-flag) minutes in the hour (default ≥ 45)."""
    _count("n_valid_minutes", n_valid_minutes, 60)
    if n_valid_minutes < rules.min_minutes_per_hour:
        return Verdict(False, INSUFFICIENT_MINUTES)
    return Verdict(True, None)


def day_valid(n_valid_hours: int, rules: RuleSet = DEFAULT_RULESET) -> Verdict:
    """24-hour (calendar-day) average: enough valid hours (default ≥ 20)."""
    _count("n_valid_hours", n_valid_hours, 24)
    if n_valid_hours < rules.min_hours_per_day:
        return Verdict(False, INSUFFICIENT_HOURS)
    return Verdict(True, None)


def eight_hour_valid(n_valid_hours: int, rules: RuleSet = DEFAULT_RULESET) -> Verdict:
    """8-hour moving average: enough valid hours in the 8 (default ≥ 6)."""
    _count("n_valid_hours", n_valid_hours, 8)
    if n_valid_hours < rules.min_hours_per_8h:
        return Verdict(False, INSUFFICIENT_8H_HOURS)
    return Verdict(True, None)


def o3_daily_max_8h_valid(
    n_valid_windows: int,
    daily_max: Number | None = None,
    limit: Number | None = None,
    rules: RuleSet = DEFAULT_RULESET,
) -> Verdict:
    """O3 daily maximum 8-h mean: enough valid 8-h windows (default 14 of 17).

    With fewer windows the result is still valid when the rule set has the exceedance
    exception and ``daily_max`` is strictly greater than ``limit`` (the applicable
    O3 daily-max-8h limit, e.g. ``limits.limit_value(set, "o3", "daily_max_8h")``):
    the day exceeded whatever the missing windows held. Reason then
    ``"exceedance_exception"``.
    """
    _count("n_valid_windows", n_valid_windows, rules.o3_8h_windows_per_day)
    if n_valid_windows >= rules.min_o3_8h_windows:
        return Verdict(True, None)
    exception = (
        rules.o3_exceedance_exception
        and n_valid_windows > 0
        and daily_max is not None
        and limit is not None
        and to_decimal(daily_max, "daily_max") > to_decimal(limit, "limit")
    )
    if exception:
        return Verdict(True, EXCEEDANCE_EXCEPTION)
    return Verdict(False, INSUFFICIENT_WINDOWS)


def _days_in_month(year: int, month: int) -> int:
    if not 1 <= month <= 12:
        raise InvalidValueError("month", month, "must be 1..12")
    return calendar.monthrange(year, month)[1]


def month_valid(n_days: int, year: int, month: int, rules: RuleSet = DEFAULT_RULESET) -> Verdict:
    """Monthly average: enough valid days (default ≥ 27; ≥ 25 in February)."""
    _count("n_days", n_days, _days_in_month(year, month))
    if n_days < rules.min_days_in_month(month):
        return Verdict(False, INSUFFICIENT_DAYS)
    return Verdict(True, None)


def year_valid(
    days_per_month: Sequence[int], year: int, rules: RuleSet = DEFAULT_RULESET
) -> Verdict:
    """Annual average from the valid days of each month (12 counts, January first).

    Default: ≥ 324 days in total and every month valid (27; February 25). Reasons:
    ``insufficient_days`` for the total (or the capture fraction), then
    ``month_short:<m>`` for each short month, joined by ``;``.
    """
    if len(days_per_month) != 12:
        raise InvalidValueError("days_per_month", list(days_per_month), "needs 12 counts")
    for month, n in enumerate(days_per_month, start=1):
        _count(f"days_per_month[{month}]", n, _days_in_month(year, month))
    reasons: list[str] = []
    if sum(days_per_month) < rules.min_days_in_year(year):
        reasons.append(INSUFFICIENT_DAYS)
    if rules.annual_requires_monthly_minimum:
        for month, n in enumerate(days_per_month, start=1):
            if n < rules.min_days_in_month(month):
                reasons.append(f"{MONTH_SHORT}:{month}")
    if reasons:
        return Verdict(False, ";".join(reasons))
    return Verdict(True, None)
