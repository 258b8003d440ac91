"""The operator's read-only status page: what ``lantian status`` says, over HTTP.

The gateway service runs it in a thread (``[web]`` in the config: ``host`` default
``127.0.0.1``, ``port`` default 8780, ``port = 0`` turns it off); ``lantian serve-status
--config FILE`` runs it alone (e.g. beside a gateway whose config turns it off).

==================  =========================================================
``GET /``           HTML: every station's state, last record, ring fill, bus
                    errors, firmware and calibration version; dead letters,
                    outbox and (when served by the gateway) its counters
``GET /status.json``  the document of ``lantian status --json``
anything else       404 for another path; 405 for any method but GET
==================  =========================================================

Every request reads the database on its own read-only connection (``mode=ro``): the
page can neither change nor lock the gateway's data. The HTML refreshes itself every 30 s.
"""

from __future__ import annotations

import argparse
import html
import json
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any

from gateway.status import DEFAULT_SILENT_AFTER_S, collect_from, table_rows

DEFAULT_PORT = 8780
STATE_COLOURS = {
    "online": "#1a7f37",
    "safe_mode": "#b35900",
    "offline": "#c62828",
    "silent": "#8a6d00",
    "never_seen": "#666666",
}


def _e(v: object) -> str:
    return html.escape("-" if v is None else str(v))


