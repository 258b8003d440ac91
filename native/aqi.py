"""Air quality index over arrays: HJ 633-2012 and HJ 633-2026 (spec/standards.md §3).

The selector for the AQI kernels: the compiled twin `_aqi_c` (built by `make setup`) when
it imports, else the pure-Python twin `_aqi_py`, which is also the readable reference.
``LANTIAN_PURE_PYTHON=1`` forces the Python twin. `IMPLEMENTATION` says which one is in
use and `FALLBACK_REASON` why the compiled one is not.

The batch counterpart of `gateway.standards.aqi.iaqi` (the exact scalar reference, which
reads a float as its shortest ``repr`` decimal and computes with ``Decimal``/``Fraction``):
for every float the kernels return the same integer. Policy stays with the caller, who
passes one indicator's HJ 633 table-1 column and generation rules as arguments
(``gateway.standards.aqi.breakpoint_table`` has them):

- `iaqi(concentration, bp_conc, bp_iaqi, places=None, *, fixed_above=None, fallback=None)`
  → `IaqiArrays(iaqi int32, rule uint8)`. ``places``: ``None`` computes from the value as
  measured (2012); 0 or 1 first rounds it to that many decimals by GB/T 8170, half to even
  (2026: whole µg/m³, CO 0.1 mg/m³). Then formula (1) on the segment holding it, rounded
  UP. Over the top breakpoint: with ``fallback`` (int32 IAQIs, 2012: the SO2 24 h IAQI
  for SO2 1 h, the O3 1 h IAQI for O3 8 h) that IAQI (``RULE_FALLBACK``); with
  ``fixed_above`` (2026: 200 for SO2 1 h, 300 for O3 8 h) that value (``RULE_FIXED``);
  with neither, 500 (``RULE_ABOVE_SCALE``; ``.above_scale`` is that mask), allowed only
  for a table that reaches IAQI 500.
- `aqi_max(iaqi_2d int32[n_indicators, n])` → `AqiMaxResult(aqi int32[n], primary
  uint8[n_indicators, n])`: the AQI is the maximum IAQI of the column, MISSING ignored
  (2026: "compute from the rest"); primary marks the indicators equal to an AQI > 50.
  Whether an incomplete AQI may be published (2026: only > 100) is the caller's policy.
- `count_good(aqi int32[n])` → int: days with 0 ≤ AQI ≤ 100 (优良天); codes never count.

Codes instead of exceptions (the scalar reference raises; a batch flags and goes on):
NaN → ``MISSING`` (-1); negative or ±inf → ``INVALID`` (-2); the 2012 rule with a
MISSING fallback IAQI → ``NO_FALLBACK`` (-3) (another code in the fallback is passed on).
In `aqi_max` a column holding INVALID or NO_FALLBACK gets that code (the first
indicator's) as its AQI, not the max of the rest: an error is never hidden behind a
plausible number. Bad arguments raise
`KernelInputError`; arrays are never cast.

Exactness. Let D be the decimal a float x stands for (its shortest repr). For a decimal T
of at most 15 significant digits, fl(T) (the double nearest T) has T as its shortest
repr, and rounding is monotone, so D < T, D = T, D > T exactly when x < fl(T),
x = fl(T), x > fl(T). The kernels only ever compare x with such fl(T), each computed as
one correctly rounded division of two whole numbers below 2**53:

- GB/T 8170 to d places (2026; scale s = 10**d, d ≤ 3): find the whole L with
  fl(L/s) ≤ x < fl((L+1)/s) (the float x·s gives L to within one, loops settle it; for
  d = 0 it is floor(x)), then compare x with fl((2L+1)/(2s)): below → L, above → L+1,
  equal (an exact half of D) → the even one of L, L+1. The rounded concentration is
  N/s with N whole, so formula (1) rounded up is I_lo + ceil(ΔI·(N − lo·s) / (Δc·s)): one
  division of whole numbers below 2**52, whose correctly rounded float is whole only
  when the quotient is (a non-whole quotient is at least 1/(Δc·s) from any integer).
- Formula (1) rounded up on D itself (2012), segment [lo, lo+Δc] → [I_lo, I_lo+ΔI]:
  the ceiling is I_lo + m for the least m in 0..ΔI with D ≤ t_m = lo + m·Δc/ΔI, i.e.
  x ≤ fl((lo·ΔI + m·Δc)/ΔI). The float formula gives m to within one; two loops settle
  it. So NO2 1 h at 1211.4 µg/m³ is IAQI 201 exactly, where the float formula gives
  200 + 1.000000000000008 and a plain ceiling 202.

The bounds that keep every T short and every numerator exact are checked: whole
breakpoints 0 ≤ c ≤ 10**9 starting at 0, whole IAQIs ≤ 1000 whose steps divide 1000 (so
t_m has at most 3 decimals; HJ 633's steps are 50 and 100), ``places`` ≤ 3. Values above
top + 1 are over the top whatever the rounding, and skip it.
"""

from __future__ import annotations

import os
from typing import Final, Literal

from native._aggregate_common import KernelInputError
from native._aqi_common import (
    GOOD_AQI_MAX,
    IAQI_MAX,
    INVALID,
    MISSING,
    NO_FALLBACK,
    PRIMARY_ABOVE,
    RULE_ABOVE_SCALE,
    RULE_FALLBACK,
    RULE_FIXED,
    RULE_INTERPOLATED,
    AqiMaxResult,
    IaqiArrays,
)

__all__ = [
    "FALLBACK_REASON",
    "GOOD_AQI_MAX",
    "IAQI_MAX",
    "IMPLEMENTATION",
    "INVALID",
    "MISSING",
    "NO_FALLBACK",
    "PRIMARY_ABOVE",
    "RULE_ABOVE_SCALE",
    "RULE_FALLBACK",
    "RULE_FIXED",
    "RULE_INTERPOLATED",
    "AqiMaxResult",
    "IaqiArrays",
    "KernelInputError",
    "aqi_max",
    "count_good",
    "iaqi",
]

PURE_PYTHON_ENV: Final = "LANTIAN_PURE_PYTHON"

IMPLEMENTATION: Literal["cython", "python"]
FALLBACK_REASON: str | None  # why the compiled twin is not in use; None when it is

if os.environ.get(PURE_PYTHON_ENV, "") not in ("", "0"):
    from native._aqi_py import aqi_max, count_good, iaqi

    IMPLEMENTATION = "python"
    FALLBACK_REASON = f"{PURE_PYTHON_ENV}={os.environ[PURE_PYTHON_ENV]} forces the Python twin"
else:
    try:
        from native._aqi_c import aqi_max, count_good, iaqi

        IMPLEMENTATION = "cython"
        FALLBACK_REASON = None
    except ImportError as error:  # not built: `make setup` builds it
        from native._aqi_py import aqi_max, count_good, iaqi

        IMPLEMENTATION = "python"
        FALLBACK_REASON = f"native._aqi_c did not import ({error}); run `make setup`"
