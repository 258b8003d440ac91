"""Property tests of the MQTT 3.1.1 codec (firmware/mqtt_codec.py), CPython + hypothesis.

The spec goldens live in test_mqtt_codec.py (shared with MicroPython); these check the
codec over the whole input space: round trips, and that no byte sequence from a broker
can make the decoders fail with anything but the named ``MalformedPacket``.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.mqtt_codec import (
    MalformedPacket,
    check_fixed_header,
    decode_length,
    encode_length,
    length_size,
    parse_connack,
    parse_packet_id,
    parse_publish,
    parse_suback,
    publish_header,
    publish_header_size,
    utf8_valid,
)

topic_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00#+"),
    min_size=1,
    max_size=60,
).filter(lambda t: len(t.encode()) <= 120)


@given(st.integers(0, 268435455))
def test_remaining_length_round_trip(n: int) -> None:
    buf = bytearray(5)
    end = encode_length(buf, 0, n)
    assert end == length_size(n)
    assert decode_length(buf, 0, end) == (n, end)
    # Every proper prefix is "incomplete", never a wrong value.
    for k in range(end):
        assert decode_length(buf, 0, k) == (-1, 0)


@given(
    topic=topic_text,
    payload=st.binary(max_size=400),
    qos=st.sampled_from([0, 1]),
    retain=st.booleans(),
    dup=st.booleans(),
    pid=st.integers(1, 0xFFFF),
)
def test_publish_round_trip(
    topic: str, payload: bytes, qos: int, retain: bool, dup: bool, pid: int
) -> None:
    t = topic.encode()
    hdr = bytearray(publish_header_size(len(t), len(payload), qos))
    n = publish_header(hdr, t, len(payload), qos, retain, dup and qos > 0, pid)
    assert n == len(hdr)
    pkt = bytes(hdr) + payload
    rl, off = decode_length(pkt, 1, len(pkt))
    assert rl == len(pkt) - off
    assert check_fixed_header(pkt[0], rl) == 3
    body = pkt[off:]
    topic_end, got_pid, start = parse_publish(pkt[0], body, rl)
    assert body[2:topic_end] == t
    assert body[start:] == payload
    assert got_pid == (pid if qos else 0)
    assert bool(pkt[0] & 1) == retain


def _parse_stream(data: bytes) -> None:
    """What the client's reader does with bytes from the broker, packet after packet."""
    i = 0
    while i < len(data):
        b0 = data[i]
        n, off = decode_length(data, i + 1, min(len(data), i + 5))
        if n < 0 or off + n > len(data):
            return  # incomplete: the reader would wait for more bytes
        ptype = check_fixed_header(b0, n)
        body = data[off : off + n]
        if ptype == 2:
            parse_connack(body)
        elif ptype == 3:
            parse_publish(b0, body, n)
        elif ptype in (4, 5, 6, 7, 11):
            parse_packet_id(body)
        elif ptype == 9:
            parse_suback(body, n)
        i = off + n


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_broker_garbage_only_ever_raises_malformed_packet(data: bytes) -> None:
    try:
        _parse_stream(data)
    except MalformedPacket as e:
        assert e.reason and isinstance(e, OSError)


@given(st.binary(max_size=16))
def test_utf8_check_agrees_with_the_strict_decoder(data: bytes) -> None:
    try:
        text = data.decode("utf-8", errors="strict")
        expected = "\x00" not in text
    except UnicodeDecodeError:
        expected = False
    assert utf8_valid(data, 0, len(data)) == expected


@given(topic_text)
def test_utf8_check_accepts_every_valid_topic(topic: str) -> None:
    t = topic.encode()
    assert utf8_valid(t, 0, len(t))
