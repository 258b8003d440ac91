"""GB 3095 limit sets, exceedance and site thresholds (gateway/standards/limits.py).

The table below is spec/standards.md §1 copied row by row; every limit set must match it.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal
from typing import Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.standards import (
    LIMIT_SETS,
    SITE_THRESHOLDS,
    InvalidValueError,
    UnknownNameError,
    custom_threshold,
    exceeds,
    get_limit_set,
    get_site_threshold,
    limit_set_for,
    limit_value,
    ppb_to_ug_m3,
)

SETS = (
    "GB3095-2012-I",
    "GB3095-2012-II",
    "GB3095-2026-transitional-I",
    "GB3095-2026-transitional-II",
    "GB3095-2026-final-I",
    "GB3095-2026-final-II",
)

SPEC = {
    # (pollutant, averaging): 2012 I, 2012 II, 2026 transitional I, II, 2026 final I, II
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


def test_the_six_named_sets_exist() -> None:
    assert tuple(LIMIT_SETS) == SETS
    for name in SETS:
        s = get_limit_set(name)
        assert s.name == name
        assert s.grade == name.rsplit("-", 1)[1]
    with pytest.raises(UnknownNameError):
        get_limit_set("GB3095-2026-II")


@pytest.mark.parametrize(("key", "row"), sorted(SPEC.items()))
def test_limits_match_the_spec_table(key: tuple[str, str], row: tuple[int, ...]) -> None:
    pollutant, averaging = key
    for name, expected in zip(SETS, row, strict=True):
        limit = get_limit_set(name).limit(pollutant, averaging)
        assert limit.value == expected
        assert limit.unit == ("mg/m³" if pollutant == "co" else "µg/m³")
    for name in SETS:
        assert len(get_limit_set(name).limits) == len(SPEC)


def test_no_limit_for_a_pair_the_standard_does_not_set() -> None:
    with pytest.raises(UnknownNameError):
        limit_value("GB3095-2012-II", "co", "annual")
    with pytest.raises(UnknownNameError):
        limit_value("GB3095-2012-II", "o3", "24h")


@pytest.mark.parametrize(
    ("limit_set", "pollutant", "averaging", "value", "expected"),
    [
        ("GB3095-2012-II", "pm25", "24h", 75, False),  # equal complies ("不得超过")
        ("GB3095-2012-II", "pm25", "24h", 75.01, True),
        ("GB3095-2026-transitional-II", "pm25", "24h", 60, False),
        ("GB3095-2026-transitional-II", "pm25", "24h", 61, True),
        ("GB3095-2026-final-II", "pm25", "24h", 50.5, True),
        ("GB3095-2012-I", "o3", "daily_max_8h", 100, False),
        ("GB3095-2012-II", "o3", "daily_max_8h", 160.1, True),
        ("GB3095-2012-II", "co", "1h", Decimal("10.0"), False),
        ("GB3095-2012-II", "co", "1h", Decimal("10.1"), True),
        ("GB3095-2026-final-I", "no2", "annual", 30, False),
        ("GB3095-2026-final-I", "no2", "annual", 31, True),
    ],
)
def test_exceeds_is_strictly_greater(
    limit_set: str, pollutant: str, averaging: str, value: float, expected: bool
) -> None:
    assert exceeds(limit_set, pollutant, averaging, value) is expected
    assert exceeds(get_limit_set(limit_set), pollutant, averaging, value) is expected


def test_exceeds_at_reported_precision() -> None:
    # A float mean that is 75 in every printed digit but one.
    assert exceeds("GB3095-2012-II", "pm25", "24h", 75.00000000000001)
    assert not exceeds("GB3095-2012-II", "pm25", "24h", 75.00000000000001, reported=True)
    # Half to even: 75.5 → 76 exceeds, 76.5 → 76 too, 75.4 → 75 complies.
    assert exceeds("GB3095-2012-II", "pm25", "24h", 75.5, reported=True)
    assert exceeds("GB3095-2012-II", "pm25", "24h", 76.5, reported=True)
    assert not exceeds("GB3095-2012-II", "pm25", "24h", 75.4, reported=True)
    assert not exceeds("GB3095-2012-II", "pm25", "24h", 74.5, reported=True)
    # CO to 0.1 mg/m³: 4.05 → 4.0 complies, 4.15 → 4.2 exceeds.
    assert not exceeds("GB3095-2012-II", "co", "24h", 4.05, reported=True)
    assert exceeds("GB3095-2012-II", "co", "24h", 4.15, reported=True)


def test_exceeds_rejects_bad_values() -> None:
    with pytest.raises(InvalidValueError):
        exceeds("GB3095-2012-II", "pm25", "24h", -1)
    with pytest.raises(InvalidValueError):
        exceeds("GB3095-2012-II", "pm25", "24h", float("nan"))
    with pytest.raises(UnknownNameError):
        exceeds("GB3095-2012-II", "pm1", "24h", 1)


@pytest.mark.parametrize(
    ("day", "grade", "expected"),
    [
        (date(2020, 6, 1), "II", "GB3095-2012-II"),
        (date(2026, 2, 28), "II", "GB3095-2012-II"),
        (date(2026, 3, 1), "II", "GB3095-2026-transitional-II"),
        (date(2030, 12, 31), "I", "GB3095-2026-transitional-I"),
        (date(2031, 1, 1), "I", "GB3095-2026-final-I"),
        (date(2040, 1, 1), "II", "GB3095-2026-final-II"),
    ],
)
def test_limit_set_for_a_date(day: date, grade: Literal["I", "II"], expected: str) -> None:
    s = limit_set_for(day, grade)
    assert s.name == expected
    assert s.valid_from is None or s.valid_from <= day
    assert s.valid_until is None or day <= s.valid_until


def test_limit_set_for_rejects_an_unknown_grade() -> None:
    with pytest.raises(UnknownNameError):
        limit_set_for(date(2020, 1, 1), "III")  # type: ignore[arg-type]


def test_limit_sets_are_immutable() -> None:
    s = get_limit_set("GB3095-2012-II")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.name = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.limits[("pm25", "24h")] = s.limits[("pm10", "24h")]  # type: ignore[index]


def test_ppb_conversion_factors() -> None:
    # factor = M / 24.465 at 298.15 K, 1013.25 hPa: NO2 46.0055/24.465 = 1.880.
    assert ppb_to_ug_m3("no2", 100) == Decimal("188.000")
    assert ppb_to_ug_m3("so2", 10) == Decimal("26.190")
    assert ppb_to_ug_m3("o3", 1) == Decimal("1.962")
    assert ppb_to_ug_m3("co", 1) == Decimal("1.145")  # ppm → mg/m³
    assert ppb_to_ug_m3("no", 1) == Decimal("1.227")
    with pytest.raises(UnknownNameError):
        ppb_to_ug_m3("pm25", 1)


# ---------------------------------------------------------------- site thresholds


@pytest.mark.parametrize(
    ("name", "averaging", "value"),
    [
        ("nmhc_workshop_1h", "1h", Decimal(10)),
        ("nmhc_workshop_1h_special", "1h", Decimal(6)),
        ("nmhc_workshop_single", "single", Decimal(30)),
        ("nmhc_workshop_single_special", "single", Decimal(20)),
        ("nmhc_boundary_new_source", "1h", Decimal("4.0")),
        ("nmhc_boundary_existing_source", "1h", Decimal("5.0")),
    ],
)
def test_nmhc_thresholds(name: str, averaging: str, value: Decimal) -> None:
    t = get_site_threshold(name)
    assert (t.quantity, t.averaging, t.value, t.unit) == ("nmhc", averaging, value, "mg/m³")
    assert t.confirmed
    assert not t.exceeded_by(value)
    assert t.exceeded_by(value + Decimal("0.01"))


def test_construction_dust_default_is_marked_unconfirmed() -> None:
    t = get_site_threshold("construction_dust_pm10_1h")
    assert not t.confirmed
    assert "UNCONFIRMED" in t.source
    assert [n for n, s in SITE_THRESHOLDS.items() if not s.confirmed] == [
        "construction_dust_pm10_1h"
    ]


def test_custom_threshold() -> None:
    t = custom_threshold("site_42_pm10", "pm10", "1h", 120, "µg/m³", "district order 2019-7")
    assert not t.confirmed
    assert t.value == 120
    assert not t.exceeded_by(120) and t.exceeded_by(120.1)
    with pytest.raises(InvalidValueError):
        custom_threshold("x", "pm10", "1h", -5, "µg/m³")
    with pytest.raises(UnknownNameError):
        get_site_threshold("nope")


@given(
    st.sampled_from(SETS),
    st.sampled_from(sorted(SPEC)),
    st.decimals(min_value=0, max_value=1000, places=2),
)
def test_exceeds_agrees_with_the_limit(name: str, key: tuple[str, str], value: Decimal) -> None:
    limit = limit_value(name, *key)
    assert exceeds(name, *key, value) == (value > limit)
