"""The demo's hourly page: every station's hourly values as charts, its days, invalid
hours and alarms, read from the gateway's SQLite store alone.

The gateway's own report (gateway/report.py, ``index.html``) is a validity report over
closed days; a demo of a few simulated days is about hours, so the demo also writes this
page (``write_report``, the same signature as the gateway's), and uses it as the main
report when gateway/report.py is not there. It reads only stored results (``hours``,
``days``, ``day_reports``, ``hour_reports``, the outbox's alarms) and the ``records``
count; it computes nothing the gateway did not.

Output in ``out_dir``: ``hourly.html`` and ``charts/<station>-hourly.png`` (one panel per
channel: valid hourly means as a line, invalid hours as red marks at their partial mean
with the reason in the table below, site thresholds and 1-hour limits as dashed lines;
plus the hourly AQI as bars in the HJ 633 category colours).
"""

from __future__ import annotations

import html
import json
import sqlite3
from collections import defaultdict
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

UNIT_TEXT = {"ug/m3": "µg/m³", "mg/m3": "mg/m³"}
LEVEL_RGB = {  # spec/standards.md §3
    "I": (0, 228, 0),
    "II": (255, 255, 0),
    "III": (255, 126, 0),
    "IV": (255, 0, 0),
    "V": (153, 0, 76),
    "VI": (126, 0, 35),
}


def _rgb_for_aqi(aqi: int) -> tuple[int, int, int]:
    for bound, level in ((50, "I"), (100, "II"), (150, "III"), (200, "IV"), (300, "V")):
        if aqi <= bound:
            return LEVEL_RGB[level]
    return LEVEL_RGB["VI"]


def _css(rgb: tuple[int, int, int] | list[int]) -> str:
    r, g, b = rgb
    fg = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 110 else "#fff"
    return f"background:rgb({r},{g},{b});color:{fg}"


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def write_report(
    db_path: str | Path,
    out_dir: str | Path,
    stations: list[str] | None = None,
    day_from: str | None = None,
    day_to: str | None = None,
    config: Any = None,
) -> Path:
    """Write ``hourly.html`` (+ ``charts/*.png``) into ``out_dir``; return the HTML path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    offset_s = getattr(config, "utc_offset_s", 8 * 3600)
    tz = timezone(timedelta(seconds=offset_s))
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        names = stations or [
            r[0] for r in conn.execute("SELECT DISTINCT station FROM hours ORDER BY station")
        ]
        ts_from = ts_to = None
        if day_from:
            ts_from = int(datetime.fromisoformat(day_from).replace(tzinfo=tz).timestamp())
        if day_to:
            ts_to = int(
                (datetime.fromisoformat(day_to).replace(tzinfo=tz) + timedelta(days=1)).timestamp()
            )
        body: list[str] = []
        toc: list[str] = []
        for station in names:
            hours = [
                dict(r)
                for r in conn.execute(
                    "SELECT * FROM hours WHERE station = ? ORDER BY channel, hour_ts", (station,)
                )
                if (ts_from is None or r["hour_ts"] >= ts_from)
                and (ts_to is None or r["hour_ts"] < ts_to)
            ]
            hour_aqi = {
                r["hour_ts"]: r["aqi"]
                for r in conn.execute(
                    "SELECT hour_ts, aqi FROM hour_reports WHERE station = ? ORDER BY hour_ts",
                    (station,),
                )
            }
            days = [
                dict(r)
                for r in conn.execute(
                    "SELECT * FROM days WHERE station = ? ORDER BY day, channel", (station,)
                )
                if (day_from is None or r["day"] >= day_from)
                and (day_to is None or r["day"] <= day_to)
            ]
            day_reports = {
                r["day"]: dict(r)
                for r in conn.execute("SELECT * FROM day_reports WHERE station = ?", (station,))
            }
            alarms = [
                json.loads(r["payload"])
                for r in conn.execute(
                    "SELECT payload FROM outbox WHERE kind = 'alarm' AND station = ? ORDER BY id",
                    (station,),
                )
            ]
            n_records = conn.execute(
                "SELECT COUNT(*) FROM records WHERE station = ?", (station,)
            ).fetchone()[0]
            png = charts / f"{station}-hourly.png"
            _chart(plt, png, station, hours, hour_aqi, tz)
            toc.append(f'<li><a href="#{html.escape(station)}">{html.escape(station)}</a></li>')
            body.append(
                _station_html(station, hours, days, day_reports, alarms, n_records, png, out, tz)
            )
        total = conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        span = conn.execute("SELECT MIN(ts), MAX(ts) FROM minutes").fetchone()
    ruleset = getattr(getattr(config, "rules", None), "ruleset", "?")
    limit_set = getattr(getattr(config, "rules", None), "limit_set", "?")
    aqi_gen = getattr(getattr(config, "rules", None), "aqi", "?")
    period = "—"
    if span[0] is not None:
        a = datetime.fromtimestamp(span[0], tz).strftime("%Y-%m-%d %H:%M")
        b = datetime.fromtimestamp(span[1], tz).strftime("%Y-%m-%d %H:%M")
        period = f"{a} – {b} (local)"
    index_link = (
        'The gateway\'s validity report over closed days is <a href="index.html">index.html</a>.'
        if (out / "index.html").exists()
        else ""
    )
    legend = "".join(
        f'<span class="chip" style="{_css(rgb)}">{lvl}</span>' for lvl, rgb in LEVEL_RGB.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Lantian demo report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1200px; }}
table {{ border-collapse: collapse; margin: .5em 0 1.5em; font-size: 90%; }}
th, td {{ border: 1px solid #ccc; padding: 2px 8px; text-align: right; }}
th {{ background: #f3f3f3; }} td.l, th.l {{ text-align: left; }}
td.bad {{ color: #b00; }} .chip {{ padding: 1px 6px; border-radius: 3px; margin-right: 3px; }}
img {{ max-width: 100%; border: 1px solid #eee; }}
</style></head><body>
<h1>Lantian 蓝天 — hourly values of the demo run</h1>
<p>Minute records: {total} signed records, {period}. Rule set <b>{html.escape(str(ruleset))}</b>,
limit set <b>{html.escape(str(limit_set))}</b>, AQI <b>{html.escape(str(aqi_gen))}</b>.
Every value below was computed by the gateway and read back from its store
(<code>{html.escape(str(db_path))}</code>); the raw minute records are kept there.
AQI colours (HJ 633): {legend}</p>
<p>Written by demo/report.py. {index_link}</p>
<ul>{"".join(toc)}</ul>
{"".join(body)}
</body></html>
"""
    path = out / "hourly.html"
    path.write_text(page, encoding="utf-8")
    return path


