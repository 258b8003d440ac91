"""CRC-16/MODBUS (Modbus over Serial Line V1.02 §6.2.2): table, check value, goldens."""

from drivers.modbus.crc import CRC_TABLE, append_crc, crc16, frame_crc_ok

RUNS_ON_MICROPYTHON = True


def test_table_is_the_reflected_0xa001_table():
    assert len(CRC_TABLE) == 256
    # First and last entries of the table printed in Serial Line V1.02 §6.2.2 (hi/lo
    # split there; combined here as the reflected CRC register value).
    assert CRC_TABLE[0] == 0x0000
    assert CRC_TABLE[1] == 0xC0C1
    assert CRC_TABLE[2] == 0xC181
    assert CRC_TABLE[128] == 0xA001
    assert CRC_TABLE[255] == 0x4040


def test_table_matches_bitwise_definition():
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        assert CRC_TABLE[i] == crc


def test_check_value_of_123456789():
    # The catalogue check value of CRC-16/MODBUS.
    assert crc16(b"123456789") == 0x4B37


def test_empty_input_is_the_initial_value():
    assert crc16(b"") == 0xFFFF


def test_golden_read_request():
    # 01 03 00 00 00 0A -> CRC 0xCDC5, sent C5 CD.
    assert crc16(bytes.fromhex("01030000000a")) == 0xCDC5


def test_golden_exception_response():
    assert crc16(bytes.fromhex("018302")) == 0xF1C0


def test_start_and_end_select_a_window_without_slicing():
    buf = bytearray(b"\xff\xee") + bytearray(bytes.fromhex("01030000000a")) + bytearray(b"\x00")
    assert crc16(buf, 2, 8) == 0xCDC5
    assert crc16(memoryview(buf), 2, 8) == 0xCDC5


def test_residue_over_frame_with_its_crc_is_zero():
    frame = bytes.fromhex("01030000000ac5cd")
    assert crc16(frame) == 0
    assert frame_crc_ok(frame, 0, len(frame))
    assert not frame_crc_ok(bytes.fromhex("01030000000ac5ce"), 0, 8)


def test_frame_crc_ok_needs_at_least_four_bytes():
    # Two bytes that happen to be their own CRC are not a frame.
    assert not frame_crc_ok(b"\xff\xff", 0, 2)
    assert not frame_crc_ok(b"", 0, 0)


def test_append_crc_writes_low_byte_first():
    buf = bytearray(8)
    for i, b in enumerate(bytes.fromhex("01030000000a")):
        buf[i] = b
    assert append_crc(buf, 6) == 8
    assert bytes(buf) == bytes.fromhex("01030000000ac5cd")


def test_every_single_bit_flip_changes_the_crc():
    frame = bytearray(bytes.fromhex("110306ae415652434049ad"))
    for i in range(len(frame)):
        for bit in range(8):
            frame[i] ^= 1 << bit
            assert crc16(frame) != 0
            frame[i] ^= 1 << bit
    assert crc16(frame) == 0
