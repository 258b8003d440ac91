"""Shared bits of the MicroPython scripts that tests/firmware/test_mqtt.py runs.

Arguments are ``key=value`` words; every script prints one line per event, which the
pytest side reads (MicroPython's print on the unix port is unbuffered).
"""

import sys

sys.path.insert(0, ".")  # run from the repository root: firmware/ and drivers/ import

import asyncio
import time


def args(defaults):
    out = dict(defaults)
    for word in sys.argv[1:]:
        k, v = word.split("=", 1)
        out[k] = int(v) if isinstance(defaults.get(k), int) else v
    return out


def data_topic(cid):
    return b"lantian/v1/station/" + cid.encode() + b"/data"


def status_topic(cid):
    return b"lantian/v1/station/" + cid.encode() + b"/status"


def cmd_topic(cid):
    return b"lantian/v1/station/" + cid.encode() + b"/cmd"


def payload_size(i):
    # Mirrors tests/firmware/test_mqtt.py: 0..299 bytes of filler, and one message of
    # 17000 bytes whose Remaining Length takes three bytes (§2.2.3).
    if i == 100:
        return 17000
    return (i * 37) % 300


def payload(cid, i):
    return cid.encode() + b":" + f"{i:05d}".encode() + b":" + b"x" * payload_size(i)


def print_counters(client):
    names = sorted(client.counters)
    print("COUNTERS " + " ".join(f"{k}={client.counters[k]}" for k in names))


def reason(exc):
    r = getattr(exc, "reason", None)
    if r is not None:
        return r
    if isinstance(exc, OSError) and exc.args:
        return f"errno{exc.args[0]}"
    return type(exc).__name__


class FastClock:
    """A ticks_ms clock running ``scale`` times faster than real time, and the matching
    sleep: keepalive and back-off timers then run that much faster."""

    def __init__(self, scale):
        self.scale = scale
        self.t0 = time.ticks_ms()

    def clock(self):
        return time.ticks_add(0, time.ticks_diff(time.ticks_ms(), self.t0) * self.scale)

    async def sleep_ms(self, ms):
        await asyncio.sleep_ms(max(1, ms // self.scale))
