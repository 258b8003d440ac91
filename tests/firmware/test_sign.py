"""HMAC-SHA256 against RFC 4231 test cases 1-4, 6, 7, and the signed-command refusals."""

import binascii

from firmware import sign
from firmware.sign import NonceCache, signed_payload, verify_command

RUNS_ON_MICROPYTHON = True

_h = binascii.unhexlify

# RFC 4231 section 4: (key, data, HMAC-SHA-256). Case 5 is a truncated output: not used.
RFC4231 = [
    (b"\x0b" * 20, b"Hi There", "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (
        b"Jefe",
        b"what do ya want for nothing?",
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843",
    ),
    (
        b"\xaa" * 20,
        b"\xdd" * 50,
        "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe",
    ),
    (
        _h("0102030405060708090a0b0c0d0e0f10111213141516171819"),
        b"\xcd" * 50,
        "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b",
    ),
    # 6: key (131 bytes) longer than the 64-byte block: hashed first
    (
        b"\xaa" * 131,
        b"Test Using Larger Than Block-Size Key - Hash Key First",
        "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54",
    ),
    # 7: key and data longer than the block
    (
        b"\xaa" * 131,
        b"This is a test using a larger than block-size key and a larger than block-size "
        b"data. The key needs to be hashed before being used by the HMAC algorithm.",
        "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2",
    ),
]

KEY = b"station-device-key-0123456789abcdef"
STATION = "yb-town-01"
NOW = 1764374400


def test_rfc4231_vectors():
    for key, data, mac in RFC4231:
        assert sign.hmac_sha256(key, data) == _h(mac)
        assert sign.sign(key, data) == mac.encode()


def test_key_of_exactly_block_size_is_not_hashed():
    k64 = bytes(range(64))
    k65 = bytes(range(65))
    import hashlib

    assert sign.hmac_sha256(k64, b"x") != sign.hmac_sha256(hashlib.sha256(k64).digest(), b"x")
    assert sign.hmac_sha256(k65, b"x") == sign.hmac_sha256(hashlib.sha256(k65).digest(), b"x")


def test_empty_key_and_message():
    # HMAC-SHA256("", "") is a well-known constant.
    assert sign.sign(b"", b"") == (
        b"b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad"
    )


def test_verify_and_compare_digest():
    sig = sign.sign(KEY, b"body")
    assert sign.verify(KEY, b"body", sig)
    assert sign.verify(KEY, b"body", sig.decode())
    assert not sign.verify(KEY, b"body!", sig)
    assert not sign.verify(b"other", b"body", sig)
    assert not sign.verify(KEY, b"body", sig[:-1])
    assert not sign.verify(KEY, b"body", sig.upper())  # the contract is lowercase hex
    assert sign.compare_digest(b"abc", b"abc")
    assert not sign.compare_digest(b"abc", b"abd")
    assert not sign.compare_digest(b"abc", b"ab")


def test_signed_payload_split_at_last_newline():
    body = b'{"a": "x\\ny"}'
    p = signed_payload(KEY, body)
    assert p.count(b"\n") == 1
    b2, sig = sign.split_signed(p)
    assert b2 == body and sign.verify(KEY, b2, sig)
    assert sign.split_signed(b"no newline") == (b"no newline", None)


def _cmd(nonce="n-1", exp=NOW + 60, station=STATION, cmd="zero", extra=""):
    body = f'{{"station": "{station}", "nonce": "{nonce}", "exp": {exp}, "cmd": "{cmd}"{extra}}}'
    return signed_payload(KEY, body.encode())


def test_command_accepted_and_nonce_remembered():
    seen = NonceCache(4)
    ok, reason, cmd = verify_command(KEY, _cmd(extra=', "channel": "so2"'), NOW, seen, STATION)
    assert ok and reason is None
    assert cmd["cmd"] == "zero" and cmd["channel"] == "so2"
    assert "n-1" in seen


def test_command_unsigned():
    seen = NonceCache()
    body = b'{"station": "yb-town-01", "nonce": "a", "exp": 1764374460, "cmd": "zero"}'
    assert verify_command(KEY, body, NOW, seen, STATION) == (False, "unsigned", None)
    assert verify_command(KEY, body + b"\n", NOW, seen, STATION) == (False, "unsigned", None)


def test_command_bad_signature():
    seen = NonceCache()
    p = _cmd()
    tampered = p.replace(b'"zero"', b'"span"')
    assert verify_command(KEY, tampered, NOW, seen, STATION)[:2] == (False, "bad_signature")
    assert verify_command(b"wrong key", p, NOW, seen, STATION)[:2] == (False, "bad_signature")
    assert verify_command(KEY, p[:-1], NOW, seen, STATION)[:2] == (False, "bad_signature")
    assert verify_command(KEY, p[:-2] + b"zz", NOW, seen, STATION)[:2] == (False, "bad_signature")
    assert "n-1" not in seen


def test_command_malformed_after_a_valid_signature():
    seen = NonceCache()
    for body in (
        b"not json",
        b"[1, 2]",
        b'{"station": "yb-town-01", "nonce": "a", "exp": "soon", "cmd": "zero"}',
        b'{"station": "yb-town-01", "nonce": "a", "exp": true, "cmd": "zero"}',
        b'{"station": "yb-town-01", "nonce": "", "exp": 1764374460, "cmd": "zero"}',
        b'{"station": "yb-town-01", "exp": 1764374460, "cmd": "zero"}',
        b'{"station": "yb-town-01", "nonce": "a", "exp": 1764374460}',
        b'{"station": 7, "nonce": "a", "exp": 1764374460, "cmd": "zero"}',
        b'"\xff\xfe"',
    ):
        r = verify_command(KEY, signed_payload(KEY, body), NOW, seen, STATION)
        assert r == (False, "malformed", None), (body, r)


def test_command_wrong_station():
    seen = NonceCache()
    ok, reason, cmd = verify_command(KEY, _cmd(station="yb-town-02"), NOW, seen, STATION)
    assert (ok, reason) == (False, "wrong_station")
    assert cmd["station"] == "yb-town-02"
    assert "n-1" not in seen


def test_command_expired_and_too_far_ahead():
    seen = NonceCache()
    assert verify_command(KEY, _cmd(exp=NOW - 1), NOW, seen, STATION)[:2] == (False, "expired")
    assert verify_command(KEY, _cmd(exp=NOW), NOW, seen, STATION)[0]  # exp is inclusive
    p = _cmd(nonce="n-2", exp=NOW + 601)
    assert verify_command(KEY, p, NOW, seen, STATION)[:2] == (False, "expired")
    assert verify_command(KEY, p, NOW, seen, STATION, max_ttl=3600)[0]


def test_command_replayed():
    seen = NonceCache(2)
    p = _cmd(nonce="once")
    assert verify_command(KEY, p, NOW, seen, STATION)[0]
    assert verify_command(KEY, p, NOW + 1, seen, STATION)[:2] == (False, "replayed")


def test_nonce_cache_drops_oldest_and_counts():
    seen = NonceCache(2)
    seen.add("a")
    seen.add("b")
    assert seen.dropped == 0 and seen.count == 2
    seen.add("c")
    assert "a" not in seen and "b" in seen and "c" in seen
    assert seen.dropped == 1
