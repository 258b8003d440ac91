"""The validity report: what the operator hands on about a station's data over a period.

``lantian report --station ID --from 2019-01-01 --to 2019-12-31 --config FILE [--out DIR]``
(or :func:`write_report`) writes ``DIR/index.html`` and PNG charts beside it (matplotlib,
Agg backend: no display needed). Per station, from the gateway's closed hours and days
(gateway/results.py; nothing is recomputed, so the report says what was published):

* **data capture** per channel per local day: valid hours of 24 (a day is valid with
  ≥ 20 by GB 3095, or the rule set's minimum) and valid minutes (the counted minutes of
  its hours, of 1440), with a heat-map chart;
* the **reason for every invalid hour** (``no_data``, ``insufficient_minutes``,
  ``maintenance``, ``calibration``, ... - docs/gateway.md "Reasons"), an hour with no row
  in a closed day counted ``no_data``;
* **exceedance days**: days on which a valid hour or the day itself exceeded a limit of
  the limit set or a site threshold, with the worst value;
* **AQI days by category** (HJ 633; colours from spec §3), and a daily AQI chart;
* **monthly validity** (≥ 27 valid days, February ≥ 25) of each mapped pollutant;
* the **year's progress against the plan's targets** (gateway.results.plan_progress,
  spec §8) after the last closed day of each year in the period.

Days that are not closed yet are shown as ``-`` and counted nowhere. Times are local
(``gateway.utc_offset``). Long runs draw a progress bar on stderr (one step per station
day; plain lines when stderr is not a terminal).
"""

from __future__ import annotations

import argparse
import html
import json
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

from gateway.config import ConfigError, GatewayConfig, config_from_mapping, load_config
from gateway.results import (
    DAY_S,
    HOUR_S,
    NO_DATA,
    day_start,
    hour_label,
    local_date,
    month_statistic,
    plan_progress,
)
from gateway.standards import AQI_LEVELS, NoTargetError

HOURS_PER_DAY = 24
MINUTES_PER_DAY = 1440
NOT_PUBLISHED = "not published"


# ---------------------------------------------------------------- progress


class Progress:
    """A progress bar on ``stream`` (a TTY: one redrawn line; else a line per 10 %)."""

    def __init__(self, total: int, stream: TextIO | None, label: str = "report") -> None:
        self.total = max(total, 1)
        self.stream = stream
        self.label = label
        self.done = 0
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        self._last_decile = -1
        self._last_draw = 0.0

    def step(self, what: str = "") -> None:
        self.done += 1
        if self.stream is None:
            return
        pct = 100 * self.done // self.total
        if self.tty:
            now = time.monotonic()
            if self.done < self.total and now - self._last_draw < 0.05:
                return
            self._last_draw = now
            filled = 30 * self.done // self.total
            bar = "#" * filled + "." * (30 - filled)
            self.stream.write(
                f"\r{self.label} [{bar}] {self.done}/{self.total} days {pct:3d}% {what:<24}"
            )
            if self.done >= self.total:
                self.stream.write("\n")
            self.stream.flush()
        elif pct // 10 != self._last_decile or self.done == self.total:
            self._last_decile = pct // 10
            self.stream.write(f"{self.label}: {self.done}/{self.total} days ({pct}%) {what}\n")
            self.stream.flush()


# ---------------------------------------------------------------- what is read


@dataclass(slots=True)
class ChannelDay:
    day: str
    channel: str
    hours_valid: int
    minutes_valid: int
    valid: bool
    reason: str | None
    mean: float | None
    unit: str


@dataclass(slots=True)
class InvalidHour:
    hour_ts: int
    label: str
    channel: str
    reason: str
    n_valid: int
    flag: str | None


@dataclass(slots=True)
class Exceedance:
    day: str
    channel: str
    rule: str
    averaging: str
    value: float
    limit: float
    unit: str
    periods: int
    confirmed: bool


