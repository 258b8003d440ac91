"""The results engine: hourly and daily values valid by GB 3095 / HJ 663, exceedance flags,
AQI by HJ 633, warning levels and plan progress, each written with its outbox row.

Hour close on the data watermark (docs/gateway.md "Hour close"). Per station, the hour
``[h, h+3600)`` closes

* when the station's watermark (the latest minute start stored) is ≥ ``h + 3600``: a
  minute of a later hour has arrived, so a station sending in order has sent this hour
  (``closed_by: "watermark"``); or
* on the wall clock, when ``now > h + 3600 + grace`` AND the station is silent (nothing
  stored for ``grace`` seconds): a station that is still sending — e.g. replaying its
  flash buffer after an outage — is waited for (``closed_by: "wall_clock"``).

Hours close in order, once: a closed hour is final and minutes that arrive for it later
are kept in the store (raw data) but do not change its published result. A station's
first hour is the local midnight before its first minute, so that every local day the
station has data for is complete.

Per closed hour and channel (``native.aggregate.hourly`` over the minute arrays, the rule
set's counting flags and minimum minutes): mean, ``n_valid``/``n_expected`` (60), valid,
the reason when invalid (``no_data``, ``insufficient_minutes`` or the dominant HJ 212
flag's name, e.g. ``maintenance``), the hour's HJ 212 flag, exceedances of the limit set's
1-hour limits and of the site thresholds, and for O3 the 8-hour moving average. Per
station: the real-time AQI. A channel is expected at a station on a local day when it has
minutes on that day or the day before.

When the hour closed is the last of a local day (``utc_offset``, UTC+8 by default), the
day closes in the same transaction: ``native.aggregate.daily`` over the 24 hours (≥ 20
valid, else ``insufficient_hours``), O3 daily maximum 8 h (``daily_max_8h``, 14 of 17 with
the exceedance exception), 24-hour and daily-max-8h exceedances, the daily AQI, good-day
counts, the heavy-pollution warning level of the last ``warning_days`` days and, when the
plan has a target for the year, plan progress (published on its own topic).

Units: for a channel mapped to a pollutant, values are converted to the standard's unit
(µg/m³; CO and NMHC mg/m³; ppb/ppm gases by spec §1 at 298.15 K) and published in it
(``"ug/m3"``/``"mg/m3"``). A unit that cannot be converted keeps the raw value and skips
limits and AQI for it (``unit_unconvertible`` in the result, counted). Unmapped channels
(temperature, humidity, …) are averaged in their own unit.

Monthly and annual statistics are computed on demand (:func:`month_statistic`,
:func:`year_statistic`) for reports, with the rule set's month/year validity and the
HJ 663 percentiles.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt

from gateway import alarms, outbox
from gateway.config import AQI_OFF, AUTO, GatewayConfig
from gateway.logging import get_logger, log_event
from gateway.outbox import Counting, transaction
from gateway.standards import (
    HJ633_2012,
    HJ633_2026,
    AqiResult,
    LimitSet,
    NoTargetError,
    RuleSet,
    SiteThreshold,
    StandardsError,
    annual_statistics,
    daily_aqi,
    exceeds,
    get_limit_set,
    get_ruleset,
    hourly_aqi,
    limit_set_for,
    month_valid,
    percentile,
    progress,
    warning_level,
    year_valid,
)
from gateway.standards.limits import GB3095_2026_IN_FORCE, PPB_TO_UG_M3
from gateway.standards.rulesets import GB3095_2012, GB3095_2026
from native import aggregate

F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]

HOUR_S: Final = 3600
DAY_S: Final = 86400
MINUTES_PER_HOUR: Final = 60
HOURS_PER_DAY: Final = 24

NO_DATA: Final = "no_data"
INSUFFICIENT_MINUTES: Final = "insufficient_minutes"
INSUFFICIENT_HOURS: Final = "insufficient_hours"
INSUFFICIENT_8H_HOURS: Final = "insufficient_8h_hours"
INSUFFICIENT_WINDOWS: Final = "insufficient_windows"
EXCEEDANCE_EXCEPTION: Final = "exceedance_exception"
UNIT_UNCONVERTIBLE: Final = "unit_unconvertible"

# HJ 212-2017 table 8: the reason named after an invalid hour's dominant flag.
FLAG_REASONS: Final[Mapping[str, str]] = {
    "T": "over_range",
    "F": "instrument_stopped",
    "M": "maintenance",
    "S": "manual_value",
    "D": "instrument_fault",
    "C": "calibration",
    "B": "communication_failure",
}

CLOSED_BY_WATERMARK: Final = "watermark"
CLOSED_BY_WALL_CLOCK: Final = "wall_clock"

# Pollutants of the GB 3095 tables and of HJ 633's indicators.
_AQI_HOURLY: Final = {
    "so2": "so2_1h",
    "no2": "no2_1h",
    "pm10": "pm10_1h",
    "co": "co_1h",
    "o3": "o3_1h",
    "pm25": "pm25_1h",
}
_AQI_DAILY: Final = {
    "so2": "so2_24h",
    "no2": "no2_24h",
    "pm10": "pm10_24h",
    "co": "co_24h",
    "pm25": "pm25_24h",
}
_MG_POLLUTANTS: Final = frozenset({"co", "nmhc"})

RESULTS_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS engine_state (
    station TEXT PRIMARY KEY,
    next_hour_ts INTEGER NOT NULL      -- the first hour not yet closed
);
CREATE TABLE IF NOT EXISTS hours (
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    hour_ts INTEGER NOT NULL,          -- hour start, UTC s (HJ 212: labelled by its start)
    pollutant TEXT,
    unit TEXT NOT NULL,
    mean REAL,                         -- NULL unless valid
    partial_mean REAL,                 -- mean of whatever counted (reports), NULL if none
    n_valid INTEGER NOT NULL,
    n_expected INTEGER NOT NULL,
    valid INTEGER NOT NULL,
    reason TEXT,
    flag TEXT,                         -- HJ 212 flag of the hour
    max_single REAL,                   -- largest single (minute max) value that counted
    ma8 REAL,                          -- O3: 8-h moving mean ending with this hour
    ma8_n_valid INTEGER,
    ma8_valid INTEGER,
    iaqi INTEGER,
    exceedances TEXT NOT NULL,         -- JSON list, see docs/gateway.md
    PRIMARY KEY (station, channel, hour_ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS hour_reports (
    station TEXT NOT NULL,
    hour_ts INTEGER NOT NULL,
    closed_by TEXT NOT NULL,
    closed_at REAL NOT NULL,
    ruleset TEXT NOT NULL,
    limit_set TEXT NOT NULL,
    aqi INTEGER,
    aqi_json TEXT,
    PRIMARY KEY (station, hour_ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS days (
    station TEXT NOT NULL,
    channel TEXT NOT NULL,
    day TEXT NOT NULL,                 -- local calendar day, YYYY-MM-DD
    day_start_ts INTEGER NOT NULL,
    pollutant TEXT,
    unit TEXT NOT NULL,
    mean REAL,
    partial_mean REAL,
    n_valid INTEGER NOT NULL,
    n_expected INTEGER NOT NULL,
    valid INTEGER NOT NULL,
    reason TEXT,
    max_1h REAL,
    max_8h REAL,
    max_8h_n_valid INTEGER,
    max_8h_valid INTEGER,
    max_8h_reason TEXT,
    iaqi INTEGER,
    exceedances TEXT NOT NULL,
    PRIMARY KEY (station, channel, day)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS day_reports (
    station TEXT NOT NULL,
    day TEXT NOT NULL,
    day_start_ts INTEGER NOT NULL,
    ruleset TEXT NOT NULL,
    limit_set TEXT NOT NULL,
    aqi INTEGER,
    aqi_published INTEGER NOT NULL,
    good_day INTEGER,
    aqi_json TEXT,
    PRIMARY KEY (station, day)
) WITHOUT ROWID;
"""


