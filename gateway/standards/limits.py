"""Concentration limits of GB 3095 and the site thresholds the district applies.

GB 3095-2012 (+ 2018 amendment) and GB 3095-2026 ambient limits, spec/standards.md §1:
six named limit sets, each for one grade (I: class-I areas such as nature reserves; II:
everything else)::

    GB3095-2012-I, GB3095-2012-II                      data before 2026-03-01
    GB3095-2026-transitional-I, ...-transitional-II   2026-03-01 .. 2030-12-31
    GB3095-2026-final-I, GB3095-2026-final-II         from 2031-01-01

Pollutants ``so2 no2 co o3 pm10 pm25 nox`` (NOx as NO2); averaging ``annual``, ``24h``,
``1h`` and ``daily_max_8h`` (O3). Units µg/m³, CO mg/m³.

Reference state (2018 amendment and GB 3095-2026): gases (SO2, NO2, NOx, CO, O3) at
298.15 K and 1013.25 hPa; particulate matter at actual ambient temperature and pressure.
The original 2012 text used 273 K for everything; data here are taken to be at the
amended reference state. ppb → µg/m³ at 298.15 K / 1013.25 hPa: factor M / 24.465
(:data:`PPB_TO_UG_M3`).

Exceedance is *strictly greater than* the limit: GB 3095 says the concentration "不得超过"
(shall not exceed) the limit, so a value equal to the limit complies. The value is compared
exactly as given (floats by their ``repr``); with ``reported=True`` it is first rounded to
the reporting precision (whole µg/m³; CO 0.1 mg/m³; GB/T 8170 half-to-even) — the
precision is the project's choice (it mirrors HJ 633-2026), the spec does not state it.

Site thresholds (§6, §8) are :class:`SiteThreshold` values: GB 37822-2019 NMHC outside the
workshop, GB 16297-1996 factory-boundary NMHC, the construction-dust warning threshold
(an UNCONFIRMED placeholder: the plan only asks for "scientifically set" thresholds), and
any custom threshold an operator configures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from types import MappingProxyType
from typing import Final, Literal

from ._common import InvalidValueError, Number, UnknownNameError, round_half_even, to_decimal

POLLUTANTS: Final[tuple[str, ...]] = ("so2", "no2", "co", "o3", "pm10", "pm25", "nox")
AVERAGINGS: Final[tuple[str, ...]] = ("annual", "24h", "1h", "daily_max_8h")
Grade = Literal["I", "II"]

UG_M3: Final = "µg/m³"
MG_M3: Final = "mg/m³"

GB3095_2012_I: Final = "GB3095-2012-I"
GB3095_2012_II: Final = "GB3095-2012-II"
GB3095_2026_TRANSITIONAL_I: Final = "GB3095-2026-transitional-I"
GB3095_2026_TRANSITIONAL_II: Final = "GB3095-2026-transitional-II"
GB3095_2026_FINAL_I: Final = "GB3095-2026-final-I"
GB3095_2026_FINAL_II: Final = "GB3095-2026-final-II"

GB3095_2026_IN_FORCE: Final = date(2026, 3, 1)
GB3095_2026_FINAL_FROM: Final = date(2031, 1, 1)

# Reference state of gases (2018 amendment, GB 3095-2026); PM: actual ambient conditions.
GAS_REFERENCE_TEMPERATURE_K: Final = Decimal("298.15")
GAS_REFERENCE_PRESSURE_HPA: Final = Decimal("1013.25")
MOLAR_VOLUME_L_PER_MOL: Final = Decimal("24.465")  # at 298.15 K, 1013.25 hPa

# ppb → µg/m³ at the gas reference state (CO: ppm → mg/m³, the same number). Spec §1.
PPB_TO_UG_M3: Final[Mapping[str, Decimal]] = MappingProxyType(
    {
        "no2": Decimal("1.880"),
        "nox": Decimal("1.880"),  # NOx expressed as NO2
        "no": Decimal("1.227"),
        "so2": Decimal("2.619"),
        "o3": Decimal("1.962"),
        "co": Decimal("1.145"),  # mg/m³ per ppm
    }
)
NO_AS_NO2: Final = Decimal(46) / Decimal(30)  # NO mass expressed as NO2

# Whole µg/m³, CO 0.1 mg/m³ (project choice for ``reported=True``; see module doc).
_REPORTED_PLACES: Final = {p: (1 if p == "co" else 0) for p in POLLUTANTS}

# (pollutant, averaging) → (2012 I, 2012 II, 2026 transitional I, II, 2026 final I, II).
_TABLE: Final[dict[tuple[str, str], tuple[int, int, int, int, int, int]]] = {
    ("so2", "annual"): (20, 60, 20, 60, 20, 20),
    ("so2", "24h"): (50, 150, 50, 150, 50, 50),
    ("so2", "1h"): (150, 500, 150, 500, 150, 150),
    ("no2", "annual"): (40, 40, 40, 40, 30, 30),
    ("no2", "24h"): (80, 80, 80, 80, 50, 50),
    ("no2", "1h"): (200, 200, 200, 200, 200, 200),
    ("co", "24h"): (4, 4, 4, 4, 4, 4),
    ("co", "1h"): (10, 10, 10, 10, 10, 10),
    ("o3", "daily_max_8h"): (100, 160, 100, 160, 100, 160),
    ("o3", "1h"): (160, 200, 160, 200, 160, 200),
    ("pm10", "annual"): (40, 70, 40, 60, 20, 50),
    ("pm10", "24h"): (50, 150, 50, 120, 50, 100),
    ("pm25", "annual"): (15, 35, 15, 30, 10, 25),
    ("pm25", "24h"): (35, 75, 35, 60, 25, 50),
    ("nox", "annual"): (50, 50, 50, 50, 40, 40),
    ("nox", "24h"): (100, 100, 100, 100, 70, 70),
    ("nox", "1h"): (250, 250, 250, 250, 250, 250),
}


@dataclass(frozen=True, slots=True)
class Limit:
    """One GB 3095 limit: ``value`` in ``unit`` for ``pollutant`` over ``averaging``."""

    pollutant: str
    averaging: str
    value: Decimal
    unit: str


@dataclass(frozen=True, slots=True)
class LimitSet:
    """A named set of GB 3095 limits for one grade, with the dates it governs.

    ``valid_from``/``valid_until`` (inclusive) are the data dates the set applies to;
    ``None`` is open-ended.
    """

    name: str
    standard: str
    grade: Grade
    valid_from: date | None
    valid_until: date | None
    limits: Mapping[tuple[str, str], Limit] = field(repr=False)

    def limit(self, pollutant: str, averaging: str) -> Limit:
        """The limit for ``pollutant``/``averaging``; ``UnknownNameError`` if none."""
        try:
            return self.limits[(pollutant, averaging)]
        except KeyError:
            known = tuple(f"{p}/{a}" for p, a in self.limits)
            raise UnknownNameError(
                f"{self.name} limit", f"{pollutant}/{averaging}", known
            ) from None


def _make(
    name: str, standard: str, grade: Grade, column: int, span: tuple[date | None, date | None]
) -> LimitSet:
    limits = {
        key: Limit(key[0], key[1], Decimal(row[column]), MG_M3 if key[0] == "co" else UG_M3)
        for key, row in _TABLE.items()
    }
    return LimitSet(name, standard, grade, span[0], span[1], MappingProxyType(limits))


_BEFORE_2026 = (None, date(2026, 2, 28))
_TRANSITIONAL = (GB3095_2026_IN_FORCE, date(2030, 12, 31))
_FINAL = (GB3095_2026_FINAL_FROM, None)

LIMIT_SETS: Final[Mapping[str, LimitSet]] = MappingProxyType(
    {
        s.name: s
        for s in (
            _make(GB3095_2012_I, "GB 3095-2012", "I", 0, _BEFORE_2026),
            _make(GB3095_2012_II, "GB 3095-2012", "II", 1, _BEFORE_2026),
            _make(GB3095_2026_TRANSITIONAL_I, "GB 3095-2026", "I", 2, _TRANSITIONAL),
            _make(GB3095_2026_TRANSITIONAL_II, "GB 3095-2026", "II", 3, _TRANSITIONAL),
            _make(GB3095_2026_FINAL_I, "GB 3095-2026", "I", 4, _FINAL),
            _make(GB3095_2026_FINAL_II, "GB 3095-2026", "II", 5, _FINAL),
        )
    }
)


def get_limit_set(name: str) -> LimitSet:
    """The named limit set (see module doc for the names)."""
    try:
        return LIMIT_SETS[name]
    except KeyError:
        raise UnknownNameError("limit set", name, tuple(LIMIT_SETS)) from None


def limit_set_for(day: date, grade: Grade) -> LimitSet:
    """The limit set that governs data of ``day`` (local calendar day) in a ``grade`` area."""
    if grade not in ("I", "II"):
        raise UnknownNameError("grade", str(grade), ("I", "II"))
    if day < GB3095_2026_IN_FORCE:
        generation = "GB3095-2012"
    elif day < GB3095_2026_FINAL_FROM:
        generation = "GB3095-2026-transitional"
    else:
        generation = "GB3095-2026-final"
    return LIMIT_SETS[f"{generation}-{grade}"]


def _resolve(limit_set: str | LimitSet) -> LimitSet:
    return limit_set if isinstance(limit_set, LimitSet) else get_limit_set(limit_set)


def limit_value(limit_set: str | LimitSet, pollutant: str, averaging: str) -> Decimal:
    """The limit's number (µg/m³; CO mg/m³)."""
    return _resolve(limit_set).limit(pollutant, averaging).value