@dataclass(slots=True)
class StationReport:
    station: str
    days: list[str]
    channels: list[str]
    capture: dict[tuple[str, str], ChannelDay] = field(default_factory=dict)
    invalid_hours: list[InvalidHour] = field(default_factory=list)
    exceedances: list[Exceedance] = field(default_factory=list)
    aqi: dict[str, tuple[int | None, str]] = field(default_factory=dict)  # day -> (aqi, cat)
    months: list[dict[str, Any]] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
    charts: dict[str, str] = field(default_factory=dict)

    def category_counts(self) -> dict[str, int]:
        counts = {lvl.category_en: 0 for lvl in AQI_LEVELS}
        counts[NOT_PUBLISHED] = 0
        for _, cat in self.aqi.values():
            counts[cat] = counts.get(cat, 0) + 1
        return counts


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def _default_config(db_path: Path) -> GatewayConfig:
    return config_from_mapping({"gateway": {"id": "report"}}, base_dir=db_path.parent)


def report_stations(conn: sqlite3.Connection) -> list[str]:
    try:
        rows = conn.execute("SELECT DISTINCT station FROM days ORDER BY station").fetchall()
    except sqlite3.OperationalError:
        return []
    return [str(r[0]) for r in rows]


def day_span(conn: sqlite3.Connection, stations: Sequence[str]) -> tuple[date, date] | None:
    marks = ",".join("?" * len(stations))
    try:
        row = conn.execute(
            f"SELECT MIN(day), MAX(day) FROM days WHERE station IN ({marks})", tuple(stations)
        ).fetchone()
    except sqlite3.OperationalError:
        return None
    if row is None or row[0] is None:
        return None
    return date.fromisoformat(row[0]), date.fromisoformat(row[1])


def _category(aqi_json: str | None, published: int) -> str:
    if not published or not aqi_json:
        return NOT_PUBLISHED
    doc = json.loads(aqi_json)
    return str(doc.get("category") or NOT_PUBLISHED)


def _worst(
    worst: dict[tuple[str, str], Exceedance], day: str, channel: str, ev: Mapping[str, Any]
) -> None:
    """Keep the worst exceeding value per (channel, rule) of a day, counting periods."""
    key = (channel, str(ev["rule"]))
    value = float(ev["value"])
    old = worst.get(key)
    if old is None:
        worst[key] = Exceedance(
            day,
            channel,
            str(ev["rule"]),
            str(ev["averaging"]),
            value,
            float(ev["limit"]),
            str(ev["unit"]),
            1,
            bool(ev.get("confirmed", True)),
        )
    else:
        old.periods += 1
        old.value = max(old.value, value)


