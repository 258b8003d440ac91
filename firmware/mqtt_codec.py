"""MQTT 3.1.1 wire codec: packets <-> bytes, for the station's uplink (firmware/mqtt.py).

Follows OASIS *MQTT Version 3.1.1* (mqtt-v3.1.1-os, 29 October 2014); section numbers in
the comments are that document's. Only what a QoS 0/1 client needs is here: CONNECT,
PUBLISH, PUBACK, SUBSCRIBE, PINGREQ, DISCONNECT out; CONNACK, PUBLISH, PUBACK, SUBACK,
PINGRESP in. There is no I/O and no asyncio in this module, so it imports unchanged on
CPython, where tests/firmware/test_mqtt_codec.py checks it against the spec's goldens
on both interpreters.

Encoders write into a caller's preallocated buffer and return the new offset (the
steady-state path -- PUBLISH header, PUBACK -- allocates nothing), except CONNECT and
SUBSCRIBE, which are built once per connection and may allocate.

Decoders read a packet *body* (the bytes after the fixed header) that the caller has
already read into its receive buffer, and return offsets into it, not copies. Anything
the broker sends that breaks a rule of the spec raises ``MalformedPacket`` with a short
``reason`` naming the rule. ``MalformedPacket`` is an ``OSError``: the client's protocol
layer lets it propagate, and the resilience layer counts it and reconnects, as §4.8
asks ("the receiver MUST close the Network Connection" on a protocol violation).
"""

from drivers._compat import const

# Control packet types: high nibble of fixed-header byte 1 (§2.2.1, Table 2.1).
_CONNECT = const(1)  # client -> server: connection request (§3.1)
_CONNACK = const(2)  # server -> client: connect acknowledgment (§3.2)
_PUBLISH = const(3)  # both ways: application message (§3.3)
_PUBACK = const(4)  # both ways: QoS 1 publish acknowledgment (§3.4)
_PUBREC = const(5)  # both ways: QoS 2 part 1 (§3.5); never used by this client
_PUBREL = const(6)  # both ways: QoS 2 part 2 (§3.6); never used by this client
_PUBCOMP = const(7)  # both ways: QoS 2 part 3 (§3.7); never used by this client
_SUBSCRIBE = const(8)  # client -> server (§3.8)
_SUBACK = const(9)  # server -> client (§3.9)
_UNSUBSCRIBE = const(10)  # client -> server (§3.10)
_UNSUBACK = const(11)  # server -> client (§3.11)
_PINGREQ = const(12)  # client -> server (§3.12)
_PINGRESP = const(13)  # server -> client (§3.13)
_DISCONNECT = const(14)  # client -> server (§3.14)

_MAX_LENGTH = const(268435455)  # largest Remaining Length, 4 bytes FF FF FF 7F (§2.2.3)
_PROTOCOL_LEVEL = const(4)  # 3.1.1 is level 4 (§3.1.2.2)
_EPROTO = const(71)  # Linux errno "protocol error"; MicroPython's errno lacks the name

# CONNECT flags byte (§3.1.2.3, Figure 3.4).
_F_USERNAME = const(0x80)  # §3.1.2.8
_F_PASSWORD = const(0x40)  # §3.1.2.9
_F_WILL_RETAIN = const(0x20)  # §3.1.2.7
_F_WILL = const(0x04)  # §3.1.2.5; Will QoS sits in bits 4-3 (§3.1.2.6)
_F_CLEAN = const(0x02)  # §3.1.2.4

DUP_FLAG = const(0x08)  # PUBLISH fixed header bit 3: re-delivery (§3.3.1.1)

# Whole packets with no variable part.
PINGREQ_PACKET = b"\xc0\x00"  # §3.12
DISCONNECT_PACKET = b"\xe0\x00"  # §3.14

# Per packet type, what the fixed header may carry when the *server* sends it.
# Flags: the reserved low nibble each type must have (§2.2.2, Table 2.2); 0xFF marks a
# type a server never sends (reserved 0 and 15, and the client-to-server types).
# PUBLISH (index 3) has real flags and is checked on its own.
_SERVER_FLAGS = b"\xff\xff\x00\x00\x00\x00\x02\x00\xff\x00\xff\x00\xff\x00\xff\xff"
# Remaining Length each type must have (§3.2.1, §3.4.1, §3.5.1, §3.6.1, §3.7.1, §3.11.1,
# §3.13); 0xFE marks a variable length.
_SERVER_LENGTH = b"\xff\xff\x02\xfe\x02\x02\x02\x02\xff\xfe\xff\x02\xff\x00\xff\xff"

