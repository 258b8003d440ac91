# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False, nonecheck=False
"""Compiled twin of `_aggregate_py.py`: the same kernels as flat C loops without the GIL.

Each public function checks its inputs with the shared Python helpers (so both twins raise
the same `KernelInputError`), allocates its results with numpy, then runs a `nogil` loop
over raw pointers. Loop order and summation order are the Python twin's, so the results
agree to the bit on IEEE-754 hardware without fused multiply-add contraction. The rules
are documented in `native/aggregate.py`.
"""

from libc.math cimport NAN, isfinite
from libc.stdint cimport int32_t, uint8_t
from libc.stdlib cimport free, malloc, qsort

import numpy as np

from native._aggregate_common import (
    HOURS_PER_DAY,
    MAX8H_EXCEEDANCE,
    MAX8H_INVALID,
    MAX8H_VALID,
    MINUTES_PER_HOUR,
    NO_DATA,
    VALID,
    DailyMax8hResult,
    DailyResult,
    HourlyResult,
    MinuteToDayResult,
    RollingResult,
    check_f64,
    check_float,
    check_int,
    check_mask,
    check_minute_inputs,
    check_same_length,
)

__all__ = ["daily", "daily_max_8h", "hourly", "minute_to_day", "percentile", "rolling_mean"]

# The shared constants as C values (assigned once at import, read without the GIL).
cdef uint8_t C_NO_DATA = NO_DATA
cdef uint8_t C_VALID = VALID
cdef uint8_t C_MAX8H_INVALID = MAX8H_INVALID
cdef uint8_t C_MAX8H_VALID = MAX8H_VALID
cdef uint8_t C_MAX8H_EXCEEDANCE = MAX8H_EXCEEDANCE
cdef Py_ssize_t C_MIN_PER_HOUR = MINUTES_PER_HOUR
cdef Py_ssize_t C_HOURS_PER_DAY = HOURS_PER_DAY
if C_MIN_PER_HOUR != 60 or C_HOURS_PER_DAY != 24:
    raise ImportError("_aggregate_c is built for 60-minute hours and 24-hour days")


