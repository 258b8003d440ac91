"""Issue 7 item 3: the station firmware's cost per poll, heap growth and peak heap.

Runs ``bench/mp/firmware_bench.py`` on the real MicroPython unix port (its docstring says
what is measured and how) with the firmware compiled by ``mpy-cross``, as it is deployed,
into a temporary folder, and a heap of ``HEAPSIZE`` (``micropython -X heapsize=``).
Takes the medians of its runs and relates the CPU per poll to the transaction's time on
the wire (``drivers.modbus.rtu.wire_time_us`` for request and response, plus the two
t3.5 silences around them; 11 bits per character, the firmware's default, as the bus
master assumes).

The headline figures are those of the heaviest transaction of the HIL station: the NOx
analyser (7 registers, three float32 channels and a status register); the particulate
monitor's are in ``devices``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from drivers.modbus import rtu
from tests.tooling import ROOT, micropython_binary, mpy_cross_binary

SCRIPT = "bench/mp/firmware_bench.py"
HEAPSIZE = "512K"  # -X heapsize: room for the unix port's 64-bit objects (docs)
HEADLINE_DEVICE = "nox-analyser"
BITS_PER_CHAR = 11  # firmware/bus.py default (start, 8 data, parity or 2nd stop, stop)
BAUD_RATES = (9600, 115200)


def wire_us(baudrate: int, request_len: int, response_len: int) -> int:
    """Request and response on the wire plus the t3.5 silence before each frame."""
    # drivers/ is the untyped MicroPython subset
    frames = rtu.wire_time_us(baudrate, request_len, response_len, BITS_PER_CHAR)  # type: ignore[no-untyped-call]
    gap = rtu.frame_gap_us(baudrate, BITS_PER_CHAR)  # type: ignore[no-untyped-call]
    return int(frames + 2 * gap)


def compile_firmware(out: Path) -> None:
    """drivers/ and firmware/ as .mpy under ``out`` (and the device profiles beside)."""
    mpy_cross = mpy_cross_binary()
    for package in ("drivers", "firmware"):
        for source in sorted((ROOT / package).rglob("*.py")):
            rel = source.relative_to(ROOT)
            target = out / rel.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                [mpy_cross, "-o", str(target), str(rel)], cwd=ROOT, check=True, timeout=60
            )
    shutil.copytree(ROOT / "drivers" / "profiles", out / "drivers" / "profiles")


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def run(quick: bool = False, runs: int = 5) -> dict[str, Any]:
    polls = 300 if quick else 4000
    cycles = 60 if quick else 600
    with tempfile.TemporaryDirectory(prefix="lantian-bench-fw-") as tmp:
        mpy_dir = Path(tmp) / "mpy"
        compile_firmware(mpy_dir)
        station_root = Path(tmp) / "station"
        station_root.mkdir()
        argv = [
            micropython_binary(),
            "-X",
            f"heapsize={HEAPSIZE}",
            SCRIPT,
            str(station_root),
            str(polls),
            str(runs),
            str(cycles),
            str(mpy_dir),
        ]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"{SCRIPT} failed:\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(proc.stdout.splitlines()[-1])

    devices: dict[str, Any] = {}
    for name, d in raw["devices"].items():
        cpu = _median(d["cpu_us"])
        entry: dict[str, Any] = {
            "cpu_us_per_poll": cpu,
            "transaction_us": _median(d["transaction_us"]),
            "decode_us": _median(d["decode_us"]),
            "calibrate_and_aggregate_us": _median(d["hand_us"]),
            "fake_port_us": _median(d["port_us"]),
            "alloc_bytes_per_poll": d["alloc_bytes_per_poll"],
            "channels": d["channels"],
            "request_bytes": d["request_len"],
            "response_bytes": d["response_len"],
            "all_polls_ok": d["state"] == "ok",
        }
        for baud in BAUD_RATES:
            wire = wire_us(baud, d["request_len"], d["response_len"])
            entry[f"wire_us_{baud}"] = wire
            entry[f"cpu_over_wire_{baud}"] = cpu / wire
        devices[name] = entry
        if not entry["all_polls_ok"]:
            raise RuntimeError(f"firmware bench: {name} polls failed: {d}")

    head = devices[HEADLINE_DEVICE]
    heap = raw["heap"]
    return {
        "cpu_us_per_poll": head["cpu_us_per_poll"],
        "cpu_over_wire_9600": head["cpu_over_wire_9600"],
        "cpu_over_wire_115200": head["cpu_over_wire_115200"],
        "heap_growth_bytes_per_cycle": _median(heap["growth_bytes_per_cycle"]),
        "peak_heap_bytes": _median(heap["peak_bytes"]),
        "headline_device": HEADLINE_DEVICE,
        "devices": devices,
        "heap": {
            "live_bytes": _median(heap["live_bytes"]),
            "modules_bytes": heap["modules_bytes"],
            "minute_record_step_bytes": _median(heap["minute_step_bytes"]),
            "status_step_bytes": _median(heap["status_step_bytes"]),
            "minute_step_parts_bytes": heap["minute_step_parts"],
            "heapsize": HEAPSIZE,
            "heap_total_bytes": heap["heap_total_bytes"],
            "growth_cycles_per_run": heap["cycles"],
            "cycle": "one poll of each device; a minute record closed, signed and stored "
            "every 12 cycles",
            "peak_how": "max gc.mem_alloc() with the collector off, from the collected live "
            "heap of a constructed Station, across (a) minute close + record + HMAC + ring "
            "append and (b) status dict + JSON + HMAC",
            "growth_runs": heap["growth_bytes_per_cycle"],
            "peak_runs": heap["peak_bytes"],
        },
        "polls_per_run": polls,
        "runs": runs,
        "micropython": raw["micropython"],
        "firmware_form": "mpy-cross .mpy",
    }
