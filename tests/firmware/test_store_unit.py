"""Unit tests of firmware/store.py and firmware/atomic.py, on CPython and MicroPython.

Written in the MicroPython subset (plain asserts, no pytest, no tempfile): pytest runs
it on CPython and tests/test_on_micropython.py runs it again on the real micropython
binary through tests/mp/runner.py.
"""

import binascii
import os

from firmware.atomic import (
    SOURCE_BACKUP,
    SOURCE_PRIMARY,
    NoValidCopy,
    read_with_fallback,
    write_atomic,
)
from firmware.store import RecordTooLarge, Ring, RingGeometryError, crc32, crc32_table
from hil_tests.tornfs import PowerLoss, TornFs

RUNS_ON_MICROPYTHON = True

GEOM = (64, 4, 2)  # slot_size, slots_per_segment, segments: capacity 8


def _tmpdir():
    d = "/tmp/lantian-unit-" + binascii.hexlify(os.urandom(6)).decode()
    os.mkdir(d)
    return d


def _rmtree(path):
    for name in os.listdir(path):
        p = path + "/" + name
        if os.stat(p)[0] & 0x4000:  # S_IFDIR
            _rmtree(p)
        else:
            os.remove(p)
    os.rmdir(path)


def _with_dir(fn):
    d = _tmpdir()
    try:
        fn(d)
    finally:
        _rmtree(d)


def _ring(d, **kw):
    return Ring(d + "/ring", GEOM[0], GEOM[1], GEOM[2], **kw)


def _drain(ring):
    got = []
    while True:
        rec = ring.peek()
        if rec is None:
            return got
        got.append((rec[0], bytes(rec[1])))
        assert ring.ack(rec[0])


# ---------------------------------------------------------------------------- CRC-32


def test_crc32_check_value():
    # The catalogue check value of CRC-32/ISO-HDLC (the zlib/PNG/Ethernet CRC).
    assert crc32(b"123456789") & 0xFFFFFFFF == 0xCBF43926
    assert crc32_table(b"123456789") == 0xCBF43926


def test_crc32_empty_and_chaining():
    assert crc32_table(b"") == 0
    assert crc32_table(b"6789", crc32_table(b"12345")) == 0xCBF43926
    assert crc32(memoryview(b"6789"), crc32(b"12345")) & 0xFFFFFFFF == 0xCBF43926


def test_crc32_table_matches_builtin():
    data = bytes(range(256)) * 3
    for n in (1, 2, 7, 64, 255, 256, 700):
        assert crc32_table(data[:n]) == crc32(data[:n]) & 0xFFFFFFFF


# ---------------------------------------------------------------------------- ring


def test_append_peek_ack_in_order():
    def run(d):
        ring = _ring(d)
        assert ring.capacity == 8 and ring.fill == 0 and ring.peek() is None
        assert ring.next_seq == 1
        for i in range(3):
            assert ring.append(b"r%d" % i) == i + 1
        seq, payload = ring.peek()
        assert (seq, bytes(payload)) == (1, b"r0")
        assert ring.peek()[0] == 1  # peek does not advance
        assert not ring.ack(2)  # only the peeked record can be acknowledged
        assert ring.ack(1)
        assert not ring.ack(1)  # a duplicate PUBACK changes nothing
        assert _drain(ring) == [(2, b"r1"), (3, b"r2")]
        assert (ring.appended, ring.sent, ring.dropped, ring.fill) == (3, 3, 0, 0)
        ring.close()

    _with_dir(run)


def test_wrap_drops_oldest_and_counts():
    def run(d):
        ring = _ring(d)
        for i in range(11):
            ring.append(b"r%d" % i)
        assert ring.fill == 8 and ring.dropped == 3
        assert [s for s, _ in _drain(ring)] == [4, 5, 6, 7, 8, 9, 10, 11]
        ring.close()

    _with_dir(run)


def test_drop_invalidates_a_peeked_record():
    def run(d):
        ring = _ring(d)
        for i in range(8):
            ring.append(b"r%d" % i)
        assert ring.peek()[0] == 1
        ring.append(b"r8")  # overwrites seq 1 while it was in flight
        assert not ring.ack(1)
        assert ring.peek()[0] == 2
        ring.close()

    _with_dir(run)


def test_reopen_keeps_records_and_continues_sequence():
    def run(d):
        ring = _ring(d)
        for i in range(6):
            ring.append(b"r%d" % i)
        ring.peek()
        ring.ack(1)
        ring.close()
        ring = _ring(d)
        assert ring.fill == 5 and ring.next_seq == 7
        assert ring.append(b"r6") == 7
        assert [s for s, _ in _drain(ring)] == [2, 3, 4, 5, 6, 7]
        ring.close()
        ring = _ring(d)
        assert ring.fill == 0 and ring.next_seq == 8 and ring.peek() is None
        ring.close()

    _with_dir(run)


def test_record_too_large_is_named():
    def run(d):
        ring = _ring(d)
        assert ring.max_payload == 52
        ring.append(bytes(52))
        try:
            ring.append(bytes(53))
            raise AssertionError("no error")
        except RecordTooLarge as e:
            assert e.size == 53 and e.limit == 52
        assert ring.next_seq == 2
        ring.close()

    _with_dir(run)


