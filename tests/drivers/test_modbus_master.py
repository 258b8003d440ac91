"""BusMaster against a scripted fake link and a fake clock (Modbus over Serial Line
V1.02 §2.4.1, §2.5.1): statuses, counters, DE pin order, silent intervals, timeouts."""

from drivers.modbus import (
    BAD_LENGTH,
    CRC_ERROR,
    EXCEPTION,
    OK,
    TIMEOUT,
    TRUNCATED,
    WRONG_ADDRESS,
    BusMaster,
    ModbusError,
)
from tests.drivers.fakelink import (
    FakeClock,
    FakePin,
    FakeUart,
    FakeUartWithFlush,
    raises,
    with_crc,
)

RUNS_ON_MICROPYTHON = True

REQ_2_FROM_0 = bytes.fromhex("01 03 00 00 00 02 C4 0B")
RESP_2 = with_crc(b"\x01\x03\x04\x00\x7b\x01\xc8")  # 123, 456
EXC_02 = bytes.fromhex("01 83 02 C0 F1")
CHAR_US = 1146  # 11 bits at 9600 baud
GAP_US = 4010  # t3.5 at 9600 baud


def make(baudrate=9600, flush=False, de=True, max_read=0):
    clock = FakeClock()
    events = []
    cls = FakeUartWithFlush if flush else FakeUart
    link = cls(clock, baudrate=baudrate, events=events, max_read=max_read)
    pin = FakePin(clock, events) if de else None
    master = BusMaster(link, baudrate=baudrate, de_pin=pin, clock=clock)
    return clock, link, pin, master


def counters(m):
    return (
        m.transactions,
        m.ok,
        m.timeouts,
        m.crc_errors,
        m.exceptions,
        m.frame_errors,
        m.resync_bytes,
        m.stale_bytes_dropped,
    )


def kinds(events):
    return [e[0] for e in events]


def test_read_ok():
    _, link, _, m = make()
    link.reply(RESP_2)
    r = m.read_registers(1, 3, 0, 2, 200)
    assert r.status == OK
    assert r.values() == [123, 456]
    assert link.writes == [REQ_2_FROM_0]
    assert counters(m) == (1, 1, 0, 0, 0, 0, 0, 0)
    assert r is m.response  # the shared, preallocated Response
    assert not m.busy


def test_read_ends_when_the_frame_is_complete_not_at_the_timeout():
    clock, link, _, m = make()
    link.reply(RESP_2, delay_ms=30)
    t0 = clock.now_us
    assert m.read_registers(1, 3, 0, 2, 1000).status == OK
    elapsed_us = clock.now_us - t0
    # request 8 chars + latency 30 ms + response 9 chars, plus at most one poll interval
    floor = link.wire_us(8) + 30000 + link.wire_us(9)
    assert floor <= elapsed_us <= floor + 2 * m.poll_interval_ms * 1000


def test_de_pin_order_without_flush_waits_the_wire_time():
    _, link, pin, m = make()
    link.reply(RESP_2)
    m.read_registers(1, 3, 0, 2, 200)
    ev = link.events
    assert kinds(ev)[:3] == ["de", "write", "de"]
    assert ev[0][1] == 1 and ev[2][1] == 0
    assert ev[2][2] >= link.tx_end_us  # DE dropped only after the last stop bit
    assert ev[2][2] - ev[1][2] <= 8 * CHAR_US + 1000  # ...and not much later
    assert all(e[2] >= ev[2][2] for e in ev if e[0] == "read")
    assert pin.state == 0


def test_de_pin_order_with_flush_holds_one_more_char():
    _, link, _, m = make(flush=True)
    link.reply(RESP_2)
    assert m.read_registers(1, 3, 0, 2, 200).status == OK
    ev = link.events
    assert kinds(ev)[:4] == ["de", "write", "flush", "de"]
    # flush returned while the last char was still on the wire; DE waited for it
    assert ev[2][2] < link.tx_end_us <= ev[3][2]


def test_without_de_pin():
    _, link, _, m = make(de=False)
    link.reply(RESP_2)
    assert m.read_registers(1, 3, 0, 2, 200).status == OK
    assert "de" not in kinds(link.events)