def read_station(
    conn: sqlite3.Connection,
    cfg: GatewayConfig,
    station: str,
    first: date,
    last: date,
    progress: Progress,
) -> StationReport:
    """Everything the report shows about ``station`` for local days ``first..last``."""
    off = cfg.utc_offset_s
    t0, t1 = day_start(first, off), day_start(last, off) + DAY_S
    d_from, d_to = first.isoformat(), last.isoformat()
    day_rows = conn.execute(
        "SELECT channel, day, unit, mean, n_valid, valid, reason, exceedances FROM days"
        " WHERE station = ? AND day >= ? AND day <= ? ORDER BY day, channel",
        (station, d_from, d_to),
    ).fetchall()
    hour_rows = conn.execute(
        "SELECT channel, hour_ts, n_valid, valid, reason, flag, exceedances FROM hours"
        " WHERE station = ? AND hour_ts >= ? AND hour_ts < ? ORDER BY hour_ts, channel",
        (station, t0, t1),
    ).fetchall()
    aqi_rows = conn.execute(
        "SELECT day, aqi, aqi_published, aqi_json FROM day_reports"
        " WHERE station = ? AND day >= ? AND day <= ?",
        (station, d_from, d_to),
    ).fetchall()
    channels = sorted({str(r[0]) for r in day_rows} | {str(r[0]) for r in hour_rows})
    days = [d.isoformat() for d in _days(first, last)]
    rep = StationReport(station, days, channels)
    for day, aqi, published, aqi_json in aqi_rows:
        rep.aqi[str(day)] = (
            None if aqi is None or not published else int(aqi),
            _category(aqi_json, int(published)),
        )

    hours_by_day: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in hour_rows:
        hours_by_day[local_date(int(row[1]), off).isoformat()].append(row)
    days_by_day: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for row in day_rows:
        days_by_day[str(row[1])].append(row)

    for day in days:
        hours = hours_by_day.get(day, [])
        d0 = day_start(date.fromisoformat(day), off)
        # exceedances of the day: the day's own, and every exceeding valid hour
        worst: dict[tuple[str, str], Exceedance] = {}
        present: dict[str, set[int]] = defaultdict(set)
        minutes: Counter[str] = Counter()
        for channel, hour_ts, n_valid, valid, reason, flag, exc in hours:
            present[str(channel)].add(int(hour_ts))
            minutes[str(channel)] += int(n_valid)  # counted minutes, valid hour or not
            if not valid:
                rep.invalid_hours.append(
                    InvalidHour(
                        int(hour_ts),
                        hour_label(int(hour_ts), off),
                        str(channel),
                        str(reason or NO_DATA),
                        int(n_valid),
                        flag,
                    )
                )
            if exc and exc != "[]":
                for ev in json.loads(exc):
                    if ev.get("exceeds"):
                        _worst(worst, day, str(channel), ev)
        for channel, _, unit, mean, n_valid, valid, reason, exc in days_by_day.get(day, []):
            ch = str(channel)
            rep.capture[(day, ch)] = ChannelDay(
                day,
                ch,
                int(n_valid),
                minutes[ch],
                bool(valid),
                reason,
                None if mean is None else float(mean),
                str(unit),
            )
            # hours of a closed day with no row at all: no data
            for h in range(HOURS_PER_DAY):
                ts = d0 + h * HOUR_S
                if ts not in present[ch]:
                    rep.invalid_hours.append(
                        InvalidHour(ts, hour_label(ts, off), ch, NO_DATA, 0, None)
                    )
            if exc and exc != "[]":
                for ev in json.loads(exc):
                    if ev.get("exceeds"):
                        _worst(worst, day, ch, ev)
        rep.exceedances.extend(sorted(worst.values(), key=lambda e: (e.channel, e.rule)))
        progress.step(f"{station} {day}")
    rep.invalid_hours.sort(key=lambda h: (h.hour_ts, h.channel))

    # monthly validity of the mapped pollutants
    months = sorted({(d.year, d.month) for d in _days(first, last)})
    for channel in channels:
        if cfg.pollutant(channel) is None:
            continue
        for year, month in months:
            stat = month_statistic(conn, cfg, station, channel, year, month)
            rep.months.append(
                {
                    "channel": channel,
                    "month": stat.period,
                    "n_valid": stat.n_valid,
                    "n_days": stat.n_expected,
                    "needed": 25 if month == 2 else 27,
                    "valid": stat.valid,
                    "mean": stat.mean,
                }
            )
    # the plan: after the last closed day of each year in the period
    closed = sorted(d for d in rep.aqi if d_from <= d <= d_to)
    for year in sorted({int(d[:4]) for d in closed}):
        if cfg.plan is None:
            break
        try:
            cfg.plan.target(year)
        except NoTargetError:
            continue
        last_day = max(d for d in closed if int(d[:4]) == year)
        doc = plan_progress(conn, cfg, station, date.fromisoformat(last_day))
        if doc is not None:
            rep.plans.append(doc)
    return rep


# ---------------------------------------------------------------- charts


def _rgb(rgb: Iterable[int]) -> tuple[float, ...]:
    return tuple(c / 255 for c in rgb)


CATEGORY_RGB: dict[str, tuple[int, int, int]] = {lvl.category_en: lvl.rgb for lvl in AQI_LEVELS}