def exceeds(
    limit_set: str | LimitSet,
    pollutant: str,
    averaging: str,
    value: Number,
    *,
    reported: bool = False,
) -> bool:
    """True when ``value`` is strictly greater than the limit (equal complies).

    ``reported=True`` first rounds the value to the reporting precision (whole µg/m³,
    CO 0.1 mg/m³, half to even), so that e.g. a float mean of 75.00000000001 does not
    exceed 75. Negative or non-finite values raise ``InvalidValueError``.
    """
    limit = _resolve(limit_set).limit(pollutant, averaging)
    v = to_decimal(value, f"{pollutant}/{averaging}")
    if v < 0:
        raise InvalidValueError(f"{pollutant}/{averaging}", value, "cannot be negative")
    if reported:
        v = round_half_even(v, _REPORTED_PLACES[pollutant])
    return v > limit.value


def ppb_to_ug_m3(gas: str, ppb: Number) -> Decimal:
    """Convert ppb to µg/m³ at 298.15 K, 1013.25 hPa (CO: ppm to mg/m³)."""
    try:
        factor = PPB_TO_UG_M3[gas]
    except KeyError:
        raise UnknownNameError("gas", gas, tuple(PPB_TO_UG_M3)) from None
    return to_decimal(ppb, gas) * factor


