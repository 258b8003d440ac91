"""``lantian status`` and the status page against real signed station status.

The statuses are the real firmware's: a ``firmware.station.Station`` on CPython (as in
test_schemas.py, with a stand-in ``machine``) closes minutes into its ring and reports
its bus counters; its ``status()`` is signed like ``Station._status_task`` does and fed
to ``gateway.status.apply_status``, the listener's core. The last-will is the exact bytes
firmware/station.py gives the broker.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from firmware import config as fw_config
from firmware import sign
from firmware.clock import ManualClock
from firmware.station import Station
from gateway import cli
from gateway.config import config_from_mapping
from gateway.counters import Counters
from gateway.status import apply_status, collect, collect_from, ensure_schema, render_text
from gateway.store import Store
from gateway.web import StatusPage
from hil_tests.broker import Mosquitto, free_port
from hil_tests.rig import DeviceSpec, station_config
from tests.gateway.gwhelpers import MinuteWriter
from tests.gateway.test_schemas import MACHINE

TS = 1764374400
KEYS = {
    "yb-town-01": b"a" * 32,
    "yb-site-07": b"b" * 32,
    "yb-plant-02": b"c" * 32,
    "yb-town-09": b"d" * 32,
    "yb-new-03": b"e" * 32,
}
PREFIX = "lantian/v1"


def topic(station: str) -> str:
    return f"{PREFIX}/station/{station}/status"


def make_station(tmp: Path, name: str) -> Station:
    cfg = station_config(
        name,
        1883,
        [
            DeviceSpec("pm", "particulate", 1, 5, {"pm25": "pm25", "pm10": "pm10"}),
            DeviceSpec("nox", "nox-analyser", 2, 10, {"no2": "no2"}),
        ],
    )
    root = tmp / name
    return Station(fw_config.validate(cfg), KEYS[name], ManualClock(TS), MACHINE, root=str(root))


def signed_status(st: Station) -> tuple[dict[str, Any], bytes]:
    """The status as firmware/station.py publishes it: JSON text, signed."""
    body = json.dumps(st.status()).encode()
    return json.loads(body), sign.signed_payload(st.key, body)


def will(station: str) -> bytes:  # firmware/station.py's will_payload, byte for byte
    return b'{"online": false, "station": "' + station.encode() + b'"}'


class World:
    """A store with five stations in five states, and what was published for them."""

    def __init__(self, tmp: Path) -> None:
        self.db = tmp / "gw.db"
        self.now = time.time()
        self.statuses: dict[str, dict[str, Any]] = {}
        self.stations: list[Station] = []
        with Store(self.db) as store:
            ensure_schema(store.conn)
            writer = MinuteWriter(store)
            minute = int(self.now) // 60 * 60
            # records: town-01 and site-07 recent, town-09 an hour ago
            for name, ago in (("yb-town-01", 120), ("yb-site-07", 60), ("yb-town-09", 3600)):
                writer.write(
                    name,
                    [(minute - ago - 60 * k, {"pm25": (30.0, "N")}) for k in range(5, 0, -1)],
                    self.now - ago,
                )
            self.last_seq = dict(writer.seq)
            # yb-town-01: running, with ring fill and bus errors
            st = make_station(tmp, "yb-town-01")
            self.stations.append(st)
            for m in range(7):
                for k in range(12):
                    st.sample(0, 30.0 + k, "N")
                st.close_minute(TS + 60 * m)
            st.ring.ack(st.ring.peek()[0])  # type: ignore[index]
            pm, nox = st.buses[0].devices
            pm.timeouts, pm.crc_errors, pm.exceptions = 4, 2, 1
            nox.timeouts, nox.crc_errors = 9, 0
            doc, payload = signed_status(st)
            self.statuses["yb-town-01"] = doc
            outcome = apply_status(store.conn, topic("yb-town-01"), payload, KEYS, now=self.now)
            assert outcome.kind == "status", outcome
            # yb-site-07: a status, then the broker's last-will
            st2 = make_station(tmp, "yb-site-07")
            self.stations.append(st2)
            doc2, payload2 = signed_status(st2)
            self.statuses["yb-site-07"] = doc2
            t = self.now - 50
            assert apply_status(store.conn, topic("yb-site-07"), payload2, KEYS, now=t).kind == (
                "status"
            )
            assert (
                apply_status(
                    store.conn, topic("yb-site-07"), will("yb-site-07"), KEYS, now=self.now - 10
                ).kind
                == "last_will"
            )
            # yb-plant-02: safe mode, signed (firmware/main.py _safe_mode)
            safe = fw_config.safe_mode_status(
                fw_config.ConfigError("devices[0].poll_s", "must be > 0"), "yb-plant-02"
            )
            safe["ts"] = TS
            body = json.dumps(safe).encode()
            assert (
                apply_status(
                    store.conn,
                    topic("yb-plant-02"),
                    sign.signed_payload(KEYS["yb-plant-02"], body),
                    KEYS,
                    now=self.now - 5,
                ).kind
                == "safe_mode"
            )
            # yb-town-09: records only, an hour old -> silent; yb-new-03: keys only

    def close(self) -> None:
        for st in self.stations:
            st.ring.close()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def by_station(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["station"]: s for s in doc["stations"]}


# ---------------------------------------------------------------- the facts


def test_every_station_in_its_state(world: World) -> None:
    doc = collect_from(world.db, known_stations=sorted(KEYS))
    s = by_station(doc)
    assert {k: v["state"] for k, v in s.items()} == {
        "yb-town-01": "online",
        "yb-site-07": "offline",
        "yb-plant-02": "safe_mode",
        "yb-town-09": "silent",
        "yb-new-03": "never_seen",
    }
    assert doc["summary"] == {
        "stations": 5,
        "online": 1,
        "safe_mode": 1,
        "offline": 1,
        "silent": 1,
        "never_seen": 1,
    }
    assert [k for k, v in s.items() if v["online"]] == ["yb-plant-02", "yb-town-01"]
    assert "devices[0].poll_s" in s["yb-plant-02"]["reason"]
    assert "last-will" in s["yb-site-07"]["reason"]


def test_numbers_are_the_stations_own(world: World) -> None:
    s = by_station(collect_from(world.db))["yb-town-01"]
    sent = world.statuses["yb-town-01"]
    ring = sent["ring"]
    assert ring["fill"] == 6 and ring["appended"] == 7 and ring["sent"] == 1
    assert s["ring"] == {
        "fill": ring["fill"],
        "capacity": ring["capacity"],
        "fill_pct": round(100 * ring["fill"] / ring["capacity"], 1),
        "dropped": ring["dropped"],
        "appended": ring["appended"],
        "sent": ring["sent"],
    }
    assert s["bus_errors"] == {"timeouts": 13, "crc_errors": 2, "exceptions": 1, "total": 16}
    devices = {d["device"]: d for d in s["devices"]}
    assert devices["pm"]["timeouts"] == 4 and devices["pm"]["crc_errors"] == 2
    assert devices["pm"]["exceptions"] == 1 and devices["pm"]["errors"] == 7
    assert devices["nox"]["timeouts"] == 9 and devices["nox"]["bus"] == "rs485a"
    assert s["fw"] == sent["fw"] and s["cal"] == sent["cal"]
    assert s["maintenance"] is False and s["station_ts"] == TS
    rec = s["last_record"]
    assert rec["seq"] == world.last_seq["yb-town-01"] == 5
    assert rec["ts"] % 60 == 0 and rec["time"].endswith("+08:00")
    # a station known from records only: versions from its last record
    silent = by_station(collect_from(world.db))["yb-town-09"]
    assert silent["fw"] == "test" and silent["cal"] == 1 and silent["ring"] is None
    assert silent["last_record"]["seq"] == world.last_seq["yb-town-09"]
    assert 3500 < silent["last_heard_age_s"] < 3700


def test_the_last_will_keeps_the_last_status(world: World) -> None:
    s = by_station(collect_from(world.db))["yb-site-07"]
    assert s["state"] == "offline" and s["online"] is False
    assert s["ring"]["capacity"] == world.statuses["yb-site-07"]["ring"]["capacity"]
    assert s["fw"] == world.statuses["yb-site-07"]["fw"]


def test_a_new_status_after_the_will_brings_the_station_back(world: World, tmp_path: Path) -> None:
    st = world.stations[1]
    _, payload = signed_status(st)
    with Store(world.db) as store:
        assert apply_status(store.conn, topic("yb-site-07"), payload, KEYS, now=world.now).kind
        assert by_station(collect(store.conn, now=world.now))["yb-site-07"]["state"] == "online"
        # nothing for longer than silent_after_s: silent
        later = collect(store.conn, now=world.now + 600, silent_after_s=180)
        assert by_station(later)["yb-site-07"]["state"] == "silent"


@pytest.mark.parametrize(
    "case", ["forged", "unsigned", "unknown", "mismatch", "bad_topic", "stale", "schema"]
)
def test_refused_statuses_change_nothing(world: World, case: str) -> None:
    st = world.stations[0]
    doc = st.status()
    station, t = "yb-town-01", topic("yb-town-01")
    if case == "forged":
        payload = sign.signed_payload(b"x" * 32, json.dumps(doc).encode())
        reason = "bad_signature"
    elif case == "unsigned":
        payload = json.dumps(doc).encode()
        reason = "unsigned"
    elif case == "unknown":
        t = topic("yb-ghost")
        payload = sign.signed_payload(b"x" * 32, json.dumps(doc).encode())
        reason = "unknown_station"
    elif case == "mismatch":
        t = topic("yb-site-07")
        payload = sign.signed_payload(KEYS["yb-site-07"], json.dumps(doc).encode())
        reason = "station_mismatch"
    elif case == "bad_topic":
        t = f"{PREFIX}/station/yb-town-01/state"
        payload = sign.signed_payload(KEYS[station], json.dumps(doc).encode())
        reason = "bad_topic"
    elif case == "stale":
        doc["ts"] = TS - 600
        doc["time_valid"] = True
        payload = sign.signed_payload(KEYS[station], json.dumps(doc).encode())
        reason = "stale"
    else:
        doc["ring"]["fill"] = -1
        payload = sign.signed_payload(KEYS[station], json.dumps(doc).encode())
        reason = "schema"
    counters = Counters()
    with Store(world.db) as store:
        before = store.conn.execute("SELECT * FROM station_status ORDER BY station").fetchall()
        if case == "stale":  # make the kept status time-valid, then replay an older one
            kept = dict(world.statuses[station], time_valid=True)
            good = sign.signed_payload(KEYS[station], json.dumps(kept).encode())
            apply_status(store.conn, t, good, KEYS, now=world.now)
            before = store.conn.execute("SELECT * FROM station_status ORDER BY station").fetchall()
        out = apply_status(store.conn, t, payload, KEYS, now=world.now + 1, counters=counters)
        after = store.conn.execute("SELECT * FROM station_status ORDER BY station").fetchall()
    assert out.kind == "rejected" and out.reason == reason, out
    assert before == after
    assert counters.get(f"status.rejected.{reason}") == 1


def test_an_empty_retained_message_is_ignored(world: World) -> None:
    with Store(world.db) as store:
        out = apply_status(store.conn, topic("yb-town-01"), b"", KEYS, now=world.now)
    assert out.kind == "cleared"


# ---------------------------------------------------------------- the command


def test_status_json_is_collect(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--db", str(world.db), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    ref = collect_from(world.db)
    for a, b in zip(doc["stations"], ref["stations"], strict=True):
        for key in ("station", "state", "last_record", "ring", "bus_errors", "devices", "fw"):
            if key == "last_record" and a[key] is not None:
                assert {k: v for k, v in a[key].items() if k != "age_s"} == {
                    k: v for k, v in b[key].items() if k != "age_s"
                }
            else:
                assert a[key] == b[key]


def test_status_table(world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({k: v.hex() for k, v in KEYS.items()}))
    os.chmod(keys, 0o600)
    conf = tmp_path / "gw.toml"
    conf.write_text('[gateway]\nid = "gw-test"\ndb = "gw.db"\nkeys = "keys.json"\n')
    assert cli.main(["status", "--config", str(conf)]) == 0
    out = capsys.readouterr().out
    table = out.split("\n\n")[0].splitlines()  # the station table comes first
    lines = {line.split()[0]: line.split() for line in table[1:]}
    town = lines["yb-town-01"]
    ring = world.statuses["yb-town-01"]["ring"]
    assert town[1] == "online"
    assert f"{ring['fill']}/{ring['capacity']}" in town
    assert town[-2:] == [
        world.statuses["yb-town-01"]["fw"],
        str(world.statuses["yb-town-01"]["cal"]),
    ]
    assert town[8:11] == ["13", "2", "1"]  # timeouts, crc, exceptions
    assert lines["yb-new-03"][1] == "never_seen"
    assert "bus errors per device:" in out and "5 stations: 1 online" in out
    assert render_text(collect_from(world.db)).splitlines()[0].startswith("STATION")


def test_status_without_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--db", str(tmp_path / "none.db")]) == 2
    assert "no such database" in capsys.readouterr().err


# ---------------------------------------------------------------- the page


def _get(url: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def test_the_page_serves_the_same_facts_read_only(world: World) -> None:
    with StatusPage(world.db, port=0) as page:
        code, body, headers = _get(page.url + "status.json")
        assert code == 200 and headers["Content-Type"] == "application/json"
        served = json.loads(body)
        code, html_body, _ = _get(page.url)
        assert code == 200
        text = html_body.decode()
        for method in ("POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"):
            code, _, headers = _get(page.url + "status.json", method)
            assert code == 405, method
            assert headers.get("Allow") == "GET"
        assert _get(page.url + "nothing")[0] == 404
    ref = by_station(collect_from(world.db))
    for s in served["stations"]:
        r = ref[s["station"]]
        assert (s["state"], s["ring"], s["bus_errors"], s["fw"], s["cal"]) == (
            r["state"],
            r["ring"],
            r["bus_errors"],
            r["fw"],
            r["cal"],
        )
    ring = world.statuses["yb-town-01"]["ring"]
    assert f"{ring['fill']}/{ring['capacity']}" in text
    assert 'data-station="yb-town-01"' in text and ">online<" in text


def test_the_page_is_off_with_port_zero(tmp_path: Path) -> None:
    cfg = config_from_mapping({"gateway": {"id": "g"}, "web": {"port": 0}}, base_dir=tmp_path)
    assert StatusPage.for_config(cfg) is None
    cfg = config_from_mapping({"gateway": {"id": "g"}}, base_dir=tmp_path)
    assert (cfg.web.host, cfg.web.port) == ("127.0.0.1", 8780)


# ---------------------------------------------------------------- in the service


def test_the_gateway_service_keeps_status_and_serves_the_page(tmp_path: Path) -> None:
    from gateway.service import GatewayService

    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps({k: v.hex() for k, v in KEYS.items()}))
    os.chmod(keys, 0o600)
    st = make_station(tmp_path, "yb-town-01")
    _, payload = signed_status(st)
    st.ring.close()
    web_port = free_port()
    with Mosquitto() as broker:
        cfg = config_from_mapping(
            {
                "gateway": {"id": "gw-status", "db": "gw.db", "keys": "keys.json"},
                "mqtt": {"port": broker.port},
                "batch": {"engine_interval_s": 0.2},
                "web": {"port": web_port},
            },
            base_dir=tmp_path,
        )
        # the station's retained status is on the broker before the gateway starts
        pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="yb-town-01")
        pub.will_set(topic("yb-town-01"), will("yb-town-01"), qos=1, retain=True)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        pub.publish(topic("yb-town-01"), payload, qos=1, retain=True).wait_for_publish(10)
        service = GatewayService(cfg)
        stop = threading.Event()
        runner = threading.Thread(target=service.run, args=(stop,))
        runner.start()
        try:
            url = f"http://127.0.0.1:{web_port}/status.json"

            def state() -> str | None:
                try:
                    doc = json.loads(_get(url)[1])
                except (OSError, ValueError):
                    return None
                s = by_station(doc).get("yb-town-01")
                return None if s is None else str(s["state"])

            deadline = time.monotonic() + 20
            while state() != "online" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert state() == "online"
            # the station vanishes without DISCONNECT: the broker publishes its will
            pub.loop_stop()
            pub.socket().close()  # type: ignore[union-attr]
            deadline = time.monotonic() + 20
            while state() != "offline" and time.monotonic() < deadline:
                time.sleep(0.1)
            assert state() == "offline"
            assert service.counters.get("status.last_will") == 1
        finally:
            stop.set()
            service.wake()
            runner.join(30)
    assert not runner.is_alive()
