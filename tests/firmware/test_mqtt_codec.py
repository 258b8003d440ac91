"""MQTT 3.1.1 codec goldens (firmware/mqtt_codec.py), on CPython and on MicroPython.

Written in the MicroPython subset with plain asserts: pytest runs it here and
tests/mp/runner.py runs it unchanged on the real ``micropython`` binary. Golden bytes
come from the examples and tables of OASIS MQTT 3.1.1 (section numbers in the names).
"""

from binascii import unhexlify

from firmware.mqtt_codec import (
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    ConnectRefused,
    MalformedPacket,
    check_fixed_header,
    connect_packet,
    decode_length,
    encode_length,
    length_size,
    parse_connack,
    parse_publish,
    parse_suback,
    puback_into,
    publish_header,
    publish_header_size,
    set_dup,
    subscribe_packet,
    utf8_valid,
)

RUNS_ON_MICROPYTHON = True


def h(s):
    return unhexlify(s.replace(" ", ""))


def malformed(fn, *args):
    """Call fn(*args); return the MalformedPacket reason it raised (fail if none)."""
    try:
        fn(*args)
    except MalformedPacket as e:
        assert isinstance(e, OSError)  # the protocol layer's one exception type
        return e.reason
    raise AssertionError("no MalformedPacket")


def raises_value_error(fn, *args):
    try:
        fn(*args)
    except ValueError:
        return True
    return False


# Table 2.4 "Size of Remaining Length field" (§2.2.3), plus the 321 example.
LENGTH_GOLDENS = (
    (0, "00"),
    (127, "7F"),
    (128, "80 01"),
    (321, "C1 02"),
    (16383, "FF 7F"),
    (16384, "80 80 01"),
    (2097151, "FF FF 7F"),
    (2097152, "80 80 80 01"),
    (268435455, "FF FF FF 7F"),
)


def test_remaining_length_encode_table_2_4():
    for value, wire in LENGTH_GOLDENS:
        buf = bytearray(6)
        end = encode_length(buf, 1, value)
        assert bytes(buf[1:end]) == h(wire), value
        assert length_size(value) == end - 1


def test_remaining_length_decode_table_2_4():
    for value, wire in LENGTH_GOLDENS:
        raw = b"\x30" + h(wire) + b"\xaa"
        assert decode_length(raw, 1, len(raw)) == (value, 1 + len(h(wire)))


def test_remaining_length_incomplete_prefix_asks_for_more():
    raw = h("80 80")
    assert decode_length(raw, 0, 2) == (-1, 0)
    assert decode_length(raw, 0, 0) == (-1, 0)


def test_remaining_length_longer_than_four_bytes_is_malformed():
    assert malformed(decode_length, h("FF FF FF FF 01"), 0, 5) == "length_too_long"
    assert malformed(decode_length, h("80 80 80 80"), 0, 4) == "length_too_long"


def test_remaining_length_out_of_range_is_refused():
    assert raises_value_error(encode_length, bytearray(8), 0, 268435456)
    assert raises_value_error(encode_length, bytearray(8), 0, -1)


def test_connect_minimal_3_1():
    # "MQTT", level 4, flags 02 (CleanSession), keepalive 60, client id "abc".
    pkt = connect_packet("abc", 60, clean_session=True)
    assert bytes(pkt) == h("10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 61 62 63")


def test_connect_persistent_with_retained_qos1_will_and_credentials_3_1_2_3():
    pkt = connect_packet(
        b"st",
        30,
        clean_session=False,
        will_topic=b"w",
        will_payload=b"x",
        will_qos=1,
        will_retain=True,
        username=b"u",
        password=b"p",
    )
    # flags EC = user 80 | password 40 | will retain 20 | will QoS 1 08 | will 04
    assert bytes(pkt) == h(
        "10 1A 00 04 4D 51 54 54 04 EC 00 1E 00 02 73 74 00 01 77 00 01 78 00 01 75 00 01 70"
    )


def test_connect_rules():
    assert raises_value_error(connect_packet, b"", 60)  # §3.1.3.1: id needed, CleanSession=0
    assert raises_value_error(connect_packet, b"x", 70000)
    assert not raises_value_error(connect_packet, b"", 60, True)


def test_publish_header_qos1_3_3():
    buf = bytearray(32)
    n = publish_header(buf, b"a/b", 3, 1, False, False, 10)
    assert bytes(buf[:n]) == h("32 0A 00 03 61 2F 62 00 0A")
    assert n == publish_header_size(3, 3, 1)
    set_dup(buf)
    assert buf[0] == 0x3A


def test_publish_header_qos0_retained_has_no_packet_id():
    buf = bytearray(32)
    n = publish_header(buf, "s/t", 2, 0, True)
    assert bytes(buf[:n]) == h("31 07 00 03 73 2F 74")


def test_publish_header_long_payload_takes_three_length_bytes():
    buf = bytearray(32)
    n = publish_header(buf, b"t", 17000, 1, False, False, 1)
    # rl = 2 + 1 + 2 + 17000 = 17005 = 0x426D -> ED 84 01
    assert bytes(buf[:n]) == h("32 ED 84 01 00 01 74 00 01")