def test_geometry_mismatch_is_named():
    def run(d):
        _ring(d).close()
        try:
            Ring(d + "/ring", 32, 4, 2)
            raise AssertionError("no error")
        except RingGeometryError as e:
            assert e.path.endswith("seg0.bin")

    _with_dir(run)


def _flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x55]))


def test_damaged_slot_is_skipped_and_counted():
    def run(d):
        ring = _ring(d)
        for i in range(5):
            ring.append(b"payload-%d" % i)
        ring.close()
        _flip_byte(d + "/ring/seg0.bin", 64 + 14)  # payload of slot 1 (seq 2)
        ring = _ring(d)
        assert [s for s, _ in _drain(ring)] == [1, 3, 4, 5]
        assert ring.corrupt_skipped == 1
        ring.close()

    _with_dir(run)


def test_torn_append_loses_only_that_record():
    def run(d):
        ring = _ring(d)
        for i in range(8):  # full: the next append overwrites seq 1
            ring.append(b"payload-%d" % i)
        ring.close()
        fs = TornFs(1, cut=7)  # the first write lands 7 of its bytes
        ring = _ring(d, fs=fs)
        try:
            ring.append(b"payload-8")
            raise AssertionError("no power loss")
        except PowerLoss:
            pass
        assert fs.torn[0] == "write" and fs.torn[3] == 7
        ring = _ring(d)
        assert ring.corrupt_skipped == 1  # the torn slot, found by the scan
        assert ring.next_seq == 9  # seq 9 never returned from append: free again
        assert [s for s, _ in _drain(ring)] == [2, 3, 4, 5, 6, 7, 8]
        ring.close()

    _with_dir(run)


def test_torn_cursor_save_keeps_previous_generation():
    def run(d):
        ring = _ring(d)
        for i in range(4):
            ring.append(b"r%d" % i)
        ring.peek()
        ring.ack(1)
        ring.close()
        fs = TornFs(1, cut=9)  # tear the cursor save of the next ack
        ring = _ring(d, fs=fs)
        ring.peek()
        try:
            ring.ack(2)
            raise AssertionError("no power loss")
        except PowerLoss:
            pass
        ring = _ring(d)
        # The previous copy wins: seq 2 is offered again (at-least-once), 1 is not.
        assert [s for s, _ in _drain(ring)] == [2, 3, 4]
        ring.close()

    _with_dir(run)


def test_seq_floor_survives_lost_segments():
    def run(d):
        ring = _ring(d)
        for i in range(5):
            ring.append(b"r%d" % i)
        ring.peek()
        ring.ack(1)  # saves the cursor: floor 5
        ring.close()
        for name in os.listdir(d + "/ring"):
            if name.startswith("seg"):
                os.remove(d + "/ring/" + name)
        ring = _ring(d)
        assert ring.fill == 0 and ring.next_seq == 6  # never 1 again
        ring.close()

    _with_dir(run)


def test_counters_dict():
    def run(d):
        ring = _ring(d)
        ring.append(b"x")
        c = ring.counters()
        assert c["appended"] == 1 and c["fill"] == 1 and c["capacity"] == 8
        assert c["next_seq"] == 2 and c["dropped"] == 0 and c["corrupt_skipped"] == 0
        ring.close()

    _with_dir(run)


# ---------------------------------------------------------------------------- atomic


def _int_validator(raw):
    return int(raw.decode())  # ValueError on a torn or empty file


def test_write_atomic_keeps_backup():
    def run(d):
        path = d + "/cfg"
        write_atomic(path, b"1")
        assert read_with_fallback(path, _int_validator) == (1, SOURCE_PRIMARY)
        write_atomic(path, b"2")
        assert read_with_fallback(path, _int_validator) == (2, SOURCE_PRIMARY)
        with open(path + ".bak", "rb") as f:
            assert f.read() == b"1"

    _with_dir(run)


def test_read_falls_back_to_backup():
    def run(d):
        path = d + "/cfg"
        write_atomic(path, b"1")
        write_atomic(path, b"2")
        with open(path, "wb") as f:
            f.write(b"x")  # damaged primary
        assert read_with_fallback(path, _int_validator) == (1, SOURCE_BACKUP)
        os.remove(path)  # missing primary
        assert read_with_fallback(path, _int_validator) == (1, SOURCE_BACKUP)

    _with_dir(run)


def test_no_valid_copy_is_named():
    def run(d):
        path = d + "/cfg"
        try:
            read_with_fallback(path, _int_validator)
            raise AssertionError("no error")
        except NoValidCopy as e:
            assert e.path == path and len(e.reasons) == 2
            assert "missing" in e.reasons[0]

    _with_dir(run)


def test_power_loss_at_every_step_leaves_a_copy():
    for op in (1, 2, 3):  # write tmp, rename path->bak, rename tmp->path

        def run(d, op=op):
            path = d + "/cfg"
            write_atomic(path, b"1")
            try:
                write_atomic(path, b"22", TornFs(op, cut=1))
                raise AssertionError("no power loss")
            except PowerLoss:
                pass
            value, _ = read_with_fallback(path, _int_validator)
            assert value == 1
            write_atomic(path, b"3")  # and the next write recovers
            assert read_with_fallback(path, _int_validator) == (3, SOURCE_PRIMARY)

        _with_dir(run)
