"""Statistics of HJ 663 (ambient air quality assessment): percentiles and annual figures.

Percentile (HJ 663, spec/standards.md §2): sort the n valid values ascending
X(1)..X(n); ``k = 1 + (n − 1)·p/100``; ``s`` = integer part of ``k``;
``P = X(s) + (X(s+1) − X(s))·(k − s)``. When ``s = n`` (p = 100, or n = 1) there is no
X(n+1) and ``k − s = 0``: ``P = X(n)``. Arithmetic is exact (floats read by their
``repr``); the result is returned as a float.

Annual assessment statistics (HJ 663), computed from the year's valid daily values:

    PM2.5, PM10   annual mean and 95th percentile of the daily means
    CO            95th percentile of the daily means
    O3            90th percentile of the daily maximum 8-h means
    SO2, NO2      annual mean and 98th percentile of the daily means -- the 98th is
                  UNCONFIRMED (configurable with ``percentile_rank=``)
    NOx           annual mean

Whether the year has enough valid days is ``rulesets.year_valid``'s question, not this
module's; these helpers compute over whatever valid values they are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Final

from ._common import InvalidValueError, Number, StandardsError, UnknownNameError, to_fraction


class EmptyDataError(StandardsError):
    """A statistic was asked of no values."""


# pollutant → percentile rank of its annual assessment (None: no percentile statistic).
ANNUAL_PERCENTILE_RANK: Final[Mapping[str, int | None]] = MappingProxyType(
    {
        "pm25": 95,
        "pm10": 95,
        "co": 95,
        "o3": 90,  # of the daily maximum 8-h means
        "so2": 98,  # UNCONFIRMED
        "no2": 98,  # UNCONFIRMED
        "nox": None,
    }
)
UNCONFIRMED_PERCENTILE_RANKS: Final = frozenset({"so2", "no2"})
# Pollutants assessed by their annual mean.
ANNUAL_MEAN_POLLUTANTS: Final = frozenset({"pm25", "pm10", "so2", "no2", "nox"})


def _exact(values: Sequence[Number], what: str) -> list[Fraction]:
    if len(values) == 0:
        raise EmptyDataError(f"{what}: no values")
    return [to_fraction(v, f"{what}[{i}]") for i, v in enumerate(values)]


def percentile_exact(values: Sequence[Number], p: Number) -> Fraction:
    """The HJ 663 ``p``-th percentile (0 ≤ p ≤ 100) as an exact fraction."""
    rank = to_fraction(p, "p")
    if not 0 <= rank <= 100:
        raise InvalidValueError("p", p, "must be 0..100")
    x = sorted(_exact(values, "values"))
    n = len(x)
    k = 1 + (n - 1) * rank / 100
    s = int(k)  # 1 ≤ s ≤ n
    if s == n:
        return x[n - 1]
    return x[s - 1] + (x[s] - x[s - 1]) * (k - s)


def percentile(values: Sequence[Number], p: Number) -> float:
    """The HJ 663 ``p``-th percentile of ``values`` (see module doc)."""
    return float(percentile_exact(values, p))


def mean(values: Sequence[Number]) -> float:
    """Arithmetic mean (exact, then rounded once to a float)."""
    x = _exact(values, "values")
    return float(sum(x, Fraction(0)) / len(x))


@dataclass(frozen=True, slots=True)
class AnnualStatistics:
    """The annual assessment figures of one pollutant.

    ``mean`` is ``None`` where HJ 663 assesses no annual mean (CO, O3);
    ``percentile_rank``/``percentile_value`` are ``None`` where it has no percentile.
    ``percentile_confirmed`` is False for the UNCONFIRMED SO2/NO2 98th percentile.
    """

    pollutant: str
    n_days: int
    mean: float | None
    percentile_rank: int | None
    percentile_value: float | None
    percentile_confirmed: bool


def annual_statistics(
    pollutant: str,
    daily_values: Sequence[Number],
    *,
    percentile_rank: int | None = None,
) -> AnnualStatistics:
    """HJ 663 annual statistics of ``pollutant`` from its valid daily values.

    ``daily_values`` are daily means, or for ``"o3"`` the daily maximum 8-h means.
    ``percentile_rank`` overrides the table (e.g. for the UNCONFIRMED SO2/NO2 98th).
    """
    if pollutant not in ANNUAL_PERCENTILE_RANK:
        raise UnknownNameError("pollutant", pollutant, tuple(ANNUAL_PERCENTILE_RANK))
    rank = ANNUAL_PERCENTILE_RANK[pollutant] if percentile_rank is None else percentile_rank
    confirmed = percentile_rank is None and pollutant not in UNCONFIRMED_PERCENTILE_RANKS
    return AnnualStatistics(
        pollutant=pollutant,
        n_days=len(daily_values),
        mean=mean(daily_values) if pollutant in ANNUAL_MEAN_POLLUTANTS else None,
        percentile_rank=rank,
        percentile_value=percentile(daily_values, rank) if rank is not None else None,
        percentile_confirmed=rank is not None and confirmed,
    )
