"""Heavy-pollution-weather warning levels and the district plan's emission cuts.

National scheme (spec/standards.md §7; local rules may be stricter, so every number is a
field of :class:`WarningScheme`), from daily AQIs, forecast or observed::

    blue     AQI > 200 for one day
    yellow   AQI > 200 for ≥ 2 consecutive days
    orange   AQI > 200 for ≥ 3 days, with AQI > 300 on at least one
    red      AQI > 200 for ≥ 4 days with AQI > 300 for ≥ 2 days, or AQI reaches 500

The district plan requires emission cuts of at least 10 %, 20 %, 30 % under yellow,
orange, red; it sets none for blue (``None``).

Reading of the table (the spec is not explicit): the days of orange and red are, like
yellow's, consecutive — an *episode* is a maximal run of consecutive days with AQI > 200;
the days > 300 are counted inside the episode and need not be consecutive. A day with no
AQI (``None``) ends an episode. "Reaches 500" is AQI ≥ 500 (HJ 633 caps the AQI at 500).
The level is the highest any episode in the sequence reaches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from ._common import InvalidValueError


class WarningLevel(IntEnum):
    """Warning levels, ordered: BLUE < YELLOW < ORANGE < RED."""

    BLUE = 1
    YELLOW = 2
    ORANGE = 3
    RED = 4

    @property
    def colour(self) -> str:
        """The level's colour name: ``"blue"``, ``"yellow"``, ``"orange"``, ``"red"``."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class WarningScheme:
    """Thresholds of a warning scheme; the default is the national one."""

    name: str = "national"
    heavy_above: int = 200  # a day counts toward an episode when AQI > this
    severe_above: int = 300
    extreme_at: int = 500  # red whenever a day's AQI ≥ this
    yellow_days: int = 2
    orange_days: int = 3
    orange_severe_days: int = 1
    red_days: int = 4
    red_severe_days: int = 2
    cut_blue_percent: int | None = None  # the plan sets none
    cut_yellow_percent: int | None = 10
    cut_orange_percent: int | None = 20
    cut_red_percent: int | None = 30


NATIONAL: Final = WarningScheme()


@dataclass(frozen=True, slots=True)
class WarningResult:
    """The warning level of a sequence of daily AQIs and the episode that set it.

    ``start`` is the index of the episode's first day in the sequence, ``days`` its
    length and ``severe_days`` its days above ``severe_above``; all ``None`` and
    ``level`` ``None`` when no day is above ``heavy_above``.
    """

    level: WarningLevel | None
    start: int | None
    days: int | None
    severe_days: int | None
    emission_cut_percent: int | None


def emission_cut_percent(
    level: WarningLevel | None, scheme: WarningScheme = NATIONAL
) -> int | None:
    """Minimum emission cut the plan requires under ``level`` (``None``: none set)."""
    if level is None:
        return None
    return {
        WarningLevel.BLUE: scheme.cut_blue_percent,
        WarningLevel.YELLOW: scheme.cut_yellow_percent,
        WarningLevel.ORANGE: scheme.cut_orange_percent,
        WarningLevel.RED: scheme.cut_red_percent,
    }[level]


def _episode_level(aqis: Sequence[int], scheme: WarningScheme) -> WarningLevel:
    days = len(aqis)
    severe = sum(a > scheme.severe_above for a in aqis)
    if max(aqis) >= scheme.extreme_at or (
        days >= scheme.red_days and severe >= scheme.red_severe_days
    ):
        return WarningLevel.RED
    if days >= scheme.orange_days and severe >= scheme.orange_severe_days:
        return WarningLevel.ORANGE
    if days >= scheme.yellow_days:
        return WarningLevel.YELLOW
    return WarningLevel.BLUE


def warning_level(
    daily_aqis: Sequence[int | None], scheme: WarningScheme = NATIONAL
) -> WarningResult:
    """The warning level reached by consecutive days' AQIs (see module doc)."""
    episodes: list[tuple[int, list[int]]] = []
    current: list[int] | None = None
    for index, aqi in enumerate(daily_aqis):
        if aqi is not None and aqi < 0:
            raise InvalidValueError(f"daily_aqis[{index}]", aqi, "an AQI cannot be negative")
        if aqi is not None and aqi > scheme.heavy_above:
            if current is None:
                current = []
                episodes.append((index, current))
            current.append(aqi)
        else:
            current = None
    best: WarningResult = WarningResult(None, None, None, None, None)
    for start, aqis in episodes:
        level = _episode_level(aqis, scheme)
        if best.level is None or level > best.level:
            best = WarningResult(
                level=level,
                start=start,
                days=len(aqis),
                severe_days=sum(a > scheme.severe_above for a in aqis),
                emission_cut_percent=emission_cut_percent(level, scheme),
            )
    return best
