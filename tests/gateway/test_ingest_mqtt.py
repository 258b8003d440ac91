"""The MQTT adapter (gateway.ingest.IngestClient) against a real mosquitto.

A station is played by a paho-mqtt client publishing firmware-made signed records, QoS 1;
an operator's paho client listens on ``lantian/v1/deadletter``. The test thread owns the
store and drives ``IngestClient.process``, as the gateway thread does.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.counters import Counters
from gateway.ingest import IngestClient, Ingestor
from gateway.store import InsertResult, Store
from hil_tests.broker import HOST, Mosquitto
from tests.gateway.test_ingest import KEY, KEYS, NOW, STATION, TS, minute_payload, signed

DATA = f"lantian/v1/station/{STATION}/data"
DEADLETTER = "lantian/v1/deadletter"


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    b = Mosquitto()
    try:
        b.start()
        yield b
    finally:
        b.close()


class Peer:
    """A paho client: publishes QoS 1 and waits for PUBACK; collects what it receives."""

    def __init__(self, port: int, subscribe: str | None = None) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, clean_session=True)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_connect = (
            (lambda c, *a: c.subscribe(subscribe, qos=1))
            if subscribe
            else (lambda *a: self._ready.set())
        )
        self.client.connect(HOST, port, keepalive=30)
        self.client.loop_start()
        assert self._ready.wait(10), "peer did not connect/subscribe"

    def _on_message(self, c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.received.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[tuple[str, bytes]]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                assert left > 0, f"got {len(self.received)} of {n} messages"
                self._cond.wait(left)
            return list(self.received)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def peers(broker: Mosquitto) -> Iterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(subscribe: str | None = None) -> Peer:
        p = Peer(broker.port, subscribe)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "gateway.db")
    yield s
    s.close()


def new_client(broker: Mosquitto, store: Store, **kw: object) -> IngestClient:
    ing = Ingestor(store, dict(KEYS), Counters(), now=lambda: float(NOW))
    return IngestClient(HOST, broker.port, ing, client_id="gw-test", **kw)  # type: ignore[arg-type]


def pump(client: IngestClient, until: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, f"timed out; counters {client.counters.snapshot()}"
        client.process(0.05)


def test_records_land_in_sqlite_and_dead_letters_on_the_topic(
    broker: Mosquitto, store: Store, peers: Callable[..., Peer]
) -> None:
    operator = peers(DEADLETTER)
    station = peers()
    flushes: list[InsertResult] = []
    client = new_client(broker, store, on_flush=flushes.append)
    with client:
        assert client.wait_subscribed(10)
        for seq in range(1, 21):
            station.publish(DATA, minute_payload(seq, TS - 60 * (20 - seq)))
        station.publish(DATA, minute_payload(5, TS - 60 * 15))  # a redelivered copy
        forged = bytearray(minute_payload(21, TS))
        forged[forged.index(b'"mean": ') + 8] ^= 1
        station.publish(DATA, bytes(forged))
        station.publish(DATA, b"hello")
        station.publish("lantian/v1/station/yb-nobody/data", minute_payload(1, station="yb-nobody"))
        pump(client, lambda: client.counters.get("received") == 24 and client.ingestor.pending == 0)

        letters = operator.wait_for(3)
    assert [t for t, _ in letters] == [DEADLETTER] * 3
    docs = [json.loads(p) for _, p in letters]
    assert [d["reason"] for d in docs] == ["bad_signature", "unsigned", "unknown_station"]
    assert docs[0]["station"] == STATION and docs[0]["topic"] == DATA
    assert docs[2]["station"] == "yb-nobody"

    c = client.counters.snapshot()
    assert c["accepted"] == 20 and c["duplicate"] == 1 and c["rejected"] == 3
    assert c["stored"] == 20 and c["mqtt.connects"] == 1
    assert store.count("records") == 20 and store.count("minutes") == 40
    assert [d.reason for d in store.dead_letters()] == [
        "unknown_station",
        "unsigned",
        "bad_signature",
    ]
    assert store.record_payload(STATION, 7) == minute_payload(7, TS - 60 * 13)
    assert store.watermark(STATION) == TS
    assert sum(r.stored for r in flushes) == 20


def test_records_sent_while_the_gateway_is_away_arrive_later(
    broker: Mosquitto, store: Store, peers: Callable[..., Peer]
) -> None:
    station = peers()
    client = new_client(broker, store)
    with client:
        assert client.wait_subscribed(10)
        station.publish(DATA, minute_payload(1, TS - 600))
        pump(client, lambda: store.count("records") == 1)
    # the gateway is down: the persistent session queues the station's records
    for seq in range(2, 12):
        station.publish(DATA, minute_payload(seq, TS - 600 + 60 * seq))
    client = new_client(broker, store)
    with client:
        pump(client, lambda: store.count("records") == 11)
    assert client.counters.get("accepted") == 10


def test_a_message_is_acknowledged_only_after_its_commit(
    broker: Mosquitto, store: Store, peers: Callable[..., Peer]
) -> None:
    station = peers()
    # A batch that never fills in time: the records stay uncommitted...
    client = new_client(broker, store, batch_ms=60_000, batch_size=1000, max_unacked=1000)
    client.start()
    assert client.wait_subscribed(10)
    for seq in (1, 2, 3):
        station.publish(DATA, minute_payload(seq, TS - 60 * seq))
    pump(client, lambda: client.ingestor.pending_records == 3)
    # ...and the gateway dies before flushing (no flush, no PUBACK):
    client.client.disconnect()
    client.client.loop_stop()
    assert store.count("records") == 0
    # The broker still holds the three for the session and redelivers them.
    again = new_client(broker, store)
    with again:
        pump(again, lambda: store.count("records") == 3)
    assert again.counters.get("accepted") == 3


def test_batches_flush_on_size_and_on_time(
    broker: Mosquitto, store: Store, peers: Callable[..., Peer]
) -> None:
    station = peers()
    flushes: list[InsertResult] = []
    client = new_client(
        broker, store, batch_size=5, batch_ms=300, max_unacked=100, on_flush=flushes.append
    )
    with client:
        assert client.wait_subscribed(10)
        for seq in range(1, 8):
            station.publish(DATA, minute_payload(seq, TS - 60 * seq))
        pump(client, lambda: store.count("records") == 7)
    assert [r.stored for r in flushes] == [5, 2]


def test_a_key_added_while_running_takes_effect(
    broker: Mosquitto, store: Store, peers: Callable[..., Peer]
) -> None:
    station = peers()
    keys: dict[str, bytes] = {}
    ing = Ingestor(store, keys, Counters(), now=lambda: float(NOW))
    client = IngestClient(HOST, broker.port, ing, client_id="gw-keys")
    with client:
        assert client.wait_subscribed(10)
        station.publish(DATA, signed(b"{}"))
        pump(client, lambda: client.counters.get("rejected.unknown_station") == 1)
        keys[STATION] = KEY
        station.publish(DATA, minute_payload(1))
        pump(client, lambda: store.count("records") == 1)
