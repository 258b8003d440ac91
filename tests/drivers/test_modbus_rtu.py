"""RTU builders, response parser and timing (Modbus over Serial Line V1.02, Modbus
Application Protocol V1.1b3). Goldens cross-checked with pymodbus 3.16.1 in
test_modbus_props.py; 11 03 00 6B 00 03 is the spec's own FC03 example (§6.3).
"""

from drivers.modbus import (
    ACKNOWLEDGE,
    BAD_LENGTH,
    CRC_ERROR,
    EXCEPTION,
    ILLEGAL_DATA_ADDRESS,
    ILLEGAL_DATA_VALUE,
    ILLEGAL_FUNCTION,
    OK,
    SERVER_DEVICE_BUSY,
    SERVER_DEVICE_FAILURE,
    TIMEOUT,
    TRUNCATED,
    WRONG_ADDRESS,
    WRONG_FUNCTION,
    ModbusError,
    Response,
    build_read,
    build_write_multiple,
    build_write_single,
    char_time_us,
    exception_name,
    expected_response_length,
    frame_gap_us,
    inter_char_timeout_us,
    parse_response,
    status_name,
    wire_time_us,
)
from tests.drivers.fakelink import raises, with_crc

RUNS_ON_MICROPYTHON = True

READ_10_FROM_0 = bytes.fromhex("01 03 00 00 00 0A C5 CD")
SPEC_FC03_REQUEST = bytes.fromhex("11 03 00 6B 00 03 76 87")
SPEC_FC03_RESPONSE = bytes.fromhex("11 03 06 AE 41 56 52 43 40 49 AD")
FC04_RESPONSE = bytes.fromhex("11 04 04 12 34 AB CD 10 56")
FC06_REQUEST = bytes.fromhex("01 06 00 01 00 03 98 0B")  # response is the echo
FC16_REQUEST = bytes.fromhex("01 10 00 01 00 02 04 00 0A 01 02 92 30")
FC16_RESPONSE = bytes.fromhex("01 10 00 01 00 02 10 08")
EXCEPTION_02 = bytes.fromhex("01 83 02 C0 F1")


def _build(fn, *args):
    buf = bytearray(260)
    n = fn(buf, *args)
    return bytes(buf[:n])


def _parse(frame, address, function, start, count, value=-1):
    resp = Response()
    status = parse_response(resp, frame, len(frame), address, function, start, count, value)
    assert status == resp.status
    return resp


# --- builders ---


def test_build_read_golden():
    assert _build(build_read, 1, 3, 0, 10) == READ_10_FROM_0
    assert _build(build_read, 0x11, 3, 0x6B, 3) == SPEC_FC03_REQUEST


def test_build_read_input_registers():
    frame = _build(build_read, 1, 4, 0, 1)
    assert frame[:6] == bytes.fromhex("010400000001")
    assert len(frame) == 8


def test_build_write_single_golden():
    assert _build(build_write_single, 1, 1, 3) == FC06_REQUEST


def test_build_write_multiple_golden():
    assert _build(build_write_multiple, 1, 1, [10, 258]) == FC16_REQUEST


def test_build_write_multiple_with_count_takes_a_prefix():
    assert _build(build_write_multiple, 1, 1, [10, 258, 7, 7], 2) == FC16_REQUEST


def test_build_into_a_memoryview():
    buf = memoryview(bytearray(16))
    assert build_read(buf, 1, 3, 0, 10) == 8
    assert bytes(buf[:8]) == READ_10_FROM_0


def test_broadcast_allowed_for_writes_only():
    assert _build(build_write_single, 0, 1, 3)[:2] == b"\x00\x06"
    assert _build(build_write_multiple, 0, 1, [1])[:2] == b"\x00\x10"
    assert raises(ValueError, build_read, bytearray(8), 0, 3, 0, 1)


