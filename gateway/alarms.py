"""Exceedance episodes: one alarm when an episode starts, one when it clears.

An *episode* is a run of valid periods (hours or days) in which one channel of one
station exceeds one rule — a GB 3095 limit of the configured limit set
(``limit:<pollutant>/<averaging>``, e.g. ``limit:pm25/24h``) or a site threshold
(``site:<name>``, e.g. ``site:construction_dust_pm10_1h``, GB 37822 NMHC hourly and
any-value). Exceedance is strictly greater than the limit (gateway.standards.limits).

* The first exceeding valid period raises ``event: "start"``.
* The first valid period that does not exceed raises ``event: "clear"`` with the
  episode's length and peak.
* An invalid period (not enough data) neither continues nor ends an episode: nothing is
  known about it; the episode stays open until a valid period decides.

The state per (station, channel, rule) lives in the ``alarm_state`` table and is updated
in the same transaction as the result that caused it (and the alarm's outbox row), so a
restart neither re-raises nor forgets an open episode. A period at or before the last one
seen for the rule is ignored (a recompute cannot raise twice).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple

ALARM_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS alarm_state (
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    rule TEXT NOT NULL,
    active INTEGER NOT NULL,
    episode_start_ts INTEGER,      -- first exceeding period of the open (or last) episode
    last_period_ts INTEGER NOT NULL,
    peak REAL,
    n_exceeding INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (station, channel, rule)
);
"""

Event = Literal["start", "clear"]


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One valid period's value compared with one rule.

    ``period`` is ``"hour"`` or ``"day"``, ``period_ts`` its start (UTC s),
    ``period_label`` its human name (``2023-11-15T06:00+08:00``, ``2023-11-15``).
    ``value`` and ``limit`` are in ``unit``. ``source`` names the limit set or standard;
    ``confirmed`` is False for a placeholder or locally configured threshold.
    """

    channel: str
    pollutant: str | None
    rule: str
    averaging: str
    period: str
    period_ts: int
    period_label: str
    value: float
    limit: float
    unit: str
    source: str
    exceeds: bool
    confirmed: bool = True


class AlarmEvent(NamedTuple):
    event: Event
    evaluation: Evaluation
    episode_start_ts: int
    n_exceeding: int
    peak: float


def ensure_schema(conn: sqlite3.Connection) -> None:
    conn.executescript(ALARM_SCHEMA)


def observe(conn: sqlite3.Connection, station: str, ev: Evaluation) -> AlarmEvent | None:
    """Feed one evaluation into the episode state (inside the caller's transaction);
    the event to publish, if any."""
    row = conn.execute(
        "SELECT active, episode_start_ts, last_period_ts, peak, n_exceeding FROM alarm_state"
        " WHERE station = ? AND channel = ? AND rule = ?",
        (station, ev.channel, ev.rule),
    ).fetchone()
    if row is not None and ev.period_ts <= row[2]:
        return None  # already seen (recompute)
    active = bool(row[0]) if row is not None else False
    start_ts: int | None = row[1] if row is not None else None
    peak: float | None = row[3] if row is not None else None
    n_exceeding: int = row[4] if row is not None else 0
    result: AlarmEvent | None = None
    if ev.exceeds:
        if active and start_ts is not None and peak is not None:
            peak = max(peak, ev.value)
            n_exceeding += 1
        else:
            active, start_ts, peak, n_exceeding = True, ev.period_ts, ev.value, 1
            result = AlarmEvent("start", ev, ev.period_ts, 1, ev.value)
    elif active and start_ts is not None:
        active = False
        result = AlarmEvent("clear", ev, start_ts, n_exceeding, peak if peak is not None else 0.0)
    conn.execute(
        "INSERT INTO alarm_state"
        " (station, channel, rule, active, episode_start_ts, last_period_ts, peak, n_exceeding)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (station, channel, rule) DO UPDATE SET active = excluded.active,"
        " episode_start_ts = excluded.episode_start_ts, last_period_ts = excluded.last_period_ts,"
        " peak = excluded.peak, n_exceeding = excluded.n_exceeding",
        (station, ev.channel, ev.rule, int(active), start_ts, ev.period_ts, peak, n_exceeding),
    )
    return result


def active_alarms(conn: sqlite3.Connection, station: str | None = None) -> list[dict[str, Any]]:
    """Open episodes (for the status page and the CLI)."""
    sql = (
        "SELECT station, channel, rule, episode_start_ts, last_period_ts, peak, n_exceeding"
        " FROM alarm_state WHERE active = 1"
    )
    args: tuple[str, ...] = ()
    if station is not None:
        sql += " AND station = ?"
        args = (station,)
    keys = ("station", "channel", "rule", "episode_start_ts", "last_period_ts", "peak", "n")
    return [dict(zip(keys, r, strict=True)) for r in conn.execute(sql + " ORDER BY 1, 2, 3", args)]


def outbox_period(event: AlarmEvent) -> str:
    """The alarm's outbox key within its station: channel, rule, event, period."""
    ev = event.evaluation
    return f"{ev.channel}|{ev.rule}|{event.event}|{ev.period_ts}"


def alarm_payload(station: str, event: AlarmEvent) -> dict[str, Any]:
    """The alarm message (docs/schemas/alarm.schema.json)."""
    ev = event.evaluation
    return {
        "v": 1,
        "type": "alarm",
        "station": station,
        "event": event.event,
        "channel": ev.channel,
        "pollutant": ev.pollutant,
        "rule": ev.rule,
        "averaging": ev.averaging,
        "period": ev.period,
        "period_ts": ev.period_ts,
        "period_label": ev.period_label,
        "value": ev.value,
        "limit": ev.limit,
        "unit": ev.unit,
        "source": ev.source,
        "confirmed": ev.confirmed,
        "episode_start_ts": event.episode_start_ts,
        "n_exceeding": event.n_exceeding,
        "peak": event.peak,
    }
