"""Air quality index by HJ 633-2012 and HJ 633-2026 (spec/standards.md §3).

Two named generations, selectable per computation: ``"HJ633-2012"`` (historical data, the
district plan) and ``"HJ633-2026"`` (data from 2026-03-01).

Individual index (IAQI) of one indicator, HJ 633 table 1 and formula (1)::

    IAQI = (IAQI_hi − IAQI_lo) / (BP_hi − BP_lo) · (C − BP_lo) + IAQI_lo

rounded UP to an integer. HJ 633-2012 uses the concentration as measured; HJ 633-2026
first rounds it by GB/T 8170 (half to even) to a whole µg/m³ (SO2, NO2, O3, PM10, PM2.5)
or to 0.1 mg/m³ (CO). Arithmetic is exact (``Decimal``/``Fraction``); floats are read by
their shortest ``repr`` (see ``_common``).

Indicators (``name``: pollutant, averaging, unit):

    so2_24h, so2_1h, no2_24h, no2_1h, pm10_24h, co_24h, co_1h, o3_1h, o3_8h, pm25_24h
    pm10_1h, pm25_1h  -- hourly PM for the real-time report, on the 24 h breakpoints

Special rules (table 1 notes):

* SO2 1 h above 800 µg/m³: 2012 → the SO2 24 h IAQI is used instead (the caller passes the
  SO2 24 h concentration as ``fallback``; :func:`hourly_aqi` takes it as ``so2_24h=``);
  2026 → IAQI 200.
* O3 8 h above 800 µg/m³: 2012 → the O3 1 h IAQI is used instead (``fallback`` is the
  O3 1 h concentration; the reports take it from their own ``o3_1h`` entry);
  2026 → IAQI 300.

Choices where the spec is silent (made explicit, not hidden):

* Above the top breakpoint (IAQI 500) the IAQI is capped at 500 and the result carries
  ``rule="above_scale"``; the concentration itself is kept in the result.
* A negative, NaN or infinite concentration raises ``InvalidValueError``: screening such
  values is the validity layer's job, the index is not defined for them.
* Real-time PM10/PM2.5 on the 24 h breakpoints is stated for 2026; HJ 633-2012 has no 1 h
  PM breakpoints either, so ``pm10_1h``/``pm25_1h`` use the 24 h table in both generations.
* Primary and exceeding pollutants are reported as indicator names (``"o3_8h"``,
  ``"pm25_24h"``), so O3 1 h and O3 8 h stay distinguishable.
* Missing data (key present, value ``None``): 2026 computes from the rest and publishes the
  AQI only if it is > 100 (then it is a lower bound of the full AQI), else AQI and level
  are ``"NA"``. HJ 633-2012 has no rule: the AQI of the rest is published and the missing
  indicators are listed in ``missing``, so a caller can refuse it. An indicator absent from
  the mapping is not monitored ("/") and does not make the AQI incomplete.
* An exact IAQI on a breakpoint (C equal to BP) is the breakpoint's IAQI; both adjacent
  segments give the same number.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Final, Literal

from ._common import (
    InvalidValueError,
    Number,
    StandardsError,
    UnknownNameError,
    round_half_even,
    to_decimal,
)

HJ633_2012: Final = "HJ633-2012"
HJ633_2026: Final = "HJ633-2026"
GENERATIONS: Final[tuple[str, ...]] = (HJ633_2012, HJ633_2026)

Report = Literal["daily", "hourly"]

# Rule tags carried by IaqiResult.rule.
RULE_ABOVE_SCALE: Final = "above_scale"
RULE_SO2_1H_USE_24H: Final = "so2_1h_above_800:use_so2_24h"  # 2012
RULE_SO2_1H_FIXED_200: Final = "so2_1h_above_800:iaqi_200"  # 2026
RULE_O3_8H_USE_1H: Final = "o3_8h_above_800:use_o3_1h"  # 2012
RULE_O3_8H_FIXED_300: Final = "o3_8h_above_800:iaqi_300"  # 2026

IAQI_MAX: Final = 500
GOOD_DAY_MAX_AQI: Final = 100  # 优良天: AQI ≤ 100
PUBLISH_INCOMPLETE_ABOVE: Final = 100  # 2026: an incomplete AQI is published only if > 100
PRIMARY_ABOVE: Final = 50  # primary pollutant only when AQI > 50
EXCEEDING_ABOVE: Final = 100  # 2012 "exceeding pollutant": IAQI > 100

NA: Final = "NA"  # missing indicator, or an unpublishable AQI (2026)
UNMONITORED: Final = "/"

_IAQI_STEPS: Final = (0, 50, 100, 150, 200, 300, 400, 500)

# HJ 633 table 1. µg/m³ except CO in mg/m³. Column k is the concentration at _IAQI_STEPS[k].
# SO2 1 h stops at 800 (IAQI 200) and O3 8 h at 800 (IAQI 300): above, the special rules.
_SO2_24H = (0, 50, 150, 475, 800, 1600, 2100, 2620)
_SO2_1H = (0, 150, 500, 650, 800)
_NO2_24H = (0, 40, 80, 180, 280, 565, 750, 940)
_NO2_1H = (0, 100, 200, 700, 1200, 2340, 3090, 3840)
_PM10_24H_2012 = (0, 50, 150, 250, 350, 420, 500, 600)
_PM10_24H_2026 = (0, 50, 120, 250, 350, 420, 500, 600)
_CO_24H = (0, 2, 4, 14, 24, 36, 48, 60)
_CO_1H = (0, 5, 10, 35, 60, 90, 120, 150)
_O3_1H = (0, 160, 200, 300, 400, 800, 1000, 1200)
_O3_8H = (0, 100, 160, 215, 265, 800)
_PM25_24H_2012 = (0, 35, 75, 115, 150, 250, 350, 500)
_PM25_24H_2026 = (0, 35, 60, 115, 150, 250, 350, 500)

_TABLES: Final[dict[str, dict[str, tuple[int, ...]]]] = {
    HJ633_2012: {
        "so2_24h": _SO2_24H,
        "so2_1h": _SO2_1H,
        "no2_24h": _NO2_24H,
        "no2_1h": _NO2_1H,
        "pm10_24h": _PM10_24H_2012,
        "pm10_1h": _PM10_24H_2012,
        "co_24h": _CO_24H,
        "co_1h": _CO_1H,
        "o3_1h": _O3_1H,
        "o3_8h": _O3_8H,
        "pm25_24h": _PM25_24H_2012,
        "pm25_1h": _PM25_24H_2012,
    },
    HJ633_2026: {
        "so2_24h": _SO2_24H,
        "so2_1h": _SO2_1H,
        "no2_24h": _NO2_24H,
        "no2_1h": _NO2_1H,
        "pm10_24h": _PM10_24H_2026,
        "pm10_1h": _PM10_24H_2026,
        "co_24h": _CO_24H,
        "co_1h": _CO_1H,
        "o3_1h": _O3_1H,
        "o3_8h": _O3_8H,
        "pm25_24h": _PM25_24H_2026,
        "pm25_1h": _PM25_24H_2026,
    },
}

INDICATORS: Final[tuple[str, ...]] = tuple(_TABLES[HJ633_2012])

# Decimal places of the HJ 633-2026 pre-rounding (whole µg/m³; CO 0.1 mg/m³).
_PLACES_2026: Final = {name: (1 if name.startswith("co_") else 0) for name in INDICATORS}

# The indicators of each report, in HJ 633 table order (SO2, NO2, PM10, CO, O3, PM2.5).
DAILY_INDICATORS: Final[tuple[str, ...]] = (
    "so2_24h",
    "no2_24h",
    "pm10_24h",
    "co_24h",
    "o3_1h",
    "o3_8h",
    "pm25_24h",
)
HOURLY_INDICATORS: Final[tuple[str, ...]] = (
    "so2_1h",
    "no2_1h",
    "pm10_1h",
    "co_1h",
    "o3_1h",
    "o3_8h",
    "pm25_1h",
)


class FallbackRequiredError(StandardsError):
    """HJ 633-2012 needs another indicator's concentration and it was not given.

    SO2 1 h above 800 µg/m³ takes the SO2 24 h IAQI; O3 8 h above 800 µg/m³ takes the
    O3 1 h IAQI. ``indicator`` is the one over 800, ``needs`` the one to pass.
    """

    def __init__(self, indicator: str, needs: str, concentration: Decimal) -> None:
        self.indicator = indicator
        self.needs = needs
        self.concentration = concentration
        super().__init__(
            f"HJ 633-2012: {indicator}={concentration} > 800 takes the {needs} IAQI, "
            f"but no {needs} concentration was given"
        )


@dataclass(frozen=True, slots=True)
class BreakpointTable:
    """One column of HJ 633 table 1: ``concentrations[k]`` has IAQI ``iaqis[k]``."""

    generation: str
    indicator: str
    unit: str
    concentrations: tuple[Decimal, ...]
    iaqis: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class IaqiResult:
    """The IAQI of one indicator and how it was obtained.

    ``concentration`` is the input as an exact decimal; ``computed_from`` the value the
    formula used (2026: rounded by GB/T 8170; 2012: the same as ``concentration``).
    ``exact`` is the unrounded index and ``iaqi`` its ceiling. ``rule`` names a special
    rule that decided the value (``None`` for plain interpolation); when another
    indicator's IAQI was used (2012, over 800) that computation is in ``substitute``.
    """

    generation: str
    indicator: str
    concentration: Decimal
    computed_from: Decimal
    exact: Fraction
    iaqi: int
    rule: str | None = None
    substitute: IaqiResult | None = None

    @property
    def above_scale(self) -> bool:
        """True when the concentration is above the IAQI 500 breakpoint (capped at 500)."""
        return self.rule == RULE_ABOVE_SCALE


@dataclass(frozen=True, slots=True)
class AqiLevel:
    """One row of the HJ 633 AQI level table (级别, 类别, 颜色)."""

    level: int
    numeral: str
    aqi_low: int
    aqi_high: int | None  # None: open-ended (> 300)
    category_zh: str
    category_en: str
    colour: str
    rgb: tuple[int, int, int]


AQI_LEVELS: Final[tuple[AqiLevel, ...]] = (
    AqiLevel(1, "I", 0, 50, "优", "Excellent", "green", (0, 228, 0)),
    AqiLevel(2, "II", 51, 100, "良", "Good", "yellow", (255, 255, 0)),
    AqiLevel(3, "III", 101, 150, "轻度污染", "Lightly polluted", "orange", (255, 126, 0)),
    AqiLevel(4, "IV", 151, 200, "中度污染", "Moderately polluted", "red", (255, 0, 0)),
    AqiLevel(5, "V", 201, 300, "重度污染", "Heavily polluted", "purple", (153, 0, 76)),
    AqiLevel(6, "VI", 301, None, "严重污染", "Severely polluted", "maroon", (126, 0, 35)),
)


@dataclass(frozen=True, slots=True)
class AqiResult:
    """An AQI report (daily or hourly) by one generation.

    ``aqi`` is the maximum IAQI of the indicators that have data (``None`` when none
    has). ``published`` says whether it may be shown: always when nothing is missing;
    with missing data, 2026 publishes only an AQI > 100, 2012 always (see module doc).
    ``level``, ``primary_pollutants`` and ``good_day`` are only set when published.
    """

    generation: str
    report: str
    aqi: int | None
    published: bool
    level: AqiLevel | None
    iaqis: tuple[IaqiResult, ...]
    primary_pollutants: tuple[str, ...]
    exceeding_pollutants: tuple[str, ...]  # 2012 only (IAQI > 100); always () for 2026
    missing: tuple[str, ...]
    unmonitored: tuple[str, ...]

    @property
    def aqi_text(self) -> str:
        """The AQI as published: the number, or ``"NA"``."""
        return str(self.aqi) if self.published and self.aqi is not None else NA

    @property
    def level_text(self) -> str:
        """The level numeral as published, or ``"NA"``."""
        return self.level.numeral if self.level is not None else NA

    @property
    def good_day(self) -> bool | None:
        """AQI ≤ 100 (优良天); ``None`` when the AQI is not published."""
        if not self.published or self.aqi is None:
            return None
        return self.aqi <= GOOD_DAY_MAX_AQI

    def iaqi_of(self, indicator: str) -> IaqiResult | None:
        """The IAQI result of ``indicator``, or ``None`` when it is missing/unmonitored."""
        for result in self.iaqis:
            if result.indicator == indicator:
                return result
        return None

    def display(self, indicator: str) -> str:
        """The indicator's IAQI as published: the number, ``"NA"`` (missing) or ``"/"``."""
        if indicator in self.unmonitored:
            return UNMONITORED
        if indicator in self.missing:
            return NA
        result = self.iaqi_of(indicator)
        if result is None:
            known = _report_indicators(self.report)
            raise UnknownNameError(f"{self.report}-report indicator", indicator, known)
        return str(result.iaqi)


