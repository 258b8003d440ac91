"""Launcher for the real station firmware on the MicroPython unix port (HIL tests, demo).

Run from the repository root::

    micropython hil_tests/mp_station.py ROOT

``ROOT`` holds ``config.json`` and ``key.bin`` (and receives the ring, audit log and
calibration state). The ``machine``/``network`` shims in hil_tests/mpshim are put first
on the path, so each UART is the pty named by ``LANTIAN_UART_<id>``.

Simulated time, shared with the emulators of the CPython side: with
``LANTIAN_SIM_SPEED`` set, the station's clock is a ``SimulatedClock`` that was at
``LANTIAN_SIM_T0`` (epoch seconds) when the wall clock read ``LANTIAN_SIM_WALL0``; both
processes then agree on simulated time to within a few ms x speed. ``LANTIAN_SIM_UNSYNCED``
boots the clock as not yet synced (records flagged ``time_valid: false``).
Without ``LANTIAN_SIM_SPEED`` the station runs on the system clock, as on a board.
"""

import os
import sys
import time

sys.path.insert(0, "hil_tests/mpshim")
sys.path.insert(1, ".")

from firmware.clock import SimulatedClock, SystemClock
from firmware.main import run


def _clock():
    speed = os.getenv("LANTIAN_SIM_SPEED")
    if not speed:
        return SystemClock()
    speed = float(speed)
    t0 = float(os.getenv("LANTIAN_SIM_T0"))
    wall0 = float(os.getenv("LANTIAN_SIM_WALL0"))
    now = time.time_ns() / 1e9
    synced = not os.getenv("LANTIAN_SIM_UNSYNCED")
    return SimulatedClock(t0 + (now - wall0) * speed, speed, synced=synced)


run(root=sys.argv[1], clock=_clock())
