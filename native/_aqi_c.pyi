"""Signatures of the compiled twin (`_aqi_c.pyx`), identical to `_aqi_py.py`."""

from native._aggregate_common import F64, I32
from native._aqi_common import AqiMaxResult, IaqiArrays

__all__ = ["aqi_max", "count_good", "iaqi"]

def iaqi(
    concentration: F64,
    bp_conc: F64,
    bp_iaqi: F64,
    places: int | None = None,
    *,
    fixed_above: int | None = None,
    fallback: I32 | None = None,
) -> IaqiArrays: ...
def aqi_max(iaqi_2d: I32) -> AqiMaxResult: ...
def count_good(aqi: I32) -> int: ...
