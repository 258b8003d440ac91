"""plan_reads: coalescing register reads into FC03/FC04 requests of <= 125 registers
(Modbus Application Protocol V1.1b3 §6.3/§6.4)."""

from drivers.modbus.plan import MAX_READ_REGISTERS, plan_reads
from tests.drivers.fakelink import raises

RUNS_ON_MICROPYTHON = True


def test_empty():
    assert plan_reads([]) == []


def test_single_span_unchanged():
    assert plan_reads([(3, 10, 2)]) == [(3, 10, 2)]


def test_adjacent_spans_merge():
    assert plan_reads([(3, 0, 1), (3, 1, 1)]) == [(3, 0, 2)]
    assert plan_reads([(4, 0, 2), (4, 2, 2), (4, 4, 2)]) == [(4, 0, 6)]


def test_overlapping_and_contained_spans_merge():
    assert plan_reads([(3, 0, 4), (3, 2, 4)]) == [(3, 0, 6)]
    assert plan_reads([(3, 0, 10), (3, 2, 3)]) == [(3, 0, 10)]
    assert plan_reads([(3, 5, 2), (3, 5, 2)]) == [(3, 5, 2)]


def test_unsorted_input_is_sorted_by_function_then_address():
    spans = [(4, 10, 2), (3, 8, 1), (4, 0, 2), (3, 0, 1)]
    assert plan_reads(spans) == [(3, 0, 1), (3, 8, 1), (4, 0, 2), (4, 10, 2)]


def test_functions_never_merge():
    assert plan_reads([(3, 0, 2), (4, 2, 2)]) == [(3, 0, 2), (4, 2, 2)]


def test_gap_not_bridged_by_default():
    assert plan_reads([(3, 0, 1), (3, 5, 1)]) == [(3, 0, 1), (3, 5, 1)]


def test_gap_bridged_up_to_max_gap():
    # registers 1..4 unused: a gap of 4
    assert plan_reads([(3, 0, 1), (3, 5, 1)], max_gap=4) == [(3, 0, 6)]
    assert plan_reads([(3, 0, 1), (3, 5, 1)], max_gap=3) == [(3, 0, 1), (3, 5, 1)]


def test_long_span_split_at_125():
    assert plan_reads([(4, 0, 300)]) == [(4, 0, 125), (4, 125, 125), (4, 250, 50)]
    assert plan_reads([(3, 0, 125)]) == [(3, 0, 125)]
    assert plan_reads([(3, 0, 126)]) == [(3, 0, 125), (3, 125, 1)]


def test_merge_stops_at_max_count():
    assert plan_reads([(3, 0, 100), (3, 100, 50)]) == [(3, 0, 100), (3, 100, 50)]
    assert plan_reads([(3, 0, 100), (3, 100, 25)]) == [(3, 0, 125)]
    assert plan_reads([(3, 0, 4), (3, 4, 4)], max_count=4) == [(3, 0, 4), (3, 4, 4)]


def test_every_read_is_within_limits():
    spans = [(3, a * 7, 3) for a in range(100)] + [(4, 1000, 400)]
    for fn, start, count in plan_reads(spans, max_gap=4):
        assert 1 <= count <= MAX_READ_REGISTERS
        assert start + count <= 0x10000
        assert fn in (3, 4)


def test_every_requested_register_is_covered():
    spans = [(3, 0, 2), (3, 7, 1), (3, 9, 3), (4, 100, 130), (3, 200, 1)]
    reads = plan_reads(spans, max_gap=2)
    for fn, addr, count in spans:
        for reg in range(addr, addr + count):
            assert any(f == fn and s <= reg < s + c for f, s, c in reads)


def test_top_of_register_space():
    assert plan_reads([(3, 0xFFFF, 1)]) == [(3, 0xFFFF, 1)]
    assert plan_reads([(3, 0xFFFE, 1), (3, 0xFFFF, 1)]) == [(3, 0xFFFE, 2)]


def test_bad_spans_raise():
    assert raises(ValueError, plan_reads, [(3, 0, 0)])
    assert raises(ValueError, plan_reads, [(3, -1, 1)])
    assert raises(ValueError, plan_reads, [(3, 0xFFFF, 2)])


def test_bad_options_raise():
    assert raises(ValueError, plan_reads, [(3, 0, 1)], 0)
    assert raises(ValueError, plan_reads, [(3, 0, 1)], 126)
    assert raises(ValueError, plan_reads, [(3, 0, 1)], 125, -1)
