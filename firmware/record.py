"""The minute record (docs/topics.md "Minute record body") and its signed payload.

The body is canonical JSON (firmware/canonical.py): one line, fixed key order, floats with
six significant digits, pure ASCII — so the unix MicroPython port and CPython produce the
same bytes for the same inputs (tests/firmware/test_record_cross.py checks it). The
gateway verifies the HMAC over the bytes it received and never re-serialises.

Key order (top level)::

    v, type, station, seq, ts, interval, time_valid, fw, cal, ch

``ch`` holds the channels in the order the station config lists them; per channel::

    mean, min, max, n, exp, flag, unit

``mean``/``min``/``max`` are null when the channel had no valid sample in the minute.

Signed payload: ``body + b"\\n" + hex(HMAC-SHA256(device_key, body))`` (firmware/sign.py).
"""

from firmware import canonical, sign

RECORD_VERSION = 1
MINUTE_TYPE = "minute"


def _num_or_null(v):
    if v != v:  # NaN: no valid sample
        return "null"
    return canonical.format_float(v)


def minute_body(station, seq, closed, channels, units, time_valid, fw, cal, interval=60):
    """Body bytes of the minute record for ``closed`` (a :class:`ClosedMinute`).

    ``channels`` and ``units`` are sequences of channel names and their units, in the
    accumulator's channel order. ``seq`` is the per-station sequence number, ``cal`` the
    calibration version, ``fw`` the firmware version string.
    """
    if len(channels) != closed.n_channels or len(units) != closed.n_channels:
        raise ValueError("channels/units do not match the closed minute")
    enc = canonical.encode_str
    parts = [
        '{"v": ',
        str(RECORD_VERSION),
        ', "type": ',
        enc(MINUTE_TYPE),
        ', "station": ',
        enc(station),
        ', "seq": ',
        str(int(seq)),
        ', "ts": ',
        str(int(closed.ts)),
        ', "interval": ',
        str(int(interval)),
        ', "time_valid": ',
        "true" if time_valid else "false",
        ', "fw": ',
        enc(fw),
        ', "cal": ',
        str(int(cal)),
        ', "ch": {',
    ]
    for i in range(closed.n_channels):
        if i:
            parts.append(", ")
        parts.append(enc(channels[i]))
        parts.append(': {"mean": ')
        parts.append(_num_or_null(closed.mean[i]))
        parts.append(', "min": ')
        parts.append(_num_or_null(closed.min[i]))
        parts.append(', "max": ')
        parts.append(_num_or_null(closed.max[i]))
        parts.append(', "n": ')
        parts.append(str(closed.n_valid[i]))
        parts.append(', "exp": ')
        parts.append(str(closed.n_expected[i]))
        parts.append(', "flag": ')
        parts.append(enc(closed.flag[i]))
        parts.append(', "unit": ')
        parts.append(enc(units[i]))
        parts.append("}")
    parts.append("}}")
    return "".join(parts).encode()


def signed_minute(key, body):
    """The wire payload: ``body + b"\\n" + 64 lowercase hex digits``."""
    return sign.signed_payload(key, body)


def verify_signed(key, payload):
    """The body bytes when ``payload`` carries a valid signature, else None."""
    body, sig = sign.split_signed(payload)
    if not sig or not sign.verify(key, body, sig):
        return None
    return body