def _check_generation(generation: str) -> str:
    if generation not in _TABLES:
        raise UnknownNameError("AQI generation", generation, GENERATIONS)
    return generation


def _report_indicators(report: str) -> tuple[str, ...]:
    return DAILY_INDICATORS if report == "daily" else HOURLY_INDICATORS


def breakpoint_table(generation: str, indicator: str) -> BreakpointTable:
    """HJ 633 table 1 column for ``indicator`` in ``generation``."""
    tables = _TABLES[_check_generation(generation)]
    if indicator not in tables:
        raise UnknownNameError("AQI indicator", indicator, INDICATORS)
    concentrations = tables[indicator]
    return BreakpointTable(
        generation=generation,
        indicator=indicator,
        unit="mg/m³" if indicator.startswith("co_") else "µg/m³",
        concentrations=tuple(Decimal(c) for c in concentrations),
        iaqis=_IAQI_STEPS[: len(concentrations)],
    )


def _interpolate(table: BreakpointTable, c: Decimal) -> Fraction:
    """Formula (1) on the segment holding ``c`` (0 ≤ c ≤ top breakpoint)."""
    bps = table.concentrations
    for k in range(1, len(bps)):
        if c <= bps[k]:
            bp_lo, bp_hi = Fraction(bps[k - 1]), Fraction(bps[k])
            i_lo, i_hi = table.iaqis[k - 1], table.iaqis[k]
            return Fraction(i_hi - i_lo) / (bp_hi - bp_lo) * (Fraction(c) - bp_lo) + i_lo
    raise AssertionError("unreachable: caller checks c against the top breakpoint")


