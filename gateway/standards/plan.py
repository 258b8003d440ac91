"""The district plan's annual targets and the year's progress toward them.

Yibin district (Luoyang) 2018-2020 air-pollution action plan, spec/standards.md §8::

    year   PM2.5 annual mean ≤   PM10 annual mean ≤   good days (AQI ≤ 100) ≥
    2018   64 µg/m³              108 µg/m³            215
    2019   52 µg/m³              100 µg/m³            230
    2020   50 µg/m³               93 µg/m³            260

Progress is a plain year-to-date reading, stated so nobody mistakes it for a forecast:

* PM2.5/PM10: on track when the year-to-date mean is ≤ the annual target (a value equal
  to the target complies); ``margin = target − ytd mean`` (≥ 0 is on track). Seasonality
  (winters are dirtier) is not modelled.
* Good days: the year-to-date pace is projected over the calendar year,
  ``projected = good_days_ytd / days_elapsed · days_in_year``; on track when
  ``projected ≥ target``. Also reported: the days still needed, whether the target is
  already secured and whether it can still be reached in the days remaining.
  ``days_elapsed`` counts calendar days, so a day without a valid AQI counts as not good.

Another plan is another :class:`Plan` value; :func:`progress` takes it as ``plan=``.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from types import MappingProxyType
from typing import Final

from ._common import InvalidValueError, Number, StandardsError, to_decimal


class NoTargetError(StandardsError):
    """The plan sets no target for the year asked about."""

    def __init__(self, plan: str, year: int, years: tuple[int, ...]) -> None:
        self.plan = plan
        self.year = year
        self.years = years
        super().__init__(f"{plan} sets no target for {year}; it covers {years}")


@dataclass(frozen=True, slots=True)
class PlanTarget:
    """One year's targets: annual means in µg/m³, good days (AQI ≤ 100) in days."""

    year: int
    pm25_annual_max: Decimal
    pm10_annual_max: Decimal
    good_days_min: int


@dataclass(frozen=True, slots=True)
class Plan:
    """A named plan with its targets by year."""

    name: str
    targets: Mapping[int, PlanTarget] = field(repr=False)

    def target(self, year: int) -> PlanTarget:
        """The targets for ``year``; ``NoTargetError`` if the plan sets none."""
        try:
            return self.targets[year]
        except KeyError:
            raise NoTargetError(self.name, year, tuple(sorted(self.targets))) from None


DISTRICT_PLAN_2018_2020: Final = Plan(
    name="Yibin district (Luoyang) air-pollution action plan 2018-2020",
    targets=MappingProxyType(
        {
            2018: PlanTarget(2018, Decimal(64), Decimal(108), 215),
            2019: PlanTarget(2019, Decimal(52), Decimal(100), 230),
            2020: PlanTarget(2020, Decimal(50), Decimal(93), 260),
        }
    ),
)
DEFAULT_PLAN: Final = DISTRICT_PLAN_2018_2020


@dataclass(frozen=True, slots=True)
class PlanProgress:
    """How the year so far stands against the plan's targets (see module doc)."""

    year: int
    target: PlanTarget
    days_elapsed: int
    days_in_year: int
    pm25_ytd_mean: Decimal
    pm25_margin: Decimal  # target − ytd mean; ≥ 0 on track
    pm25_on_track: bool
    pm10_ytd_mean: Decimal
    pm10_margin: Decimal
    pm10_on_track: bool
    good_days_ytd: int
    good_days_projected: float
    good_days_margin: float  # projected − target; ≥ 0 on track
    good_days_needed: int  # still to come for the target (0 when secured)
    good_days_secured: bool
    good_days_attainable: bool  # needed ≤ days remaining
    good_days_on_track: bool

    @property
    def on_track(self) -> bool:
        """All three targets on track."""
        return self.pm25_on_track and self.pm10_on_track and self.good_days_on_track


def progress(
    year: int,
    pm25_ytd_mean: Number,
    pm10_ytd_mean: Number,
    good_days_ytd: int,
    days_elapsed: int,
    *,
    plan: Plan = DEFAULT_PLAN,
) -> PlanProgress:
    """Progress of ``year`` after ``days_elapsed`` calendar days (1..days in the year)."""
    target = plan.target(year)
    days_in_year = 366 if calendar.isleap(year) else 365
    if not 1 <= days_elapsed <= days_in_year:
        raise InvalidValueError("days_elapsed", days_elapsed, f"must be 1..{days_in_year}")
    if not 0 <= good_days_ytd <= days_elapsed:
        raise InvalidValueError("good_days_ytd", good_days_ytd, "must be 0..days_elapsed")
    pm25 = to_decimal(pm25_ytd_mean, "pm25_ytd_mean")
    pm10 = to_decimal(pm10_ytd_mean, "pm10_ytd_mean")
    for what, value in (("pm25_ytd_mean", pm25), ("pm10_ytd_mean", pm10)):
        if value < 0:
            raise InvalidValueError(what, value, "a mean concentration cannot be negative")
    projected = Fraction(good_days_ytd, days_elapsed) * days_in_year
    needed = max(0, target.good_days_min - good_days_ytd)
    return PlanProgress(
        year=year,
        target=target,
        days_elapsed=days_elapsed,
        days_in_year=days_in_year,
        pm25_ytd_mean=pm25,
        pm25_margin=target.pm25_annual_max - pm25,
        pm25_on_track=pm25 <= target.pm25_annual_max,
        pm10_ytd_mean=pm10,
        pm10_margin=target.pm10_annual_max - pm10,
        pm10_on_track=pm10 <= target.pm10_annual_max,
        good_days_ytd=good_days_ytd,
        good_days_projected=float(projected),
        good_days_margin=float(projected - target.good_days_min),
        good_days_needed=needed,
        good_days_secured=needed == 0,
        good_days_attainable=needed <= days_in_year - days_elapsed,
        good_days_on_track=projected >= target.good_days_min,
    )
