"""Per-channel minute accumulator: samples in, one closed minute per channel out.

For every channel the accumulator keeps running sums in arrays sized at construction;
``add()`` allocates no container and grows nothing (on ports whose floats are boxed,
the float arithmetic itself still makes short-lived float objects: that is the GC's job
and is bounded per sample).

Which samples count (spec/standards.md section 4, HJ 212-2017 table 8): by default N and
T count; F, M, S, D, C and B do not, and are excluded from BOTH the average and the
count of valid samples. ``counting`` changes the set (a rule-set setting).

What ``close()`` produces per channel
-------------------------------------
``mean``, ``min``, ``max``
    over the counting samples only; NaN when there is none (the record writes null).
``n_valid``
    number of counting samples.
``n_expected``
    samples the poll schedule meant to take in the minute: ``60000 // poll_ms`` (or the
    ``n_expected`` given to ``close()``, e.g. for the first minute after boot). Missed
    polls count as expected. If more samples arrived than scheduled (scheduler jitter),
    ``n_expected`` is raised to the number that arrived, so ``n_valid <= n_expected``
    always holds.
``flag`` — the minute's HJ 212 flag, by this rule:

1. The minute is valid when ``n_valid >= 1`` and
   ``n_valid >= ceil(fraction * n_expected)``. ``fraction`` defaults to 0.75 (the 75 %
   completeness that GB 3095 applies to an hour, 45 of 60 minutes, applied here to the
   samples of a minute). It is held as an integer per-mille, so 0.75 * 60 is exactly 45
   and no float rounding moves the boundary.
2. A valid minute is ``T`` when any counting sample was T, else ``N``.
3. An invalid minute carries the dominant reason: the flag that most of the
   NON-counting samples had, where each missing poll (expected, never added) counts as
   one ``B`` (no reading reached the logger: a communication failure). Ties go to the
   more serious flag by ``drivers.flags.SEVERITY`` (B > D > F > C > M > S). A minute
   with nothing expected and nothing received is ``B``.

Bad input becomes a flag and a counter, never a crash and never a silent default:

* a NaN or infinite value with a counting flag is counted as ``D`` (instrument fault);
  ``nonfinite_as_fault`` counts them;
* an unknown flag is counted as ``D``; ``unknown_flags`` counts them;
* a channel index out of range raises ``IndexError`` (a wiring bug, not data).
"""

import math
from array import array

from drivers import flags as _flags

_ALL = _flags.ALL  # index of a flag in the per-channel tally = its position in ALL
_NF = len(_ALL)
_IDX_B = _ALL.find(_flags.COMM_FAILURE)
_IDX_D = _ALL.find(_flags.FAULT)
_IDX_T = _ALL.find(_flags.OVER_RANGE)

# Tie-break order as indices into ALL, most serious first.
_SEVERITY_IDX = bytes([_ALL.find(f) for f in _flags.SEVERITY])

MINUTE_MS = 60000
_INF = float("inf")
_NAN = float("nan")


def _float_array(n, fill):
    # Double where the port supports it (unix, CPython); single-precision ports store
    # and compute in float anyway.
    try:
        return array("d", [fill] * n)
    except ValueError:
        return array("f", [fill] * n)


class ClosedMinute:
    """The result of :meth:`MinuteAccumulator.close`.

    Preallocated once per accumulator and overwritten by every ``close()``: it ALIASES the
    accumulator's result buffers, so serialise it before the next close.
    Per channel ``i``: ``mean[i]``, ``min[i]``, ``max[i]`` (NaN = no valid sample),
    ``n_valid[i]``, ``n_expected[i]``, ``flag[i]``; ``ts`` is the minute's start (UTC s).
    """

    def __init__(self, n):
        self.n_channels = n
        self.ts = 0
        self.mean = _float_array(n, _NAN)
        self.min = _float_array(n, _NAN)
        self.max = _float_array(n, _NAN)
        self.n_valid = array("H", [0] * n)
        self.n_expected = array("H", [0] * n)
        self.flag = [_flags.COMM_FAILURE] * n

    def value(self, stat, i):
        """``stat`` ('mean', 'min', 'max') of channel ``i``, None when there is none."""
        v = getattr(self, stat)[i]
        return None if v != v else v


def required_valid(n_expected, permille):
    """ceil(n_expected * permille / 1000), in integers."""
    return (n_expected * permille + 999) // 1000