def test_builders_reject_programming_errors():
    buf = bytearray(260)
    assert raises(ValueError, build_read, buf, 248, 3, 0, 1)
    assert raises(ValueError, build_read, buf, 1, 5, 0, 1)
    assert raises(ValueError, build_read, buf, 1, 3, 0, 0)
    assert raises(ValueError, build_read, buf, 1, 3, 0, 126)
    assert raises(ValueError, build_read, buf, 1, 3, -1, 1)
    assert raises(ValueError, build_read, buf, 1, 3, 0xFFFF, 2)
    assert raises(ValueError, build_read, bytearray(7), 1, 3, 0, 1)
    assert raises(ValueError, build_write_single, buf, 1, 0, 0x10000)
    assert raises(ValueError, build_write_single, buf, 1, 0, -1)
    assert raises(ValueError, build_write_single, buf, 1, 0x10000, 0)
    assert raises(ValueError, build_write_single, buf, 248, 0, 0)
    assert raises(ValueError, build_write_multiple, buf, 1, 0, [])
    assert raises(ValueError, build_write_multiple, buf, 1, 0, [0] * 124)
    assert raises(ValueError, build_write_multiple, buf, 1, 0, [0x10000])
    assert raises(ValueError, build_write_multiple, buf, 1, 0xFFFF, [1, 2])
    assert raises(ValueError, build_write_multiple, buf, 1, 0, [1], 2)
    assert raises(ValueError, build_write_multiple, bytearray(10), 1, 0, [1, 2])


def test_limits_are_accepted():
    assert len(_build(build_read, 247, 4, 0xFFFF - 124, 125)) == 8
    assert len(_build(build_write_multiple, 1, 0, [0xFFFF] * 123)) == 9 + 246
    assert len(_build(build_read, 1, 3, 0xFFFF, 1)) == 8


def test_expected_response_length():
    assert expected_response_length(3, 10) == 25
    assert expected_response_length(4, 2) == 9
    assert expected_response_length(4, 125) == 255
    assert expected_response_length(6, 1) == 8
    assert expected_response_length(16, 123) == 8
    assert raises(ValueError, expected_response_length, 3, 0)
    assert raises(ValueError, expected_response_length, 3, 126)
    assert raises(ValueError, expected_response_length, 16, 124)
    assert raises(ValueError, expected_response_length, 5, 1)


# --- parser: every status ---


def test_parse_fc03_golden():
    r = _parse(SPEC_FC03_RESPONSE, 0x11, 3, 0x6B, 3)
    assert r.status == OK and r.ok
    assert r.values() == [0xAE41, 0x5652, 0x4340]
    assert r.registers[0] == 0xAE41
    assert r.resync_skipped == 0
    assert (r.address, r.function, r.start, r.count) == (0x11, 3, 0x6B, 3)


def test_parse_fc04_golden():
    r = _parse(FC04_RESPONSE, 0x11, 4, 0, 2)
    assert r.status == OK
    assert r.values() == [0x1234, 0xABCD]


def test_parse_fc06_echo():
    r = _parse(FC06_REQUEST, 1, 6, 1, 1, 3)
    assert r.status == OK
    assert r.registers[0] == 3
    assert _parse(FC06_REQUEST, 1, 6, 1, 1).status == OK  # value not checked


def test_parse_fc06_echo_mismatch_is_bad_length():
    assert _parse(FC06_REQUEST, 1, 6, 1, 1, 4).status == BAD_LENGTH
    assert _parse(FC06_REQUEST, 1, 6, 2, 1, 3).status == BAD_LENGTH


def test_parse_fc16_response():
    assert _parse(FC16_RESPONSE, 1, 16, 1, 2).status == OK
    assert _parse(FC16_RESPONSE, 1, 16, 1, 3).status == BAD_LENGTH
    assert _parse(FC16_RESPONSE, 1, 16, 0, 2).status == BAD_LENGTH


def test_parse_exception_golden():
    r = _parse(EXCEPTION_02, 1, 3, 0, 10)
    assert r.status == EXCEPTION
    assert r.exception_code == ILLEGAL_DATA_ADDRESS
    assert not r.ok