def render_html(doc: Mapping[str, Any], counters: Mapping[str, int] | None = None) -> str:
    """The status page for a :func:`gateway.status.collect` document."""
    rows = table_rows(doc)
    fields = [
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
    head = "".join(f"<th>{_e(h)}</th>" for h in rows[0])
    body = []
    for s, row in zip(doc["stations"], rows[1:], strict=True):
        cells = []
        for name, cell in zip(fields, row, strict=True):
            style = ' class="l"' if name in ("last_record", "fw") else ""
            if name == "state":
                style = f' style="color:#fff;background:{STATE_COLOURS.get(cell, "#666")}"'
            cells.append(f'<td data-field="{name}"{style}>{_e(cell)}</td>')
        body.append(f'<tr data-station="{_e(s["station"])}">{"".join(cells)}</tr>')
    dev_rows = []
    for s in doc["stations"]:
        for d in s["devices"] or []:
            dev_rows.append(
                f'<tr data-station="{_e(s["station"])}" data-device="{_e(d["device"])}">'
                f'<td>{_e(s["station"])}</td><td class="l">{_e(d["bus"])}</td>'
                f'<td class="l">{_e(d["device"])}</td><td class="l">{_e(d["state"])}</td>'
                f"<td data-field='polls'>{d['polls']}</td>"
                f"<td data-field='ok'>{d['ok']}</td>"
                f"<td data-field='timeouts'>{d['timeouts']}</td>"
                f"<td data-field='crc_errors'>{d['crc_errors']}</td>"
                f"<td data-field='exceptions'>{d['exceptions']}</td></tr>"
            )
    notes = []
    for s in doc["stations"]:
        if s["state"] != "online":
            notes.append(f"<li><b>{_e(s['station'])}</b>: {_e(s['reason'])}</li>")
        if s["maintenance"]:
            notes.append(f"<li><b>{_e(s['station'])}</b>: in maintenance (samples flagged M)</li>")
        if s["watchdog_stale_task"]:
            notes.append(
                f"<li><b>{_e(s['station'])}</b>: watchdog saw task "
                f"{_e(s['watchdog_stale_task'])} stall</li>"
            )
    summ = doc["summary"]
    dl = doc["dead_letters"]
    box = doc["outbox"]
    title = f"gateway {doc['gateway']}" if doc.get("gateway") else "gateway"
    dl_rows = "".join(
        f'<tr data-reason="{_e(r)}"><td>{_e(r)}</td><td>{n}</td></tr>'
        for r, n in dl["by_reason"].items()
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="refresh" content="30">',
        f"<title>Lantian {_e(title)}: stations</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}"
        "th{background:#eee}td:first-child,th:first-child,.l{text-align:left}"
        ".summary span{margin-right:1.2em}</style></head><body>",
        f"<h1>Lantian {_e(title)}: stations</h1>",
        f'<p class="summary" id="summary" data-stations="{summ["stations"]}">'
        f"<span>{summ['stations']} stations</span>"
        f'<span data-state="online">{summ["online"]} online</span>'
        f'<span data-state="safe_mode">{summ["safe_mode"]} safe mode</span>'
        f'<span data-state="offline">{summ["offline"]} offline</span>'
        f'<span data-state="silent">{summ["silent"]} silent</span>'
        f'<span data-state="never_seen">{summ["never_seen"]} never seen</span></p>',
        f'<table id="stations"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
        "</tbody></table>",
    ]
    if notes:
        parts.append(f'<h2>Notes</h2><ul id="notes">{"".join(notes)}</ul>')
    if dev_rows:
        parts.append(
            '<h2>Bus errors per device</h2><table id="devices"><thead><tr><th>station</th>'
            "<th>bus</th><th>device</th><th>state</th><th>polls</th><th>ok</th>"
            "<th>timeouts</th><th>crc errors</th><th>exceptions</th></tr></thead>"
            f"<tbody>{''.join(dev_rows)}</tbody></table>"
        )
    parts.append(
        f'<h2>Dead letters: <span id="dead-letters-total">{dl["total"]}</span></h2>'
        + (
            f'<table id="dead-letters"><thead><tr><th>reason</th><th>count</th></tr></thead>'
            f"<tbody>{dl_rows}</tbody></table>"
            if dl_rows
            else ""
        )
    )
    if box is not None:
        parts.append(
            f'<p id="outbox">Outbox: <span data-field="pending">{box["pending"]}</span> pending,'
            f' <span data-field="published">{box["published"]}</span> published'
            f" (oldest pending {_e(box['oldest_pending_age_s'])} s)</p>"
        )
    if counters:
        crow = "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in counters.items())
        parts.append(
            '<h2>Gateway counters</h2><table id="counters"><thead><tr><th>counter</th>'
            f"<th>value</th></tr></thead><tbody>{crow}</tbody></table>"
        )
    parts.append(
        f"<p><small>Times {_e(doc['utc_offset'])}; generated {_e(doc['generated'])}; "
        f"'silent' after {doc['silent_after_s']:g} s without a status or record. "
        'Machine-readable: <a href="status.json">status.json</a>.</small></p></body></html>'
    )
    return "\n".join(parts)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "lantian-status"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ("/", "/index.html", "/status.json"):
            self._send(HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8", b"not found\n")
            return
        try:
            doc = self.server.page.document()
        except (FileNotFoundError, sqlite3.Error) as error:
            text = f"status unavailable: {error}\n".encode()
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", text)
            return
        if path == "/status.json":
            data = json.dumps(doc, ensure_ascii=False, indent=1).encode()
            self._send(HTTPStatus.OK, "application/json", data)
        else:
            page = render_html(doc, self.server.page.counter_snapshot())
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", page.encode())

    def _refuse(self) -> None:
        self._send(
            HTTPStatus.METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            b"read-only: GET only\n",
            extra={"Allow": "GET"},
        )

    def __getattr__(self, name: str) -> Callable[[], None]:
        # http.server looks up do_<METHOD>: every method but GET is refused with 405.
        if name.startswith("do_"):
            return self._refuse
        raise AttributeError(name)

    def _send(
        self,
        status: HTTPStatus,
        ctype: str,
        data: bytes,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the gateway's log is JSON lines; requests are not worth a line each


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    page: StatusPage


class StatusPage:
    """The status page on ``host:port`` (``port=0``: a free port, see :attr:`port`)."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        utc_offset_s: int = 8 * 3600,
        gateway_id: str | None = None,
        known_stations: Callable[[], Sequence[str]] | None = None,
        counters: Callable[[], Mapping[str, int]] | None = None,
        silent_after_s: float = DEFAULT_SILENT_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db_path = Path(db_path)
        self.clock = clock
        self.host = host
        self.requested_port = port
        self.utc_offset_s = utc_offset_s
        self.gateway_id = gateway_id
        self.known_stations = known_stations
        self.counters = counters
        self.silent_after_s = silent_after_s
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_config(
        cls,
        cfg: Any,
        counters: Callable[[], Mapping[str, int]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> StatusPage | None:
        """The page a :class:`gateway.config.GatewayConfig` asks for (None: ``port = 0``)."""
        if cfg.web.port == 0:
            return None

        def known() -> list[str]:
            from gateway.keys import KeyStore, KeyStoreError

            try:
                return KeyStore.load(cfg.keys_path, missing_ok=True).stations()
            except (KeyStoreError, OSError):
                return []

        return cls(
            cfg.db_path,
            host=cfg.web.host,
            port=cfg.web.port,
            utc_offset_s=cfg.utc_offset_s,
            gateway_id=cfg.gateway_id,
            known_stations=known,
            counters=counters,
            clock=clock,
        )

    def document(self) -> dict[str, Any]:
        return collect_from(
            self.db_path,
            now=self.clock(),
            silent_after_s=self.silent_after_s,
            utc_offset_s=self.utc_offset_s,
            known_stations=self.known_stations() if self.known_stations else (),
            gateway_id=self.gateway_id,
        )

    def counter_snapshot(self) -> Mapping[str, int] | None:
        return None if self.counters is None else self.counters()

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        """Bind and serve in the ``lantian-web`` thread (``OSError`` if the port is taken)."""
        if self._server is not None:
            return
        server = _Server((self.host, self.requested_port), _Handler)
        server.page = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="lantian-web"
        )
        self._thread.daemon = True
        self._thread.start()

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = None
        self._thread = None

    def __enter__(self) -> StatusPage:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lantian serve-status",
        description="Serve the read-only status page (/ and /status.json) until Ctrl-C.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="the gateway's config (db, keys, utc_offset, [web])")
    src.add_argument("--db", type=Path, help="the gateway's database")
    p.add_argument("--host", help="address to bind (default: [web] host, or 127.0.0.1)")
    p.add_argument("--port", type=int, help=f"port (default: [web] port, or {DEFAULT_PORT})")
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.config is not None:
        from gateway.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as error:
            print(f"lantian serve-status: config error: {error}", file=sys.stderr)
            return 2
        page = StatusPage.for_config(cfg) or StatusPage(
            cfg.db_path, utc_offset_s=cfg.utc_offset_s, gateway_id=cfg.gateway_id
        )
        if page.requested_port == 0:
            page.requested_port = DEFAULT_PORT
    else:
        page = StatusPage(args.db, port=DEFAULT_PORT)
    if args.host:
        page.host = args.host
    if args.port is not None:
        page.requested_port = args.port
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        page.start()
    except OSError as error:
        print(
            f"lantian serve-status: cannot listen on {page.host}:{page.port}: {error}",
            file=sys.stderr,
        )
        return 1
    print(f"lantian serve-status: {page.url} (Ctrl-C to stop)", file=sys.stderr, flush=True)
    try:
        stop.wait()
    finally:
        page.stop()
    return 0
