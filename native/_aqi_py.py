"""Pure-Python twin of `_aqi_c.pyx`: the readable reference of the AQI kernels.

The same loops and the same float operations as the compiled twin (Python floats are
IEEE-754 doubles, ``/`` is correctly rounded), so both return the same integers. Why the
float comparisons below are exact for the decimal a float stands for is argued in
`native/aqi.py` ("Exactness"); numpy only allocates the results.
"""

from __future__ import annotations

import math

import numpy as np

from native._aggregate_common import F64, I32
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
    check_codes,
    check_iaqi_inputs,
)

__all__ = ["aqi_max", "count_good", "iaqi"]


def _round_half_even(x: float, scale: float) -> float:
    """GB/T 8170: the decimal ``x`` stands for, rounded half-even to a multiple of
    1/``scale``, as the whole number N of those units (0 ≤ x, x·scale well below 2**52).

    Every comparison is with a float fl(T) of a decimal T of ≤ 14 significant digits, for
    which "decimal of x" <, =, > T exactly when x <, =, > fl(T)."""
    if scale == 1.0:  # whole units: floor and + 0.5 are exact, no division needed
        low = float(math.floor(x))
        half = low + 0.5
    else:
        low = float(math.floor(x * scale))  # an estimate; the two loops make it exact
        while low > 0 and x < low / scale:
            low -= 1
        while x >= (low + 1) / scale:
            low += 1
        half = (2 * low + 1) / (2 * scale)
    if x < half:
        return low
    if x > half:
        return low + 1
    return low + low % 2  # an exact half: to the even neighbour


def _interpolate_units(bp_conc: list[float], bp_iaqi: list[float], n: float, scale: float) -> int:
    """ceil of formula (1) at c = n/scale (n whole, 0 ≤ c ≤ top breakpoint), exactly: in
    units of 1/scale the index is i_lo + d_i·(n − lo·scale)/(d_bp·scale), a quotient of
    whole numbers below 2**52, whose correctly rounded float is whole only if it is."""
    k = 1
    while n > bp_conc[k] * scale:
        k += 1
    lo = bp_conc[k - 1]
    i_lo = bp_iaqi[k - 1]
    d_i = bp_iaqi[k] - i_lo
    return int(i_lo + math.ceil(d_i * (n - lo * scale) / ((bp_conc[k] - lo) * scale)))


def _interpolate(bp_conc: list[float], bp_iaqi: list[float], c: float) -> int:
    """ceil of formula (1) at the decimal of the float ``c`` (0 ≤ c ≤ top), exactly.

    On the segment [lo, lo + d_bp] → [i_lo, i_lo + d_i], ceil(IAQI) = i_lo + m for the
    least m in 0..d_i with c ≤ t_m = (lo·d_i + m·d_bp) / d_i. The float formula gives m
    to within one; the loops settle it by comparing c with the thresholds."""
    k = 1
    while c > bp_conc[k]:
        k += 1
    lo = bp_conc[k - 1]
    d_bp = bp_conc[k] - lo
    i_lo = bp_iaqi[k - 1]
    d_i = bp_iaqi[k] - i_lo
    m = float(math.ceil(d_i * (c - lo) / d_bp))
    m = min(max(m, 0.0), d_i)
    while m > 0 and c <= (lo * d_i + (m - 1) * d_bp) / d_i:
        m -= 1
    while c > (lo * d_i + m * d_bp) / d_i:
        m += 1
    return int(i_lo + m)


def iaqi(
    concentration: F64,
    bp_conc: F64,
    bp_iaqi: F64,
    places: int | None = None,
    *,
    fixed_above: int | None = None,
    fallback: I32 | None = None,
) -> IaqiArrays:
    values, policy = check_iaqi_inputs(
        concentration, bp_conc, bp_iaqi, places, fixed_above, fallback
    )
    conc = [float(b) for b in policy.bp_conc]
    steps = [float(b) for b in policy.bp_iaqi]
    top = conc[-1]
    scale = 10.0**policy.places
    fallback_ = None if policy.fallback is None else policy.fallback.tolist()
    n = len(values)
    out = np.empty(n, dtype=np.int32)
    rule = np.empty(n, dtype=np.uint8)
    for i, x in enumerate(values.tolist()):
        code = RULE_INTERPOLATED
        if math.isnan(x):
            value = MISSING
        elif math.isinf(x) or x < 0:
            value = INVALID
        else:
            if policy.places < 0:  # 2012: the value as measured
                on_scale = x <= top
                if on_scale:
                    value = _interpolate(conc, steps, x)
            else:  # 2026: rounded first (far over the top, rounding cannot bring it back)
                units = _round_half_even(x, scale) if x <= top + 1 else math.inf
                on_scale = units <= top * scale
                if on_scale:
                    value = _interpolate_units(conc, steps, units, scale)
            if not on_scale:
                if fallback_ is not None:
                    value = fallback_[i] if fallback_[i] != MISSING else NO_FALLBACK
                    code = RULE_FALLBACK
                elif policy.fixed_above >= 0:
                    value = policy.fixed_above
                    code = RULE_FIXED
                else:
                    value = IAQI_MAX
                    code = RULE_ABOVE_SCALE
        out[i] = value
        rule[i] = code
    return IaqiArrays(out, rule)


def aqi_max(iaqi_2d: I32) -> AqiMaxResult:
    table = check_codes("iaqi_2d", iaqi_2d, 2)
    n_indicators, n = table.shape
    rows = table.tolist()
    aqi = [MISSING] * n
    error = [0] * n
    for j in range(n_indicators):
        row = rows[j]
        for i in range(n):
            v = row[i]
            if v >= 0:
                if v > aqi[i]:
                    aqi[i] = v
            elif v != MISSING and error[i] == 0:
                error[i] = v
    for i in range(n):
        if error[i]:
            aqi[i] = error[i]
    primary = np.zeros((n_indicators, n), dtype=np.uint8)
    for j in range(n_indicators):
        row = rows[j]
        for i in range(n):
            if aqi[i] > PRIMARY_ABOVE and row[i] == aqi[i]:
                primary[j, i] = 1
    return AqiMaxResult(np.array(aqi, dtype=np.int32), primary)


def count_good(aqi: I32) -> int:
    values = check_codes("aqi", aqi, 1)
    count = 0
    for a in values.tolist():
        if 0 <= a <= GOOD_AQI_MAX:
            count += 1
    return count