# CONNACK return codes (§3.2.2.3, Table 3.1), indexed by code.
CONNACK_REASONS = (
    "accepted",
    "unacceptable_protocol_version",
    "identifier_rejected",
    "server_unavailable",
    "bad_username_or_password",
    "not_authorized",
)


class MalformedPacket(OSError):
    """The broker sent bytes that are not a valid MQTT 3.1.1 packet for a client.

    ``reason`` names the rule broken (e.g. ``"length_too_long"``, ``"bad_flags"``).
    """

    def __init__(self, reason):
        super().__init__(_EPROTO, reason)
        self.reason = reason


class ConnectRefused(OSError):
    """CONNACK carried a non-zero return code; ``code`` and ``reason`` per §3.2.2.3."""

    def __init__(self, code):
        reason = CONNACK_REASONS[code] if 0 <= code < len(CONNACK_REASONS) else "unknown"
        super().__init__(_EPROTO, "connect refused: " + reason)
        self.code = code
        self.reason = reason


# ----------------------------------------------------------- Remaining Length (§2.2.3)


def length_size(n):
    """How many bytes the Remaining Length ``n`` takes on the wire (1..4)."""
    if n < 0 or n > _MAX_LENGTH:
        raise ValueError("remaining length out of range")
    if n < 0x80:
        return 1
    if n < 0x4000:
        return 2
    if n < 0x200000:
        return 3
    return 4


def encode_length(buf, off, n):
    """Write Remaining Length ``n`` at ``buf[off]``; return the offset after it.

    Seven bits per byte, least significant group first, bit 7 set on every byte but
    the last (§2.2.3): 321 -> C1 02.
    """
    if n < 0 or n > _MAX_LENGTH:
        raise ValueError("remaining length out of range")
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            buf[off] = b | 0x80
            off += 1
        else:
            buf[off] = b
            return off + 1


def decode_length(buf, off, end):
    """Read a Remaining Length from ``buf[off:end]``.

    Returns ``(value, next_offset)``, or ``(-1, off)`` when the bytes so far are a valid
    but incomplete prefix (the caller reads one more byte and calls again). Raises
    ``MalformedPacket("length_too_long")`` when a fourth byte still has its continuation
    bit set: the field is at most four bytes (§2.2.3).
    """
    value = 0
    shift = 0
    i = off
    while i < end:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift >= 28:
            raise MalformedPacket("length_too_long")
    return -1, off


# ------------------------------------------------------------ UTF-8 strings (§1.5.3)


def utf8_valid(buf, start, end):
    """True if ``buf[start:end]`` is well-formed UTF-8 as §1.5.3 requires.

    Rejects overlong forms, UTF-16 surrogates (U+D800..U+DFFF), code points above
    U+10FFFF and U+0000 (§1.5.3 [MQTT-1.5.3-1], [MQTT-1.5.3-2]). A loop over bytes, so
    checking a received topic allocates nothing.
    """
    i = start
    while i < end:
        b = buf[i]
        if b < 0x80:
            if b == 0:
                return False
            i += 1
            continue
        if 0xC2 <= b <= 0xDF:
            n = 1
            lo = 0x80
            hi = 0xBF
        elif 0xE0 <= b <= 0xEF:
            n = 2
            lo = 0xA0 if b == 0xE0 else 0x80  # E0 80..9F would be overlong
            hi = 0x9F if b == 0xED else 0xBF  # ED A0..BF would be a surrogate
        elif 0xF0 <= b <= 0xF4:
            n = 3
            lo = 0x90 if b == 0xF0 else 0x80  # F0 80..8F would be overlong
            hi = 0x8F if b == 0xF4 else 0xBF  # F4 90.. would exceed U+10FFFF
        else:
            return False
        if i + n >= end:  # fewer than n continuation bytes left
            return False
        c = buf[i + 1]
        if c < lo or c > hi:
            return False
        for k in range(i + 2, i + n + 1):
            if buf[k] & 0xC0 != 0x80:
                return False
        i += n + 1
    return True


def _as_bytes(s):
    if isinstance(s, str):
        return s.encode()
    return s


def encode_string(buf, off, s):
    """Write a UTF-8 string (§1.5.3): two length bytes, MSB first, then the bytes.

    ``s`` is bytes (preferred: no allocation) or str. Returns the offset after it.
    """
    s = _as_bytes(s)
    n = len(s)
    if n > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    buf[off] = n >> 8
    buf[off + 1] = n & 0xFF
    off += 2
    buf[off : off + n] = s
    return off + n


def _check_topic_name(topic):
    # A Topic Name in PUBLISH must not be empty nor contain wildcards (§3.3.2.1, §4.7.3).
    if not topic:
        raise ValueError("empty topic")
    for b in topic:
        if b == 0x23 or b == 0x2B or b == 0:  # '#', '+', U+0000
            raise ValueError("wildcard or NUL in topic name")