def _limits(hours: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """channel -> {rule: limit} of the 1-hour rules the gateway evaluated."""
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for h in hours:
        for e in json.loads(h["exceedances"] or "[]"):
            if e.get("averaging") in ("1h", "single"):
                out[h["channel"]][e["rule"]] = e["limit"]
    return out


def _chart(
    plt: Any,
    path: Path,
    station: str,
    hours: list[dict[str, Any]],
    hour_aqi: dict[int, int | None],
    tz: timezone,
) -> None:
    by_channel: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in hours:
        by_channel[h["channel"]].append(h)
    limits = _limits(hours)
    with_aqi = any(v is not None for v in hour_aqi.values())
    n = len(by_channel) + (1 if with_aqi else 0)
    fig, axes = plt.subplots(
        max(n, 1), 1, figsize=(11, 1.9 * max(n, 1) + 0.6), sharex=True, squeeze=False
    )
    axes = [a[0] for a in axes]
    for ax, (channel, rows) in zip(axes, by_channel.items(), strict=False):
        t = [datetime.fromtimestamp(r["hour_ts"], tz) for r in rows]
        valid = [r["mean"] if r["valid"] else None for r in rows]
        ax.plot(
            t,
            [float("nan") if v is None else v for v in valid],
            "-",
            color="#1f5fa8",
            lw=1.4,
            label="valid hourly mean",
        )
        bad = [(ti, r["partial_mean"]) for ti, r in zip(t, rows, strict=True) if not r["valid"]]
        if bad:
            ax.plot(
                [b[0] for b in bad],
                [0 if b[1] is None else b[1] for b in bad],
                "x",
                color="#c00",
                label="invalid hour (partial mean)",
            )
        for rule, limit in limits.get(channel, {}).items():
            ax.axhline(limit, ls="--", lw=1, color="#c60", label=f"{rule} {limit:g}")
        unit = UNIT_TEXT.get(rows[0]["unit"], rows[0]["unit"]) if rows else ""
        ax.set_ylabel(f"{channel}\n{unit}")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7, frameon=False)
    if with_aqi:
        ax = axes[-1]
        items = sorted((ts, v) for ts, v in hour_aqi.items() if v is not None)
        t = [datetime.fromtimestamp(ts, tz) + timedelta(minutes=30) for ts, _ in items]
        colours = [tuple(c / 255 for c in _rgb_for_aqi(v)) for _, v in items]
        ax.bar(t, [v for _, v in items], width=1 / 24, color=colours, edgecolor="#888", lw=0.3)
        ax.set_ylabel("hourly\nAQI")
        ax.grid(alpha=0.3)
    axes[0].set_title(f"{station}: hourly values (local time)")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _station_html(
    station: str,
    hours: list[dict[str, Any]],
    days: list[dict[str, Any]],
    day_reports: dict[str, dict[str, Any]],
    alarms: list[dict[str, Any]],
    n_records: int,
    png: Path,
    out: Path,
    tz: timezone,
) -> str:
    e = html.escape
    channels = sorted({h["channel"] for h in hours}, key=[h["channel"] for h in hours].index)
    n_valid = sum(1 for h in hours if h["valid"])
    parts = [
        f'<h2 id="{e(station)}">{e(station)}</h2>',
        f"<p>{n_records} minute records; {len(hours)} channel-hours closed, {n_valid} valid "
        f"(≥ 45 counted minutes).</p>",
        f'<img src="{e(str(png.relative_to(out)))}" alt="hourly values of {e(station)}">',
    ]
    # daily table
    by_day: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for d in days:
        by_day[d["day"]][d["channel"]] = d
    parts.append("<h3>Daily values</h3>")
    if by_day:
        head = "".join(f"<th>{e(c)}</th>" for c in channels)
        rows = []
        for day, chans in sorted(by_day.items()):
            rep = day_reports.get(day, {})
            aqi = rep.get("aqi")
            aqi_doc = json.loads(rep["aqi_json"]) if rep.get("aqi_json") else {}
            if aqi is not None and rep.get("aqi_published"):
                rgb = aqi_doc.get("rgb") or _rgb_for_aqi(aqi)
                label = " ".join(
                    str(x)
                    for x in (
                        aqi,
                        aqi_doc.get("level"),
                        aqi_doc.get("category_zh"),
                        aqi_doc.get("category"),
                    )
                    if x
                )
                aqi_cell = f'<td class="l" style="{_css(rgb)}">{e(label)}</td>'
            else:
                aqi_cell = (
                    '<td class="l">no AQI indicator</td>'
                    if not aqi_doc.get("iaqi")
                    else '<td class="l">NA</td>'
                )
            cells = []
            for c in channels:
                d = chans.get(c)
                if d is None:
                    cells.append("<td>—</td>")
                elif d["valid"]:
                    cells.append(f"<td>{_fmt(d['mean'])} <small>({d['n_valid']}/24 h)</small></td>")
                else:
                    cells.append(
                        f'<td class="bad">invalid: {e(d["reason"] or "")} '
                        f"<small>({d['n_valid']}/24 h)</small></td>"
                    )
            good = {1: "yes", 0: "no"}.get(rep.get("good_day"), "—")
            rows.append(
                f'<tr><td class="l">{day}</td>{"".join(cells)}{aqi_cell}<td>{good}</td></tr>'
            )
        parts.append(
            f'<table><tr><th class="l">day</th>{head}'
            '<th class="l">daily AQI</th><th>good day</th></tr>' + "".join(rows) + "</table>"
        )
    else:
        parts.append("<p>No day closed in this run (a day closes with its 23:00 hour).</p>")
    # invalid hours
    bad = [h for h in hours if not h["valid"]]
    parts.append(f"<h3>Invalid hours ({len(bad)})</h3>")
    if bad:
        rows = "".join(
            f'<tr><td class="l">{datetime.fromtimestamp(h["hour_ts"], tz):%Y-%m-%d %H:00}</td>'
            f'<td class="l">{e(h["channel"])}</td><td>{h["n_valid"]}/60</td>'
            f"<td>{e(h['flag'] or '-')}</td>"
            f'<td class="l">{e(h["reason"] or "")}</td><td>{_fmt(h["partial_mean"])}</td></tr>'
            for h in bad[:200]
        )
        parts.append(
            '<table><tr><th class="l">hour</th><th class="l">channel</th><th>minutes</th>'
            '<th>flag</th><th class="l">reason</th><th>partial mean</th></tr>' + rows + "</table>"
        )
    # alarms
    parts.append(f"<h3>Alarms ({len(alarms)})</h3>")
    if alarms:
        rows = "".join(
            f'<tr><td class="l">{e(a["period_label"])}</td><td class="l">{e(a["event"])}</td>'
            f'<td class="l">{e(a["channel"])}</td><td class="l">{e(a["rule"])}</td>'
            f"<td>{_fmt(a['value'])}</td>"
            f"<td>{_fmt(a['limit'])} {e(UNIT_TEXT.get(a['unit'], a['unit']))}</td>"
            f"<td>{'yes' if a.get('confirmed') else 'no (local setting)'}</td>"
            f"<td>{a.get('n_exceeding', '')}</td><td>{_fmt(a.get('peak'))}</td></tr>"
            for a in alarms
        )
        parts.append(
            '<table><tr><th class="l">period</th><th class="l">event</th><th class="l">channel</th>'
            '<th class="l">rule</th><th>value</th><th>limit</th><th>confirmed</th>'
            "<th>exceeding periods</th><th>peak</th></tr>" + rows + "</table>"
        )
    return "\n".join(parts)