cdef extern from *:
    """
    #include <string.h>
    #include <stdint.h>
    #include <math.h>
    #if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && defined(__SSE2__)
    #include <immintrin.h>
    #define LANTIAN_X86 1
    #else
    #define LANTIAN_X86 0
    #endif
    #define LANTIAN_MAX_CODES 4

    /* Per hour of 60 minutes: the sum and the count of the minutes whose flag is one of
       codes[0..3] (fewer codes are padded by repeating one) and whose value is finite.
       The sum runs in four lanes, minute j in lane j % 4, added as
       (lane0 + lane1) + (lane2 + lane3): exactly _hour_sum_table's (and the Python
       twin's) order, so every variant below gives the same bits. A minute that does not
       count adds +0.0 (its value is masked to zero bits, as the scalar loop adds 0.0).

       Variants, picked once at import (lantian_pick_level), no -march needed:
         2  AVX2, compiled with a target attribute and used only when the CPU has it:
            the four lanes are one 256-bit register;
         1  SSE2 (every x86-64): the lanes are two 128-bit registers;
         0  none (not x86): the caller uses its table loop (_hour_sum_table). */
    static int lantian_level = 0;

    #if LANTIAN_X86
    static void lantian_sums_sse2(const double* v, const uint8_t* f, const uint8_t* codes,
                                  Py_ssize_t n_hours, double* totals, int32_t* counts) {
        const __m128i c0 = _mm_set1_epi8((char)codes[0]);
        const __m128i c1 = _mm_set1_epi8((char)codes[1]);
        const __m128i c2 = _mm_set1_epi8((char)codes[2]);
        const __m128i c3 = _mm_set1_epi8((char)codes[3]);
        const __m128d sign = _mm_set1_pd(-0.0);
        const __m128d inf = _mm_set1_pd(__builtin_inf());
        uint8_t mask[64];
        Py_ssize_t h;
        int j, k;
        for (h = 0; h < n_hours; h++, v += 60, f += 60) {
            /* the hour's 60 flag bytes -> 0x00/0xff, 16 at a time (the last load
               overlaps: bytes 44..59, never past the hour) */
            static const int at[4] = {0, 16, 32, 44};
            for (k = 0; k < 4; k++) {
                __m128i fl = _mm_loadu_si128((const __m128i*)(f + at[k]));
                __m128i m = _mm_or_si128(
                    _mm_or_si128(_mm_cmpeq_epi8(fl, c0), _mm_cmpeq_epi8(fl, c1)),
                    _mm_or_si128(_mm_cmpeq_epi8(fl, c2), _mm_cmpeq_epi8(fl, c3)));
                _mm_storeu_si128((__m128i*)(mask + at[k]), m);
            }
            __m128d a = _mm_setzero_pd(), b = _mm_setzero_pd();
            __m128i n = _mm_setzero_si128();
            for (j = 0; j < 60; j += 4) {
                int32_t word;
                memcpy(&word, mask + j, 4);
                __m128i m = _mm_cvtsi32_si128(word);
                m = _mm_unpacklo_epi8(m, m);
                m = _mm_unpacklo_epi16(m, m);  /* 32-bit masks of minutes j..j+3 */
                __m128d x01 = _mm_loadu_pd(v + j);
                __m128d x23 = _mm_loadu_pd(v + j + 2);
                /* finite: |x| < inf, false for NaN and +-inf */
                __m128d u01 = _mm_and_pd(_mm_cmplt_pd(_mm_andnot_pd(sign, x01), inf),
                                         _mm_castsi128_pd(_mm_unpacklo_epi32(m, m)));
                __m128d u23 = _mm_and_pd(_mm_cmplt_pd(_mm_andnot_pd(sign, x23), inf),
                                         _mm_castsi128_pd(_mm_unpackhi_epi32(m, m)));
                a = _mm_add_pd(a, _mm_and_pd(x01, u01));  /* lanes 0, 1 */
                b = _mm_add_pd(b, _mm_and_pd(x23, u23));  /* lanes 2, 3 */
                n = _mm_sub_epi64(n, _mm_castpd_si128(u01));  /* all ones = -1 */
                n = _mm_sub_epi64(n, _mm_castpd_si128(u23));
            }
            double la[2], lb[2];
            int64_t cn[2];
            _mm_storeu_pd(la, a);
            _mm_storeu_pd(lb, b);
            _mm_storeu_si128((__m128i*)cn, n);
            totals[h] = (la[0] + la[1]) + (lb[0] + lb[1]);
            counts[h] = (int32_t)(cn[0] + cn[1]);
        }
    }

    __attribute__((target("avx2")))
    static void lantian_sums_avx2(const double* v, const uint8_t* f, const uint8_t* codes,
                                  Py_ssize_t n_hours, double* totals, int32_t* counts) {
        const __m256i c0 = _mm256_set1_epi8((char)codes[0]);
        const __m256i c1 = _mm256_set1_epi8((char)codes[1]);
        const __m256i c2 = _mm256_set1_epi8((char)codes[2]);
        const __m256i c3 = _mm256_set1_epi8((char)codes[3]);
        const __m256d sign = _mm256_set1_pd(-0.0);
        const __m256d inf = _mm256_set1_pd(__builtin_inf());
        uint8_t mask[64];
        Py_ssize_t h;
        int j, k;
        for (h = 0; h < n_hours; h++, v += 60, f += 60) {
            /* flag bytes 0..31 and 28..59 (overlapping, never past the hour) */
            for (k = 0; k < 2; k++) {
                __m256i fl = _mm256_loadu_si256((const __m256i*)(f + 28 * k));
                __m256i m = _mm256_or_si256(
                    _mm256_or_si256(_mm256_cmpeq_epi8(fl, c0), _mm256_cmpeq_epi8(fl, c1)),
                    _mm256_or_si256(_mm256_cmpeq_epi8(fl, c2), _mm256_cmpeq_epi8(fl, c3)));
                _mm256_storeu_si256((__m256i*)(mask + 28 * k), m);
            }
            __m256d s = _mm256_setzero_pd();  /* lanes 0..3 */
            __m256i n = _mm256_setzero_si256();
            for (j = 0; j < 60; j += 4) {
                int32_t word;
                memcpy(&word, mask + j, 4);
                __m256d m = _mm256_castsi256_pd(_mm256_cvtepi8_epi64(_mm_cvtsi32_si128(word)));
                __m256d x = _mm256_loadu_pd(v + j);
                __m256d u = _mm256_and_pd(
                    _mm256_cmp_pd(_mm256_andnot_pd(sign, x), inf, _CMP_LT_OQ), m);
                s = _mm256_add_pd(s, _mm256_and_pd(x, u));
                n = _mm256_sub_epi64(n, _mm256_castpd_si256(u));
            }
            double l[4];
            int64_t cn[4];
            _mm256_storeu_pd(l, s);
            _mm256_storeu_si256((__m256i*)cn, n);
            totals[h] = (l[0] + l[1]) + (l[2] + l[3]);
            counts[h] = (int32_t)((cn[0] + cn[1]) + (cn[2] + cn[3]));
        }
    }
    #endif

    static int lantian_pick_level(void) {
    #if LANTIAN_X86
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx2")) return 2;
        return 1;
    #else
        return 0;
    #endif
    }

    static int lantian_set_level(int level) {
        int best = lantian_pick_level();
        lantian_level = level < 0 || level > best ? best : level;
        return lantian_level;
    }

    static void lantian_hour_sums_codes(const double* v, const uint8_t* f,
                                        const uint8_t* codes, Py_ssize_t n_hours,
                                        double* totals, int32_t* counts) {
    #if LANTIAN_X86
        if (lantian_level == 2) lantian_sums_avx2(v, f, codes, n_hours, totals, counts);
        else lantian_sums_sse2(v, f, codes, n_hours, totals, counts);
    #endif
    }
    """
    int LANTIAN_MAX_CODES
    int lantian_level
    int lantian_set_level(int level) noexcept nogil
    void lantian_hour_sums_codes(
        const double* v, const uint8_t* f, const uint8_t* codes, Py_ssize_t n_hours,
        double* totals, int32_t* counts,
    ) noexcept nogil


