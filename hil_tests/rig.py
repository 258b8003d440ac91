"""A station under test: emulated sensors on a pty bus + the real firmware on MicroPython.

``StationRig`` writes a station's config and key into a folder, starts its emulated
devices on one ``EmulatedBus`` (UART 1), and launches ``micropython
hil_tests/mp_station.py ROOT`` with the shims' environment: the UART is the bus's pty,
the watchdog feeds go to a file, and time is a ``SimulatedClock`` shared with the
emulators (``LANTIAN_SIM_*``). It can SIGKILL and restart the firmware (a power cut:
the files on "flash" stay), and always stops what it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hil_tests.emulator import EmulatedBus, EmulatedSensor
from hil_tests.signals import SimulatedClock
from tests.tooling import ROOT, micropython_binary


@dataclass
class DeviceSpec:
    """One Modbus device of the station and the channels it feeds."""

    name: str
    profile: str
    address: int
    poll_s: float
    channels: dict[str, str]  # station channel name -> the profile's channel name
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # more device config keys


def station_config(
    station: str, port: int, devices: list[DeviceSpec], **overrides: Any
) -> dict[str, Any]:
    """A schema-1 station config for ``devices`` on one bus and a broker on ``port``."""
    cfg: dict[str, Any] = {
        "schema": 1,
        "station": station,
        "buses": [
            {"name": "rs485a", "uart": 1, "baudrate": 9600, "bits": 8, "parity": None, "stop": 1}
        ],
        "devices": [
            {
                "name": d.name,
                "bus": "rs485a",
                "profile": d.profile,
                "address": d.address,
                "poll_s": d.poll_s,
                "fail_limit": 3,
                "backoff_s": 60,
                **d.extra,
            }
            for d in devices
        ],
        "channels": [
            {"name": ch, "device": d.name, "source": src}
            for d in devices
            for ch, src in d.channels.items()
        ],
        "uplink": {
            "host": "127.0.0.1",
            "port": port,
            "keepalive_s": 30,
            "topic_prefix": "lantian/v1",
        },
        "validity_fraction": 0.75,
        "store": {"dir": "ring", "slot_size": 1024, "segments": 16, "slots_per_segment": 16},
        "time": {"ntp_host": None, "utc_offset_h": 8},
        "watchdog": {"timeout_ms": 8000},
    }
    cfg.update(overrides)
    return cfg


class StationRig:
    """Emulated devices + the real firmware process for one station."""

    def __init__(
        self,
        root: Path,
        station: str,
        broker_port: int,
        clock: SimulatedClock,
        devices: list[DeviceSpec],
        key: bytes | None = None,
        unsynced: bool = False,
        heapsize: str = "1M",
        **config_overrides: Any,
    ) -> None:
        self.root = root
        self.station = station
        self.clock = clock
        self.devices = devices
        self.key = key if key is not None else (station.encode() * 4)[:32].ljust(32, b"k")
        self.unsynced = unsynced
        self.heapsize = heapsize
        self.config = station_config(station, broker_port, devices, **config_overrides)
        self.bus = EmulatedBus()
        self.sensors: dict[str, EmulatedSensor] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.output: list[str] = []
        self._reader: threading.Thread | None = None
        self.starts = 0

    # -------------------------------------------------------------- lifecycle
    def start(self) -> StationRig:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.json").write_text(json.dumps(self.config), encoding="utf-8")
        (self.root / "key.bin").write_bytes(self.key)
        for d in self.devices:
            self.sensors[d.name] = EmulatedSensor(
                d.profile, d.address, clock=self.clock, seed=d.seed, bus=self.bus
            )
        for s in self.sensors.values():
            s.start()
        self.launch()
        return self

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "LANTIAN_UART_1": self.bus.port_path,
                "LANTIAN_WDT_FILE": str(self.root / "wdt"),
                "LANTIAN_SIM_SPEED": repr(self.clock.speed),
                "LANTIAN_SIM_T0": repr(self.clock.now()),
                "LANTIAN_SIM_WALL0": repr(time.time()),
            }
        )
        if self.unsynced:
            env["LANTIAN_SIM_UNSYNCED"] = "1"
        return env

    def launch(self) -> None:
        """Start (or restart) the firmware process; the files in ``root`` persist."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("firmware already running")
        self.proc = subprocess.Popen(
            [
                micropython_binary(),
                "-X",
                f"heapsize={self.heapsize}",
                "hil_tests/mp_station.py",
                str(self.root),
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1
        proc = self.proc
        self._reader = threading.Thread(
            target=self._read_output, args=(proc,), name=f"rig-{self.station}", daemon=True
        )
        self._reader.start()

    def _read_output(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.output.append(line.decode(errors="replace").rstrip("\n"))
        proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL the firmware (a power cut for the process; files stay)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        if self._reader is not None:
            self._reader.join(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        self.kill()
        for s in self.sensors.values():
            s.stop()
        self.sensors.clear()

    def __enter__(self) -> StationRig:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        return "\n".join(self.output[-200:])

    def audit_lines(self) -> list[dict[str, Any]]:
        path = self.root / "audit.log"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
