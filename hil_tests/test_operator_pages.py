"""The operator's pages in a real browser: the validity report and the status page,
rendered by headless Chromium, screenshotted, and read back from the browser's DOM.

The status facts travel the real path: the firmware's ``Station.status()`` (CPython,
stand-in ``machine``), signed, published retained on a real mosquitto, taken in by the
gateway's :class:`gateway.status.StatusListener`; a second station's connection dies and
mosquitto publishes its last-will. The page the browser shows must carry the same numbers
as ``lantian status --json`` (run as a command) and ``/status.json``.

Chromium is a required tool (``make setup`` installs it): missing, this test FAILS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from html import unescape
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware import sign
from gateway.counters import Counters
from gateway.status import StatusListener, ensure_schema, table_rows
from gateway.store import Store
from gateway.web import StatusPage
from hil_tests.broker import Mosquitto
from tests.gateway.gwhelpers import MinuteWriter
from tests.gateway.test_report import STATION, cells, synthetic_year
from tests.gateway.test_status_cli import KEYS, make_station, topic, will

ROOT = Path(__file__).resolve().parents[1]
FIELDS = [
    "station",
    "state",
    "last_record",
    "seq",
    "age",
    "ring",
    "fill_pct",
    "dropped",
    "timeouts",
    "crc_errors",
    "exceptions",
    "fw",
    "cal",
]


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        "Chromium is missing: run `make setup` (it installs the Debian package with "
        "apt-get when run as root) or `sudo apt-get install chromium`",
        pytrace=False,
    )


def browse(url: str, tmp: Path, *, screenshot: Path | None = None) -> str:
    """Headless Chromium on ``url``: the DOM after scripts ran, or a screenshot."""
    profile = tmp / f"chromium-profile-{time.monotonic_ns()}"
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
    ]
    if screenshot is not None:
        args += [f"--screenshot={screenshot}", "--window-size=1280,2000"]
    else:
        args += ["--dump-dom"]
    proc = subprocess.run([*args, url], capture_output=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    if screenshot is not None:
        assert screenshot.exists() and screenshot.stat().st_size > 10_000, "empty screenshot"
        assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return proc.stdout.decode("utf-8")


def dom_table(dom: str) -> dict[str, dict[str, str]]:
    """The station table as the browser built it: station -> field -> text."""
    rows: dict[str, dict[str, str]] = {}
    for station, row in re.findall(r'<tr data-station="([^"]+)">(.*?)</tr>', dom, re.S):
        if "data-device" in row:
            continue
        fields = dict(re.findall(r'<td data-field="([a-z_]+)"[^>]*>([^<]*)</td>', row))
        rows[unescape(station)] = {k: unescape(v) for k, v in fields.items()}
    return rows


def close_client(client: mqtt.Client) -> None:
    client.loop_stop()
    for name in ("_sockpairR", "_sockpairW"):  # see hil_tests/subscriber.py
        sock = getattr(client, name, None)
        if sock is not None:
            sock.close()


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_status_page_and_report_in_chromium(tmp_path: Path, broker: Mosquitto) -> None:
    chromium()  # fail first, and clearly, when the browser is missing
    db = tmp_path / "gw.db"
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps({k: v.hex() for k, v in KEYS.items()}))
    os.chmod(keys_file, 0o600)

    # records: the report's synthetic year, and recent minutes for two stations
    synthetic_year(db)
    now = time.time()
    with Store(db) as store:
        ensure_schema(store.conn)
        writer = MinuteWriter(store)
        minute = int(now) // 60 * 60
        for name in ("yb-town-01", "yb-site-07"):
            writer.write(
                name, [(minute - 60 * k, {"pm25": (30.0, "N")}) for k in range(3, 0, -1)], now
            )

    # the real firmware's status, with errors on its bus, through a real broker
    st = make_station(tmp_path, "yb-town-01")
    st2 = make_station(tmp_path, "yb-site-07")
    try:
        for m in range(5):
            for k in range(12):
                st.sample(0, 30.0 + k, "N")
            st.close_minute(1764374400 + 60 * m)
        pm, nox = st.buses[0].devices
        pm.timeouts, pm.crc_errors, pm.exceptions = 5, 3, 2
        nox.timeouts = 11
        status_body = json.dumps(st.status()).encode()
        status2 = json.dumps(st2.status()).encode()
    finally:
        st.ring.close()
        st2.ring.close()
    counters = Counters()
    listener = StatusListener(
        db, keys_file, "127.0.0.1", broker.port, client_id="gw-status", counters=counters
    )
    listener.start()
    town = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="yb-town-01")
    site = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="yb-site-07")
    site.will_set(topic("yb-site-07"), will("yb-site-07"), qos=1, retain=True)
    try:
        for client in (town, site):
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
        town.publish(
            topic("yb-town-01"), sign.signed_payload(KEYS["yb-town-01"], status_body), 1, True
        ).wait_for_publish(10)
        site.publish(
            topic("yb-site-07"), sign.signed_payload(KEYS["yb-site-07"], status2), 1, True
        ).wait_for_publish(10)
        wait_for(lambda: counters.get("status.stored") == 2)
        site.loop_stop()
        site.socket().close()  # type: ignore[union-attr]  # dies: mosquitto sends the will
        wait_for(lambda: counters.get("status.last_will") == 1)
    finally:
        town.disconnect()
        close_client(town)
        close_client(site)
        listener.stop()
    assert counters.get("status.rejected") == 0

    # `lantian status --json`, the command itself
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "status",
            "--db",
            str(db),
            "--keys",
            str(keys_file),
            "--json",
        ],
        capture_output=True,
        timeout=60,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    cli_doc = json.loads(proc.stdout)
    cli_rows = {r[0]: dict(zip(FIELDS, r, strict=True)) for r in table_rows(cli_doc)[1:]}
    assert cli_rows["yb-town-01"]["state"] == "online"
    assert cli_rows["yb-site-07"]["state"] == "offline"
    assert (cli_rows["yb-town-01"]["timeouts"], cli_rows["yb-town-01"]["crc_errors"]) == ("16", "3")

    # `lantian report`, the command (matplotlib keeps its fonts open: not in this process)
    reports = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway",
            "report",
            "--db",
            str(db),
            "--station",
            STATION,
            "--from",
            "2019-01-01",
            "--to",
            "2019-12-31",
            "--out",
            str(reports),
        ],
        capture_output=True,
        timeout=300,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    index = Path(proc.stdout.decode().strip())
    assert index == reports / "index.html"
    assert b"report: 365/365 days (100%)" in proc.stderr
    with StatusPage(db, port=0, known_stations=lambda: sorted(KEYS)) as page:
        with urllib.request.urlopen(page.url + "status.json", timeout=10) as resp:
            served = json.loads(resp.read())
        dom = browse(page.url, tmp_path)
        browse(page.url, tmp_path, screenshot=tmp_path / "status-page.png")
    browse(index.as_uri(), tmp_path, screenshot=tmp_path / "report.png")
    report_dom = browse(index.as_uri(), tmp_path)

    # the page shows what `lantian status` says (all but the ages, which tick)
    shown = dom_table(dom)
    assert set(shown) == set(cli_rows) == set(KEYS) | {STATION}
    for station, row in cli_rows.items():
        for name in FIELDS:
            if name != "age":
                assert shown[station][name] == row[name], (station, name)
    # and /status.json is the command's document
    for a, b in zip(served["stations"], cli_doc["stations"], strict=True):
        for key in ("station", "state", "online", "ring", "bus_errors", "devices", "fw", "cal"):
            assert a[key] == b[key], (a["station"], key)
    assert served["summary"] == cli_doc["summary"]
    # the devices table in the browser
    for d in cli_doc["stations"][[s["station"] for s in cli_doc["stations"]].index("yb-town-01")][
        "devices"
    ]:
        row = re.search(
            rf'<tr data-station="yb-town-01" data-device="{d["device"]}">(.*?)</tr>', dom, re.S
        )
        assert row is not None
        got = dict(re.findall(r'data-field="([a-z_]+)">(\d+)<', row.group(1)))
        assert got["timeouts"] == str(d["timeouts"]) and got["crc_errors"] == str(d["crc_errors"])

    # the report as the browser shows it: the numbers are the written file's
    written = cells(index.read_text(encoding="utf-8"))
    rendered = cells(report_dom)
    assert rendered == written and len(rendered) > 1000
    for name in ("status-page.png", "report.png"):
        assert (tmp_path / name).stat().st_size > 20_000
