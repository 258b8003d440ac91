"""What both aggregate twins share: flag codes, policy tables, result types, input checks.

The kernels in `_aggregate_c.pyx` and `_aggregate_py.py` are flat loops; everything that is
policy or bookkeeping lives here, once, so the twins cannot drift apart on it.

Data model (HJ 212-2017 table 8, see docs in `native/aggregate.py`):

- a minute's flag is the HJ 212 one-letter code as an ASCII byte (``ord("N") == 78``);
  the byte 0 means "no record at all for this minute";
- ``counting`` is a 256-entry uint8 table, 1 where a flag's values count toward averages
  (project default: N and T, GB 3095 / HJ 212 table 8; a rule-set setting);
- ``severity`` is a 256-entry uint8 table ranking the flags that explain an invalid
  aggregate (default B > D > F > C > M > S > any other non-zero byte > no data).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]

# ---------------------------------------------------------------- flag and reason codes
NO_RECORD: Final = 0  # flag byte of a minute that has no record at all
VALID: Final = 0  # reason of a valid aggregate
NO_DATA: Final = ord("-")  # reason when nothing but missing / non-finite values explains it

DEFAULT_COUNTING_FLAGS: Final = "NT"  # GB 3095 / HJ 212 table 8, project default
DEFAULT_SEVERITY_ORDER: Final = "BDFCMS"  # most severe first

# daily_max_8h's `valid` codes
MAX8H_INVALID: Final = 0
MAX8H_VALID: Final = 1  # enough valid 8-hour windows
MAX8H_EXCEEDANCE: Final = 2  # too few windows, valid only because the maximum exceeds the limit

MINUTES_PER_HOUR: Final = 60
HOURS_PER_DAY: Final = 24


class KernelInputError(ValueError):
    """An argument of an aggregate kernel has the wrong type, dtype, shape or range."""


def counting_table(flags: str = DEFAULT_COUNTING_FLAGS) -> U8:
    """The 256-entry table with 1 for each flag letter in ``flags`` (0 never counts)."""
    table = np.zeros(256, dtype=np.uint8)
    for letter in flags:
        code = ord(letter)
        if not 0 < code < 128:
            raise KernelInputError(f"flag {letter!r} is not a one-byte ASCII code")
        table[code] = 1
    return table


def severity_table(order: str = DEFAULT_SEVERITY_ORDER) -> U8:
    """Rank table for the dominant reason: ``order`` is most severe first.

    Every non-zero byte gets at least rank 1 (an unknown or policy-excluded flag still
    beats "no data": a flag is information, a gap is none); byte 0 has rank 0.
    """
    if len(set(order)) != len(order) or len(order) > 250:
        raise KernelInputError(f"severity order {order!r} repeats a flag or is too long")
    table = np.ones(256, dtype=np.uint8)
    table[NO_RECORD] = 0
    for i, letter in enumerate(reversed(order)):
        code = ord(letter)
        if not 0 < code < 128:
            raise KernelInputError(f"flag {letter!r} is not a one-byte ASCII code")
        table[code] = i + 2
    return table


DEFAULT_COUNTING: Final = counting_table()
DEFAULT_SEVERITY: Final = severity_table()
DEFAULT_COUNTING.flags.writeable = False
DEFAULT_SEVERITY.flags.writeable = False


# ---------------------------------------------------------------- results
class HourlyResult(NamedTuple):
    """Per hour: ``mean`` (NaN unless valid), ``partial`` (mean of whatever counted, NaN
    when nothing did), ``n_valid`` counting minutes, ``reason`` (0 = valid, else the
    dominant flag byte, or NO_DATA)."""

    mean: F64
    partial: F64
    n_valid: I32
    reason: U8


class DailyResult(NamedTuple):
    """Per day: ``mean`` of the valid hourly means (NaN unless valid), ``partial``,
    ``n_valid`` valid hours."""

    mean: F64
    partial: F64
    n_valid: I32


class MinuteToDayResult(NamedTuple):
    hourly: HourlyResult
    daily: DailyResult


class RollingResult(NamedTuple):
    """Per hour: the mean of the window ending with (and including) that hour."""

    mean: F64
    partial: F64
    n_valid: I32


class DailyMax8hResult(NamedTuple):
    """Per day: ``max`` (NaN unless valid), ``partial`` (max over the valid windows, NaN
    when none), ``n_valid`` windows, ``valid`` (MAX8H_INVALID / _VALID / _EXCEEDANCE)."""

    max: F64
    partial: F64
    n_valid: I32
    valid: U8


# ---------------------------------------------------------------- input checks
def _check_array(
    name: str, array: object, dtype: type[np.generic], multiple: int
) -> npt.NDArray[Any]:
    """``array`` as a C-contiguous 1-D array of exactly ``dtype`` (never converted: a
    silent cast could wrap flags or truncate values), length a multiple of ``multiple``."""
    if not isinstance(array, np.ndarray):
        raise KernelInputError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != dtype:
        raise KernelInputError(f"{name} must have dtype {np.dtype(dtype)}, got {array.dtype}")
    if array.ndim != 1:
        raise KernelInputError(f"{name} must be 1-D, got shape {array.shape}")
    if len(array) % multiple:
        raise KernelInputError(f"{name} has {len(array)} items, not a multiple of {multiple}")
    return np.ascontiguousarray(array)


def check_f64(name: str, array: object, multiple: int = 1) -> F64:
    return _check_array(name, array, np.float64, multiple)


def check_u8(name: str, array: object, multiple: int = 1) -> U8:
    return _check_array(name, array, np.uint8, multiple)


def check_table(name: str, table: object) -> U8:
    checked = check_u8(name, table)
    if len(checked) != 256:
        raise KernelInputError(f"{name} must have 256 entries, got {len(checked)}")
    return checked


def check_mask(name: str, mask: object, multiple: int = 1) -> U8:
    """A validity array: uint8 (non-zero = valid) or bool, viewed as uint8 (no copy)."""
    if isinstance(mask, np.ndarray) and mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    return check_u8(name, mask, multiple)


def check_minute_inputs(
    values: object, flags: object, counting: object, severity: object, multiple: int
) -> tuple[F64, U8, U8, U8]:
    """The minute kernels' arrays, checked; ``severity=None`` means DEFAULT_SEVERITY."""
    checked_values = check_f64("values", values, multiple)
    checked_flags = check_u8("flags", flags, multiple)
    check_same_length("values", checked_values, "flags", checked_flags)
    counting_ = check_table("counting", counting)
    if counting_[NO_RECORD]:
        raise KernelInputError("counting[0] must be 0: a minute with no record never counts")
    severity_ = DEFAULT_SEVERITY if severity is None else check_table("severity", severity)
    if severity_[NO_RECORD]:
        raise KernelInputError("severity[0] must be 0: reason 0 means valid")
    return checked_values, checked_flags, counting_, severity_


def check_same_length(name_a: str, a: U8 | F64, name_b: str, b: U8 | F64) -> None:
    if len(a) != len(b):
        raise KernelInputError(f"{name_a} has {len(a)} items but {name_b} has {len(b)}")


def check_int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise KernelInputError(f"{name} must be an int, got {type(value).__name__}")
    if not low <= value <= high:
        raise KernelInputError(f"{name} must be in {low}..{high}, got {value}")
    return int(value)


def check_float(name: str, value: object, *, low: float, high: float) -> float:
    """A real number in ``low..high`` (inclusive; infinities allowed only as bounds)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise KernelInputError(f"{name} must be a real number, got {type(value).__name__}")
    number = float(value)
    if not low <= number <= high:
        raise KernelInputError(f"{name} must be in {low}..{high}, got {value}")
    return number
