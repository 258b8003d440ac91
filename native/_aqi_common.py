"""What both AQI twins share: sentinel and rule codes, result types, input checks.

The kernels in `_aqi_c.pyx` and `_aqi_py.py` are flat loops; the codes and the checks of
the policy arguments (a breakpoint table, the pre-rounding, the over-the-top rule) live
here, once, so the twins cannot drift apart on them. The rules are documented in
`native/aqi.py`.
"""

from __future__ import annotations

from typing import Final, NamedTuple

import numpy as np

from native._aggregate_common import (
    F64,
    I32,
    U8,
    KernelInputError,
    check_f64,
    check_int,
    check_same_length,
)

# ---------------------------------------------------------------- IAQI sentinels (int32)
MISSING: Final = -1  # NaN concentration: no data (HJ 633-2026 "NA")
INVALID: Final = -2  # negative or infinite concentration: the index is not defined
NO_FALLBACK: Final = -3  # 2012 over-800 rule, but the fallback IAQI is MISSING
LOWEST_CODE: Final = NO_FALLBACK

# ---------------------------------------------------------------- rule codes (uint8)
RULE_INTERPOLATED: Final = 0  # formula (1), or a sentinel (see the IAQI)
RULE_ABOVE_SCALE: Final = 1  # above the IAQI 500 breakpoint: capped at 500
RULE_FIXED: Final = 2  # over the top of a short table, fixed IAQI (2026: SO2 1h 200, O3 8h 300)
RULE_FALLBACK: Final = 3  # over the top of a short table, another IAQI (2012)

IAQI_MAX: Final = 500  # HJ 633's top IAQI: the cap above the scale
PRIMARY_ABOVE: Final = 50  # primary pollutant only when AQI > 50
GOOD_AQI_MAX: Final = 100  # 优良天: AQI ≤ 100

MAX_BREAKPOINTS: Final = 8
MAX_PLACES: Final = 3
# Exactness bounds (see native/aqi.py): every threshold the kernels compare a float with is
# a decimal of at most 13 significant digits whose numerator is an exact double.
MAX_BP_CONC: Final = 1_000_000_000
MAX_BP_IAQI: Final = 1000
IAQI_STEP_DIVIDES: Final = 1000  # each IAQI step divides 1000: thresholds have ≤ 3 decimals


class IaqiArrays(NamedTuple):
    """Per concentration: ``iaqi`` (int32; ≥ 0, or MISSING / INVALID / NO_FALLBACK) and
    ``rule`` (uint8; RULE_INTERPOLATED / _ABOVE_SCALE / _FIXED / _FALLBACK)."""

    iaqi: I32
    rule: U8

    @property
    def above_scale(self) -> U8:
        """1 where the concentration is above the IAQI 500 breakpoint (capped at 500)."""
        mask: U8 = (self.rule == RULE_ABOVE_SCALE).view(np.uint8)
        return mask


class AqiMaxResult(NamedTuple):
    """Per column: ``aqi`` (int32; the maximum IAQI, MISSING when every indicator is, or
    the first error code) and ``primary`` (uint8[n_indicators, n]; 1 for the indicators
    whose IAQI equals an AQI > 50)."""

    aqi: I32
    primary: U8


class IaqiPolicy(NamedTuple):
    """The checked policy arguments of `iaqi`, as the loops read them."""

    bp_conc: F64
    bp_iaqi: F64
    places: int  # -1: no pre-rounding (HJ 633-2012)
    fixed_above: int  # -1: none
    fallback: I32 | None


def _integer_valued(name: str, table: F64, low: int, high: int) -> None:
    if not np.all(np.isfinite(table)) or np.any(table != np.round(table)):
        raise KernelInputError(f"{name} must hold whole numbers, got {table.tolist()}")
    if table.min() < low or table.max() > high:
        raise KernelInputError(f"{name} must lie in {low}..{high}, got {table.tolist()}")
    if np.any(np.diff(table) <= 0):
        raise KernelInputError(f"{name} must be strictly increasing, got {table.tolist()}")


def check_table(bp_conc: object, bp_iaqi: object) -> tuple[F64, F64]:
    """One HJ 633 table-1 column: 2..8 whole concentrations from 0 and their whole IAQIs,
    both strictly increasing, every IAQI step a divisor of 1000 (HJ 633: 50 and 100)."""
    conc = check_f64("bp_conc", bp_conc)
    iaqi = check_f64("bp_iaqi", bp_iaqi)
    check_same_length("bp_conc", conc, "bp_iaqi", iaqi)
    if not 2 <= len(conc) <= MAX_BREAKPOINTS:
        raise KernelInputError(f"a breakpoint table has 2..{MAX_BREAKPOINTS} rows, got {len(conc)}")
    _integer_valued("bp_conc", conc, 0, MAX_BP_CONC)
    _integer_valued("bp_iaqi", iaqi, 0, MAX_BP_IAQI)
    if conc[0] != 0:
        raise KernelInputError(f"bp_conc must start at 0, got {conc[0]}")
    steps = np.diff(iaqi).astype(np.int64)
    if np.any(IAQI_STEP_DIVIDES % steps):
        raise KernelInputError(
            f"every IAQI step must divide {IAQI_STEP_DIVIDES} (the kernel's exactness "
            f"bound; HJ 633 uses 50 and 100), got steps {steps.tolist()}"
        )
    return conc, iaqi


def check_codes(name: str, array: object, ndim: int) -> I32:
    """An int32 array of IAQIs/AQIs: ``ndim``-D, C-contiguous, no value below the lowest
    sentinel (an unknown negative code would be silently read as some other one)."""
    if not isinstance(array, np.ndarray):
        raise KernelInputError(f"{name} must be a numpy array, got {type(array).__name__}")
    if array.dtype != np.int32:
        raise KernelInputError(f"{name} must have dtype int32, got {array.dtype}")
    if array.ndim != ndim:
        raise KernelInputError(f"{name} must be {ndim}-D, got shape {array.shape}")
    if array.size and int(array.min()) < LOWEST_CODE:
        raise KernelInputError(
            f"{name} holds {int(array.min())}, below the lowest code {LOWEST_CODE}"
        )
    checked: I32 = np.ascontiguousarray(array)
    return checked


def check_iaqi_inputs(
    concentration: object,
    bp_conc: object,
    bp_iaqi: object,
    places: object,
    fixed_above: object,
    fallback: object,
) -> tuple[F64, IaqiPolicy]:
    values = check_f64("concentration", concentration)
    conc, iaqi = check_table(bp_conc, bp_iaqi)
    places_ = -1 if places is None else check_int("places", places, 0, MAX_PLACES)
    fixed = -1 if fixed_above is None else check_int("fixed_above", fixed_above, 0, MAX_BP_IAQI)
    fallback_: I32 | None = None
    if fallback is not None:
        if fixed_above is not None:
            raise KernelInputError("give fixed_above (2026) or fallback (2012), not both")
        fallback_ = check_codes("fallback", fallback, 1)
        if len(fallback_) != len(values):
            raise KernelInputError(
                f"concentration has {len(values)} items but fallback has {len(fallback_)}"
            )
    elif fixed_above is None and iaqi[-1] != IAQI_MAX:
        raise KernelInputError(
            f"the table stops at IAQI {iaqi[-1]:g}, below {IAQI_MAX}: say what an IAQI "
            "over its top is (fixed_above for HJ 633-2026, fallback for HJ 633-2012)"
        )
    return values, IaqiPolicy(conc, iaqi, places_, fixed, fallback_)
