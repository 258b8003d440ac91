"""The persistent outbox: every result is published exactly once per key, in order.

Why an outbox. Publishing straight from the results engine loses a result when the broker
is down at that moment, and publishing again after a restart duplicates the ones that had
gone out. Instead, the engine writes each result's payload into the ``outbox`` table in
the SAME SQLite transaction that records the result (:func:`enqueue`), and a separate
:class:`Publisher` sends the rows in ``id`` order over MQTT QoS 1 and marks a row
published only when the broker's PUBACK for it arrives.

Guarantees (docs/gateway.md "Publishing"):

* **Once per key.** ``UNIQUE (kind, station, period)``: a recomputed hour, day, alarm or
  plan reading is ``INSERT OR IGNORE``\\d, never enqueued twice. The payload bytes are
  stored, so a re-send carries exactly the same bytes.
* **No loss.** A row stays pending until its PUBACK. A broker outage: paho keeps the
  in-flight QoS 1 messages and re-sends them (DUP) on reconnect, in their order, and the
  publisher feeds nothing new while disconnected. A gateway restart: the pending rows are
  sent again from the first one, in ``id`` order (``AUTOINCREMENT``: ids are never reused).
* **In order.** Rows go out in ``id`` order; paho keeps that order on the wire and across
  a reconnect. Each station's results are enqueued in period order.
* **The QoS 1 window.** A crash after the broker accepted a message but before the row
  was marked re-sends that message after the restart: at most ``publish_window`` messages
  (those in flight), normally none. The window is kept small: the row is marked in
  paho's ``on_publish`` callback itself, one short SQLite transaction, the moment the
  PUBACK is read. Consumers that must never see a repeat de-duplicate on the payload's
  key (``type``, ``station`` and the period).

The gateway's retained status (with its last-will) does not go through the outbox: it is
a current state, not a result, and only its latest value matters.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, Protocol

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.logging import get_logger, log_event

OUTBOX_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,            -- hour | day | alarm | plan
    station TEXT NOT NULL,
    period TEXT NOT NULL,          -- the result's period key (see docs/gateway.md)
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    published_at REAL,             -- NULL while pending; set on PUBACK
    UNIQUE (kind, station, period)
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (id) WHERE published_at IS NULL;
"""

KINDS: Final = ("hour", "day", "alarm", "plan")


class Counting(Protocol):
    """What the outbox and engine need of ``gateway.counters.Counters``."""

    def inc(self, name: str, n: int = 1) -> None: ...


class OutboxRow(NamedTuple):
    id: int
    kind: str
    station: str
    period: str
    topic: str
    payload: bytes
    qos: int


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(OUTBOX_SCHEMA)


def enqueue(
    conn: sqlite3.Connection,
    kind: str,
    station: str,
    period: str,
    topic: str,
    payload: bytes,
    *,
    now: float,
) -> bool:
    """Add a result to the outbox inside the caller's open transaction (never commits).

    True when it was added, False when the key ``(kind, station, period)`` already
    exists (a recompute: the first payload stands).
    """
    if kind not in KINDS:
        raise ValueError(f"outbox kind {kind!r} is not one of {KINDS}")
    cursor = conn.execute(
        "INSERT OR IGNORE INTO outbox (kind, station, period, topic, payload, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (kind, station, period, topic, payload, now),
    )
    return cursor.rowcount == 1


def pending(conn: sqlite3.Connection, after_id: int = 0, limit: int = 100) -> list[OutboxRow]:
    """Pending rows with ``id > after_id``, in ``id`` order."""
    rows = conn.execute(
        "SELECT id, kind, station, period, topic, payload, qos FROM outbox"
        " WHERE published_at IS NULL AND id > ? ORDER BY id LIMIT ?",
        (after_id, limit),
    ).fetchall()
    return [OutboxRow(r[0], r[1], r[2], r[3], r[4], bytes(r[5]), r[6]) for r in rows]


def mark_published(conn: sqlite3.Connection, row_id: int, now: float) -> bool:
    """Mark a row published (its own transaction); False if it already was."""
    with conn:
        cursor = conn.execute(
            "UPDATE outbox SET published_at = ? WHERE id = ? AND published_at IS NULL",
            (now, row_id),
        )
    return cursor.rowcount == 1


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    published: int
    oldest_pending_created_at: float | None


def stats(conn: sqlite3.Connection) -> OutboxStats:
    row = conn.execute(
        "SELECT COALESCE(SUM(published_at IS NULL), 0), COALESCE(SUM(published_at IS NOT NULL), 0),"
        " MIN(CASE WHEN published_at IS NULL THEN created_at END) FROM outbox"
    ).fetchone()
    return OutboxStats(int(row[0]), int(row[1]), row[2])


