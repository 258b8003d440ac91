"""The district plan's targets and progress (gateway/standards/plan.py, spec §8)."""

from __future__ import annotations

from decimal import Decimal
from types import MappingProxyType

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.standards import (
    DEFAULT_PLAN,
    DISTRICT_PLAN_2018_2020,
    InvalidValueError,
    NoTargetError,
    Plan,
    PlanTarget,
    progress,
)


@pytest.mark.parametrize(
    ("year", "pm25", "pm10", "good_days"),
    [(2018, 64, 108, 215), (2019, 52, 100, 230), (2020, 50, 93, 260)],
)
def test_targets_table(year: int, pm25: int, pm10: int, good_days: int) -> None:
    target = DISTRICT_PLAN_2018_2020.target(year)
    assert (target.pm25_annual_max, target.pm10_annual_max) == (Decimal(pm25), Decimal(pm10))
    assert target.good_days_min == good_days
    assert DEFAULT_PLAN is DISTRICT_PLAN_2018_2020


def test_a_year_outside_the_plan() -> None:
    with pytest.raises(NoTargetError) as info:
        progress(2021, 40, 80, 100, 150)
    assert info.value.years == (2018, 2019, 2020)


def test_progress_mid_2019() -> None:
    p = progress(2019, 50, 101, 120, 180)
    assert (p.pm25_margin, p.pm25_on_track) == (Decimal(2), True)  # 52 − 50
    assert (p.pm10_margin, p.pm10_on_track) == (Decimal(-1), False)  # 100 − 101
    # 120 good days in 180: 120/180·365 = 243.33 ≥ 230.
    assert p.good_days_projected == pytest.approx(243.333, abs=1e-3)
    assert p.good_days_margin == pytest.approx(13.333, abs=1e-3)
    assert p.good_days_on_track
    assert (p.good_days_needed, p.good_days_secured, p.good_days_attainable) == (110, False, True)
    assert not p.on_track  # PM10 is off


def test_equal_to_target_is_on_track() -> None:
    # 2020 is a leap year: 130 good days in 183 → 130/183·366 = 260 exactly.
    p = progress(2020, 50, 93, 130, 183)
    assert p.days_in_year == 366
    assert p.good_days_projected == 260 and p.good_days_margin == 0
    assert p.pm25_on_track and p.pm10_on_track and p.good_days_on_track
    assert p.on_track


def test_secured_and_unattainable() -> None:
    secured = progress(2020, 40, 80, 260, 300)
    assert secured.good_days_secured and secured.good_days_needed == 0
    lost = progress(2018, 40, 80, 10, 300)  # 205 more needed, 65 days left
    assert not lost.good_days_attainable and not lost.good_days_on_track


def test_input_errors() -> None:
    with pytest.raises(InvalidValueError):
        progress(2019, 40, 80, 0, 0)
    with pytest.raises(InvalidValueError):
        progress(2019, 40, 80, 0, 366)  # 2019 has 365 days
    with pytest.raises(InvalidValueError):
        progress(2019, 40, 80, 11, 10)
    with pytest.raises(InvalidValueError):
        progress(2019, -1, 80, 1, 10)


def test_another_plan() -> None:
    plan = Plan("test", MappingProxyType({2030: PlanTarget(2030, Decimal(30), Decimal(60), 300)}))
    assert progress(2030, 30, 60, 300, 365, plan=plan).on_track


@given(
    st.sampled_from([2018, 2019, 2020]),
    st.integers(1, 365),
    st.data(),
)
def test_good_day_projection(year: int, elapsed: int, data: st.DataObject) -> None:
    good = data.draw(st.integers(0, elapsed))
    p = progress(year, 0, 0, good, elapsed)
    assert p.good_days_on_track == (good * p.days_in_year >= p.target.good_days_min * elapsed)
    assert p.good_days_secured == (good >= p.target.good_days_min)
    if p.good_days_secured:
        assert p.good_days_on_track and p.good_days_attainable
