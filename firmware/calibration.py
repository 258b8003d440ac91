"""Per-channel zero/span calibration, maintenance and calibration modes, and their audit.

Calibration (two-point, zero and span, as analyser calibration is done on site with zero
air and a span gas of known concentration)::

    value_out = (value_in - zero) * gain

* ``zero(channel)`` with zero air applied: ``zero`` becomes the raw reading.
* ``span(channel, reference, measured)`` with span gas of concentration ``reference``
  applied and the raw reading ``measured``: ``gain = reference / (measured - zero)``.

``version`` is the calibration version id: it increments on every change of a zero or a
gain (zero, span, set, reset) and is written into every minute record (``"cal"``), so a
record always says which constants produced it. Mode changes do not change a constant and
do not bump it; they are audited all the same.

Flags (spec/standards.md section 4): while a channel is in calibration mode its N and T
samples become C; while the station is in maintenance, N and T become M. C wins over M
(``drivers.flags.SEVERITY``). Any other flag (D, B, F, S) is kept: it says more.

Audit log: every change appends one canonical-JSON line to a file on the device, opened in
append mode and closed after each line (flash file systems flush on close)::

    {"ts": 1764374400, "time_valid": true, "who": "repl", "channel": "so2",
     "action": "span", "before": {"zero": 1.5, "gain": 1.0},
     "after": {"zero": 1.5, "gain": 1.00705}, "cal": 4}

``who`` is the source: ``"repl"`` (a technician on site) or ``"mqtt"`` (a signed command).
When the next line would take the file past ``max_bytes`` it is renamed to ``<path>.1``
(replacing the previous ``.1``) and a new file is started; ``rotations`` counts that.
The line is written BEFORE the change is applied: if the write fails the change is
refused (:class:`AuditError`), so no change escapes the log.

On the REPL (the technician's API)::

    >>> cal.show()                      # constants, modes, version
    >>> cal.calibration("so2", True)    # so2 samples are now flagged C
    >>> cal.zero("so2")                 # zero air applied: offset := latest raw reading
    >>> cal.span("so2", 400.0, 397.2)   # span gas 400 ppb, raw reading 397.2
    >>> cal.calibration("so2", False)
    >>> cal.maintenance(True)           # whole station flagged M
    >>> cal.history(5)                  # last audit lines
"""

import math
import os
from array import array

from drivers import flags as _flags
from firmware import canonical

SOURCES = ("repl", "mqtt")
DEFAULT_AUDIT_MAX_BYTES = 16384
_STATE_DIGITS = 17  # exact round trip of a double

_N = _flags.NORMAL
_T = _flags.OVER_RANGE
_C = _flags.CALIBRATION
_M = _flags.MAINTENANCE
_NAN = float("nan")


class CalibrationError(ValueError):
    """A calibration request that cannot be applied (names the channel and the cause)."""


class AuditError(OSError):
    """The audit line could not be written; the change was not applied."""


def _float_array(n, fill):
    try:
        return array("d", [fill] * n)
    except ValueError:
        return array("f", [fill] * n)


def _file_size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return 0


class AuditLog:
    """Append-only JSON-lines file with one rotation generation (``<path>.1``)."""

    def __init__(self, path, max_bytes=DEFAULT_AUDIT_MAX_BYTES):
        self.path = path
        self.max_bytes = max_bytes
        self.lines = 0
        self.rotations = 0
        self.failures = 0

    def _rotate(self):
        old = self.path + ".1"
        try:
            os.remove(old)
        except OSError:
            pass
        os.rename(self.path, old)
        self.rotations += 1

    def append(self, line):
        """Append ``line`` (bytes, no newline). Raises :class:`AuditError` on failure."""
        try:
            size = _file_size(self.path)
            if size and size + len(line) + 1 > self.max_bytes:
                self._rotate()
            with open(self.path, "ab") as f:
                f.write(line)
                f.write(b"\n")
        except OSError as e:
            self.failures += 1
            raise AuditError("audit log %s: %s" % (self.path, e))
        self.lines += 1

    def tail(self, n=10):
        """The last ``n`` lines (str), oldest first, from ``.1`` and the current file."""
        out = []
        for p in (self.path + ".1", self.path):
            try:
                with open(p) as f:
                    for ln in f:
                        ln = ln.rstrip("\n")
                        if ln:
                            out.append(ln)
                            if len(out) > n:
                                out.pop(0)
            except OSError:
                pass
        return out


