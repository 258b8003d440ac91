"""The outbox: one row per key, published in order, exactly once, across broker outages
and publisher restarts — against a real mosquitto (hil_tests/broker.py)."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway import outbox
from gateway.counters import Counters
from hil_tests.broker import Mosquitto
from tests.gateway.gwhelpers import Recorder, result_key

TOPICS = ["lantian/v1/result/#", "lantian/v1/alarm/#"]
STATUS = "lantian/v1/gateway/gw-test/status"


def add(conn: sqlite3.Connection, i: int) -> bool:
    station = f"s{i % 3}"
    doc = {"type": "hour", "station": station, "hour_ts": i}
    with outbox.transaction(conn):
        return outbox.enqueue(
            conn,
            "hour",
            station,
            str(i),
            f"lantian/v1/result/hour/{station}",
            json.dumps(doc).encode(),
            now=time.time(),
        )


@pytest.fixture
def db(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    path = tmp_path / "outbox.db"
    conn = outbox.connect(path)
    outbox.ensure_schema(conn)
    yield path, conn
    conn.close()


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    with Mosquitto() as b:
        yield b


def make_publisher(path: Path, broker: Mosquitto, counters: Counters, window: int = 5):
    return outbox.Publisher(
        path,
        outbox.BrokerSettings(broker.host, broker.port, "lantian-test-results"),
        status_topic=STATUS,
        will_payload=b'{"online":false}',
        window=window,
        counters=counters,
        poll_s=0.05,
    )


def test_a_key_is_enqueued_once_and_rows_come_in_order(db: tuple[Path, sqlite3.Connection]):
    _, conn = db
    assert add(conn, 1) and add(conn, 2) and add(conn, 3)
    assert not add(conn, 2)  # a recompute of the same key
    rows = outbox.pending(conn)
    assert [r.period for r in rows] == ["1", "2", "3"]
    assert outbox.mark_published(conn, rows[0].id, 1.0)
    assert not outbox.mark_published(conn, rows[0].id, 2.0)
    assert [r.period for r in outbox.pending(conn)] == ["2", "3"]
    assert [r.period for r in outbox.pending(conn, after_id=rows[1].id)] == ["3"]
    assert outbox.stats(conn).pending == 2 and outbox.stats(conn).published == 1
    with pytest.raises(ValueError):
        outbox.enqueue(conn, "weekly", "s", "p", "t", b"", now=0)


def test_a_failed_transaction_enqueues_nothing(db: tuple[Path, sqlite3.Connection]):
    _, conn = db
    with pytest.raises(RuntimeError), outbox.transaction(conn):
        outbox.enqueue(conn, "hour", "s", "1", "t", b"x", now=0)
        raise RuntimeError("the result's own insert failed")
    assert outbox.pending(conn) == []


def check_exactly_once_in_order(recorder: Recorder, n: int) -> None:
    firsts = [result_key(m.doc()) for m in recorder.first_copies()]
    expected = [("hour", f"s{i % 3}", str(i)) for i in range(n)]
    assert len(firsts) == len(set(firsts)), "the gateway published a result twice"
    assert firsts == expected, "lost or out of order"
    # the broker's own re-sends to this subscriber (DUP) are only ever copies
    assert {result_key(m.doc()) for m in recorder.results()} == set(expected)


def test_broker_outage_while_publishing_loses_and_duplicates_nothing(
    db: tuple[Path, sqlite3.Connection], broker: Mosquitto
):
    path, conn = db
    n = 600
    recorder = Recorder(broker.port, TOPICS, "outbox-test-recorder")
    counters = Counters()
    publisher = make_publisher(path, broker, counters)
    publisher.start()
    try:
        assert publisher.wait_connected(10)

        def produce() -> None:  # the engine producing results while all this happens
            c = outbox.connect(path)
            for i in range(n):
                add(c, i)
                publisher.notify()
                time.sleep(0.003)
            c.close()

        producer = threading.Thread(target=produce)
        producer.start()
        assert recorder.wait_for(lambda ms: len(ms) >= 100, 20)
        broker.stop()  # mid-stream
        stopped_at = len(recorder.snapshot())
        time.sleep(1.5)
        broker.start()
        producer.join()
        assert recorder.wait_for(lambda ms: len({m.payload for m in ms}) >= n, 40), (
            f"{len(recorder.snapshot())} of {n} arrived"
        )
        time.sleep(0.3)  # anything extra would show up now
        assert stopped_at < n, "the outage did not happen while publishing"
        check_exactly_once_in_order(recorder, n)
        deadline = time.monotonic() + 10
        while outbox.stats(conn).pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.stats(conn).pending == 0 and outbox.stats(conn).published == n
        assert counters.get("published") == n
        assert counters.get("publisher.disconnects") >= 1
    finally:
        publisher.stop(0)
        recorder.close()


@pytest.mark.parametrize("crash", [False, True], ids=["clean-stop", "crash"])
def test_a_restarted_publisher_continues_where_the_last_stopped(
    db: tuple[Path, sqlite3.Connection], broker: Mosquitto, crash: bool
):
    path, conn = db
    n, window = 200, 4
    for i in range(n):
        add(conn, i)
    recorder = Recorder(broker.port, TOPICS, f"outbox-test-recorder-{crash}")
    try:
        first = make_publisher(path, broker, Counters(), window=window)
        first.start()
        assert recorder.wait_for(lambda ms: len(ms) >= 50, 20)
        # a clean stop waits for the in-flight PUBACKs; a crash does not wait (like a
        # SIGKILL, the PUBACKs of the messages in flight are never read)
        first.stop(timeout=0 if crash else 5)
        done = outbox.stats(conn).published
        assert 0 < done < n
        second = make_publisher(path, broker, Counters())
        second.start()
        assert recorder.wait_for(lambda ms: len({m.payload for m in ms}) >= n, 20)
        time.sleep(0.3)
        second.stop()
        assert outbox.stats(conn).pending == 0
        if not crash:
            check_exactly_once_in_order(recorder, n)
            return
        # The QoS 1 window (outbox module doc): at most the messages that were in
        # flight are sent again, right where the first publisher stopped; none lost.
        firsts = [result_key(m.doc()) for m in recorder.first_copies()]
        expected = [("hour", f"s{i % 3}", str(i)) for i in range(n)]
        assert len(firsts) - n <= window
        assert list(dict.fromkeys(firsts)) == expected
    finally:
        recorder.close()


def test_status_is_retained_and_nothing_is_fed_while_disconnected(
    db: tuple[Path, sqlite3.Connection], broker: Mosquitto
):
    path, conn = db
    publisher = make_publisher(path, broker, Counters())
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        publisher.publish_status(b'{"online":true}').wait_for_publish(5)
        late = Recorder(broker.port, [STATUS], "outbox-test-status")
        try:
            assert late.wait_for(lambda ms: bool(ms), 5)
            assert late.snapshot()[0].retain and late.snapshot()[0].payload == b'{"online":true}'
        finally:
            late.close()
        broker.stop()
        deadline = time.monotonic() + 5
        while publisher.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not publisher.connected
        add(conn, 0)
        publisher.notify()
        time.sleep(0.3)
        assert publisher.in_flight() == 0  # nothing handed to paho while down
        broker.start()
        deadline = time.monotonic() + 15
        while outbox.stats(conn).pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert outbox.stats(conn).pending == 0
    finally:
        publisher.stop(1, final_status=b'{"online":false}')