def iaqi(
    generation: str,
    indicator: str,
    concentration: Number,
    *,
    fallback: Number | None = None,
) -> IaqiResult:
    """IAQI of ``indicator`` at ``concentration`` (µg/m³; CO mg/m³) by ``generation``.

    ``fallback`` is only read by HJ 633-2012 above 800 µg/m³: the SO2 24 h concentration
    for ``so2_1h``, the O3 1 h concentration for ``o3_8h``. Needed and not given:
    ``FallbackRequiredError``.
    """
    table = breakpoint_table(generation, indicator)
    measured = to_decimal(concentration, indicator)
    if measured < 0:
        raise InvalidValueError(indicator, concentration, "a concentration cannot be negative")
    # 2026 rounds first (GB/T 8170); 2012 uses the concentration as measured.
    c = round_half_even(measured, _PLACES_2026[indicator]) if generation == HJ633_2026 else measured

    def result(
        exact: Fraction, rule: str | None = None, sub: IaqiResult | None = None
    ) -> IaqiResult:
        return IaqiResult(
            generation=generation,
            indicator=indicator,
            concentration=measured,
            computed_from=c,
            exact=exact,
            iaqi=math.ceil(exact),
            rule=rule,
            substitute=sub,
        )

    top = table.concentrations[-1]
    if c <= top:
        return result(_interpolate(table, c))
    if indicator in ("so2_1h", "o3_8h"):
        needs = "so2_24h" if indicator == "so2_1h" else "o3_1h"
        if generation == HJ633_2026:
            fixed = 200 if indicator == "so2_1h" else 300
            rule = RULE_SO2_1H_FIXED_200 if indicator == "so2_1h" else RULE_O3_8H_FIXED_300
            return result(Fraction(fixed), rule)
        if fallback is None:
            raise FallbackRequiredError(indicator, needs, c)
        sub = iaqi(generation, needs, fallback)
        rule = RULE_SO2_1H_USE_24H if indicator == "so2_1h" else RULE_O3_8H_USE_1H
        return result(sub.exact, rule, sub)
    return result(Fraction(IAQI_MAX), RULE_ABOVE_SCALE)


