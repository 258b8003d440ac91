"""``python -m demo``: run the whole chain for a few simulated days, then write the report.

What runs (all started here, all stopped here, in this order of start):

1. the broker: amqtt in this process on a free loopback port (demo/broker.py), or the
   one ``--broker mqtt://host:port`` names;
2. the gateway: ``GatewayService`` in a thread of this process, with the config written
   to ``<out>/gateway.toml`` (two site thresholds), its SQLite store ``<out>/lantian.db``
   and its JSON-lines log ``<out>/gateway.log``; its clock, and its ingest's, is the
   simulated one (see :func:`ingest_on_clock`);
3. the demo's own subscriber (demo/view.py), which is all the live view looks at;
4. three stations, each a ``DemoRig`` (hil_tests/rig.py's ``StationRig`` with one pty bus
   per UART): pymodbus sensors built from the device profiles, and the real firmware on
   the MicroPython unix port, its flash in ``<out>/.flash-*`` (removed at the end), its
   clock the shared ``SimulatedClock``. The emulators start on the frozen clock; then
   time runs and the three firmware processes boot together.

Simulated time starts at local midnight of Monday 2019-11-18 (+08:00) and runs
``--speed`` times faster than real time (1440 by default: a day a minute). Devices are
polled every 30 simulated seconds (the field polls every few seconds; at this speed a
9600-baud transaction of ~13 real ms already costs ~19 simulated seconds of bus time), and
the stations' ``validity_fraction`` is 0.5, so a minute counts with one of its two
samples: a poll that the loaded host delays across a minute boundary must not void a
minute. The hourly rule the gateway applies is the regulatory one (≥ 45 minutes).

The scenario, on top of the emulators' own signals (hil_tests/signals.py):

* yb-town-01, 02:00-02:20 on the first day: the PM monitor reports "no data" (its
  missing-value marker), so PM2.5 and PM10 minutes are flagged D; the 02:00 hour has
  about 40 valid minutes and is invalid (reason: its most severe flag, ``instrument_fault``,
  or ``communication_failure`` if a late poll left a B minute too); the day stays valid.
* yb-site-07, 09:00-12:30 on the second day: earthworks add up to 260 µg/m³ of PM10;
  the site threshold (``construction_dust_pm10_1h``, 150 µg/m³, an unconfirmed
  placeholder) raises an alarm once and clears it once.
* yb-town-01, from 06:00 on the second day: regional haze builds up (PM x 3 by 20:00),
  so the AQI climbs through its colours.
* yb-plant-02: the VOC emulator's own release episodes cross the fence-line threshold
  (custom, 1.0 mg/m³ hourly TVOC) a few times.

At the end the stations are cut (SIGKILL: the broker publishes their last-will), the
gateway ingests what is left, publishes its outbox and stops, and the report is written.
The demo then checks that it left no child process behind. Exit code 0 when all went
well; 1 when a part failed (the message says which); 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import FrameType
from typing import Any

from demo.broker import BrokerHandle, start_broker
from demo.view import DemoState, make_view
from hil_tests.emulator import EmulatedBus, EmulatedSensor
from hil_tests.rig import DeviceSpec, StationRig
from hil_tests.signals import SimulatedClock

TZ = timezone(timedelta(hours=8))
DAY0 = datetime(2019, 11, 18, tzinfo=TZ)  # a Monday, in the district plan's years
DAY_S = 86400
T0 = int(DAY0.timestamp()) + 1  # stations boot just after local midnight
POLL_S = 30
MINUTE_FRACTION = 0.5  # 2 samples a minute; a minute counts with 1 (see module doc)
DEFAULT_SPEED = 1440.0  # a simulated day per real minute
DEFAULT_DAYS = 2.0
QUICK_DAYS = 0.25
GATEWAY_ID = "yb-gw-demo"
# Files the demo writes in --out (removed first, so a run never mixes with an older one).
OUTPUTS = (
    "lantian.db",
    "lantian.db-wal",
    "lantian.db-shm",
    "gateway.toml",
    "gateway.log",
    "keys.json",
    "published.jsonl",
    "demo.json",
    "index.html",
    "hourly.html",
)


@dataclass(frozen=True)
class DemoStation:
    station: str
    title: str
    devices: tuple[DeviceSpec, ...]
    uarts: tuple[int, ...] = ()  # the UART of each device (default: all on UART 1)

    @property
    def channels(self) -> list[str]:
        return [ch for d in self.devices for ch in d.channels]


TOWN = DemoStation(
    "yb-town-01",
    "town ambient (PM, NOx)",
    (
        DeviceSpec("pm", "particulate", 1, POLL_S, {"pm25": "pm25", "pm10": "pm10"}, seed=3),
        DeviceSpec(
            "nox", "nox-analyser", 2, POLL_S, {"no": "no", "no2": "no2", "nox": "nox"}, seed=3
        ),
    ),
    uarts=(1, 2),  # two RS-485 ports: a 9600-baud bus has room for one device at this speed
)
SITE = DemoStation(
    "yb-site-07",
    "construction-site dust (PM10)",
    (DeviceSpec("pm", "particulate", 1, POLL_S, {"pm10": "pm10"}, seed=6),),
)
PLANT = DemoStation(
    "yb-plant-02",
    "enterprise fence-line VOC",
    (DeviceSpec("voc", "voc-pid", 1, POLL_S, {"tvoc": "tvoc"}, seed=1),),
)
STATIONS = (TOWN, SITE, PLANT)

SCENARIO_NOTE = (
    "events: day 1 02:00 town PM monitor 20 min without data · day 2 09:00-12:30 site "
    "earthworks · day 2 haze in town"
)


class DemoRig(StationRig):
    """A ``StationRig`` with one emulated RS-485 bus per UART (hil_tests' rig puts every
    device on UART 1). At 1440x a 9600-baud transaction of ~13 real ms costs ~19
    simulated seconds of bus time, so the town's two instruments get a port each."""

    def __init__(
        self, root: Path, station: DemoStation, broker_port: int, clock: SimulatedClock, **kw: Any
    ) -> None:
        super().__init__(root, station.station, broker_port, clock, list(station.devices), **kw)
        uarts = station.uarts or (1,) * len(station.devices)
        self.uart_of = {d.name: u for d, u in zip(station.devices, uarts, strict=True)}
        self.uart_buses: dict[int, EmulatedBus] = {
            u: (self.bus if u == 1 else EmulatedBus()) for u in sorted(set(uarts))
        }
        template = self.config["buses"][0]
        self.config["buses"] = [
            {**template, "name": f"rs485-{u}", "uart": u} for u in self.uart_buses
        ]
        for dev in self.config["devices"]:
            dev["bus"] = f"rs485-{self.uart_of[dev['name']]}"

    def start_emulators(self) -> None:
        """Flash files and emulated sensors; the firmware is launched separately, so that
        all three stations boot together once simulated time runs."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.json").write_text(json.dumps(self.config), encoding="utf-8")
        (self.root / "key.bin").write_bytes(self.key)
        for d in self.devices:
            bus = self.uart_buses[self.uart_of[d.name]]
            self.sensors[d.name] = EmulatedSensor(
                d.profile, d.address, clock=self.clock, seed=d.seed, bus=bus
            )
        for sensor in self.sensors.values():
            sensor.start()

    def start(self) -> DemoRig:
        self.start_emulators()
        self.launch()
        return self

    def env(self) -> dict[str, str]:
        env = super().env()
        for u, bus in self.uart_buses.items():
            env[f"LANTIAN_UART_{u}"] = bus.port_path
        return env


# ------------------------------------------------------------------ scenario
def _smoothstep(x: float) -> float:
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def local_ts(day: int, hour: float) -> float:
    """UTC epoch seconds of ``hour`` o'clock local on simulated day ``day`` (1-based)."""
    return DAY0.timestamp() + (day - 1) * DAY_S + hour * 3600.0


