"""Ingest of signed minute records: verify, validate, de-duplicate, batch into the store.

Two layers (the mqtt_as split: the core knows no network, the adapter no rules):

* :class:`Ingestor` -- a pure core. ``handle(topic, payload)`` decides about one message
  and returns an :class:`Outcome`; accepted records wait in a batch that ``flush()``
  writes in one SQLite transaction. It never raises on input: every message is either
  accepted, a harmless ``duplicate``, or rejected with exactly one named reason.
* :class:`IngestClient` -- the MQTT adapter (paho-mqtt 2.x) that feeds it.

The checks, in this order (docs/topics.md "Signed payloads"; each rejection increments
``rejected`` and ``rejected.<reason>`` and makes one dead letter, published on
``<prefix>/deadletter`` and stored in the ``dead_letters`` table):

====================  ===============================================================
``oversized``         payload longer than ``max_payload`` bytes (nothing else is read)
``bad_topic``         topic is not ``<prefix>/station/<id>/data`` with a valid id
``unsigned``          no newline separator, or nothing after the last one
``unknown_station``   no device key for the topic's station
``bad_signature``     the signature is not 64 lowercase hex digits, or is not the
                      HMAC-SHA256 of the body bytes exactly as received (compared in
                      constant time; nothing is parsed or re-serialised before this)
``malformed_json``    the authenticated body is not UTF-8 JSON (NaN/Infinity, numbers
                      that overflow to infinity and duplicate keys are refused too)
``schema``            fails docs/schemas/minute-record.schema.json (the detail is the
                      validator's message and the path of the offending value)
``station_mismatch``  the body's ``station`` is not the topic's
``replayed``          (station, seq) is already stored or batched with a different body
``future_timestamp``  ``ts > now + max_future_s``
``past_timestamp``    ``ts < now - max_past_s``
``internal``          a bug in the gateway (never expected; counted, not raised)
====================  ===============================================================

An identical copy of a stored or batched record (a QoS 1 redelivery, a station that
re-sent after a lost PUBACK) counts ``duplicate`` and is not dead-lettered. The time
checks do not apply to a record with ``time_valid: false``: its ``ts`` is not a real time;
it is kept in ``records`` but not in ``minutes`` (gateway/store.py).

A seq below the station's highest seen, but never seen before, is ACCEPTED (counted
``out_of_order``): the station sends its ring oldest first, but a restarted gateway, a
second broker path or a station that lost PUBACKs can deliver an older record after a
newer one, and de-duplication on (station, seq) already prevents replays. Only a second,
different body for the same (station, seq) is refused (``replayed``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import jsonschema
import jsonschema.exceptions
import jsonschema.validators
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from gateway.counters import Counters
from gateway.keys import STATION_ID
from gateway.store import ChannelMinute, DeadLetter, InsertResult, ParsedRecord, Store

DEFAULT_PREFIX = "lantian/v1"
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "docs" / "schemas"
MINUTE_SCHEMA = "minute-record.schema.json"

OVERSIZED = "oversized"
BAD_TOPIC = "bad_topic"
UNSIGNED = "unsigned"
UNKNOWN_STATION = "unknown_station"
BAD_SIGNATURE = "bad_signature"
MALFORMED_JSON = "malformed_json"
SCHEMA = "schema"
STATION_MISMATCH = "station_mismatch"
REPLAYED = "replayed"
FUTURE_TIMESTAMP = "future_timestamp"
PAST_TIMESTAMP = "past_timestamp"
INTERNAL = "internal"

REASONS = (
    OVERSIZED,
    BAD_TOPIC,
    UNSIGNED,
    UNKNOWN_STATION,
    BAD_SIGNATURE,
    MALFORMED_JSON,
    SCHEMA,
    STATION_MISMATCH,
    REPLAYED,
    FUTURE_TIMESTAMP,
    PAST_TIMESTAMP,
    INTERNAL,
)

_SIG_HEX = re.compile(rb"[0-9a-f]{64}")
_DETAIL_MAX = 400  # characters of a dead letter's detail


class KeyLookup(Protocol):
    """Where device keys come from (gateway.keys.KeyStore, or a dict in tests)."""

    def get(self, station: str, /) -> bytes | None: ...


class SchemaMissingError(FileNotFoundError):
    """A schema file of docs/schemas/ is not where the gateway looks for it."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What :meth:`Ingestor.handle` decided about one message.

    ``status`` is ``accepted`` (batched for the next flush), ``duplicate`` (identical to
    a stored or batched record) or ``rejected`` (``reason`` names why; ``dead_letter``
    is what was published and stored).
    """

    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    detail: str = ""
    station: str | None = None
    seq: int | None = None
    dead_letter: DeadLetter | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


class _Reject(Exception):
    """Internal control flow: a message is rejected for ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


