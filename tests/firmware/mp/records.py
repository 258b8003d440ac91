"""Test records for the store-and-forward scripts (MicroPython subset).

A payload names its own sequence number and carries a checksum computed independently
of the ring's CRC (first 4 bytes of SHA-256), so a test can tell that what ``peek()``
returned is exactly what ``append()`` was given for that seq::

    b"<seq>|<filler>|<8 hex digits>"

The filler's length varies with seq (0..20 bytes) so that slots hold payloads of
different lengths and a torn slot has stale bytes behind its payload.
"""

import binascii
import hashlib

# Small geometry: 3 segments of 4 slots of 64 bytes, so runs wrap many times.
SLOT_SIZE = 64
SLOTS_PER_SEGMENT = 4
SEGMENTS = 3
CAPACITY = SLOTS_PER_SEGMENT * SEGMENTS

_FILLER = b"abcdefghijklmnopqrst"


def _tag(body):
    return binascii.hexlify(hashlib.sha256(body).digest()[:4])


def make_payload(seq):
    body = b"%d|%s|" % (seq, _FILLER[: (seq * 7) % 21])
    return body + _tag(body)


def check_payload(seq, payload):
    """True when ``payload`` is intact and names ``seq``."""
    payload = bytes(payload)
    i = payload.rfind(b"|")
    if i < 0:
        return False
    body = payload[: i + 1]
    if payload[i + 1 :] != _tag(body):
        return False
    try:
        return int(body.split(b"|")[0]) == seq
    except ValueError:
        return False


class Xorshift:
    """Seeded PRNG with the same sequence on both interpreters."""

    def __init__(self, seed):
        self.state = (seed & 0xFFFFFFFF) or 0x9E3779B9

    def below(self, n):
        x = self.state
        x ^= (x << 13) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
        self.state = x
        return x % n
