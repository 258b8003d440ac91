"""``lantian report`` on a synthetic year of closed hours and days (2019, the plan's year).

The year is written straight into the results engine's tables (gateway/results.py
schema), with invalid hours of every kind (maintenance, communication failure, too few
minutes, hours with no row at all), exceedances, and real HJ 633 daily AQI. The report's
numbers are read back from its HTML (the ``data-key`` cells) and compared with the same
facts queried from the database, and with gateway.results' own statistics.
"""

from __future__ import annotations

import io
import json
import random
import re
import sqlite3
from collections import Counter
from datetime import date, timedelta
from html import unescape
from pathlib import Path

import pytest

from gateway import cli
from gateway.config import GatewayConfig, config_from_mapping
from gateway.report import MINUTES_PER_DAY, Progress, write_report
from gateway.results import (
    DAY_S,
    HOUR_S,
    aqi_json,
    day_start,
    ensure_schema,
    month_statistic,
    plan_progress,
)
from gateway.standards import daily_aqi

UTC8 = 8 * 3600
YEAR = 2019
STATION = "yb-town-01"
CHANNELS = {"no2": 40.0, "pm10": 80.0, "pm25": 45.0}
LIMIT_1H_NO2 = 200.0
LIMIT_24H_PM25 = 75.0


def synthetic_year(db: Path, station: str = STATION, seed: int = 7, days: int = 365) -> None:
    """A year of hours/days/day_reports as the engine writes them (deterministic)."""
    rnd = random.Random(seed)
    conn = sqlite3.connect(db)
    ensure_schema(conn)
    first = date(YEAR, 1, 1)
    with conn:
        for i in range(days):
            day = first + timedelta(days=i)
            d0 = day_start(day, UTC8)
            season = 1.6 if day.month in (1, 2, 12) else 1.0
            season *= rnd.choice((0.3, 0.5, 0.8, 1.0, 1.0, 1.3, 2.2, 3.5))  # the weather
            conc: dict[str, float | None] = {}
            for channel, base in CHANNELS.items():
                # a few days lose hours without any row (station off): 8 missing hours
                missing = set(range(8, 16)) if (i % 53 == 5 and channel == "pm10") else set()
                valid_means: list[float] = []
                for h in range(24):
                    if h in missing:
                        continue
                    ts = d0 + h * HOUR_S
                    mean = round(base * season * rnd.uniform(0.5, 1.5), 1)
                    if channel == "no2" and i % 40 == 3 and h in (17, 18):
                        mean = 230.0 + h  # evening NO2 peaks over the 1-h limit
                    n_valid, reason, flag = 60, None, "N"
                    if day.weekday() == 1 and h in (10, 11):
                        n_valid, reason, flag = 0, "maintenance", "M"
                    elif rnd.random() < 0.02:
                        n_valid, reason, flag = 0, "communication_failure", "B"
                    elif rnd.random() < 0.02:
                        n_valid, reason, flag = rnd.randint(1, 44), "insufficient_minutes", None
                    elif i % 97 == 50 and channel == "pm25":
                        n_valid, reason, flag = 0, "no_data", None  # a whole day lost
                    valid = reason is None
                    exc = []
                    if channel == "no2" and valid:
                        exc = [
                            {
                                "rule": "limit:no2/1h",
                                "averaging": "1h",
                                "value": mean,
                                "limit": LIMIT_1H_NO2,
                                "unit": "ug/m3",
                                "exceeds": mean > LIMIT_1H_NO2,
                                "source": "GB3095-2012-II",
                                "confirmed": True,
                            }
                        ]
                    if valid:
                        valid_means.append(mean)
                    conn.execute(
                        "INSERT INTO hours (station, channel, hour_ts, pollutant, unit, mean,"
                        " partial_mean, n_valid, n_expected, valid, reason, flag, max_single,"
                        " iaqi, exceedances) VALUES (?,?,?,?,?,?,?,?,60,?,?,?,?,NULL,?)",
                        (
                            station,
                            channel,
                            ts,
                            channel,
                            "ug/m3",
                            mean if valid else None,
                            mean if n_valid else None,
                            n_valid,
                            int(valid),
                            reason,
                            flag,
                            mean if n_valid else None,
                            json.dumps(exc),
                        ),
                    )
                n = len(valid_means)
                day_valid = n >= 20
                dmean = round(sum(valid_means) / n, 3) if day_valid else None
                conc[f"{channel}_24h"] = dmean
                dexc = []
                if channel == "pm25" and dmean is not None:
                    dexc = [
                        {
                            "rule": "limit:pm25/24h",
                            "averaging": "24h",
                            "value": dmean,
                            "limit": LIMIT_24H_PM25,
                            "unit": "ug/m3",
                            "exceeds": round(dmean) > LIMIT_24H_PM25,
                            "source": "GB3095-2012-II",
                            "confirmed": True,
                        }
                    ]
                conn.execute(
                    "INSERT INTO days (station, channel, day, day_start_ts, pollutant, unit,"
                    " mean, partial_mean, n_valid, n_expected, valid, reason, exceedances)"
                    " VALUES (?,?,?,?,?,?,?,?,?,24,?,?,?)",
                    (
                        station,
                        channel,
                        day.isoformat(),
                        d0,
                        channel,
                        "ug/m3",
                        dmean,
                        dmean,
                        n,
                        int(day_valid),
                        None if day_valid else "insufficient_hours",
                        json.dumps(dexc),
                    ),
                )
            result = daily_aqi("HJ633-2012", conc)
            doc = aqi_json(result)
            conn.execute(
                "INSERT INTO day_reports (station, day, day_start_ts, ruleset, limit_set, aqi,"
                " aqi_published, good_day, aqi_json) VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    station,
                    day.isoformat(),
                    d0,
                    "GB3095-2012/HJ663-2013",
                    "GB3095-2012-II",
                    doc["aqi"],
                    int(doc["published"]),
                    None if not doc["published"] else int(result.good_day or False),
                    json.dumps(doc, ensure_ascii=False),
                ),
            )
    conn.close()