# ---------------------------------------------------------------- schema validation


def _ordered(
    validator: Any, pairs: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[jsonschema.exceptions.ValidationError]:
    """The ``x-lantian-ordered`` keyword: ``[[a, b], ...]`` -> ``instance[a] <= instance[b]``
    whenever both are numbers (JSON Schema cannot compare two values of an instance)."""
    if not isinstance(instance, dict):
        return
    for a, b in pairs:
        x: Any = instance.get(a)
        y: Any = instance.get(b)
        if validator.is_type(x, "number") and validator.is_type(y, "number") and x > y:
            yield jsonschema.exceptions.ValidationError(f"{a}={x!r} is greater than {b}={y!r}")


def _is_json_integer(checker: Any, instance: object) -> bool:
    # JSON Schema calls 5.0 an integer; the records write integers without a fraction,
    # and a float seq or ts would be stored as REAL: refuse it.
    return isinstance(instance, int) and not isinstance(instance, bool)


LantianValidator: Any = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft202012Validator,
    validators={"x-lantian-ordered": _ordered},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_json_integer),
)
"""Draft 2020-12 with ``integer`` meaning a JSON integer and the ``x-lantian-ordered``
keyword; the validator for every schema in docs/schemas/."""


def load_schema(name: str, schema_dir: Path | None = None) -> dict[str, Any]:
    path = (schema_dir or SCHEMA_DIR) / name
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as e:
        raise SchemaMissingError(f"schema {name} not found at {path}") from e
    schema: dict[str, Any] = json.loads(text)
    LantianValidator.check_schema(schema)
    return schema


@functools.lru_cache(maxsize=16)
def validator_for(name: str, schema_dir: Path | None = None) -> Any:
    """A :data:`LantianValidator` for the schema file ``name`` of docs/schemas/ (made once
    per file: a validator holds no state between calls and may be shared by threads)."""
    return LantianValidator(load_schema(name, schema_dir))


def schema_error(validator: Any, doc: object) -> str | None:
    """The most relevant validation error of ``doc`` as text, None when it is valid."""
    err = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if err is None:
        return None
    where = "/".join(str(p) for p in err.absolute_path) or "(body)"
    return f"{where}: {err.message}"


# ---------------------------------------------------------------- minute-record fast path

_MINUTE_KEYS = frozenset(
    ("v", "type", "station", "seq", "ts", "interval", "time_valid", "fw", "cal", "ch")
)
_CHANNEL_KEYS = frozenset(("mean", "min", "max", "n", "exp", "flag", "unit"))
_NAME = re.compile(r"[a-z0-9_-]{1,32}")
_FW = re.compile(r"[0-9A-Za-z.+_-]{1,32}")
_UNIT_BAD = re.compile("[\u0000-\u001f\u007f\ud800-\udfff]")
_FLAGS = frozenset("NTFMSDCB")
_INT64_MAX = 9223372036854775807
MINUTE_SCHEMA_SHA256 = "9ed73950a94a7337b4d212bbffac429350672a045b2e9d7a2dbb3cc04e6fc896"
"""sha256 of docs/schemas/minute-record.schema.json as canonical JSON (sorted keys): the
schema :func:`minute_record_ok` was written for. Any other schema turns the fast path off."""