# ---------------------------------------------------------------- the store it reads


class StationLike(Protocol):
    @property
    def station(self) -> str: ...
    @property
    def last_seen(self) -> float: ...


class MinuteStore(Protocol):
    """What the engine needs of ``gateway.store.Store``."""

    @property
    def conn(self) -> sqlite3.Connection: ...
    def minute_arrays(
        self, station: str, channel: str, t_from: int, t_to: int
    ) -> tuple[F64, U8]: ...
    def stations(self) -> Sequence[StationLike]: ...
    def watermark(self, station: str) -> int | None: ...


class _NoCounters:
    def inc(self, name: str, n: int = 1) -> None:
        pass


# ---------------------------------------------------------------- time and names


def local_date(ts: int, utc_offset_s: int) -> date:
    """The local calendar day of UTC epoch second ``ts``."""
    return date(1970, 1, 1) + timedelta(days=(ts + utc_offset_s) // DAY_S)


def day_start(day: date, utc_offset_s: int) -> int:
    """UTC epoch second of local midnight starting ``day``."""
    return (day - date(1970, 1, 1)).days * DAY_S - utc_offset_s


def local_day_start(ts: int, utc_offset_s: int) -> int:
    return ((ts + utc_offset_s) // DAY_S) * DAY_S - utc_offset_s


def _offset_text(utc_offset_s: int) -> str:
    sign = "-" if utc_offset_s < 0 else "+"
    minutes = abs(utc_offset_s) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def hour_label(hour_ts: int, utc_offset_s: int) -> str:
    """``2023-11-15T06:00+08:00``: the hour's local start."""
    local = hour_ts + utc_offset_s
    day = date(1970, 1, 1) + timedelta(days=local // DAY_S)
    hh = (local % DAY_S) // HOUR_S
    return f"{day.isoformat()}T{hh:02d}:00{_offset_text(utc_offset_s)}"


def ruleset_for(name: str, day: date) -> RuleSet:
    """The configured rule set; ``auto``: GB 3095-2026 from 2026-03-01, else 2012."""
    if name == AUTO:
        return GB3095_2026 if day >= GB3095_2026_IN_FORCE else GB3095_2012
    return get_ruleset(name)


def limit_set_named(name: str, day: date) -> LimitSet:
    """The configured limit set; ``auto-I``/``auto-II``: the set governing ``day``."""
    if name in ("auto-I", "auto-II"):
        return limit_set_for(day, "I" if name == "auto-I" else "II")
    return get_limit_set(name)


def aqi_generation_for(name: str, day: date) -> str | None:
    """The configured HJ 633 generation (None when AQI is off)."""
    if name == AQI_OFF:
        return None
    if name == AUTO:
        return HJ633_2026 if day >= GB3095_2026_IN_FORCE else HJ633_2012
    return name


def hour_reason(code: int, n_valid: int) -> str:
    """The name of an invalid hour's reason from the kernel's reason byte."""
    if code == aggregate.NO_DATA:
        return NO_DATA if n_valid == 0 else INSUFFICIENT_MINUTES
    letter = chr(code)
    return FLAG_REASONS.get(letter, f"flag:{letter}")


# ---------------------------------------------------------------- units


def normalise_unit(unit: str) -> str:
    return unit.strip().lower().replace("µ", "u").replace("μ", "u").replace("³", "3")


_MASS_IN_UG: Final = {"ug/m3": 1.0, "mg/m3": 1000.0}


def standard_unit(pollutant: str | None) -> str | None:
    """The unit limits and AQI use for ``pollutant`` (None: unmapped channel)."""
    if pollutant is None:
        return None
    return "mg/m3" if pollutant in _MG_POLLUTANTS else "ug/m3"


def unit_factor(pollutant: str | None, from_unit: str, to_unit: str) -> float | None:
    """Multiply a value in ``from_unit`` by this to get ``to_unit``; None if impossible.

    Mass concentrations convert among themselves; ppb/ppm of the gases of spec §1 convert
    at 298.15 K, 1013.25 hPa (1 ppb → factor µg/m³; CO: 1 ppm → 1.145 mg/m³, the same).
    """
    a, b = normalise_unit(from_unit), normalise_unit(to_unit)
    if a == b:
        return 1.0
    if a in _MASS_IN_UG and b in _MASS_IN_UG:
        return _MASS_IN_UG[a] / _MASS_IN_UG[b]
    if (
        pollutant is not None
        and pollutant in PPB_TO_UG_M3
        and a in ("ppb", "ppm")
        and b in _MASS_IN_UG
    ):
        ug_per_ppb = float(PPB_TO_UG_M3[pollutant])
        return ug_per_ppb * (1000.0 if a == "ppm" else 1.0) / _MASS_IN_UG[b]
    return None


SIGNIFICANT_DIGITS: Final = 12


def _finite(x: float | None) -> float | None:
    """A computed value as stored and published: None unless finite, and rounded to
    12 significant digits. The rounding removes binary summation noise only (the records
    carry 6): 60 minutes of 0.8 sum to a mean of 0.8000000000000003, which the HJ 633
    ceiling would turn into an IAQI one too high (and an exact limit into an exceedance)."""
    if x is None:
        return None
    x = float(x)
    return float(f"{x:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(x) else None


def dumps(doc: Mapping[str, Any]) -> bytes:
    """A result's payload bytes: compact JSON, UTF-8, no NaN (never re-serialised)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def aqi_json(result: AqiResult) -> dict[str, Any]:
    """An AQI report as published (docs/gateway.md "AQI")."""
    level = result.level
    return {
        "generation": result.generation,
        "aqi": result.aqi if result.published else None,
        "aqi_text": result.aqi_text,
        "published": result.published,
        "level": level.numeral if level else None,
        "category": level.category_en if level else None,
        "category_zh": level.category_zh if level else None,
        "colour": level.colour if level else None,
        "rgb": list(level.rgb) if level else None,
        "primary_pollutants": list(result.primary_pollutants),
        "exceeding_pollutants": list(result.exceeding_pollutants),
        "iaqi": {r.indicator: r.iaqi for r in result.iaqis},
        "rules": {r.indicator: r.rule for r in result.iaqis if r.rule is not None},
        "missing": list(result.missing),
    }


# ---------------------------------------------------------------- one channel's hour


@dataclass(slots=True)
class _ChannelHour:
    channel: str
    pollutant: str | None
    unit: str
    unit_ok: bool
    mean: float | None
    partial: float | None
    n_valid: int
    valid: bool
    reason: str | None
    flag: str | None
    minutes: dict[str, int]
    max_single: float | None
    ma8: float | None = None
    ma8_n_valid: int | None = None
    ma8_valid: bool | None = None
    iaqi: int | None = None
    exceedances: list[dict[str, Any]] | None = None


def _exceedance_doc(ev: alarms.Evaluation) -> dict[str, Any]:
    return {
        "rule": ev.rule,
        "averaging": ev.averaging,
        "value": ev.value,
        "limit": ev.limit,
        "unit": ev.unit,
        "exceeds": ev.exceeds,
        "source": ev.source,
        "confirmed": ev.confirmed,
    }


# ---------------------------------------------------------------- the engine


class ResultsEngine:
    """Closes hours and days of every station in the store (see module doc).

    Call :meth:`step` periodically; it returns the number of outbox rows it enqueued and
    calls ``on_enqueued`` after each commit that added some. The engine uses the store's
    connection (one thread). ``clock`` is the wall clock for the silent-station grace.
    """

    def __init__(
        self,
        store: MinuteStore,
        config: GatewayConfig,
        *,
        clock: Callable[[], float] = time.time,
        counters: Counting | None = None,
        on_enqueued: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.conn = store.conn
        self.clock = clock
        self.counters: Counting = counters or _NoCounters()
        self.on_enqueued = on_enqueued
        self.log = get_logger("gateway.results")
        self._counting: dict[frozenset[str], U8] = {}
        ensure_schema(self.conn)

    # ------------------------------------------------------------ the loop body
    def step(self, now: float | None = None) -> int:
        """Close every hour (and day) that is ready; the number of results enqueued."""
        now = self.clock() if now is None else now
        enqueued = 0
        for info in self.store.stations():
            try:
                enqueued += self._advance(info.station, info.last_seen, now)
            except (sqlite3.Error, StandardsError, aggregate.KernelInputError, ValueError):
                self.counters.inc("engine.errors")
                log_event(self.log, 40, "station_close_failed", station=info.station, exc_info=True)
        return enqueued

    def _advance(self, station: str, last_seen: float | None, now: float) -> int:
        cfg = self.config
        row = self.conn.execute(
            "SELECT next_hour_ts FROM engine_state WHERE station = ?", (station,)
        ).fetchone()
        if row is None:
            first = self.conn.execute(
                "SELECT MIN(ts) FROM minutes WHERE station = ?", (station,)
            ).fetchone()[0]
            if first is None:
                return 0
            next_hour = local_day_start(int(first), cfg.utc_offset_s)
            with transaction(self.conn):
                self.conn.execute(
                    "INSERT OR IGNORE INTO engine_state (station, next_hour_ts) VALUES (?, ?)",
                    (station, next_hour),
                )
        else:
            next_hour = int(row[0])
        watermark = self.store.watermark(station)
        silent = last_seen is None or now - last_seen > cfg.grace_s
        enqueued = 0
        for _ in range(cfg.batch.max_hours_per_tick):
            end = next_hour + HOUR_S
            if watermark is not None and watermark >= end:
                closed_by = CLOSED_BY_WATERMARK
            elif silent and now > end + cfg.grace_s:
                closed_by = CLOSED_BY_WALL_CLOCK
            else:
                break
            enqueued += self.close_hour(station, next_hour, closed_by, now)
            next_hour = end
        return enqueued

    # ------------------------------------------------------------ hour
    def close_hour(self, station: str, hour_ts: int, closed_by: str, now: float) -> int:
        """Close one hour (and its day when it is the day's last), in one transaction."""
        cfg = self.config
        day = local_date(hour_ts, cfg.utc_offset_s)
        rules = ruleset_for(cfg.rules.ruleset, day)
        limits = limit_set_named(cfg.rules.limit_set, day)
        generation = aqi_generation_for(cfg.rules.aqi, day)
        enqueued = 0
        with transaction(self.conn):
            state = self.conn.execute(
                "SELECT next_hour_ts FROM engine_state WHERE station = ?", (station,)
            ).fetchone()
            if state is None or int(state[0]) != hour_ts:
                return 0  # closed meanwhile (another engine) or out of order
            hours = [
                self._channel_hour(station, ch, hour_ts, rules, limits)
                for ch in self._expected_channels(station, hour_ts)
            ]
            aqi_doc = self._hourly_aqi(station, hour_ts, hours, rules, generation)
            label = hour_label(hour_ts, cfg.utc_offset_s)
            evaluations: list[alarms.Evaluation] = []
            for h in hours:
                evs = self._hour_evaluations(station, h, hour_ts, label, limits)
                h.exceedances = [_exceedance_doc(e) for e in evs]
                evaluations.extend(evs)
                self._insert_hour(station, hour_ts, h)
            self.conn.execute(
                "INSERT INTO hour_reports (station, hour_ts, closed_by, closed_at, ruleset,"
                " limit_set, aqi, aqi_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    station,
                    hour_ts,
                    closed_by,
                    now,
                    rules.name,
                    limits.name,
                    None if aqi_doc is None else aqi_doc["aqi"],
                    None if aqi_doc is None else json.dumps(aqi_doc, ensure_ascii=False),
                ),
            )
            payload = {
                "v": 1,
                "type": "hour",
                "station": station,
                "hour_ts": hour_ts,
                "start": label,
                "closed_by": closed_by,
                "ruleset": rules.name,
                "limit_set": limits.name,
                "channels": {h.channel: self._hour_channel_doc(h) for h in hours},
                "aqi": aqi_doc,
            }
            if outbox.enqueue(
                self.conn,
                "hour",
                station,
                str(hour_ts),
                cfg.topic("result", "hour", station),
                dumps(payload),
                now=now,
            ):
                enqueued += 1
            enqueued += self._observe(station, evaluations, now)
            self.conn.execute(
                "UPDATE engine_state SET next_hour_ts = ? WHERE station = ?",
                (hour_ts + HOUR_S, station),
            )
            if local_day_start(hour_ts + HOUR_S, cfg.utc_offset_s) == hour_ts + HOUR_S:
                enqueued += self._close_day(station, day, rules, limits, generation, now)
        self.counters.inc("hours_closed")
        self.counters.inc(f"hours_closed.{closed_by}")
        log_event(
            self.log,
            10,
            "hour_closed",
            station=station,
            hour=label,
            closed_by=closed_by,
            valid=sum(h.valid for h in hours),
            channels=len(hours),
        )
        if enqueued:
            self.counters.inc("results_enqueued", enqueued)
            if self.on_enqueued is not None:
                self.on_enqueued()
        return enqueued

    def _expected_channels(self, station: str, hour_ts: int) -> list[str]:
        start = local_day_start(hour_ts, self.config.utc_offset_s)
        rows = self.conn.execute(
            "SELECT DISTINCT channel FROM minutes WHERE station = ? AND ts >= ? AND ts < ?"
            " UNION SELECT DISTINCT channel FROM hours"
            " WHERE station = ? AND hour_ts >= ? AND hour_ts < ? ORDER BY 1",
            (station, start - DAY_S, start + DAY_S, station, start, start + DAY_S),
        ).fetchall()
        return [str(r[0]) for r in rows]

    def _counting_table(self, rules: RuleSet) -> U8:
        table = self._counting.get(rules.counted_flags)
        if table is None:
            table = aggregate.counting_table("".join(sorted(rules.counted_flags)))
            self._counting[rules.counted_flags] = table
        return table

    def _channel_hour(
        self, station: str, channel: str, hour_ts: int, rules: RuleSet, limits: LimitSet
    ) -> _ChannelHour:
        cfg = self.config
        end = hour_ts + HOUR_S
        values, flags = self.store.minute_arrays(station, channel, hour_ts, end)
        res = aggregate.hourly(
            values, flags, self._counting_table(rules), rules.min_minutes_per_hour
        )
        n_valid = int(res.n_valid[0])
        code = int(res.reason[0])
        valid = code == aggregate.VALID
        counts = np.bincount(flags, minlength=256)
        minutes = {chr(c): int(counts[c]) for c in np.flatnonzero(counts) if c != 0}
        if counts[0]:
            minutes["none"] = int(counts[0])
        if valid:
            t_used = bool(np.any((flags == ord("T")) & np.isfinite(values))) and rules.counts("T")
            flag: str | None = "T" if t_used else "N"
            reason: str | None = None
        else:
            reason = hour_reason(code, n_valid)
            flag = None if code == aggregate.NO_DATA else chr(code)
        units = self.conn.execute(
            "SELECT unit, COUNT(*) FROM minutes WHERE station = ? AND channel = ?"
            " AND ts >= ? AND ts < ? GROUP BY unit ORDER BY 2 DESC, 1",
            (station, channel, hour_ts, end),
        ).fetchall()
        if len(units) > 1:
            self.counters.inc("mixed_units")
        raw_unit = str(units[0][0]) if units else self._last_unit(station, channel, hour_ts)
        pollutant = cfg.pollutant(channel)
        std = standard_unit(pollutant)
        factor = 1.0 if std is None else unit_factor(pollutant, raw_unit, std)
        unit_ok = factor is not None
        if factor is None:
            self.counters.inc("unit_unconvertible")
            factor, unit = 1.0, raw_unit
        else:
            unit = std if std is not None else raw_unit
        mean = _finite(float(res.mean[0]) * factor) if valid else None
        partial = _finite(float(res.partial[0]) * factor)
        max_single: float | None = None
        if n_valid:
            counted = sorted(rules.counted_flags)
            marks = ",".join("?" * len(counted))
            top = self.conn.execute(
                "SELECT MAX(COALESCE(max, mean)) FROM minutes WHERE station = ? AND channel = ?"
                f" AND ts >= ? AND ts < ? AND flag IN ({marks})",
                (station, channel, hour_ts, end, *counted),
            ).fetchone()[0]
            max_single = None if top is None else _finite(float(top) * factor)
        hour = _ChannelHour(
            channel,
            pollutant,
            unit,
            unit_ok,
            mean,
            partial,
            n_valid,
            valid,
            reason,
            flag,
            minutes,
            max_single,
        )
        if pollutant == "o3" and unit_ok:
            self._o3_ma8(station, hour_ts, hour, rules)
        return hour

    def _last_unit(self, station: str, channel: str, before: int) -> str:
        row = self.conn.execute(
            "SELECT unit FROM minutes WHERE station = ? AND channel = ? AND ts < ?"
            " ORDER BY ts DESC LIMIT 1",
            (station, channel, before),
        ).fetchone()
        if row is None:
            row = self.conn.execute(
                "SELECT unit FROM minutes WHERE station = ? AND channel = ? ORDER BY ts LIMIT 1",
                (station, channel),
            ).fetchone()
        return str(row[0]) if row is not None else ""

    def _o3_ma8(self, station: str, hour_ts: int, hour: _ChannelHour, rules: RuleSet) -> None:
        """8-hour moving mean ending with this hour (hours h-7 .. h, ≥ 6 valid)."""
        rows = self.conn.execute(
            "SELECT hour_ts, mean, valid FROM hours WHERE station = ? AND channel = ?"
            " AND hour_ts >= ? AND hour_ts < ?",
            (station, hour.channel, hour_ts - 7 * HOUR_S, hour_ts),
        ).fetchall()
        values = np.full(8, np.nan)
        valid = np.zeros(8, dtype=np.uint8)
        for ts, mean, ok in rows:
            i = (int(ts) - (hour_ts - 7 * HOUR_S)) // HOUR_S
            if ok and mean is not None:
                values[i], valid[i] = float(mean), 1
        if hour.valid and hour.mean is not None:
            values[7], valid[7] = hour.mean, 1
        res = aggregate.rolling_mean(values, valid, 8, rules.min_hours_per_8h)
        hour.ma8 = _finite(float(res.mean[7]))
        hour.ma8_n_valid = int(res.n_valid[7])
        hour.ma8_valid = hour.ma8 is not None

    def _hourly_aqi(
        self,
        station: str,
        hour_ts: int,
        hours: Sequence[_ChannelHour],
        rules: RuleSet,
        generation: str | None,
    ) -> dict[str, Any] | None:
        if generation is None:
            return None
        concentrations: dict[str, float | None] = {}
        by_indicator: dict[str, _ChannelHour] = {}
        for h in hours:  # channels in name order: the first channel of a pollutant wins
            indicator = _AQI_HOURLY.get(h.pollutant or "")
            if indicator is None or indicator in concentrations or not h.unit_ok:
                continue
            concentrations[indicator] = h.mean if h.mean is None or h.mean >= 0 else None
            by_indicator[indicator] = h
            if h.pollutant == "o3":
                ma8 = h.ma8 if h.ma8 is None or h.ma8 >= 0 else None
                concentrations["o3_8h"] = ma8
        if not concentrations:
            return None
        so2_24h = None
        so2 = by_indicator.get("so2_1h")
        if so2 is not None:
            so2_24h = self._so2_24h(station, so2.channel, hour_ts, so2, rules)
        try:
            result = hourly_aqi(generation, concentrations, so2_24h=so2_24h)
        except StandardsError as error:
            self.counters.inc("aqi.errors")
            log_event(self.log, 30, "hourly_aqi_failed", station=station, error=str(error))
            return None
        for indicator, h in by_indicator.items():
            r = result.iaqi_of(indicator)
            h.iaqi = None if r is None else r.iaqi
        return aqi_json(result)

    def _so2_24h(
        self, station: str, channel: str, hour_ts: int, so2: _ChannelHour, rules: RuleSet
    ) -> float | None:
        """SO2 mean of the valid hours of the last 24 (HJ 633-2012: SO2 1 h > 800)."""
        rows = self.conn.execute(
            "SELECT mean FROM hours WHERE station = ? AND channel = ? AND hour_ts >= ?"
            " AND hour_ts < ? AND valid = 1",
            (station, channel, hour_ts - 23 * HOUR_S, hour_ts),
        ).fetchall()
        means = [float(r[0]) for r in rows if r[0] is not None]
        if so2.mean is not None:
            means.append(so2.mean)
        if len(means) < rules.min_hours_per_day:
            return None
        return _finite(math.fsum(means) / len(means))

    def _hour_evaluations(
        self, station: str, h: _ChannelHour, hour_ts: int, label: str, limits: LimitSet
    ) -> list[alarms.Evaluation]:
        out: list[alarms.Evaluation] = []
        if not h.unit_ok:
            return out
        p = h.pollutant
        if h.valid and h.mean is not None and p is not None and (p, "1h") in limits.limits:
            limit = limits.limit(p, "1h")
            out.append(
                alarms.Evaluation(
                    h.channel,
                    p,
                    f"limit:{p}/1h",
                    "1h",
                    "hour",
                    hour_ts,
                    label,
                    h.mean,
                    float(limit.value),
                    h.unit,
                    limits.name,
                    _exceeds(limits, p, "1h", h.mean),
                )
            )
        for t in self.config.thresholds_for(station, h.channel):
            value = h.mean if t.averaging == "1h" else h.max_single
            ev = self._threshold_evaluation(h, t, value, hour_ts, label)
            if ev is not None:
                out.append(ev)
        return out

    def _threshold_evaluation(
        self, h: _ChannelHour, t: SiteThreshold, value: float | None, ts: int, label: str
    ) -> alarms.Evaluation | None:
        if value is None or (t.averaging == "1h" and not h.valid):
            return None
        factor = unit_factor(h.pollutant, h.unit, t.unit)
        if factor is None:
            self.counters.inc("threshold.unit_mismatch")
            return None
        v = value * factor
        return alarms.Evaluation(
            h.channel,
            h.pollutant,
            f"site:{t.name}",
            t.averaging,
            "hour",
            ts,
            label,
            v,
            float(t.value),
            normalise_unit(t.unit),
            t.source,
            v >= 0 and t.exceeded_by(v),
            t.confirmed,
        )

    def _hour_channel_doc(self, h: _ChannelHour) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "pollutant": h.pollutant,
            "unit": h.unit,
            "mean": h.mean,
            "partial_mean": h.partial,
            "n_valid": h.n_valid,
            "n_expected": MINUTES_PER_HOUR,
            "valid": h.valid,
            "reason": h.reason,
            "flag": h.flag,
            "minutes": h.minutes,
            "max_single": h.max_single,
            "exceedances": h.exceedances or [],
            "iaqi": h.iaqi,
        }
        if not h.unit_ok:
            doc["unit_problem"] = UNIT_UNCONVERTIBLE
        if h.ma8_n_valid is not None:
            doc["ma8"] = {
                "mean": h.ma8,
                "n_valid": h.ma8_n_valid,
                "n_expected": 8,
                "valid": bool(h.ma8_valid),
                "reason": None if h.ma8_valid else INSUFFICIENT_8H_HOURS,
            }
        return doc

    def _insert_hour(self, station: str, hour_ts: int, h: _ChannelHour) -> None:
        self.conn.execute(
            "INSERT INTO hours (station, channel, hour_ts, pollutant, unit, mean, partial_mean,"
            " n_valid, n_expected, valid, reason, flag, max_single, ma8, ma8_n_valid, ma8_valid,"
            " iaqi, exceedances) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                station,
                h.channel,
                hour_ts,
                h.pollutant,
                h.unit,
                h.mean,
                h.partial,
                h.n_valid,
                MINUTES_PER_HOUR,
                int(h.valid),
                h.reason,
                h.flag,
                h.max_single,
                h.ma8,
                h.ma8_n_valid,
                None if h.ma8_valid is None else int(h.ma8_valid),
                h.iaqi,
                json.dumps(h.exceedances or [], ensure_ascii=False),
            ),
        )

    def _observe(self, station: str, evaluations: Iterable[alarms.Evaluation], now: float) -> int:
        enqueued = 0
        topic = self.config.topic("alarm", station)
        for ev in evaluations:
            event = alarms.observe(self.conn, station, ev)
            if event is None:
                continue
            payload = dumps(alarms.alarm_payload(station, event))
            if outbox.enqueue(
                self.conn, "alarm", station, alarms.outbox_period(event), topic, payload, now=now
            ):
                enqueued += 1
                self.counters.inc(f"alarms.{event.event}")
                log_event(
                    self.log,
                    20,
                    "alarm",
                    station=station,
                    alarm_event=event.event,
                    channel=ev.channel,
                    rule=ev.rule,
                    period=ev.period_label,
                    value=ev.value,
                    limit=ev.limit,
                )
        return enqueued

    # ------------------------------------------------------------ day
    def _close_day(
        self,
        station: str,
        day: date,
        rules: RuleSet,
        limits: LimitSet,
        generation: str | None,
        now: float,
    ) -> int:
        cfg = self.config
        d0 = day_start(day, cfg.utc_offset_s)
        label = day.isoformat()
        rows = self.conn.execute(
            "SELECT channel, hour_ts, pollutant, unit, mean, valid, reason, ma8, ma8_valid"
            " FROM hours WHERE station = ? AND hour_ts >= ? AND hour_ts < ? ORDER BY channel",
            (station, d0, d0 + DAY_S),
        ).fetchall()
        by_channel: dict[str, list[tuple[Any, ...]]] = {}
        for r in rows:
            by_channel.setdefault(str(r[0]), []).append(r)
        channel_docs: dict[str, dict[str, Any]] = {}
        evaluations: list[alarms.Evaluation] = []
        daily_conc: dict[str, float | None] = {}
        iaqi_channel: dict[str, str] = {}
        for channel, hrs in by_channel.items():
            doc, evs, conc = self._channel_day(station, channel, hrs, d0, label, rules, limits)
            channel_docs[channel] = doc
            evaluations.extend(evs)
            for indicator, value in conc.items():
                if indicator not in daily_conc:
                    daily_conc[indicator] = value
                    iaqi_channel[indicator] = channel
        aqi_doc: dict[str, Any] | None = None
        good_day: bool | None = None
        if generation is not None and daily_conc:
            try:
                result = daily_aqi(generation, daily_conc)
            except StandardsError as error:
                self.counters.inc("aqi.errors")
                log_event(self.log, 30, "daily_aqi_failed", station=station, error=str(error))
            else:
                aqi_doc = aqi_json(result)
                good_day = result.good_day
                for indicator, channel in iaqi_channel.items():
                    r = result.iaqi_of(indicator)
                    if r is not None and indicator != "o3_1h":
                        channel_docs[channel]["iaqi"] = r.iaqi
                        self.conn.execute(
                            "UPDATE days SET iaqi = ? WHERE station = ? AND channel = ?"
                            " AND day = ?",
                            (r.iaqi, station, channel, label),
                        )
        self.conn.execute(
            "INSERT INTO day_reports (station, day, day_start_ts, ruleset, limit_set, aqi,"
            " aqi_published, good_day, aqi_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                station,
                label,
                d0,
                rules.name,
                limits.name,
                None if aqi_doc is None else aqi_doc["aqi"],
                int(bool(aqi_doc and aqi_doc["published"])),
                None if good_day is None else int(good_day),
                None if aqi_doc is None else json.dumps(aqi_doc, ensure_ascii=False),
            ),
        )
        good_days_ytd = self._good_days_ytd(station, day)
        payload = {
            "v": 1,
            "type": "day",
            "station": station,
            "day": label,
            "day_start_ts": d0,
            "utc_offset": _offset_text(cfg.utc_offset_s),
            "ruleset": rules.name,
            "limit_set": limits.name,
            "channels": channel_docs,
            "aqi": aqi_doc,
            "good_day": good_day,
            "good_days_ytd": good_days_ytd,
            "warning": self._warning(station, day) if generation is not None else None,
        }
        enqueued = 0
        if outbox.enqueue(
            self.conn,
            "day",
            station,
            label,
            cfg.topic("result", "day", station),
            dumps(payload),
            now=now,
        ):
            enqueued += 1
        enqueued += self._observe(station, evaluations, now)
        enqueued += self._plan(station, day, good_days_ytd, now)
        self.counters.inc("days_closed")
        log_event(
            self.log,
            20,
            "day_closed",
            station=station,
            day=label,
            aqi=None if aqi_doc is None else aqi_doc["aqi"],
        )
        return enqueued

    def _channel_day(
        self,
        station: str,
        channel: str,
        hrs: Sequence[tuple[Any, ...]],
        d0: int,
        label: str,
        rules: RuleSet,
        limits: LimitSet,
    ) -> tuple[dict[str, Any], list[alarms.Evaluation], dict[str, float | None]]:
        means = np.full(HOURS_PER_DAY, np.nan)
        valid = np.zeros(HOURS_PER_DAY, dtype=np.uint8)
        ma8 = np.full(HOURS_PER_DAY, np.nan)
        ma8_valid = np.zeros(HOURS_PER_DAY, dtype=np.uint8)
        reasons: Counter[str] = Counter()
        units: Counter[str] = Counter()
        pollutant: str | None = None
        for _, hour_ts, pol, unit, mean, ok, reason, m8, m8_ok in hrs:
            i = (int(hour_ts) - d0) // HOUR_S
            pollutant = pol if pol is not None else pollutant
            units[str(unit)] += 1
            if ok and mean is not None:
                means[i], valid[i] = float(mean), 1
            elif reason is not None:
                reasons[str(reason)] += 1
            if m8_ok and m8 is not None:
                ma8[i], ma8_valid[i] = float(m8), 1
        reasons["no_data"] += HOURS_PER_DAY - len(hrs)
        if reasons["no_data"] == 0:
            del reasons["no_data"]
        unit = units.most_common(1)[0][0]
        unit_ok = pollutant is None or normalise_unit(unit) == standard_unit(pollutant)
        res = aggregate.daily(means, valid, rules.min_hours_per_day)
        n_valid = int(res.n_valid[0])
        mean = _finite(float(res.mean[0]))
        day_valid = mean is not None
        doc: dict[str, Any] = {
            "pollutant": pollutant,
            "unit": unit,
            "mean": mean,
            "partial_mean": _finite(float(res.partial[0])),
            "n_valid": n_valid,
            "n_expected": HOURS_PER_DAY,
            "valid": day_valid,
            "reason": None if day_valid else INSUFFICIENT_HOURS,
            "hour_reasons": dict(sorted(reasons.items())),
            "iaqi": None,
            "exceedances": [],
        }
        evaluations: list[alarms.Evaluation] = []
        conc: dict[str, float | None] = {}
        max_1h = max_8h = None
        max_8h_n: int | None = None
        max_8h_valid: bool | None = None
        max_8h_reason: str | None = None
        if pollutant is not None and unit_ok:
            if (pollutant, "24h") in limits.limits and day_valid and mean is not None:
                lim = limits.limit(pollutant, "24h")
                evaluations.append(
                    alarms.Evaluation(
                        channel,
                        pollutant,
                        f"limit:{pollutant}/24h",
                        "24h",
                        "day",
                        d0,
                        label,
                        mean,
                        float(lim.value),
                        unit,
                        limits.name,
                        _exceeds(limits, pollutant, "24h", mean),
                    )
                )
            if pollutant in _AQI_DAILY:
                conc[_AQI_DAILY[pollutant]] = mean if mean is None or mean >= 0 else None
            if pollutant == "o3":
                if n_valid >= rules.min_hours_per_day:
                    max_1h = float(np.nanmax(np.where(valid == 1, means, np.nan)))
                limit = float(limits.limit("o3", "daily_max_8h").value)
                res8 = aggregate.daily_max_8h(
                    ma8,
                    ma8_valid,
                    rules.o3_8h_first_window_end,
                    24,
                    rules.min_o3_8h_windows,
                    limit if rules.o3_exceedance_exception else math.inf,
                )
                code = int(res8.valid[0])
                max_8h = _finite(float(res8.max[0]))
                max_8h_n = int(res8.n_valid[0])
                max_8h_valid = code != aggregate.MAX8H_INVALID
                max_8h_reason = {
                    aggregate.MAX8H_VALID: None,
                    aggregate.MAX8H_EXCEEDANCE: EXCEEDANCE_EXCEPTION,
                }.get(code, INSUFFICIENT_WINDOWS)
                doc["max_1h"] = max_1h
                doc["max_8h"] = {
                    "value": max_8h,
                    "n_valid": max_8h_n,
                    "n_expected": rules.o3_8h_windows_per_day,
                    "valid": max_8h_valid,
                    "reason": max_8h_reason,
                }
                conc["o3_1h"] = max_1h if max_1h is None or max_1h >= 0 else None
                conc["o3_8h"] = max_8h if max_8h is None or max_8h >= 0 else None
                if max_8h is not None:
                    evaluations.append(
                        alarms.Evaluation(
                            channel,
                            "o3",
                            "limit:o3/daily_max_8h",
                            "daily_max_8h",
                            "day",
                            d0,
                            label,
                            max_8h,
                            limit,
                            unit,
                            limits.name,
                            _exceeds(limits, "o3", "daily_max_8h", max_8h),
                        )
                    )
        elif pollutant is not None:
            doc["unit_problem"] = UNIT_UNCONVERTIBLE
        doc["exceedances"] = [_exceedance_doc(e) for e in evaluations]
        self.conn.execute(
            "INSERT INTO days (station, channel, day, day_start_ts, pollutant, unit, mean,"
            " partial_mean, n_valid, n_expected, valid, reason, max_1h, max_8h, max_8h_n_valid,"
            " max_8h_valid, max_8h_reason, iaqi, exceedances)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                station,
                channel,
                label,
                d0,
                pollutant,
                unit,
                mean,
                doc["partial_mean"],
                n_valid,
                HOURS_PER_DAY,
                int(day_valid),
                doc["reason"],
                max_1h,
                max_8h,
                max_8h_n,
                None if max_8h_valid is None else int(max_8h_valid),
                max_8h_reason,
                None,
                json.dumps(doc["exceedances"], ensure_ascii=False),
            ),
        )
        return doc, evaluations, conc

    def _good_days_ytd(self, station: str, day: date) -> int:
        row = self.conn.execute(
            "SELECT COUNT(*) FROM day_reports WHERE station = ? AND day >= ? AND day <= ?"
            " AND good_day = 1",
            (station, f"{day.year:04d}-01-01", day.isoformat()),
        ).fetchone()
        return int(row[0])

    def _warning(self, station: str, day: date) -> dict[str, Any]:
        n = self.config.rules.warning_days
        first = day - timedelta(days=n - 1)
        rows = dict(
            self.conn.execute(
                "SELECT day, aqi FROM day_reports WHERE station = ? AND day >= ? AND day <= ?"
                " AND aqi_published = 1",
                (station, first.isoformat(), day.isoformat()),
            ).fetchall()
        )
        aqis: list[int | None] = []
        for i in range(n):
            value = rows.get((first + timedelta(days=i)).isoformat())
            aqis.append(None if value is None else int(value))
        result = warning_level(aqis)
        ongoing = (
            result.start is not None and result.days is not None and result.start + result.days == n
        )
        return {
            "level": None if result.level is None else result.level.colour,
            "window_days": n,
            "episode_days": result.days,
            "severe_days": result.severe_days,
            "episode_ongoing": ongoing,
            "emission_cut_percent": result.emission_cut_percent,
        }

    # ------------------------------------------------------------ plan
    def _plan(self, station: str, day: date, good_days_ytd: int, now: float) -> int:
        doc = plan_progress(self.conn, self.config, station, day, good_days_ytd=good_days_ytd)
        if doc is None:
            return 0
        if outbox.enqueue(
            self.conn,
            "plan",
            station,
            day.isoformat(),
            self.config.topic("result", "plan", station),
            dumps(doc),
            now=now,
        ):
            return 1
        return 0


