"""Issue 7 item 1: the minute → hour → day kernel against what a user would use instead.

One data set (20 stations × 1 year × 4 channels of minute values by default, about 42 M
values: float64 with NaNs, HJ 212 flags as ASCII bytes) is made once, deterministically,
and run through five implementations of the same rules (native/aggregate.py):

- ``native``: the compiled twin ``native.aggregate.minute_to_day`` (Cython, one pass);
- ``python``: the pure-Python twin on a slice of the data (one day of every series),
  scaled to the full size by the ratio of minute counts;
- ``numpy``: the best vectorised numpy version written here (:func:`numpy_minute_to_day`):
  rows of 60 minutes, lookup tables, masked sums and counts, in cache-sized chunks;
- ``pandas``: what an analyst writes: a wide frame (one column per station and channel,
  a minute DatetimeIndex), ``where`` + ``resample("h")`` with count-based validity, then
  ``resample("D")``;
- ``floor``: one numpy pass reading the same bytes (``values.sum()`` and the flags summed
  as uint64 words): the memory-bandwidth floor of any implementation.

Before anything is timed, the numpy, pandas and Python outputs are checked against
native's (hourly means and partial means to 1e-12 relative, valid counts and reason
codes exactly, daily means and counts): a wrong-but-fast baseline would be worthless.
Each figure is the median of ``runs`` timed calls (``FAST_RUNS`` at least for native and
the floor, which take under 0.1 s); data preparation (building the frames) is not timed,
for any implementation.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from native import aggregate
from native._aggregate_py import minute_to_day as python_minute_to_day

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]

MINUTES_PER_DAY = 1440
MIN_MINUTES = 45  # valid hour: >= 45 counting minutes (GB 3095)
MIN_HOURS = 20  # valid day: >= 20 valid hours (GB 3095)
FAST_RUNS = 15  # runs of the sub-0.1 s figures (native, floor)
CHUNK_HOURS = 2048  # numpy: rows per chunk, ~1 MB of values (stays in L2)

# Targets of issue 7 (ratios: how many times slower the baseline is than native, and how
# many times slower native is than the memory floor).
TARGETS = {
    "pandas_over_native": (">=", 20.0),
    "numpy_over_native": (">=", 2.0),
    "native_over_floor": ("<=", 3.0),
}


class Sizes(NamedTuple):
    stations: int
    days: int
    channels: int

    @property
    def series(self) -> int:
        return self.stations * self.channels

    @property
    def minutes(self) -> int:
        return self.series * self.days * MINUTES_PER_DAY


FULL = Sizes(stations=20, days=365, channels=4)
QUICK = Sizes(stations=2, days=14, channels=4)


class Outputs(NamedTuple):
    """What every implementation returns, in native's layout."""

    h_mean: F64
    h_partial: F64
    h_n: I32
    h_reason: U8
    d_mean: F64
    d_partial: F64
    d_n: I32


# ------------------------------------------------------------------------------ data
def _bursts(
    rng: np.random.Generator, total: int, per_day: float, mean_len: float, max_len: int
) -> npt.NDArray[np.bool_]:
    """A mask of ``total`` minutes covered by bursts: ``per_day`` bursts per series-day on
    average, geometric lengths of mean ``mean_len`` minutes, capped at ``max_len``."""
    n = rng.poisson(per_day * total / MINUTES_PER_DAY)
    starts = rng.integers(0, total, size=n)
    lengths = np.minimum(rng.geometric(1.0 / mean_len, size=n), max_len)
    ends = np.minimum(starts + lengths, total)
    edge = np.bincount(starts, minlength=total + 1) - np.bincount(ends, minlength=total + 1)
    return np.cumsum(edge[:total]) > 0


