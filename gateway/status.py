"""Station status for the operator: the stations' retained status, kept and summarised.

Two halves:

* :class:`StatusListener` -- run by the gateway service beside the ingest. It subscribes
  to ``<prefix>/station/+/status`` (retained, QoS 1) and keeps the latest word of each
  station in the ``station_status`` table. A status must be signed by the station's
  device key (``body \\n hex-HMAC``, docs/topics.md; keys from gateway/keys.py) and valid
  by docs/schemas/station-status.schema.json; the only unsigned message accepted is the
  broker's last-will ``{"online": false[, "station": ...]}``, which marks the station
  offline but keeps its last verified status (ring, buses, versions) for the operator.
  Anything else is refused and counted (``status.rejected.<reason>``), never stored.
* :func:`collect` -- the facts ``lantian status``, the status web page (gateway/web.py)
  and the report share, read from the database only (``stations``, ``records``,
  ``station_status``, ``dead_letters``, ``outbox``).

A station's ``state``:

==============  =====================================================================
``online``      its latest word is a signed running status, and a status or a record
                arrived within ``silent_after_s`` (default 180 s: three status periods)
``safe_mode``   its latest signed status says ``"mode": "safe"`` (config or key unusable:
                connected, not sampling; ``error`` says why)
``offline``     the broker published its last-will (the connection was lost) and
                nothing arrived since
``silent``      nothing heard for more than ``silent_after_s`` and no last-will (a
                stale retained status, or a station known from records only)
``never_seen``  in the key store, nothing in the database
==============  =====================================================================

``lantian status --config FILE`` (or ``--db FILE``) prints a table; ``--json`` the
document that ``/status.json`` serves.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import hmac
import json
import queue
import re
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Final, Protocol

STATUS_SCHEMA_SQL: Final = """
CREATE TABLE IF NOT EXISTS station_status (
    station TEXT PRIMARY KEY,
    online INTEGER NOT NULL,          -- 1: a signed status is the latest word; 0: last-will
    received_at REAL NOT NULL,        -- gateway clock of the latest message (status or will)
    status_received_at REAL,          -- gateway clock of the latest verified status
    status_ts INTEGER,                -- its ts (the station's clock)
    mode TEXT,                        -- 'safe' in safe mode, else NULL
    body TEXT,                        -- the latest verified status body (JSON text)
    payload BLOB,                     -- that status as received (signature re-verifiable)
    will_at REAL                      -- when the last-will arrived; NULL after a newer status
) WITHOUT ROWID;
"""

SCHEMA_FILE: Final = "station-status.schema.json"
DEFAULT_SILENT_AFTER_S: Final = 180.0
_SIG = re.compile(rb"[0-9a-f]{64}")
_STATION_ID = re.compile(r"[a-z0-9_-]{1,32}")

STATES: Final = ("online", "safe_mode", "offline", "silent", "never_seen")

# Rejection reasons of a status message (counter ``status.rejected.<reason>``).
BAD_TOPIC: Final = "bad_topic"
UNKNOWN_STATION: Final = "unknown_station"
BAD_SIGNATURE: Final = "bad_signature"
UNSIGNED: Final = "unsigned"
MALFORMED_JSON: Final = "malformed_json"
SCHEMA: Final = "schema"
STATION_MISMATCH: Final = "station_mismatch"
STALE: Final = "stale"


class KeyLookup(Protocol):
    def get(self, station: str, /) -> bytes | None: ...


class CounterLike(Protocol):
    def inc(self, name: str, n: int = 1) -> None: ...


class _NoCounters:
    def inc(self, name: str, n: int = 1) -> None:
        pass


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(STATUS_SCHEMA_SQL)


# ---------------------------------------------------------------- one status message


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    """What :func:`apply_status` did: ``kind`` is ``status``, ``safe_mode``,
    ``last_will``, ``cleared`` (an empty retained message: ignored) or ``rejected``."""

    kind: str
    station: str | None
    reason: str | None = None
    detail: str = ""


def topic_station(topic: str, prefix: str) -> str | None:
    head = prefix.rstrip("/") + "/station/"
    if not topic.startswith(head):
        return None
    sid, sep, leaf = topic[len(head) :].partition("/")
    return sid if sep and leaf == "status" and _STATION_ID.fullmatch(sid) else None


def _is_last_will(doc: object, station: str) -> bool:
    return (
        isinstance(doc, dict)
        and doc.get("online") is False
        and set(doc) <= {"online", "station"}
        and doc.get("station", station) == station
    )


def apply_status(
    conn: sqlite3.Connection,
    topic: str,
    payload: bytes,
    keys: KeyLookup,
    *,
    now: float,
    prefix: str = "lantian/v1",
    counters: CounterLike | None = None,
) -> StatusOutcome:
    """Verify one message of ``<prefix>/station/<id>/status`` and record it (one
    transaction). Never raises on input; a refused message changes nothing."""
    from gateway.ingest import parse_body, schema_error, validator_for

    c = counters if counters is not None else _NoCounters()
    c.inc("status.received")
    station = topic_station(topic, prefix)

    def reject(reason: str, detail: str = "") -> StatusOutcome:
        c.inc("status.rejected")
        c.inc("status.rejected." + reason)
        return StatusOutcome("rejected", station, reason, detail)

    if station is None:
        return reject(BAD_TOPIC, topic[:200])
    if not payload:
        c.inc("status.cleared")
        return StatusOutcome("cleared", station)
    body, sep, sig = payload.rpartition(b"\n")
    if not sep or not _SIG.fullmatch(sig):
        # Unsigned: only the broker's last-will is acceptable.
        try:
            doc = parse_body(payload)
        except (ValueError, RecursionError):
            return reject(UNSIGNED, "neither signed nor a last-will")
        if not _is_last_will(doc, station):
            return reject(UNSIGNED, "an unsigned status other than the last-will")
        with conn:
            conn.execute(
                "INSERT INTO station_status (station, online, received_at, will_at)"
                " VALUES (?, 0, ?, ?) ON CONFLICT (station) DO UPDATE SET"
                " online = 0, received_at = excluded.received_at, will_at = excluded.will_at",
                (station, now, now),
            )
        c.inc("status.last_will")
        return StatusOutcome("last_will", station)
    key = keys.get(station)
    if key is None:
        return reject(UNKNOWN_STATION, f"no device key for {station!r}")
    mac = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
    if not hmac.compare_digest(mac, sig):
        return reject(BAD_SIGNATURE, "HMAC-SHA256 does not match the body")
    try:
        doc = parse_body(body)
    except (ValueError, RecursionError) as e:
        return reject(MALFORMED_JSON, str(e)[:200])
    problem = schema_error(validator_for(SCHEMA_FILE), doc)
    if problem is not None or not isinstance(doc, dict):
        return reject(SCHEMA, (problem or "not an object")[:200])
    if doc.get("station") not in (station, None):
        return reject(STATION_MISMATCH, f"body station {doc.get('station')!r}")
    if doc.get("online") is False:
        # A signed last-will shape: treat as offline (a station saying goodbye).
        with conn:
            conn.execute(
                "INSERT INTO station_status (station, online, received_at, will_at)"
                " VALUES (?, 0, ?, ?) ON CONFLICT (station) DO UPDATE SET"
                " online = 0, received_at = excluded.received_at, will_at = excluded.will_at",
                (station, now, now),
            )
        c.inc("status.last_will")
        return StatusOutcome("last_will", station)
    ts = int(doc["ts"])
    safe = doc.get("mode") == "safe"
    row = conn.execute(
        "SELECT status_ts, body FROM station_status WHERE station = ?", (station,)
    ).fetchone()
    if row is not None and row[0] is not None and row[1] is not None and ts < int(row[0]):
        # An older signed status than the one kept: a replay, unless the station's clock
        # is not synced (then its ts says nothing about order).
        old = json.loads(row[1])
        if old.get("time_valid", True) and doc.get("time_valid", True):
            return reject(STALE, f"ts {ts} is older than the kept status's {row[0]}")
    with conn:
        conn.execute(
            "INSERT INTO station_status (station, online, received_at, status_received_at,"
            " status_ts, mode, body, payload, will_at) VALUES (?, 1, ?, ?, ?, ?, ?, ?, NULL)"
            " ON CONFLICT (station) DO UPDATE SET online = 1,"
            " received_at = excluded.received_at,"
            " status_received_at = excluded.status_received_at,"
            " status_ts = excluded.status_ts, mode = excluded.mode, body = excluded.body,"
            " payload = excluded.payload, will_at = NULL",
            (
                station,
                now,
                now,
                ts,
                "safe" if safe else None,
                json.dumps(doc, sort_keys=True),
                payload,
            ),
        )
    c.inc("status.stored")
    return StatusOutcome("safe_mode" if safe else "status", station)


# ---------------------------------------------------------------- the listener


class StatusListener:
    """Subscribes to the stations' retained status and records it (see module doc).

    paho's network thread only queues messages; the ``lantian-status`` thread owns its
    own SQLite connection and writes. The key store is read again (at most every
    ``keys_reload_s``) when a station's key is not known, so a station provisioned while
    the gateway runs is recognised.
    """

    def __init__(
        self,
        db_path: str | Path,
        keys_path: str | Path,
        host: str,
        port: int,
        *,
        prefix: str = "lantian/v1",
        client_id: str = "lantian-gateway-status",
        keepalive: int = 30,
        username: str | None = None,
        password: str | None = None,
        counters: CounterLike | None = None,
        clock: Callable[[], float] = time.time,
        keys_reload_s: float = 10.0,
    ) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.db_path = Path(db_path)
        self.keys_path = Path(keys_path)
        self.prefix = prefix.rstrip("/")
        self.topic = self.prefix + "/station/+/status"
        self.counters: CounterLike = counters if counters is not None else _NoCounters()
        self.clock = clock
        self.keys_reload_s = keys_reload_s
        self.subscribed = threading.Event()
        self._queue: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._host, self._port, self._keepalive = host, port, keepalive
        self.processed = 0
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.on_message = self._on_message

    @classmethod
    def for_config(
        cls,
        cfg: Any,
        counters: CounterLike | None = None,
        clock: Callable[[], float] = time.time,
    ) -> StatusListener:
        """A listener for a :class:`gateway.config.GatewayConfig` (``clock``: the
        gateway's, so that statuses and records are timed alike)."""
        return cls(
            cfg.db_path,
            cfg.keys_path,
            cfg.mqtt.host,
            cfg.mqtt.port,
            prefix=cfg.mqtt.prefix,
            client_id=f"lantian-{cfg.gateway_id}-status",
            keepalive=cfg.mqtt.keepalive,
            username=cfg.mqtt.username,
            password=cfg.mqtt.password,
            counters=counters,
            clock=clock,
        )

    def _on_connect(self, client: Any, userdata: object, *args: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client: Any, userdata: object, msg: Any) -> None:
        try:
            topic = str(msg.topic)
        except UnicodeDecodeError:
            topic = bytes(msg._topic).decode("utf-8", "backslashreplace")
        self._queue.put((topic, bytes(msg.payload)))

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name="lantian-status", daemon=True)
        self._thread.start()
        self.client.connect_async(self._host, self._port, keepalive=self._keepalive)
        self.client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is None:
            return
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()
        # paho keeps its wake-up socket pair until garbage collection: close it now.
        for name in ("_sockpairR", "_sockpairW"):
            sock = getattr(self.client, name, None)
            if sock is not None:
                sock.close()
                setattr(self.client, name, None)
        self._stop.set()
        self._thread.join(timeout_s)
        self._thread = None

    def _load_keys(self) -> KeyLookup:
        from gateway.keys import KeyStore, KeyStoreError

        try:
            return KeyStore.load(self.keys_path, missing_ok=True)
        except (KeyStoreError, OSError):
            self.counters.inc("status.keys_unreadable")
            return {}

    def _main(self) -> None:
        conn = sqlite3.connect(str(self.db_path), timeout=30.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            ensure_schema(conn)
            keys = self._load_keys()
            loaded = time.monotonic()
            while not self._stop.is_set() or not self._queue.empty():
                try:
                    topic, payload = self._queue.get(timeout=0.2)
                except queue.Empty:
                    continue
                station = topic_station(topic, self.prefix)
                if (
                    station is not None
                    and keys.get(station) is None
                    and time.monotonic() - loaded > self.keys_reload_s
                ):
                    keys, loaded = self._load_keys(), time.monotonic()
                try:
                    apply_status(
                        conn,
                        topic,
                        payload,
                        keys,
                        now=self.clock(),
                        prefix=self.prefix,
                        counters=self.counters,
                    )
                except sqlite3.Error:
                    self.counters.inc("status.store_failed")
                self.processed += 1
        finally:
            conn.close()


# ---------------------------------------------------------------- the facts


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def offset_text(utc_offset_s: int) -> str:
    sign = "-" if utc_offset_s < 0 else "+"
    m = abs(utc_offset_s) // 60
    return f"{sign}{m // 60:02d}:{m % 60:02d}"


def local_time(ts: float | None, utc_offset_s: int) -> str | None:
    """``2019-06-15T08:01:00+08:00`` for epoch ``ts`` (None stays None)."""
    if ts is None:
        return None
    tz = timezone(timedelta(seconds=utc_offset_s))
    return datetime.fromtimestamp(float(ts), UTC).astimezone(tz).isoformat(timespec="seconds")


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else round(max(0.0, now - then), 1)


def _bus_summary(body: Mapping[str, Any]) -> tuple[dict[str, int], list[dict[str, Any]]]:
    totals = {"timeouts": 0, "crc_errors": 0, "exceptions": 0}
    devices: list[dict[str, Any]] = []
    for bus_name, bus in sorted(body.get("buses", {}).items()):
        for dev_name, dev in sorted(bus.get("devices", {}).items()):
            row = {
                "bus": bus_name,
                "device": dev_name,
                "state": dev.get("state"),
                "polls": int(dev.get("polls", 0)),
                "ok": int(dev.get("ok", 0)),
                "timeouts": int(dev.get("timeouts", 0)),
                "crc_errors": int(dev.get("crc_errors", 0)),
                "exceptions": int(dev.get("exceptions", 0)),
            }
            row["errors"] = row["timeouts"] + row["crc_errors"] + row["exceptions"]
            for k in totals:
                totals[k] += row[k]
            devices.append(row)
    totals["total"] = totals["timeouts"] + totals["crc_errors"] + totals["exceptions"]
    return totals, devices


def _station_doc(
    station: str,
    info: tuple[Any, ...] | None,
    last: tuple[Any, ...] | None,
    st: tuple[Any, ...] | None,
    dead: int,
    now: float,
    silent_after_s: float,
    utc_offset_s: int,
) -> dict[str, Any]:
    last_seen = None if info is None else float(info[0])
    last_seq = None if info is None else int(info[1])
    body: dict[str, Any] = {}
    online_flag = will_at = status_at = None
    if st is not None:
        online_flag, _, status_at, will_at, body_text = st
        body = json.loads(body_text) if body_text else {}
    heard = [t for t in (last_seen, status_at) if t is not None]
    last_heard = max(heard) if heard else None
    if info is None and st is None:
        state, reason = "never_seen", "in the key store; nothing received"
    elif online_flag == 0 and will_at is not None and (last_seen is None or will_at >= last_seen):
        state = "offline"
        reason = f"last-will at {local_time(will_at, utc_offset_s)}: connection lost"
    elif last_heard is None or now - last_heard > silent_after_s:
        state = "silent"
        reason = f"nothing heard for more than {silent_after_s:g} s"
    elif body.get("mode") == "safe":
        err = body.get("error") or {}
        state = "safe_mode"
        reason = f"safe mode: {err.get('kind')} {err.get('field')}: {err.get('problem')}"
    elif body:
        state, reason = "online", "signed status"
    else:
        state, reason = "online", "records arriving (no status received)"
    ring = body.get("ring")
    ring_doc = None
    if isinstance(ring, dict):
        cap = int(ring.get("capacity", 0))
        fill = int(ring.get("fill", 0))
        ring_doc = {
            "fill": fill,
            "capacity": cap,
            "fill_pct": round(100.0 * fill / cap, 1) if cap else None,
            "dropped": int(ring.get("dropped", 0)),
            "appended": int(ring.get("appended", 0)),
            "sent": int(ring.get("sent", 0)),
        }
    bus_errors = devices = None
    if "buses" in body:
        bus_errors, devices = _bus_summary(body)
    last_record = None
    fw = body.get("fw")
    cal = body.get("cal")
    if last is not None:
        ts, rec_received, time_valid, rec_fw, rec_cal = last
        last_record = {
            "seq": last_seq,
            "ts": int(ts),
            "time": local_time(ts, utc_offset_s),
            "time_valid": bool(time_valid),
            "received_at": float(rec_received),
            "age_s": _age(now, float(rec_received)),
        }
        if fw is None:
            fw, cal = rec_fw, rec_cal
    return {
        "station": station,
        "state": state,
        "online": state in ("online", "safe_mode"),
        "reason": reason,
        "last_heard": last_heard,
        "last_heard_age_s": _age(now, last_heard),
        "last_record": last_record,
        "fw": fw,
        "cal": None if cal is None else int(cal),
        "maintenance": body.get("maintenance"),
        "time_valid": body.get("time_valid"),
        "uptime_s": body.get("uptime_s"),
        "station_ts": body.get("ts"),
        "status_received_at": status_at,
        "status_age_s": _age(now, status_at),
        "mode": body.get("mode"),
        "error": body.get("error"),
        "ring": ring_doc,
        "bus_errors": bus_errors,
        "devices": devices,
        "commands": body.get("commands"),
        "watchdog_stale_task": (body.get("watchdog") or {}).get("stale_task"),
        "dead_letters": dead,
    }


def collect(
    conn: sqlite3.Connection,
    *,
    now: float | None = None,
    silent_after_s: float = DEFAULT_SILENT_AFTER_S,
    utc_offset_s: int = 8 * 3600,
    known_stations: Sequence[str] = (),
    gateway_id: str | None = None,
) -> dict[str, Any]:
    """Every station's facts and the gateway's (dead letters, outbox) as one JSON-able
    document (the ``--json`` output and ``/status.json``)."""
    now = time.time() if now is None else now
    infos: dict[str, tuple[Any, ...]] = {}
    lasts: dict[str, tuple[Any, ...]] = {}
    if _table_exists(conn, "stations"):
        for station, last_seen, last_seq in conn.execute(
            "SELECT station, last_seen, last_seq FROM stations"
        ):
            infos[str(station)] = (last_seen, last_seq)
            row = conn.execute(
                "SELECT ts, received_at, time_valid, fw, cal FROM records"
                " WHERE station = ? AND seq = ?",
                (station, last_seq),
            ).fetchone()
            if row is not None:
                lasts[str(station)] = tuple(row)
    statuses: dict[str, tuple[Any, ...]] = {}
    if _table_exists(conn, "station_status"):
        for station, online, received, status_at, will_at, body in conn.execute(
            "SELECT station, online, received_at, status_received_at, will_at, body"
            " FROM station_status"
        ):
            statuses[str(station)] = (online, received, status_at, will_at, body)
    dead_by_station: dict[str, int] = {}
    dead_by_reason: dict[str, int] = {}
    if _table_exists(conn, "dead_letters"):
        for station, reason, n in conn.execute(
            "SELECT station, reason, COUNT(*) FROM dead_letters GROUP BY station, reason"
        ):
            if station is not None:
                dead_by_station[str(station)] = dead_by_station.get(str(station), 0) + int(n)
            dead_by_reason[str(reason)] = dead_by_reason.get(str(reason), 0) + int(n)
    outbox_doc = None
    if _table_exists(conn, "outbox"):
        from gateway import outbox

        box = outbox.stats(conn)
        outbox_doc = {
            "pending": box.pending,
            "published": box.published,
            "oldest_pending_age_s": _age(now, box.oldest_pending_created_at),
        }
    names = sorted(set(infos) | set(statuses) | set(known_stations))
    stations = [
        _station_doc(
            s,
            infos.get(s),
            lasts.get(s),
            statuses.get(s),
            dead_by_station.get(s, 0),
            now,
            silent_after_s,
            utc_offset_s,
        )
        for s in names
    ]
    summary = {state: 0 for state in STATES}
    for doc in stations:
        summary[doc["state"]] += 1
    return {
        "v": 1,
        "type": "operator_status",
        "gateway": gateway_id,
        "generated_at": round(now, 3),
        "generated": local_time(now, utc_offset_s),
        "utc_offset": offset_text(utc_offset_s),
        "silent_after_s": silent_after_s,
        "summary": {"stations": len(stations), **summary},
        "dead_letters": {
            "total": sum(dead_by_reason.values()),
            "by_reason": dict(sorted(dead_by_reason.items())),
        },
        "outbox": outbox_doc,
        "stations": stations,
    }


def collect_from(
    db_path: str | Path,
    *,
    now: float | None = None,
    silent_after_s: float = DEFAULT_SILENT_AFTER_S,
    utc_offset_s: int = 8 * 3600,
    known_stations: Sequence[str] = (),
    gateway_id: str | None = None,
) -> dict[str, Any]:
    """:func:`collect` on a read-only connection to ``db_path``."""
    path = Path(db_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such database")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10.0)
    try:
        return collect(
            conn,
            now=now,
            silent_after_s=silent_after_s,
            utc_offset_s=utc_offset_s,
            known_stations=known_stations,
            gateway_id=gateway_id,
        )
    finally:
        conn.close()


# ---------------------------------------------------------------- the table


def _n(v: object) -> str:
    return "-" if v is None else str(v)


def _age_text(age: float | None) -> str:
    if age is None:
        return "-"
    a = int(age)
    if a < 120:
        return f"{a}s"
    if a < 7200:
        return f"{a // 60}m"
    if a < 172800:
        return f"{a // 3600}h"
    return f"{a // 86400}d"


def table_rows(doc: Mapping[str, Any]) -> list[list[str]]:
    """The station table's rows (header first), as ``lantian status`` prints them and
    the web page shows them."""
    rows = [
        [
            "STATION",
            "STATE",
            "LAST RECORD",
            "SEQ",
            "AGE",
            "RING",
            "FILL%",
            "DROPPED",
            "TIMEOUTS",
            "CRC",
            "EXC",
            "FW",
            "CAL",
        ]
    ]
    for s in doc["stations"]:
        rec = s["last_record"] or {}
        ring = s["ring"] or {}
        bus = s["bus_errors"] or {}
        rows.append(
            [
                s["station"],
                s["state"],
                _n(rec.get("time")),
                _n(rec.get("seq")),
                _age_text(s["last_heard_age_s"]),
                f"{ring['fill']}/{ring['capacity']}" if ring else "-",
                _n(ring.get("fill_pct")),
                _n(ring.get("dropped")),
                _n(bus.get("timeouts")),
                _n(bus.get("crc_errors")),
                _n(bus.get("exceptions")),
                _n(s["fw"]),
                _n(s["cal"]),
            ]
        )
    return rows


def _format(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def render_text(doc: Mapping[str, Any]) -> str:
    out = [_format(table_rows(doc))]
    dev_rows = [["STATION", "BUS", "DEVICE", "STATE", "POLLS", "OK", "TIMEOUTS", "CRC", "EXC"]]
    for s in doc["stations"]:
        for d in s["devices"] or []:
            dev_rows.append(
                [
                    s["station"],
                    d["bus"],
                    d["device"],
                    _n(d["state"]),
                    str(d["polls"]),
                    str(d["ok"]),
                    str(d["timeouts"]),
                    str(d["crc_errors"]),
                    str(d["exceptions"]),
                ]
            )
    if len(dev_rows) > 1:
        out += ["", "bus errors per device:", _format(dev_rows)]
    notes = [
        f"  {s['station']}: {s['reason']}"
        for s in doc["stations"]
        if s["state"] != "online" or s["maintenance"] or s["watchdog_stale_task"]
    ]
    for s in doc["stations"]:
        if s["maintenance"]:
            notes.append(f"  {s['station']}: in maintenance (samples flagged M)")
        if s["watchdog_stale_task"]:
            notes.append(f"  {s['station']}: watchdog saw task {s['watchdog_stale_task']} stall")
    if notes:
        out += ["", "notes:", *notes]
    summ = doc["summary"]
    dl = doc["dead_letters"]
    box = doc["outbox"]
    line = (
        f"{summ['stations']} stations: {summ['online']} online, {summ['safe_mode']} safe mode,"
        f" {summ['offline']} offline, {summ['silent']} silent, {summ['never_seen']} never seen;"
        f" dead letters {dl['total']}"
    )
    if box is not None:
        line += f"; outbox {box['pending']} pending, {box['published']} published"
    out += ["", line, f"(times {doc['utc_offset']}; generated {doc['generated']})"]
    return "\n".join(out)


# ---------------------------------------------------------------- command line


def _known_stations(keys_path: Path | None) -> list[str]:
    if keys_path is None:
        return []
    from gateway.keys import KeyStore, KeyStoreError

    try:
        return KeyStore.load(keys_path, missing_ok=True).stations()
    except (KeyStoreError, OSError) as e:
        print(
            f"lantian status: key store not read ({e}); stations from the database only",
            file=sys.stderr,
        )
        return []


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lantian status",
        description="Every station: online/offline, last record, buffer fill, bus errors,"
        " firmware and calibration version.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the gateway's config file (its db, keys, utc_offset)")
    src.add_argument("--db", type=Path, help="the gateway's database, read only")
    p.add_argument("--keys", type=Path, help="key store: list provisioned stations never seen")
    p.add_argument("--json", action="store_true", help="the JSON document (= /status.json)")
    p.add_argument(
        "--silent-after",
        type=float,
        default=DEFAULT_SILENT_AFTER_S,
        help="seconds without a status or record before a station is 'silent' (default 180)",
    )
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    utc_offset_s = 8 * 3600
    gateway_id = None
    keys_path: Path | None = args.keys
    if args.config is not None:
        from gateway.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as error:
            print(f"lantian status: config error: {error}", file=sys.stderr)
            return 2
        db_path = cfg.db_path
        utc_offset_s = cfg.utc_offset_s
        gateway_id = cfg.gateway_id
        keys_path = keys_path or cfg.keys_path
    else:
        db_path = args.db
    try:
        doc = collect_from(
            db_path,
            silent_after_s=args.silent_after,
            utc_offset_s=utc_offset_s,
            known_stations=_known_stations(keys_path),
            gateway_id=gateway_id,
        )
    except (FileNotFoundError, sqlite3.Error) as error:
        print(f"lantian status: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        print(render_text(doc))
    return 0
