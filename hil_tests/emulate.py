"""Serve emulated Modbus RTU sensors on a pty for bench work with a real board.

    python -m hil_tests.emulate --profile nox-analyser --pty [--address N] [--seed S]
                                [--speed X] [--start EPOCH] [--warmup busy|silent|missing]
                                [--latency-ms MS] [--wire-time] [--fault SPEC ...]
    python -m hil_tests.emulate --profile particulate@1 --profile nox-analyser@2 --pty
    python -m hil_tests.emulate --list

The first line on stdout is the pty path the board (or a USB-serial bridge such as
``socat``) opens; progress goes to stderr. Serves until SIGINT/SIGTERM, then prints
each device's counters to stderr and exits 0.

``--profile NAME@ADDR`` may repeat: all devices share one bus (one pty). ``--speed X``
runs a simulated clock X times faster than real time from ``--start`` (default now).

Fault specs (apply to every device): ``KIND[=ARG][@PROBABILITY]``, e.g. ``bad_crc@0.05``,
``delay=300``, ``exception=6@0.1``, ``truncate``, ``stray_byte``, ``wrong_address``,
``no_answer@0.02``, ``hang@0.001``; value faults ``nan=CHANNEL`` (missing marker) and
``stuck=CHANNEL``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from hil_tests import signals
from hil_tests.emulator import (
    FAULT_KINDS,
    WARMUP_MODES,
    EmulatedBus,
    EmulatedSensor,
    load_profile,
    profile_names,
)

_ARG_NAMES = {
    "exception": "code",
    "delay": "ms",
    "truncate": "keep",
    "stray_byte": "byte",
    "wrong_address": "to",
}


def parse_fault(spec: str) -> tuple[str, float, str | None]:
    """``KIND[=ARG][@P]`` -> (kind, probability, arg)."""
    body, _, prob = spec.partition("@")
    kind, _, arg = body.partition("=")
    probability = float(prob) if prob else 1.0
    if kind not in (*FAULT_KINDS, "nan", "stuck"):
        raise argparse.ArgumentTypeError(f"unknown fault {kind!r}")
    if kind in ("nan", "stuck") and not arg:
        raise argparse.ArgumentTypeError(f"{kind} needs =CHANNEL")
    return kind, probability, arg or None


def apply_fault(dev: EmulatedSensor, kind: str, probability: float, arg: str | None) -> None:
    if kind == "nan":
        dev.set_missing(arg)  # type: ignore[arg-type]
    elif kind == "stuck":
        dev.stick(arg)  # type: ignore[arg-type]
    else:
        params = {}
        if arg is not None:
            params[_ARG_NAMES[kind]] = int(arg, 0)
        dev.inject(kind, probability, **params)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m hil_tests.emulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--list", action="store_true", help="list the profiles and exit")
    ap.add_argument("--profile", action="append", default=[], metavar="NAME[@ADDR]")
    ap.add_argument("--pty", action="store_true", help="serve on a new pty (the only transport)")
    ap.add_argument("--address", type=int, help="address of a single --profile")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--speed", type=float, default=None, help="simulated clock, X x real time")
    ap.add_argument("--start", type=float, default=None, help="simulated clock start, epoch s")
    ap.add_argument("--warmup", choices=WARMUP_MODES, default=None)
    ap.add_argument("--latency-ms", type=float, default=None)
    ap.add_argument("--wire-time", action="store_true", help="delay answers by wire time")
    ap.add_argument("--fault", action="append", default=[], type=parse_fault, metavar="SPEC")
    args = ap.parse_args(argv)

    if args.list:
        for name in profile_names():
            p = load_profile(name)
            chans = ", ".join(c["name"] for c in p.get("channels", []))
            print(f"{name:<20} {p.get('title', '')} [{chans}]")
        return 0
    if not args.profile:
        ap.error("--profile is required (or --list)")
    if not args.pty:
        ap.error("--pty is required: it is the only transport")

    devices = []
    for i, item in enumerate(args.profile):
        name, _, addr = item.partition("@")
        address = int(addr) if addr else args.address if len(args.profile) == 1 else None
        if address is None:
            address = load_profile(name).get("default_address", 1) + (
                i if len(args.profile) > 1 else 0
            )
        devices.append((name, address))

    if args.speed is None and args.start is None:
        clock: signals.Clock = signals.RealClock()
    else:
        clock = signals.SimulatedClock(args.start, 1.0 if args.speed is None else args.speed)
    first = load_profile(devices[0][0])
    bus = EmulatedBus(**first.get("serial", {}), wire_time=args.wire_time)
    sensors = []
    for i, (name, address) in enumerate(devices):
        dev = EmulatedSensor(
            name,
            address,
            clock,
            args.seed + i,
            bus=bus,
            latency_ms=args.latency_ms,
            warmup=args.warmup,
        )
        for kind, probability, arg in args.fault:
            apply_fault(dev, kind, probability, arg)
        sensors.append(dev)

    stop = threading.Event()
    # Explicit handlers: a shell without job control starts background jobs with SIGINT
    # ignored, and Python then never raises KeyboardInterrupt.
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bus.start()
    try:
        print(bus.port_path, flush=True)
        for dev in sensors:
            print(
                f"{dev.name} at address {dev.address} on {bus.port_path}",
                file=sys.stderr,
                flush=True,
            )
        while not stop.wait(0.2):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        bus.stop()
        for dev in sensors:
            print(
                f"{dev.name}@{dev.address} {dev.counters} faults={dev.fault_counts}",
                file=sys.stderr,
                flush=True,
            )
        print(f"bus {bus.counters}", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
