"""Coalescing of register reads (Modbus Application Protocol v1.1b3, §6.3/§6.4).

A station reads several registers of one device each poll. Every Modbus transaction
costs a request, a response, two 3.5-character gaps and the device's own latency, so
neighbouring registers read with the same function code are merged into one request,
never longer than 125 registers (the PDU limit for FC 03/04).

``plan_reads`` runs once when a profile is loaded, never in the sampling loop.
"""

from drivers._compat import const

MAX_READ_REGISTERS = const(125)  # FC03/FC04: quantity 1..125 (0x7D), spec §6.3


def plan_reads(spans, max_count=MAX_READ_REGISTERS, max_gap=0):
    """Merge ``spans`` into as few reads as possible.

    ``spans`` is an iterable of ``(function, address, count)``; the result is a list of
    ``(function, start, count)`` sorted by function then address. Spans of the same
    function that overlap, touch, or are separated by at most ``max_gap`` unused
    registers are merged while the merged read stays within ``max_count`` registers.
    A span longer than ``max_count`` is split into consecutive reads. Raises
    ``ValueError`` for a count < 1, a negative address, or an address range beyond
    0xFFFF.
    """
    if max_count < 1 or max_count > MAX_READ_REGISTERS:
        raise ValueError("max_count must be 1..125")
    if max_gap < 0:
        raise ValueError("max_gap must be >= 0")
    items = []  # type: list
    for function, address, count in spans:
        if count < 1:
            raise ValueError("span count must be >= 1")
        if address < 0 or address + count > 0x10000:
            raise ValueError("span outside the 16-bit register space")
        items.append((function, address, count))
    items.sort()
    reads = []  # type: list
    cur_fn = -1
    cur_start = 0
    cur_end = 0  # exclusive
    for function, address, count in items:
        end = address + count
        if (
            function == cur_fn
            and address <= cur_end + max_gap
            and max(end, cur_end) - cur_start <= max_count
        ):
            if end > cur_end:
                cur_end = end
            continue
        if cur_fn >= 0:
            _emit(reads, cur_fn, cur_start, cur_end, max_count)
        cur_fn = function
        cur_start = address
        cur_end = end
    if cur_fn >= 0:
        _emit(reads, cur_fn, cur_start, cur_end, max_count)
    return reads


def _emit(reads, function, start, end, max_count):
    # A single span may exceed max_count; split it into full reads plus the remainder.
    while end - start > max_count:
        reads.append((function, start, max_count))
        start += max_count
    reads.append((function, start, end - start))
