"""Exceedance episodes: one start, one clear, state that survives a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import jsonschema
import pytest

from gateway import alarms
from gateway.alarms import Evaluation, observe
from tests.gateway.gwhelpers import SCHEMAS


def ev(
    ts: int, value: float, *, exceeds: bool | None = None, rule: str = "limit:o3/1h"
) -> Evaluation:
    limit = 200.0
    return Evaluation(
        channel="o3",
        pollutant="o3",
        rule=rule,
        averaging="1h",
        period="hour",
        period_ts=ts,
        period_label=str(ts),
        value=value,
        limit=limit,
        unit="ug/m3",
        source="GB3095-2012-II",
        exceeds=value > limit if exceeds is None else exceeds,
    )


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(tmp_path / "a.db")
    alarms.ensure_schema(c)
    return c


def events(conn: sqlite3.Connection, values: list[float | None], start: int = 0) -> list[str]:
    """Feed hourly values (None = an invalid hour: no evaluation); the events raised."""
    out = []
    for i, v in enumerate(values):
        if v is None:
            continue
        e = observe(conn, "s1", ev(start + i * 3600, v))
        if e is not None:
            out.append(f"{e.event}@{i}")
    return out


def test_an_episode_starts_once_and_clears_once(conn: sqlite3.Connection):
    assert events(conn, [100, 210, 250, 220, 150, 120]) == ["start@1", "clear@4"]
    row = conn.execute("SELECT active, n_exceeding, peak FROM alarm_state").fetchone()
    assert row == (0, 3, 250.0)


def test_the_clear_event_carries_the_episode(conn: sqlite3.Connection):
    observe(conn, "s1", ev(0, 210))
    observe(conn, "s1", ev(3600, 260))
    clear = observe(conn, "s1", ev(7200, 100))
    assert clear is not None and clear.event == "clear"
    assert (clear.episode_start_ts, clear.n_exceeding, clear.peak) == (0, 2, 260.0)
    doc = alarms.alarm_payload("s1", clear)
    jsonschema.validate(doc, __import__("json").loads((SCHEMAS / "alarm.schema.json").read_text()))
    assert alarms.outbox_period(clear) == "o3|limit:o3/1h|clear|7200"


def test_invalid_periods_neither_continue_nor_end_an_episode(conn: sqlite3.Connection):
    assert events(conn, [210, None, None, 230, None, 100]) == ["start@0", "clear@5"]


def test_equal_to_the_limit_does_not_exceed_and_a_new_episode_starts_again(
    conn: sqlite3.Connection,
):
    assert events(conn, [200, 201, 200, 201]) == ["start@1", "clear@2", "start@3"]


def test_a_period_seen_before_is_ignored(conn: sqlite3.Connection):
    assert observe(conn, "s1", ev(3600, 250)) is not None
    assert observe(conn, "s1", ev(3600, 250)) is None  # recompute
    assert observe(conn, "s1", ev(0, 100)) is None  # older period
    assert observe(conn, "s1", ev(7200, 100)) is not None


def test_rules_and_stations_have_separate_episodes(conn: sqlite3.Connection):
    assert observe(conn, "s1", ev(0, 250)) is not None
    assert observe(conn, "s1", ev(0, 250, rule="site:custom")) is not None
    assert observe(conn, "s2", ev(0, 250)) is not None
    assert len(alarms.active_alarms(conn)) == 3
    assert [a["station"] for a in alarms.active_alarms(conn, "s2")] == ["s2"]


def test_state_survives_a_restart(tmp_path: Path):
    path = tmp_path / "a.db"
    c1 = sqlite3.connect(path)
    alarms.ensure_schema(c1)
    with c1:
        assert observe(c1, "s1", ev(0, 250)) is not None
    c1.close()
    c2 = sqlite3.connect(path)
    alarms.ensure_schema(c2)
    assert observe(c2, "s1", ev(3600, 260)) is None  # still the same episode
    clear = observe(c2, "s1", ev(7200, 10))
    assert clear is not None and clear.n_exceeding == 2