def schema_sha256(schema: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()


def _number(x: object) -> bool:
    t = type(x)
    return t is float or t is int  # parse_body makes finite floats and ints only


def minute_record_ok(doc: object) -> bool:
    """True only when ``doc`` is certainly valid under minute-record.schema.json (the
    exact rules of that schema, written out: about 30x faster than jsonschema on a
    record). False means "not sure": the caller then runs the full validator, which
    decides and explains. It never says True for a document the schema rejects: it
    accepts only exact Python types (int, float, str, bool, dict as parse_body makes
    them) and checks every keyword of the schema."""
    if type(doc) is not dict or doc.keys() != _MINUTE_KEYS:
        return False
    v, seq, ts, interval, cal = doc["v"], doc["seq"], doc["ts"], doc["interval"], doc["cal"]
    station, fw, ch = doc["station"], doc["fw"], doc["ch"]
    if not (
        type(v) is int
        and v == 1
        and doc["type"] == "minute"
        and type(doc["type"]) is str
        and type(station) is str
        and _NAME.fullmatch(station)
        and type(seq) is int
        and 1 <= seq <= _INT64_MAX
        and type(ts) is int
        and 0 <= ts <= 253402300740
        and ts % 60 == 0
        and type(interval) is int
        and interval == 60
        and type(doc["time_valid"]) is bool
        and type(fw) is str
        and _FW.fullmatch(fw)
        and type(cal) is int
        and 0 <= cal <= _INT64_MAX
        and type(ch) is dict
        and 1 <= len(ch) <= 64
    ):
        return False
    for name, c in ch.items():
        if type(c) is not dict or c.keys() != _CHANNEL_KEYS:
            return False
        n, exp, flag, unit = c["n"], c["exp"], c["flag"], c["unit"]
        mean, lo, hi = c["mean"], c["min"], c["max"]
        if not (
            _NAME.fullmatch(name)
            and type(n) is int
            and type(exp) is int
            and 0 <= n <= exp <= 65535
            and type(flag) is str
            and flag in _FLAGS
            and (n >= 1 or flag not in ("N", "T"))
            and type(unit) is str
            and 1 <= len(unit) <= 16
            and not _UNIT_BAD.search(unit)
        ):
            return False
        if n == 0:
            if not (mean is None and lo is None and hi is None):
                return False
        elif not (_number(mean) and _number(lo) and _number(hi) and lo <= hi):
            return False
    return True


# ---------------------------------------------------------------- JSON parsing


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"{text[:40]} overflows a double")
    return value


def _no_duplicate_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def parse_body(body: bytes) -> object:
    """Strict JSON of an authenticated body: ``ValueError`` (or ``RecursionError`` for
    absurd nesting) when it is not UTF-8 JSON of finite numbers with unique keys."""
    return json.loads(
        body.decode("utf-8"),
        parse_constant=_reject_constant,
        parse_float=_finite_float,
        object_pairs_hook=_no_duplicate_keys,
    )


def _clip(text: str, n: int = _DETAIL_MAX) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


# ---------------------------------------------------------------- the core