def test_publish_header_rejects_caller_errors():
    buf = bytearray(16)
    assert raises_value_error(publish_header, buf, b"a/+", 1, 1, False, False, 1)
    assert raises_value_error(publish_header, buf, b"a/#", 1, 1, False, False, 1)
    assert raises_value_error(publish_header, buf, b"", 1, 1, False, False, 1)
    assert raises_value_error(publish_header, buf, b"t", 1, 1, False, False, 0)
    assert raises_value_error(publish_header, buf, b"t", 1, 2, False, False, 1)
    assert raises_value_error(publish_header, buf, b"x" * 20, 1, 1, False, False, 1)


def test_puback_subscribe_ping_disconnect():
    buf = bytearray(4)
    assert puback_into(buf, 10) == 4
    assert bytes(buf) == h("40 02 00 0A")
    assert bytes(subscribe_packet(1, b"a/b", 1)) == h("82 08 00 01 00 03 61 2F 62 01")
    assert h("C0 00") == PINGREQ_PACKET
    assert h("E0 00") == DISCONNECT_PACKET


def test_fixed_header_checks_2_2():
    assert check_fixed_header(0x20, 2) == 2  # CONNACK
    assert check_fixed_header(0x40, 2) == 4  # PUBACK
    assert check_fixed_header(0x62, 2) == 6  # PUBREL carries flags 0010
    assert check_fixed_header(0x90, 3) == 9  # SUBACK
    assert check_fixed_header(0xD0, 0) == 13  # PINGRESP
    assert check_fixed_header(0x3B, 7) == 3  # PUBLISH DUP QoS1 RETAIN
    assert malformed(check_fixed_header, 0x21, 2) == "bad_flags"
    assert malformed(check_fixed_header, 0x60, 2) == "bad_flags"
    assert malformed(check_fixed_header, 0x00, 0) == "unexpected_type"
    assert malformed(check_fixed_header, 0xF0, 0) == "unexpected_type"
    assert malformed(check_fixed_header, 0x10, 12) == "unexpected_type"  # CONNECT
    assert malformed(check_fixed_header, 0xC0, 0) == "unexpected_type"  # PINGREQ
    assert malformed(check_fixed_header, 0xD0, 1) == "bad_length"
    assert malformed(check_fixed_header, 0x20, 3) == "bad_length"
    assert malformed(check_fixed_header, 0x90, 2) == "bad_length"
    assert malformed(check_fixed_header, 0x36, 9) == "publish_qos3"
    assert malformed(check_fixed_header, 0x32, 3) == "publish_too_short"


def test_connack_3_2():
    assert parse_connack(h("00 00")) == (0, 0)
    assert parse_connack(h("01 00")) == (1, 0)
    assert parse_connack(h("00 05")) == (0, 5)
    assert malformed(parse_connack, h("02 00")) == "connack_flags"
    assert malformed(parse_connack, h("00 06")) == "connack_return_code"
    assert malformed(parse_connack, h("01 05")) == "connack_session_present"
    e = ConnectRefused(5)
    assert isinstance(e, OSError) and e.reason == "not_authorized" and e.code == 5


def test_parse_publish_3_3():
    body = h("00 03 61 2F 62 00 0A 68 69")
    assert parse_publish(0x32, body, len(body)) == (5, 10, 7)
    body0 = h("00 03 61 2F 62 68 69")
    assert parse_publish(0x30, body0, len(body0)) == (5, 0, 5)
    assert malformed(parse_publish, 0x32, h("00 03 61 2F 62 00 00"), 7) == "zero_packet_id"
    assert malformed(parse_publish, 0x30, h("00 09 61 2F 62"), 5) == "topic_length"
    assert malformed(parse_publish, 0x30, h("00 00 61"), 3) == "empty_topic"
    assert malformed(parse_publish, 0x30, h("00 02 FF FE"), 4) == "topic_utf8"
    assert malformed(parse_publish, 0x30, h("00 03 61 2F 23"), 5) == "topic_wildcard"


def test_parse_suback_3_9():
    assert parse_suback(h("00 01 01"), 3) == (1, 0)
    assert parse_suback(h("00 02 00 80"), 4) == (2, 1)
    assert malformed(parse_suback, h("00 01 03"), 3) == "suback_return_code"
    assert malformed(parse_suback, h("00 00 01"), 3) == "zero_packet_id"


def test_utf8_rules_1_5_3():
    good = (h("41 F0 AA 9B 94"), "蓝天".encode(), b"lantian/v1/station/x/cmd")
    for s in good:  # first: the §1.5.3.1 example "A" + U+2A6D4
        assert utf8_valid(s, 0, len(s)), s
    bad = (
        h("C0 AF"),  # overlong '/'
        h("E0 80 AF"),  # overlong
        h("ED A0 80"),  # surrogate U+D800 [MQTT-1.5.3-1]
        h("F4 90 80 80"),  # above U+10FFFF
        h("E6 B0"),  # truncated
        h("80"),  # lone continuation byte
        h("61 00 62"),  # U+0000 [MQTT-1.5.3-2]
        h("FF"),
    )
    for s in bad:
        assert not utf8_valid(s, 0, len(s)), s
