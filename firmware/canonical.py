"""Canonical JSON text: the same bytes from MicroPython and CPython.

What is signed must be reproducible byte for byte, so the station never lets the
interpreter choose how a number or a string is written:

* Floats are written with ``SIG_DIGITS`` significant digits, correctly rounded
  (round-half-even on the exact binary value), computed with integer arithmetic only.
  ``"%g"`` is not used: MicroPython formats floats with its own algorithm, which is not
  correctly rounded for every value and differs between single- and double-precision
  ports. Six digits is ``FLT_DIG``: a decimal of up to six significant digits (what a
  sensor register scaled by 0.1 or 0.001 holds) survives a trip through a float32 and is
  written back unchanged, and more digits would not be meaningful on an ESP32
  (single-precision floats). State that must round-trip exactly (calibration constants)
  asks for 17 digits (``sig=17``), enough for any double.
* Zero (also ``-0.0``) is ``0.0``; a float always keeps a fraction or an exponent, so it
  parses back as a float (``38.0``, not ``38``). Non-finite floats have no JSON form:
  :func:`format_float` raises :class:`NotFinite`; callers write ``null`` for "no value".
* Positional notation for ``1e-4 <= |x| < 1e15``, otherwise ``d.ddddde±XX``.
* Strings are escaped to pure ASCII: ``"`` ``\\`` and control characters as ``\\uXXXX``
  (``\\n`` etc. included, no short forms), non-ASCII as ``\\uXXXX`` (UTF-16 surrogate pairs
  above U+FFFF). CPython's ``json`` parses all of it back to the same string.
* Objects are written from sequences of ``(key, value)`` pairs, never from a ``dict``:
  MicroPython's dict does not keep insertion order, so key order would depend on the
  interpreter.
* Separators are ``", "`` and ``": "`` (those of the example in docs/topics.md).
"""

import math

SIG_DIGITS = 6

_POS_MIN_EXP = -4  # 1e-4 <= |x| < 1e15 is written positionally
_POS_MAX_EXP = 14


class NotFinite(ValueError):
    """A NaN or infinity was given where a JSON number is needed."""


def _exact_ratio(x):
    """``x`` (finite, > 0) as an exact fraction ``num / den`` of integers."""
    m, e = math.frexp(x)  # x = m * 2**e, 0.5 <= m < 1: exact on every float format
    mant = int(math.ldexp(m, 53))  # exact: at most 53 significant bits, scaled by 2**53
    e -= 53
    if e >= 0:
        return mant << e, 1
    return mant, 1 << (-e)


def _decimal_digits(x, sig):
    """(digits, exp10) with ``x ~= int(digits) * 10**(exp10 - sig + 1)``, ``len == sig``.

    ``digits`` is a string of exactly ``sig`` digits, the first non-zero; ``exp10`` is the
    decimal exponent of the first digit. Rounding is half-even on the exact value.
    """
    num, den = _exact_ratio(x)
    # Estimate floor(log10(num/den)) from the digit counts, then correct by at most one.
    exp10 = len(str(num)) - len(str(den))
    if exp10 >= 0:
        if num < den * 10**exp10:
            exp10 -= 1
    elif num * 10 ** (-exp10) < den:
        exp10 -= 1
    shift = sig - 1 - exp10  # scale so that the integer part has ``sig`` digits
    if shift >= 0:
        n2, d2 = num * 10**shift, den
    else:
        n2, d2 = num, den * 10 ** (-shift)
    q, r = divmod(n2, d2)
    twice = 2 * r
    if twice > d2 or (twice == d2 and q & 1):
        q += 1
    if q == 10**sig:  # rounding carried into a new digit: 9.999995 -> 10.0000
        q = 10 ** (sig - 1)
        exp10 += 1
    return str(q), exp10


def format_float(x, sig=SIG_DIGITS):
    """``x`` as JSON number text with ``sig`` significant digits (see module doc)."""
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        raise NotFinite("no JSON form for %r" % x)
    if x == 0.0:
        return "0.0"
    sign = ""
    if x < 0:
        sign = "-"
        x = -x
    digits, exp10 = _decimal_digits(x, sig)
    if _POS_MIN_EXP <= exp10 <= _POS_MAX_EXP:
        if exp10 >= 0:
            ip = digits[: exp10 + 1]
            if len(ip) < exp10 + 1:
                ip = ip + "0" * (exp10 + 1 - len(ip))
            fp = digits[exp10 + 1 :]
        else:
            ip = "0"
            fp = "0" * (-exp10 - 1) + digits
        fp = fp.rstrip("0")
        if not fp:
            fp = "0"
        return sign + ip + "." + fp
    mant = digits[0] + "." + (digits[1:].rstrip("0") or "0")
    es = "-" if exp10 < 0 else "+"
    ev = -exp10 if exp10 < 0 else exp10
    return "%s%se%s%02d" % (sign, mant, es, ev)


def _u(code):
    return "\\u%04x" % code


def encode_str(s):
    """``s`` as a JSON string literal (with quotes), pure ASCII."""
    out = ['"']
    for ch in s:
        c = ord(ch)
        if c == 0x22:
            out.append('\\"')
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(ch)
        elif c < 0x10000:
            out.append(_u(c))
        else:
            c -= 0x10000
            out.append(_u(0xD800 | (c >> 10)))
            out.append(_u(0xDC00 | (c & 0x3FF)))
    out.append('"')
    return "".join(out)


class Obj:
    """A JSON object with a fixed key order: wraps a sequence of ``(key, value)`` pairs."""

    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs


def _encode(v, out):
    if v is None:
        out.append("null")
    elif v is True:
        out.append("true")
    elif v is False:
        out.append("false")
    elif isinstance(v, int):
        out.append(str(v))
    elif isinstance(v, float):
        out.append(format_float(v))
    elif isinstance(v, str):
        out.append(encode_str(v))
    elif isinstance(v, Obj):
        out.append("{")
        first = True
        for k, item in v.pairs:
            if not first:
                out.append(", ")
            first = False
            out.append(encode_str(k))
            out.append(": ")
            _encode(item, out)
        out.append("}")
    elif isinstance(v, (list, tuple)):
        out.append("[")
        first = True
        for item in v:
            if not first:
                out.append(", ")
            first = False
            _encode(item, out)
        out.append("]")
    else:
        # A dict is refused on purpose: its key order is not defined on MicroPython.
        raise TypeError("no canonical JSON form for %s" % type(v).__name__)


def dumps(v):
    """Canonical JSON text of ``v`` (None, bool, int, float, str, list/tuple, Obj)."""
    out = []  # type: list[str]
    _encode(v, out)
    return "".join(out)
