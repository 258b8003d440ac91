"""Shared pieces of the standards package: its error types and exact decimal arithmetic.

Numbers from the field arrive as binary floats. A float is read as the shortest decimal
that round-trips to it (``repr``), i.e. the value that was measured and printed: 2.04 is
2.04, not 2.0400000000000000355. All rule arithmetic (interpolation, rounding,
percentiles) is then done with ``Decimal``/``Fraction``, so a result never depends on a
binary representation error.

Rounding follows GB/T 8170-2008 (数值修约规则): an exact half rounds to the even
neighbour (60.5 → 60, 61.5 → 62, 0.25 → 0.2).
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Decimal
from fractions import Fraction

Number = float | int | Decimal
"""A concentration or count as the caller has it. Floats are read by their ``repr``."""


class StandardsError(ValueError):
    """Base of every error raised by ``gateway.standards``."""


class UnknownNameError(StandardsError, KeyError):
    """A rule set, limit set, AQI generation, indicator or pollutant name is not known.

    ``kind`` says which namespace was searched, ``name`` what was asked for and
    ``known`` what exists.
    """

    def __init__(self, kind: str, name: str, known: tuple[str, ...]) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(known)}")

    def __str__(self) -> str:  # KeyError would repr() the message otherwise
        return str(self.args[0])


class InvalidValueError(StandardsError):
    """A value is outside what the rule can take (negative, NaN, infinite, out of range).

    ``what`` names the parameter, ``value`` is what was given.
    """

    def __init__(self, what: str, value: object, why: str) -> None:
        self.what = what
        self.value = value
        super().__init__(f"{what}={value!r}: {why}")


def to_decimal(value: Number, what: str = "value") -> Decimal:
    """``value`` as an exact, finite ``Decimal`` (floats by their shortest ``repr``)."""
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidValueError(what, value, "not a finite number")
        result = Decimal(repr(value))
    else:
        raise InvalidValueError(what, value, "not a number")
    if not result.is_finite():
        raise InvalidValueError(what, value, "not a finite number")
    return result


def to_fraction(value: Number, what: str = "value") -> Fraction:
    """``value`` as an exact ``Fraction`` via :func:`to_decimal`."""
    return Fraction(to_decimal(value, what))


def round_half_even(value: Number, places: int) -> Decimal:
    """Round to ``places`` decimal places by GB/T 8170 (an exact half goes to even).

    >>> round_half_even(60.5, 0), round_half_even(61.5, 0), round_half_even(0.25, 1)
    (Decimal('60'), Decimal('62'), Decimal('0.2'))
    """
    quantum = Decimal(1).scaleb(-places)
    return to_decimal(value).quantize(quantum, rounding=ROUND_HALF_EVEN)
