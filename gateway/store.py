"""The gateway's SQLite store: raw signed records, minute values, dead letters, stations.

One connection, owned by one thread (the gateway's): SQLite objects are not shared
across threads here (``check_same_thread`` stays on). The database runs in WAL mode with
``synchronous=NORMAL`` (a commit is durable once the WAL is checkpointed; a power cut
loses at most the last transactions, never consistency -- and the ingest acknowledges an
MQTT message only after the transaction holding it committed, so the broker redelivers
what a crash lost). The schema is versioned with ``PRAGMA user_version``; a database made
by a newer gateway is refused (:class:`StoreVersionError`), an older one is migrated.

Tables (schema 1)
-----------------
``records``
    every accepted minute record, with the signed payload exactly as received ("raw data
    kept": the signature can be re-verified at any time). Primary key (station, seq).
``minutes``
    one row per (station, channel, minute start ``ts``) -- the values the results engine
    aggregates. The first record that delivers a minute wins: a second record for the
    same minute (a station clock stepped back by NTP, a station restored from a backup)
    stays in ``records`` but does not overwrite it, and is counted ``duplicate_minute``.
    Records stamped before the station's clock was synced (``time_valid`` false) are kept
    in ``records`` only: their ``ts`` is not a real time, and letting them into
    ``minutes`` would let a wrongly-timed value win a minute over the real one.
``dead_letters``
    every rejected message: reason, detail, topic, claimed station, the first
    ``DEAD_LETTER_BYTES`` of the payload and its full length.
``stations``
    per station: first/last time a record was stored (gateway clock), the highest seq,
    and ``max_ts``, the data watermark (the latest minute start stored in ``minutes``).

Flags in :meth:`Store.minute_arrays` are the ASCII code of the HJ 212 flag letter
(``ord("N") == 78``); 0 means "no record for this minute".
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SCHEMA_VERSION = 1
MINUTE_S = 60
DEAD_LETTER_BYTES = 8192  # bytes of a rejected payload kept in the dead_letters table


class StoreError(Exception):
    """Base of the store's errors."""


class StoreVersionError(StoreError):
    """The database's schema is newer than this gateway knows (``found`` > ``supported``)."""

    def __init__(self, path: str, found: int, supported: int) -> None:
        self.path = path
        self.found = found
        self.supported = supported
        super().__init__(
            f"{path}: schema version {found} is newer than this gateway's {supported}; "
            "upgrade the gateway"
        )


@dataclass(frozen=True, slots=True)
class ChannelMinute:
    """One channel of a minute record (docs/topics.md); None = no valid sample."""

    channel: str
    mean: float | None
    min: float | None
    max: float | None
    n: int
    exp: int
    flag: str
    unit: str


@dataclass(frozen=True, slots=True)
class ParsedRecord:
    """An authenticated, schema-valid minute record and the payload it came in."""

    station: str
    seq: int
    ts: int
    interval: int
    time_valid: bool
    fw: str
    cal: int
    channels: tuple[ChannelMinute, ...]
    payload: bytes  # the signed payload, byte for byte as received
    received_at: float  # gateway clock, epoch seconds


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A rejected message and why. ``payload`` holds at most ``DEAD_LETTER_BYTES``."""

    reason: str
    detail: str
    topic: str
    station: str | None
    payload: bytes
    payload_len: int
    received_at: float

    def to_json(self, max_bytes: int = 1024) -> bytes:
        """The message published on ``<prefix>/deadletter`` (payload base64, truncated)."""
        kept = self.payload[:max_bytes]
        doc: dict[str, object] = {
            "reason": self.reason,
            "detail": self.detail,
            "topic": self.topic,
            "station": self.station,
            "payload_b64": base64.b64encode(kept).decode("ascii"),
            "payload_len": self.payload_len,
            "truncated": len(kept) < self.payload_len,
            "received_at": self.received_at,
        }
        return json.dumps(doc, separators=(", ", ": ")).encode()


@dataclass(frozen=True, slots=True)
class StationInfo:
    station: str
    first_seen: float
    last_seen: float
    last_seq: int
    max_ts: int | None  # None while the station has sent no time-valid record


@dataclass(frozen=True, slots=True)
class MinuteRow:
    station: str
    channel: str
    ts: int
    mean: float | None
    min: float | None
    max: float | None
    n: int
    exp: int
    flag: str
    unit: str
    seq: int  # the record the minute came from


@dataclass(frozen=True, slots=True)
class InsertResult:
    """What one :meth:`Store.insert_batch` transaction did.

    ``spans`` maps each station whose ``minutes`` got new rows to the first and last
    minute start written: what the results engine has to (re)compute.
    """

    stored: int = 0  # records written
    conflicts: int = 0  # (station, seq) already in the table: not written
    duplicate_minutes: int = 0  # records stored whose minute already had a row
    unsynced: int = 0  # records stored with time_valid false (records table only)
    minutes: int = 0  # minute rows written
    dead_letters: int = 0
    spans: dict[str, tuple[int, int]] = field(default_factory=dict)


def _text(s: str) -> str:
    """``s`` safe for SQLite's UTF-8 (lone surrogates escaped, never an exception)."""
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


