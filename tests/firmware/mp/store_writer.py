"""Station-like writer for the power-loss tests, run on the real micropython binary.

    micropython tests/firmware/mp/store_writer.py <ring dir> <seed> <tear_at_op>

Opens the ring, then forever: takes ``next_seq``, appends a self-checking payload for
it, prints ``A <seq>`` once ``append`` returned; now and then peeks the oldest record,
prints ``P <seq> ok|bad``, acknowledges it and prints ``K <seq>``. Prints go straight to
the stdout fd (the unix port does not buffer), so the test knows every seq that was
handed out before the process died.

``tear_at_op`` 0: runs until SIGKILLed. Otherwise the ring writes through
hil_tests/tornfs.py, which fails the power at that mutating operation; the script then
prints ``TORN ...`` and exits with status 3.
"""

import sys

sys.path.insert(0, ".")

from records import (
    SEGMENTS,
    SLOT_SIZE,
    SLOTS_PER_SEGMENT,
    Xorshift,
    check_payload,
    make_payload,
)

from firmware.store import Ring
from hil_tests.tornfs import PowerLoss, TornFs


def emit(line):
    # One write(2) per line: a SIGKILL never leaves half a line that parses as another.
    sys.stdout.write(line + "\n")


def main(directory, seed, tear_at):
    fs = TornFs(tear_at, seed=seed) if tear_at else None
    rng = Xorshift(seed)
    ack_rate = 1 + rng.below(3)  # acks per 4 appends: 1..3, so some runs fill the ring
    try:
        ring = Ring(directory, SLOT_SIZE, SLOTS_PER_SEGMENT, SEGMENTS, fs=fs)
        emit(f"O {ring.next_seq} {ring.fill} {ring.corrupt_skipped}")
        for _ in range(1000000):
            seq = ring.next_seq
            got = ring.append(make_payload(seq))
            emit(f"A {got}")
            if rng.below(4) < ack_rate:
                rec = ring.peek()
                if rec is not None:
                    s = rec[0]
                    emit(f"P {s} {'ok' if check_payload(s, rec[1]) else 'bad'}")
                    ring.ack(s)
                    emit(f"K {s}")
    except PowerLoss:
        emit(fs.report())
        sys.exit(3)


main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
