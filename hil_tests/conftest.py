"""Fixtures for hardware-in-the-loop tests on emulated sensors.

- ``emulator``: a factory ``emulator(profile, address=None, **kw) -> EmulatedSensor``
  (started unless ``start=False``); everything it made is stopped after the test.
- ``emulated_bus``: a factory for ``EmulatedBus`` objects to share one pty between
  several devices; stopped after the test.
- ``broker``, ``subscriber``, ``rig_factory``: a real mosquitto, a subscriber to
  ``lantian/v1/#`` on it, and a factory of ``StationRig`` (real firmware + emulators)
  in simulated time from ``stationkit.T0``; all stopped after the test.
- ``no_leaks`` (autouse): fails a test that leaves threads, file descriptors or child
  processes behind.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hil_tests.broker import Mosquitto
from hil_tests.emulator import EmulatedBus, EmulatedSensor
from hil_tests.rig import DeviceSpec, StationRig
from hil_tests.signals import SimulatedClock
from hil_tests.stationkit import STATION, T0
from hil_tests.subscriber import Subscriber

# 2023-11-14 22:13:20 UTC = 2023-11-15 06:13:20 local (UTC+8), a Wednesday
EPOCH = 1_700_000_000.0


def _fds() -> dict[str, str]:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the fd listdir itself used
            out[name] = os.readlink("/proc/self/fd/" + name)
    return out


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive()}


@pytest.fixture(autouse=True)
def no_leaks():
    threads, fds, children = _threads(), _fds(), _children()
    yield
    deadline = time.monotonic() + 2.0
    while True:
        new_threads = _threads() - threads
        now_fds = _fds()
        new_fds = {k: v for k, v in now_fds.items() if fds.get(k) != v}
        new_children = _children() - children
        if not (new_threads or new_fds or new_children) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems = []
    if new_threads:
        problems.append(f"threads: {sorted(t.name for t in new_threads)}")
    if new_fds:
        problems.append(f"fds: {new_fds}")
    if new_children:
        problems.append(f"child processes: {sorted(new_children)}")
    if problems:
        pytest.fail("test leaked " + "; ".join(problems), pytrace=False)


@pytest.fixture
def sim_clock() -> SimulatedClock:
    """A frozen simulated clock at ``EPOCH``."""
    return SimulatedClock(EPOCH)


@pytest.fixture
def emulator():
    made: list[EmulatedSensor] = []

    def make(profile, address=None, *, start: bool = True, **kw) -> EmulatedSensor:
        sensor = EmulatedSensor(profile, address, **kw)
        made.append(sensor)
        if start:
            sensor.start()
        return sensor

    yield make
    for sensor in reversed(made):
        sensor.stop()
    for sensor in made:
        sensor.bus.stop()


@pytest.fixture
def emulated_bus():
    made: list[EmulatedBus] = []

    def make(**kw) -> EmulatedBus:
        bus = EmulatedBus(**kw)
        made.append(bus)
        return bus

    yield make
    for bus in reversed(made):
        bus.stop()


# ---------------------------------------------------------------- stations end to end
@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    b = Mosquitto()
    try:
        b.start()
        yield b
    finally:
        b.close()


@pytest.fixture
def subscriber(broker: Mosquitto) -> Iterator[Subscriber]:
    s = Subscriber(broker.port, ["lantian/v1/#"])
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def rig_factory(tmp_path: Path) -> Iterator[Any]:
    made: list[StationRig] = []

    def make(
        broker: Mosquitto, devices: list[DeviceSpec], speed: float = 60, **kw: Any
    ) -> StationRig:
        clock = SimulatedClock(start=T0, speed=speed)
        rig = StationRig(tmp_path / f"st{len(made)}", STATION, broker.port, clock, devices, **kw)
        made.append(rig)
        return rig.start()

    yield make
    for rig in made:
        rig.stop()
