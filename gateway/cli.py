"""The ``lantian`` command (also ``python -m gateway``).

    lantian gateway run --config FILE            run the gateway until SIGTERM/SIGINT
    lantian gateway check-config --config FILE   load and check a config, print it
    lantian run / lantian check-config           the same, shorter (python -m gateway run)
    lantian provision / bundle / deploy ...      the deployer's tools (gateway/deploy/)
    lantian calibrate / maintenance / calibrations   the technician's (gateway/technician.py)
    lantian results month --config FILE --station S --channel C --month 2024-01
    lantian results year  --config FILE --station S --channel C --year 2024
    lantian results plan  --config FILE --station S --day 2019-06-30
    lantian outbox status --config FILE

Exit codes: 0 success, 1 the gateway failed while running, 2 bad usage or config.
Results are printed as JSON on stdout; logs go to stderr (or ``gateway.log_file``) as
JSON lines.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import signal
import sqlite3
import sys
import threading
from collections.abc import Sequence
from datetime import date
from types import FrameType
from typing import Any

from gateway import logging as gateway_logging
from gateway.config import ConfigError, GatewayConfig, load_config


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lantian", description="Lantian air-monitoring gateway")
    groups = parser.add_subparsers(dest="group", required=True)

    gw = groups.add_parser("gateway", help="run or check the gateway service").add_subparsers(
        dest="command", required=True
    )
    for name, text in (("run", "run until SIGTERM/SIGINT"), ("check-config", "check a config")):
        p = gw.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="TOML or JSON config file")

    for name, text in (("run", "= gateway run"), ("check-config", "= gateway check-config")):
        p = groups.add_parser(name, help=text)
        p.add_argument("--config", required=True, help="TOML or JSON config file")

    res = groups.add_parser("results", help="on-demand statistics").add_subparsers(
        dest="command", required=True
    )
    month = res.add_parser("month", help="monthly value of one channel")
    month.add_argument("--month", required=True, help="YYYY-MM")
    year = res.add_parser("year", help="annual value and HJ 663 percentiles of one channel")
    year.add_argument("--year", required=True, type=int)
    plan = res.add_parser("plan", help="plan progress after a local day")
    plan.add_argument("--day", required=True, help="YYYY-MM-DD")
    for p in (month, year, plan):
        p.add_argument("--config", required=True)
        p.add_argument("--station", required=True)
    for p in (month, year):
        p.add_argument("--channel", required=True)

    box = groups.add_parser("outbox", help="the publishing outbox").add_subparsers(
        dest="command", required=True
    )
    status = box.add_parser("status", help="pending and published counts")
    status.add_argument("--config", required=True)
    return parser


def _print(doc: Any) -> None:
    print(json.dumps(doc, ensure_ascii=False, indent=2, default=str))


def _config_doc(cfg: GatewayConfig) -> dict[str, Any]:
    """The effective config, secrets masked (``check-config`` prints it)."""
    mqtt = dataclasses.asdict(cfg.mqtt)
    if mqtt.get("password"):
        mqtt["password"] = "***"
    return {
        "gateway_id": cfg.gateway_id,
        "db_path": str(cfg.db_path),
        "keys_path": str(cfg.keys_path),
        "utc_offset_s": cfg.utc_offset_s,
        "grace_s": cfg.grace_s,
        "ingest_enabled": cfg.ingest_enabled,
        "log_level": cfg.log_level,
        "log_file": None if cfg.log_file is None else str(cfg.log_file),
        "mqtt": mqtt,
        "rules": dataclasses.asdict(cfg.rules),
        "batch": dataclasses.asdict(cfg.batch),
        "channels": dict(cfg.channels),
        "thresholds": [
            {
                "station": b.station,
                "channel": b.channel,
                "name": b.threshold.name,
                "averaging": b.threshold.averaging,
                "value": str(b.threshold.value),
                "unit": b.threshold.unit,
                "confirmed": b.threshold.confirmed,
            }
            for b in cfg.thresholds
        ],
        "plan": None if cfg.plan is None else cfg.plan.name,
    }


def _run(cfg: GatewayConfig) -> int:
    from gateway.service import GatewayService  # numpy, paho: only when running

    gateway_logging.configure(cfg.log_level, cfg.log_file)
    stop = threading.Event()
    service = GatewayService(cfg)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()
        service.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return service.run(stop)


def _results(args: argparse.Namespace, cfg: GatewayConfig) -> int:
    from gateway import results

    conn = sqlite3.connect(f"file:{cfg.db_path}?mode=ro", uri=True)
    try:
        if args.command == "month":
            year_text, month_text = args.month.split("-")
            stat = results.month_statistic(
                conn, cfg, args.station, args.channel, int(year_text), int(month_text)
            )
            _print(dataclasses.asdict(stat))
        elif args.command == "year":
            _print(
                dataclasses.asdict(
                    results.year_statistic(conn, cfg, args.station, args.channel, args.year)
                )
            )
        else:
            _print(results.plan_progress(conn, cfg, args.station, date.fromisoformat(args.day)))
    finally:
        conn.close()
    return 0


# The users' tools under the same `lantian` entry: the first word selects a
# ``module:function(argv) -> int``, imported only when used.
DELEGATED: dict[str, str] = {
    "provision": "gateway.deploy.provision:main",
    "bundle": "gateway.deploy.bundle:main",
    "deploy": "gateway.deploy.deploy:main",
    "calibrate": "gateway.technician:calibrate_main",
    "maintenance": "gateway.technician:maintenance_main",
    "calibrations": "gateway.technician:calibrations_main",
    "status": "gateway.status:main",
    "report": "gateway.report:main",
    "serve-status": "gateway.web:main",
}


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words and words[0] in DELEGATED:
        module, _, function = DELEGATED[words[0]].partition(":")
        command: Any = getattr(importlib.import_module(module), function)
        return int(command(words[1:]))
    args = _parser().parse_args(words)
    if args.group in ("run", "check-config"):
        args.group, args.command = "gateway", args.group
    try:
        cfg = load_config(args.config)
    except ConfigError as error:
        print(f"lantian: config error: {error}", file=sys.stderr)
        return 2
    if args.group == "gateway" and args.command == "check-config":
        _print(_config_doc(cfg))
        return 0
    if args.group == "gateway":
        return _run(cfg)
    try:
        if args.group == "results":
            return _results(args, cfg)
        from gateway import outbox

        conn = sqlite3.connect(f"file:{cfg.db_path}?mode=ro", uri=True)
        try:
            _print(dataclasses.asdict(outbox.stats(conn)))
        finally:
            conn.close()
        return 0
    except (sqlite3.Error, ValueError) as error:
        print(f"lantian: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