class Calibration:
    """Calibration constants and modes of the station's channels (module docstring).

    ``channels`` are the channel names in the accumulator's order; a method's ``channel``
    argument is a name or an index. ``clock`` stamps audit lines. ``persist``, when given,
    is called with :meth:`state_bytes` after every change of a constant (the runtime
    writes it atomically; :meth:`load_state` reads it back at boot).
    """

    def __init__(self, channels, clock, audit, persist=None):
        n = len(channels)
        if n < 1:
            raise ValueError("need at least one channel")
        self.names = list(channels)
        self.clock = clock
        self.audit = audit
        self.persist = persist
        self.version = 0
        self.zero_offset = _float_array(n, 0.0)
        self.gain = _float_array(n, 1.0)
        self.last_raw = _float_array(n, _NAN)
        self.in_calibration = bytearray(n)
        self.in_maintenance = False

    # ---------------------------------------------------------------- sample path
    def apply_value(self, i, value):
        """Calibrated value of channel index ``i``; remembers the raw one for zero/span."""
        self.last_raw[i] = value
        return (value - self.zero_offset[i]) * self.gain[i]

    def apply_flag(self, i, flag):
        """The sample flag after the modes: N/T -> C in calibration, -> M in maintenance."""
        # two comparisons, not `in (_N, _T)`: no tuple built per sample on MicroPython
        if flag == _N or flag == _T:  # noqa: SIM109
            if self.in_calibration[i]:
                return _C
            if self.in_maintenance:
                return _M
        return flag

    def apply(self, i, value, flag):
        """``(value, flag)`` after calibration. A flag other than N/T marks the raw value
        as no reading (``last_raw`` NaN), so zero/span cannot use a faulty sample."""
        if flag != _N and flag != _T:
            out = (value - self.zero_offset[i]) * self.gain[i]
            self.last_raw[i] = _NAN
            return out, self.apply_flag(i, flag)
        return self.apply_value(i, value), self.apply_flag(i, flag)

    # ---------------------------------------------------------------- helpers
    def index(self, channel):
        if isinstance(channel, int) and not isinstance(channel, bool):
            if 0 <= channel < len(self.names):
                return channel
        elif channel in self.names:
            return self.names.index(channel)
        raise CalibrationError("unknown channel %r" % (channel,))

    def _constants(self, i):
        return canonical.Obj([("zero", float(self.zero_offset[i])), ("gain", float(self.gain[i]))])

    def _audit(self, who, channel, action, before, after, version):
        if who not in SOURCES:
            raise ValueError("who must be one of %r" % (SOURCES,))
        line = canonical.dumps(
            canonical.Obj(
                [
                    ("ts", self.clock.now()),
                    ("time_valid", bool(self.clock.synced)),
                    ("who", who),
                    ("channel", channel),
                    ("action", action),
                    ("before", before),
                    ("after", after),
                    ("cal", version),
                ]
            )
        )
        self.audit.append(line.encode())

    def _change(self, i, zero, gain, action, who):
        if math.isnan(zero) or math.isinf(zero):
            raise CalibrationError("%s: zero %r is not finite" % (self.names[i], zero))
        if math.isnan(gain) or math.isinf(gain) or gain <= 0:
            raise CalibrationError("%s: gain %r must be finite and > 0" % (self.names[i], gain))
        before = self._constants(i)
        after = canonical.Obj([("zero", float(zero)), ("gain", float(gain))])
        self._audit(who, self.names[i], action, before, after, self.version + 1)
        self.zero_offset[i] = zero
        self.gain[i] = gain
        self.version += 1
        if self.persist is not None:
            self.persist(self.state_bytes())
        return self.version

    def _raw(self, i, given, what):
        v = self.last_raw[i] if given is None else float(given)
        if math.isnan(v) or math.isinf(v):
            raise CalibrationError("%s: no valid raw reading for %s" % (self.names[i], what))
        return v

    # ---------------------------------------------------------------- technician API
    def zero(self, channel, value=None, who="repl"):
        """Set the zero offset of ``channel`` to ``value``, or to the latest raw reading
        (apply zero air first). Returns the new calibration version."""
        i = self.index(channel)
        z = self._raw(i, value, "zero")
        return self._change(i, z, self.gain[i], "zero", who)

    def span(self, channel, reference, measured=None, who="repl"):
        """Set the span gain so that raw ``measured`` (default: the latest raw reading)
        reads ``reference``: gain = reference / (measured - zero). Returns the version."""
        i = self.index(channel)
        m = self._raw(i, measured, "span")
        ref = float(reference)
        d = m - self.zero_offset[i]
        if d == 0 or ref <= 0:
            raise CalibrationError(
                "%s: span needs reference > 0 and a reading above zero (%r - %r)"
                % (self.names[i], m, self.zero_offset[i])
            )
        return self._change(i, self.zero_offset[i], ref / d, "span", who)

    def set(self, channel, zero=None, gain=None, who="repl"):
        """Set constants directly (a config command); None keeps the current one."""
        i = self.index(channel)
        z = self.zero_offset[i] if zero is None else float(zero)
        g = self.gain[i] if gain is None else float(gain)
        return self._change(i, z, g, "set", who)

    def reset(self, channel, who="repl"):
        """Back to zero 0, gain 1."""
        return self._change(self.index(channel), 0.0, 1.0, "reset", who)

    def calibration(self, channel, on, who="repl"):
        """Put ``channel`` into (or out of) calibration mode: its samples are flagged C."""
        i = self.index(channel)
        on = bool(on)
        before = bool(self.in_calibration[i])
        self._audit(who, self.names[i], "calibration", before, on, self.version)
        self.in_calibration[i] = 1 if on else 0

    def maintenance(self, on, who="repl"):
        """Put the whole station into (or out of) maintenance: samples are flagged M."""
        on = bool(on)
        self._audit(who, None, "maintenance", self.in_maintenance, on, self.version)
        self.in_maintenance = on

    def status_text(self):
        lines = [
            "calibration version %d, maintenance %s"
            % (self.version, "ON" if self.in_maintenance else "off"),
            "%-10s %14s %14s %14s %s" % ("channel", "zero", "gain", "last raw", "mode"),
        ]
        for i, name in enumerate(self.names):
            raw = self.last_raw[i]
            lines.append(
                "%-10s %14s %14s %14s %s"
                % (
                    name,
                    canonical.format_float(self.zero_offset[i]),
                    canonical.format_float(self.gain[i]),
                    "-" if raw != raw else canonical.format_float(raw),
                    "CAL" if self.in_calibration[i] else "",
                )
            )
        return "\n".join(lines)

    def show(self):
        """Print the constants, modes and version (for the REPL)."""
        print(self.status_text())

    def history(self, n=10):
        """Print the last ``n`` audit lines (for the REPL)."""
        for ln in self.audit.tail(n):
            print(ln)

    # ---------------------------------------------------------------- persistence
    def state_bytes(self):
        """Constants and version as canonical JSON (17 significant digits: exact)."""
        ff = canonical.format_float
        parts = ['{"version": %d, "ch": {' % self.version]
        for i, name in enumerate(self.names):
            if i:
                parts.append(", ")
            parts.append(canonical.encode_str(name))
            parts.append(
                ': {"zero": %s, "gain": %s}'
                % (ff(self.zero_offset[i], _STATE_DIGITS), ff(self.gain[i], _STATE_DIGITS))
            )
        parts.append("}}")
        return "".join(parts).encode()

    def load_state(self, data):
        """Restore constants and version saved by :meth:`state_bytes` (at boot).

        A channel in the state that this station does not have is refused, as is any
        malformed content: :class:`CalibrationError`, nothing changed.
        """
        import json

        try:
            st = json.loads(data)
            version = st["version"]
            chans = st["ch"]
            new = []
            for name in chans:
                i = self.index(name)
                z = float(chans[name]["zero"])
                g = float(chans[name]["gain"])
                if math.isnan(z) or math.isinf(z) or math.isnan(g) or math.isinf(g) or g <= 0:
                    raise CalibrationError("%s: bad constants in state" % name)
                new.append((i, z, g))
            if not isinstance(version, int) or version is True or version is False:
                raise CalibrationError("bad version in state")
        except (KeyError, TypeError, ValueError, UnicodeError) as e:
            if isinstance(e, CalibrationError):
                raise
            raise CalibrationError("malformed calibration state: %r" % (e,))
        for i, z, g in new:
            self.zero_offset[i] = z
            self.gain[i] = g
        self.version = version
