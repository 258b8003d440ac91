"""Shared pieces of the gateway service tests: synthetic minutes straight into the real
store, configs, and a subscriber that keeps each message's DUP flag.

Time base: the local day 2019-06-15 (UTC+8), so the district plan's 2019 targets apply.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.config import GatewayConfig, config_from_mapping
from gateway.results import day_start
from gateway.store import ChannelMinute, ParsedRecord, Store

UTC8 = 8 * 3600
DAY = date(2019, 6, 15)
D0 = day_start(DAY, UTC8)  # 2019-06-15 00:00 +08:00 = 2019-06-14 16:00 UTC
SCHEMAS = Path(__file__).resolve().parents[2] / "docs" / "schemas"

UNITS = {"co": "mg/m3"}

# (value, flag) for one channel-minute; value None = a record with a null mean.
Minute = tuple[float | None, str]


def unit_of(channel: str) -> str:
    return UNITS.get(channel, "ug/m3")


def make_config(tmp: Path, **overrides: Any) -> GatewayConfig:
    """A config for tests: db in ``tmp``; ``overrides`` are section dicts merged in."""
    data: dict[str, Any] = {
        "gateway": {"id": "gw-test", "db": "gw.db", "keys": "keys.json", "grace_s": 600},
        "rules": {"limit_set": "GB3095-2012-II"},
        "ingest": {"enabled": False},
    }
    for section, values in overrides.items():
        if isinstance(values, dict) and isinstance(data.get(section), dict):
            data[section] = {**data[section], **values}
        else:
            data[section] = values
    return config_from_mapping(data, base_dir=tmp)


class MinuteWriter:
    """Writes one record per minute per station with the channels given."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seq: dict[str, int] = {}

    def record(
        self, station: str, ts: int, channels: Mapping[str, Minute], received_at: float
    ) -> ParsedRecord:
        seq = self.seq.get(station, 0) + 1
        self.seq[station] = seq
        chans = tuple(
            ChannelMinute(name, v, v, v, 0 if v is None else 12, 12, flag, unit_of(name))
            for name, (v, flag) in sorted(channels.items())
        )
        return ParsedRecord(station, seq, ts, 60, True, "test", 1, chans, b"", received_at)

    def write(
        self,
        station: str,
        minutes: Iterable[tuple[int, Mapping[str, Minute]]],
        received_at: float | Callable[[], float],
        batch: int = 500,
    ) -> int:
        """``minutes``: (ts, {channel: (value, flag)}); an empty mapping skips the minute."""
        pending: list[ParsedRecord] = []
        n = 0
        for ts, channels in minutes:
            if not channels:
                continue
            at = received_at() if callable(received_at) else received_at
            pending.append(self.record(station, ts, channels, at))
            if len(pending) >= batch:
                n += self.store.insert_batch(pending).stored
                pending = []
        if pending:
            n += self.store.insert_batch(pending).stored
        return n


def constant_hours(
    start: int, hours: Iterable[int], values: Mapping[str, Callable[[int], float]]
) -> list[tuple[int, dict[str, Minute]]]:
    """Full hours (60 N minutes) with each channel's value a function of the hour index."""
    out: list[tuple[int, dict[str, Minute]]] = []
    for h in hours:
        for m in range(60):
            ts = start + h * 3600 + m * 60
            out.append((ts, {ch: (f(h), "N") for ch, f in values.items()}))
    return out


# ---------------------------------------------------------------- MQTT observer


@dataclass(frozen=True)
class Seen:
    topic: str
    payload: bytes
    dup: bool
    retain: bool

    def doc(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.payload)
        return result


class Recorder:
    """A persistent-session QoS 1 subscriber that records each message with its DUP flag.

    The broker re-sends an unacknowledged message to this subscriber with DUP set after a
    broker restart: that is the broker→consumer leg of QoS 1, not the gateway publishing
    twice. ``first_copies()`` drops those; the gateway's own repeats would arrive as two
    messages without DUP.
    """

    def __init__(self, port: int, topics: list[str], client_id: str) -> None:
        self.messages: list[Seen] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self._topics = topics
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False
        )
        self.client.reconnect_delay_set(1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            self.close()
            raise TimeoutError("recorder could not subscribe")

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        for t in self._topics:
            client.subscribe(t, qos=1)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Seen(msg.topic, bytes(msg.payload), bool(msg.dup), msg.retain))

    def snapshot(self) -> list[Seen]:
        with self._lock:
            return list(self.messages)

    def results(self) -> list[Seen]:
        return [m for m in self.snapshot() if "/gateway/" not in m.topic]

    def first_copies(self) -> list[Seen]:
        return [m for m in self.results() if not m.dup]

    def wait_for(self, predicate: Callable[[list[Seen]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.snapshot()):
                return True
            time.sleep(0.05)
        return predicate(self.snapshot())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def result_key(doc: Mapping[str, Any]) -> tuple[str, ...]:
    """The (type, station, period) key of a published result."""
    kind = str(doc["type"])
    if kind == "hour":
        period = str(doc["hour_ts"])
    elif kind in ("day", "plan"):
        period = str(doc["day"])
    else:
        period = f"{doc['channel']}|{doc['rule']}|{doc['event']}|{doc['period_ts']}"
    return (kind, str(doc["station"]), period)
