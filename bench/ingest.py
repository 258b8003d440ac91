"""Issue 7 item 2: gateway ingest rate against a bare paho subscriber, same broker, same stream.

One real mosquitto (``hil_tests.broker.Mosquitto``, started here) carries the same stream
of N signed minute records (``firmware.record.minute_body`` + ``signed_minute``, the
station's own code on CPython: ``STATIONS`` stations × ``HOURS`` hours of minutes plus
the next hour's first minute each, 4 channels, interleaved in time order) to two kinds of
client, alternately, ``runs`` times each:

- ``pipeline``: the gateway's :class:`gateway.ingest.IngestClient` feeding an
  :class:`gateway.ingest.Ingestor` (verify the HMAC, parse, validate against the JSON
  Schema, de-duplicate, batch into the SQLite store, PUBACK after commit) with the
  service's settings (``gateway.service``: batch size and flush interval from the default
  config, ``max_unacked`` 20), and a :class:`gateway.results.ResultsEngine` on its own
  connection in a second thread, woken after each flush as the service does, closing the
  hours the records complete (every hour of every station closes by watermark: the
  engine's hourly means, validity, AQI and alarm evaluation, into the outbox);
- ``bare``: a paho client doing nothing per message (automatic PUBACK).

Both use QoS 1 and a persistent session set up the same way: for each run a fresh client
id connects with ``clean_session=False``, subscribes to ``lantian/v1/station/+/data`` at
QoS 1 and disconnects; then a publisher puts all N records on the broker (PUBACKed, so
the broker holds them in that session's queue); only then does the timed client connect.
The clock runs from its ``connect`` to the moment the last record is handled: for
``bare`` the N-th message callback; for ``pipeline`` the moment every record is stored
and every station's hours are closed by the engine. The broker keeps at most its
``max_inflight_messages`` (20, mosquitto's default) unacknowledged messages in flight
for either client.

Figures: ``pipeline_records_per_s``, ``bare_records_per_s`` (medians), and
``pipeline_over_bare`` = the ratio of the medians (target ≥ 0.5). Each pipeline run is
checked: N accepted, nothing rejected, N stored, every hour closed.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from firmware.record import minute_body, signed_minute
from gateway.config import config_from_mapping
from gateway.counters import Counters
from gateway.ingest import DEFAULT_PREFIX, IngestClient, Ingestor
from gateway.results import ResultsEngine, day_start, local_date
from gateway.store import Store
from hil_tests.broker import Mosquitto

STATIONS = 20
HOURS = 6
QUICK_STATIONS = 3
QUICK_HOURS = 1
CHANNELS = ("no2", "o3", "pm10", "pm25")
UTC8 = 8 * 3600
TOPIC_FILTER = DEFAULT_PREFIX + "/station/+/data"
TIMEOUT_S = 120.0
TARGET = (">=", 0.5)  # issue 7: at least half the bare subscriber's rate
MAX_INFLIGHT = 20  # mosquitto's default max_inflight_messages, said explicitly


class IngestBenchError(RuntimeError):
    """A run did not deliver, store or close what it should have; the message says what."""


def station_ids(n: int) -> list[str]:
    return [f"bench-{i:02d}" for i in range(n)]


def station_keys(stations: list[str]) -> dict[str, bytes]:
    return {s: bytes([i + 1]) * 32 for i, s in enumerate(stations)}


def make_stream(stations: list[str], hours: int, d0: int) -> list[tuple[str, bytes]]:
    """(topic, signed payload) of every station's minutes ``d0 .. d0 + hours h`` (the last
    minute closes the last hour by watermark), time order, stations interleaved."""
    keys = station_keys(stations)
    out: list[tuple[str, bytes]] = []
    for k in range(hours * 60 + 1):
        h, m = divmod(k, 60)
        for i, station in enumerate(stations):
            level = 20.0 + 3 * i + h + (m % 7) * 0.5
            vals = [level * (1 + 0.1 * c) for c in range(len(CHANNELS))]
            closed = SimpleNamespace(
                n_channels=len(CHANNELS),
                ts=d0 + k * 60,
                mean=vals,
                min=[x - 1.0 for x in vals],
                max=[x + 1.0 for x in vals],
                n_valid=[12] * len(CHANNELS),
                n_expected=[12] * len(CHANNELS),
                flag=["N"] * len(CHANNELS),
            )
            units = ["ug/m3"] * len(CHANNELS)
            body = minute_body(station, 1 + k, closed, list(CHANNELS), units, True, "0.1.0", 1)
            topic = f"{DEFAULT_PREFIX}/station/{station}/data"
            out.append((topic, bytes(signed_minute(keys[station], body))))
    return out


def _client(client_id: str) -> mqtt.Client:
    return mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=False,
        protocol=mqtt.MQTTv311,
    )


def open_session(broker: Mosquitto, client_id: str) -> None:
    """A persistent session for ``client_id`` with the QoS 1 subscription, then offline."""
    done = threading.Event()
    c = _client(client_id)
    c.on_subscribe = lambda *args: done.set()
    c.on_connect = lambda client, *args: client.subscribe(TOPIC_FILTER, qos=1)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        if not done.wait(10):
            raise IngestBenchError(f"{client_id}: no SUBACK within 10 s")
    finally:
        c.disconnect()
        c.loop_stop()


def publish_all(broker: Mosquitto, stream: list[tuple[str, bytes]]) -> None:
    """Every record on the broker at QoS 1, each PUBACKed (queued for the offline sessions)."""
    c = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id="bench-publisher", protocol=mqtt.MQTTv311
    )
    c.max_inflight_messages_set(100)
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        infos = [c.publish(topic, payload, qos=1) for topic, payload in stream]
        deadline = time.monotonic() + TIMEOUT_S
        for info in infos:
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise IngestBenchError("the publisher did not get every PUBACK in time")
    finally:
        c.disconnect()
        c.loop_stop()


def bare_run(broker: Mosquitto, client_id: str, n: int) -> float:
    """Seconds from connect to the n-th message of a subscriber doing nothing per message."""
    got = 0
    done = threading.Event()
    end = [0.0]

    def on_message(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        if got == n:
            end[0] = time.perf_counter()
            done.set()

    c = _client(client_id)
    # As the ingest client: subscribe again on connect (the session has it already).
    c.on_connect = lambda client, *args: client.subscribe(TOPIC_FILTER, qos=1)
    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect_async(broker.host, broker.port)
    c.loop_start()
    try:
        if not done.wait(TIMEOUT_S):
            raise IngestBenchError(f"bare subscriber got {got} of {n} messages")
    finally:
        c.disconnect()
        c.loop_stop()
    return end[0] - t0


def pipeline_run(
    broker: Mosquitto,
    client_id: str,
    stations: list[str],
    hours: int,
    d0: int,
    n: int,
    tmp: Path,
) -> tuple[float, dict[str, int]]:
    """Seconds from connect until all n records are stored and every hour is closed."""
    cfg = config_from_mapping(
        {
            "gateway": {"id": "gw-bench", "db": "gw.db", "keys": "keys.json", "grace_s": 3600},
            "mqtt": {"port": broker.port},
            "rules": {"limit_set": "GB3095-2012-II"},
            "ingest": {"enabled": False},
        },
        base_dir=tmp,
    )
    counters = Counters()
    last_hour = d0 + hours * 3600
    wake = threading.Event()
    stop = threading.Event()
    finished = threading.Event()
    end = [0.0]
    engine_error: list[BaseException] = []

    ingest_store = Store(cfg.db_path)  # creates the schema before anything is timed
    ready = threading.Event()

    def engine_main() -> None:
        """The service's main loop: its own connection, a step whenever a flush wakes it."""
        try:
            with Store(cfg.db_path) as store:
                engine = ResultsEngine(store, cfg, counters=counters)
                ready.set()
                while not stop.is_set():
                    wake.wait(0.05)
                    wake.clear()
                    engine.step()
                    if counters.snapshot().get("stored", 0) < n:
                        continue
                    rows = store.conn.execute("SELECT next_hour_ts FROM engine_state").fetchall()
                    if len(rows) == len(stations) and all(int(r[0]) >= last_hour for r in rows):
                        end[0] = time.perf_counter()
                        finished.set()
                        return
        except BaseException as e:  # reported by the caller
            engine_error.append(e)
            finished.set()
        finally:
            ready.set()

    ingestor = Ingestor(ingest_store, station_keys(stations), counters)
    client = IngestClient(
        broker.host,
        broker.port,
        ingestor,
        client_id=client_id,
        batch_size=cfg.batch.ingest_batch_size,
        batch_ms=int(cfg.batch.ingest_flush_s * 1000),
        max_unacked=MAX_INFLIGHT,
        on_flush=lambda result: wake.set(),
    )
    engine_thread = threading.Thread(target=engine_main, name="bench-engine", daemon=True)
    engine_thread.start()
    ready.wait(10)
    try:
        t0 = time.perf_counter()
        client.start()
        deadline = time.monotonic() + TIMEOUT_S
        while not finished.is_set():
            client.process(0.02)
            if time.monotonic() > deadline:
                raise IngestBenchError(f"pipeline did not finish: {counters.snapshot()}")
        elapsed = end[0] - t0
    finally:
        stop.set()
        engine_thread.join(10)
        client.stop()
        ingest_store.close()
    if engine_error:
        raise IngestBenchError(f"results engine failed: {engine_error[0]!r}")
    snap = counters.snapshot()
    if snap.get("accepted") != n or snap.get("rejected", 0) or snap.get("stored") != n:
        raise IngestBenchError(f"pipeline accepted/stored the wrong records: {snap}")
    with Store(cfg.db_path) as store:
        hour_rows = int(store.conn.execute("SELECT COUNT(*) FROM hours").fetchone()[0])
    if hour_rows != len(stations) * hours * len(CHANNELS):
        raise IngestBenchError(f"{hour_rows} hour results, not one per station, hour, channel")
    return elapsed, {"accepted": n, "stored": n, "hour_results": hour_rows}