def aqi_level(aqi: int) -> AqiLevel:
    """The HJ 633 level row for an (integer) AQI."""
    if aqi < 0:
        raise InvalidValueError("aqi", aqi, "an AQI cannot be negative")
    for row in AQI_LEVELS:
        if row.aqi_high is None or aqi <= row.aqi_high:
            return row
    raise AssertionError("unreachable: the last level is open-ended")


def _report(
    generation: str,
    report: Report,
    concentrations: Mapping[str, Number | None],
    fallbacks: Mapping[str, Number | None],
) -> AqiResult:
    _check_generation(generation)
    allowed = _report_indicators(report)
    for name in concentrations:
        if name not in allowed:
            raise UnknownNameError(f"{report}-report indicator", name, allowed)
    results: list[IaqiResult] = []
    missing: list[str] = []
    unmonitored: list[str] = []
    for name in allowed:
        if name not in concentrations:
            unmonitored.append(name)
            continue
        value = concentrations[name]
        if value is None:
            missing.append(name)
            continue
        results.append(iaqi(generation, name, value, fallback=fallbacks.get(name)))

    aqi = max((r.iaqi for r in results), default=None)
    if aqi is None:
        published = False
    elif generation == HJ633_2026 and missing:
        published = aqi > PUBLISH_INCOMPLETE_ABOVE
    else:
        published = True
    level = aqi_level(aqi) if published and aqi is not None else None
    primary: tuple[str, ...] = ()
    if published and aqi is not None and aqi > PRIMARY_ABOVE:
        primary = tuple(r.indicator for r in results if r.iaqi == aqi)
    exceeding: tuple[str, ...] = ()
    if generation == HJ633_2012:
        exceeding = tuple(r.indicator for r in results if r.iaqi > EXCEEDING_ABOVE)
    return AqiResult(
        generation=generation,
        report=report,
        aqi=aqi,
        published=published,
        level=level,
        iaqis=tuple(results),
        primary_pollutants=primary,
        exceeding_pollutants=exceeding,
        missing=tuple(missing),
        unmonitored=tuple(unmonitored),
    )


