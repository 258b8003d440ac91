"""Heavy-pollution warning levels and emission cuts (gateway/standards/warnings.py).

National scheme, spec/standards.md §7: blue > 200 one day; yellow > 200 ≥ 2 consecutive
days; orange > 200 ≥ 3 days with > 300 on one; red > 200 ≥ 4 days with > 300 on ≥ 2,
or 500 reached.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.standards import (
    InvalidValueError,
    WarningLevel,
    WarningScheme,
    emission_cut_percent,
    warning_level,
)

BLUE, YELLOW = WarningLevel.BLUE, WarningLevel.YELLOW
ORANGE, RED = WarningLevel.ORANGE, WarningLevel.RED


@pytest.mark.parametrize(
    ("aqis", "expected"),
    [
        ([], None),
        ([200, 200, 200], None),  # > 200 is strict
        ([150, 201, 150], BLUE),
        ([201, 201], YELLOW),
        ([201, 150, 201], BLUE),  # not consecutive: two one-day episodes
        ([250, 250, 250], YELLOW),  # three days but none > 300
        ([201, 250, 301], ORANGE),
        ([300, 300, 300, 300], YELLOW),  # > 300 is strict
        ([301, 301, 301], ORANGE),  # red needs 4 days
        ([301, 250, 250, 301], RED),  # 4 days, 2 above 300 (not necessarily consecutive)
        ([301, 250, 250, 250], ORANGE),  # 4 days, only 1 above 300
        ([500], RED),  # 500 reached
        ([499], BLUE),
        ([210, 500], RED),
        ([201, None, 201], BLUE),  # an unknown day ends the episode
    ],
)
def test_levels(aqis: list[int | None], expected: WarningLevel | None) -> None:
    assert warning_level(aqis).level is expected


def test_the_worst_episode_wins_and_is_reported() -> None:
    result = warning_level([201, 0, 301, 301, 250, 250, 90, 205, 205])
    assert result.level is RED
    assert (result.start, result.days, result.severe_days) == (2, 4, 2)
    assert result.emission_cut_percent == 30
    quiet = warning_level([10, 20])
    assert (quiet.level, quiet.start, quiet.emission_cut_percent) == (None, None, None)


def test_emission_cuts() -> None:
    assert emission_cut_percent(YELLOW) == 10
    assert emission_cut_percent(ORANGE) == 20
    assert emission_cut_percent(RED) == 30
    assert emission_cut_percent(BLUE) is None  # the plan sets none for blue
    assert emission_cut_percent(None) is None
    assert [lvl.colour for lvl in WarningLevel] == ["blue", "yellow", "orange", "red"]


def test_a_stricter_local_scheme() -> None:
    local = WarningScheme(name="local", heavy_above=150, cut_blue_percent=5)
    assert warning_level([160], local).level is BLUE
    assert warning_level([160], local).emission_cut_percent == 5
    assert warning_level([160]).level is None


def test_negative_aqi_is_an_error() -> None:
    with pytest.raises(InvalidValueError):
        warning_level([-1])


days = st.lists(st.one_of(st.none(), st.integers(0, 500)), max_size=12)


def _rank(level: WarningLevel | None) -> int:
    return 0 if level is None else int(level)


@given(days, st.data())
def test_raising_a_day_never_lowers_the_level(aqis: list[int | None], data: st.DataObject) -> None:
    if not aqis:
        return
    i = data.draw(st.integers(0, len(aqis) - 1))
    before = _rank(warning_level(aqis).level)
    raised = list(aqis)
    raised[i] = data.draw(st.integers(raised[i] or 0, 500))
    assert _rank(warning_level(raised).level) >= before