def test_parse_exception_busy_for_fc04():
    r = _parse(with_crc(b"\x05\x84\x06"), 5, 4, 0, 2)
    assert r.status == EXCEPTION
    assert r.exception_code == SERVER_DEVICE_BUSY


def test_parse_nothing_is_timeout():
    assert _parse(b"", 1, 3, 0, 2).status == TIMEOUT
    r = Response()
    assert parse_response(r, bytearray(10), 0, 1, 3, 0, 2) == TIMEOUT


def test_parse_bit_flip_is_crc_error():
    frame = bytearray(FC04_RESPONSE)
    frame[4] ^= 0x10
    assert _parse(frame, 0x11, 4, 0, 2).status == CRC_ERROR
    frame = bytearray(FC04_RESPONSE)
    frame[-1] ^= 0x01
    assert _parse(frame, 0x11, 4, 0, 2).status == CRC_ERROR


def test_parse_partial_frame_is_truncated():
    for n in range(1, len(FC04_RESPONSE)):
        assert _parse(FC04_RESPONSE[:n], 0x11, 4, 0, 2).status == TRUNCATED
    assert _parse(EXCEPTION_02[:4], 1, 3, 0, 10).status == TRUNCATED


def test_parse_frame_from_another_server_is_wrong_address():
    frame = with_crc(b"\x12\x04\x04\x12\x34\xab\xcd")
    assert _parse(frame, 0x11, 4, 0, 2).status == WRONG_ADDRESS
    # also after a stray byte
    assert _parse(b"\x00" + frame, 0x11, 4, 0, 2).status == WRONG_ADDRESS


def test_parse_other_function_is_wrong_function():
    frame = with_crc(b"\x11\x03\x04\x12\x34\xab\xcd")
    assert _parse(frame, 0x11, 4, 0, 2).status == WRONG_FUNCTION
    assert _parse(FC16_RESPONSE, 1, 6, 1, 1).status == WRONG_FUNCTION


def test_parse_byte_count_mismatch_is_bad_length():
    one_register = with_crc(b"\x11\x04\x02\x12\x34")
    assert _parse(one_register, 0x11, 4, 0, 2).status == BAD_LENGTH
    three_registers = with_crc(b"\x11\x04\x06\x12\x34\xab\xcd\x00\x01")
    assert _parse(three_registers, 0x11, 4, 0, 2).status == BAD_LENGTH


def test_parse_resyncs_past_a_leading_zero():
    r = _parse(b"\x00" + FC04_RESPONSE, 0x11, 4, 0, 2)
    assert r.status == OK
    assert r.resync_skipped == 1
    assert r.values() == [0x1234, 0xABCD]


def test_parse_resyncs_past_several_garbage_bytes():
    garbage = b"\xff\x00\x11\x99\xfe"  # includes our address byte as a false start
    r = _parse(garbage + SPEC_FC03_RESPONSE, 0x11, 3, 0x6B, 3)
    assert r.status == OK
    assert r.resync_skipped == len(garbage)
    assert r.values() == [0xAE41, 0x5652, 0x4340]


def test_parse_resyncs_to_an_exception_frame():
    r = _parse(b"\x00\x00" + EXCEPTION_02, 1, 3, 0, 10)
    assert r.status == EXCEPTION
    assert r.exception_code == 2
    assert r.resync_skipped == 2


def test_parse_garbage_then_partial_frame_is_truncated():
    assert _parse(b"\x00" + FC04_RESPONSE[:-1], 0x11, 4, 0, 2).status == TRUNCATED


def test_parse_ignores_trailing_bytes_and_clamps_n():
    r = Response()
    buf = bytearray(FC04_RESPONSE + b"\x00\x00\x00")
    assert parse_response(r, buf, len(buf), 0x11, 4, 0, 2) == OK
    assert parse_response(r, buf, 1000, 0x11, 4, 0, 2) == OK
    assert parse_response(r, buf, -3, 0x11, 4, 0, 2) == TIMEOUT


