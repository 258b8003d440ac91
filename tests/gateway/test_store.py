"""The gateway's SQLite store (gateway/store.py): WAL, schema version, batches, reads."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from gateway.store import (
    SCHEMA_VERSION,
    ChannelMinute,
    DeadLetter,
    ParsedRecord,
    Store,
    StoreVersionError,
)

TS = 1764374400
ST = "yb-town-01"


def rec(
    seq: int,
    ts: int = TS,
    *,
    station: str = ST,
    mean: float | None = 40.0,
    flag: str = "N",
    time_valid: bool = True,
    channels: tuple[str, ...] = ("pm25", "no2"),
    received_at: float = TS + 5.0,
) -> ParsedRecord:
    chans = tuple(
        ChannelMinute(
            ch,
            mean if mean is None else mean + k,
            None if mean is None else mean - 1,
            None if mean is None else mean + 10,
            0 if mean is None else 12,
            12,
            flag,
            "ug/m3",
        )
        for k, ch in enumerate(channels)
    )
    payload = f"{station}/{seq}/{ts}\n{'0' * 64}".encode()
    return ParsedRecord(station, seq, ts, 60, time_valid, "0.1.0", 3, chans, payload, received_at)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "g.db")
    yield s
    s.close()


def test_wal_mode_synchronous_normal_and_schema_version(store: Store) -> None:
    assert store.journal_mode == "wal"
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store.schema_version == SCHEMA_VERSION == 1
    tables = {
        r[0] for r in store.conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert {"records", "minutes", "dead_letters", "stations"} <= tables


def test_reopening_keeps_data_and_version(tmp_path: Path) -> None:
    with Store(tmp_path / "g.db") as s:
        s.insert_batch([rec(1)])
    with Store(tmp_path / "g.db") as s:
        assert s.count("records") == 1 and s.schema_version == SCHEMA_VERSION


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "g.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreVersionError) as e:
        Store(tmp_path / "g.db")
    assert e.value.found == 99 and e.value.supported == SCHEMA_VERSION


def test_insert_batch_is_all_or_nothing(store: Store) -> None:
    with pytest.raises(OverflowError):  # SQLite integers are 64-bit
        store.insert_batch([rec(1), rec(2**70, TS + 60)])
    assert not store.conn.in_transaction
    assert store.count("records") == store.count("minutes") == store.count("stations") == 0
    assert store.insert_batch([rec(1)]).stored == 1


def test_insert_batch_result_and_station_watermark(store: Store) -> None:
    result = store.insert_batch(
        [rec(3, TS + 120, received_at=TS + 200.0), rec(1, TS, received_at=TS + 100.0)],
        [DeadLetter("unsigned", "no signature", "t", ST, b"x", 1, TS + 150.0)],
    )
    assert (result.stored, result.minutes, result.dead_letters) == (2, 4, 1)
    assert result.spans == {ST: (TS, TS + 120)}
    (info,) = store.stations()
    assert (info.first_seen, info.last_seen, info.last_seq, info.max_ts) == (
        TS + 100.0,
        TS + 200.0,
        3,
        TS + 120,
    )
    store.insert_batch([rec(2, TS + 60, received_at=TS + 300.0)])
    (info,) = store.stations()
    assert info.last_seq == 3 and info.max_ts == TS + 120 and info.last_seen == TS + 300.0
    assert store.watermark(ST) == TS + 120 and store.watermark("nobody") is None
    assert store.max_seq(ST) == 3


def test_a_known_seq_is_a_conflict_not_an_overwrite(store: Store) -> None:
    store.insert_batch([rec(1, mean=10.0)])
    result = store.insert_batch([rec(1, TS + 60, mean=20.0)])
    assert result.stored == 0 and result.conflicts == 1 and result.minutes == 0
    assert store.minute_record(ST, "pm25", TS + 60) is None


def test_a_second_record_for_a_minute_keeps_the_first(store: Store) -> None:
    store.insert_batch([rec(1, mean=10.0)])
    result = store.insert_batch([rec(2, mean=20.0)])
    assert result.stored == 1 and result.duplicate_minutes == 1 and result.minutes == 0
    row = store.minute_record(ST, "pm25", TS)
    assert row is not None and row.mean == 10.0 and row.seq == 1
    assert store.count("records") == 2


def test_unsynced_records_stay_out_of_minutes(store: Store) -> None:
    result = store.insert_batch([rec(1, 946684800, time_valid=False)])
    assert result.unsynced == 1 and result.minutes == 0 and result.spans == {}
    (info,) = store.stations()
    assert info.max_ts is None and info.last_seq == 1
    row = store.conn.execute("SELECT time_valid FROM records").fetchone()
    assert row[0] == 0


def test_minute_arrays(store: Store) -> None:
    store.insert_batch(
        [
            rec(1, TS, mean=40.0),
            rec(2, TS + 120, mean=None, flag="B"),
            rec(3, TS + 180, mean=50.0, flag="T"),
            rec(4, TS + 600, mean=60.0),  # outside [TS, TS + 300)
            rec(5, TS - 60, mean=30.0),  # before
        ]
    )
    values, flags = store.minute_arrays(ST, "pm25", TS, TS + 300)
    assert values.dtype == np.float64 and flags.dtype == np.uint8
    assert values.shape == flags.shape == (5,)
    assert values[0] == 40.0 and values[3] == 50.0
    assert math.isnan(values[1]) and math.isnan(values[2]) and math.isnan(values[4])
    assert flags.tolist() == [ord("N"), 0, ord("B"), ord("T"), 0]
    # the second channel is its own series
    values2, _ = store.minute_arrays(ST, "no2", TS, TS + 60)
    assert values2.tolist() == [41.0]
    # t_to inside a minute includes that minute's start
    assert store.minute_arrays(ST, "pm25", TS, TS + 61)[0].shape == (2,)
    assert store.minute_arrays(ST, "pm25", TS, TS)[0].shape == (0,)
    assert store.minute_arrays(ST, "pm25", TS, TS - 600)[0].shape == (0,)
    unknown_values, unknown_flags = store.minute_arrays("nobody", "pm25", TS, TS + 120)
    assert np.isnan(unknown_values).all() and not unknown_flags.any()
    with pytest.raises(ValueError, match="aligned"):
        store.minute_arrays(ST, "pm25", TS + 1, TS + 300)


def test_minute_arrays_of_a_day(store: Store) -> None:
    store.insert_batch([rec(i + 1, TS + 60 * i, mean=float(i)) for i in range(1440)])
    values, flags = store.minute_arrays(ST, "pm25", TS, TS + 86400)
    assert values.tolist() == [float(i) for i in range(1440)]
    assert (flags == ord("N")).all()


def test_channels_stations_and_minute_record(store: Store) -> None:
    assert store.stations() == [] and store.channels(ST) == []
    store.insert_batch([rec(1), rec(1, station="yb-site-07", channels=("tsp",))])
    assert store.channels(ST) == ["no2", "pm25"]
    assert [s.station for s in store.stations()] == ["yb-site-07", ST]
    row = store.minute_record(ST, "no2", TS)
    assert row is not None
    assert (row.station, row.channel, row.ts, row.mean, row.min, row.max) == (
        ST,
        "no2",
        TS,
        41.0,
        39.0,
        50.0,
    )
    assert (row.n, row.exp, row.flag, row.unit, row.seq) == (12, 12, "N", "ug/m3", 1)
    assert store.minute_record(ST, "no2", TS + 60) is None


def test_dead_letters_round_trip(store: Store) -> None:
    big = b"y" * 20000
    store.insert_batch(
        [],
        [
            DeadLetter("bad_topic", "not a data topic", "x/\udcff", None, b"a", 1, 1.0),
            DeadLetter("oversized", "too big", "t", ST, big, len(big), 2.0),
        ],
    )
    newest, oldest = store.dead_letters()
    assert newest.reason == "oversized" and newest.payload_len == 20000
    assert len(newest.payload) == 8192
    assert oldest.topic == "x/\\udcff" and oldest.station is None
    assert [d.reason for d in store.dead_letters(reason="bad_topic")] == ["bad_topic"]
    with pytest.raises(ValueError):
        store.count("sqlite_master")