# ------------------------------------------------------------------- outgoing packets


def connect_packet(
    client_id,
    keepalive_s,
    clean_session=False,
    will_topic=None,
    will_payload=None,
    will_qos=1,
    will_retain=True,
    username=None,
    password=None,
):
    """A complete CONNECT packet (§3.1) as a new bytearray (built once per connection)."""
    client_id = _as_bytes(client_id)
    if not client_id and not clean_session:
        # §3.1.3.1 [MQTT-3.1.3-7]: a zero-byte ClientId needs CleanSession=1.
        raise ValueError("a persistent session needs a client id")
    if not 0 <= keepalive_s <= 0xFFFF:
        raise ValueError("keepalive out of range")
    if password is not None and username is None:
        raise ValueError("password without username")  # §3.1.2.9 [MQTT-3.1.2-22]
    flags = _F_CLEAN if clean_session else 0
    rl = 10 + 2 + len(client_id)  # variable header is 10 bytes (§3.1.2)
    if will_topic is not None:
        will_topic = _as_bytes(will_topic)
        will_payload = _as_bytes(will_payload or b"")
        if will_qos not in (0, 1, 2):
            raise ValueError("will qos")
        flags |= _F_WILL | (will_qos << 3) | (_F_WILL_RETAIN if will_retain else 0)
        rl += 4 + len(will_topic) + len(will_payload)
    if username is not None:
        username = _as_bytes(username)
        flags |= _F_USERNAME
        rl += 2 + len(username)
    if password is not None:
        password = _as_bytes(password)
        flags |= _F_PASSWORD
        rl += 2 + len(password)
    buf = bytearray(1 + length_size(rl) + rl)
    buf[0] = _CONNECT << 4
    off = encode_length(buf, 1, rl)
    off = encode_string(buf, off, b"MQTT")  # protocol name (§3.1.2.1)
    buf[off] = _PROTOCOL_LEVEL
    buf[off + 1] = flags
    buf[off + 2] = keepalive_s >> 8  # Keep Alive, seconds, MSB first (§3.1.2.10)
    buf[off + 3] = keepalive_s & 0xFF
    off = encode_string(buf, off + 4, client_id)  # payload order is fixed (§3.1.3)
    if will_topic is not None:
        off = encode_string(buf, off, will_topic)
        off = encode_string(buf, off, will_payload)
    if username is not None:
        off = encode_string(buf, off, username)
    if password is not None:
        off = encode_string(buf, off, password)
    return buf


def publish_header_size(topic_len, payload_len, qos):
    """Bytes a PUBLISH fixed + variable header needs (the payload follows it)."""
    rl = 2 + topic_len + (2 if qos else 0) + payload_len
    return 1 + length_size(rl) + 2 + topic_len + (2 if qos else 0)


def publish_header(buf, topic, payload_len, qos=1, retain=False, dup=False, pid=0):
    """Write a PUBLISH fixed header + topic + packet id into ``buf``; return its length.

    The payload is not copied: the caller sends it right after these bytes. ``topic`` is
    bytes (str is accepted but allocates). Packet id only for QoS > 0 (§3.3.2.2), and
    then it must be non-zero (§2.3.1).
    """
    topic = _as_bytes(topic)
    _check_topic_name(topic)
    if qos not in (0, 1):
        raise ValueError("qos must be 0 or 1")
    if qos and not 0 < pid <= 0xFFFF:
        raise ValueError("packet id must be 1..65535")
    n = len(topic)
    rl = 2 + n + (2 if qos else 0) + payload_len
    if 1 + length_size(rl) + rl - payload_len > len(buf):
        raise ValueError("publish header buffer too small for topic")
    b0 = (_PUBLISH << 4) | (qos << 1)
    if retain:
        b0 |= 0x01  # RETAIN (§3.3.1.3)
    if dup:
        b0 |= DUP_FLAG
    buf[0] = b0
    off = encode_length(buf, 1, rl)
    off = encode_string(buf, off, topic)
    if qos:
        buf[off] = pid >> 8
        buf[off + 1] = pid & 0xFF
        off += 2
    return off


def set_dup(buf):
    """Mark an already written PUBLISH header as a re-delivery (§3.3.1.1)."""
    buf[0] |= DUP_FLAG


def puback_into(buf, pid):
    """Write PUBACK for ``pid`` (§3.4) into ``buf[0:4]``; return 4."""
    buf[0] = _PUBACK << 4
    buf[1] = 2
    buf[2] = pid >> 8
    buf[3] = pid & 0xFF
    return 4