SIMD_LEVELS = ("none", "sse2", "avx2")
lantian_set_level(-1)  # the best this CPU has


def _simd(level=None):
    """The vectorised loop in use: "avx2", "sse2" or "none" (the table loop). With
    ``level`` (one of those names, or None for the best this CPU has) switch to it first,
    for tests and the bench; a level the CPU lacks falls back to the best it has. The
    results are the same bits on every level."""
    if level is not None:
        lantian_set_level(SIMD_LEVELS.index(level))
    return SIMD_LEVELS[lantian_level]


cdef inline int32_t _hour_sum_table(
    const double* v, const uint8_t* f, const uint8_t* counting, double* total_out
) noexcept nogil:
    """Sum and count of the hour's counting finite minutes, in four lanes (minute j in
    lane j % 4, then (lane0 + lane1) + (lane2 + lane3), as the Python twin): four
    independent addition chains instead of one roughly halve the time per minute.

    The general form, for any counting table: ``counting`` here is the caller's table
    normalised to 0/1 (see `_policy`). Branch-free: a minute that does not count adds
    +0.0, which leaves a lane unchanged (a lane starts at +0.0, so it is never -0.0)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, x
    cdef int32_t count = 0
    cdef uint8_t use
    cdef int j
    for j in range(0, 60, 4):
        x = v[j]
        use = counting[f[j]] & isfinite(x)
        s0 += x if use else 0.0
        count += use
        x = v[j + 1]
        use = counting[f[j + 1]] & isfinite(x)
        s1 += x if use else 0.0
        count += use
        x = v[j + 2]
        use = counting[f[j + 2]] & isfinite(x)
        s2 += x if use else 0.0
        count += use
        x = v[j + 3]
        use = counting[f[j + 3]] & isfinite(x)
        s3 += x if use else 0.0
        count += use
    total_out[0] = (s0 + s1) + (s2 + s3)
    return count


cdef inline void _hour_sums(
    const double* v, const uint8_t* f, const uint8_t* counting, const uint8_t* codes,
    Py_ssize_t n_hours, double* totals, int32_t* counts
) noexcept nogil:
    """Sum and count of ``n_hours`` consecutive hours: the vectorised compare loop when
    the policy has 1..LANTIAN_MAX_CODES counting flags (``codes`` set; the project
    default has two, N and T) on x86, else the table loop. The same bits either way."""
    cdef Py_ssize_t h
    if codes != NULL and lantian_level > 0:
        lantian_hour_sums_codes(v, f, codes, n_hours, totals, counts)
        return
    for h in range(n_hours):
        counts[h] = _hour_sum_table(v + h * 60, f + h * 60, counting, &totals[h])


def _policy(counting_):
    """The counting table as the loops use it: 0/1 (a non-zero entry counts, as in the
    Python twin), and the counting flags padded to LANTIAN_MAX_CODES bytes when there are
    1..LANTIAN_MAX_CODES of them (the vectorised loop compares flags against them), else
    None (the table loop)."""
    table = (counting_ != 0).astype(np.uint8)
    flagged = np.flatnonzero(table)
    if not 0 < len(flagged) <= LANTIAN_MAX_CODES:
        return table, None
    codes = np.full(LANTIAN_MAX_CODES, flagged[0], dtype=np.uint8)
    codes[: len(flagged)] = flagged
    return table, codes


cdef inline uint8_t _hour_reason(
    const double* v, const uint8_t* f, const uint8_t* counting, const uint8_t* severity
) noexcept nogil:
    """Why an invalid hour is invalid (the Python twin's `_hour_reason`): the first-seen
    flag of the highest rank among the minutes that did not count, NO_DATA for gaps."""
    cdef uint8_t flag, rank
    cdef uint8_t best_rank = 0
    cdef uint8_t best = C_NO_DATA
    cdef int j
    for j in range(60):
        flag = f[j]
        if counting[flag]:
            if isfinite(v[j]):
                continue
            rank = 0
        else:
            rank = severity[flag]
        if rank > best_rank:
            best_rank = rank
            best = flag
    return best


cdef void _hourly(
    const double* v,
    const uint8_t* f,
    const uint8_t* counting,
    const uint8_t* codes,
    const uint8_t* severity,
    int32_t min_valid,
    Py_ssize_t n_hours,
    double* mean,
    double* partial,
    int32_t* n_valid,
    uint8_t* reason,
) noexcept nogil:
    cdef Py_ssize_t h, start, stop
    cdef double average
    cdef int32_t count
    for start in range(0, n_hours, 24):
        stop = min(start + 24, n_hours)
        # a block's sums into `partial`, counts into `n_valid` (its minutes stay in cache
        # for the reasons of its invalid hours), then each hour finished in place
        _hour_sums(
            v + start * 60, f + start * 60, counting, codes, stop - start,
            partial + start, n_valid + start,
        )
        for h in range(start, stop):
            count = n_valid[h]
            average = partial[h] / count if count else NAN
            partial[h] = average
            if count >= min_valid:
                mean[h] = average
                reason[h] = C_VALID
            else:
                mean[h] = NAN
                reason[h] = _hour_reason(v + h * 60, f + h * 60, counting, severity)


def hourly(values, flags, counting, min_valid, severity=None):
    values_, flags_, counting_, severity_ = check_minute_inputs(
        values, flags, counting, severity, MINUTES_PER_HOUR
    )
    cdef int32_t min_ = check_int("min_valid", min_valid, 1, MINUTES_PER_HOUR)
    cdef Py_ssize_t n_hours = values_.shape[0] // 60
    mean = np.empty(n_hours, dtype=np.float64)
    partial = np.empty(n_hours, dtype=np.float64)
    n_valid = np.empty(n_hours, dtype=np.int32)
    reason = np.empty(n_hours, dtype=np.uint8)
    if n_hours == 0:
        return HourlyResult(mean, partial, n_valid, reason)
    cdef const double[::1] v = values_
    cdef const uint8_t[::1] f = flags_
    table, codes_ = _policy(counting_)
    cdef const uint8_t[::1] cnt = table
    cdef const uint8_t[::1] codes_v = codes_
    cdef const uint8_t* codes = NULL
    if codes_ is not None:
        codes = &codes_v[0]
    cdef const uint8_t[::1] sev = severity_
    cdef double[::1] mean_v = mean
    cdef double[::1] partial_v = partial
    cdef int32_t[::1] n_v = n_valid
    cdef uint8_t[::1] reason_v = reason
    with nogil:
        _hourly(
            &v[0], &f[0], &cnt[0], codes, &sev[0], min_, n_hours,
            &mean_v[0], &partial_v[0], &n_v[0], &reason_v[0],
        )
    return HourlyResult(mean, partial, n_valid, reason)


def daily(hour_mean, hour_valid, min_valid):
    means = check_f64("hour_mean", hour_mean, HOURS_PER_DAY)
    valid = check_mask("hour_valid", hour_valid, HOURS_PER_DAY)
    check_same_length("hour_mean", means, "hour_valid", valid)
    cdef int32_t min_ = check_int("min_valid", min_valid, 1, HOURS_PER_DAY)
    cdef Py_ssize_t n_days = means.shape[0] // 24
    mean = np.empty(n_days, dtype=np.float64)
    partial = np.empty(n_days, dtype=np.float64)
    n_valid = np.empty(n_days, dtype=np.int32)
    if n_days == 0:
        return DailyResult(mean, partial, n_valid)
    cdef const double[::1] m = means
    cdef const uint8_t[::1] ok = valid
    cdef double[::1] mean_v = mean
    cdef double[::1] partial_v = partial
    cdef int32_t[::1] n_v = n_valid
    cdef Py_ssize_t d, i
    cdef double total, average, x
    cdef int32_t count
    with nogil:
        for d in range(n_days):
            total = 0.0
            count = 0
            for i in range(d * 24, d * 24 + 24):
                x = m[i]
                if ok[i] and isfinite(x):
                    total += x
                    count += 1
            average = total / count if count else NAN
            partial_v[d] = average
            n_v[d] = count
            mean_v[d] = average if count >= min_ else NAN
    return DailyResult(mean, partial, n_valid)


cdef void _minute_to_day(
    const double* v,
    const uint8_t* f,
    const uint8_t* counting,
    const uint8_t* codes,
    const uint8_t* severity,
    int32_t min_minutes,
    int32_t min_hours,
    Py_ssize_t n_days,
    double* h_mean,
    double* h_partial,
    int32_t* h_n,
    uint8_t* h_reason,
    double* d_mean,
    double* d_partial,
    int32_t* d_n,
) noexcept nogil:
    """One pass over the minutes: each hour is finished and folded into its day at once."""
    cdef Py_ssize_t d, h
    cdef double average, day_total, day_average
    cdef int32_t count, day_count
    for d in range(n_days):
        day_total = 0.0
        day_count = 0
        # the day's hour sums into h_partial, counts into h_n (a day of minutes, 12 KB,
        # stays in cache for the reasons of its invalid hours), then each hour finished
        _hour_sums(
            v + d * 1440, f + d * 1440, counting, codes, 24, h_partial + d * 24, h_n + d * 24
        )
        for h in range(d * 24, d * 24 + 24):
            count = h_n[h]
            average = h_partial[h] / count if count else NAN
            h_partial[h] = average
            if count >= min_minutes:
                h_mean[h] = average
                h_reason[h] = C_VALID
                if isfinite(average):
                    day_total += average
                    day_count += 1
            else:
                h_mean[h] = NAN
                h_reason[h] = _hour_reason(v + h * 60, f + h * 60, counting, severity)
        day_average = day_total / day_count if day_count else NAN
        d_partial[d] = day_average
        d_n[d] = day_count
        d_mean[d] = day_average if day_count >= min_hours else NAN


def minute_to_day(values, flags, counting, min_minutes, min_hours, severity=None):
    values_, flags_, counting_, severity_ = check_minute_inputs(
        values, flags, counting, severity, MINUTES_PER_HOUR * HOURS_PER_DAY
    )
    cdef int32_t min_m = check_int("min_minutes", min_minutes, 1, MINUTES_PER_HOUR)
    cdef int32_t min_h = check_int("min_hours", min_hours, 1, HOURS_PER_DAY)
    cdef Py_ssize_t n_days = values_.shape[0] // 1440
    cdef Py_ssize_t n_hours = n_days * 24
    h_mean = np.empty(n_hours, dtype=np.float64)
    h_partial = np.empty(n_hours, dtype=np.float64)
    h_n = np.empty(n_hours, dtype=np.int32)
    h_reason = np.empty(n_hours, dtype=np.uint8)
    d_mean = np.empty(n_days, dtype=np.float64)
    d_partial = np.empty(n_days, dtype=np.float64)
    d_n = np.empty(n_days, dtype=np.int32)
    result = MinuteToDayResult(
        HourlyResult(h_mean, h_partial, h_n, h_reason), DailyResult(d_mean, d_partial, d_n)
    )
    if n_days == 0:
        return result
    cdef const double[::1] v = values_
    cdef const uint8_t[::1] f = flags_
    table, codes_ = _policy(counting_)
    cdef const uint8_t[::1] cnt = table
    cdef const uint8_t[::1] codes_v = codes_
    cdef const uint8_t* codes = NULL
    if codes_ is not None:
        codes = &codes_v[0]
    cdef const uint8_t[::1] sev = severity_
    cdef double[::1] hm = h_mean
    cdef double[::1] hp = h_partial
    cdef int32_t[::1] hn = h_n
    cdef uint8_t[::1] hr = h_reason
    cdef double[::1] dm = d_mean
    cdef double[::1] dp = d_partial
    cdef int32_t[::1] dn = d_n
    with nogil:
        _minute_to_day(
            &v[0], &f[0], &cnt[0], codes, &sev[0], min_m, min_h, n_days,
            &hm[0], &hp[0], &hn[0], &hr[0], &dm[0], &dp[0], &dn[0],
        )
    return result


def rolling_mean(values, valid, window, min_valid):
    means = check_f64("values", values)
    ok_ = check_mask("valid", valid)
    check_same_length("values", means, "valid", ok_)
    cdef Py_ssize_t w = check_int("window", window, 1, 1 << 20)
    cdef int32_t min_ = check_int("min_valid", min_valid, 1, w)
    cdef Py_ssize_t n = means.shape[0]
    mean = np.empty(n, dtype=np.float64)
    partial = np.empty(n, dtype=np.float64)
    n_valid = np.empty(n, dtype=np.int32)
    if n == 0:
        return RollingResult(mean, partial, n_valid)
    cdef const double[::1] m = means
    cdef const uint8_t[::1] ok = ok_
    cdef double[::1] mean_v = mean
    cdef double[::1] partial_v = partial
    cdef int32_t[::1] n_v = n_valid
    cdef Py_ssize_t end, i
    cdef double total, average, x
    cdef int32_t count
    with nogil:
        for end in range(n):
            # Summed afresh per window, oldest first: no running-sum drift, and each value
            # is exactly what an auditor recomputes from the window's hours.
            total = 0.0
            count = 0
            for i in range(end - w + 1 if end >= w else 0, end + 1):
                x = m[i]
                if ok[i] and isfinite(x):
                    total += x
                    count += 1
            average = total / count if count else NAN
            partial_v[end] = average
            n_v[end] = count
            mean_v[end] = average if count >= min_ else NAN
    return RollingResult(mean, partial, n_valid)


def daily_max_8h(ma8, ma8_valid, first_end, last_end, min_windows, limit):
    means = check_f64("ma8", ma8, HOURS_PER_DAY)
    ok_ = check_mask("ma8_valid", ma8_valid, HOURS_PER_DAY)
    check_same_length("ma8", means, "ma8_valid", ok_)
    cdef Py_ssize_t first = check_int("first_end", first_end, 1, HOURS_PER_DAY)
    cdef Py_ssize_t last = check_int("last_end", last_end, first, HOURS_PER_DAY)
    cdef int32_t min_w = check_int("min_windows", min_windows, 1, last - first + 1)
    cdef double lim = check_float("limit", limit, low=-np.inf, high=np.inf)
    cdef Py_ssize_t n_days = means.shape[0] // 24
    maximum = np.empty(n_days, dtype=np.float64)
    partial = np.empty(n_days, dtype=np.float64)
    n_valid = np.empty(n_days, dtype=np.int32)
    code = np.empty(n_days, dtype=np.uint8)
    if n_days == 0:
        return DailyMax8hResult(maximum, partial, n_valid, code)
    cdef const double[::1] m = means
    cdef const uint8_t[::1] ok = ok_
    cdef double[::1] max_v = maximum
    cdef double[::1] partial_v = partial
    cdef int32_t[::1] n_v = n_valid
    cdef uint8_t[::1] code_v = code
    cdef Py_ssize_t d, e, i
    cdef double best, x
    cdef int32_t count
    cdef uint8_t verdict
    with nogil:
        for d in range(n_days):
            best = NAN
            count = 0
            for e in range(first, last + 1):
                i = d * 24 + e - 1  # the window ending at e:00 has its last hour starting at e-1
                x = m[i]
                if ok[i] and isfinite(x):
                    count += 1
                    if count == 1 or x > best:
                        best = x
            if count >= min_w:
                verdict = C_MAX8H_VALID
            elif count and best > lim:
                verdict = C_MAX8H_EXCEEDANCE
            else:
                verdict = C_MAX8H_INVALID
            partial_v[d] = best
            n_v[d] = count
            code_v[d] = verdict
            max_v[d] = best if verdict != C_MAX8H_INVALID else NAN
    return DailyMax8hResult(maximum, partial, n_valid, code)


cdef int _compare_doubles(const void* a, const void* b) noexcept nogil:
    cdef double x = (<const double*>a)[0]
    cdef double y = (<const double*>b)[0]
    return (x > y) - (x < y)


def percentile(values, p):
    values_ = check_f64("values", values)
    cdef double p_ = check_float("p", p, low=0.0, high=100.0)
    cdef Py_ssize_t size = values_.shape[0]
    if size == 0:
        return float("nan")
    cdef const double[::1] v = values_
    cdef double* xs = <double*>malloc(size * sizeof(double))
    if xs == NULL:
        raise MemoryError()
    cdef Py_ssize_t i, n = 0, s
    cdef double k, result
    try:
        with nogil:
            for i in range(size):
                if isfinite(v[i]):
                    xs[n] = v[i]
                    n += 1
            if n == 0:
                result = NAN
            else:
                qsort(xs, n, sizeof(double), _compare_doubles)
                k = 1 + (n - 1) * p_ / 100
                s = <Py_ssize_t>k
                if s >= n:
                    result = xs[n - 1]
                else:
                    result = xs[s - 1] + (xs[s] - xs[s - 1]) * (k - s)
    finally:
        free(xs)
    return result