# ---------------------------------------------------------------- site thresholds


@dataclass(frozen=True, slots=True)
class SiteThreshold:
    """A threshold a site's values are checked against (not an ambient GB 3095 limit).

    ``averaging`` is ``"1h"`` for an hourly mean or ``"single"`` for any single value.
    ``confirmed`` is False when the number is a placeholder, not taken from a standard:
    it must be configured per site and must not be presented as the law.
    """

    name: str
    quantity: str
    averaging: str
    value: Decimal
    unit: str
    source: str
    confirmed: bool = True

    def exceeded_by(self, value: Number) -> bool:
        """Strictly greater than the threshold (equal complies, as for GB 3095)."""
        v = to_decimal(value, self.name)
        if v < 0:
            raise InvalidValueError(self.name, value, "cannot be negative")
        return v > self.value


def custom_threshold(
    name: str, quantity: str, averaging: str, value: Number, unit: str, source: str = "custom"
) -> SiteThreshold:
    """An operator-configured threshold (``confirmed=False``: it is a local setting)."""
    v = to_decimal(value, name)
    if v < 0:
        raise InvalidValueError(name, value, "a threshold cannot be negative")
    return SiteThreshold(name, quantity, averaging, v, unit, source, confirmed=False)


_GB37822 = "GB 37822-2019 annex A (in-plant fugitive VOCs, outside the workshop)"
_GB16297 = "GB 16297-1996 (factory-boundary fugitive emission)"