def test_answer_split_over_many_readinto_calls():
    _, link, _, m = make(max_read=2)
    link.reply(RESP_2)
    r = m.read_registers(1, 3, 0, 2, 200)
    assert r.status == OK
    assert r.values() == [123, 456]
    assert kinds(link.events).count("read") == 5


def test_answer_in_chunks_with_short_pauses():
    _, link, _, m = make()
    link.reply(RESP_2, delay_ms=20, chunks=3, chunk_gap_ms=2)
    assert m.read_registers(1, 3, 0, 2, 200).status == OK
    assert kinds(link.events).count("read") >= 2


def test_stray_zero_before_the_answer_is_skipped_and_counted():
    _, link, _, m = make()
    link.reply(RESP_2, prefix=b"\x00")
    r = m.read_registers(1, 3, 0, 2, 200)
    assert r.status == OK
    assert r.resync_skipped == 1
    assert r.values() == [123, 456]
    assert m.resync_bytes == 1
    link.reply(RESP_2, prefix=b"\x00\xff\x01")
    assert m.read_registers(1, 3, 0, 2, 200).status == OK
    assert m.resync_bytes == 4
    assert m.ok == 2


def test_corrupted_bit_is_a_crc_error_ended_by_silence():
    clock, link, _, m = make()
    link.reply(RESP_2, flip=(4, 3))
    t0 = clock.now_us
    r = m.read_registers(1, 3, 0, 2, 1000)
    assert r.status == CRC_ERROR
    assert counters(m) == (1, 0, 0, 1, 0, 0, 0, 0)
    assert clock.now_us - t0 < 100000  # t3.5 of silence ended it, not the 1 s timeout


def test_silent_device_costs_its_timeout():
    clock, link, _, m = make()
    link.silent()
    t0 = clock.now_us
    r = m.read_registers(1, 3, 0, 2, 200)
    elapsed_us = clock.now_us - t0
    assert r.status == TIMEOUT
    assert counters(m) == (1, 0, 1, 0, 0, 0, 0, 0)
    # timeout runs from the end of transmission: 8 chars + 200 ms + < 1 poll + 1 tick
    floor = 200000 + link.wire_us(8)
    assert floor <= elapsed_us <= floor + (m.poll_interval_ms + 1) * 1000


def test_reply_after_the_timeout_is_a_timeout_then_stale():
    clock, link, _, m = make()
    link.reply(RESP_2, delay_ms=300)
    assert m.read_registers(1, 3, 0, 2, 100).status == TIMEOUT
    clock.sleep_ms(500)  # the late answer arrives while nobody listens
    link.reply(RESP_2)
    assert m.read_registers(1, 3, 0, 2, 100).status == OK
    assert m.stale_bytes_dropped == len(RESP_2)
    assert counters(m)[:3] == (2, 1, 1)


def test_exception_response_ends_reception_immediately():
    clock, link, _, m = make()
    link.reply(EXC_02)
    t0 = clock.now_us
    r = m.read_registers(1, 3, 0, 2, 1000)
    assert r.status == EXCEPTION
    assert r.exception_code == 2
    assert counters(m) == (1, 0, 0, 0, 1, 0, 0, 0)
    assert clock.now_us - t0 < 30000
    assert raises(ModbusError, r.raise_for_status)


def test_partial_answer_is_truncated():
    _, link, _, m = make()
    link.reply(RESP_2[:6])
    assert m.read_registers(1, 3, 0, 2, 200).status == TRUNCATED
    assert m.frame_errors == 1


def test_pause_inside_the_frame_longer_than_t35_ends_it():
    clock, link, _, m = make()
    link.reply(RESP_2, chunks=2, chunk_gap_ms=50)
    assert m.read_registers(1, 3, 0, 2, 500).status == TRUNCATED
    # the tail arrives later and is dropped, counted, before the next request
    clock.sleep_ms(100)
    link.reply(RESP_2)
    assert m.read_registers(1, 3, 0, 2, 500).status == OK
    assert m.stale_bytes_dropped == 4


