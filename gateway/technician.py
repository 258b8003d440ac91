"""The technician's tools: signed calibration and maintenance commands, and their history.

``lantian calibrate STATION CHANNEL zero|span [VALUE]`` and ``lantian maintenance STATION
on|off`` build a command body (docs/topics.md, firmware/sign.py), sign it with the
station's device key from the gateway's key store, publish it QoS 1 on
``<prefix>/station/<id>/cmd``, wait for the station's signed acknowledgement on
``.../ack`` (matched by nonce, signature verified), and print the constants before and
after. Every command sent and every acknowledgement (or its absence) is written to the
gateway's audit table, so the history exists at both ends: on the station
(``audit.log``) and here. ``lantian calibrations STATION`` prints that history.

The command expires ``ttl`` seconds after it is sent (the station refuses it later and
accepts at most 600 s ahead), and carries a fresh random nonce, so a recorded command
cannot be replayed. Expiry is judged by the station's clock: with ``--station-time
status`` the tool takes "now" from the station's own signed retained status instead of
this machine's clock -- for a station whose clock is not synced yet (its records say
``time_valid: false``) or runs in simulated time.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.keys import KeyStore

DEFAULT_TTL_S = 120
AUDIT_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    station TEXT NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    channel TEXT,
    nonce TEXT,
    ok INTEGER,
    reason TEXT,
    request TEXT NOT NULL,
    response TEXT
)
"""


class CommandError(RuntimeError):
    """A command that could not be delivered or was refused; ``reason`` says which."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Ack:
    body: dict[str, Any]

    @property
    def ok(self) -> bool:
        return bool(self.body.get("ok"))


def sign_payload(key: bytes, body: bytes) -> bytes:
    return body + b"\n" + hmac.new(key, body, hashlib.sha256).hexdigest().encode()


def verify_payload(key: bytes, payload: bytes) -> bytes | None:
    body, sep, sig = payload.rpartition(b"\n")
    if not sep:
        return None
    want = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    return body if hmac.compare_digest(sig, want) else None


def build_command(
    station: str, cmd: str, now: float, ttl_s: int = DEFAULT_TTL_S, **fields: Any
) -> dict[str, Any]:
    return {
        "station": station,
        "nonce": secrets.token_hex(12),
        "exp": int(now) + ttl_s,
        "cmd": cmd,
        **fields,
    }


class Audit:
    """The gateway's audit table (in the gateway's SQLite database)."""

    def __init__(self, db_path: Path) -> None:
        self.conn = sqlite3.connect(str(db_path), timeout=10)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute(AUDIT_SCHEMA)
        self.conn.commit()

    def record(
        self,
        station: str,
        who: str,
        action: str,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        ok: bool | None,
        reason: str | None,
    ) -> None:
        with self.conn:
            self.conn.execute(
                "INSERT INTO audit (ts, station, who, action, channel, nonce, ok, reason,"
                " request, response) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    time.time(),
                    station,
                    who,
                    action,
                    request.get("channel"),
                    request.get("nonce"),
                    None if ok is None else int(ok),
                    reason,
                    json.dumps(request, sort_keys=True),
                    None if response is None else json.dumps(response, sort_keys=True),
                ),
            )

    def history(self, station: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT ts, who, action, channel, nonce, ok, reason, request, response FROM audit"
            " WHERE station = ? ORDER BY id DESC LIMIT ?",
            (station, limit),
        ).fetchall()
        out = []
        for ts, who, action, channel, nonce, ok, reason, request, response in reversed(rows):
            out.append(
                {
                    "ts": ts,
                    "who": who,
                    "action": action,
                    "channel": channel,
                    "nonce": nonce,
                    "ok": None if ok is None else bool(ok),
                    "reason": reason,
                    "request": json.loads(request),
                    "response": None if response is None else json.loads(response),
                }
            )
        return out

    def close(self) -> None:
        self.conn.close()


def station_time(
    host: str, port: int, prefix: str, key: bytes, station: str, timeout_s: float
) -> int:
    """``ts`` of the station's retained status (signature verified)."""
    topic = f"{prefix.rstrip('/')}/station/{station}/status"
    got: list[int] = []
    done = threading.Event()

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe(topic, qos=1)

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = verify_payload(key, bytes(msg.payload))
        if body is None:
            return
        try:
            ts = json.loads(body).get("ts")
        except (ValueError, AttributeError):
            return
        if isinstance(ts, int):
            got.append(ts)
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"lantian-tech-{secrets.token_hex(4)}"
    )
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise CommandError("broker_unreachable", f"{host}:{port}: {e}") from e
    client.loop_start()
    try:
        if not done.wait(timeout_s):
            raise CommandError("no_status", f"no signed retained status from {station}")
        return got[-1]
    finally:
        client.disconnect()
        client.loop_stop()