def draw_charts(rep: StationReport, out_dir: Path) -> dict[str, str]:
    """PNG files of one station's report; name -> file name (in ``out_dir``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    files: dict[str, str] = {}
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in rep.station)
    days = rep.days
    x = np.arange(len(days))
    ticks = [i for i, d in enumerate(days) if d.endswith("-01")] or [0]

    # data capture heat map: valid hours per channel per day
    if rep.channels:
        grid = np.full((len(rep.channels), len(days)), np.nan)
        for i, ch in enumerate(rep.channels):
            for j, d in enumerate(days):
                cd = rep.capture.get((d, ch))
                if cd is not None:
                    grid[i, j] = cd.hours_valid
        fig, ax = plt.subplots(figsize=(11, 0.45 * len(rep.channels) + 1.6), dpi=90)
        cmap = matplotlib.colormaps["RdYlGn"].with_extremes(bad="#dddddd")
        im = ax.imshow(grid, aspect="auto", cmap=cmap, vmin=0, vmax=24, interpolation="nearest")
        ax.set_yticks(range(len(rep.channels)), rep.channels)
        ax.set_xticks(ticks, [days[i] for i in ticks], rotation=45, ha="right", fontsize=8)
        ax.set_title(f"{rep.station}: valid hours per day (of 24; grey = not closed)")
        fig.colorbar(im, ax=ax, pad=0.01)
        fig.tight_layout()
        name = f"{safe}-capture.png"
        fig.savefig(out_dir / name)
        plt.close(fig)
        files["capture"] = name

    # daily AQI, coloured by category
    if rep.aqi:
        values = np.array([rep.aqi.get(d, (None, ""))[0] or 0 for d in days], dtype=float)
        colours = [
            _rgb(CATEGORY_RGB.get(rep.aqi.get(d, (None, NOT_PUBLISHED))[1], (200, 200, 200)))
            for d in days
        ]
        fig, ax = plt.subplots(figsize=(11, 3.2), dpi=90)
        ax.bar(x, values, width=1.0, color=colours, edgecolor="none")
        for level in (50, 100, 150, 200, 300):
            ax.axhline(level, color="#999999", linewidth=0.5, linestyle=":")
        ax.set_xticks(ticks, [days[i] for i in ticks], rotation=45, ha="right", fontsize=8)
        ax.set_xlim(-0.5, len(days) - 0.5)
        ax.set_ylabel("daily AQI (HJ 633)")
        ax.set_title(f"{rep.station}: daily AQI")
        fig.tight_layout()
        name = f"{safe}-aqi.png"
        fig.savefig(out_dir / name)
        plt.close(fig)
        files["aqi"] = name

        counts = rep.category_counts()
        labels = list(counts)
        fig, ax = plt.subplots(figsize=(7, 3), dpi=90)
        bar_colours = [_rgb(CATEGORY_RGB.get(k, (200, 200, 200))) for k in labels]
        bars = ax.barh(labels, [counts[k] for k in labels], color=bar_colours, edgecolor="#555")
        ax.bar_label(bars, padding=3)
        ax.invert_yaxis()
        ax.set_xlabel("days")
        ax.set_title(f"{rep.station}: AQI days by category")
        fig.tight_layout()
        name = f"{safe}-aqi-categories.png"
        fig.savefig(out_dir / name)
        plt.close(fig)
        files["aqi_categories"] = name

    # plan progress: each target as the fraction reached
    for plan in rep.plans:
        year = plan["year"]
        rows = [
            ("PM2.5 YTD mean", plan["pm25"]["ytd_mean"], plan["pm25"]["target"], False),
            ("PM10 YTD mean", plan["pm10"]["ytd_mean"], plan["pm10"]["target"], False),
            (
                "good days (projected)",
                plan["good_days"]["projected"],
                plan["good_days"]["target"],
                True,
            ),
        ]
        fig, ax = plt.subplots(figsize=(8, 2.6), dpi=90)
        for i, (_label, value, target, more_is_better) in enumerate(rows):
            ok = value >= target if more_is_better else value <= target
            ax.barh(i, value, color="#2e7d32" if ok else "#c62828")
            ax.plot([target, target], [i - 0.4, i + 0.4], color="black", linewidth=2)
            ax.text(value, i, f" {value:.1f} (target {target:g})", va="center", fontsize=8)
        ax.set_yticks(range(len(rows)), [r[0] for r in rows])
        ax.invert_yaxis()
        ax.set_title(f"{rep.station}: plan {year} after {plan['day']} (black line: target)")
        ax.set_xlim(0, max(max(r[1], r[2]) for r in rows) * 1.35)
        fig.tight_layout()
        name = f"{safe}-plan-{year}.png"
        fig.savefig(out_dir / name)
        plt.close(fig)
        files[f"plan_{year}"] = name
    return files


# ---------------------------------------------------------------- HTML


def _e(v: object) -> str:
    return html.escape("-" if v is None else str(v))


def _f(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _k(*parts: object) -> str:
    """A ``data-key`` (machine-checkable cells: tests compare them with the database)."""
    return html.escape("|".join(str(p) for p in parts), quote=True)


_STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #bbb;padding:.2em .5em;text-align:right}
th{background:#eee} td.l,th.l{text-align:left}
td.bad{background:#fde0dc} td.open{color:#999}
.swatch{display:inline-block;width:1em;height:1em;border:1px solid #555;vertical-align:middle}
details{margin-bottom:1em} img{max-width:100%;border:1px solid #ddd;margin:.3em 0}
.ok{color:#1a7f37;font-weight:bold} .no{color:#c62828;font-weight:bold}
"""