def test_answer_from_another_address():
    _, link, _, m = make()
    link.reply(with_crc(b"\x02\x03\x04\x00\x7b\x01\xc8"))
    assert m.read_registers(1, 3, 0, 2, 200).status == WRONG_ADDRESS
    assert m.frame_errors == 1


def test_wrong_byte_count_is_bad_length():
    _, link, _, m = make()
    link.reply(with_crc(b"\x01\x03\x02\x00\x7b"))
    assert m.read_registers(1, 3, 0, 2, 200).status == BAD_LENGTH
    assert m.frame_errors == 1


def test_stale_input_drained_before_sending():
    _, link, _, m = make()
    link.inject(b"\x01\x02\x03")
    link.reply(RESP_2)
    assert m.read_registers(1, 3, 0, 2, 200).status == OK
    assert m.stale_bytes_dropped == 3
    assert kinds(link.events)[:2] == ["read", "de"]


def test_frame_gap_respected_between_transactions():
    _, link, _, m = make(de=False)
    link.reply(RESP_2)
    link.reply(RESP_2)
    m.read_registers(1, 3, 0, 2, 200)
    last_rx_us = [e[2] for e in link.events if e[0] == "read"][-1]
    m.read_registers(1, 3, 0, 2, 200)
    second_write_us = [e[2] for e in link.events if e[0] == "write"][1]
    assert second_write_us - last_rx_us >= GAP_US


def test_write_register_echo():
    _, link, _, m = make()
    req = bytes.fromhex("01 06 00 01 00 03 98 0B")
    link.reply(req)
    r = m.write_register(1, 1, 3, 200)
    assert r.status == OK
    assert link.writes == [req]
    link.reply(with_crc(b"\x01\x06\x00\x01\x00\x04"))  # echoes another value
    assert m.write_register(1, 1, 3, 200).status == BAD_LENGTH
    assert counters(m)[:2] == (2, 1)
    assert m.frame_errors == 1


def test_write_registers():
    _, link, _, m = make()
    link.reply(bytes.fromhex("01 10 00 01 00 02 10 08"))
    r = m.write_registers(1, 1, [10, 258], 200)
    assert r.status == OK
    assert link.writes == [bytes.fromhex("01 10 00 01 00 02 04 00 0A 01 02 92 30")]


def test_broadcast_write_waits_the_turnaround_delay():
    clock, link, _, m = make()
    t0 = clock.now_us
    r = m.write_register(0, 1, 3, 100)
    assert r.status == OK
    assert clock.now_us - t0 >= 100000
    assert link.writes[0][:2] == b"\x00\x06"


def test_stepping_interface():
    clock, link, _, m = make()
    link.reply(RESP_2, delay_ms=10)
    m.begin_read(1, 3, 0, 2, 200)
    assert m.busy
    assert not m.poll()
    assert raises(RuntimeError, m.begin_read, 1, 3, 0, 2, 200)
    polls = 1
    while not m.poll():
        clock.sleep_ms(m.poll_interval_ms)
        polls += 1
    assert 2 < polls < 20
    assert m.response.status == OK
    assert m.poll()  # stays final
    assert not m.busy


def test_invalid_request_raises_before_anything_is_sent():
    _, link, _, m = make()
    assert raises(ValueError, m.read_registers, 1, 3, 0, 0, 200)
    assert raises(ValueError, m.read_registers, 0, 3, 0, 1, 200)
    assert link.writes == []
    assert m.transactions == 0
    assert not m.busy


def test_timing_hints_follow_the_baudrate():
    m = make()[3]
    assert m.frame_gap_ms == 6  # ceil(4.01 ms) + 1 tick
    assert m.poll_interval_ms == 4
    m = make(baudrate=115200)[3]
    assert m.frame_gap_ms == 3  # ceil(1.75 ms) + 1 tick
    assert m.poll_interval_ms == 1


def test_fast_bus_read():
    _, link, _, m = make(baudrate=115200, flush=True)
    link.reply(RESP_2, prefix=b"\x00")
    assert m.read_registers(1, 3, 0, 2, 50).status == OK
    assert m.resync_bytes == 1
