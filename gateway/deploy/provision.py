"""``lantian provision``: a new station's identity -- its id and its secret device key.

The device key is 32 random bytes from :mod:`secrets` (HMAC-SHA256 keys gain nothing
beyond the hash's 32-byte output for our use, and the firmware accepts 16..64 bytes). It
exists in exactly two places: the gateway's key store (``gateway.keys.KeyStore``, a 0600
JSON file of station id -> hex key, which verifies every record) and the key file that
``lantian bundle`` puts on the board as ``key.bin`` (raw bytes, written 0600 here). It is
never printed.

A station that already has a key keeps it: provisioning again would make the gateway
reject every record the deployed board signs. Replacing a key is a deliberate act,
``--rotate``, after which the board needs a new bundle (docs/deploying.md).

Station ids follow the district's naming (``<district>-<kind>-<n>``, e.g. ``yb-town-01``):
give one with ``--station``, or a prefix with ``--prefix`` and a random suffix is added
(``yb-town-3fa9c2``); ids are ``a-z 0-9 - _``, at most 32 characters, as in the firmware.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.keys import KeyStore, KeyStoreError, write_private

KEY_BYTES = 32
STATION_MAX = 32
SUFFIX_HEX = 6  # 24 random bits: a clash is checked for, never assumed away
_STATION = re.compile(r"[a-z0-9_-]{1,32}")
_PREFIX = re.compile(r"[a-z0-9_-]{1,25}")


class ProvisionError(Exception):
    """Provisioning refused or failed; the message says why and what to do."""


class BadStationId(ProvisionError):
    """Bad usage: a station id or prefix that breaks the naming rule, or an unreadable
    gateway config."""


class StationExists(ProvisionError):
    """``station`` already has a key (in ``where``: the key store and/or the key file)."""

    def __init__(self, station: str, where: list[str]) -> None:
        self.station = station
        self.where = where
        super().__init__(
            f"station {station} already has a device key ({'; '.join(where)}); not replacing it. "
            "Use --rotate to replace it -- the board then needs a new bundle, and records "
            "signed with the old key are refused by the gateway."
        )


def skeleton_config(station: str, broker: str = "192.168.1.10", port: int = 1883) -> dict[str, Any]:
    """A schema-1 config that validates: one RS-485 bus with one particulate monitor.
    Edit buses, devices, channels and the broker to match the site (docs/firmware.md)."""
    return {
        "schema": 1,
        "station": station,
        "notes": "skeleton from lantian provision: edit buses, devices, channels and uplink",
        "buses": [
            {
                "name": "rs485a",
                "uart": 1,
                "baudrate": 9600,
                "bits": 8,
                "parity": None,
                "stop": 1,
                "tx": 17,
                "rx": 16,
                "de_pin": 4,
            }
        ],
        "devices": [
            {
                "name": "pm",
                "bus": "rs485a",
                "profile": "particulate",
                "address": 1,
                "poll_s": 5,
                "timeout_ms": None,
                "power_pin": None,
                "fail_limit": 3,
                "backoff_s": 60,
            }
        ],
        "channels": [
            {"name": "pm25", "device": "pm", "source": "pm25"},
            {"name": "pm10", "device": "pm", "source": "pm10"},
        ],
        "uplink": {
            "host": broker,
            "port": port,
            "keepalive_s": 60,
            "client_id": None,
            "topic_prefix": "lantian/v1",
            "user": None,
            "password": None,
        },
        "validity_fraction": 0.75,
        "store": {"dir": "ring", "slot_size": 512, "segments": 16, "slots_per_segment": 8},
        "time": {"ntp_host": "pool.ntp.org", "utc_offset_h": 8},
        "watchdog": {"timeout_ms": 8000},
    }


def new_station_id(prefix: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """``<prefix>-<6 random hex digits>``, not one of ``taken``."""
    if not _PREFIX.fullmatch(prefix):
        raise BadStationId(f"prefix {prefix!r}: use 1-25 of a-z, 0-9, '-' and '_'")
    for _ in range(100):
        station = f"{prefix}-{secrets.token_hex(SUFFIX_HEX // 2)}"
        if station not in taken:
            return station
    raise ProvisionError(f"no free station id with prefix {prefix!r} after 100 draws")


@dataclass(frozen=True)
class Provisioned:
    station: str
    key_file: Path
    keys_path: Path
    rotated: bool
    config: Path | None  # written now
    config_kept: Path | None  # existed, left as it was


def provision_station(
    keys_path: Path,
    out_dir: Path,
    *,
    station: str | None = None,
    prefix: str = "lt",
    rotate: bool = False,
    config: bool = False,
    broker: str = "192.168.1.10",
) -> Provisioned:
    """Create (or with ``rotate`` replace) ``station``'s device key, register it in the key
    store ``keys_path`` and write ``out_dir/<station>.key``; with ``config``, also
    ``out_dir/<station>.json`` unless it exists. ``StationExists`` without ``rotate``."""
    try:
        store = KeyStore.load(keys_path, missing_ok=True)
    except KeyStoreError as e:
        raise ProvisionError(f"key store: {e}") from e
    if station is None:
        station = new_station_id(prefix, set(store.stations()))
    elif not _STATION.fullmatch(station):
        raise BadStationId(f"station id {station!r}: use 1-32 of a-z, 0-9, '-' and '_'")
    key_file = out_dir / f"{station}.key"
    existing = []
    if station in store:
        existing.append(f"registered in {keys_path}")
    if key_file.exists():
        existing.append(f"key file {key_file} exists")
    if existing and not rotate:
        raise StationExists(station, existing)
    key = secrets.token_bytes(KEY_BYTES)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The key file first: if registering then fails, the store still holds the old key
    # (or none), and a rerun with --rotate settles both.
    write_private(key_file, key)
    try:
        store.add(station, key)
    except (KeyStoreError, OSError) as e:
        raise ProvisionError(f"key store {keys_path}: {e}; rerun with --rotate") from e
    written = kept = None
    if config:
        cfg_path = out_dir / f"{station}.json"
        if cfg_path.exists():
            kept = cfg_path
        else:
            cfg_path.write_text(
                json.dumps(skeleton_config(station, broker), indent=1) + "\n", encoding="utf-8"
            )
            written = cfg_path
    return Provisioned(station, key_file, keys_path, bool(existing), written, kept)


# ---------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    who = p.add_mutually_exclusive_group()
    who.add_argument("--station", help="the station id (a-z 0-9 - _, at most 32)")
    who.add_argument(
        "--prefix", default="lt", help="make an id: PREFIX-<6 random hex> (default lt)"
    )
    p.add_argument(
        "--keys",
        type=Path,
        help="the gateway's key store (default: keys.json, or the one --gateway-config names)",
    )
    p.add_argument(
        "--gateway-config", type=Path, help="take the key store path from this gateway config"
    )
    p.add_argument(
        "--out", type=Path, default=Path("."), help="folder for <station>.key / .json (default .)"
    )
    p.add_argument(
        "--config", action="store_true", help="also write a schema-1 config skeleton <station>.json"
    )
    p.add_argument("--broker", default="192.168.1.10", help="the skeleton's uplink.host")
    p.add_argument("--rotate", action="store_true", help="replace an existing station's key")


def _keys_path(args: argparse.Namespace) -> Path:
    if args.keys is not None:
        return Path(args.keys)
    if args.gateway_config is not None:
        from gateway.config import ConfigError, load_config

        try:
            return load_config(args.gateway_config).keys_path
        except (ConfigError, OSError) as e:
            raise BadStationId(f"gateway config {args.gateway_config}: {e}") from e
    return Path("keys.json")


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 provisioned, 1 refused (the station has a key; no --rotate) or failed,
    2 bad arguments or gateway config."""
    try:
        done = provision_station(
            _keys_path(args),
            args.out,
            station=args.station,
            prefix=args.prefix,
            rotate=args.rotate,
            config=args.config,
            broker=args.broker,
        )
    except StationExists as e:
        print(f"lantian provision: refused: {e}", file=sys.stderr)
        return 1
    except BadStationId as e:
        print(f"lantian provision: {e}", file=sys.stderr)
        return 2
    except ProvisionError as e:
        print(f"lantian provision: failed: {e}", file=sys.stderr)
        return 1
    print(f"station   {done.station}")
    print(
        f"key       {done.key_file} ({KEY_BYTES} bytes, mode 0600)"
        + (" -- ROTATED" if done.rotated else "")
    )
    print(f"keystore  {done.keys_path}: registered (mode 0600)")
    if done.config is not None:
        print(
            f"config    {done.config}: skeleton written; edit buses, devices, channels, uplink.host"
        )
    if done.config_kept is not None:
        print(f"config    {done.config_kept}: exists, left as it was")
    cfg = done.config or done.config_kept
    if cfg is None:
        cfg = done.key_file.with_suffix(".json")
        print(f"next      write {cfg} (schema 1, docs/firmware.md; --config writes a skeleton)")
    print(f"next      lantian bundle {cfg}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lantian provision", description="create a station id and device key"
    )
    configure_parser(p)
    return run(p.parse_args(argv))
