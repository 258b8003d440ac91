"""Property tests of the RTU codec (CPython only: hypothesis, and pymodbus 3.16.1 as an
independent implementation of Modbus over Serial Line V1.02 / Application Protocol
V1.1b3 to cross-check CRCs and frames against)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersRequest,
    ReadHoldingRegistersResponse,
    ReadInputRegistersRequest,
    ReadInputRegistersResponse,
    WriteMultipleRegistersRequest,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterRequest,
    WriteSingleRegisterResponse,
)

from drivers.modbus import (
    EXCEPTION,
    OK,
    Response,
    build_read,
    build_write_multiple,
    build_write_single,
    crc16,
    parse_response,
)

CLIENT = FramerRTU(DecodePDU(is_server=False))  # decodes responses
SERVER = FramerRTU(DecodePDU(is_server=True))  # decodes requests

addresses = st.integers(1, 247)
u16 = st.integers(0, 0xFFFF)
read_functions = st.sampled_from([3, 4])
exception_codes = st.sampled_from([1, 2, 3, 4, 5, 6, 8, 10, 11])
STATUSES = range(8)

READ_REQUEST = {3: ReadHoldingRegistersRequest, 4: ReadInputRegistersRequest}
READ_RESPONSE = {3: ReadHoldingRegistersResponse, 4: ReadInputRegistersResponse}


@st.composite
def reads(draw, max_count=125):
    fn = draw(read_functions)
    count = draw(st.integers(1, max_count))
    start = draw(st.integers(0, 0x10000 - count))
    values = draw(st.lists(u16, min_size=count, max_size=count))
    return draw(addresses), fn, start, count, values


@st.composite
def writes(draw):
    count = draw(st.integers(1, 123))
    start = draw(st.integers(0, 0x10000 - count))
    values = draw(st.lists(u16, min_size=count, max_size=count))
    return draw(addresses), start, values


def _build(fn, *args) -> bytes:
    buf = bytearray(256)
    n = fn(buf, *args)
    return bytes(buf[:n])


def _parse(frame: bytes, *args) -> Response:
    resp = Response()
    status = parse_response(resp, frame, len(frame), *args)
    assert status == resp.status
    assert status in STATUSES
    return resp


# --- CRC against pymodbus ---


@given(st.binary(max_size=300))
def test_crc_matches_pymodbus(data):
    # pymodbus returns the CRC byte-swapped, ready for to_bytes(2, "big").
    theirs = FramerRTU.compute_CRC(data)
    assert crc16(data) == ((theirs & 0xFF) << 8) | (theirs >> 8)


@given(st.binary(max_size=64), st.binary(max_size=64), st.binary(max_size=64))
def test_crc_window_equals_crc_of_slice(pre, mid, post):
    buf = pre + mid + post
    assert crc16(buf, len(pre), len(pre) + len(mid)) == crc16(mid)


# --- requests: identical bytes to pymodbus, and pymodbus decodes ours ---


@given(reads())
def test_read_request_matches_pymodbus(r):
    address, fn, start, count, _ = r
    ours = _build(build_read, address, fn, start, count)
    theirs = CLIENT.buildFrame(READ_REQUEST[fn](dev_id=address, address=start, count=count))
    assert ours == theirs
    used, pdu = SERVER.handleFrame(ours, 0, 0)
    assert used == len(ours)
    assert (pdu.dev_id, pdu.function_code, pdu.address, pdu.count) == (address, fn, start, count)


@given(addresses, u16, u16)
def test_write_single_request_matches_pymodbus(address, register, value):
    ours = _build(build_write_single, address, register, value)
    theirs = CLIENT.buildFrame(
        WriteSingleRegisterRequest(dev_id=address, address=register, registers=[value])
    )
    assert ours == theirs


@given(writes())
def test_write_multiple_request_matches_pymodbus(w):
    address, start, values = w
    ours = _build(build_write_multiple, address, start, values)
    theirs = CLIENT.buildFrame(
        WriteMultipleRegistersRequest(dev_id=address, address=start, registers=values)
    )
    assert ours == theirs
    used, pdu = SERVER.handleFrame(ours, 0, 0)
    assert used == len(ours)
    assert list(pdu.registers) == values


# --- responses built by pymodbus parse to the same data ---


@given(reads())
def test_read_round_trip(r):
    address, fn, start, count, values = r
    frame = CLIENT.buildFrame(READ_RESPONSE[fn](dev_id=address, registers=values))
    resp = _parse(frame, address, fn, start, count)
    assert resp.status == OK
    assert resp.values() == values
    assert resp.resync_skipped == 0


@given(addresses, u16, u16)
def test_write_single_round_trip(address, register, value):
    frame = CLIENT.buildFrame(
        WriteSingleRegisterResponse(dev_id=address, address=register, registers=[value])
    )
    # the FC06 response is the echo of the request
    assert frame == _build(build_write_single, address, register, value)
    resp = _parse(frame, address, 6, register, 1, value)
    assert resp.status == OK
    assert resp.registers[0] == value


@given(writes())
def test_write_multiple_round_trip(w):
    address, start, values = w
    frame = CLIENT.buildFrame(
        WriteMultipleRegistersResponse(dev_id=address, address=start, count=len(values))
    )
    assert _parse(frame, address, 16, start, len(values)).status == OK


@given(addresses, st.sampled_from([3, 4, 6, 16]), exception_codes)
def test_exception_round_trip(address, fn, code):
    frame = CLIENT.buildFrame(ExceptionResponse(fn, code, device_id=address))
    assert len(frame) == 5
    resp = _parse(frame, address, fn, 0, 1)
    assert resp.status == EXCEPTION
    assert resp.exception_code == code


# --- corruption is always detected ---


def _valid_frames():
    read = reads().map(
        lambda r: (
            CLIENT.buildFrame(READ_RESPONSE[r[1]](dev_id=r[0], registers=r[4])),
            (r[0], r[1], r[2], r[3]),
        )
    )
    single = st.tuples(addresses, u16, u16).map(
        lambda t: (_build(build_write_single, *t), (t[0], 6, t[1], 1, t[2]))
    )
    multiple = writes().map(
        lambda w: (
            CLIENT.buildFrame(
                WriteMultipleRegistersResponse(dev_id=w[0], address=w[1], count=len(w[2]))
            ),
            (w[0], 16, w[1], len(w[2])),
        )
    )
    exc = st.tuples(addresses, st.sampled_from([3, 4, 6, 16]), exception_codes).map(
        lambda t: (
            CLIENT.buildFrame(ExceptionResponse(t[1], t[2], device_id=t[0])),
            (t[0], t[1], 0, 1),
        )
    )
    return st.one_of(read, single, multiple, exc)


@given(_valid_frames(), st.data())
def test_every_single_bit_flip_is_detected(frame_and_args, data):
    frame, args = frame_and_args
    assert _parse(frame, *args).status in (OK, EXCEPTION)
    i = data.draw(st.integers(0, len(frame) - 1))
    bit = data.draw(st.integers(0, 7))
    corrupt = bytearray(frame)
    corrupt[i] ^= 1 << bit
    status = _parse(bytes(corrupt), *args).status
    assert status not in (OK, EXCEPTION)


@settings(max_examples=30)
@given(reads(max_count=8))
def test_all_single_bit_flips_of_small_reads_are_detected(r):
    address, fn, start, count, values = r
    frame = bytearray(CLIENT.buildFrame(READ_RESPONSE[fn](dev_id=address, registers=values)))
    for i in range(len(frame)):
        for bit in range(8):
            frame[i] ^= 1 << bit
            assert _parse(bytes(frame), address, fn, start, count).status != OK
            frame[i] ^= 1 << bit


# --- random bytes: a status, never an exception ---


@given(
    st.binary(max_size=300),
    st.integers(0, 255),
    st.sampled_from([3, 4, 6, 16]),
    st.integers(1, 123),
)
def test_random_bytes_only_yield_a_status(data, address, fn, count):
    _parse(data, address, fn, 0, count)


@given(st.binary(max_size=300), st.integers(-5, 400), addresses, read_functions)
def test_any_n_only_yields_a_status(data, n, address, fn):
    resp = Response()
    assert parse_response(resp, data, n, address, fn, 0, 2) in STATUSES


@given(_valid_frames(), st.binary(max_size=40), st.binary(max_size=40))
def test_garbage_around_a_valid_frame_only_yields_a_status(frame_and_args, pre, post):
    frame, args = frame_and_args
    _parse(pre + frame + post, *args)


@given(_valid_frames(), st.binary(max_size=40))
def test_trailing_garbage_does_not_hide_a_frame(frame_and_args, post):
    frame, args = frame_and_args
    expected = _parse(frame, *args)
    got = _parse(frame + post, *args)
    assert got.status == expected.status
    assert got.values() == expected.values()


@given(_valid_frames(), st.data())
def test_prefix_without_our_address_is_skipped(frame_and_args, data):
    frame, args = frame_and_args
    address = args[0]
    pre = data.draw(st.binary(max_size=40).filter(lambda b: address not in b))
    expected = _parse(frame, *args)
    got = _parse(pre + frame, *args)
    assert got.status == expected.status
    assert got.resync_skipped == len(pre)
    assert got.values() == expected.values()
