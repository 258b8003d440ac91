"""The results engine on a synthetic day of three stations written into the real store.

Expected values are worked out by hand in the comments (spec/standards.md §2, §3).

* ``town-a`` (pm25, pm10, no2, so2, co, o3; full hours): pm25 = 40 + h, pm10 80, no2 30,
  so2 10, co 0.8 mg/m³; O3 50 for hours 0-11, 220 for 12-15 (> the 200 1-h limit of
  grade II), 60 for 16-23.
* ``town-b`` (pm25 = 30): the minute boundaries. Hour 0: 45 minutes (valid); hour 1: 44
  (insufficient_minutes); hour 2: 30 N + 30 M (maintenance); hour 3: nothing (no_data);
  hour 4: 50 N + 10 T (valid, flag T); hour 5: 60 C (calibration). 20 valid hours: the
  day is valid.
* ``site-c`` (pm10, construction-dust threshold 150): 100, except 200 in hours 10-11;
  silent from 19:00, so hours 19-23 close on the wall clock with no_data: 19 valid hours,
  the day is invalid (insufficient_hours).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gateway import results
from gateway.config import GatewayConfig
from gateway.outbox import pending
from gateway.results import ResultsEngine, unit_factor
from gateway.store import Store
from tests.gateway.gwhelpers import (
    D0,
    DAY,
    SCHEMAS,
    UTC8,
    Minute,
    MinuteWriter,
    constant_hours,
    make_config,
)

GRACE = 600


def o3_value(h: int) -> float:
    return 50.0 if h < 12 else 220.0 if h < 16 else 60.0


def write_day(store: Store) -> None:
    w = MinuteWriter(store)
    received = float(D0)  # long ago: every station is silent for the wall clock
    w.write(
        "town-a",
        constant_hours(
            D0,
            range(24),
            {
                "pm25": lambda h: 40.0 + h,
                "pm10": lambda h: 80.0,
                "no2": lambda h: 30.0,
                "so2": lambda h: 10.0,
                "co": lambda h: 0.8,
                "o3": o3_value,
            },
        ),
        received,
    )
    b: list[tuple[int, dict[str, Minute]]] = []
    for h in range(24):
        for m in range(60):
            ts = D0 + h * 3600 + m * 60
            if h == 0:
                ch = {"pm25": (30.0, "N")} if m < 45 else {}
            elif h == 1:
                ch = {"pm25": (30.0, "N")} if m < 44 else {}
            elif h == 2:
                ch = {"pm25": (30.0, "N" if m < 30 else "M")}
            elif h == 3:
                ch = {}
            elif h == 4:
                ch = {"pm25": (30.0, "N" if m < 50 else "T")}
            elif h == 5:
                ch = {"pm25": (30.0, "C")}
            else:
                ch = {"pm25": (30.0, "N")}
            b.append((ts, ch))
    w.write("town-b", b, received)
    w.write(
        "site-c",
        constant_hours(D0, range(19), {"pm10": lambda h: 200.0 if h in (10, 11) else 100.0}),
        received,
    )


def site_config(tmp: Path, **rules: Any) -> GatewayConfig:
    return make_config(
        tmp,
        gateway={"grace_s": GRACE},
        rules=rules or {},
        thresholds=[
            {"station": "site-c", "channel": "pm10", "builtin": "construction_dust_pm10_1h"}
        ],
    )


@pytest.fixture
def day_db(tmp_path: Path) -> Iterator[tuple[Store, ResultsEngine]]:
    cfg = site_config(tmp_path)
    store = Store(cfg.db_path)
    write_day(store)
    engine = ResultsEngine(store, cfg)
    # the last hour closes on the wall clock, grace after its end
    engine.step(now=D0 + 86400 + GRACE + 1)
    yield store, engine
    store.close()


def outbox_docs(conn: sqlite3.Connection) -> list[tuple[str, str, dict[str, Any]]]:
    return [(r.kind, r.period, json.loads(r.payload)) for r in pending(conn, 0, 10_000)]


def hour_doc(conn: sqlite3.Connection, station: str, h: int) -> dict[str, Any]:
    for kind, period, doc in outbox_docs(conn):
        if kind == "hour" and doc["station"] == station and period == str(D0 + h * 3600):
            return doc
    raise AssertionError(f"no hour {h} for {station}")


def day_doc(conn: sqlite3.Connection, station: str) -> dict[str, Any]:
    for kind, _, doc in outbox_docs(conn):
        if kind == "day" and doc["station"] == station:
            return doc
    raise AssertionError(f"no day for {station}")


def validate(doc: dict[str, Any], schema: str) -> None:
    jsonschema.validate(doc, json.loads((SCHEMAS / schema).read_text(encoding="utf-8")))


# ---------------------------------------------------------------- hours


def test_every_hour_of_every_station_closes_once_in_order(day_db: tuple[Store, ResultsEngine]):
    store, engine = day_db
    docs = outbox_docs(store.conn)
    kinds = [k for k, _, _ in docs]
    assert kinds.count("hour") == 72 and kinds.count("day") == 3
    for station in ("site-c", "town-a", "town-b"):
        hours = [int(p) for k, p, d in docs if k == "hour" and d["station"] == station]
        assert hours == [D0 + h * 3600 for h in range(24)]  # in order, each once
    closed_by = {(d["station"], d["hour_ts"]): d["closed_by"] for k, _, d in docs if k == "hour"}
    assert closed_by[("town-a", D0 + 22 * 3600)] == "watermark"
    assert closed_by[("town-a", D0 + 23 * 3600)] == "wall_clock"  # no later minute
    assert closed_by[("site-c", D0 + 18 * 3600)] == "wall_clock"
    assert closed_by[("site-c", D0 + 17 * 3600)] == "watermark"
    # running again, or a new engine on the same database, adds nothing
    assert engine.step(now=D0 + 86400 + GRACE + 1) == 0
    assert ResultsEngine(store, engine.config).step(now=D0 + 86400 + GRACE + 1) == 0
    assert engine.close_hour("town-a", D0, "watermark", D0 + 10**6) == 0
    assert len(outbox_docs(store.conn)) == len(docs)


def test_hourly_means_and_aqi_of_a_full_station(day_db: tuple[Store, ResultsEngine]):
    store, _ = day_db
    h0 = hour_doc(store.conn, "town-a", 0)
    validate(h0, "hourly-result.schema.json")
    pm25 = h0["channels"]["pm25"]
    assert (pm25["mean"], pm25["n_valid"], pm25["n_expected"]) == (40.0, 60, 60)
    assert pm25["valid"] and pm25["reason"] is None and pm25["flag"] == "N"
    assert h0["channels"]["co"]["unit"] == "mg/m3"
    # HJ 633-2012 real-time: PM2.5 40 -> 50 + 50/40·5 = 56.25 -> 57; PM10 80 -> 65;
    # NO2 30 -> 15; SO2 10 -> 3.3 -> 4; CO 0.8 -> 8; O3 50 -> 15.6 -> 16; O3 8 h: one hour
    # of eight -> missing. AQI 65, level II, primary PM10.
    aqi = h0["aqi"]
    assert aqi["iaqi"] == {
        "so2_1h": 4,
        "no2_1h": 15,
        "pm10_1h": 65,
        "co_1h": 8,
        "o3_1h": 16,
        "pm25_1h": 57,
    }
    assert (aqi["aqi"], aqi["level"], aqi["category"]) == (65, "II", "Good")
    assert aqi["primary_pollutants"] == ["pm10_1h"] and aqi["missing"] == ["o3_8h"]
    assert h0["channels"]["o3"]["ma8"] == {
        "mean": None,
        "n_valid": 1,
        "n_expected": 8,
        "valid": False,
        "reason": "insufficient_8h_hours",
    }
    # 12:00: O3 220 -> 100 + 50/100·20 = 110 (level III, primary O3 1 h); O3 8 h over
    # 05..12 = (7·50 + 220)/8 = 71.25 -> 36; PM2.5 52 -> 71.25 -> 72.
    h12 = hour_doc(store.conn, "town-a", 12)
    assert h12["channels"]["o3"]["ma8"]["mean"] == 71.25
    assert h12["aqi"]["iaqi"]["o3_8h"] == 36 and h12["aqi"]["iaqi"]["pm25_1h"] == 72
    assert (h12["aqi"]["aqi"], h12["aqi"]["level"]) == (110, "III")
    assert h12["aqi"]["primary_pollutants"] == ["o3_1h"]
    o3 = h12["channels"]["o3"]
    assert o3["iaqi"] == 110
    assert [e for e in o3["exceedances"] if e["exceeds"]] == [
        {
            "rule": "limit:o3/1h",
            "averaging": "1h",
            "value": 220.0,
            "limit": 200.0,
            "unit": "ug/m3",
            "exceeds": True,
            "source": "GB3095-2012-II",
            "confirmed": True,
        }
    ]


def test_minute_validity_boundaries_and_reasons(day_db: tuple[Store, ResultsEngine]):
    store, _ = day_db
    expect = {
        0: (True, None, "N", 45),
        1: (False, "insufficient_minutes", None, 44),
        2: (False, "maintenance", "M", 30),
        3: (False, "no_data", None, 0),
        4: (True, None, "T", 60),
        5: (False, "calibration", "C", 0),
    }
    for h, (valid, reason, flag, n_valid) in expect.items():
        ch = hour_doc(store.conn, "town-b", h)["channels"]["pm25"]
        assert (ch["valid"], ch["reason"], ch["flag"], ch["n_valid"]) == (
            valid,
            reason,
            flag,
            n_valid,
        ), h
        assert ch["n_expected"] == 60
    h1 = hour_doc(store.conn, "town-b", 1)["channels"]["pm25"]
    assert h1["mean"] is None and h1["partial_mean"] == 30.0
    assert h1["minutes"] == {"N": 44, "none": 16}
    assert hour_doc(store.conn, "town-b", 2)["channels"]["pm25"]["minutes"] == {"M": 30, "N": 30}
    silent = hour_doc(store.conn, "site-c", 20)
    assert silent["closed_by"] == "wall_clock"
    assert silent["channels"]["pm10"]["reason"] == "no_data"
    assert silent["aqi"]["aqi"] is None and silent["aqi"]["missing"] == ["pm10_1h"]


# ---------------------------------------------------------------- days


def test_daily_means_validity_and_aqi(day_db: tuple[Store, ResultsEngine]):
    store, _ = day_db
    a = day_doc(store.conn, "town-a")
    validate(a, "daily-result.schema.json")
    assert a["day"] == "2019-06-15" and a["utc_offset"] == "+08:00"
    pm25 = a["channels"]["pm25"]
    assert (pm25["mean"], pm25["n_valid"], pm25["n_expected"], pm25["valid"]) == (
        51.5,
        24,
        24,
        True,
    )
    # O3: max 1 h 220; daily max 8 h = hours 12..19 = (4·220 + 4·60)/8 = 140, 17 windows
    o3 = a["channels"]["o3"]
    assert o3["max_1h"] == 220.0
    assert o3["max_8h"] == {
        "value": 140.0,
        "n_valid": 17,
        "n_expected": 17,
        "valid": True,
        "reason": None,
    }
    # Daily IAQI: PM2.5 51.5 -> 50 + 50/40·16.5 = 70.6 -> 71; PM10 80 -> 65; NO2 30 -> 37.5
    # -> 38; SO2 10 -> 10; CO 0.8 -> 20; O3 1 h 220 -> 110; O3 8 h 140 -> 83.3 -> 84
    assert a["aqi"]["iaqi"] == {
        "so2_24h": 10,
        "no2_24h": 38,
        "pm10_24h": 65,
        "co_24h": 20,
        "o3_1h": 110,
        "o3_8h": 84,
        "pm25_24h": 71,
    }
    assert (a["aqi"]["aqi"], a["aqi"]["primary_pollutants"]) == (110, ["o3_1h"])
    assert a["good_day"] is False and a["good_days_ytd"] == 0
    assert a["warning"]["level"] is None

    b = day_doc(store.conn, "town-b")
    assert (b["channels"]["pm25"]["n_valid"], b["channels"]["pm25"]["valid"]) == (20, True)
    assert b["channels"]["pm25"]["hour_reasons"] == {
        "calibration": 1,
        "insufficient_minutes": 1,
        "maintenance": 1,
        "no_data": 1,
    }
    # PM2.5 30 -> 50/35·30 = 42.9 -> 43: level I, no primary pollutant, a good day
    assert (b["aqi"]["aqi"], b["aqi"]["level"], b["aqi"]["primary_pollutants"]) == (43, "I", [])
    assert b["good_day"] is True and b["good_days_ytd"] == 1

    c = day_doc(store.conn, "site-c")
    pm10 = c["channels"]["pm10"]
    assert (pm10["n_valid"], pm10["valid"], pm10["reason"]) == (19, False, "insufficient_hours")
    assert pm10["mean"] is None and pm10["partial_mean"] == pytest.approx(2100 / 19)
    assert c["aqi"]["aqi"] is None and c["good_day"] is None


def test_alarm_raised_once_and_cleared_once(day_db: tuple[Store, ResultsEngine]):
    store, engine = day_db
    alarms = [d for k, _, d in outbox_docs(store.conn) if k == "alarm"]
    for a in alarms:
        validate(a, "alarm.schema.json")
    summary = [(a["station"], a["rule"], a["event"], a["period_label"]) for a in alarms]
    assert summary == [
        ("site-c", "site:construction_dust_pm10_1h", "start", "2019-06-15T10:00+08:00"),
        ("site-c", "site:construction_dust_pm10_1h", "clear", "2019-06-15T12:00+08:00"),
        ("town-a", "limit:o3/1h", "start", "2019-06-15T12:00+08:00"),
        ("town-a", "limit:o3/1h", "clear", "2019-06-15T16:00+08:00"),
    ]
    clear = alarms[3]
    assert (clear["episode_start_ts"], clear["n_exceeding"], clear["peak"]) == (
        D0 + 12 * 3600,
        4,
        220.0,
    )
    assert alarms[0]["confirmed"] is False  # the dust threshold is a placeholder
    # the state survives: a fresh engine raises nothing for the same periods
    assert ResultsEngine(store, engine.config).step(now=D0 + 86400 + GRACE + 1) == 0
    assert [d for k, _, d in outbox_docs(store.conn) if k == "alarm"] == alarms


def test_plan_progress_published_for_the_station_with_pm(day_db: tuple[Store, ResultsEngine]):
    store, _ = day_db
    plans = [d for k, _, d in outbox_docs(store.conn) if k == "plan"]
    assert [p["station"] for p in plans] == ["town-a"]  # the only one with PM2.5 and PM10
    p = plans[0]
    validate(p, "plan-result.schema.json")
    assert (p["year"], p["days_elapsed"]) == (2019, 166)  # 151 days to May 31, + 15
    assert p["pm25"] == {
        "ytd_mean": 51.5,
        "n_days": 1,
        "target": 52.0,
        "margin": 0.5,
        "on_track": True,
    }
    assert p["pm10"]["margin"] == 20.0 and p["good_days"]["ytd"] == 0
    assert p["good_days"]["needed"] == 230 and p["on_track"] is False


def test_outbox_order_puts_each_station_in_period_order(day_db: tuple[Store, ResultsEngine]):
    store, _ = day_db
    docs = outbox_docs(store.conn)
    town_a = [(k, p) for k, p, d in docs if d["station"] == "town-a"]
    assert town_a[-3:] == [
        ("hour", str(D0 + 23 * 3600)),
        ("day", "2019-06-15"),
        ("plan", "2019-06-15"),
    ]
    i_start = town_a.index(("alarm", f"o3|limit:o3/1h|start|{D0 + 12 * 3600}"))
    assert town_a[i_start - 1] == ("hour", str(D0 + 12 * 3600))


# ---------------------------------------------------------------- hour close


def test_grace_and_silence_decide_the_wall_clock_close(tmp_path: Path):
    cfg = make_config(tmp_path, gateway={"grace_s": 600})
    store = Store(cfg.db_path)
    try:
        w = MinuteWriter(store)
        # one full hour; the next hour has nothing yet
        end = D0 + 3600
        w.write("s1", constant_hours(D0, [0], {"pm25": lambda h: 10.0}), received_at=end)
        engine = ResultsEngine(store, cfg)
        assert engine.step(now=end + 600) == 0  # within the grace
        # the station is still sending (last_seen recent): the backfill is waited for
        w.write("s1", [(end - 60 * 61, {"pm25": (10.0, "N")})], received_at=end + 5000)
        assert engine.step(now=end + 5300) == 0
        # silent for longer than the grace: the hour closes on the wall clock
        assert engine.step(now=end + 5000 + 601) >= 1
        doc = json.loads(pending(store.conn)[0].payload)
        assert (doc["hour_ts"], doc["closed_by"]) == (D0, "wall_clock")
        # a minute of the next hour would have closed it on the watermark
        w.write("s2", constant_hours(D0, [0, 1], {"pm25": lambda h: 10.0}), received_at=end)
        assert engine.step(now=end + 1) == 1
    finally:
        store.close()


def test_auto_rules_use_hj633_2026_from_march_2026(tmp_path: Path):
    # 2026-06-01: PM2.5 60 µg/m³ is IAQI 100 by HJ 633-2026 (75 -> 60 breakpoint), 82 by 2012
    cfg = make_config(tmp_path, rules={"ruleset": "auto", "aqi": "auto", "limit_set": "auto-II"})
    store = Store(cfg.db_path)
    try:
        d0 = results.day_start(date(2026, 6, 1), UTC8)
        MinuteWriter(store).write(
            "s1", constant_hours(d0, [0, 1], {"pm25": lambda h: 60.0}), received_at=d0
        )
        ResultsEngine(store, cfg).step(now=d0)
        doc = json.loads(pending(store.conn)[0].payload)
        assert doc["ruleset"] == "GB3095-2026/HJ663-2026"
        assert doc["limit_set"] == "GB3095-2026-transitional-II"
        assert (doc["aqi"]["generation"], doc["aqi"]["aqi"]) == ("HJ633-2026", 100)
    finally:
        store.close()


def test_ppb_channels_are_converted_to_the_standard_unit():
    assert unit_factor("no2", "ppb", "ug/m3") == pytest.approx(1.880)
    assert unit_factor("co", "ppm", "mg/m3") == pytest.approx(1.145)
    assert unit_factor("so2", "ppm", "ug/m3") == pytest.approx(2619.0)
    assert unit_factor("pm25", "µg/m³", "ug/m3") == 1.0
    assert unit_factor("nmhc", "ug/m3", "mg/m3") == pytest.approx(0.001)
    assert unit_factor("pm25", "ppb", "ug/m3") is None
    assert unit_factor(None, "%", "ug/m3") is None


# ---------------------------------------------------------------- month, year


def _insert_days(conn: sqlite3.Connection, channel: str, days: list[date], value: float) -> None:
    for d in days:
        conn.execute(
            "INSERT INTO days (station, channel, day, day_start_ts, pollutant, unit, mean,"
            " n_valid, n_expected, valid, exceedances) VALUES (?, ?, ?, 0, ?, 'ug/m3', ?, 24,"
            " 24, 1, '[]')",
            ("s1", channel, d.isoformat(), channel, value),
        )


def test_month_validity_february_and_annual_percentiles(tmp_path: Path):
    cfg = make_config(tmp_path)
    store = Store(cfg.db_path)
    try:
        ResultsEngine(store, cfg)  # creates the tables
        feb = [date(2019, 2, d) for d in range(1, 25)]  # 24 valid days
        _insert_days(store.conn, "pm25", feb, 40.0)
        m = results.month_statistic(store.conn, cfg, "s1", "pm25", 2019, 2)
        assert (m.n_valid, m.n_expected, m.valid, m.reason) == (24, 28, False, "insufficient_days")
        _insert_days(store.conn, "pm25", [date(2019, 2, 25)], 40.0)
        m = results.month_statistic(store.conn, cfg, "s1", "pm25", 2019, 2)
        assert (m.n_valid, m.valid, m.mean) == (25, True, 40.0)
        y = results.year_statistic(store.conn, cfg, "s1", "pm25", 2019)
        assert not y.valid and y.reason is not None and y.reason.startswith("insufficient_days")
        # a full year of 1..365 µg/m³: mean 183, P95 by HJ 663: k = 1 + 364·0.95 = 346.8
        # -> 346 + 0.8 = 346.8
        conn = store.conn
        conn.execute("DELETE FROM days")
        for i in range(365):
            d = date(2019, 1, 1).toordinal() + i
            conn.execute(
                "INSERT INTO days (station, channel, day, day_start_ts, pollutant, unit, mean,"
                " n_valid, n_expected, valid, exceedances) VALUES ('s1', 'pm25', ?, 0, 'pm25',"
                " 'ug/m3', ?, 24, 24, 1, '[]')",
                (date.fromordinal(d).isoformat(), float(i + 1)),
            )
        y = results.year_statistic(store.conn, cfg, "s1", "pm25", 2019)
        assert (y.valid, y.n_valid, y.mean, y.percentile_rank) == (True, 365, 183.0, 95)
        assert y.percentile == pytest.approx(346.8)
    finally:
        store.close()


def test_day_of_the_plan_needs_a_target(tmp_path: Path, day_db: tuple[Store, ResultsEngine]):
    store, engine = day_db
    assert results.plan_progress(store.conn, engine.config, "town-a", date(2023, 1, 5)) is None
    doc = results.plan_progress(store.conn, engine.config, "town-a", DAY)
    assert doc is not None and doc["pm25"]["ytd_mean"] == 51.5
