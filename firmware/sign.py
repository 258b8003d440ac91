"""HMAC-SHA256 (RFC 2104 / FIPS 198-1) for MicroPython, and signed commands.

MicroPython has ``hashlib.sha256`` but no ``hmac`` module (checked on the unix port
1.29: ``import hmac`` -> ImportError), and its hash objects have no ``copy()``, so the
keyed inner/outer states cannot be cached: each MAC hashes the two 64-byte pad blocks.

    HMAC(K, m) = H((K0 ^ opad) || H((K0 ^ ipad) || m))

K0 is the key padded with zeros to the block size B = 64 bytes; a key longer than B is
first replaced by H(K) (RFC 2104 section 2). ipad = 0x36 * B, opad = 0x5c * B.

Signed payloads (docs/topics.md "Signed payloads"): ``body + b"\\n" + hex(HMAC)``, the
hex lowercase, 64 digits. The receiver splits at the LAST newline and verifies the body
bytes exactly as received before parsing them.

Signed commands (``lantian/v1/station/{station}/cmd``) use the same framing. The body is a
JSON object with at least::

    {"station": "yb-town-01", "nonce": "k3f9...", "exp": 1764374700, "cmd": "zero", ...}

:func:`verify_command` refuses a command with one of the named reasons below, checked in
this order (so that nothing from an unauthenticated body is trusted or even parsed):

=================  ==========================================================
``unsigned``       no newline separator, or nothing after it
``bad_signature``  the signature is not 64 hex digits, or does not match
``malformed``      the authenticated body is not a JSON object with a string
                   ``station``, string ``nonce`` (1..64 chars), integer ``exp``
                   and string ``cmd``
``wrong_station``  ``station`` is not this station's id
``expired``        ``now > exp``, or ``exp`` lies more than ``max_ttl`` seconds in
                   the future (outside the acceptance window; a command that
                   stays acceptable for longer than the nonce cache remembers
                   could be replayed after its nonce has been evicted)
``replayed``       the nonce is in the cache of recently accepted nonces
=================  ==========================================================

Only an accepted command's nonce enters the cache, so a refused copy does not block the
genuine one.
"""

import binascii
import hashlib
import json

BLOCK_SIZE = 64  # SHA-256 block, bytes (FIPS 180-4 section 5.1.2)
DIGEST_SIZE = 32
HEX_SIZE = 64

UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
EXPIRED = "expired"
REPLAYED = "replayed"
WRONG_STATION = "wrong_station"
MALFORMED = "malformed"

DEFAULT_MAX_TTL = 600  # s: how far ahead a command's ``exp`` may lie
_NONCE_MAX_LEN = 64

# The pad block is allocated once and refilled for every MAC. Not re-entrant: nothing in
# here awaits, so on MicroPython's single-threaded asyncio no other MAC can interleave.
_key_block = bytearray(BLOCK_SIZE)


def _fill_pad(key, pad):
    kb = _key_block
    n = len(key)
    for i in range(n):
        kb[i] = key[i] ^ pad
    for i in range(n, BLOCK_SIZE):
        kb[i] = pad


def _as_key(key):
    if isinstance(key, str):
        key = key.encode()
    if len(key) > BLOCK_SIZE:
        key = hashlib.sha256(key).digest()
    return key


def hmac_sha256(key, msg):
    """Raw 32-byte HMAC-SHA256 of ``msg`` under ``key`` (bytes-like; str keys as UTF-8)."""
    key = _as_key(key)
    _fill_pad(key, 0x36)
    inner = hashlib.sha256(_key_block)  # hashes a copy of the block; refilling is safe
    inner.update(msg)
    ih = inner.digest()
    _fill_pad(key, 0x5C)
    outer = hashlib.sha256(_key_block)
    outer.update(ih)
    return outer.digest()


def sign(key, body):
    """Lowercase hex HMAC-SHA256 of ``body``, as 64 bytes."""
    return binascii.hexlify(hmac_sha256(key, body))