def _exceeds(limits: LimitSet, pollutant: str, averaging: str, value: float) -> bool:
    """GB 3095 exceedance of a reported (rounded) value; a negative value never exceeds."""
    return value >= 0 and exceeds(limits, pollutant, averaging, value, reported=True)


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the engine's, the outbox's and the alarms' tables (idempotent)."""
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.executescript(RESULTS_SCHEMA)
    outbox.ensure_schema(conn)
    alarms.ensure_schema(conn)


# ---------------------------------------------------------------- on-demand statistics


def _channel_for(conn: sqlite3.Connection, station: str, pollutant: str) -> str | None:
    row = conn.execute(
        "SELECT channel FROM days WHERE station = ? AND pollutant = ? ORDER BY channel LIMIT 1",
        (station, pollutant),
    ).fetchone()
    return None if row is None else str(row[0])


def _daily_values(
    conn: sqlite3.Connection, station: str, channel: str, first: date, last: date
) -> list[tuple[str, float]]:
    """(day, value) of the valid days in ``first..last``: the daily mean, or for O3 the
    daily maximum 8-h mean."""
    rows = conn.execute(
        "SELECT day, pollutant, mean, valid, max_8h, max_8h_valid FROM days"
        " WHERE station = ? AND channel = ? AND day >= ? AND day <= ? ORDER BY day",
        (station, channel, first.isoformat(), last.isoformat()),
    ).fetchall()
    out: list[tuple[str, float]] = []
    for day, pol, mean, ok, m8, m8_ok in rows:
        if pol == "o3":
            if m8_ok and m8 is not None:
                out.append((str(day), float(m8)))
        elif ok and mean is not None:
            out.append((str(day), float(mean)))
    return out