def daily_aqi(generation: str, concentrations: Mapping[str, Number | None]) -> AqiResult:
    """Daily AQI (日报) from 24 h means, O3 daily max 1 h (``o3_1h``) and max 8 h (``o3_8h``).

    Keys are :data:`DAILY_INDICATORS`; a key with ``None`` is missing ("NA"), an absent
    key is not monitored ("/"). The 2012 O3 8 h > 800 rule reads this mapping's ``o3_1h``.
    """
    fallbacks: dict[str, Number | None] = {"o3_8h": concentrations.get("o3_1h")}
    return _report(generation, "daily", concentrations, fallbacks)


def hourly_aqi(
    generation: str,
    concentrations: Mapping[str, Number | None],
    *,
    so2_24h: Number | None = None,
) -> AqiResult:
    """Real-time (hourly) AQI (实时报) from 1 h means (PM on the 24 h breakpoints).

    Keys are :data:`HOURLY_INDICATORS` (``o3_8h`` is the 8 h moving mean, if reported).
    ``so2_24h`` is the SO2 24 h concentration the 2012 rule takes when SO2 1 h > 800;
    the 2012 O3 8 h > 800 rule reads this mapping's ``o3_1h``.
    """
    fallbacks: dict[str, Number | None] = {
        "so2_1h": so2_24h,
        "o3_8h": concentrations.get("o3_1h"),
    }
    return _report(generation, "hourly", concentrations, fallbacks)


def is_good_day(aqi: int) -> bool:
    """优良天: a day whose AQI is ≤ 100."""
    if aqi < 0:
        raise InvalidValueError("aqi", aqi, "an AQI cannot be negative")
    return aqi <= GOOD_DAY_MAX_AQI


def count_good_days(days: Iterable[AqiResult | int | None]) -> int:
    """Number of good days among daily results or AQIs; unpublished/``None`` days do not count."""
    count = 0
    for day in days:
        if isinstance(day, AqiResult):
            count += day.good_day is True
        elif day is not None:
            count += is_good_day(day)
    return count