def minute_flag(tally, base, counting, n_missing, n_valid, n_expected, permille):
    """The minute flag by the rule in the module docstring.

    ``tally[base + k]`` is the number of samples whose flag is ``drivers.flags.ALL[k]``;
    ``counting[k]`` is 1 for a counting flag. ``n_missing`` missing polls count as B.
    """
    if n_valid >= 1 and n_valid >= required_valid(n_expected, permille):
        if counting[_IDX_T] and tally[base + _IDX_T]:
            return _flags.OVER_RANGE
        return _flags.NORMAL
    best = _IDX_B
    best_n = 0
    for k in _SEVERITY_IDX:  # most serious first: a later flag must beat it strictly
        if counting[k]:
            continue
        c = tally[base + k]
        if k == _IDX_B:
            c += n_missing
        if c > best_n:
            best = k
            best_n = c
    return _ALL[best]  # B when nothing at all was received or expected


class MinuteAccumulator:
    """Accumulates samples of ``n_channels`` channels over one minute.

    ``poll_ms`` is the poll interval, one int for all channels or one per channel.
    ``fraction`` is the share of expected samples that must be valid (0 < f <= 1,
    resolution 0.001). ``counting`` is the string of flags that count (default "NT").
    """

    def __init__(self, n_channels, poll_ms, fraction=0.75, counting=_flags.COUNTS_BY_DEFAULT):
        if n_channels < 1:
            raise ValueError("need at least one channel")
        if not (0 < fraction <= 1):
            raise ValueError("fraction must be in (0, 1]")
        if isinstance(poll_ms, int):
            poll_ms = [poll_ms] * n_channels
        if len(poll_ms) != n_channels:
            raise ValueError("one poll interval per channel")
        for p in poll_ms:
            if not (0 < p <= MINUTE_MS):
                raise ValueError("poll interval must be in 1..60000 ms")
        for f in counting:
            if not _flags.is_flag(f):
                raise ValueError("unknown flag %r in counting" % f)
        n = n_channels
        self.n_channels = n
        self.permille = int(fraction * 1000 + 0.5)
        self.scheduled = array("H", [MINUTE_MS // p for p in poll_ms])
        # 1 at the position of a counting flag in ALL
        self._counting = bytearray(_NF)
        for f in counting:
            self._counting[_ALL.find(f)] = 1
        self._sum = _float_array(n, 0.0)
        self._min = _float_array(n, _INF)
        self._max = _float_array(n, -_INF)
        self._seen = array("H", [0] * n)  # samples added, any flag
        self._tally = array("H", [0] * (n * _NF))  # per channel, per flag position
        self.result = ClosedMinute(n)
        # counters of input that was turned into a flag (never reset; a status field)
        self.nonfinite_as_fault = 0
        self.unknown_flags = 0

    def add(self, i, value, flag):
        """One sample of channel ``i``: ``value`` (float, may be NaN) with its ``flag``."""
        fi = _ALL.find(flag) if len(flag) == 1 else -1
        if fi < 0:
            self.unknown_flags += 1
            fi = _IDX_D
        if self._counting[fi] and (math.isnan(value) or math.isinf(value)):
            self.nonfinite_as_fault += 1
            fi = _IDX_D
        self._seen[i] += 1
        self._tally[i * _NF + fi] += 1
        if self._counting[fi]:
            self._sum[i] += value
            if value < self._min[i]:
                self._min[i] = value
            if value > self._max[i]:
                self._max[i] = value

    def close(self, minute_start, n_expected=None):
        """Close the minute that started at ``minute_start`` (UTC s) and start the next.

        ``n_expected`` overrides the schedule for this minute (an int for all channels),
        e.g. for a partial first minute after boot. Returns ``self.result`` (aliased).
        """
        r = self.result
        r.ts = minute_start
        counting = self._counting
        tally = self._tally
        for i in range(self.n_channels):
            base = i * _NF
            n_valid = 0
            for k in range(_NF):
                if counting[k]:
                    n_valid += tally[base + k]
            seen = self._seen[i]
            exp = self.scheduled[i] if n_expected is None else n_expected
            if seen > exp:
                exp = seen
            if n_valid:
                r.mean[i] = self._sum[i] / n_valid
                r.min[i] = self._min[i]
                r.max[i] = self._max[i]
            else:
                r.mean[i] = _NAN
                r.min[i] = _NAN
                r.max[i] = _NAN
            r.n_valid[i] = n_valid
            r.n_expected[i] = exp
            r.flag[i] = minute_flag(tally, base, counting, exp - seen, n_valid, exp, self.permille)
            # reset for the next minute
            for k in range(_NF):
                tally[base + k] = 0
            self._seen[i] = 0
            self._sum[i] = 0.0
            self._min[i] = _INF
            self._max[i] = -_INF
        return r