def dust_extra(t: float) -> float:
    """Earthworks at the site, day 2 09:00-12:30: up to 260 µg/m³ of PM10 (20-min ramps)."""
    start, end, ramp = local_ts(2, 9.0), local_ts(2, 12.5), 1200.0
    return 260.0 * _smoothstep((t - start) / ramp) * _smoothstep((end - t) / ramp)


def haze_factor(t: float) -> float:
    """Regional haze over the town from day 2: PM x1 at 06:00 rising to x3 by 20:00."""
    return 1.0 + 2.0 * _smoothstep((t - local_ts(2, 6.0)) / (14 * 3600.0))


OUTAGE = (local_ts(1, 2.0), local_ts(1, 2.0) + 20 * 60)  # town PM "no data", day 1


def shape(rig: StationRig, device: str, channel: str, fn: Callable[[float, float], float]) -> None:
    """Make an emulated channel serve ``fn(t, signal(t))`` instead of its signal.

    Harness access to the emulator's per-channel signal function (the demo, like the
    tests, may reach into hil_tests): the value is a pure function of simulated time, so
    the episode lands on the same minutes at any speed.
    """
    ch = rig.sensors[device]._channel(channel)
    base = ch.signal
    ch.signal = lambda t, seed, _base=base: fn(t, _base(t, seed))