def _capture_html(rep: StationReport) -> str:
    s = rep.station
    head = "".join(f'<th colspan="2">{_e(c)}</th>' for c in rep.channels)
    sub = "".join("<th>h/24</th><th>min</th>" for _ in rep.channels)
    rows = []
    for d in rep.days:
        cells = []
        for c in rep.channels:
            cd = rep.capture.get((d, c))
            if cd is None:
                cells.append('<td class="open">-</td><td class="open">-</td>')
                continue
            cls = "" if cd.valid else ' class="bad"'
            title = "" if cd.valid else f' title="{_e(cd.reason)}"'
            cells.append(
                f'<td{cls}{title} data-key="{_k("hours", s, c, d)}">{cd.hours_valid}</td>'
                f'<td{cls} data-key="{_k("minutes", s, c, d)}">{cd.minutes_valid}</td>'
            )
        rows.append(f'<tr><td class="l">{_e(d)}</td>{"".join(cells)}</tr>')
    return (
        f'<table id="capture-{_e(s)}"><thead><tr><th class="l" rowspan="2">day</th>{head}</tr>'
        f"<tr>{sub}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _summary_html(rep: StationReport) -> str:
    rows = []
    for c in rep.channels:
        cds = [rep.capture[(d, c)] for d in rep.days if (d, c) in rep.capture]
        valid = sum(cd.valid for cd in cds)
        hours = sum(cd.hours_valid for cd in cds)
        mins = sum(cd.minutes_valid for cd in cds)
        inv = sum(1 for h in rep.invalid_hours if h.channel == c)
        exc_days = len({e.day for e in rep.exceedances if e.channel == c})
        pct = 100.0 * hours / (HOURS_PER_DAY * len(cds)) if cds else None
        rows.append(
            f'<tr><td class="l">{_e(c)}</td>'
            f'<td data-key="{_k("closed_days", rep.station, c)}">{len(cds)}</td>'
            f'<td data-key="{_k("valid_days", rep.station, c)}">{valid}</td>'
            f'<td data-key="{_k("valid_hours", rep.station, c)}">{hours}</td>'
            f'<td data-key="{_k("valid_minutes", rep.station, c)}">{mins}</td>'
            f'<td data-key="{_k("capture_pct", rep.station, c)}">{_f(pct)}</td>'
            f'<td data-key="{_k("invalid_hours", rep.station, c)}">{inv}</td>'
            f'<td data-key="{_k("exceedance_days", rep.station, c)}">{exc_days}</td></tr>'
        )
    return (
        '<table><thead><tr><th class="l">channel</th><th>closed days</th><th>valid days</th>'
        "<th>valid hours</th><th>valid minutes</th><th>hour capture %</th>"
        "<th>invalid hours</th><th>exceedance days</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _invalid_html(rep: StationReport) -> str:
    s = rep.station
    by: Counter[tuple[str, str]] = Counter((h.channel, h.reason) for h in rep.invalid_hours)
    summary = "".join(
        f'<tr><td class="l">{_e(c)}</td><td class="l">{_e(r)}</td>'
        f'<td data-key="{_k("reason", s, c, r)}">{n}</td></tr>'
        for (c, r), n in sorted(by.items())
    )
    rows = "".join(
        f'<tr><td class="l">{_e(h.label)}</td><td class="l">{_e(h.channel)}</td>'
        f'<td class="l">{_e(h.reason)}</td><td>{h.n_valid}</td><td>{_e(h.flag)}</td></tr>'
        for h in rep.invalid_hours
    )
    return (
        f"<p>{len(rep.invalid_hours)} invalid hours.</p>"
        '<table><thead><tr><th class="l">channel</th><th class="l">reason</th><th>hours</th>'
        f"</tr></thead><tbody>{summary}</tbody></table>"
        f"<details><summary>every invalid hour ({len(rep.invalid_hours)})</summary>"
        f'<table id="invalid-{_e(s)}"><thead><tr><th class="l">hour (local start)</th>'
        '<th class="l">channel</th><th class="l">reason</th><th>valid minutes</th>'
        f"<th>flag</th></tr></thead><tbody>{rows}</tbody></table></details>"
    )


def _exceedance_html(rep: StationReport) -> str:
    if not rep.exceedances:
        return "<p>No exceedance in the period.</p>"
    days = sorted({e.day for e in rep.exceedances})
    rows = "".join(
        f'<tr><td class="l">{_e(e.day)}</td><td class="l">{_e(e.channel)}</td>'
        f'<td class="l">{_e(e.rule)}{"" if e.confirmed else " (unconfirmed)"}</td>'
        f"<td>{_e(e.averaging)}</td><td>{_f(e.value)}</td><td>{e.limit:g}</td>"
        f"<td>{_e(e.unit)}</td><td>{e.periods}</td></tr>"
        for e in rep.exceedances
    )
    per_rule: dict[tuple[str, str], list[Exceedance]] = defaultdict(list)
    for e in rep.exceedances:
        per_rule[(e.channel, e.rule)].append(e)
    summary = "".join(
        f'<tr><td class="l">{_e(c)}</td><td class="l">{_e(r)}</td>'
        f'<td data-key="{_k("exceedance_rule_days", rep.station, c, r)}">{len(es)}</td>'
        f"<td>{sum(e.periods for e in es)}</td><td>{_f(max(e.value for e in es))}</td>"
        f"<td>{es[0].limit:g} {_e(es[0].unit)}</td></tr>"
        for (c, r), es in sorted(per_rule.items())
    )
    return (
        f'<p><span data-key="{_k("exceedance_days_total", rep.station)}">{len(days)}</span>'
        " days with an exceedance.</p>"
        '<table><thead><tr><th class="l">channel</th><th class="l">rule</th><th>days</th>'
        "<th>exceeding periods</th><th>worst value</th><th>limit</th></tr></thead>"
        f"<tbody>{summary}</tbody></table>"
        f"<details><summary>every exceedance day ({len(days)})</summary>"
        '<table><thead><tr><th class="l">day</th><th class="l">channel</th>'
        '<th class="l">rule</th><th>averaging</th><th>worst value</th><th>limit</th>'
        "<th>unit</th><th>exceeding periods</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></details>"
    )


def _aqi_html(rep: StationReport) -> str:
    counts = rep.category_counts()
    rows = []
    for lvl in AQI_LEVELS:
        r, g, b = lvl.rgb
        span = (
            f"&gt; {lvl.aqi_low - 1}" if lvl.aqi_high is None else f"{lvl.aqi_low}-{lvl.aqi_high}"
        )
        rows.append(
            f'<tr><td class="l"><span class="swatch" style="background:rgb({r},{g},{b})">'
            f"</span> {_e(lvl.numeral)}</td><td>{span}</td>"
            f'<td class="l">{_e(lvl.category_en)} {_e(lvl.category_zh)}</td>'
            f'<td data-key="{_k("aqi_days", rep.station, lvl.category_en)}">'
            f"{counts[lvl.category_en]}</td></tr>"
        )
    rows.append(
        f'<tr><td class="l">-</td><td>-</td><td class="l">{NOT_PUBLISHED} / no AQI</td>'
        f'<td data-key="{_k("aqi_days", rep.station, NOT_PUBLISHED)}">'
        f"{counts[NOT_PUBLISHED]}</td></tr>"
    )
    good = sum(counts[lvl.category_en] for lvl in AQI_LEVELS[:2])
    return (
        '<table><thead><tr><th class="l">level</th><th>AQI</th><th class="l">category</th>'
        f"<th>days</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
        f'<p>Good days (AQI ≤ 100): <b data-key="{_k("good_days", rep.station)}">{good}</b>'
        f" of {len(rep.aqi)} closed days.</p>"
    )


def _months_html(rep: StationReport) -> str:
    if not rep.months:
        return "<p>No channel mapped to a pollutant.</p>"
    months = sorted({str(m["month"]) for m in rep.months})
    by = {(str(m["channel"]), str(m["month"])): m for m in rep.months}
    channels = sorted({str(m["channel"]) for m in rep.months})
    rows = []
    for c in channels:
        cells = []
        for month in months:
            m = by[(c, month)]
            cls = "" if m["valid"] else ' class="bad"'
            title = f"{m['n_valid']} valid of {m['n_days']} days, {m['needed']} needed"
            if m["mean"] is not None:
                title += f"; monthly mean {m['mean']:.1f}"
            key = _k("month_days", rep.station, c, month)
            cells.append(f'<td{cls} title="{_e(title)}" data-key="{key}">{m["n_valid"]}</td>')
        rows.append(f'<tr><td class="l">{_e(c)}</td>{"".join(cells)}</tr>')
    head = "".join(f"<th>{_e(m[2:])}</th>" for m in months)
    return (
        "<p>Valid days per month (a monthly value needs ≥ 27, February ≥ 25; red: not"
        " enough).</p>"
        f'<table><thead><tr><th class="l">channel</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _plan_html(rep: StationReport) -> str:
    if not rep.plans:
        return "<p>No plan target for the years of this period (or no valid PM2.5/PM10 day).</p>"
    out = []
    s = rep.station
    for p in rep.plans:
        y = p["year"]

        def mark(ok: bool) -> str:
            return '<span class="ok">on track</span>' if ok else '<span class="no">off track</span>'

        g = p["good_days"]
        out.append(
            f"<h4>{y}: {_e(p['plan'])}, after {_e(p['day'])} ({p['days_elapsed']} of "
            f"{p['days_in_year']} days) - {mark(p['on_track'])}</h4>"
            '<table><thead><tr><th class="l">target</th><th>year to date</th><th>target</th>'
            '<th>margin</th><th class="l">status</th></tr></thead><tbody>'
            f'<tr><td class="l">PM2.5 annual mean ≤ (µg/m³)</td>'
            f'<td data-key="{_k("plan_pm25", s, y)}">{_f(p["pm25"]["ytd_mean"])}</td>'
            f"<td>{p['pm25']['target']:g}</td><td>{_f(p['pm25']['margin'])}</td>"
            f'<td class="l">{mark(p["pm25"]["on_track"])} ({p["pm25"]["n_days"]} valid days)</td>'
            "</tr>"
            f'<tr><td class="l">PM10 annual mean ≤ (µg/m³)</td>'
            f'<td data-key="{_k("plan_pm10", s, y)}">{_f(p["pm10"]["ytd_mean"])}</td>'
            f"<td>{p['pm10']['target']:g}</td><td>{_f(p['pm10']['margin'])}</td>"
            f'<td class="l">{mark(p["pm10"]["on_track"])} ({p["pm10"]["n_days"]} valid days)</td>'
            "</tr>"
            f'<tr><td class="l">good days ≥</td>'
            f'<td data-key="{_k("plan_good_days", s, y)}">{g["ytd"]}</td>'
            f"<td>{g['target']}</td><td>projected {_f(g['projected'])}</td>"
            f'<td class="l">{mark(g["on_track"])}; {g["needed"]} still needed'
            f"{'' if g['attainable'] else ' (no longer attainable)'}</td></tr>"
            "</tbody></table>"
        )
        chart = rep.charts.get(f"plan_{y}")
        if chart:
            out.append(f'<img src="{_e(chart)}" alt="plan progress {y}">')
    return "".join(out)


def render_html(
    reports: Sequence[StationReport], cfg: GatewayConfig, first: date | None, last: date | None
) -> str:
    from gateway.status import offset_text

    period = "no closed day" if first is None or last is None else f"{first} to {last}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Lantian validity report {_e(period)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Lantian validity report</h1>",
        f"<p>Period (local days, UTC{offset_text(cfg.utc_offset_s)}): <b>{_e(period)}</b>. "
        f"Rule set {_e(cfg.rules.ruleset)}, limit set {_e(cfg.rules.limit_set)}, "
        f"AQI {_e(cfg.rules.aqi)}. A day is valid with enough valid hours, an hour with "
        "enough counted minutes (GB 3095; see docs/gateway.md); '-' = not closed.</p>",
    ]
    if not reports:
        parts.append("<p>No station has a closed day in this database.</p>")
    if len(reports) > 1:
        links = " · ".join(f'<a href="#st-{_e(r.station)}">{_e(r.station)}</a>' for r in reports)
        parts.append(f"<p>Stations: {links}</p>")
    for rep in reports:
        s = rep.station
        parts.append(f'<section id="st-{_e(s)}"><h2>Station {_e(s)}</h2>')
        parts.append("<h3>Summary</h3>" + _summary_html(rep))
        parts.append("<h3>Data capture per channel per day</h3>")
        if "capture" in rep.charts:
            parts.append(f'<img src="{_e(rep.charts["capture"])}" alt="data capture">')
        parts.append(
            f"<details><summary>valid hours (of 24) and valid minutes (of 1440) per day"
            f"</summary>{_capture_html(rep)}</details>"
        )
        parts.append("<h3>Invalid hours and why</h3>" + _invalid_html(rep))
        parts.append("<h3>Exceedance days</h3>" + _exceedance_html(rep))
        parts.append("<h3>AQI days by category (HJ 633)</h3>" + _aqi_html(rep))
        for key in ("aqi_categories", "aqi"):
            if key in rep.charts:
                parts.append(f'<img src="{_e(rep.charts[key])}" alt="{key}">')
        parts.append("<h3>Monthly validity</h3>" + _months_html(rep))
        parts.append("<h3>Progress against the plan</h3>" + _plan_html(rep))
        parts.append("</section>")
    parts.append(f"<p><small>Written {_e(time.strftime('%Y-%m-%d %H:%M:%S'))}.</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts)


# ---------------------------------------------------------------- the API


def write_report(
    db_path: str | Path,
    out_dir: str | Path,
    stations: Sequence[str] | None = None,
    day_from: date | str | None = None,
    day_to: date | str | None = None,
    config: GatewayConfig | None = None,
    *,
    progress: TextIO | None = None,
) -> Path:
    """Write the report for ``stations`` (default: every station with a closed day) over
    local days ``day_from..day_to`` (default: all closed days) into ``out_dir``; returns
    the path of ``index.html``. ``config`` gives the UTC offset, channel map and plan
    (default: the defaults of docs/gateway.md). ``progress``: a stream for the progress
    bar (the CLI passes stderr), None for silence."""
    db = Path(db_path)
    if not db.exists():
        raise FileNotFoundError(f"{db}: no such database")
    cfg = config if config is not None else _default_config(db)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10.0)
    try:
        names = list(stations) if stations else report_stations(conn)
        span = day_span(conn, names) if names else None
        first = date.fromisoformat(day_from) if isinstance(day_from, str) else day_from
        last = date.fromisoformat(day_to) if isinstance(day_to, str) else day_to
        if span is not None:
            first = first or span[0]
            last = last or span[1]
        reports: list[StationReport] = []
        if first is not None and last is not None:
            if last < first:
                raise ValueError(f"--to {last} is before --from {first}")
            n_days = (last - first).days + 1
            bar = Progress(n_days * len(names), progress)
            for station in names:
                rep = read_station(conn, cfg, station, first, last, bar)
                rep.charts = draw_charts(rep, out)
                reports.append(rep)
    finally:
        conn.close()
    index = out / "index.html"
    index.write_text(render_html(reports, cfg, first, last), encoding="utf-8")
    return index


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lantian report",
        description="Validity report (HTML with PNG charts): data capture, invalid hours and"
        " why, exceedance days, AQI days by category, progress against the plan.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the gateway's config (db, utc_offset, channels, plan)")
    src.add_argument("--db", type=Path, help="the gateway's database (default settings)")
    p.add_argument(
        "--station", action="append", help="station id (repeatable; default: every station)"
    )
    p.add_argument("--from", dest="day_from", type=date.fromisoformat, help="first local day")
    p.add_argument("--to", dest="day_to", type=date.fromisoformat, help="last local day")
    p.add_argument("--out", type=Path, default=Path("out/report"), help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.config is not None:
            cfg = load_config(args.config)
            db = cfg.db_path
        else:
            db = args.db
            cfg = _default_config(db)
        index = write_report(
            db,
            args.out,
            args.station,
            args.day_from,
            args.day_to,
            cfg,
            progress=None if args.quiet else sys.stderr,
        )
    except ConfigError as error:
        print(f"lantian report: config error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, sqlite3.Error) as error:
        print(f"lantian report: {error}", file=sys.stderr)
        return 2
    print(index)
    return 0
