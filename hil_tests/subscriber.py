"""A CPython MQTT subscriber for the HIL tests (paho-mqtt 2.x), collecting in a thread.

It is what the gateway will be to the station: it sees the exact bytes the broker
delivered, with topic and retain flag, in arrival order.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool
    received: float


class Subscriber:
    """Subscribes to ``topics`` on a broker; ``messages`` grows as they arrive."""

    def __init__(self, port: int, topics: list[str], host: str = "127.0.0.1") -> None:
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._topics = topics
        # A persistent session: what arrives while this subscriber is cut off from a
        # restarted broker is queued for it, as for a real consumer.
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"hil-sub-{id(self):x}", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            self.close()
            raise TimeoutError(f"subscriber could not connect to 127.0.0.1:{port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        for t in self._topics:
            client.subscribe(t, qos=1)
        self._connected.set()

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        with self._lock:
            self.messages.append(Message(msg.topic, bytes(msg.payload), msg.retain, time.time()))

    def on(self, suffix: str) -> list[Message]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(suffix)]

    def wait_for(
        self, predicate: Callable[[Subscriber], bool], timeout: float, what: str = "messages"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
            time.sleep(0.05)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        # paho keeps a wake-up socket pair open until garbage collection; close it now
        # so the leak check of hil_tests/conftest.py sees a clean slate.
        for name in ("_sockpairR", "_sockpairW"):
            sock = getattr(self.client, name, None)
            if sock is not None:
                sock.close()