_SCHEMA_1 = """
CREATE TABLE records (
    station TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    received_at REAL NOT NULL,
    time_valid INTEGER NOT NULL,
    fw TEXT NOT NULL,
    cal INTEGER NOT NULL,
    payload BLOB NOT NULL,
    PRIMARY KEY (station, seq)
) WITHOUT ROWID;
CREATE TABLE minutes (
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    ts INTEGER NOT NULL,
    mean REAL,
    min REAL,
    max REAL,
    n INTEGER NOT NULL,
    exp INTEGER NOT NULL,
    flag TEXT NOT NULL,
    unit TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (station, channel, ts)
) WITHOUT ROWID;
CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    received_at REAL NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    topic TEXT NOT NULL,
    station TEXT,
    payload BLOB NOT NULL,
    payload_len INTEGER NOT NULL
);
CREATE INDEX dead_letters_by_reason ON dead_letters (reason, received_at);
CREATE TABLE stations (
    station TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_seq INTEGER NOT NULL,
    max_ts INTEGER
);
"""

# _MIGRATIONS[v] brings a database from user_version v to v + 1.
_MIGRATIONS: tuple[str, ...] = (_SCHEMA_1,)
assert len(_MIGRATIONS) == SCHEMA_VERSION  # a module invariant, not input

_INSERT_RECORD = (
    "INSERT OR IGNORE INTO records "
    "(station, seq, ts, received_at, time_valid, fw, cal, payload) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_MINUTE = (
    "INSERT OR IGNORE INTO minutes "
    "(station, channel, ts, mean, min, max, n, exp, flag, unit, seq) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPSERT_STATION = """
INSERT INTO stations (station, first_seen, last_seen, last_seq, max_ts) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (station) DO UPDATE SET
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen),
    last_seq = max(last_seq, excluded.last_seq),
    max_ts = CASE
        WHEN excluded.max_ts IS NULL THEN max_ts
        WHEN max_ts IS NULL THEN excluded.max_ts
        ELSE max(max_ts, excluded.max_ts) END
