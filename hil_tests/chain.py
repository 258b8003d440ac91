"""The whole chain under test: N stations + one gateway + a subscriber to its results.

    emulated sensors (pty) -> firmware (MicroPython unix port) -> mosquitto -> gateway
        (``python -m gateway run --config FILE``, a subprocess) -> results subscriber

All stations share one ``SimulatedClock`` (one time origin, one speed) with their
emulators; the broker, the gateway and the subscriber are shared. The gateway runs the
real CLI on the wall clock, exactly as in the field: simulated time therefore starts a
few days in the past (``day_before_today``), inside the ingest's accepted window and
never ahead of the wall clock, and every hour closes on the data watermark (the wall-clock
grace of ``grace_s`` real seconds never expires during a run).

A run is driven by :meth:`Chain.run_until`, which executes timed actions (a sensor
unplugged, a broker outage, a gateway SIGKILL...) when the simulated clock reaches their
time and records the simulated moment each one really happened (``events``), so that
tests derive their expectations from what was done, not from what was planned. Every wait
is bounded and fails with the firmware's log tail, the gateway's log and the broker's log
(:meth:`Chain.diagnostics`). :meth:`Chain.stop` stops everything it started.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import GatewayConfig
from gateway.keys import KeyStore
from gateway.results import day_start, local_date
from hil_tests.broker import Mosquitto
from hil_tests.emulator import EmulatedSensor
from hil_tests.rig import DeviceSpec, StationRig
from hil_tests.signals import SimulatedClock
from tests.tooling import ROOT

UTC8 = 8 * 3600
PREFIX = "lantian/v1"
GATEWAY_ID = "gw-hil"


def day_before_today(days: int = 3) -> date:
    """The local (UTC+8) calendar day ``days`` before today: simulated days run there."""
    return local_date(int(time.time()), UTC8) - timedelta(days=days)


# ---------------------------------------------------------------- stations


@dataclass
class StationSpec:
    """One station of the chain: its devices (one RS-485 bus) and config overrides."""

    name: str
    devices: list[DeviceSpec]
    unsynced: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


class ChainStation(StationRig):
    """A ``StationRig`` whose emulators start before (and apart from) its firmware, so a
    chain can start every emulator on a frozen clock and then boot all firmware at once."""

    port_path = ""

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "config.json").write_text(json.dumps(self.config), encoding="utf-8")
        (self.root / "key.bin").write_bytes(self.key)
        for d in self.devices:
            self.sensors[d.name] = EmulatedSensor(
                d.profile, d.address, clock=self.clock, seed=d.seed, bus=self.bus
            )
        for s in self.sensors.values():
            s.start()
        self.emulators = dict(self.sensors)  # still readable (held values) after stop()
        self.port_path = self.bus.port_path

    def tail(self, n: int = 25) -> str:
        return "\n".join(self.output[-n:])


# ---------------------------------------------------------------- the gateway process


class GatewayProcess:
    """``python -m gateway run --config FILE`` with its JSON-lines log in a file."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.exit_codes: list[int] = []

    def start(self) -> None:
        if self.alive():
            raise RuntimeError("gateway already running")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash: nothing flushed, nothing said)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.exit_codes.append(self.proc.wait(10))
        self.proc = None

    def terminate(self, timeout: float = 30) -> int | None:
        """SIGTERM, the clean stop; the exit code (None when it was not running)."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        code = int(proc.returncode)
        self.exit_codes.append(code)
        return code

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out


# ---------------------------------------------------------------- the subscriber


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    dup: bool
    retain: bool


class ResultSubscriber:
    """A persistent-session QoS 1 subscriber that keeps each message's DUP flag.

    A copy the broker re-sends after a restart of its own (DUP set) is the
    broker->consumer leg of QoS 1, not the gateway publishing twice: ``first_copies``
    leaves those out, so a result the gateway really published twice shows up twice.
    """

    def __init__(self, port: int, topics: list[str], client_id: str = "hil-chain-results") -> None:
        self.messages: list[Seen] = []
        self.closed = False
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=0.2, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError(f"results subscriber could not subscribe on port {port}")

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe([(t, 1) for t in self._topics])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        seen = Seen(msg.topic, bytes(msg.payload), bool(msg.dup), bool(msg.retain))
        with self._lock:
            self.messages.append(seen)

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.messages)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client.disconnect()
        self.client.loop_stop()
        for name in ("_sockpairR", "_sockpairW"):  # see hil_tests/subscriber.py
            sock = getattr(self.client, name, None)
            if sock is not None:
                sock.close()


def result_key(doc: dict[str, Any]) -> tuple[str, str, str]:
    """(type, station, period): what the gateway publishes exactly once (docs/gateway.md)."""
    kind = str(doc["type"])
    if kind == "hour":
        period = str(doc["hour_ts"])
    elif kind in ("day", "plan"):
        period = str(doc["day"])
    else:
        period = f"{doc['channel']}|{doc['rule']}|{doc['event']}|{doc['period_ts']}"
    return (kind, str(doc["station"]), period)


# ---------------------------------------------------------------- the chain


class ChainFailure(AssertionError):
    """A bounded wait ran out, or a process died; the message carries the logs."""


@dataclass
class Action:
    at: float  # simulated epoch seconds
    label: str
    fn: Callable[[], object]


class Chain:
    """Broker + gateway + ``stations`` on one simulated clock; see the module doc.

    ``t0`` is where simulated time starts (give the firmware a few real seconds to boot
    before the first minute a test cares about); ``speed`` the simulation factor.
    ``gateway`` holds config sections merged over the defaults (thresholds, rules...).
    ``watch`` adds topics to the subscriber (e.g. a station's data or status).
    """

    def __init__(
        self,
        root: Path,
        stations: list[StationSpec],
        *,
        t0: float,
        speed: float,
        gateway: dict[str, Any] | None = None,
        watch: Iterable[str] = (),
    ) -> None:
        self.root = root
        self.specs = stations
        self.t0 = t0
        self.speed = speed
        self.clock = SimulatedClock(start=t0, speed=0)  # frozen until every part is up
        self.gateway_overrides = gateway or {}
        self.topics = [
            f"{PREFIX}/result/#",
            f"{PREFIX}/alarm/#",
            f"{PREFIX}/gateway/{GATEWAY_ID}/status",
            *watch,
        ]
        self.broker: Mosquitto | None = None
        self.gateway: GatewayProcess | None = None
        self.sub: ResultSubscriber | None = None
        self._nonce = 0
        self.rigs: dict[str, ChainStation] = {}
        self.events: dict[str, float] = {}  # action label -> simulated time it happened
        self.stop_errors: list[str] = []
        self.leaked: list[str] = []  # what the run left behind (a test fills it in)
        self.reference: dict[tuple[str, str, str], bytes] = {}  # see reference_results
        self.down: set[str] = set()  # stations deliberately powered off
        self.port = 0
        self.load: list[float] = []  # the machine's 1-min load average at start and stop

    # ------------------------------------------------------------ lifecycle
    def start(self, before_launch: Callable[[Chain], object] | None = None) -> Chain:
        """Broker, gateway (ready), subscriber, emulators; then ``before_launch`` (faults
        or held values that must be there from the first poll); then every firmware."""
        try:
            self._start(before_launch)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, before_launch: Callable[[Chain], object] | None) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.load.append(os.getloadavg()[0])
        self.broker = Mosquitto().start()
        self.port = self.broker.port
        keys = KeyStore.load(self.root / "keys.json", missing_ok=True)
        for spec in self.specs:
            rig = ChainStation(
                self.root / spec.name,
                spec.name,
                self.broker.port,
                self.clock,
                spec.devices,
                unsynced=spec.unsynced,
                **spec.overrides,
            )
            self.rigs[spec.name] = rig
            keys.add(spec.name, rig.key)
        config = self.root / "gateway.json"
        config.write_text(json.dumps(self.gateway_config()), encoding="utf-8")
        self.sub = ResultSubscriber(self.broker.port, self.topics)
        self.gateway = GatewayProcess(config, self.root / "gateway.log")
        self.gateway.start()
        self.wait_gateway_ready()
        for rig in self.rigs.values():
            rig.prepare()
        if before_launch is not None:
            before_launch(self)
        self.clock.set_speed(self.speed)
        for rig in self.rigs.values():
            rig.launch()

    def gateway_config(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            # grace_s is wall-clock seconds: hours close on the data watermark in a run
            "gateway": {
                "id": GATEWAY_ID,
                "db": "gateway.db",
                "keys": "keys.json",
                "grace_s": 3600,
                "log_level": "info",
            },
            "mqtt": {"host": "127.0.0.1", "port": self.port, "keepalive": 10},
            "rules": {
                "ruleset": "GB3095-2012/HJ663-2013",
                "limit_set": "GB3095-2012-II",
                "aqi": "HJ633-2012",
            },
            "batch": {"engine_interval_s": 0.2, "status_interval_s": 1.0, "publish_window": 20},
            "plan": {"enabled": False},
        }
        if "web" in {f.name for f in dataclasses.fields(GatewayConfig)}:
            data["web"] = {"port": 0}  # no status page: tests never hold a fixed port
        for section, values in self.gateway_overrides.items():
            if isinstance(values, dict) and isinstance(data.get(section), dict):
                data[section] = {**data[section], **values}
            else:
                data[section] = values
        return data

    def wait_gateway_ready(self, since: int = 0, timeout: float = 30) -> None:
        """Until the gateway says online (a retained status received after message
        ``since``) with its ingest connected: its persistent session then exists, so
        nothing a station sends from now on can be missed."""

        def ready() -> bool:
            for doc in self.gateway_statuses(since):
                if doc.get("online") and doc.get("counters", {}).get("mqtt.connects", 0) >= 1:
                    return True
            return False

        self.wait(ready, timeout, "the gateway's online status with its ingest connected")

    def stop(self) -> None:
        """Stop every station, the gateway (SIGTERM), the subscriber and the broker."""
        if self.broker is not None:
            self.load.append(os.getloadavg()[0])
        for name, rig in self.rigs.items():
            try:
                rig.stop()
            except Exception as e:  # keep stopping the rest; a test reports it
                self.stop_errors.append(f"station {name} ({rig.port_path}): {e!r}")
                with contextlib.suppress(Exception):
                    rig.bus.stop()
        if self.gateway is not None:
            self.gateway.terminate()
        if self.sub is not None:
            self.sub.close()  # its messages stay readable
        if self.broker is not None:
            self.broker.close()
            self.broker = None

    def __enter__(self) -> Chain:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ waiting and running
    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``predicate`` for up to ``timeout`` real seconds; fail with the logs."""
        deadline = time.monotonic() + timeout
        while not predicate():
            self.check_alive()
            if time.monotonic() > deadline:
                raise ChainFailure(
                    f"timed out after {timeout} s waiting for {what}\n" + self.diagnostics()
                )
            time.sleep(0.05)

    def check_alive(self) -> None:
        """Fail when a station or the gateway died without being told to."""
        for name, rig in self.rigs.items():
            if name not in self.down and rig.proc is not None and not rig.alive():
                raise ChainFailure(
                    f"station {name} died (exit {rig.proc.returncode})\n" + self.diagnostics()
                )
        if self.gateway is not None and self.gateway.proc is not None and not self.gateway.alive():
            raise ChainFailure(
                f"the gateway died (exit {self.gateway.proc.returncode})\n" + self.diagnostics()
            )

    def run_until(self, t: float, actions: Iterable[Action] = ()) -> None:
        """Let simulated time reach ``t``, doing each action when its time comes; the
        simulated moment each really happened goes to ``events[label]``."""
        todo = sorted(actions, key=lambda a: a.at)
        while True:
            now = self.clock.now()
            while todo and now >= todo[0].at:
                action = todo.pop(0)
                self.events[action.label] = self.clock.now()
                action.fn()
                now = self.clock.now()
            if now >= t and not todo:
                return
            self.check_alive()
            wake = min([t, *(a.at for a in todo)])
            time.sleep(min(0.05, max(0.001, (wake - now) / self.speed / 2)))

    # ------------------------------------------------------------ what can happen
    def broker_down(self) -> None:
        assert self.broker is not None
        self.broker.stop()

    def broker_up(self) -> None:
        assert self.broker is not None
        self.broker.start()

    def gateway_crash(self) -> None:
        assert self.gateway is not None
        self.gateway.kill()

    def gateway_start(self) -> None:
        assert self.gateway is not None
        self.gateway.start()

    def station_power_off(self, station: str) -> None:
        self.down.add(station)
        self.rigs[station].kill()

    def station_power_on(self, station: str, *, unsynced: bool | None = None) -> None:
        rig = self.rigs[station]
        if unsynced is not None:
            rig.unsynced = unsynced
        rig.launch()
        self.down.discard(station)

    def command(self, station: str, **body: Any) -> None:
        """Publish a signed command (docs/firmware.md "Commands") to ``station``, as the
        technician's tools do; ``exp`` is 570 simulated s ahead (at most 600 allowed)."""
        import hashlib
        import hmac

        assert self.sub is not None
        self._nonce += 1
        doc = {
            "station": station,
            "nonce": f"hil-{self._nonce}",
            "exp": int(self.clock.now()) + 570,
            **body,
        }
        raw = json.dumps(doc).encode()
        sig = hmac.new(self.rigs[station].key, raw, hashlib.sha256).hexdigest().encode()
        self.sub.client.publish(f"{PREFIX}/station/{station}/cmd", raw + b"\n" + sig, qos=1)

    # ------------------------------------------------------------ what was published
    def messages(self) -> list[Seen]:
        return self.sub.snapshot() if self.sub is not None else []

    def gateway_statuses(self, since: int = 0) -> list[dict[str, Any]]:
        out = []
        for m in self.messages()[since:]:
            if m.topic == f"{PREFIX}/gateway/{GATEWAY_ID}/status" and m.payload:
                out.append(json.loads(m.payload))
        return out

    def published(self, station: str | None = None) -> list[dict[str, Any]]:
        """Every result and alarm the gateway published (broker re-sends left out), in
        arrival order."""
        out = []
        for m in self.messages():
            if m.dup or not (
                m.topic.startswith(f"{PREFIX}/result/") or m.topic.startswith(f"{PREFIX}/alarm/")
            ):
                continue
            doc = json.loads(m.payload)
            if station is None or doc.get("station") == station:
                out.append(doc)
        return out

    def hours(self, station: str) -> dict[int, dict[str, Any]]:
        return {d["hour_ts"]: d for d in self.published(station) if d["type"] == "hour"}

    def days(self, station: str) -> dict[str, dict[str, Any]]:
        return {d["day"]: d for d in self.published(station) if d["type"] == "day"}

    def alarms(self, station: str) -> list[dict[str, Any]]:
        return [d for d in self.published(station) if d["type"] == "alarm"]

    def duplicates(self) -> list[tuple[str, str, str]]:
        """Result keys published more than once (each should be exactly once)."""
        seen: dict[tuple[str, str, str], int] = {}
        for doc in self.published():
            k = result_key(doc)
            seen[k] = seen.get(k, 0) + 1
        return sorted(k for k, n in seen.items() if n > 1)

    def wait_hours(self, until_hour_ts: int, stations: Iterable[str], timeout: float = 60) -> None:
        """Until every station in ``stations`` has its hour ``until_hour_ts`` published
        (hours close in order: all before it are out too)."""
        names = list(stations)

        def done() -> bool:
            return all(until_hour_ts in self.hours(s) for s in names)

        self.wait(done, timeout, f"hour results up to {until_hour_ts} for {names}")

    def signed_bodies(self, station: str, leaf: str) -> list[dict[str, Any]]:
        """Bodies of ``<prefix>/station/<station>/<leaf>`` messages (a watched topic),
        their HMAC verified with the station's key; the last-will is left out."""
        import hashlib
        import hmac

        key = self.rigs[station].key
        topic = f"{PREFIX}/station/{station}/{leaf}"
        out = []
        for m in self.messages():
            if m.topic != topic or m.payload.startswith(b'{"online": false'):
                continue
            body, _, sig = m.payload.rpartition(b"\n")
            want = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
            if not hmac.compare_digest(sig, want):
                raise AssertionError(f"bad signature on {topic}: {m.payload[:80]!r}")
            out.append(json.loads(body))
        return out

    def bus_health(self, station: str) -> str:
        """The scheduler's view in the station's last status (when its status is watched):
        slots ``missed`` and ``late_max_ms`` say whether the firmware kept up."""
        topic = f"{PREFIX}/station/{station}/status"
        for m in reversed(self.messages()):
            if m.topic == topic and not m.payload.startswith(b'{"online": false'):
                doc = json.loads(m.payload.rpartition(b"\n")[0])
                keep = ("polls", "ok", "missed", "late_max_ms", "timeouts", "crc_errors", "skipped")
                return json.dumps(
                    {
                        dev: {k: c.get(k) for k in keep}
                        for bus in doc["buses"].values()
                        for dev, c in bus["devices"].items()
                    }
                )
        return ""

    def flag_table(self, station: str, channel: str = "pm25") -> str:
        """Minutes per flag of each published hour of ``station``, one line: what a
        failing assertion needs to tell a product fault from a starved chain (B and
        "none" minutes in every station at once mean the machine was too loaded)."""
        cells = []
        for ts, doc in sorted(self.hours(station).items()):
            minutes = doc["channels"].get(channel, {}).get("minutes", {})
            text = " ".join(f"{k}{v}" for k, v in sorted(minutes.items()))
            cells.append(f"{time.strftime('%H', time.gmtime(ts + UTC8))}h {text}")
        return f"{station}/{channel} (load {self.load}): " + " | ".join(cells)

    # ------------------------------------------------------------ diagnostics
    def diagnostics(self) -> str:
        parts = [f"simulated time {self.clock.now():.0f} (t0 {self.t0:.0f}, speed {self.speed})"]
        per: dict[str, int] = {}
        for doc in self.published():
            per[doc["station"]] = per.get(doc["station"], 0) + 1
        parts.append(f"results per station: {per}")
        for name, rig in self.rigs.items():
            state = "down" if name in self.down else ("alive" if rig.alive() else "dead")
            parts.append(f"--- firmware {name} ({state}, starts {rig.starts}):\n{rig.tail()}")
            health = self.bus_health(name)
            if health:
                parts.append(f"    last status, bus counters: {health}")
        if self.gateway is not None:
            lines = [ln[:400] for ln in self.gateway.log().splitlines()[-40:]]
            parts.append("--- gateway log (tail):\n" + "\n".join(lines))
        if self.broker is not None:
            parts.append(
                "--- mosquitto log (tail):\n" + "\n".join(self.broker.log().splitlines()[-15:])
            )
        return "\n".join(parts)


# ---------------------------------------------------------------- the reference


def reference_results(chain: Chain) -> dict[tuple[str, str, str], bytes]:
    """What an uninterrupted gateway publishes from the records the live gateway stored:
    its store's raw signed payloads fed, in order, to an in-process ingest and results
    engine of the same config. Keyed like ``result_key``."""
    import sqlite3

    from gateway.config import config_from_mapping
    from gateway.ingest import Ingestor
    from gateway.outbox import pending
    from gateway.results import ResultsEngine
    from gateway.store import Store

    data = chain.gateway_config()
    data["gateway"] = {**data["gateway"], "db": "reference.db"}
    cfg = config_from_mapping(data, base_dir=chain.root)
    live = sqlite3.connect(f"file:{chain.root / 'gateway.db'}?mode=ro", uri=True)
    try:
        rows = live.execute("SELECT station, payload FROM records ORDER BY station, seq").fetchall()
    finally:
        live.close()
    keys = {name: rig.key for name, rig in chain.rigs.items()}
    out: dict[tuple[str, str, str], bytes] = {}
    with Store(cfg.db_path) as store:
        ingestor = Ingestor(store, keys)
        for station, payload in rows:
            outcome = ingestor.handle(f"{PREFIX}/station/{station}/data", bytes(payload))
            assert outcome.accepted, outcome
        ingestor.flush()
        engine = ResultsEngine(store, cfg)
        while engine.step(now=time.time()):
            pass
        for row in pending(store.conn, 0, 100_000):
            out[result_key(json.loads(row.payload))] = row.payload
    return out


def day_bounds(day: date) -> tuple[int, int]:
    start = day_start(day, UTC8)
    return start, start + 86400