def compare_digest(a, b):
    """Constant-time equality of two byte strings (time depends on the length only)."""
    if len(a) != len(b):
        return False
    acc = 0
    for i in range(len(a)):
        acc |= a[i] ^ b[i]
    return acc == 0


def verify(key, body, hexsig):
    """Whether ``hexsig`` (bytes or str, lowercase hex) is the HMAC of ``body``."""
    if isinstance(hexsig, str):
        hexsig = hexsig.encode()
    return compare_digest(sign(key, body), hexsig)


def signed_payload(key, body):
    """``body + b"\\n" + sign(key, body)``: the wire form of docs/topics.md."""
    return body + b"\n" + sign(key, body)


def split_signed(payload):
    """``(body, hexsig)`` split at the last newline; ``(payload, None)`` when there is none.

    Both parts are slices (copies) of ``payload``.
    """
    i = bytes(payload).rfind(b"\n")
    if i < 0:
        return payload, None
    return payload[:i], payload[i + 1 :]


def _is_hex64(sig):
    if len(sig) != HEX_SIZE:
        return False
    return all(0x30 <= c <= 0x39 or 0x61 <= c <= 0x66 for c in sig)  # 0-9 a-f


class NonceCache:
    """The nonces of recently accepted commands: a bounded ring that drops the oldest.

    ``dropped`` counts evictions (a status field, so an operator can see when the cache
    is too small for the command rate). Lookup is linear: ``capacity`` is small and
    commands are rare.
    """

    def __init__(self, capacity=32):
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._ring = [None] * capacity
        self._next = 0
        self.count = 0
        self.dropped = 0

    def __contains__(self, nonce):
        return any(n is not None and n == nonce for n in self._ring)

    def add(self, nonce):
        if self._ring[self._next] is not None:
            self.dropped += 1
        else:
            self.count += 1
        self._ring[self._next] = nonce
        self._next = (self._next + 1) % self.capacity


def _parse_command(body):
    try:
        cmd = json.loads(body)
    except (ValueError, UnicodeError):
        return None
    if not isinstance(cmd, dict):
        return None
    station = cmd.get("station")
    nonce = cmd.get("nonce")
    exp = cmd.get("exp")
    name = cmd.get("cmd")
    if not isinstance(station, str) or not isinstance(name, str):
        return None
    if not isinstance(nonce, str) or not (0 < len(nonce) <= _NONCE_MAX_LEN):
        return None
    # bool is not an int on MicroPython but is on CPython: refuse it explicitly on both.
    if exp is True or exp is False or not isinstance(exp, int):
        return None
    return cmd


def verify_command(key, payload, now, seen_nonces, station, max_ttl=DEFAULT_MAX_TTL):
    """Check a signed command. Returns ``(ok, reason, command)``.

    ``ok`` True: ``reason`` is None, ``command`` the parsed body (a dict) and its nonce has
    been added to ``seen_nonces`` (a :class:`NonceCache`). ``ok`` False: ``reason`` is one
    of the names in the module docstring and ``command`` is None, except for
    ``wrong_station``/``expired``/``replayed``, where the authenticated body is returned
    so the refusal can be acknowledged and audited with its nonce.
    ``now`` is UTC epoch seconds from the station clock.
    """
    body, sig = split_signed(payload)
    if not sig:
        return False, UNSIGNED, None
    sig = bytes(sig)
    if not _is_hex64(sig) or not verify(key, body, sig):
        return False, BAD_SIGNATURE, None
    cmd = _parse_command(body)
    if cmd is None:
        return False, MALFORMED, None
    if cmd["station"] != station:
        return False, WRONG_STATION, cmd
    exp = cmd["exp"]
    if now > exp or exp - now > max_ttl:
        return False, EXPIRED, cmd
    nonce = cmd["nonce"]
    if nonce in seen_nonces:
        return False, REPLAYED, cmd
    seen_nonces.add(nonce)
    return True, None, cmd
