# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled twin of `_aqi_py.py`: the AQI kernels as flat C loops without the GIL.

Each public function checks its inputs with the shared Python helpers (so both twins raise
the same `KernelInputError`), allocates its results with numpy, then runs a `nogil` loop.
The float operations are the Python twin's, one for one; every product and sum that
decides a result is of whole numbers below 2**53 (exact, so fused multiply-add cannot
change it) and every division is correctly rounded (IEEE-754, SSE2 on x86-64). Why that
makes the comparisons exact for the decimal a float stands for: `native/aqi.py`.
"""

from libc.math cimport INFINITY, ceil, floor, fmod, isinf, isnan
from libc.stdint cimport int32_t, uint8_t

import numpy as np

from native._aqi_common import (
    GOOD_AQI_MAX,
    IAQI_MAX,
    INVALID,
    MAX_BREAKPOINTS,
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

# The shared constants as C values (assigned once at import, read without the GIL).
cdef int32_t C_MISSING = MISSING
cdef int32_t C_INVALID = INVALID
cdef int32_t C_NO_FALLBACK = NO_FALLBACK
cdef int32_t C_IAQI_MAX = IAQI_MAX
cdef int32_t C_PRIMARY_ABOVE = PRIMARY_ABOVE
cdef int32_t C_GOOD_AQI_MAX = GOOD_AQI_MAX
cdef uint8_t C_RULE_INTERPOLATED = RULE_INTERPOLATED
cdef uint8_t C_RULE_ABOVE_SCALE = RULE_ABOVE_SCALE
cdef uint8_t C_RULE_FIXED = RULE_FIXED
cdef uint8_t C_RULE_FALLBACK = RULE_FALLBACK
if MAX_BREAKPOINTS != 8:
    raise ImportError("_aqi_c is built for breakpoint tables of at most 8 rows")


cdef inline double _round_half_even(double x, double scale) noexcept nogil:
    """GB/T 8170 half-even rounding of the decimal ``x`` stands for, as a whole number of
    units of 1/``scale`` (the Python twin's `_round_half_even`)."""
    cdef double low, half
    if scale == 1.0:
        low = floor(x)
        half = low + 0.5
    else:
        low = floor(x * scale)
        while low > 0 and x < low / scale:
            low -= 1
        while x >= (low + 1) / scale:
            low += 1
        half = (2 * low + 1) / (2 * scale)
    if x < half:
        return low
    if x > half:
        return low + 1
    return low + fmod(low, 2.0)


cdef inline int32_t _interpolate_units(
    const double* bp_conc, const double* bp_iaqi, double n, double scale
) noexcept nogil:
    """ceil of formula (1) at c = n/scale, n whole, 0 <= c <= top breakpoint: one
    division of whole numbers below 2**52 (the Python twin's `_interpolate_units`)."""
    cdef int k = 1
    while n > bp_conc[k] * scale:
        k += 1
    cdef double lo = bp_conc[k - 1]
    cdef double i_lo = bp_iaqi[k - 1]
    cdef double d_i = bp_iaqi[k] - i_lo
    return <int32_t>(i_lo + ceil(d_i * (n - lo * scale) / ((bp_conc[k] - lo) * scale)))


cdef inline int32_t _interpolate(
    const double* bp_conc, const double* bp_iaqi, double c
) noexcept nogil:
    """ceil of formula (1) at the decimal of the float ``c`` (0 <= c <= top), exactly
    (the Python twin's `_interpolate`)."""
    cdef int k = 1
    while c > bp_conc[k]:
        k += 1
    cdef double lo = bp_conc[k - 1]
    cdef double d_bp = bp_conc[k] - lo
    cdef double i_lo = bp_iaqi[k - 1]
    cdef double d_i = bp_iaqi[k] - i_lo
    cdef double m = ceil(d_i * (c - lo) / d_bp)
    if m < 0:
        m = 0
    if m > d_i:
        m = d_i
    while m > 0 and c <= (lo * d_i + (m - 1) * d_bp) / d_i:
        m -= 1
    while c > (lo * d_i + m * d_bp) / d_i:
        m += 1
    return <int32_t>(i_lo + m)


cdef void _iaqi(
    const double* values,
    Py_ssize_t n,
    const double* bp_conc,
    const double* bp_iaqi,
    int n_bp,
    int places,
    int32_t fixed_above,
    const int32_t* fallback,
    int32_t* out,
    uint8_t* rule,
) noexcept nogil:
    cdef double top = bp_conc[n_bp - 1]
    cdef double scale = 1.0
    cdef double x, units
    cdef bint on_scale
    cdef int32_t value
    cdef uint8_t code
    cdef Py_ssize_t i
    cdef int p
    for p in range(places):
        scale *= 10.0
    for i in range(n):
        x = values[i]
        code = C_RULE_INTERPOLATED
        if isnan(x):
            value = C_MISSING
        elif isinf(x) or x < 0:
            value = C_INVALID
        else:
            if places < 0:
                on_scale = x <= top
                if on_scale:
                    value = _interpolate(bp_conc, bp_iaqi, x)
            else:
                units = _round_half_even(x, scale) if x <= top + 1 else INFINITY
                on_scale = units <= top * scale
                if on_scale:
                    value = _interpolate_units(bp_conc, bp_iaqi, units, scale)
            if not on_scale:
                if fallback != NULL:
                    value = fallback[i] if fallback[i] != C_MISSING else C_NO_FALLBACK
                    code = C_RULE_FALLBACK
                elif fixed_above >= 0:
                    value = fixed_above
                    code = C_RULE_FIXED
                else:
                    value = C_IAQI_MAX
                    code = C_RULE_ABOVE_SCALE
        out[i] = value
        rule[i] = code


def iaqi(concentration, bp_conc, bp_iaqi, places=None, *, fixed_above=None, fallback=None):
    values_, policy = check_iaqi_inputs(
        concentration, bp_conc, bp_iaqi, places, fixed_above, fallback
    )
    cdef Py_ssize_t n = values_.shape[0]
    out = np.empty(n, dtype=np.int32)
    rule = np.empty(n, dtype=np.uint8)
    if n == 0:
        return IaqiArrays(out, rule)
    cdef double conc_c[8]
    cdef double iaqi_c[8]
    cdef int n_bp = len(policy.bp_conc)
    cdef int k
    for k in range(n_bp):
        conc_c[k] = policy.bp_conc[k]
        iaqi_c[k] = policy.bp_iaqi[k]
    cdef int places_ = policy.places
    cdef int32_t fixed_ = policy.fixed_above
    cdef const double[::1] v = values_
    cdef const int32_t[::1] fb
    cdef const int32_t* fb_ptr = NULL
    if policy.fallback is not None:
        fb = policy.fallback
        fb_ptr = &fb[0]
    cdef int32_t[::1] out_v = out
    cdef uint8_t[::1] rule_v = rule
    with nogil:
        _iaqi(
            &v[0], n, conc_c, iaqi_c, n_bp, places_, fixed_, fb_ptr,
            &out_v[0], &rule_v[0],
        )
    return IaqiArrays(out, rule)


def aqi_max(iaqi_2d):
    table = check_codes("iaqi_2d", iaqi_2d, 2)
    cdef Py_ssize_t n_indicators = table.shape[0]
    cdef Py_ssize_t n = table.shape[1]
    aqi = np.empty(n, dtype=np.int32)
    primary = np.zeros((n_indicators, n), dtype=np.uint8)
    if n == 0:
        return AqiMaxResult(aqi, primary)
    error = np.zeros(n, dtype=np.int32)
    cdef int32_t[::1] aqi_v = aqi
    cdef int32_t[::1] error_v = error
    cdef Py_ssize_t i, j
    cdef int32_t x
    cdef const int32_t[:, ::1] t
    cdef uint8_t[:, ::1] primary_v
    with nogil:
        for i in range(n):
            aqi_v[i] = C_MISSING
    if n_indicators:
        t = table
        primary_v = primary
        with nogil:
            # Row by row (each indicator's IAQIs are contiguous), as the Python twin.
            for j in range(n_indicators):
                for i in range(n):
                    x = t[j, i]
                    if x >= 0:
                        if x > aqi_v[i]:
                            aqi_v[i] = x
                    elif x != C_MISSING and error_v[i] == 0:
                        error_v[i] = x
            for i in range(n):
                if error_v[i]:
                    aqi_v[i] = error_v[i]
            for j in range(n_indicators):
                for i in range(n):
                    primary_v[j, i] = aqi_v[i] > C_PRIMARY_ABOVE and t[j, i] == aqi_v[i]
    return AqiMaxResult(aqi, primary)


def count_good(aqi):
    values_ = check_codes("aqi", aqi, 1)
    cdef Py_ssize_t n = values_.shape[0]
    if n == 0:
        return 0
    cdef const int32_t[::1] a = values_
    cdef Py_ssize_t i, count = 0
    with nogil:
        for i in range(n):
            count += 0 <= a[i] <= C_GOOD_AQI_MAX
    return count