def test_parse_reuses_the_response():
    r = Response()
    assert parse_response(r, EXCEPTION_02, 5, 1, 3, 0, 10) == EXCEPTION
    assert parse_response(r, FC04_RESPONSE, 9, 0x11, 4, 0, 2) == OK
    assert r.exception_code == 0
    assert r.resync_skipped == 0


def test_parse_any_short_garbage_gives_a_status():
    buf = bytearray(12)
    r = Response()
    for seed in range(300):
        x = seed * 2654435761
        for i in range(len(buf)):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            buf[i] = (x >> 16) & 0xFF
        for n in (0, 1, 3, 5, 12):
            status = parse_response(r, buf, n, buf[0] if seed & 1 else 1, 3, 0, 2)
            assert 0 <= status <= 7


# --- names, errors ---


def test_status_names():
    names = [status_name(s) for s in range(8)]
    assert names == [
        "ok",
        "timeout",
        "crc_error",
        "truncated",
        "wrong_address",
        "wrong_function",
        "bad_length",
        "exception",
    ]
    assert status_name(99) == "unknown_status_99"


def test_exception_names():
    assert exception_name(ILLEGAL_FUNCTION) == "illegal_function"
    assert exception_name(ILLEGAL_DATA_ADDRESS) == "illegal_data_address"
    assert exception_name(ILLEGAL_DATA_VALUE) == "illegal_data_value"
    assert exception_name(SERVER_DEVICE_FAILURE) == "server_device_failure"
    assert exception_name(ACKNOWLEDGE) == "acknowledge"
    assert exception_name(SERVER_DEVICE_BUSY) == "server_device_busy"
    assert exception_name(0x42) == "unknown_exception_66"


def test_modbus_error_carries_status_and_code():
    e = ModbusError(EXCEPTION, SERVER_DEVICE_BUSY)
    assert e.status == EXCEPTION
    assert e.exception_code == 6
    assert "server_device_busy" in str(e)
    assert "exception" in str(e)
    e = ModbusError(CRC_ERROR)
    assert e.exception_code == 0
    assert "crc_error" in str(e)


def test_raise_for_status():
    r = _parse(EXCEPTION_02, 1, 3, 0, 10)
    try:
        r.raise_for_status()
        raised = None
    except ModbusError as e:
        raised = e
    assert raised is not None
    assert raised.status == EXCEPTION
    assert raised.exception_code == ILLEGAL_DATA_ADDRESS
    r = _parse(FC04_RESPONSE, 0x11, 4, 0, 2)
    assert r.raise_for_status() is r


# --- timing (Serial Line §2.5.1.1) ---


def test_char_time():
    assert char_time_us(9600) == 1146  # 11 bits / 9600 baud = 1145.8 µs
    assert char_time_us(9600, 10) == 1042
    assert char_time_us(115200) == 95


def test_frame_gap():
    assert frame_gap_us(9600) == 4010  # 3.5 x 1145.8 µs
    assert frame_gap_us(2400) == 16042
    assert frame_gap_us(19200) == 2005  # still 3.5 chars at exactly 19200
    assert frame_gap_us(38400) == 1750  # fixed above 19200
    assert frame_gap_us(115200) == 1750


def test_inter_char_timeout():
    assert inter_char_timeout_us(9600) == 1719  # 1.5 x 1145.8 µs
    assert inter_char_timeout_us(19200) == 859
    assert inter_char_timeout_us(57600) == 750
    assert inter_char_timeout_us(115200) == 750


def test_wire_time_golden():
    # spec/devices.md: 8-byte request + 9-byte response at 9600 -> 19.48 ms
    assert wire_time_us(9600, 8, 9) == 19479
    assert wire_time_us(9600, 8, 9, 10) == 17708
    assert wire_time_us(115200, 8, 255) == 25113
