"""`make demo`, shortened: the whole chain runs, reports, cleans up, and its numbers hold.

``python -m demo --quick`` simulates 6 hours (about 20 s here): the embedded amqtt broker,
three stations running the real firmware on MicroPython against emulated sensors, and the
gateway. The test then recomputes every closed hour from the raw signed minute records the
gateway stored, with code of its own (not native.aggregate, not gateway.results): counting
minutes are N or T with a value, the hour is valid with at least 45 of them, its mean is
their mean. It must find the numbers the gateway stored and published.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import math
import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from demo.broker import parse_broker_url
from demo.view import AQI_LEVELS, DemoState, LiveView, PlainView, paint, rgb_to_256
from tests.tooling import ROOT

COUNTING = ("N", "T")  # HJ 212 flags that count toward an average (spec §4)
MIN_MINUTES = 45  # GB 3095: an hourly value needs >= 45 minutes


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmd and entry.name != str(os.getpid()):
            found.append(f"{entry.name}: {cmd}")
    return found


@pytest.fixture(scope="module")
def demo_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("demo") / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "demo", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return out, proc


def test_quick_demo_exits_0_and_writes_the_report(demo_run) -> None:  # type: ignore[no-untyped-def]
    out, proc = demo_run
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "processes: none left behind" in proc.stdout
    for name in ("lantian.db", "gateway.toml", "gateway.log", "published.jsonl", "hourly.html"):
        assert (out / name).is_file(), name
    html = (out / "hourly.html").read_text(encoding="utf-8")
    for station in ("yb-town-01", "yb-site-07", "yb-plant-02"):
        assert station in html
        assert (out / "charts" / f"{station}-hourly.png").stat().st_size > 1000
    main = out / "index.html"
    if (ROOT / "gateway" / "report.py").exists():
        assert main.is_file() and main.stat().st_size > 0
    pngs = list(out.rglob("*.png"))
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs), pngs
    # The raw flash of the stations is gone, and nothing started for the run is alive.
    assert not list(out.glob(".flash-*"))
    assert _processes_mentioning(str(out)) == []


def _raw_minutes(db: Path, keys: dict[str, bytes]) -> dict[tuple[str, str, int], dict[str, Any]]:
    """(station, channel, minute ts) -> the channel's minute, from the signed raw records
    (each HMAC checked over the exact bytes stored)."""
    minutes: dict[tuple[str, str, int], dict[str, Any]] = {}
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT station, seq, ts, payload FROM records ORDER BY station, seq")
        for station, _seq, ts, payload in rows:
            body, _, sig = bytes(payload).rpartition(b"\n")
            want = hmac.new(keys[station], body, hashlib.sha256).hexdigest().encode()
            assert hmac.compare_digest(sig, want), f"bad signature in a stored record of {station}"
            rec = json.loads(body)
            assert rec["ts"] == ts and rec["time_valid"] is True
            for channel, ch in rec["ch"].items():
                key = (station, channel, ts)
                assert key not in minutes, f"two records for one minute: {key}"
                minutes[key] = ch
    return minutes


def _recompute(
    minutes: dict[tuple[str, str, int], dict[str, Any]],
) -> dict[tuple[str, str, int], tuple[bool, int, float | None]]:
    """(station, channel, hour ts) -> (valid, counted minutes, mean of the counted ones)."""
    sums: dict[tuple[str, str, int], list[float]] = defaultdict(list)
    for (station, channel, ts), ch in minutes.items():
        hour = ts - ts % 3600
        value = ch["mean"]
        counted = ch["flag"] in COUNTING and value is not None and math.isfinite(value)
        bucket = sums[(station, channel, hour)]
        if counted:
            assert ch["unit"] == "ug/m3", ch  # every demo channel reports µg/m³: no conversion
            bucket.append(float(value))
    out = {}
    for key, values in sums.items():
        n = len(values)
        mean = sum(values) / n if n else None
        out[key] = (n >= MIN_MINUTES, n, mean)
    return out


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def test_hourly_values_recomputed_from_the_raw_minutes_match(demo_run) -> None:  # type: ignore[no-untyped-def]
    out, proc = demo_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    keys = {s: bytes.fromhex(k) for s, k in json.loads((out / "keys.json").read_text()).items()}
    mine = _recompute(_raw_minutes(out / "lantian.db", keys))

    with closing(sqlite3.connect(f"file:{out / 'lantian.db'}?mode=ro", uri=True)) as conn:
        stored = conn.execute(
            "SELECT station, channel, hour_ts, valid, n_valid, mean, partial_mean, reason "
            "FROM hours ORDER BY station, hour_ts, channel"
        ).fetchall()
    assert len(stored) >= 3 * 5, stored  # 6 simulated hours, 7 channels: most closed
    invalid = 0
    for station, channel, hour_ts, valid, n_valid, mean, partial, reason in stored:
        my_valid, my_n, my_mean = mine.get((station, channel, hour_ts), (False, 0, None))
        where = f"{station} {channel} hour {hour_ts}"
        assert my_n == n_valid, f"{where}: {my_n} counted minutes, gateway {n_valid}"
        assert bool(valid) is my_valid, f"{where}: valid {my_valid}, gateway {valid} ({reason})"
        assert _close(partial, my_mean), f"{where}: mean {my_mean}, gateway partial {partial}"
        assert _close(mean, my_mean if my_valid else None), f"{where}: {my_mean} vs {mean}"
        invalid += not valid
    # The scenario's 20 minutes without PM data (02:00-02:20 local at the town station)
    # make that hour invalid for both PM channels, by the stored minutes alone.
    outage = 1574006400 + 2 * 3600
    for channel in ("pm25", "pm10"):
        assert mine[("yb-town-01", channel, outage)][0] is False
    assert invalid >= 2

    # What went out over MQTT says the same: one hourly result per closed station-hour.
    published: dict[tuple[str, int], dict[str, Any]] = {}
    for line in (out / "published.jsonl").read_text(encoding="utf-8").splitlines():
        msg = json.loads(line)
        if msg["topic"].startswith("lantian/v1/result/hour/"):
            doc = msg["payload"]
            key = (doc["station"], doc["hour_ts"])
            assert key not in published, f"hour published twice: {key}"
            published[key] = doc
    assert {(s, h) for s, _c, h, *_ in stored} == set(published)
    for (station, hour_ts), doc in published.items():
        for channel, ch in doc["channels"].items():
            my_valid, my_n, my_mean = mine.get((station, channel, hour_ts), (False, 0, None))
            assert ch["n_valid"] == my_n and ch["valid"] is my_valid, (station, channel, hour_ts)
            assert _close(ch["mean"], my_mean if my_valid else None), (station, channel, hour_ts)
            assert _close(ch["partial_mean"], my_mean), (station, channel, hour_ts)


# ------------------------------------------------------------------ pieces, no processes
def test_broker_urls() -> None:
    assert parse_broker_url("mqtt://127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert parse_broker_url("broker.local") == ("broker.local", 1883)
    assert parse_broker_url("tcp://h:18830/") == ("h", 18830)
    for bad in ("mqtts://h:8883", "mqtt://:1883", "mqtt://h:x", "mqtt://h:0"):
        with pytest.raises(ValueError):
            parse_broker_url(bad)


def test_aqi_colours_are_the_spec_rgb() -> None:
    # spec/standards.md §3, in 24-bit and the nearest xterm-256 colour
    rgbs = [row[4] for row in AQI_LEVELS]
    assert rgbs == [
        (0, 228, 0),
        (255, 255, 0),
        (255, 126, 0),
        (255, 0, 0),
        (153, 0, 76),
        (126, 0, 35),
    ]
    assert [rgb_to_256(c) for c in rgbs] == [40, 226, 208, 196, 89, 88]
    assert paint("x", (255, 126, 0), "24bit") == "\x1b[48;2;255;126;0;30mx\x1b[0m"
    assert paint("x", (126, 0, 35), "256") == "\x1b[48;5;88;97mx\x1b[0m"
    assert paint("x", (126, 0, 35), "") == "x"


def _hour(station: str, pm25: float, aqi: int) -> bytes:
    ch = {
        "pollutant": "pm25",
        "unit": "ug/m3",
        "mean": pm25,
        "partial_mean": pm25,
        "n_valid": 52,
        "n_expected": 60,
        "valid": True,
        "reason": None,
        "flag": "N",
        "minutes": {"N": 52, "none": 8},
        "max_single": pm25,
        "exceedances": [],
        "iaqi": aqi,
    }
    doc = {
        "v": 1,
        "type": "hour",
        "station": station,
        "hour_ts": 1574006400,
        "start": "2019-11-18T00:00+08:00",
        "closed_by": "watermark",
        "ruleset": "GB3095-2012/HJ663-2013",
        "limit_set": "GB3095-2012-II",
        "channels": {"pm25": ch},
        "aqi": {
            "aqi": aqi,
            "aqi_text": str(aqi),
            "level": "III",
            "category": "Lightly polluted",
            "category_zh": "轻度污染",
            "rgb": [255, 126, 0],
            "primary_pollutants": ["pm25_1h"],
            "iaqi": {"pm25_1h": aqi},
        },
    }
    return json.dumps(doc).encode()


def test_views_show_a_result_with_its_category() -> None:
    from datetime import timedelta, timezone

    state = DemoState([("yb-town-01", "town", ["pm25"])], timezone(timedelta(hours=8)))
    state.handle("lantian/v1/result/hour/yb-town-01", _hour("yb-town-01", 90.0, 120))
    state.handle(
        "lantian/v1/station/yb-town-01/status", b'{"online": false, "station": "yb-town-01"}'
    )
    live_out = io.StringIO()
    live = LiveView(state, "header", live_out)
    live.mode = "24bit"  # as on a truecolor terminal
    live.render(1574006400.0 + 3600, 0.5, 1.0, 2.0)
    screen = live_out.getvalue()
    assert "\x1b[48;2;255;126;0;30m 120 III 轻度污染 Lightly polluted \x1b[0m" in screen
    assert "○ offline" in screen and "52/60" in screen and "120◀" in screen
    plain_out = io.StringIO()
    plain = PlainView(state, "header", plain_out)
    plain.render(1574006400.0 + 3600, 0.5, 1.0, 2.0)
    text = plain_out.getvalue()
    assert "\x1b" not in text
    assert (
        "yb-town-01   offline hour 00:00: pm25 90.0 52/60 ok; [120 III 轻度污染 Lightly polluted]"
        in text
    )
