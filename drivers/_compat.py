"""Interpreter differences between MicroPython and CPython, chosen once.

drivers/ runs unchanged on both. MicroPython has ``micropython.const`` and the
``time.ticks_*`` family (wrapping millisecond counters); CPython has neither, so this
module supplies equivalents built on ``time.monotonic``. Import the names from here,
never from ``time`` directly.
"""

import time

try:
    from micropython import const  # type: ignore[import-not-found]
except ImportError:  # CPython

    def const(x):  # type: ignore[no-redef,misc]
        return x


try:
    ticks_ms = time.ticks_ms  # type: ignore[attr-defined]
    ticks_us = time.ticks_us  # type: ignore[attr-defined]
    ticks_diff = time.ticks_diff  # type: ignore[attr-defined]
    ticks_add = time.ticks_add  # type: ignore[attr-defined]
    sleep_ms = time.sleep_ms  # type: ignore[attr-defined]
    sleep_us = time.sleep_us  # type: ignore[attr-defined]
except AttributeError:  # CPython: unbounded ints, so no wrap-around to handle

    def ticks_ms():  # type: ignore[misc]
        return int(time.monotonic() * 1000)  # type: ignore[attr-defined]

    def ticks_us():  # type: ignore[misc]
        return int(time.monotonic() * 1000000)  # type: ignore[attr-defined]

    def ticks_diff(a, b):  # type: ignore[misc]
        return a - b

    def ticks_add(a, b):  # type: ignore[misc]
        return a + b

    def sleep_ms(ms):  # type: ignore[misc]
        time.sleep(ms / 1000)

    def sleep_us(us):  # type: ignore[misc]
        time.sleep(us / 1000000)


IS_MICROPYTHON = False
try:
    import sys

    IS_MICROPYTHON = sys.implementation.name == "micropython"
except AttributeError:
    pass