class Ingestor:
    """Decides about each data message and batches accepted records for the store.

    ``store`` is used only from the thread that calls ``handle``/``flush`` (it owns the
    SQLite connection). ``now`` is the gateway's clock (epoch seconds), injectable.
    """

    def __init__(
        self,
        store: Store,
        keys: KeyLookup,
        counters: Counters | None = None,
        *,
        now: Callable[[], float] = time.time,
        prefix: str = DEFAULT_PREFIX,
        max_payload: int = 8192,
        max_future_s: int = 300,
        max_past_s: int = 400 * 86400,
        schema_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.keys = keys
        self.counters = counters if counters is not None else Counters()
        self.now = now
        self.prefix = prefix.rstrip("/")
        self.max_payload = max_payload
        self.max_future_s = max_future_s
        self.max_past_s = max_past_s
        self._validator = validator_for(MINUTE_SCHEMA, schema_dir)
        # the hand-written check, only for the schema it was written for
        fast = schema_sha256(self._validator.schema) == MINUTE_SCHEMA_SHA256
        self._fast_ok: Callable[[object], bool] | None = minute_record_ok if fast else None
        self._topic_head = self.prefix + "/station/"
        self._records: dict[tuple[str, int], ParsedRecord] = {}
        self._dead: list[DeadLetter] = []
        self._max_seq: dict[str, int] = {}

    # ------------------------------------------------------------ batch state
    @property
    def pending(self) -> int:
        """Records and dead letters waiting for the next ``flush()``."""
        return len(self._records) + len(self._dead)

    @property
    def pending_records(self) -> int:
        return len(self._records)

    def flush(self) -> InsertResult:
        """Write the batch (records and dead letters) in one transaction.

        On a database error the batch is kept for the next call and the error raised
        (counted ``flush_failed``): nothing accepted is forgotten.
        """
        if not self._records and not self._dead:
            return InsertResult()
        records = list(self._records.values())
        try:
            result = self.store.insert_batch(records, self._dead)
        except Exception:
            self.counters.inc("flush_failed")
            raise
        self._records.clear()
        self._dead.clear()
        c = self.counters
        c.inc("batches")
        c.inc("stored", result.stored)
        c.inc("dead_letters_stored", result.dead_letters)
        if result.conflicts:
            c.inc("store_conflicts", result.conflicts)
        if result.duplicate_minutes:
            c.inc("duplicate_minute", result.duplicate_minutes)
        if result.unsynced:
            c.inc("unsynced_time", result.unsynced)
        return result

    # ------------------------------------------------------------ one message
    def handle(self, topic: str, payload: bytes) -> Outcome:
        """Decide about one message (see the module doc); never raises on input."""
        received_at = self.now()
        payload = bytes(payload)
        self.counters.inc("received")
        station: str | None = None
        try:
            station = self._topic_station(topic)
            record = self._check(topic, station, payload, received_at)
        except _Reject as r:
            return self._reject(r.reason, r.detail, topic, station, payload, received_at)
        except Exception as e:  # a bug, not input: still counted and traced, never raised
            return self._reject(INTERNAL, repr(e), topic, station, payload, received_at)
        if isinstance(record, Outcome):  # a duplicate
            self.counters.inc("duplicate")
            return record
        self._records[(record.station, record.seq)] = record
        top = self._max_seq.get(record.station)
        if top is None:
            top = self.store.max_seq(record.station) or 0
        if record.seq < top:
            self.counters.inc("out_of_order")
        self._max_seq[record.station] = max(top, record.seq)
        self.counters.inc("accepted")
        return Outcome("accepted", station=record.station, seq=record.seq)

    def _topic_station(self, topic: str) -> str | None:
        """The station id of a data topic; None when the topic is not one."""
        if not topic.startswith(self._topic_head):
            return None
        sid, sep, leaf = topic[len(self._topic_head) :].partition("/")
        if sep and leaf == "data" and STATION_ID.fullmatch(sid):
            return sid
        return None

    def _check(
        self, topic: str, station: str | None, payload: bytes, received_at: float
    ) -> ParsedRecord | Outcome:
        if len(payload) > self.max_payload:
            raise _Reject(OVERSIZED, f"{len(payload)} bytes, at most {self.max_payload}")
        if station is None:
            raise _Reject(
                BAD_TOPIC, f"not {self._topic_head}<station>/data with a valid station id"
            )
        cut = payload.rfind(b"\n")
        if cut < 0 or cut == len(payload) - 1:
            raise _Reject(UNSIGNED, "no signature after a newline")
        body, sig = payload[:cut], payload[cut + 1 :]
        key = self.keys.get(station)
        if key is None:
            raise _Reject(UNKNOWN_STATION, f"no device key for station {station!r}")
        if not _SIG_HEX.fullmatch(sig):
            raise _Reject(BAD_SIGNATURE, "signature is not 64 lowercase hex digits")
        mac = hmac.new(key, body, hashlib.sha256).hexdigest().encode("ascii")
        if not hmac.compare_digest(mac, sig):
            raise _Reject(BAD_SIGNATURE, "HMAC-SHA256 does not match the body")
        try:
            doc = parse_body(body)
        except (ValueError, RecursionError) as e:
            raise _Reject(MALFORMED_JSON, _clip(str(e))) from None
        fast_ok = self._fast_ok is not None and self._fast_ok(doc)
        problem = None if fast_ok else schema_error(self._validator, doc)
        if problem is not None:
            raise _Reject(SCHEMA, _clip(problem))
        if not isinstance(doc, dict):  # the schema says "object"; this narrows the type
            raise _Reject(SCHEMA, "(body): not an object")
        if doc["station"] != station:
            raise _Reject(
                STATION_MISMATCH, f"body station {doc['station']!r}, topic station {station!r}"
            )
        seq: int = doc["seq"]
        ts: int = doc["ts"]
        earlier = self._known_body(station, seq)
        if earlier is not None:
            if earlier == body:
                return Outcome("duplicate", station=station, seq=seq)
            raise _Reject(
                REPLAYED,
                f"seq {seq} is already stored with a different body "
                f"(sha256 {hashlib.sha256(earlier).hexdigest()[:16]}, "
                f"received {hashlib.sha256(body).hexdigest()[:16]})",
            )
        time_valid: bool = doc["time_valid"]
        if time_valid:
            now = int(received_at)
            if ts > now + self.max_future_s:
                raise _Reject(
                    FUTURE_TIMESTAMP, f"ts {ts} is {ts - now} s ahead (at most {self.max_future_s})"
                )
            if ts < now - self.max_past_s:
                raise _Reject(
                    PAST_TIMESTAMP, f"ts {ts} is {now - ts} s old (at most {self.max_past_s})"
                )
        channels = tuple(
            ChannelMinute(
                channel=name,
                mean=_opt_float(c["mean"]),
                min=_opt_float(c["min"]),
                max=_opt_float(c["max"]),
                n=c["n"],
                exp=c["exp"],
                flag=c["flag"],
                unit=c["unit"],
            )
            for name, c in doc["ch"].items()
        )
        return ParsedRecord(
            station=station,
            seq=seq,
            ts=ts,
            interval=doc["interval"],
            time_valid=time_valid,
            fw=doc["fw"],
            cal=doc["cal"],
            channels=channels,
            payload=payload,
            received_at=received_at,
        )

    def _known_body(self, station: str, seq: int) -> bytes | None:
        """The body already batched or stored for (station, seq), if any."""
        pending = self._records.get((station, seq))
        if pending is not None:
            return pending.payload.rpartition(b"\n")[0]
        stored = self.store.record_payload(station, seq)
        return None if stored is None else stored.rpartition(b"\n")[0]

    def _reject(
        self,
        reason: str,
        detail: str,
        topic: str,
        station: str | None,
        payload: bytes,
        received_at: float,
    ) -> Outcome:
        c = self.counters
        c.inc("rejected")
        c.inc("rejected." + reason)
        letter = DeadLetter(
            reason=reason,
            detail=detail,
            topic=topic,
            station=station,
            payload=payload[: self.max_payload],
            payload_len=len(payload),
            received_at=received_at,
        )
        self._dead.append(letter)
        c.inc("dead_lettered")
        return Outcome("rejected", reason, detail, station, dead_letter=letter)


def _opt_float(v: object) -> float | None:
    return None if v is None else float(v)  # type: ignore[arg-type]


# ---------------------------------------------------------------- the MQTT adapter


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    mid: int
    qos: int


class IngestClient:
    """Subscribes to ``<prefix>/station/+/data`` and feeds an :class:`Ingestor`.

    * Persistent session (clean_session False, a stable ``client_id``), QoS 1: messages
      that arrive while the gateway is down wait in the broker.
    * paho's network thread only queues messages; the thread that owns the store calls
      :meth:`process` (or :meth:`serve`), which handles them and flushes the batch.
    * Acknowledgement after commit (paho ``manual_ack``): a PUBACK is sent only once the
      transaction holding the record -- or its dead letter -- has committed, so a crash
      loses nothing: the broker redelivers, and a redelivered record is a ``duplicate``.
    * The batch is flushed when ``batch_size`` records wait, when ``max_unacked``
      messages wait for their PUBACK, or ``batch_ms`` after its first message. The broker
      sends at most its in-flight window of unacknowledged QoS 1 messages (mosquitto's
      ``max_inflight_messages``, 20 by default) and then waits for PUBACKs, so waiting for
      more than that many would only add latency: keep ``max_unacked`` at the broker's
      window (raise both together for bulk backlog replays).
    * Dead letters are published on ``<prefix>/deadletter``, QoS 1, as they happen.
    """

    def __init__(
        self,
        host: str,
        port: int,
        ingestor: Ingestor,
        *,
        prefix: str = DEFAULT_PREFIX,
        client_id: str = "lantian-gateway-ingest",
        batch_size: int = 200,
        batch_ms: int = 200,
        max_unacked: int = 20,
        keepalive_s: int = 30,
        username: str | None = None,
        password: str | None = None,
        on_flush: Callable[[InsertResult], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ingestor = ingestor
        self.counters = ingestor.counters
        self.prefix = prefix.rstrip("/")
        self.data_topic = self.prefix + "/station/+/data"
        self.deadletter_topic = self.prefix + "/deadletter"
        self.batch_size = batch_size
        self.batch_ms = batch_ms
        self.max_unacked = max(1, max_unacked)
        self.keepalive_s = keepalive_s
        self.on_flush = on_flush
        self._queue: queue.SimpleQueue[_Message] = queue.SimpleQueue()
        self._unacked: list[tuple[int, int]] = []
        self._batch_started: float | None = None
        self._connected = threading.Event()
        self._started = False
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=False,
            protocol=mqtt.MQTTv311,
            manual_ack=True,
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe

    # ------------------------------------------------------------ paho's thread
    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        if reason.is_failure:
            self.counters.inc("mqtt.connect_failures")
            return
        self.counters.inc("mqtt.connects")
        # Subscribing again is harmless when the session kept the subscription, and
        # needed when the broker lost it (a broker without persistence restarted).
        client.subscribe(self.data_topic, qos=1)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: object,
        mid: int,
        reasons: list[ReasonCode],
        properties: object,
    ) -> None:
        if any(r.is_failure for r in reasons):
            self.counters.inc("mqtt.subscribe_failures")
            return
        self._connected.set()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: object,
    ) -> None:
        self._connected.clear()
        self.counters.inc("mqtt.disconnects")

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # not UTF-8: cannot be ours; becomes bad_topic
            topic = bytes(msg._topic).decode("utf-8", "backslashreplace")
        self._queue.put(_Message(topic, bytes(msg.payload), msg.mid, msg.qos))

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Connect in the background (paho's network thread; it reconnects by itself)."""
        if self._started:
            return
        self._started = True
        self.client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self.client.loop_start()

    def wait_subscribed(self, timeout_s: float = 10.0) -> bool:
        """Whether the client is connected and subscribed within ``timeout_s``."""
        return self._connected.wait(timeout_s)

    def stop(self) -> None:
        """Handle what was queued, flush, acknowledge, disconnect, stop paho's thread."""
        if not self._started:
            return
        try:
            self.process(0)
            self._flush()
        finally:
            self._started = False
            self.client.disconnect()
            self.client.loop_stop()
            self._connected.clear()

    def __enter__(self) -> IngestClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ the store's thread
    def process(self, timeout_s: float = 0.1) -> int:
        """Handle queued messages for about ``timeout_s`` (waiting for them to come),
        flushing whenever a flush is due; ``timeout_s=0`` drains what is queued now.
        Returns how many messages were handled. Call it from the thread that owns the
        store; it returns at the deadline even while messages keep coming."""
        handled = 0
        deadline = time.monotonic() + timeout_s
        while True:
            now = time.monotonic()
            wait = deadline - now
            if self._batch_started is not None:
                wait = min(wait, self._batch_started + self.batch_ms / 1000 - now)
            try:
                msg = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                msg = None
            if msg is not None:
                self._handle(msg)
                handled += 1
            if self._flush_due():
                self._flush()
            if time.monotonic() >= deadline and (msg is None or timeout_s > 0):
                return handled

    def serve(self, stop: threading.Event, tick_s: float = 0.1) -> None:
        """Run :meth:`process` until ``stop`` is set, then flush (same thread)."""
        while not stop.is_set():
            self.process(tick_s)
        self.process(0)
        self._flush()

    def _handle(self, msg: _Message) -> None:
        outcome = self.ingestor.handle(msg.topic, msg.payload)
        if self._batch_started is None:
            self._batch_started = time.monotonic()
        if msg.qos > 0:
            self._unacked.append((msg.mid, msg.qos))
        letter = outcome.dead_letter
        if letter is not None:
            info = self.client.publish(self.deadletter_topic, letter.to_json(), qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # paho keeps QoS 1 messages for the next connection; count the wait.
                self.counters.inc("deadletter_publish_deferred")

    def _flush_due(self) -> bool:
        if self._batch_started is None:
            return False
        return (
            self.ingestor.pending_records >= self.batch_size
            or len(self._unacked) >= self.max_unacked
            or time.monotonic() - self._batch_started >= self.batch_ms / 1000
        )

    def _flush(self) -> None:
        try:
            result = self.ingestor.flush()
        except Exception:
            # Kept in the ingestor and retried at the next tick; not acknowledged, so
            # the broker still holds the messages.
            self._batch_started = time.monotonic()
            return
        self._batch_started = None
        acks, self._unacked = self._unacked, []
        for mid, qos in acks:
            if self.client.ack(mid, qos) != mqtt.MQTT_ERR_SUCCESS:
                self.counters.inc("mqtt.ack_failed")  # the broker redelivers: a duplicate
        if self.on_flush is not None and (result.stored or result.dead_letters):
            self.on_flush(result)
