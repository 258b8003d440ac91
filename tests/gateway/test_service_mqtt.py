"""End to end with a real mosquitto: ``python -m gateway run --config FILE`` as a
subprocess, fed signed minute records (firmware.record) over MQTT by three stations.

The gateway is SIGKILLed in the middle of an hour and restarted; it must publish the same
results as an uninterrupted gateway (computed in-process from the same payloads), each
exactly once, each station in period order — and its retained status must show the
last-will while it is dead and ``online: false`` after a clean SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware.record import minute_body, signed_minute
from gateway.config import config_from_mapping
from gateway.ingest import Ingestor
from gateway.outbox import pending
from gateway.results import ResultsEngine, day_start, local_date
from gateway.store import Store
from hil_tests.broker import Mosquitto
from tests.gateway.gwhelpers import SCHEMAS, Recorder, result_key

ROOT = Path(__file__).resolve().parents[2]
UTC8 = 8 * 3600
STATIONS = ("site-c", "town-a", "town-b")
KEYS = {s: bytes([i + 1]) * 32 for i, s in enumerate(STATIONS)}
DAY = local_date(int(time.time()), UTC8) - timedelta(days=3)  # inside ingest's window
D0 = day_start(DAY, UTC8)
KILL_HOUR = 12  # SIGKILL after half of this hour's minutes were sent


def config_data(db: str, port: int) -> dict[str, Any]:
    return {
        "gateway": {"id": "gw-e2e", "db": db, "keys": "keys.json", "grace_s": 3600},
        "mqtt": {"port": port},
        "rules": {"ruleset": "GB3095-2012/HJ663-2013", "limit_set": "GB3095-2012-II"},
        "batch": {"engine_interval_s": 0.2, "status_interval_s": 1.0, "publish_window": 10},
        "thresholds": [
            {"station": "site-c", "channel": "pm10", "builtin": "construction_dust_pm10_1h"}
        ],
        "plan": {
            "name": "test plan",
            "targets": [
                {
                    "year": DAY.year,
                    "pm25_annual_max": 35,
                    "pm10_annual_max": 70,
                    "good_days_min": 300,
                }
            ],
        },
    }


def values(station: str, h: int, m: int) -> dict[str, float]:
    pm25 = {"site-c": 30.0, "town-a": 40.0 + h, "town-b": 20.0 + (m % 7)}[station]
    pm10 = 200.0 if station == "site-c" and h in (5, 6) else 60.0 + h
    return {"pm10": pm10, "pm25": pm25}


def payloads() -> list[tuple[str, bytes]]:
    """(topic, signed payload) for the day plus the next day's first minute, in time
    order, stations interleaved."""
    out: list[tuple[str, bytes]] = []
    for k in range(24 * 60 + 1):
        h, m = divmod(k, 60)
        for station in STATIONS:
            v = values(station, h, m)
            names = sorted(v)
            closed = SimpleNamespace(
                n_channels=len(names),
                ts=D0 + k * 60,
                mean=[v[n] for n in names],
                min=[v[n] for n in names],
                max=[v[n] for n in names],
                n_valid=[12] * len(names),
                n_expected=[12] * len(names),
                flag=["N"] * len(names),
            )
            body = minute_body(station, 1000 + k, closed, names, ["ug/m3"] * 2, True, "0.1.0", 1)
            out.append((f"lantian/v1/station/{station}/data", signed_minute(KEYS[station], body)))
    return out


def reference(tmp: Path, port: int, messages: list[tuple[str, bytes]]) -> list[bytes]:
    """The outbox of an uninterrupted gateway, computed in-process."""
    cfg = config_from_mapping(config_data("ref.db", port), base_dir=tmp)
    with Store(cfg.db_path) as store:
        ingestor = Ingestor(store, KEYS, now=lambda: D0 + 2 * 86400)
        for topic, payload in messages:
            assert ingestor.handle(topic, payload).accepted
        ingestor.flush()
        ResultsEngine(store, cfg).step(now=D0 + 2 * 86400)
        return [r.payload for r in pending(store.conn, 0, 10_000)]


class Gateway:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway", "run", "--config", str(self.config)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )

    def signal(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(30)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


def station_client(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="e2e-stations")
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def send(client: mqtt.Client, messages: list[tuple[str, bytes]]) -> None:
    infos = [client.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(30)


def status_docs(recorder: Recorder) -> list[dict[str, Any]]:
    return [m.doc() for m in recorder.snapshot() if m.topic.endswith("/status")]


def test_sigkill_mid_hour_and_restart_publishes_each_result_once(tmp_path: Path, broker: Mosquitto):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({s: k.hex() for s, k in KEYS.items()}), encoding="utf-8")
    keys.chmod(0o600)
    config = tmp_path / "gw.json"
    config.write_text(json.dumps(config_data("gw.db", broker.port)), encoding="utf-8")
    messages = payloads()
    expected = reference(tmp_path, broker.port, messages)
    expected_keys = [result_key(json.loads(p)) for p in expected]
    assert len(expected) == 72 + 3 + 2 + 3  # hours, days, one dust episode, plan
    per_minute = len(STATIONS)
    cut = (KILL_HOUR * 60 + 30) * per_minute  # half of the kill hour

    recorder = Recorder(
        broker.port,
        ["lantian/v1/result/#", "lantian/v1/alarm/#", "lantian/v1/gateway/gw-e2e/status"],
        "e2e-recorder",
    )
    gateway = Gateway(config, tmp_path / "gateway.log")
    stations = station_client(broker.port)
    try:
        gateway.start()
        assert recorder.wait_for(lambda ms: any(d["online"] for d in status_docs(recorder)), 30), (
            gateway.log.read_text()
        )
        send(stations, messages[:cut])
        # every result up to the hour before the kill hour is out; the kill hour is open
        before = (KILL_HOUR * len(STATIONS)) + 2  # hours 0..11 + the dust alarm's two
        assert recorder.wait_for(lambda ms: len(recorder.first_copies()) >= before, 40), (
            gateway.log.read_text()[-3000:]
        )
        time.sleep(0.3)  # let the PUBACKs of the last results be marked
        gateway.kill()  # SIGKILL in the middle of hour 12
        assert recorder.wait_for(lambda ms: not status_docs(recorder)[-1]["online"], 10)
        assert status_docs(recorder)[-1] == {
            "online": False,
            "gateway": "gw-e2e",
            "type": "gateway_status",
            "v": 1,
        }

        send(stations, messages[cut:])  # queued by the broker for the gateway's session
        gateway.start()
        assert recorder.wait_for(lambda ms: len(recorder.first_copies()) >= len(expected), 60), (
            f"{len(recorder.first_copies())} of {len(expected)}\n" + gateway.log.read_text()[-3000:]
        )
        time.sleep(0.5)
        assert gateway.signal(signal.SIGTERM) == 0
        assert recorder.wait_for(lambda ms: not status_docs(recorder)[-1]["online"], 10)
    finally:
        gateway.kill()
        stations.disconnect()
        stations.loop_stop()
        recorder.close()

    published = recorder.first_copies()
    keys_seen = [result_key(m.doc()) for m in published]
    assert len(keys_seen) == len(set(keys_seen)), "a result was published twice"
    assert sorted(keys_seen) == sorted(expected_keys), "a result is missing or extra"
    # the same bytes as the uninterrupted gateway, and each station's results in order
    by_key = {result_key(json.loads(p)): p for p in expected}
    for m in published:
        assert m.payload == by_key[result_key(m.doc())]
    for station in STATIONS:
        mine = [k for k in keys_seen if k[1] == station]
        assert mine == [k for k in expected_keys if k[1] == station]

    # spot checks by hand: town-a PM2.5 hour 12 = 52, its day mean (40 + 63)/2 = 51.5
    docs = {result_key(m.doc()): m.doc() for m in published}
    h12 = docs[("hour", "town-a", str(D0 + 12 * 3600))]
    assert h12["channels"]["pm25"]["mean"] == 52.0 and h12["channels"]["pm25"]["n_valid"] == 60
    day = docs[("day", "town-a", DAY.isoformat())]
    assert day["channels"]["pm25"]["mean"] == 51.5
    alarms = [d for k, d in docs.items() if k[0] == "alarm"]
    assert [(a["event"], a["period_label"][11:16]) for a in alarms] == [
        ("start", "05:00"),
        ("clear", "07:00"),
    ]
    schema_for = {
        "hour": "hourly-result",
        "day": "daily-result",
        "alarm": "alarm",
        "plan": "plan-result",
    }
    for m in published:
        doc = m.doc()
        schema = json.loads((SCHEMAS / f"{schema_for[doc['type']]}.schema.json").read_text())
        jsonschema.validate(doc, schema)
    status_schema = json.loads((SCHEMAS / "gateway-status.schema.json").read_text())
    statuses = status_docs(recorder)
    for doc in statuses:
        jsonschema.validate(doc, status_schema)
    online = [d for d in statuses if d["online"]]
    assert online and online[-1]["counters"]["stored"] > 0
    assert online[-1]["counters"].get("rejected", 0) == 0
    log_lines = [
        json.loads(line) for line in gateway.log.read_text().splitlines() if line.startswith("{")
    ]
    events = {line["event"] for line in log_lines}
    assert {"gateway_starting", "ingest_started", "day_closed", "gateway_stopped"} <= events


def test_check_config_and_bad_config_exit_codes(tmp_path: Path):
    good = tmp_path / "gw.toml"
    good.write_text('[gateway]\nid = "g"\n', encoding="utf-8")
    run = [sys.executable, "-m", "gateway", "gateway", "check-config", "--config"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run([*run, str(good)], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert ok.returncode == 0 and json.loads(ok.stdout)["gateway_id"] == "g"
    bad = tmp_path / "bad.toml"
    bad.write_text('[gateway]\nid = "g"\nturbo = true\n', encoding="utf-8")
    no = subprocess.run([*run, str(bad)], cwd=ROOT, env=env, capture_output=True, timeout=60)
    assert no.returncode == 2 and b"gateway.turbo" in no.stderr
    # `run` and `check-config` also work without the `gateway` group word
    short = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config", "--config", str(good)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert short.returncode == 0
