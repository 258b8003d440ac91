"""The ingest core (gateway/ingest.py) and the key store (gateway/keys.py).

Records are made by the station's own code (firmware/record.py, firmware/sign.py run on
CPython too), so the gateway is tested against the bytes a station really sends.
Every rejection reason is provoked once, counted, dead-lettered and stored, and the same
ingestor then still accepts a good record.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware import canonical, record, sign
from firmware.minute import MinuteAccumulator
from gateway.counters import Counters
from gateway.ingest import (
    BAD_SIGNATURE,
    BAD_TOPIC,
    FUTURE_TIMESTAMP,
    INTERNAL,
    MALFORMED_JSON,
    OVERSIZED,
    PAST_TIMESTAMP,
    REASONS,
    REPLAYED,
    SCHEMA,
    STATION_MISMATCH,
    UNKNOWN_STATION,
    UNSIGNED,
    Ingestor,
)
from gateway.keys import (
    InvalidKeyError,
    KeyFileFormatError,
    KeyFilePermissionError,
    KeyStore,
)
from gateway.store import Store

STATION = "yb-town-01"
KEY = hashlib.sha256(b"device key of yb-town-01").digest()
OTHER = "yb-site-07"
OTHER_KEY = hashlib.sha256(b"device key of yb-site-07").digest()
KEYS = {STATION: KEY, OTHER: OTHER_KEY}
TS = 1764374400  # 2025-11-29 00:00:00 UTC, a minute start
NOW = TS + 90  # the gateway's clock in these tests
PREFIX = "lantian/v1"


def data_topic(station: str = STATION) -> str:
    return f"{PREFIX}/station/{station}/data"


def minute_body(
    seq: int = 1,
    ts: int = TS,
    *,
    station: str = STATION,
    level: float = 41.0,
    time_valid: bool = True,
    cal: int = 3,
) -> bytes:
    """A real firmware minute body: pm25 valid (12 samples), so2 all faults (flag D)."""
    acc = MinuteAccumulator(2, [5000, 5000])
    for i in range(12):
        acc.add(0, level + i * 0.5, "N")
        acc.add(1, float("nan"), "D")
    closed = acc.close(ts)
    return bytes(
        record.minute_body(
            station, seq, closed, ["pm25", "so2"], ["ug/m3", "ug/m3"], time_valid, "0.1.0", cal
        )
    )


def signed(body: bytes, key: bytes = KEY) -> bytes:
    return bytes(sign.signed_payload(key, body))


def minute_payload(seq: int = 1, ts: int = TS, *, key: bytes = KEY, **kw: object) -> bytes:
    return signed(minute_body(seq, ts, **kw), key)  # type: ignore[arg-type]


def body_dict(seq: int = 1, ts: int = TS) -> dict[str, object]:
    return json.loads(minute_body(seq, ts))  # type: ignore[no-any-return]


def signed_doc(doc: object, key: bytes = KEY) -> bytes:
    return signed(json.dumps(doc).encode(), key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "gateway.db")
    yield s
    s.close()


@pytest.fixture
def make_ingestor(store: Store) -> Callable[..., Ingestor]:
    def make(**kw: object) -> Ingestor:
        kw.setdefault("now", lambda: float(NOW))
        return Ingestor(store, dict(KEYS), Counters(), **kw)  # type: ignore[arg-type]

    return make


@pytest.fixture
def ingestor(make_ingestor: Callable[..., Ingestor]) -> Ingestor:
    return make_ingestor()


def balanced(c: dict[str, int]) -> bool:
    reasons = sum(v for k, v in c.items() if k.startswith("rejected."))
    return c.get("accepted", 0) + c.get("rejected", 0) + c.get("duplicate", 0) == c.get(
        "received", 0
    ) and reasons == c.get("rejected", 0)


# ---------------------------------------------------------------- accepted records


def test_a_firmware_record_is_accepted_and_stored(ingestor: Ingestor, store: Store) -> None:
    payload = minute_payload(7)
    out = ingestor.handle(data_topic(), payload)
    assert out.accepted and out.station == STATION and out.seq == 7
    assert store.count("records") == 0  # batched, not yet written
    result = ingestor.flush()
    assert result.stored == 1 and result.minutes == 2
    assert result.spans == {STATION: (TS, TS)}
    assert store.record_payload(STATION, 7) == payload  # raw signed bytes kept
    row = store.minute_record(STATION, "pm25", TS)
    assert row is not None
    assert (row.n, row.exp, row.flag, row.unit, row.seq) == (12, 12, "N", "ug/m3", 7)
    assert row.min == 41.0 and row.max == 46.5
    so2 = store.minute_record(STATION, "so2", TS)
    assert so2 is not None and so2.mean is None and so2.flag == "D"
    c = ingestor.counters.snapshot()
    assert c["received"] == c["accepted"] == c["stored"] == c["batches"] == 1
    assert ingestor.pending == 0


def test_flush_of_an_empty_batch_writes_nothing(ingestor: Ingestor, store: Store) -> None:
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    assert ingestor.flush().stored == 0
    assert statements == []
    assert "batches" not in ingestor.counters.snapshot()


def test_a_batch_is_one_transaction(ingestor: Ingestor, store: Store) -> None:
    for seq in range(1, 101):
        assert ingestor.handle(data_topic(), minute_payload(seq, TS - 60 * seq)).accepted
    ingestor.handle(data_topic(), b"no signature")  # a dead letter rides in the same batch
    statements: list[str] = []
    store.conn.set_trace_callback(statements.append)
    result = ingestor.flush()
    store.conn.set_trace_callback(None)
    assert result.stored == 100 and result.dead_letters == 1
    assert [s for s in statements if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")] == [
        "BEGIN IMMEDIATE",
        "COMMIT",
    ]
    assert store.count("records") == 100 and store.count("minutes") == 200
    assert store.count("dead_letters") == 1


def test_a_failed_flush_keeps_the_batch(
    ingestor: Ingestor, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    for seq in (1, 2, 3):
        ingestor.handle(data_topic(), minute_payload(seq, TS - 60 * seq))
    real = store.insert_batch
    calls = []

    def failing(*a: object, **kw: object) -> object:
        calls.append(1)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "insert_batch", failing)
    with pytest.raises(OSError):
        ingestor.flush()
    assert ingestor.pending_records == 3 and ingestor.counters.get("flush_failed") == 1
    monkeypatch.setattr(store, "insert_batch", real)
    assert ingestor.flush().stored == 3
    assert store.count("records") == 3


def test_an_out_of_order_seq_never_seen_is_accepted(ingestor: Ingestor, store: Store) -> None:
    # After an outage the ring drains oldest first, but a gateway restart or a lost PUBACK
    # can deliver an older record after a newer one: it is data, not a replay.
    assert ingestor.handle(data_topic(), minute_payload(10, TS)).accepted
    ingestor.flush()
    assert ingestor.handle(data_topic(), minute_payload(4, TS - 360)).accepted
    assert ingestor.handle(data_topic(), minute_payload(5, TS - 300)).accepted
    assert ingestor.flush().stored == 2
    assert ingestor.counters.get("out_of_order") == 2
    info = store.stations()[0]
    assert info.last_seq == 10 and info.max_ts == TS


def test_unsynced_records_are_kept_but_not_minutes(ingestor: Ingestor, store: Store) -> None:
    # time_valid false: ts is the unsynced RTC (here the ESP32's 2000 epoch normalised),
    # far in the past: not a timestamp error, and not a minute either.
    out = ingestor.handle(data_topic(), minute_payload(1, 946684800, time_valid=False))
    assert out.accepted
    result = ingestor.flush()
    assert result.stored == 1 and result.unsynced == 1 and result.minutes == 0
    assert store.count("minutes") == 0 and store.watermark(STATION) is None
    assert store.record_payload(STATION, 1) is not None
    assert ingestor.counters.get("unsynced_time") == 1


def test_a_second_record_for_the_same_minute_does_not_overwrite(
    ingestor: Ingestor, store: Store
) -> None:
    assert ingestor.handle(data_topic(), minute_payload(1, TS, level=10.0)).accepted
    ingestor.flush()
    # the station's clock was stepped back: a new seq for a minute already delivered
    assert ingestor.handle(data_topic(), minute_payload(2, TS, level=90.0)).accepted
    result = ingestor.flush()
    assert result.stored == 1 and result.duplicate_minutes == 1 and result.minutes == 0
    row = store.minute_record(STATION, "pm25", TS)
    assert row is not None and row.seq == 1 and row.min == 10.0
    assert store.record_payload(STATION, 2) is not None
    assert ingestor.counters.get("duplicate_minute") == 1


# ---------------------------------------------------------------- duplicate vs replay


@pytest.mark.parametrize("flushed", [False, True], ids=["batched", "stored"])
def test_an_identical_copy_is_a_duplicate_not_a_dead_letter(
    ingestor: Ingestor, store: Store, flushed: bool
) -> None:
    payload = minute_payload(5)
    assert ingestor.handle(data_topic(), payload).accepted
    if flushed:
        ingestor.flush()
    out = ingestor.handle(data_topic(), payload)
    assert out.status == "duplicate" and out.dead_letter is None
    ingestor.flush()
    c = ingestor.counters.snapshot()
    assert c["duplicate"] == 1 and c["accepted"] == 1 and c["received"] == 2
    assert "rejected" not in c and "dead_lettered" not in c
    assert store.count("records") == 1 and store.count("dead_letters") == 0


@pytest.mark.parametrize("flushed", [False, True], ids=["batched", "stored"])
def test_a_different_body_for_a_known_seq_is_a_replay(
    ingestor: Ingestor, store: Store, flushed: bool
) -> None:
    original = minute_payload(5, TS, level=20.0)
    assert ingestor.handle(data_topic(), original).accepted
    if flushed:
        ingestor.flush()
    out = ingestor.handle(data_topic(), minute_payload(5, TS, level=21.0))
    assert out.status == "rejected" and out.reason == REPLAYED
    assert "seq 5" in out.detail
    ingestor.flush()
    assert store.record_payload(STATION, 5) == original
    (letter,) = store.dead_letters()
    assert letter.reason == REPLAYED and letter.station == STATION


def test_the_same_seq_of_two_stations_is_two_records(ingestor: Ingestor, store: Store) -> None:
    assert ingestor.handle(data_topic(), minute_payload(1)).accepted
    other = minute_payload(1, station=OTHER, key=OTHER_KEY)
    assert ingestor.handle(data_topic(OTHER), other).accepted
    assert ingestor.flush().stored == 2
    assert [s.station for s in store.stations()] == [OTHER, STATION]


# ---------------------------------------------------------------- every rejection


def _bad_sig_flipped_body() -> bytes:
    p = bytearray(minute_payload(1))
    p[p.index(b'"mean": 4') + 9] ^= 0x01  # 41.x -> 40.x or similar: one bit
    return bytes(p)


def _uppercase_sig() -> bytes:
    body, _, sig = minute_payload(1).rpartition(b"\n")
    return body + b"\n" + sig.upper()


def _replace(key: str, value: object) -> bytes:
    d = body_dict()
    d[key] = value
    return signed_doc(d)


def _channel(key: str, value: object) -> bytes:
    d = body_dict()
    d["ch"]["pm25"][key] = value  # type: ignore[index]
    return signed_doc(d)


CASES: list[tuple[str, str, str, bytes]] = [
    ("oversized", OVERSIZED, data_topic(), minute_payload(1) + b" " * 8192),
    ("not-a-data-topic", BAD_TOPIC, f"{PREFIX}/station/{STATION}/status", minute_payload(1)),
    ("other-prefix", BAD_TOPIC, f"other/v1/station/{STATION}/data", minute_payload(1)),
    ("bad-station-id", BAD_TOPIC, f"{PREFIX}/station/YB Town/data", minute_payload(1)),
    ("deeper-topic", BAD_TOPIC, f"{PREFIX}/station/{STATION}/data/x", minute_payload(1)),
    ("no-newline", UNSIGNED, data_topic(), minute_body(1)),
    ("empty-signature", UNSIGNED, data_topic(), minute_body(1) + b"\n"),
    ("empty-payload", UNSIGNED, data_topic(), b""),
    ("no-key", UNKNOWN_STATION, data_topic("yb-nobody"), minute_payload(1, station="yb-nobody")),
    ("flipped-bit", BAD_SIGNATURE, data_topic(), _bad_sig_flipped_body()),
    ("uppercase-hex", BAD_SIGNATURE, data_topic(), _uppercase_sig()),
    ("short-sig", BAD_SIGNATURE, data_topic(), minute_payload(1)[:-1]),
    ("other-stations-key", BAD_SIGNATURE, data_topic(), minute_payload(1, key=OTHER_KEY)),
    ("trailing-newline", BAD_SIGNATURE, data_topic(), minute_payload(1) + b"\n" + b"0" * 64),
    ("not-json", MALFORMED_JSON, data_topic(), signed(b"minute 1 pm25=41")),
    ("nan", MALFORMED_JSON, data_topic(), signed(minute_body(1).replace(b"46.5", b"NaN"))),
    ("overflow", MALFORMED_JSON, data_topic(), signed(minute_body(1).replace(b"46.5", b"1e999"))),
    ("not-utf8", MALFORMED_JSON, data_topic(), signed(b'{"v": "\xff"}')),
    ("nested", MALFORMED_JSON, data_topic(), signed(b"[" * 4000 + b"]" * 4000)),
    (
        "duplicate-key",
        MALFORMED_JSON,
        data_topic(),
        signed(minute_body(1).replace(b'"seq": 1,', b'"seq": 1, "seq": 2,')),
    ),
    ("array", SCHEMA, data_topic(), signed(b"[1, 2]")),
    ("extra-field", SCHEMA, data_topic(), _replace("extra", 1)),
    ("seq-0", SCHEMA, data_topic(), _replace("seq", 0)),
    ("seq-float", SCHEMA, data_topic(), _replace("seq", 1.0)),
    ("seq-string", SCHEMA, data_topic(), _replace("seq", "1")),
    ("seq-huge", SCHEMA, data_topic(), _replace("seq", 2**63)),
    ("ts-float", SCHEMA, data_topic(), _replace("ts", float(TS))),
    ("ts-unaligned", SCHEMA, data_topic(), _replace("ts", TS + 1)),
    ("time-valid-int", SCHEMA, data_topic(), _replace("time_valid", 1)),
    ("cal-bool", SCHEMA, data_topic(), _replace("cal", True)),
    ("version-2", SCHEMA, data_topic(), _replace("v", 2)),
    ("no-channels", SCHEMA, data_topic(), _replace("ch", {})),
    ("flag-x", SCHEMA, data_topic(), _channel("flag", "X")),
    ("n-above-exp", SCHEMA, data_topic(), _channel("n", 13)),
    ("min-above-max", SCHEMA, data_topic(), _channel("min", 99.0)),
    ("mean-null-with-n", SCHEMA, data_topic(), _channel("mean", None)),
    ("extra-channel-field", SCHEMA, data_topic(), _channel("sd", 1.0)),
    ("mismatch", STATION_MISMATCH, data_topic(), minute_payload(1, station=OTHER)),
    ("future", FUTURE_TIMESTAMP, data_topic(), minute_payload(1, TS + 3600)),
    ("past", PAST_TIMESTAMP, data_topic(), minute_payload(1, TS - 401 * 86400)),
]


@pytest.mark.parametrize(
    ("reason", "topic", "payload"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_every_rejection_is_named_counted_and_dead_lettered(
    ingestor: Ingestor, store: Store, reason: str, topic: str, payload: bytes
) -> None:
    out = ingestor.handle(topic, payload)
    assert out.status == "rejected", out
    assert out.reason == reason, out
    assert out.dead_letter is not None and out.dead_letter.reason == reason
    c = ingestor.counters.snapshot()
    assert c["rejected"] == 1 and c[f"rejected.{reason}"] == 1 and c["dead_lettered"] == 1
    # the gateway keeps running: the next good record is accepted
    assert ingestor.handle(data_topic(), minute_payload(99, TS)).accepted
    result = ingestor.flush()
    assert result.stored == 1 and result.dead_letters == 1
    (letter,) = store.dead_letters()
    assert letter.reason == reason and letter.topic == topic
    assert letter.payload_len == len(payload) and payload.startswith(letter.payload)
    assert balanced(ingestor.counters.snapshot())


def test_the_cases_cover_every_reason() -> None:
    # replayed needs an earlier record and internal a bug: both have their own tests
    assert {c[1] for c in CASES} == set(REASONS) - {INTERNAL, REPLAYED}


def test_schema_rejections_carry_the_validators_message(ingestor: Ingestor) -> None:
    out = ingestor.handle(data_topic(), _channel("flag", "X"))
    assert out.reason == SCHEMA
    assert out.detail.startswith("ch/pm25/flag: 'X' is not one of")
    out = ingestor.handle(data_topic(), _channel("n", 13))
    assert out.detail == "ch/pm25: n=13 is greater than exp=12"


def test_the_signature_is_checked_before_anything_is_parsed(ingestor: Ingestor) -> None:
    # a body that would fail every later check, with a wrong signature: bad_signature
    out = ingestor.handle(data_topic(), b"{not json\n" + b"0" * 64)
    assert out.reason == BAD_SIGNATURE


def test_the_body_is_verified_as_received_not_reserialised(ingestor: Ingestor) -> None:
    # Same JSON document, other bytes (no spaces): a valid signature over THESE bytes is
    # accepted; the canonical body's signature with these bytes is not.
    body = minute_body(1)
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert ingestor.handle(data_topic(), compact + b"\n" + sign.sign(KEY, body)).reason == (
        BAD_SIGNATURE
    )
    assert ingestor.handle(data_topic(), signed(compact)).accepted


@pytest.mark.parametrize(
    ("now", "accepted"),
    [(TS - 300, True), (TS - 301, False), (TS, True)],
    ids=["at-the-limit", "one-second-beyond", "now"],
)
def test_future_timestamp_limit(
    make_ingestor: Callable[..., Ingestor], now: int, accepted: bool
) -> None:
    ing = make_ingestor(now=lambda: float(now), max_future_s=300)
    out = ing.handle(data_topic(), minute_payload(1, TS))
    assert out.accepted is accepted
    if not accepted:
        assert out.reason == FUTURE_TIMESTAMP and "301 s ahead" in out.detail


def test_an_unsynced_record_is_not_judged_by_its_timestamp(ingestor: Ingestor) -> None:
    far = TS + 10 * 86400
    assert ingestor.handle(data_topic(), minute_payload(1, far, time_valid=False)).accepted
    assert ingestor.handle(data_topic(), minute_payload(2, far)).reason == FUTURE_TIMESTAMP


def test_oversized_limit_is_inclusive(make_ingestor: Callable[..., Ingestor]) -> None:
    ing = make_ingestor(max_payload=1024)
    body = minute_body(1)
    fits = signed(body + b" " * (1024 - len(body) - 65))  # trailing spaces are still JSON
    assert len(fits) == 1024
    assert ing.handle(data_topic(), fits).accepted
    too_big = signed(minute_body(2) + b" " * (1025 - len(body) - 65))
    assert ing.handle(data_topic(), too_big).reason == OVERSIZED


def test_a_bug_is_counted_as_internal_not_raised(
    ingestor: Ingestor, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(station: str, seq: int) -> bytes | None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "record_payload", broken)
    out = ingestor.handle(data_topic(), minute_payload(1))
    assert out.reason == INTERNAL and "disk on fire" in out.detail
    assert ingestor.counters.get("rejected.internal") == 1


def test_dead_letter_message_shape(ingestor: Ingestor) -> None:
    payload = signed(b"x" * 3000)
    out = ingestor.handle(data_topic(), payload)
    assert out.dead_letter is not None
    doc = json.loads(out.dead_letter.to_json())
    assert set(doc) == {
        "reason",
        "detail",
        "topic",
        "station",
        "payload_b64",
        "payload_len",
        "truncated",
        "received_at",
    }
    assert doc["reason"] == MALFORMED_JSON and doc["station"] == STATION
    assert doc["topic"] == data_topic() and doc["received_at"] == NOW
    assert doc["payload_len"] == len(payload) and doc["truncated"] is True
    assert base64.b64decode(doc["payload_b64"]) == payload[:1024]


def test_a_topic_that_is_not_text_is_stored(ingestor: Ingestor, store: Store) -> None:
    out = ingestor.handle("lantian/v1/station/\udcff/data", b"x")
    assert out.reason == BAD_TOPIC
    ingestor.flush()
    assert store.dead_letters()[0].topic == "lantian/v1/station/\\udcff/data"


def test_canonical_json_of_the_firmware_parses_identically() -> None:
    # The ingest parses the body with json.loads: the firmware's floats round-trip.
    body = canonical.dumps(canonical.Obj([("x", 0.823457), ("y", 1e-05), ("z", 1.5e20)]))
    assert json.loads(body) == {"x": 0.823457, "y": 1e-05, "z": 1.5e20}


# ---------------------------------------------------------------- the key store


def _write_keys(path: Path, doc: object, mode: int = 0o600) -> None:
    path.write_text(json.dumps(doc), encoding="utf-8")
    os.chmod(path, mode)


def test_key_store_loads_a_0600_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    _write_keys(path, {STATION: KEY.hex(), OTHER: OTHER_KEY.hex()})
    keys = KeyStore.load(path)
    assert keys.get(STATION) == KEY and keys.get(OTHER) == OTHER_KEY
    assert keys.get("yb-nobody") is None
    assert STATION in keys and len(keys) == 2
    assert KEY.hex() not in repr(keys)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o666, 0o610])
def test_key_store_refuses_a_file_others_can_access(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.json"
    _write_keys(path, {STATION: KEY.hex()}, mode)
    with pytest.raises(KeyFilePermissionError) as e:
        KeyStore.load(path)
    assert e.value.mode == mode and e.value.path == path
    assert "0600" in str(e.value)


@pytest.mark.parametrize(
    "doc",
    [
        [KEY.hex()],
        {"YB": KEY.hex()},
        {STATION: KEY.hex().upper()},
        {STATION: "abc"},
        {STATION: "00" * 8},
        {STATION: 5},
    ],
    ids=["list", "bad-id", "uppercase", "odd-hex", "short-key", "number"],
)
def test_key_store_refuses_a_malformed_file(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "keys.json"
    _write_keys(path, doc)
    with pytest.raises(KeyFileFormatError):
        KeyStore.load(path)


def test_key_store_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        KeyStore.load(tmp_path / "none.json")
    assert len(KeyStore.load(tmp_path / "none.json", missing_ok=True)) == 0


def test_key_store_add_writes_atomically_with_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    old_umask = os.umask(0o022)
    try:
        keys = KeyStore.load(path, missing_ok=True)
        keys.add(STATION, KEY)
        keys.add(OTHER, OTHER_KEY)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]  # no temp file left
    again = KeyStore.load(path)
    assert again.get(STATION) == KEY and again.stations() == [STATION, OTHER][::-1]
    with pytest.raises(InvalidKeyError):
        keys.add("Bad Id", KEY)
    with pytest.raises(InvalidKeyError):
        keys.add(STATION, b"short")


def test_key_store_feeds_the_ingestor(tmp_path: Path, store: Store) -> None:
    path = tmp_path / "keys.json"
    keys = KeyStore.load(path, missing_ok=True)
    ing = Ingestor(store, keys, Counters(), now=lambda: float(NOW))
    assert ing.handle(data_topic(), minute_payload(1)).reason == UNKNOWN_STATION
    keys.add(STATION, KEY)  # a station enrolled while the gateway runs
    assert ing.handle(data_topic(), minute_payload(1)).accepted
