"""Data-validity rule sets and their predicates (gateway/standards/rulesets.py).

Boundaries from spec/standards.md §2: 44/45 minutes, 19/20 hours, 5/6 hours of 8,
13/14 O3 windows, 24/25 days in February, 26/27 in other months, 323/324 days a year.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.standards import (
    DEFAULT_RULESET,
    RULESETS,
    InvalidValueError,
    RuleSet,
    UnknownNameError,
    Verdict,
    day_valid,
    eight_hour_valid,
    get_ruleset,
    hour_valid,
    month_valid,
    o3_daily_max_8h_valid,
    year_valid,
)

GB12 = get_ruleset("GB3095-2012/HJ663-2013")
GB26 = get_ruleset("GB3095-2026/HJ663-2026")
EU = get_ruleset("EU-2008/50/EC")
US = get_ruleset("US-EPA")
CHINESE = (GB12, GB26)


def test_named_rule_sets() -> None:
    assert tuple(RULESETS) == (
        "GB3095-2012/HJ663-2013",
        "GB3095-2026/HJ663-2026",
        "EU-2008/50/EC",
        "US-EPA",
    )
    assert DEFAULT_RULESET is GB12
    with pytest.raises(UnknownNameError):
        get_ruleset("GB3095")


@pytest.mark.parametrize("rules", CHINESE, ids=lambda r: r.name)
def test_chinese_numbers(rules: RuleSet) -> None:
    assert rules.counted_flags == {"N", "T"}
    assert rules.min_minutes_per_hour == 45
    assert rules.min_hours_per_day == 20
    assert rules.min_hours_per_8h == 6
    assert rules.o3_8h_windows_per_day == 17
    assert rules.min_o3_8h_windows == 14
    assert rules.o3_exceedance_exception
    assert (rules.min_days_per_month, rules.min_days_february) == (27, 25)
    assert rules.min_days_per_year == 324
    assert rules.annual_requires_monthly_minimum
    assert rules.unconfirmed == frozenset()


def test_eu_and_us_numbers_from_the_spec() -> None:
    assert EU.min_minutes_per_hour == 45 and EU.min_hours_per_8h == 6
    assert (EU.o3_8h_windows_per_day, EU.min_o3_8h_windows) == (24, 18)
    assert EU.min_year_capture == Fraction(9, 10)
    assert US.min_hours_per_day == 18


@pytest.mark.parametrize("rules", tuple(RULESETS.values()), ids=lambda r: r.name)
def test_unconfirmed_names_real_fields(rules: RuleSet) -> None:
    fields = {f.name for f in dataclasses.fields(RuleSet)}
    assert rules.unconfirmed <= fields


def test_flags() -> None:
    assert GB12.counts("N") and GB12.counts("T")
    assert not any(GB12.counts(f) for f in "FMSDCB")
    with pytest.raises(UnknownNameError):
        GB12.counts("X")
    strict = dataclasses.replace(GB12, name="strict", counted_flags=frozenset({"N"}))
    assert not strict.counts("T")
    with pytest.raises(InvalidValueError):
        dataclasses.replace(GB12, counted_flags=frozenset({"N", "Q"}))


def test_verdict_unpacks_as_a_pair() -> None:
    valid, reason = hour_valid(45)
    assert (valid, reason) == (True, None)
    assert hour_valid(44) == Verdict(False, "insufficient_minutes")


@pytest.mark.parametrize("rules", CHINESE, ids=lambda r: r.name)
def test_hour_day_and_8h_boundaries(rules: RuleSet) -> None:
    assert hour_valid(44, rules) == (False, "insufficient_minutes")
    assert hour_valid(45, rules) == (True, None)
    assert hour_valid(60, rules) == (True, None)
    assert day_valid(19, rules) == (False, "insufficient_hours")
    assert day_valid(20, rules) == (True, None)
    assert eight_hour_valid(5, rules) == (False, "insufficient_8h_hours")
    assert eight_hour_valid(6, rules) == (True, None)


def test_eu_and_us_day_is_18_hours() -> None:
    for rules in (EU, US):
        assert day_valid(17, rules) == (False, "insufficient_hours")
        assert day_valid(18, rules) == (True, None)


def test_counts_out_of_range_are_errors() -> None:
    with pytest.raises(InvalidValueError):
        hour_valid(61)
    with pytest.raises(InvalidValueError):
        hour_valid(-1)
    with pytest.raises(InvalidValueError):
        day_valid(25)
    with pytest.raises(InvalidValueError):
        eight_hour_valid(9)
    with pytest.raises(InvalidValueError):
        day_valid(True)


# ---------------------------------------------------------------- O3 daily max 8 h


def test_o3_windows_end_0800_to_2400() -> None:
    windows = GB12.o3_8h_windows()
    assert len(windows) == 17
    assert windows[0] == range(0, 8)  # ends 08:00: hours labelled 00..07
    assert windows[-1] == range(16, 24)  # ends 24:00
    eu = EU.o3_8h_windows()
    assert len(eu) == 24 and eu[0] == range(-7, 1)  # ends 01:00, from 17:00 the day before


def test_o3_daily_max_8h_boundary() -> None:
    assert o3_daily_max_8h_valid(13) == (False, "insufficient_windows")
    assert o3_daily_max_8h_valid(14) == (True, None)
    assert o3_daily_max_8h_valid(17) == (True, None)
    with pytest.raises(InvalidValueError):
        o3_daily_max_8h_valid(18)


def test_o3_exceedance_exception() -> None:
    # Grade II limit 160: a max of 170 from 10 windows exceeds whatever the rest held.
    assert o3_daily_max_8h_valid(10, 170, 160) == (True, "exceedance_exception")
    assert o3_daily_max_8h_valid(1, 160.1, 160) == (True, "exceedance_exception")
    # Equal to the limit does not exceed it.
    assert o3_daily_max_8h_valid(10, 160, 160) == (False, "insufficient_windows")
    # No windows, no result; no limit given, no exception.
    assert o3_daily_max_8h_valid(0, 999, 160) == (False, "insufficient_windows")
    assert o3_daily_max_8h_valid(10, 170) == (False, "insufficient_windows")
    # The EU profile has no exception, and needs 18 of 24.
    assert o3_daily_max_8h_valid(17, 300, 120, EU) == (False, "insufficient_windows")
    assert o3_daily_max_8h_valid(18, rules=EU) == (True, None)


# ---------------------------------------------------------------- months and years


@pytest.mark.parametrize("year", [2023, 2024])  # February 28 and 29 days: 25 either way
def test_february_needs_25(year: int) -> None:
    assert month_valid(24, year, 2) == (False, "insufficient_days")
    assert month_valid(25, year, 2) == (True, None)


@pytest.mark.parametrize("month", [1, 3, 4, 6, 12])
def test_other_months_need_27(month: int) -> None:
    assert month_valid(26, 2023, month) == (False, "insufficient_days")
    assert month_valid(27, 2023, month) == (True, None)


def test_month_counts_beyond_the_month_are_errors() -> None:
    with pytest.raises(InvalidValueError):
        month_valid(29, 2023, 2)
    assert month_valid(29, 2024, 2) == (True, None)
    with pytest.raises(InvalidValueError):
        month_valid(31, 2023, 4)
    with pytest.raises(InvalidValueError):
        month_valid(27, 2023, 13)


FULL_2023 = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


def test_year_323_vs_324() -> None:
    # Every month at or above its minimum (11·27 + 25 = 322), total 323 then 324.
    months = [27] * 12
    months[1] = 25
    months[0] = 28  # 323
    assert sum(months) == 323
    assert year_valid(months, 2023) == (False, "insufficient_days")
    months[2] = 28  # 324
    assert year_valid(months, 2023) == (True, None)
    assert year_valid(FULL_2023, 2023) == (True, None)


def test_year_with_a_short_month() -> None:
    months = list(FULL_2023)
    months[1] = 24  # February short; total 362 is plenty
    assert year_valid(months, 2023) == (False, "month_short:2")
    months[6] = 26
    assert year_valid(months, 2023) == (False, "month_short:2;month_short:7")
    short = [27] * 12
    short[1] = 24
    assert year_valid(short, 2023) == (False, "insufficient_days;month_short:2")


def test_year_input_errors() -> None:
    with pytest.raises(InvalidValueError):
        year_valid([31] * 11, 2023)
    with pytest.raises(InvalidValueError):
        year_valid([31] * 12, 2023)  # February cannot have 31 days


def test_eu_annual_capture_is_90_percent() -> None:
    # ceil(0.9·365) = ceil(328.5) = 329; ceil(0.9·366) = ceil(329.4) = 330.
    assert EU.min_days_in_year(2023) == 329
    assert EU.min_days_in_year(2024) == 330
    months = list(FULL_2023)
    months[1] = 10  # a short month does not matter for the EU, only the capture
    assert sum(months) == 347
    assert year_valid(months, 2023, EU) == (True, None)
    months = [27] * 12
    months[1] = 28  # 325 < 329
    assert year_valid(months, 2023, EU) == (False, "insufficient_days")


def test_rule_sets_are_configurable_and_checked() -> None:
    relaxed = dataclasses.replace(GB12, name="local", min_hours_per_day=18)
    assert day_valid(18, relaxed) == (True, None)
    with pytest.raises(InvalidValueError):
        dataclasses.replace(GB12, min_minutes_per_hour=61)
    with pytest.raises(InvalidValueError):
        dataclasses.replace(GB12, min_o3_8h_windows=18)


@given(st.integers(0, 60), st.integers(0, 60))
def test_hour_validity_is_monotone(a: int, b: int) -> None:
    lo, hi = min(a, b), max(a, b)
    assert hour_valid(lo).valid <= hour_valid(hi).valid


@given(st.lists(st.integers(0, 28), min_size=12, max_size=12))
def test_year_validity_matches_its_definition(months: list[int]) -> None:
    valid, reason = year_valid(months, 2023)
    expected = sum(months) >= 324 and all(
        n >= (25 if m == 2 else 27) for m, n in enumerate(months, start=1)
    )
    assert valid == expected
    assert (reason is None) == valid