def send_command(
    host: str,
    port: int,
    prefix: str,
    key: bytes,
    command: dict[str, Any],
    timeout_s: float = 30.0,
) -> Ack:
    """Publish ``command`` signed with ``key`` and wait for the station's signed ack."""
    station = command["station"]
    base = f"{prefix.rstrip('/')}/station/{station}"
    got: list[dict[str, Any]] = []
    forged = [0]
    done = threading.Event()
    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, *_: Any) -> None:
        client.subscribe(base + "/ack", qos=1)

    def on_subscribe(*_: Any) -> None:
        subscribed.set()

    def on_message(_c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        body = verify_payload(key, bytes(msg.payload))
        if body is None:
            forged[0] += 1  # not from the station: ignored, counted
            return
        try:
            ack = json.loads(body)
        except ValueError:
            return
        if isinstance(ack, dict) and ack.get("nonce") == command["nonce"]:
            got.append(ack)
            done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"lantian-tech-{secrets.token_hex(4)}"
    )
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(host, port, keepalive=30)
    except OSError as e:
        raise CommandError("broker_unreachable", f"{host}:{port}: {e}") from e
    client.loop_start()
    try:
        if not subscribed.wait(timeout_s):
            raise CommandError("broker_unreachable", "no SUBACK")
        payload = sign_payload(key, json.dumps(command).encode())
        info = client.publish(base + "/cmd", payload, qos=1)
        info.wait_for_publish(timeout_s)
        if not done.wait(timeout_s):
            raise CommandError("no_ack", f"station {station} did not answer in {timeout_s:g} s")
        return Ack(got[0])
    finally:
        client.disconnect()
        client.loop_stop()


# ------------------------------------------------------------------ command line
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT of the broker")
    p.add_argument("--prefix", default="lantian/v1")
    p.add_argument("--keys", type=Path, required=True, help="the gateway's key store file")
    p.add_argument("--db", type=Path, required=True, help="the gateway's database (audit)")
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--who", default="technician", help="name written to the audit log")
    p.add_argument(
        "--station-time",
        choices=["wall", "status"],
        default="wall",
        help="clock the command's expiry is set against: this machine's, or the station's"
        " own (from its signed retained status; for unsynced or simulated stations)",
    )


def _run(args: argparse.Namespace, station: str, cmd: str, **fields: Any) -> int:
    host, _, port_text = args.broker.rpartition(":")
    host = host or "127.0.0.1"
    port = int(port_text)
    keys = KeyStore.load(args.keys)
    key = keys.get(station)
    if key is None:
        print(f"error: no key for station {station} in {args.keys}")
        return 2
    audit = Audit(args.db)
    action = cmd
    command = build_command(station, cmd, time.time(), **fields)
    try:
        if args.station_time == "status":
            now = station_time(host, port, args.prefix, key, station, args.timeout)
            command = build_command(station, cmd, now, **fields)
        ack = send_command(host, port, args.prefix, key, command, args.timeout)
    except CommandError as e:
        audit.record(command["station"], args.who, action, command, None, None, e.reason)
        audit.close()
        print(f"error: {e}")
        return 1
    audit.record(
        command["station"], args.who, action, command, ack.body, ack.ok, ack.body.get("reason")
    )
    audit.close()
    if not ack.ok:
        print(f"refused by the station: {ack.body.get('reason')} {ack.body.get('detail', '')}")
        return 1
    print(f"station {command['station']}: {action} done, calibration version {ack.body.get('cal')}")
    print(f"  before: {json.dumps(ack.body.get('before'))}")
    print(f"  after:  {json.dumps(ack.body.get('after'))}")
    return 0


def calibrate_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lantian calibrate", description=__doc__.split("\n")[0])
    p.add_argument("station")
    p.add_argument("channel")
    p.add_argument("action", choices=["zero", "span", "reset", "on", "off"])
    p.add_argument(
        "value",
        nargs="?",
        type=float,
        help="zero: the zero reading (default: the station's latest raw reading);"
        " span: the span gas concentration (required)",
    )
    _common(p)
    args = p.parse_args(argv)
    fields: dict[str, Any] = {"channel": args.channel}
    if args.action == "zero":
        cmd = "zero"
        if args.value is not None:
            fields["value"] = args.value
    elif args.action == "span":
        if args.value is None:
            p.error("span needs VALUE: the span gas concentration")
        cmd = "span"
        fields["reference"] = args.value
    elif args.action == "reset":
        cmd = "reset"
    else:  # on/off: the channel's calibration mode (samples flagged C)
        cmd = "calibration"
        fields["on"] = args.action == "on"
    return _run(args, args.station, cmd, **fields)


def maintenance_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lantian maintenance")
    p.add_argument("station")
    p.add_argument("state", choices=["on", "off"])
    _common(p)
    args = p.parse_args(argv)
    return _run(args, args.station, "maintenance", on=args.state == "on")


def calibrations_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="lantian calibrations")
    p.add_argument("station")
    p.add_argument("--db", type=Path, required=True)
    p.add_argument("--limit", type=int, default=50)
    args = p.parse_args(argv)
    audit = Audit(args.db)
    rows = audit.history(args.station, args.limit)
    audit.close()
    if not rows:
        print(f"no commands recorded for {args.station}")
        return 0
    for r in rows:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["ts"]))
        status = (
            "ok" if r["ok"] else f"refused ({r['reason']})" if r["ok"] is False else r["reason"]
        )
        resp = r["response"] or {}
        print(
            f"{when}Z {r['who']:<12} {r['action']:<12} {r['channel'] or '-':<8} {status:<20}"
            f" cal={resp.get('cal', '-')} before={json.dumps(resp.get('before'))}"
            f" after={json.dumps(resp.get('after'))}"
        )
    return 0