def make_data(sizes: Sizes, seed: int = 20261129) -> tuple[F64, U8]:
    """Minute values and flags, series after series (station-major, then channel), each
    series ``sizes.days`` whole local days, as the kernels take them.

    Values: a per-station level per channel (PM2.5, PM10, NO2, O3 in ug/m3), a diurnal
    cycle, an hourly random walk and minute noise; never negative. Flags, by share of
    minutes (a later kind overwrites an earlier one): N; T (over range, 0.05 %); C (daily
    zero/span check of the two gas analysers, 03:00-03:10); M (maintenance, a few hours a
    month, whole station); D (instrument fault bursts); F (stopped) and S (manual) rare;
    B (communication failure bursts, value NaN, including multi-hour outages); byte 0 (no
    record, value NaN); and isolated NaN values under N (a glitch the kernels must count
    as a gap).
    """
    rng = np.random.default_rng(seed)
    s, d, c = sizes
    per_series = d * MINUTES_PER_DAY
    total = sizes.minutes
    minute_of_day = np.arange(MINUTES_PER_DAY)
    diurnal = 1.0 + 0.35 * np.sin(2 * np.pi * (minute_of_day - 8 * 60) / MINUTES_PER_DAY)
    base_by_channel = np.array([35.0, 70.0, 30.0, 60.0])[:c]

    values = np.empty(total, dtype=np.float64)
    v = values.reshape(s * c, d, MINUTES_PER_DAY)
    hours = d * 24
    for k in range(s * c):
        level = base_by_channel[k % c] * rng.uniform(0.5, 1.8)
        walk = np.exp(np.cumsum(rng.normal(0.0, 0.08, size=hours)))
        walk /= walk.mean()
        hourly = np.repeat(walk, 60).reshape(d, MINUTES_PER_DAY)
        noise = rng.normal(1.0, 0.05, size=(d, MINUTES_PER_DAY))
        v[k] = np.abs(level * diurnal * hourly * noise)

    flags = np.full(total, ord("N"), dtype=np.uint8)
    flags[rng.random(total) < 0.0005] = ord("T")
    # Daily zero/span check on the gas analysers (channels 2 and 3), 03:00-03:10.
    f3 = flags.reshape(s, c, d, MINUTES_PER_DAY)
    if c > 2:
        f3[:, 2:, :, 180:190] = ord("C")
    # Maintenance: about 4 h once a month per station, all channels.
    for st in range(s):
        for _ in range(max(1, d // 30)):
            day = int(rng.integers(0, d))
            start = int(rng.integers(8 * 60, 14 * 60))
            f3[st, :, day, start : start + int(rng.integers(120, 300))] = ord("M")
    flags[_bursts(rng, total, 0.03, 90, 600)] = ord("D")
    flags[_bursts(rng, total, 0.01, 60, 240)] = ord("F")
    flags[_bursts(rng, total, 0.01, 5, 30)] = ord("S")
    comm = _bursts(rng, total, 0.6, 15, 180) | _bursts(rng, total, 0.02, 600, 2880)
    flags[comm] = ord("B")
    gaps = _bursts(rng, total, 0.5, 10, 120)
    flags[gaps] = 0
    values[comm | gaps] = np.nan
    values[rng.random(total) < 0.0002] = np.nan
    assert len(values) == len(flags) == per_series * s * c
    return values, flags


def describe(values: F64, flags: U8) -> dict[str, Any]:
    """Share of each flag and of NaN values: the data set's realistic mix, for the record."""
    counts = np.bincount(flags, minlength=256)
    total = len(flags)
    mix = {
        ("none" if code == 0 else chr(code)): round(int(counts[code]) / total, 5)
        for code in np.flatnonzero(counts)
    }
    return {"flag_share": mix, "nan_share": round(float(np.isnan(values).mean()), 5)}


# ------------------------------------------------------------------------------ native
def native(values: F64, flags: U8) -> Outputs:
    r = aggregate.minute_to_day(values, flags, aggregate.DEFAULT_COUNTING, MIN_MINUTES, MIN_HOURS)
    return Outputs(*r.hourly, *r.daily)


def python_twin(values: F64, flags: U8) -> Outputs:
    r = python_minute_to_day(values, flags, aggregate.DEFAULT_COUNTING, MIN_MINUTES, MIN_HOURS)
    return Outputs(*r.hourly, *r.daily)


# ------------------------------------------------------------------------------ numpy
def numpy_minute_to_day(
    values: F64,
    flags: U8,
    counting: U8 = aggregate.DEFAULT_COUNTING,
    min_minutes: int = MIN_MINUTES,
    min_hours: int = MIN_HOURS,
    severity: U8 = aggregate.DEFAULT_SEVERITY,
    chunk_hours: int = CHUNK_HOURS,
) -> Outputs:
    """The same rules as ``native.aggregate.minute_to_day``, vectorised with numpy.

    Minutes as rows of 60; per chunk of ``chunk_hours`` rows (so the temporaries stay in
    cache and are reused): counting mask = table lookup of the flag AND finite value;
    sums of the masked values and counts per row. Reasons only for the invalid hours: the
    rank table (0 for counting flags, whose minutes are either counted or gaps) looked up
    per minute, and ``argmax`` per row, which returns the FIRST minute of the highest rank:
    exactly native's "first seen wins" tie rule. Days: rows of 24 hourly means.
    """
    n_hours = len(values) // 60
    n_days = n_hours // 24
    v_rows = values.reshape(n_hours, 60)
    f_rows = flags.reshape(n_hours, 60)
    counting_codes = np.flatnonzero(counting).astype(np.uint8)
    rank_table = np.where(counting.astype(np.bool_), 0, severity).astype(np.uint8)

    h_sum = np.empty(n_hours, dtype=np.float64)
    h_n = np.empty(n_hours, dtype=np.int32)
    chunk = min(chunk_hours, max(n_hours, 1))
    use = np.empty((chunk, 60), dtype=np.bool_)
    scratch = np.empty((chunk, 60), dtype=np.bool_)
    for a in range(0, n_hours, chunk):
        b = min(a + chunk, n_hours)
        m = b - a
        v = v_rows[a:b]
        f = f_rows[a:b]
        u = use[:m]
        tmp = scratch[:m]
        # counting flag: one SIMD comparison per counting code (a 256-entry lookup with
        # np.take is 3x slower: a gather per byte)
        u.fill(False)
        for code in counting_codes:
            np.equal(f, code, out=tmp)
            np.logical_or(u, tmp, out=u)
        np.isfinite(v, out=tmp)
        np.logical_and(u, tmp, out=u)
        # masked row sums without a masked copy of the values
        np.add.reduce(v, axis=1, where=u, initial=0.0, out=h_sum[a:b])
        np.sum(u, axis=1, dtype=np.int32, out=h_n[a:b])

    h_partial = np.full(n_hours, np.nan)
    np.divide(h_sum, h_n, out=h_partial, where=h_n > 0)
    valid = h_n >= min_minutes
    h_mean = np.where(valid, h_partial, np.nan)

    h_reason = np.zeros(n_hours, dtype=np.uint8)
    invalid = np.flatnonzero(~valid)
    if len(invalid):
        f_inv = f_rows[invalid]
        ranks = rank_table[f_inv]
        first = ranks.argmax(axis=1)
        rows = np.arange(len(invalid))
        best = ranks[rows, first]
        h_reason[invalid] = np.where(best > 0, f_inv[rows, first], aggregate.NO_DATA)

    hm = h_mean.reshape(n_days, 24)
    ok = np.isfinite(hm)
    d_n = ok.sum(axis=1, dtype=np.int32)
    d_sum = np.where(ok, hm, 0.0).sum(axis=1)
    d_partial = np.full(n_days, np.nan)
    np.divide(d_sum, d_n, out=d_partial, where=d_n > 0)
    d_mean = np.where(d_n >= min_hours, d_partial, np.nan)
    return Outputs(h_mean, h_partial, h_n, h_reason, d_mean, d_partial, d_n)


# ------------------------------------------------------------------------------ pandas
def pandas_frames(values: F64, flags: U8, sizes: Sizes) -> tuple[Any, Any]:
    """The analyst's input: two wide frames (minute index in local time, one column per
    station/channel). Built once, outside the timing."""
    import pandas as pd

    index = pd.date_range("2025-01-01", periods=sizes.days * MINUTES_PER_DAY, freq="min")
    columns = [f"s{k // sizes.channels:02d}c{k % sizes.channels}" for k in range(sizes.series)]
    vals = pd.DataFrame(values.reshape(sizes.series, -1).T, index=index, columns=columns)
    flgs = pd.DataFrame(flags.reshape(sizes.series, -1).T, index=index, columns=columns)
    return vals, flgs


def pandas_minute_to_day(vals: Any, flgs: Any) -> Any:
    """The analyst's version: mask what does not count, resample with counts, validity by
    count; the reason of an invalid hour is the flag of the highest severity rank seen in
    it (each flag of the default table has its own rank, so rank → flag is one-to-one).

    Given its fastest idioms: ``(flgs == N) | (flgs == T)`` rather than ``flgs.isin(...)``
    (0.4 s slower on the full set), ``replace`` rather than ``map`` for the ranks (0.3 s)."""
    counting = [ord(f) for f in aggregate.DEFAULT_COUNTING_FLAGS]
    counts = flgs == counting[0]
    for code in counting[1:]:
        counts |= flgs == code
    counts &= vals.notna()
    hourly = vals.where(counts).resample("h")
    h_n = hourly.count()
    h_partial = hourly.mean()
    h_mean = h_partial.where(h_n >= MIN_MINUTES)

    severity = aggregate.DEFAULT_SEVERITY
    rank_of = {code: 0 for code in counting}  # a counting minute is counted or a gap
    flag_of_rank = {0: aggregate.NO_DATA}
    for letter in aggregate.DEFAULT_SEVERITY_ORDER:  # each has its own rank (>= 2)
        rank_of[ord(letter)] = int(severity[ord(letter)])
        flag_of_rank[int(severity[ord(letter)])] = ord(letter)
    top = flgs.replace(rank_of).resample("h").max()
    h_reason = top.replace(flag_of_rank).where(h_n < MIN_MINUTES, 0)

    daily = h_mean.resample("D")
    d_n = daily.count()
    d_partial = daily.mean()
    d_mean = d_partial.where(d_n >= MIN_HOURS)
    return h_mean, h_partial, h_n, h_reason, d_mean, d_partial, d_n


def pandas_outputs(frames: tuple[Any, ...]) -> Outputs:
    """The pandas frames flattened into native's series-major layout (for checking)."""

    def flat(frame: Any, dtype: Any) -> Any:
        return frame.to_numpy().T.reshape(-1).astype(dtype)

    h_mean, h_partial, h_n, h_reason, d_mean, d_partial, d_n = frames
    return Outputs(
        flat(h_mean, np.float64),
        flat(h_partial, np.float64),
        flat(h_n, np.int32),
        flat(h_reason, np.uint8),
        flat(d_mean, np.float64),
        flat(d_partial, np.float64),
        flat(d_n, np.int32),
    )


# ------------------------------------------------------------------------------ floor
def floor_pass(values: F64, flags: U8) -> float:
    """One pass over the same bytes: the values summed, the flags summed as 8-byte words
    (a uint8 sum would widen every byte and measure the CPU, not memory)."""
    words = flags[: len(flags) // 8 * 8].view(np.uint64)
    return float(values.sum()) + float(words.sum())


# ------------------------------------------------------------------------------ checking
class MismatchError(AssertionError):
    """A baseline's output differs from native's: its timing would mean nothing."""


def check_same(name: str, got: Outputs, want: Outputs, rtol: float = 1e-12) -> None:
    """``got`` equals ``want``: counts and reasons exactly; means to ``rtol`` with NaN in
    the same places (numpy and pandas add in another order than native)."""
    for field in Outputs._fields:
        a = np.asarray(getattr(got, field))
        b = np.asarray(getattr(want, field))
        if a.shape != b.shape:
            raise MismatchError(f"{name}.{field}: shape {a.shape} != native's {b.shape}")
        if a.dtype.kind == "f":
            if not np.array_equal(np.isnan(a), np.isnan(b)):
                k = int(np.flatnonzero(np.isnan(a) != np.isnan(b))[0])
                raise MismatchError(f"{name}.{field}[{k}]: {a[k]} vs native {b[k]} (NaN)")
            if not np.allclose(a, b, rtol=rtol, atol=0.0, equal_nan=True):
                k = int(np.argmax(~np.isclose(a, b, rtol=rtol, atol=0.0, equal_nan=True)))
                raise MismatchError(f"{name}.{field}[{k}]: {a[k]!r} vs native {b[k]!r}")
        elif not np.array_equal(a, b):
            k = int(np.flatnonzero(a != b)[0])
            raise MismatchError(f"{name}.{field}[{k}]: {a[k]} vs native {b[k]}")


def python_slice(values: F64, flags: U8, sizes: Sizes) -> tuple[F64, U8]:
    """One local day from every series, each at a different day of the year (so the slice
    has the data set's mix): ``series`` days of minutes."""
    per_series = sizes.days * MINUTES_PER_DAY
    starts = [k * per_series + (k * 37 % sizes.days) * MINUTES_PER_DAY for k in range(sizes.series)]
    idx = np.concatenate([np.arange(s, s + MINUTES_PER_DAY) for s in starts])
    return values[idx], flags[idx]


# ------------------------------------------------------------------------------ timing
def median_time(fn: Callable[[], object], runs: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def run(quick: bool = False, runs: int = 5, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Make the data, check every baseline against native, time them; the kernel section."""
    if aggregate.IMPLEMENTATION != "cython":
        raise RuntimeError(f"native kernel not compiled: {aggregate.FALLBACK_REASON}")
    sizes = QUICK if quick else FULL
    t0 = time.perf_counter()
    values, flags = make_data(sizes)
    log(f"kernel: {sizes.minutes:,} minute values made in {time.perf_counter() - t0:.1f} s")
    py_values, py_flags = python_slice(values, flags, sizes)

    # Correctness first (these calls also warm caches and imports).
    want = native(values, flags)
    check_same("numpy", numpy_minute_to_day(values, flags), want)
    frames = pandas_frames(values, flags, sizes)
    check_same("pandas", pandas_outputs(pandas_minute_to_day(*frames)), want)
    check_same("python", python_twin(py_values, py_flags), native(py_values, py_flags), 0.0)
    log("kernel: numpy, pandas and the Python twin agree with native")

    fast_runs = max(runs, FAST_RUNS)  # native and floor take < 0.1 s: more runs, less noise
    native_s, native_all = median_time(lambda: native(values, flags), fast_runs)
    numpy_s, numpy_all = median_time(lambda: numpy_minute_to_day(values, flags), runs)
    pandas_s, pandas_all = median_time(lambda: pandas_minute_to_day(*frames), runs)
    slice_s, slice_all = median_time(lambda: python_twin(py_values, py_flags), runs)
    floor_s, floor_all = median_time(lambda: floor_pass(values, flags), fast_runs)
    scale = sizes.minutes / len(py_values)

    invalid_hours = float(np.mean(want.h_reason != 0))
    figures = {
        "native_s": native_s,
        "numpy_s": numpy_s,
        "pandas_s": pandas_s,
        "python_s_scaled": slice_s * scale,
        "floor_s": floor_s,
        "pandas_over_native": pandas_s / native_s,
        "numpy_over_native": numpy_s / native_s,
        "python_over_native": slice_s * scale / native_s,
        "native_over_floor": native_s / floor_s,
        "native_ns_per_minute": native_s / sizes.minutes * 1e9,
    }
    targets = {}
    for name, (op, bound) in TARGETS.items():
        value = figures[name]
        met = value >= bound if op == ">=" else value <= bound
        targets[name] = {"op": op, "value": bound, "met": bool(met)}
    return {
        **figures,
        "targets": targets,
        "runs": runs,
        "runs_native_floor": fast_runs,
        "runs_s": {
            "native": native_all,
            "numpy": numpy_all,
            "pandas": pandas_all,
            "python_slice": slice_all,
            "floor": floor_all,
        },
        "data": {
            "stations": sizes.stations,
            "days": sizes.days,
            "channels": sizes.channels,
            "minutes": sizes.minutes,
            "bytes": int(values.nbytes + flags.nbytes),
            "invalid_hour_share": round(invalid_hours, 5),
            **describe(values, flags),
        },
        "python_slice": {
            "minutes": len(py_values),
            "scale": scale,
            "how": "one local day of every series, timed, times minutes/slice minutes",
        },
        "verified": ["numpy", "pandas", "python"],
        "native_implementation": aggregate.IMPLEMENTATION,
    }
