"""Property tests of ``Ingestor.handle``: whatever arrives, it never raises, and every
message is accepted, a duplicate, or rejected under exactly one named reason.

Two tests:

* a bulk test: hypothesis draws a seed and a mix of message kinds, and a seeded
  generator turns each example into ~110 messages (valid firmware-style records,
  identical copies, same-seq replays, bit flips and cuts, random JSON, wrong types,
  random bytes, wrong topics), so that more than 10,000 payloads go through in a few
  seconds; a model of (station, seq) -> body predicts the outcome of every well-formed
  record;
* a per-message test with hypothesis strategies, which shrink a failure to one message.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware import canonical, sign
from gateway.counters import Counters
from gateway.ingest import INTERNAL, REASONS, Ingestor
from gateway.store import Store

KEYS = {
    "yb-town-01": hashlib.sha256(b"a").digest(),
    "yb-site-07": hashlib.sha256(b"b").digest(),
}
STATIONS = sorted(KEYS)
NOW = 1764374400 + 45
PREFIX = "lantian/v1"
MESSAGES_PER_EXAMPLE = 110
BULK_EXAMPLES = 100
TOTAL: dict[str, int] = {}  # outcomes over the whole bulk run

KINDS = ("valid", "copy", "replay", "mutated", "json", "wrong_type", "bytes", "topic")


def topic_of(station: str) -> str:
    return f"{PREFIX}/station/{station}/data"


def signed(body: bytes, station: str) -> bytes:
    return bytes(sign.signed_payload(KEYS[station], body))


# ---------------------------------------------------------------- seeded generator


def _float(rng: random.Random) -> float:
    return rng.choice(
        [rng.uniform(-50, 500), rng.uniform(0, 1), rng.uniform(-1e12, 1e12), 0.0, 1e-05, 123.4]
    )


def _channel(rng: random.Random) -> canonical.Obj:
    exp = rng.choice([0, 1, 12, 60, rng.randint(0, 600)])
    n = rng.randint(0, exp)
    flag = rng.choice("NT") if n and rng.random() < 0.8 else rng.choice("FMSDCB")
    if n:
        a, b = sorted((_float(rng), _float(rng)))
        values: list[float | None] = [rng.uniform(a, b), a, b]
    else:
        values = [None, None, None]
    unit = rng.choice(["ug/m3", "mg/m3", "ppb", "%", "\u00b0C"])
    return canonical.Obj(
        [
            ("mean", values[0]),
            ("min", values[1]),
            ("max", values[2]),
            ("n", n),
            ("exp", exp),
            ("flag", flag),
            ("unit", unit),
        ]
    )


def record_body(rng: random.Random, station: str, seq: int, ts: int, time_valid: bool) -> bytes:
    names = rng.sample(["pm25", "pm10", "no2", "so2", "co", "o3", "tsp", "voc", "t-air"], 3)
    chans = [(name, _channel(rng)) for name in names[: rng.randint(1, 3)]]
    doc = canonical.Obj(
        [
            ("v", 1),
            ("type", "minute"),
            ("station", station),
            ("seq", seq),
            ("ts", ts),
            ("interval", 60),
            ("time_valid", time_valid),
            ("fw", "0.1.0"),
            ("cal", rng.randint(0, 9)),
            ("ch", canonical.Obj(chans)),
        ]
    )
    return canonical.dumps(doc).encode()


def _random_json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randint(0, 7 if depth < 3 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 2**63, 2**64 + 1, rng.randint(-(10**6), 10**6)])
    if kind == 3:
        return rng.choice([0.5, -0.0, 1e308, rng.uniform(-1e9, 1e9)])
    if kind == 4:
        return "".join(
            rng.choice(string.printable + "\u00e9\u4e2d") for _ in range(rng.randint(0, 8))
        )
    if kind in (5, 6):
        keys = ["v", "type", "station", "seq", "ts", "ch", "mean", "n", "exp", "flag", "x"]
        return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 5))}
    return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]


def _mutate(rng: random.Random, payload: bytes) -> bytes:
    b = bytearray(payload)
    op = rng.randint(0, 4)
    i = rng.randrange(len(b))
    if op == 0:
        b[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        del b[i]
    elif op == 2:
        b.insert(i, rng.randrange(256))
    elif op == 3:
        b = b[:i]
    else:
        b[i] = rng.choice(b'\n"{}0 ')
    return bytes(b)


class Generator:
    """Messages of the kinds in ``weights``; ``sent`` keeps what was sent, to copy."""

    def __init__(self, seed: int, weights: list[int]) -> None:
        self.rng = random.Random(seed)
        self.weights = weights
        self.sent: list[tuple[str, str, int, bytes]] = []  # (topic, station, seq, payload)

    def valid(self) -> tuple[str, bytes, str, int]:
        rng = self.rng
        station = rng.choice(STATIONS)
        seq = rng.randint(1, 40)  # small: same seqs recur (duplicates and replays)
        if rng.random() < 0.9:
            ts = (NOW // 60 - rng.randint(-10, 600)) * 60  # up to 10 minutes ahead
            time_valid = True
        else:
            ts = 946684800 + 60 * rng.randint(0, 10**5)
            time_valid = False
        body = record_body(rng, station, seq, ts, time_valid)
        return topic_of(station), signed(body, station), station, seq

    def message(self) -> tuple[str, str, bytes, tuple[str, int] | None]:
        """``(kind, topic, payload, key)``; key (station, seq) for well-formed records
        with an in-window timestamp, whose outcome the model predicts."""
        rng = self.rng
        kind = rng.choices(KINDS, self.weights)[0]
        if kind in ("copy", "replay") and not self.sent:
            kind = "valid"
        if kind == "valid":
            topic, payload, station, seq = self.valid()
            self.sent.append((topic, station, seq, payload))
            return kind, topic, payload, (station, seq)
        if kind == "copy":
            topic, station, seq, payload = rng.choice(self.sent)
            return kind, topic, payload, (station, seq)
        if kind == "replay":
            topic, station, seq, _ = rng.choice(self.sent)
            ts = (NOW // 60 - rng.randint(0, 30)) * 60
            payload = signed(record_body(rng, station, seq, ts, True), station)
            self.sent.append((topic, station, seq, payload))
            return kind, topic, payload, (station, seq)
        if kind == "mutated":
            topic, payload, _, _ = self.valid()
            mutated = _mutate(rng, payload)
            if mutated == payload:  # a byte replaced by itself
                mutated = payload[:-1]
            return kind, topic, mutated, None
        if kind == "json":
            station = rng.choice(STATIONS)
            body = json.dumps(_random_json(rng)).encode()
            if rng.random() < 0.2:  # authenticated, but not JSON (or not JSON we accept)
                body = rng.choice([rng.randbytes(40), b"NaN", body[:-1], b'{"a": 1, "a": 2}'])
            return kind, topic_of(station), signed(body, station), None
        if kind == "wrong_type":
            topic, payload, station, _ = self.valid()
            doc = json.loads(payload.rpartition(b"\n")[0])
            target = doc if rng.random() < 0.6 else next(iter(doc["ch"].values()))
            target[rng.choice(sorted(target))] = _random_json(rng, 2)
            return kind, topic, signed(json.dumps(doc).encode(), station), None
        if kind == "bytes":
            raw = rng.randbytes(rng.randint(0, 200))
            if rng.random() < 0.5:
                raw += b"\n" + rng.randbytes(32).hex().encode()
            return kind, topic_of(rng.choice(STATIONS)), raw, None
        # kind == "topic": a valid payload on a wrong, foreign or unknown topic
        _, payload, station, _ = self.valid()
        if rng.random() < 0.2:  # signed by another station, with its key, on its topic
            other = STATIONS[1 - STATIONS.index(station)]
            return kind, topic_of(other), signed(payload.rpartition(b"\n")[0], other), None
        topic = rng.choice(
            [
                f"{PREFIX}/station/{station}/status",
                f"{PREFIX}/station/yb-unknown/data",
                f"{PREFIX}/station/{station.upper()}/data",
                f"{PREFIX}/station//data",
                f"other/station/{station}/data",
                "",
                "#",
                f"{PREFIX}/station/{station}/data/",
            ]
        )
        return kind, topic, payload, None


# ---------------------------------------------------------------- the invariants


def _diff(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def check_one(ing: Ingestor, topic: str, payload: bytes) -> tuple[str, str | None]:
    """Handle one message and check that it was counted exactly once."""
    before = ing.counters.snapshot()
    out = ing.handle(topic, payload)  # must not raise
    d = _diff(before, ing.counters.snapshot())
    where = f"topic={topic!r} payload={payload!r}"
    assert d.pop("received") == 1, where
    if out.status == "accepted":
        assert d.pop("accepted") == 1 and out.dead_letter is None, where
        d.pop("out_of_order", None)
    elif out.status == "duplicate":
        assert d.pop("duplicate") == 1 and out.dead_letter is None, where
    else:
        assert out.reason in REASONS and out.reason != INTERNAL, (out, where)
        assert d.pop("rejected") == 1 and d.pop(f"rejected.{out.reason}") == 1, where
        assert d.pop("dead_lettered") == 1 and out.dead_letter is not None, where
    assert d == {}, (d, where)  # nothing else moved: no second reason
    return out.status, out.reason


def check_store(ing: Ingestor, store: Store) -> None:
    result = ing.flush()
    c = ing.counters.snapshot()
    assert c.get("accepted", 0) + c.get("rejected", 0) + c.get("duplicate", 0) == c["received"]
    assert sum(v for k, v in c.items() if k.startswith("rejected.")) == c.get("rejected", 0)
    assert store.count("records") == c.get("accepted", 0) == c.get("stored", 0)
    assert store.count("dead_letters") == c.get("rejected", 0)
    assert result.conflicts == 0
    for station, payload in store.conn.execute("SELECT station, payload FROM records"):
        body, _, sig = bytes(payload).rpartition(b"\n")
        mac = hmac.new(KEYS[station], body, hashlib.sha256).hexdigest().encode()
        assert hmac.compare_digest(mac, sig)


def new_ingestor() -> tuple[Ingestor, Store]:
    store = Store(":memory:")
    return Ingestor(store, KEYS, Counters(), now=lambda: float(NOW)), store


@settings(
    max_examples=BULK_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
@given(
    seed=st.integers(0, 2**32 - 1),
    weights=st.lists(st.integers(1, 10), min_size=len(KINDS), max_size=len(KINDS)),
)
def _bulk(seed: int, weights: list[int]) -> None:
    ing, store = new_ingestor()
    gen = Generator(seed, weights)
    model: dict[tuple[str, int], bytes] = {}  # (station, seq) -> body accepted
    try:
        for _ in range(MESSAGES_PER_EXAMPLE):
            kind, topic, payload, key = gen.message()
            status, reason = check_one(ing, topic, payload)
            TOTAL[reason or status] = TOTAL.get(reason or status, 0) + 1
            if kind == "mutated":
                assert status == "rejected", (seed, topic, payload)
            if key is None:
                if status == "accepted":  # e.g. a wrong_type that is still a valid record
                    doc = json.loads(payload.rpartition(b"\n")[0])
                    model[(doc["station"], doc["seq"])] = payload.rpartition(b"\n")[0]
                continue
            ts = json.loads(payload.rpartition(b"\n")[0])["ts"]
            body = payload.rpartition(b"\n")[0]
            if ts > NOW + 300 and key not in model:
                assert reason == "future_timestamp", (seed, payload)
                continue
            if key not in model:
                assert status == "accepted", (seed, payload, reason)
                model[key] = body
            elif model[key] == body:
                assert status == "duplicate", (seed, payload, reason)
            else:
                assert reason == "replayed", (seed, payload, reason)
            if gen.rng.random() < 0.05:
                ing.flush()  # sometimes the earlier copy is stored, sometimes batched
        check_store(ing, store)
    finally:
        store.close()


def test_ten_thousand_payloads_never_raise_and_are_each_counted_once() -> None:
    TOTAL.clear()
    _bulk()
    assert sum(TOTAL.values()) >= 10_000
    # the mix reached every outcome the generator can produce
    expected = set(REASONS) - {INTERNAL, "oversized", "past_timestamp"}
    assert expected | {"accepted", "duplicate"} <= set(TOTAL), TOTAL


# ---------------------------------------------------------------- one message, shrinkable

_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@st.composite
def messages(draw: st.DrawFn) -> tuple[str, bytes]:
    station = draw(st.sampled_from(STATIONS))
    choice = draw(st.integers(0, 3))
    if choice == 0:  # any bytes on a data topic
        return topic_of(station), draw(st.binary(max_size=300))
    if choice == 1:  # any JSON, validly signed
        return topic_of(station), signed(json.dumps(draw(_json)).encode(), station)
    # a record with one field replaced by any JSON value, validly signed
    rng = random.Random(draw(st.integers(0, 2**16)))
    ts = (NOW // 60) * 60
    doc = json.loads(record_body(rng, station, draw(st.integers(1, 5)), ts, True))
    if choice == 2:
        doc[draw(st.sampled_from(sorted(doc)))] = draw(_json)
    else:
        ch = next(iter(doc["ch"].values()))
        ch[draw(st.sampled_from(sorted(ch)))] = draw(_json)
    topic = draw(st.sampled_from([topic_of(station), topic_of(station) + "x", "a/b"]))
    return topic, signed(json.dumps(doc).encode(), station)


@settings(max_examples=400, deadline=None, database=None)
@given(st.lists(messages(), min_size=1, max_size=5))
def test_any_message_is_counted_exactly_once(batch: list[tuple[str, bytes]]) -> None:
    ing, store = new_ingestor()
    try:
        for topic, payload in batch:
            check_one(ing, topic, payload)
        check_store(ing, store)
    finally:
        store.close()