NMHC_WORKSHOP_1H: Final = SiteThreshold(
    "nmhc_workshop_1h", "nmhc", "1h", Decimal(10), MG_M3, _GB37822
)
NMHC_WORKSHOP_1H_SPECIAL: Final = SiteThreshold(
    "nmhc_workshop_1h_special", "nmhc", "1h", Decimal(6), MG_M3, _GB37822 + ", special limit"
)
NMHC_WORKSHOP_SINGLE: Final = SiteThreshold(
    "nmhc_workshop_single", "nmhc", "single", Decimal(30), MG_M3, _GB37822
)
NMHC_WORKSHOP_SINGLE_SPECIAL: Final = SiteThreshold(
    "nmhc_workshop_single_special",
    "nmhc",
    "single",
    Decimal(20),
    MG_M3,
    _GB37822 + ", special limit",
)
# GB 16297 boundary limits are judged on the boundary monitoring point's hourly value.
NMHC_BOUNDARY_NEW_SOURCE: Final = SiteThreshold(
    "nmhc_boundary_new_source", "nmhc", "1h", Decimal("4.0"), MG_M3, _GB16297 + ", new sources"
)
NMHC_BOUNDARY_EXISTING_SOURCE: Final = SiteThreshold(
    "nmhc_boundary_existing_source",
    "nmhc",
    "1h",
    Decimal("5.0"),
    MG_M3,
    _GB16297 + ", existing sources",
)
# UNCONFIRMED placeholder: the district plan asks construction sites of ≥ 5000 m² for
# "scientifically set particulate warning thresholds" without a number. 150 µg/m³ PM10
# (hourly mean) is GB 3095-2012 grade II's 24 h PM10 limit, chosen only so the feature
# works out of the box; configure each site's real threshold with custom_threshold().
CONSTRUCTION_DUST_PM10_1H: Final = SiteThreshold(
    "construction_dust_pm10_1h",
    "pm10",
    "1h",
    Decimal(150),
    UG_M3,
    "UNCONFIRMED placeholder (district plan: 'scientifically set' thresholds)",
    confirmed=False,
)

SITE_THRESHOLDS: Final[Mapping[str, SiteThreshold]] = MappingProxyType(
    {
        t.name: t
        for t in (
            NMHC_WORKSHOP_1H,
            NMHC_WORKSHOP_1H_SPECIAL,
            NMHC_WORKSHOP_SINGLE,
            NMHC_WORKSHOP_SINGLE_SPECIAL,
            NMHC_BOUNDARY_NEW_SOURCE,
            NMHC_BOUNDARY_EXISTING_SOURCE,
            CONSTRUCTION_DUST_PM10_1H,
        )
    }
)


def get_site_threshold(name: str) -> SiteThreshold:
    """A built-in site threshold by name (see :data:`SITE_THRESHOLDS`)."""
    try:
        return SITE_THRESHOLDS[name]
    except KeyError:
        raise UnknownNameError("site threshold", name, tuple(SITE_THRESHOLDS)) from None