def connect(db_path: Path | str) -> sqlite3.Connection:
    """A connection for the outbox (WAL, waits for writers instead of failing)."""
    conn = sqlite3.connect(db_path, timeout=30.0, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


# ---------------------------------------------------------------- publisher


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    host: str
    port: int
    client_id: str
    keepalive: int = 30
    username: str | None = None
    password: str | None = None


class _NoCounters:
    def inc(self, name: str, n: int = 1) -> None:
        pass


class Publisher:
    """Sends the outbox in order over QoS 1 and marks rows on PUBACK (see module doc).

    Threads: paho's network thread (``loop_start``) runs the callbacks and marks rows;
    the feeder thread ``lantian-outbox`` hands the next pending rows to paho, at most
    ``window`` in flight, only while connected. ``notify()`` wakes the feeder after the
    engine commits new rows (it also polls every ``poll_s``).

    ``status_topic``/``will_payload``: the gateway's retained status and the last-will
    the broker publishes when the gateway vanishes without a clean disconnect.
    """

    def __init__(
        self,
        db_path: Path | str,
        broker: BrokerSettings,
        *,
        status_topic: str,
        will_payload: bytes,
        window: int = 20,
        counters: Counting | None = None,
        clock: Callable[[], float] = time.time,
        poll_s: float = 0.5,
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self._db_path = db_path
        self._broker = broker
        self._status_topic = status_topic
        self._window = window
        self._counters: Counting = counters or _NoCounters()
        self._clock = clock
        self._poll_s = poll_s
        self._on_connect_hook = on_connect
        self._log = get_logger("gateway.outbox")

        self._read_db = connect(db_path)  # feeder thread
        self._write_db = connect(db_path)  # paho thread (on_publish)
        self._write_lock = threading.Lock()
        ensure_schema(self._read_db)

        self._lock = threading.Lock()  # guards the maps below, never held across paho calls
        self._mid_to_row: dict[int, int | None] = {}  # None: a status message
        self._early_acks: dict[int, float] = {}  # PUBACK seen before publish() returned
        self._cursor = 0  # highest row id handed to paho
        self._connected = threading.Event()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._feeder: threading.Thread | None = None

        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=broker.client_id,
            clean_session=True,
        )
        if broker.username is not None:
            client.username_pw_set(broker.username, broker.password)
        client.will_set(status_topic, will_payload, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=1, max_delay=4)
        client.max_inflight_messages_set(window + 2)  # + status messages
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        self.client = client

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect in the background (the broker may be down: paho keeps retrying)."""
        self.client.connect_async(self._broker.host, self._broker.port, self._broker.keepalive)
        self.client.loop_start()
        self._feeder = threading.Thread(target=self._feed, name="lantian-outbox", daemon=True)
        self._feeder.start()

    def stop(self, timeout: float = 5.0, final_status: bytes | None = None) -> None:
        """Stop feeding, wait up to ``timeout`` for in-flight PUBACKs, publish
        ``final_status`` (retained) and disconnect cleanly."""
        self._stopping.set()
        self._wake.set()
        if self._feeder is not None:
            self._feeder.join()
        deadline = time.monotonic() + timeout
        while self.in_flight() and time.monotonic() < deadline and self.connected:
            time.sleep(0.02)
        if final_status is not None and self.connected:
            info = self.publish_status(final_status)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.1, deadline - time.monotonic()))
        self.client.disconnect()
        self.client.loop_stop()
        self._read_db.close()
        with self._write_lock:
            self._write_db.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def notify(self) -> None:
        """New rows were committed: wake the feeder."""
        self._wake.set()

    def in_flight(self) -> int:
        with self._lock:
            return sum(1 for row in self._mid_to_row.values() if row is not None)

    def publish_status(self, payload: bytes) -> mqtt.MQTTMessageInfo:
        """Publish the gateway's retained status (QoS 1, not through the outbox)."""
        info = self.client.publish(self._status_topic, payload, qos=1, retain=True)
        self._track(info.mid, None)
        return info

    # ------------------------------------------------------------ feeder
    def _feed(self) -> None:
        try:
            while not self._stopping.is_set():
                sent = self._feed_once() if self.connected else 0
                if not sent:
                    self._wake.wait(self._poll_s)
                    self._wake.clear()
        except Exception:  # the feeder must not die silently
            log_event(self._log, 40, "outbox_feeder_failed", exc_info=True)
            self._counters.inc("outbox.feeder_failed")
            raise

    def _feed_once(self) -> int:
        room = self._window - self.in_flight()
        if room <= 0:
            return 0
        sent = 0
        for row in pending(self._read_db, self._cursor, room):
            if self._stopping.is_set() or not self.connected:
                break
            info = self.client.publish(row.topic, row.payload, qos=row.qos)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                # paho refused it (queue full): it was not taken, try again later
                self._counters.inc("outbox.publish_refused")
                break
            self._cursor = row.id
            self._counters.inc("outbox.sent")
            self._track(info.mid, row.id)
            sent += 1
        return sent

    def _track(self, mid: int, row_id: int | None) -> None:
        with self._lock:
            early = self._early_acks.pop(mid, None)
            if early is None:
                self._mid_to_row[mid] = row_id
            now = time.monotonic()
            for stale in [m for m, t in self._early_acks.items() if now - t > 60.0]:
                del self._early_acks[stale]
        if early is not None and row_id is not None:
            self._mark(row_id)

    # ------------------------------------------------------------ paho callbacks
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        if reason_code.is_failure:
            log_event(self._log, 30, "broker_refused", reason=str(reason_code))
            return
        self._connected.set()
        self._counters.inc("publisher.connects")
        log_event(self._log, 20, "broker_connected", host=self._broker.host, port=self._broker.port)
        if self._on_connect_hook is not None:
            self._on_connect_hook()
        self._wake.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._connected.clear()
        if not self._stopping.is_set():
            self._counters.inc("publisher.disconnects")
            log_event(self._log, 30, "broker_disconnected", reason=str(reason_code))

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        # Runs in paho's thread holding paho's message lock: only our own short lock and
        # one SQLite update here, no paho call.
        with self._lock:
            if mid in self._mid_to_row:
                row_id = self._mid_to_row.pop(mid)
            else:
                self._early_acks[mid] = time.monotonic()
                return
        if row_id is not None:
            self._mark(row_id)
        self._wake.set()

    def _mark(self, row_id: int) -> None:
        with self._write_lock:
            marked = mark_published(self._write_db, row_id, self._clock())
        if marked:
            self._counters.inc("published")
        else:
            self._counters.inc("outbox.already_marked")


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (``ROLLBACK`` on an exception), whatever the
    connection's isolation mode; a stray implicit transaction is committed first."""
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