def subscribe_packet(pid, topic_filter, qos=1):
    """A SUBSCRIBE packet for one topic filter (§3.8) as a new bytearray."""
    topic_filter = _as_bytes(topic_filter)
    if not topic_filter:
        raise ValueError("empty topic filter")  # §4.7.3
    if qos not in (0, 1, 2) or not 0 < pid <= 0xFFFF:
        raise ValueError("bad qos or packet id")
    rl = 2 + 2 + len(topic_filter) + 1
    buf = bytearray(1 + length_size(rl) + rl)
    buf[0] = (_SUBSCRIBE << 4) | 0x02  # reserved flags 0010 (§3.8.1)
    off = encode_length(buf, 1, rl)
    buf[off] = pid >> 8
    buf[off + 1] = pid & 0xFF
    off = encode_string(buf, off + 2, topic_filter)
    buf[off] = qos  # Requested QoS (§3.8.3.1)
    return buf


# ------------------------------------------------------------------- incoming packets


def check_fixed_header(b0, n):
    """Validate a fixed header received from the server; return the packet type.

    ``b0`` is byte 1, ``n`` the decoded Remaining Length. Rejects reserved and
    client-to-server types, wrong reserved flags (§2.2.2) and wrong fixed lengths.
    """
    ptype = b0 >> 4
    flags = b0 & 0x0F
    if ptype == _PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MalformedPacket("publish_qos3")  # §3.3.1.2 [MQTT-3.3.1-4]
        if n < (4 if qos else 2):
            raise MalformedPacket("publish_too_short")
        return ptype
    want = _SERVER_FLAGS[ptype]
    if want == 0xFF:
        raise MalformedPacket("unexpected_type")
    if flags != want:
        raise MalformedPacket("bad_flags")  # §2.2.2 [MQTT-2.2.2-2]
    size = _SERVER_LENGTH[ptype]
    if size == 0xFE:  # SUBACK: packet id + at least one return code (§3.9)
        if n < 3:
            raise MalformedPacket("bad_length")
    elif n != size:
        raise MalformedPacket("bad_length")
    return ptype


def parse_connack(buf):
    """CONNACK body (2 bytes, §3.2.2) -> ``(session_present, return_code)``."""
    ack_flags = buf[0]
    rc = buf[1]
    if ack_flags & 0xFE:
        raise MalformedPacket("connack_flags")  # §3.2.2.1: bits 7-1 reserved, 0
    if rc >= len(CONNACK_REASONS):
        raise MalformedPacket("connack_return_code")  # §3.2.2.3
    if rc and ack_flags:
        raise MalformedPacket("connack_session_present")  # §3.2.2.2 [MQTT-3.2.2-4]
    return ack_flags & 1, rc


def parse_packet_id(buf, off=0):
    """A non-zero Packet Identifier at ``buf[off]`` (§2.3.1)."""
    pid = (buf[off] << 8) | buf[off + 1]
    if pid == 0:
        raise MalformedPacket("zero_packet_id")  # §2.3.1 [MQTT-2.3.1-1]
    return pid


def parse_suback(buf, n):
    """SUBACK body (§3.9) -> ``(pid, failures)``: how many filters the broker refused."""
    pid = parse_packet_id(buf)
    failures = 0
    for i in range(2, n):
        rc = buf[i]
        if rc == 0x80:
            failures += 1
        elif rc > 2:
            raise MalformedPacket("suback_return_code")  # §3.9.3
    return pid, failures


def parse_publish(b0, buf, n):
    """PUBLISH body (§3.3) -> ``(topic_end, pid, payload_start)``.

    The topic is ``buf[2:topic_end]`` and the payload ``buf[payload_start:n]``: offsets
    into the caller's receive buffer, not copies. ``pid`` is 0 for QoS 0. ``n`` may be
    shorter than the packet (a truncated oversize message); the header must fit.
    """
    qos = (b0 >> 1) & 3
    if n < 2:
        raise MalformedPacket("publish_too_short")
    topic_end = 2 + ((buf[0] << 8) | buf[1])
    if topic_end == 2:
        raise MalformedPacket("empty_topic")  # §4.7.3 [MQTT-4.7.3-1]
    payload_start = topic_end + (2 if qos else 0)
    if payload_start > n:
        raise MalformedPacket("topic_length")
    if not utf8_valid(buf, 2, topic_end):
        raise MalformedPacket("topic_utf8")  # §1.5.3 [MQTT-1.5.3-1]
    for i in range(2, topic_end):
        b = buf[i]
        if b == 0x23 or b == 0x2B:
            raise MalformedPacket("topic_wildcard")  # §3.3.2.1 [MQTT-3.3.2-2]
    pid = parse_packet_id(buf, topic_end) if qos else 0
    return topic_end, pid, payload_start