"""
_INSERT_DEAD = (
    "INSERT INTO dead_letters (received_at, reason, detail, topic, station, payload, payload_len) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class Store:
    """The gateway's SQLite database at ``path`` (created and migrated on open)."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000) -> None:
        self.path = os.fspath(path)
        # isolation_level=None: no implicit transactions; insert_batch opens its own.
        self.conn: sqlite3.Connection = sqlite3.connect(
            self.path, isolation_level=None, timeout=busy_timeout_ms / 1000
        )
        try:
            self.journal_mode = str(self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except BaseException:
            self.conn.close()
            raise

    # ------------------------------------------------------------------ lifecycle
    def _migrate(self) -> None:
        version = int(self.conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreVersionError(self.path, version, SCHEMA_VERSION)
        while version < SCHEMA_VERSION:
            script = _MIGRATIONS[version]
            version += 1
            # executescript() commits first; the BEGIN makes the step all-or-nothing.
            self.conn.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;"
            )

    @property
    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def insert_batch(
        self, records: Sequence[ParsedRecord], dead_letters: Sequence[DeadLetter] = ()
    ) -> InsertResult:
        """Write ``records`` and ``dead_letters`` in ONE transaction (all or nothing).

        A record whose (station, seq) is already stored is not written (``conflicts``);
        the ingest decides duplicate vs replay before it gets here.
        """
        cur = self.conn.cursor()
        stored = conflicts = dup_minutes = unsynced = minutes = 0
        spans: dict[str, tuple[int, int]] = {}
        seen: dict[str, tuple[float, float, int, int | None]] = {}
        cur.execute("BEGIN IMMEDIATE")
        try:
            for r in records:
                cur.execute(
                    _INSERT_RECORD,
                    (
                        r.station,
                        r.seq,
                        r.ts,
                        r.received_at,
                        int(r.time_valid),
                        r.fw,
                        r.cal,
                        r.payload,
                    ),
                )
                if cur.rowcount != 1:
                    conflicts += 1
                    continue
                stored += 1
                first, last, top_seq, top_ts = seen.get(
                    r.station, (r.received_at, r.received_at, r.seq, None)
                )
                first, last, top_seq = (
                    min(first, r.received_at),
                    max(last, r.received_at),
                    max(top_seq, r.seq),
                )
                if not r.time_valid:
                    unsynced += 1
                    seen[r.station] = (first, last, top_seq, top_ts)
                    continue
                st, ts, seq = r.station, r.ts, r.seq
                rows = [
                    (st, c.channel, ts, c.mean, c.min, c.max, c.n, c.exp, c.flag, c.unit, seq)
                    for c in r.channels
                ]
                cur.executemany(_INSERT_MINUTE, rows)
                written = max(cur.rowcount, 0)
                minutes += written
                if written < len(rows):
                    dup_minutes += 1
                if written:
                    lo, hi = spans.get(r.station, (r.ts, r.ts))
                    spans[r.station] = (min(lo, r.ts), max(hi, r.ts))
                    top_ts = r.ts if top_ts is None else max(top_ts, r.ts)
                seen[r.station] = (first, last, top_seq, top_ts)
            cur.executemany(_UPSERT_STATION, [(s, *v) for s, v in seen.items()])
            cur.executemany(
                _INSERT_DEAD,
                [
                    (
                        d.received_at,
                        _text(d.reason),
                        _text(d.detail),
                        _text(d.topic),
                        None if d.station is None else _text(d.station),
                        d.payload[:DEAD_LETTER_BYTES],
                        d.payload_len,
                    )
                    for d in dead_letters
                ],
            )
            cur.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        finally:
            cur.close()
        return InsertResult(
            stored=stored,
            conflicts=conflicts,
            duplicate_minutes=dup_minutes,
            unsynced=unsynced,
            minutes=minutes,
            dead_letters=len(dead_letters),
            spans=spans,
        )

    # ------------------------------------------------------------------ reading
    def record_payload(self, station: str, seq: int) -> bytes | None:
        """The stored signed payload of (station, seq), or None."""
        row = self.conn.execute(
            "SELECT payload FROM records WHERE station = ? AND seq = ?", (station, seq)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def max_seq(self, station: str) -> int | None:
        row = self.conn.execute(
            "SELECT last_seq FROM stations WHERE station = ?", (station,)
        ).fetchone()
        return None if row is None else int(row[0])

    def minute_arrays(
        self, station: str, channel: str, t_from: int, t_to: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.uint8]]:
        """One entry per minute start in ``[t_from, t_to)``: the minute's mean (NaN when
        missing or null) and its flag's ASCII code (0 when no record)."""
        if t_from % MINUTE_S:
            raise ValueError(f"t_from={t_from} is not aligned to a minute (multiple of 60)")
        n = max(0, -(-(t_to - t_from) // MINUTE_S))
        values = np.full(n, np.nan, dtype=np.float64)
        flags = np.zeros(n, dtype=np.uint8)
        if n == 0:
            return values, flags
        rows = self.conn.execute(
            "SELECT ts, mean, flag FROM minutes "
            "WHERE station = ? AND channel = ? AND ts >= ? AND ts < ? ORDER BY ts",
            (station, channel, t_from, t_to),
        ).fetchall()
        if rows:
            ts = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            means = np.fromiter(
                (np.nan if r[1] is None else r[1] for r in rows), dtype=np.float64, count=len(rows)
            )
            codes = np.fromiter((ord(r[2]) for r in rows), dtype=np.uint8, count=len(rows))
            idx = (ts - t_from) // MINUTE_S
            values[idx] = means
            flags[idx] = codes
        return values, flags

    def channels(self, station: str) -> list[str]:
        """The channel names ``station`` has minutes for, sorted."""
        rows = self.conn.execute(
            "SELECT DISTINCT channel FROM minutes WHERE station = ? ORDER BY channel", (station,)
        ).fetchall()
        return [str(r[0]) for r in rows]

    def stations(self) -> list[StationInfo]:
        rows = self.conn.execute(
            "SELECT station, first_seen, last_seen, last_seq, max_ts FROM stations ORDER BY station"
        ).fetchall()
        return [StationInfo(str(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    def watermark(self, station: str) -> int | None:
        """The latest minute start stored for ``station`` (None when there is none)."""
        row = self.conn.execute(
            "SELECT max_ts FROM stations WHERE station = ?", (station,)
        ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def minute_record(self, station: str, channel: str, ts: int) -> MinuteRow | None:
        row = self.conn.execute(
            "SELECT station, channel, ts, mean, min, max, n, exp, flag, unit, seq FROM minutes "
            "WHERE station = ? AND channel = ? AND ts = ?",
            (station, channel, ts),
        ).fetchone()
        return None if row is None else MinuteRow(*row)

    def dead_letters(self, reason: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """The latest dead letters (newest first), optionally of one ``reason``."""
        sql = (
            "SELECT reason, detail, topic, station, payload, payload_len, received_at "
            "FROM dead_letters"
        )
        args: tuple[object, ...] = ()
        if reason is not None:
            sql += " WHERE reason = ?"
            args = (reason,)
        sql += " ORDER BY id DESC LIMIT ?"
        rows = self.conn.execute(sql, (*args, limit)).fetchall()
        return [
            DeadLetter(str(r[0]), str(r[1]), str(r[2]), r[3], bytes(r[4]), int(r[5]), float(r[6]))
            for r in rows
        ]

    def count(self, table: str) -> int:
        """Rows in one of the store's tables (for status pages and tests)."""
        if table not in ("records", "minutes", "dead_letters", "stations"):
            raise ValueError(f"no table {table!r}")
        return int(self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
