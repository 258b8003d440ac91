"""Drive a ring from the command line, on the real micropython binary.

    micropython tests/firmware/mp/store_cli.py <ring dir> <command>...

Opens the ring (prints ``O <next_seq> <fill> <corrupt_skipped>``), then runs each command:

    append:N   append N self-checking records, print ``A <seq>`` for each
    peek       print ``P <seq> ok|bad`` or ``P none``
    ack:S      print ``K <S> True|False``
    drain      peek+ack until empty, print ``R <seq> ok|bad`` for each
    stats      print ``S appended sent dropped corrupt_skipped fill capacity next_seq``
    reopen     close, open again, print the ``O`` line
"""

import sys

sys.path.insert(0, ".")

from records import SEGMENTS, SLOT_SIZE, SLOTS_PER_SEGMENT, check_payload, make_payload

from firmware.store import Ring


def _open(directory):
    ring = Ring(directory, SLOT_SIZE, SLOTS_PER_SEGMENT, SEGMENTS)
    print("O", ring.next_seq, ring.fill, ring.corrupt_skipped)
    return ring


def main(directory, commands):
    ring = _open(directory)
    for cmd in commands:
        name, _, arg = cmd.partition(":")
        if name == "append":
            for _ in range(int(arg)):
                print("A", ring.append(make_payload(ring.next_seq)))
        elif name == "peek":
            rec = ring.peek()
            if rec is None:
                print("P none")
            else:
                print("P", rec[0], "ok" if check_payload(rec[0], rec[1]) else "bad")
        elif name == "ack":
            print("K", arg, ring.ack(int(arg)))
        elif name == "drain":
            while True:
                rec = ring.peek()
                if rec is None:
                    break
                print("R", rec[0], "ok" if check_payload(rec[0], rec[1]) else "bad")
                ring.ack(rec[0])
        elif name == "stats":
            c = ring.counters()
            print(
                "S",
                c["appended"],
                c["sent"],
                c["dropped"],
                c["corrupt_skipped"],
                c["fill"],
                c["capacity"],
                c["next_seq"],
            )
        elif name == "reopen":
            ring.close()
            ring = _open(directory)
        else:
            raise ValueError("unknown command " + cmd)
    ring.close()


main(sys.argv[1], sys.argv[2:])