@dataclass(frozen=True, slots=True)
class PeriodStatistic:
    """A monthly or annual value of one channel (O3: of the daily maximum 8-h means).

    ``n_valid`` valid days of ``n_expected`` calendar days; ``reason`` when invalid.
    ``percentile_rank``/``percentile`` by HJ 663 (PM 95th, CO 95th, O3 90th; SO2/NO2
    98th UNCONFIRMED); ``mean`` is None where HJ 663 assesses no mean (CO, O3 annual).
    """

    station: str
    channel: str
    pollutant: str | None
    period: str
    mean: float | None
    n_valid: int
    n_expected: int
    valid: bool
    reason: str | None
    percentile_rank: int | None
    percentile: float | None
    percentile_confirmed: bool


def month_statistic(
    conn: sqlite3.Connection,
    config: GatewayConfig,
    station: str,
    channel: str,
    year: int,
    month: int,
) -> PeriodStatistic:
    """Monthly value: ≥ 27 valid days (≥ 25 in February) by the month's rule set."""
    first = date(year, month, 1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    rules = ruleset_for(config.rules.ruleset, first)
    values = [v for _, v in _daily_values(conn, station, channel, first, last)]
    verdict = month_valid(len(values), year, month, rules)
    pollutant = config.pollutant(channel)
    rank = 90 if pollutant == "o3" else None
    return PeriodStatistic(
        station=station,
        channel=channel,
        pollutant=pollutant,
        period=f"{year:04d}-{month:02d}",
        mean=_finite(math.fsum(values) / len(values)) if values and verdict.valid else None,
        n_valid=len(values),
        n_expected=last.day,
        valid=verdict.valid,
        reason=verdict.reason,
        percentile_rank=rank,
        percentile=percentile(values, rank)
        if rank is not None and values and verdict.valid
        else None,
        percentile_confirmed=rank is not None,
    )


def year_statistic(
    conn: sqlite3.Connection, config: GatewayConfig, station: str, channel: str, year: int
) -> PeriodStatistic:
    """Annual value: ≥ 324 valid days and every month's minimum (by the year's rule set),
    with the HJ 663 annual assessment statistics of the pollutant."""
    first, last = date(year, 1, 1), date(year, 12, 31)
    rules = ruleset_for(config.rules.ruleset, last)
    days = _daily_values(conn, station, channel, first, last)
    per_month = [0] * 12
    for day, _ in days:
        per_month[int(day[5:7]) - 1] += 1
    verdict = year_valid(per_month, year, rules)
    values = [v for _, v in days]
    pollutant = config.pollutant(channel)
    mean = rank = pct = None
    confirmed = False
    if values and verdict.valid:
        if pollutant is not None and pollutant in ("so2", "no2", "co", "o3", "pm10", "pm25", "nox"):
            stats = annual_statistics(pollutant, values)
            mean, rank, pct = stats.mean, stats.percentile_rank, stats.percentile_value
            confirmed = stats.percentile_confirmed
        else:
            mean = _finite(math.fsum(values) / len(values))
    return PeriodStatistic(
        station=station,
        channel=channel,
        pollutant=pollutant,
        period=f"{year:04d}",
        mean=mean,
        n_valid=len(values),
        n_expected=(last - first).days + 1,
        valid=verdict.valid,
        reason=verdict.reason,
        percentile_rank=rank,
        percentile=pct,
        percentile_confirmed=confirmed,
    )


def plan_progress(
    conn: sqlite3.Connection,
    config: GatewayConfig,
    station: str,
    day: date,
    *,
    good_days_ytd: int | None = None,
) -> dict[str, Any] | None:
    """Year-to-date progress of ``station`` against the plan after local ``day``
    (docs/schemas/plan-result.schema.json), or None when the plan has no target for the
    year or the station has no valid PM2.5/PM10 day this year."""
    plan = config.plan
    if plan is None:
        return None
    try:
        target = plan.target(day.year)
    except NoTargetError:
        return None
    first = date(day.year, 1, 1)
    means: dict[str, tuple[float, int]] = {}
    for pollutant in ("pm25", "pm10"):
        channel = _channel_for(conn, station, pollutant)
        if channel is None:
            return None
        values = [v for _, v in _daily_values(conn, station, channel, first, day)]
        if not values:
            return None
        means[pollutant] = (_finite(math.fsum(values) / len(values)) or 0.0, len(values))
    if good_days_ytd is None:
        good_days_ytd = int(
            conn.execute(
                "SELECT COUNT(*) FROM day_reports WHERE station = ? AND day >= ? AND day <= ?"
                " AND good_day = 1",
                (station, first.isoformat(), day.isoformat()),
            ).fetchone()[0]
        )
    days_elapsed = (day - first).days + 1
    p = progress(
        day.year, means["pm25"][0], means["pm10"][0], good_days_ytd, days_elapsed, plan=plan
    )
    return {
        "v": 1,
        "type": "plan",
        "station": station,
        "day": day.isoformat(),
        "year": day.year,
        "plan": plan.name,
        "days_elapsed": p.days_elapsed,
        "days_in_year": p.days_in_year,
        "pm25": {
            "ytd_mean": means["pm25"][0],
            "n_days": means["pm25"][1],
            "target": float(target.pm25_annual_max),
            "margin": float(p.pm25_margin),
            "on_track": p.pm25_on_track,
        },
        "pm10": {
            "ytd_mean": means["pm10"][0],
            "n_days": means["pm10"][1],
            "target": float(target.pm10_annual_max),
            "margin": float(p.pm10_margin),
            "on_track": p.pm10_on_track,
        },
        "good_days": {
            "ytd": p.good_days_ytd,
            "target": target.good_days_min,
            "projected": p.good_days_projected,
            "needed": p.good_days_needed,
            "secured": p.good_days_secured,
            "attainable": p.good_days_attainable,
            "on_track": p.good_days_on_track,
        },
        "on_track": p.on_track,
    }