def _rate(n: int, seconds: float) -> float:
    return n / seconds


def run(quick: bool = False, runs: int = 5, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Publish, drain and time the stream ``runs`` times per client kind; the ingest section."""
    stations = station_ids(QUICK_STATIONS if quick else STATIONS)
    hours = QUICK_HOURS if quick else HOURS
    d0 = day_start(local_date(int(time.time()), UTC8) - timedelta(days=2), UTC8)
    t0 = time.perf_counter()
    stream = make_stream(stations, hours, d0)
    n = len(stream)
    log(f"ingest: {n:,} signed records made in {time.perf_counter() - t0:.1f} s")
    pipeline_s: list[float] = []
    bare_s: list[float] = []
    checks: list[dict[str, int]] = []
    with (
        tempfile.TemporaryDirectory(prefix="lantian-bench-ingest-") as tmp_name,
        Mosquitto(max_queued_messages=max(10_000, 2 * n)) as broker,
    ):
        tmp = Path(tmp_name)
        for k in range(runs):
            # alternate which kind goes first, so neither always meets a warmer broker
            order = ("pipeline", "bare") if k % 2 == 0 else ("bare", "pipeline")
            for kind in order:
                client_id = f"bench-{kind}-{k}"
                open_session(broker, client_id)
                publish_all(broker, stream)
                if kind == "bare":
                    bare_s.append(bare_run(broker, client_id, n))
                else:
                    run_dir = tmp / f"run{k}"
                    run_dir.mkdir()
                    seconds, check = pipeline_run(
                        broker, client_id, stations, hours, d0, n, run_dir
                    )
                    pipeline_s.append(seconds)
                    checks.append(check)
            log(
                f"ingest: run {k + 1}/{runs}: pipeline {_rate(n, pipeline_s[-1]):.0f} rec/s, "
                f"bare {_rate(n, bare_s[-1]):.0f} rec/s"
            )
    pipeline_rate = _rate(n, statistics.median(pipeline_s))
    bare_rate = _rate(n, statistics.median(bare_s))
    ratio = pipeline_rate / bare_rate
    op, value = TARGET
    return {
        "pipeline_records_per_s": pipeline_rate,
        "bare_records_per_s": bare_rate,
        "pipeline_over_bare": ratio,
        "pipeline_us_per_record": 1e6 / pipeline_rate,
        "bare_us_per_record": 1e6 / bare_rate,
        "records": n,
        "stations": len(stations),
        "hours": hours,
        "channels": len(CHANNELS),
        "payload_bytes": round(statistics.mean(len(p) for _, p in stream)),
        "runs": runs,
        "pipeline_s_all": pipeline_s,
        "bare_s_all": bare_s,
        "broker_max_inflight": MAX_INFLIGHT,
        "ingest_max_unacked": MAX_INFLIGHT,
        "verified": checks[0] if checks else {},
        "targets": {"pipeline_over_bare": {"op": op, "value": value, "met": ratio >= value}},
    }