class Scenario(threading.Thread):
    """Timed emulator events (the town PM monitor's outage), in simulated time."""

    def __init__(self, clock: SimulatedClock, town: StationRig, stop: threading.Event) -> None:
        super().__init__(name="demo-scenario", daemon=True)
        self.clock = clock
        self.town = town
        self.stop_event = stop
        self.log: list[str] = []

    def _wait_until(self, t: float) -> bool:
        while not self.stop_event.is_set():
            left = t - self.clock.now()
            if left <= 0:
                return True
            self.stop_event.wait(min(1.0, max(0.0005, left / max(self.clock.speed, 1.0))))
        return False

    def run(self) -> None:
        pm = self.town.sensors["pm"]
        if not self._wait_until(OUTAGE[0]):
            return
        pm.set_missing("pm25")
        pm.set_missing("pm10")
        self.log.append(f"outage start {self.clock.now():.0f}")
        if not self._wait_until(OUTAGE[1]):
            return
        pm.set_missing("pm25", False)
        pm.set_missing("pm10", False)
        self.log.append(f"outage end {self.clock.now():.0f}")


# ------------------------------------------------------------------ gateway config
def gateway_toml(host: str, port: int, gateway_id: str) -> str:
    return f"""# Written by the demo (demo/run.py); docs/gateway.md explains every key.
[gateway]
id = "{gateway_id}"
db = "lantian.db"
keys = "keys.json"
utc_offset = "+08:00"
grace_s = 3600                 # simulated seconds: the gateway runs on the demo's clock
log_level = "info"
log_file = "gateway.log"

[mqtt]
host = "{host}"
port = {port}

[rules]
ruleset = "GB3095-2012/HJ663-2013"
limit_set = "GB3095-2012-II"
aqi = "HJ633-2012"

[batch]
ingest_flush_s = 0.1
engine_interval_s = 0.25
status_interval_s = 1.0
shutdown_timeout_s = 5.0

# The construction site's PM10 warning threshold: the built-in placeholder (150 ug/m3,
# confirmed = false: the district plan names no number; set the site's real value).
[[thresholds]]
station = "yb-site-07"
channel = "pm10"
builtin = "construction_dust_pm10_1h"

# The enterprise's fence-line VOC threshold: a custom, local setting.
[[thresholds]]
station = "yb-plant-02"
channel = "tvoc"
name = "fence_tvoc_1h"
value = 1.0
unit = "mg/m3"
averaging = "1h"
source = "demo: the enterprise's permit value (illustrative)"
"""


def ingest_on_clock(now: Callable[[], float]) -> None:
    """Give the gateway's ingest the demo's simulated clock.

    ``gateway.ingest.Ingestor`` takes the gateway's clock (``now=``) for its timestamp
    checks (``future_timestamp`` / ``past_timestamp``), but ``GatewayService`` builds it
    without passing its own ``clock``, so in simulated 2019 every record would be
    rejected as more than 400 days old. The service looks ``Ingestor`` up on the module
    when its ingest thread starts; this puts a subclass there whose default ``now`` is
    the simulated clock (an explicit ``now=`` still wins).
    """
    from gateway import ingest

    base = getattr(ingest.Ingestor, "_demo_base", ingest.Ingestor)

    class SimulatedClockIngestor(base):  # type: ignore[misc, valid-type]
        _demo_base = base

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("now", now)
            super().__init__(*args, **kwargs)

    ingest.Ingestor = SimulatedClockIngestor  # type: ignore[misc]