def cells(html_text: str) -> dict[str, str]:
    """``data-key`` -> the cell's text."""
    out = {}
    for key, text in re.findall(r'data-key="([^"]+)"[^>]*>([^<]*)<', html_text):
        out[unescape(key)] = unescape(text)
    return out


@pytest.fixture(scope="module")
def year_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("year") / "gw.db"
    synthetic_year(db)
    return db


@pytest.fixture(scope="module")
def cfg(year_db: Path) -> GatewayConfig:
    return config_from_mapping({"gateway": {"id": "rep", "db": "gw.db"}}, base_dir=year_db.parent)


@pytest.fixture(scope="module")
def report(year_db: Path, cfg: GatewayConfig, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    return write_report(year_db, out, [STATION], "2019-01-01", "2019-12-31", cfg)


def test_files_are_written(report: Path) -> None:
    assert report.name == "index.html"
    text = report.read_text(encoding="utf-8")
    pngs = sorted(p.name for p in report.parent.glob("*.png"))
    assert pngs == [
        f"{STATION}-aqi-categories.png",
        f"{STATION}-aqi.png",
        f"{STATION}-capture.png",
        f"{STATION}-plan-{YEAR}.png",
    ]
    for name in pngs:
        data = (report.parent / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        assert f'src="{name}"' in text


def test_capture_per_channel_per_day_is_the_databases(report: Path, year_db: Path) -> None:
    got = cells(report.read_text(encoding="utf-8"))
    conn = sqlite3.connect(year_db)
    rows = conn.execute("SELECT channel, day, n_valid, day_start_ts FROM days").fetchall()
    assert len(rows) == 365 * 3
    for channel, day, n_valid, d0 in rows:
        minutes = conn.execute(
            "SELECT COALESCE(SUM(n_valid), 0) FROM hours WHERE station = ? AND channel = ?"
            " AND hour_ts >= ? AND hour_ts < ?",
            (STATION, channel, d0, d0 + DAY_S),
        ).fetchone()[0]
        assert got[f"hours|{STATION}|{channel}|{day}"] == str(n_valid)
        assert got[f"minutes|{STATION}|{channel}|{day}"] == str(minutes)
        assert 0 <= minutes <= MINUTES_PER_DAY
    for channel in CHANNELS:
        valid_days, hours = conn.execute(
            "SELECT SUM(valid), SUM(n_valid) FROM days WHERE channel = ?", (channel,)
        ).fetchone()
        assert got[f"valid_days|{STATION}|{channel}"] == str(valid_days)
        assert got[f"valid_hours|{STATION}|{channel}"] == str(hours)
    conn.close()
    # the synthetic year has some invalid days (the lost pm25 days, the pm10 gaps)
    assert int(got[f"valid_days|{STATION}|pm25"]) < 365


def test_every_invalid_hour_has_its_reason(report: Path, year_db: Path) -> None:
    text = report.read_text(encoding="utf-8")
    got = cells(text)
    conn = sqlite3.connect(year_db)
    expect: Counter[tuple[str, str]] = Counter()
    for channel, reason, n in conn.execute(
        "SELECT channel, reason, COUNT(*) FROM hours WHERE valid = 0 GROUP BY channel, reason"
    ):
        expect[(channel, reason)] += n
    # hours without a row in a closed day count as no_data
    for channel, n_rows in conn.execute(
        "SELECT h.channel, COUNT(*) FROM hours h GROUP BY h.channel"
    ).fetchall():
        expect[(channel, "no_data")] += 365 * 24 - n_rows
    conn.close()
    expect = Counter({k: v for k, v in expect.items() if v})
    assert {("pm10", "no_data"), ("no2", "maintenance"), ("pm25", "communication_failure")} <= set(
        expect
    )
    for (channel, reason), n in expect.items():
        assert got[f"reason|{STATION}|{channel}|{reason}"] == str(n)
    assert len([k for k in got if k.startswith("reason|")]) == len(expect)
    # the full list: one row per invalid hour
    listed = re.search(r'<table id="invalid-yb-town-01">.*?<tbody>(.*?)</tbody>', text, re.S)
    assert listed is not None
    assert listed.group(1).count("<tr>") == sum(expect.values())
    for channel in CHANNELS:
        n = sum(v for (c, _), v in expect.items() if c == channel)
        assert got[f"invalid_hours|{STATION}|{channel}"] == str(n)


def test_exceedance_days(report: Path, year_db: Path) -> None:
    got = cells(report.read_text(encoding="utf-8"))
    conn = sqlite3.connect(year_db)
    days: dict[str, set[str]] = {"no2": set(), "pm25": set(), "pm10": set()}
    for channel, hour_ts, exc in conn.execute("SELECT channel, hour_ts, exceedances FROM hours"):
        if any(e["exceeds"] for e in json.loads(exc)):
            days[channel].add(
                (date(1970, 1, 1) + timedelta(days=(hour_ts + UTC8) // DAY_S)).isoformat()
            )
    for channel, day, exc in conn.execute("SELECT channel, day, exceedances FROM days"):
        if any(e["exceeds"] for e in json.loads(exc)):
            days[channel].add(day)
    conn.close()
    assert days["no2"] and days["pm25"]
    for channel, found in days.items():
        assert got[f"exceedance_days|{STATION}|{channel}"] == str(len(found))
    assert got[f"exceedance_days_total|{STATION}"] == str(len(set().union(*days.values())))


def test_aqi_days_by_category(report: Path, year_db: Path) -> None:
    text = report.read_text(encoding="utf-8")
    got = cells(text)
    conn = sqlite3.connect(year_db)
    counts: Counter[str] = Counter()
    good = 0
    for published, aqi_doc in conn.execute("SELECT aqi_published, aqi_json FROM day_reports"):
        doc = json.loads(aqi_doc)
        counts[doc["category"] if published else "not published"] += 1
        good += bool(published and doc["aqi"] <= 100)
    conn.close()
    assert len(counts) >= 4
    for category in (
        "Excellent",
        "Good",
        "Lightly polluted",
        "Moderately polluted",
        "Heavily polluted",
        "Severely polluted",
        "not published",
    ):
        assert got[f"aqi_days|{STATION}|{category}"] == str(counts.get(category, 0))
    assert got[f"good_days|{STATION}"] == str(good)
    # the spec's colours (§3)
    for rgb in ("0,228,0", "255,255,0", "255,126,0", "255,0,0", "153,0,76", "126,0,35"):
        assert f"background:rgb({rgb})" in text


def test_monthly_validity_and_the_plan(report: Path, year_db: Path, cfg: GatewayConfig) -> None:
    got = cells(report.read_text(encoding="utf-8"))
    conn = sqlite3.connect(year_db)
    for channel in CHANNELS:
        for month in (1, 2, 6, 12):
            stat = month_statistic(conn, cfg, STATION, channel, YEAR, month)
            assert got[f"month_days|{STATION}|{channel}|{stat.period}"] == str(stat.n_valid)
    plan = plan_progress(conn, cfg, STATION, date(YEAR, 12, 31))
    conn.close()
    assert plan is not None
    assert got[f"plan_pm25|{STATION}|{YEAR}"] == f"{plan['pm25']['ytd_mean']:.1f}"
    assert got[f"plan_pm10|{STATION}|{YEAR}"] == f"{plan['pm10']['ytd_mean']:.1f}"
    assert got[f"plan_good_days|{STATION}|{YEAR}"] == str(plan["good_days"]["ytd"])


def test_a_partial_period_and_days_not_closed(
    year_db: Path, cfg: GatewayConfig, tmp_path: Path
) -> None:
    stream = io.StringIO()
    index = write_report(
        year_db, tmp_path, None, date(2019, 12, 20), date(2020, 1, 10), cfg, progress=stream
    )
    text = index.read_text(encoding="utf-8")
    got = cells(text)
    assert f"hours|{STATION}|pm25|2019-12-31" in got
    assert f"hours|{STATION}|pm25|2020-01-01" not in got  # not closed: "-"
    assert got[f"closed_days|{STATION}|pm25"] == "12"
    lines = stream.getvalue().splitlines()
    assert lines[-1].startswith("report: 22/22 days (100%)")
    assert all("\r" not in line for line in lines)  # plain text: not a terminal


def test_progress_bar_on_a_terminal() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = Progress(3, stream)
    for _ in range(3):
        bar.step("x")
    assert "\r" in stream.getvalue() and "3/3 days 100%" in stream.getvalue()
    assert stream.getvalue().endswith("\n")


def test_the_command(year_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rep"
    code = cli.main(
        [
            "report",
            "--db",
            str(year_db),
            "--station",
            STATION,
            "--from",
            "2019-03-01",
            "--to",
            "2019-03-31",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 0
    assert captured.out.strip() == str(out / "index.html")
    assert "report: 31/31 days (100%)" in captured.err
    assert (
        cells((out / "index.html").read_text(encoding="utf-8"))[f"closed_days|{STATION}|no2"]
        == "31"
    )
    assert cli.main(["report", "--db", str(tmp_path / "missing.db")]) == 2
    assert (
        cli.main(["report", "--db", str(year_db), "--from", "2019-03-02", "--to", "2019-03-01"])
        == 2
    )