# ------------------------------------------------------------------ process checks
def child_pids() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):
            pids.update(int(p) for p in (task / "children").read_text().split())
    return pids


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text`` (the demo's own folders)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd:
            found.append((int(entry.name), cmd.strip()))
    return found


# ------------------------------------------------------------------ the run
class DemoFailed(RuntimeError):
    pass


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.days = float(args.days)
        self.speed = float(args.speed)
        # The run ends once a minute of the next hour has closed the last one (at most
        # half an hour later), a few simulated minutes after the last hour.
        self.end_ts = T0 + self.days * DAY_S + 120
        self.clock = SimulatedClock(start=T0, speed=0.0)  # frozen until the stations boot
        self.broker: BrokerHandle | None = None
        self.state: DemoState | None = None
        self.rigs: list[StationRig] = []
        self.service: Any = None
        self.gateway_thread: threading.Thread | None = None
        self.gateway_stop = threading.Event()
        self.gateway_rc: int | None = None
        self.scenario_stop = threading.Event()
        self.scenario: Scenario | None = None
        self.flash: tempfile.TemporaryDirectory[str] | None = None
        self.view: Any = None
        self.summary: dict[str, Any] = {}
        self.stop_errors: list[str] = []

    @property
    def flash_dir(self) -> str:
        assert self.flash is not None
        return self.flash.name

    def say(self, text: str) -> None:
        print(f"demo: {text}", flush=True)

    # -------------------------------------------------------------- steps
    def prepare_out(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUTS:
            with contextlib.suppress(FileNotFoundError):
                (self.out / name).unlink()
        # The stations' flash (config, key, ring, audit log), removed at the end; inside
        # --out so that a process check can find anything started for this run.
        self.flash = tempfile.TemporaryDirectory(prefix=".flash-", dir=self.out)

    def start_broker(self) -> None:
        self.broker = start_broker(self.args.broker, say=self.say)
        self.say(f"broker: {self.broker.kind} on {self.broker.host}:{self.broker.port}")

    def start_gateway(self, keys: dict[str, bytes]) -> None:
        from gateway import logging as gateway_logging
        from gateway.config import load_config
        from gateway.keys import KeyStore
        from gateway.service import GatewayService

        assert self.broker is not None
        store = KeyStore.load(self.out / "keys.json", missing_ok=True)
        for station, key in keys.items():
            store.add(station, key)  # atomic, mode 0600
        gateway_id = (
            GATEWAY_ID if self.args.broker is None else f"{GATEWAY_ID}-{secrets.token_hex(3)}"
        )
        path = self.out / "gateway.toml"
        path.write_text(
            gateway_toml(self.broker.host, self.broker.port, gateway_id), encoding="utf-8"
        )
        self.config = load_config(path)
        ingest_on_clock(self.clock.now)
        gateway_logging.configure(self.config.log_level, self.config.log_file)
        self.service = GatewayService(self.config, clock=self.clock.now)

        def run() -> None:
            self.gateway_rc = self.service.run(self.gateway_stop)

        self.gateway_thread = threading.Thread(target=run, name="demo-gateway", daemon=True)
        self.gateway_thread.start()

    def wait_gateway_connected(self, timeout: float = 30.0) -> None:
        """Until the gateway's ingest and publisher are connected to the broker."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.service.counters.snapshot()
            if c.get("mqtt.connects", 0) >= 1 and c.get("publisher.connects", 0) >= 1:
                return
            if self.gateway_thread is not None and not self.gateway_thread.is_alive():
                raise DemoFailed(f"the gateway stopped at start; see {self.config.log_file}")
            time.sleep(0.05)
        raise DemoFailed(
            f"the gateway did not connect within {timeout} s; see {self.config.log_file}"
        )

    def wait_gateway_online(self, timeout: float = 30.0) -> None:
        assert self.state is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.state.lock:
                g = self.state.gateway
                if g.get("online") and g.get("gateway") == self.config.gateway_id:
                    return
            if self.gateway_thread is not None and not self.gateway_thread.is_alive():
                raise DemoFailed(f"the gateway stopped at start; see {self.config.log_file}")
            time.sleep(0.05)
        raise DemoFailed(
            f"the gateway did not come online within {timeout} s; see {self.config.log_file}"
        )

    def start_stations(self, keys: dict[str, bytes]) -> None:
        assert self.broker is not None
        uplink = {
            "host": self.broker.host,
            "port": self.broker.port,
            "keepalive_s": 30,
            "topic_prefix": "lantian/v1",
        }
        for st in STATIONS:
            rig = DemoRig(
                Path(self.flash_dir) / st.station,
                st,
                self.broker.port,
                self.clock,
                key=keys[st.station],
                uplink=uplink,
                validity_fraction=MINUTE_FRACTION,
            )
            self.rigs.append(rig)
            rig.start_emulators()  # simulated time is still frozen at T0
        self.clock.set(T0)
        self.clock.set_speed(self.speed)
        for rig in self.rigs:
            rig.launch()
        town, site = self.rigs[0], self.rigs[1]
        shape(town, "pm", "pm25", lambda t, v: v * haze_factor(t))
        shape(town, "pm", "pm10", lambda t, v: v * haze_factor(t))
        shape(site, "pm", "pm10", lambda t, v: v + dust_extra(t))
        self.scenario = Scenario(self.clock, town, self.scenario_stop)
        self.scenario.start()

    def simulate(self) -> None:
        assert self.view is not None
        span = self.end_ts - T0
        tick = 0.25 if self.view.__class__.__name__ == "LiveView" else 0.2
        started = time.monotonic()
        while True:
            now = self.clock.now()
            frac = (now - T0) / span
            day_n = (now - DAY0.timestamp()) / DAY_S
            real = time.monotonic() - started
            self.view.render(
                now, min(frac, 1.0), day_n, self.days, f"{self.speed:g}x  real {real:4.0f} s"
            )
            if now >= self.end_ts and (self._last_hours_closed() or now >= self.end_ts + 1800):
                return
            for rig in self.rigs:
                if not rig.alive():
                    raise DemoFailed(f"the firmware of {rig.station} exited; it said:\n{rig.log()}")
            if self.gateway_thread is not None and not self.gateway_thread.is_alive():
                raise DemoFailed(f"the gateway stopped; see {self.config.log_file}")
            time.sleep(tick)

    def _last_hours_closed(self) -> bool:
        """Whether every station's last whole hour of the run has been published."""
        assert self.state is not None
        last = int(T0 + self.days * DAY_S) // 3600 * 3600 - 3600
        with self.state.lock:
            return all(
                s.hour is not None and s.hour["hour_ts"] >= last
                for s in self.state.stations.values()
            )

    def stop_stations(self) -> None:
        self.scenario_stop.set()
        if self.scenario is not None:
            self.scenario.join(5)
        for rig in self.rigs:
            rig.kill()  # SIGKILL: a power cut; the broker publishes the station's last-will
        # Then freeze simulated time: the gateway must not close the hours after the end
        # on its (simulated) wall clock while the emulators are being stopped.
        self.clock.set_speed(0.0)
        for rig in self.rigs:
            try:
                rig.stop()  # the emulated sensors and their buses
            except Exception as error:  # keep stopping the others
                self.say(f"warning: stopping {rig.station}: {error!r}")
                self.stop_errors.append(f"{rig.station}: {error!r}")

    def drain_gateway(self, timeout: float = 30.0) -> None:
        """Wait until the gateway has stored what arrived and published its outbox."""
        if self.service is None:
            return
        from gateway import outbox

        deadline = time.monotonic() + timeout
        last, stable_since = -1, time.monotonic()
        while time.monotonic() < deadline:
            received = self.service.counters.snapshot().get("received", 0)
            if received != last:
                last, stable_since = received, time.monotonic()
            with contextlib.closing(
                sqlite3.connect(f"file:{self.config.db_path}?mode=ro", uri=True)
            ) as conn:
                pending = outbox.stats(conn).pending
            if pending == 0 and time.monotonic() - stable_since > 1.0:
                return
            time.sleep(0.1)
        self.say(f"warning: the gateway still had {pending} results to publish after {timeout} s")

    def stop_gateway(self) -> None:
        if self.gateway_thread is None:
            return
        self.gateway_stop.set()
        if self.service is not None:
            self.service.wake()
        self.gateway_thread.join(30)
        if self.gateway_thread.is_alive():
            raise DemoFailed("the gateway did not stop within 30 s")
        self.gateway_thread = None

    def stop_rest(self) -> None:
        if self.state is not None:
            self.state.close()
        if self.broker is not None:
            self.broker.stop()
            self.broker = None

    def save_published(self) -> None:
        assert self.state is not None
        with (self.out / "published.jsonl").open("w", encoding="utf-8") as f:
            for topic, doc in self.state.published:
                f.write(json.dumps({"topic": topic, "payload": doc}, ensure_ascii=False) + "\n")

    def write_report(self) -> Path:
        """The gateway's validity report (index.html) when gateway/report.py exists, and
        the demo's hourly page (hourly.html) in any case; returns the main page."""
        from demo.report import write_report as write_hourly

        main: Path | None = None
        try:
            from gateway.report import write_report  # the product's report
        except ImportError:
            self.say("report: gateway/report.py is not there; the hourly page is the report")
        else:
            main = Path(write_report(self.config.db_path, self.out, config=self.config))
            self.say(f"report: {main} (gateway/report.py: validity over the closed days)")
        hourly = Path(write_hourly(self.config.db_path, self.out, config=self.config))
        self.say(f"report: {hourly} (demo/report.py: hourly values, invalid hours, alarms)")
        return main or hourly

    # -------------------------------------------------------------- main
    def run(self) -> int:
        self.prepare_out()
        keys = {st.station: secrets.token_bytes(32) for st in STATIONS}
        ok = False
        return_code = 1
        try:
            self.start_broker()
            assert self.broker is not None
            header = (
                f"Lantian 蓝天 demo · firmware on MicroPython · gateway {GATEWAY_ID} · "
                f"{self.broker.kind.split()[0]} {self.broker.host}:{self.broker.port}"
            )
            self.state = DemoState([(s.station, s.title, s.channels) for s in STATIONS], TZ)
            self.start_gateway(keys)
            self.wait_gateway_connected()
            self.state.connect(self.broker.host, self.broker.port)
            self.wait_gateway_online()
            self.say(
                f"simulating {self.days:g} day(s) from {DAY0:%Y-%m-%d} 00:00 +08:00 at "
                f"{self.speed:g}x (about {self.days * DAY_S / self.speed:.0f} s); "
                f"gateway log: {self.config.log_file}"
            )
            self.view = make_view(self.state, header, self.args.plain, scenario=SCENARIO_NOTE)
            self.view.start()
            t_sim = time.monotonic()
            self.start_stations(keys)
            self.simulate()
            self.summary["simulated_real_s"] = round(time.monotonic() - t_sim, 1)
            ok = True
        except KeyboardInterrupt:
            self.say("interrupted: stopping everything")
            return_code = 130
        except DemoFailed as error:
            self.say(f"FAILED: {error}")
            return_code = 1
        except Exception:
            import traceback

            traceback.print_exc()
            self.say("FAILED: a bug in the demo (traceback above); stopping everything")
            return_code = 1
        finally:
            self.stop_stations()
            with contextlib.suppress(Exception):
                if ok:
                    self.drain_gateway()
            try:
                self.stop_gateway()
            except DemoFailed as error:
                self.say(f"FAILED: {error}")
                ok = False
            if self.view is not None:
                if ok:
                    time.sleep(0.3)  # the last results on their way to the view
                    now = self.clock.now()
                    self.view.render(
                        now, 1.0, (now - DAY0.timestamp()) / DAY_S, self.days, "done", force=True
                    )
                self.view.stop()
            self.stop_rest()
            if self.flash is not None:
                self.flash.cleanup()
        if not ok:
            return self._process_check() or return_code
        if self.gateway_rc not in (0, None):
            self.say(
                f"FAILED: the gateway exited with {self.gateway_rc}; see {self.config.log_file}"
            )
            return 1
        self.save_published()
        report = self.write_report()
        rc = self._process_check()
        self._write_summary(report)
        self._tell(report)
        return rc

    def _process_check(self) -> int:
        deadline = time.monotonic() + 5
        while True:
            children = child_pids()
            strays = processes_mentioning(self.flash_dir)
            if not children and not strays:
                self.say(
                    "processes: none left behind (broker, emulators, firmware, gateway all stopped)"
                )
                return 0
            if time.monotonic() > deadline:
                self.say(f"FAILED: processes left behind: children {sorted(children)}, {strays}")
                return 1
            time.sleep(0.1)

    def _write_summary(self, report: Path) -> None:
        db = self.config.db_path
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            minutes = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
            hours = conn.execute("SELECT COUNT(*), SUM(valid) FROM hours").fetchone()
            days = conn.execute("SELECT COUNT(*), SUM(valid) FROM days").fetchone()
        self.summary.update(
            {
                "start": DAY0.isoformat(),
                "days": self.days,
                "speed": self.speed,
                "stations": [s.station for s in STATIONS],
                "db": str(db),
                "report": str(report),
                "records": minutes,
                "channel_hours": hours[0],
                "channel_hours_valid": hours[1] or 0,
                "channel_days": days[0],
                "channel_days_valid": days[1] or 0,
                "alarms": len(self.state.alarms) if self.state else 0,
                "published": len(self.state.published) if self.state else 0,
            }
        )
        (self.out / "demo.json").write_text(
            json.dumps(self.summary, indent=1) + "\n", encoding="utf-8"
        )

    def _tell(self, report: Path) -> None:
        s = self.summary
        self.say(
            f"{s['records']} signed minute records stored; {s['channel_hours']} channel-hours "
            f"closed ({s['channel_hours_valid']} valid), {s['channel_days']} channel-days "
            f"({s['channel_days_valid']} valid), {s['alarms']} alarm messages, "
            f"{s['published']} results and alarms published"
        )
        self.say(f"raw minute records and results: {self.config.db_path}")
        self.say(f"open the report: {report}")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m demo", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--days",
        type=float,
        default=None,
        help=f"simulated days (default {DEFAULT_DAYS:g}; --quick: {QUICK_DAYS:g})",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        help="simulated seconds per real second (default %(default)g)",
    )
    p.add_argument(
        "--broker",
        default=None,
        help="use this broker (mqtt://host:port) instead of the embedded amqtt",
    )
    p.add_argument(
        "--out",
        default="out",
        help="folder for the report, the database and the logs (default ./out)",
    )
    p.add_argument(
        "--plain", action="store_true", help="plain periodic lines instead of the live view"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"short run for tests: --days {QUICK_DAYS:g} unless given, plain lines",
    )
    args = p.parse_args(argv)
    if args.days is None:
        args.days = QUICK_DAYS if args.quick else DEFAULT_DAYS
    if args.quick:
        args.plain = True
    if not 0 < args.days <= 31:
        p.error("--days must be in (0, 31]")
    if not 1 <= args.speed <= 10000:
        p.error("--speed must be in [1, 10000]")
    if args.broker is not None:
        from demo.broker import parse_broker_url

        try:
            parse_broker_url(args.broker)
        except ValueError as error:
            p.error(str(error))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The emulators answer the firmware from threads of this process; a 1 ms GIL switch
    # interval (5 ms by default) keeps their answers prompt while the broker and the
    # gateway work beside them.
    sys.setswitchinterval(0.001)
    # Ctrl-C and SIGTERM stop everything cleanly (SIGINT too when the demo was started in
    # the background, where the shell hands it over ignored).
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    return Demo(args).run()
