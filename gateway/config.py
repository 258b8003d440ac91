"""The gateway's configuration file (``lantian gateway run --config FILE``), documented in
docs/gateway.md "Configuration".

TOML (``*.toml``) or JSON (``*.json``), the same tree either way. Every section and key is
optional except ``gateway.id``; every key that is not documented is an error
(:class:`ConfigError` names it with its dotted path), so a typo never turns into a silent
default. Relative paths are resolved against the config file's folder.

Names are checked against the standards package when the file is loaded: an unknown rule
set, limit set, AQI generation, pollutant or site threshold fails at start, not at the
first hour close.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from gateway.standards import (
    DEFAULT_PLAN,
    GENERATIONS,
    LIMIT_SETS,
    RULESETS,
    SITE_THRESHOLDS,
    Plan,
    PlanTarget,
    SiteThreshold,
    StandardsError,
    custom_threshold,
)

AUTO: Final = "auto"
"""``rules.ruleset`` / ``rules.aqi``: pick by the data's local date (the 2026 generation
from 2026-03-01). ``rules.limit_set = "auto-I"`` / ``"auto-II"`` does the same per grade."""
AQI_OFF: Final = "off"

POLLUTANTS: Final[tuple[str, ...]] = (
    "so2",
    "no2",
    "no",
    "co",
    "o3",
    "pm10",
    "pm25",
    "nox",
    "nmhc",
    "tsp",
    "tvoc",
)
"""Pollutant names a channel may map to (GB 3095 ones plus the site-threshold ones)."""

DEFAULT_CHANNEL_MAP: Final[Mapping[str, str]] = MappingProxyType(
    {
        "pm25": "pm25",
        "pm2.5": "pm25",
        "pm2_5": "pm25",
        "pm10": "pm10",
        "so2": "so2",
        "no2": "no2",
        "no": "no",
        "nox": "nox",
        "co": "co",
        "o3": "o3",
        "nmhc": "nmhc",
        "tsp": "tsp",
        "tvoc": "tvoc",
    }
)

_UTC_OFFSET = re.compile(r"([+-])(\d{2}):(\d{2})")
_TOPIC_PREFIX = re.compile(r"[^#+\s]+[^/#+\s]")


class ConfigError(ValueError):
    """The config file is unreadable or wrong; ``where`` is the dotted key path (or the
    file), ``message`` what is wrong with it."""

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True, slots=True)
class ThresholdBinding:
    """A site threshold applied to one station's channel (``station="*"``: every station)."""

    station: str
    channel: str
    threshold: SiteThreshold

    def applies(self, station: str, channel: str) -> bool:
        return self.station in ("*", station) and self.channel == channel


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    prefix: str = "lantian/v1"
    keepalive: int = 30
    username: str | None = None
    password: str | None = None


@dataclass(frozen=True, slots=True)
class RulesConfig:
    ruleset: str = "GB3095-2012/HJ663-2013"
    limit_set: str = "GB3095-2012-II"
    aqi: str = "HJ633-2012"
    warning_days: int = 7


@dataclass(frozen=True, slots=True)
class BatchConfig:
    ingest_batch_size: int = 500
    ingest_flush_s: float = 0.5
    engine_interval_s: float = 1.0
    max_hours_per_tick: int = 48
    publish_window: int = 20
    status_interval_s: float = 30.0
    shutdown_timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class WebConfig:
    """The read-only status page (gateway/web.py); ``port = 0`` turns it off."""

    host: str = "127.0.0.1"
    port: int = 8780


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole configuration (see docs/gateway.md for each key)."""

    gateway_id: str
    db_path: Path
    keys_path: Path
    utc_offset_s: int = 8 * 3600
    grace_s: int = 3600
    ingest_enabled: bool = True
    log_level: str = "info"
    log_file: Path | None = None
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    channels: Mapping[str, str] = field(default_factory=lambda: DEFAULT_CHANNEL_MAP)
    thresholds: tuple[ThresholdBinding, ...] = ()
    plan: Plan | None = DEFAULT_PLAN
    source: Path | None = None
    web: WebConfig = field(default_factory=WebConfig)

    def pollutant(self, channel: str) -> str | None:
        """The pollutant a channel measures, or None when it is not mapped."""
        return self.channels.get(channel) or None

    def thresholds_for(self, station: str, channel: str) -> tuple[SiteThreshold, ...]:
        return tuple(b.threshold for b in self.thresholds if b.applies(station, channel))

    def topic(self, *parts: str) -> str:
        return "/".join((self.mqtt.prefix, *parts))


# ---------------------------------------------------------------- loading


def load_config(path: str | Path) -> GatewayConfig:
    """Read and check a TOML or JSON config file."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise ConfigError(str(source), f"cannot read: {error.strerror}") from error
    try:
        if source.suffix.lower() == ".json":
            data = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # TOMLDecodeError is a ValueError
        raise ConfigError(str(source), f"not valid TOML/JSON: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(str(source), "the top level must be a table/object")
    return config_from_mapping(data, base_dir=source.resolve().parent, source=source)


class _Section:
    """Reads one table, remembering which keys were consumed, so leftovers are errors."""

    def __init__(self, data: object, where: str) -> None:
        if not isinstance(data, dict):
            raise ConfigError(where or "<top>", "must be a table/object")
        self.data: dict[str, Any] = data
        self.where = where
        self.used: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise ConfigError(self.path(key), f"expected {_kind_names(kinds)}, got a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise ConfigError(
                self.path(key), f"expected {_kind_names(kinds)}, got {type(value).__name__}"
            )
        return value

    def section(self, key: str) -> _Section:
        self.used.add(key)
        return _Section(self.data.get(key, {}), self.path(key))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(self.path(unknown[0]), "unknown key (see docs/gateway.md)")


def _kind_names(kinds: tuple[type, ...]) -> str:
    return " or ".join(k.__name__ for k in kinds)


def _positive(where: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        raise ConfigError(where, f"must be {'≥' if zero_ok else '>'} 0, got {value}")


def parse_utc_offset(text: str, where: str = "gateway.utc_offset") -> int:
    """``"+08:00"`` → 28800 seconds."""
    match = _UTC_OFFSET.fullmatch(text)
    if not match or int(match.group(3)) >= 60 or int(match.group(2)) > 14:
        raise ConfigError(where, f"expected ±HH:MM (e.g. +08:00), got {text!r}")
    seconds = int(match.group(2)) * 3600 + int(match.group(3)) * 60
    return -seconds if match.group(1) == "-" else seconds


def config_from_mapping(
    data: Mapping[str, Any], *, base_dir: Path, source: Path | None = None
) -> GatewayConfig:
    """Build and check a config from the parsed file (tests pass dicts directly)."""
    top = _Section(dict(data), "")

    gw = top.section("gateway")
    gateway_id = gw.get("id", str, None)
    if gateway_id is None:
        raise ConfigError("gateway.id", "is required")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", gateway_id):
        raise ConfigError("gateway.id", "use 1-64 of A-Z a-z 0-9 _ - (it is a topic level)")
    db_path = base_dir / gw.get("db", str, "lantian.db")
    keys_path = base_dir / gw.get("keys", str, "keys.json")
    utc_offset_s = parse_utc_offset(gw.get("utc_offset", str, "+08:00"))
    grace_s = gw.get("grace_s", int, 3600)
    _positive("gateway.grace_s", grace_s, zero_ok=True)
    log_level = gw.get("log_level", str, "info").lower()
    if log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("gateway.log_level", "one of debug, info, warning, error")
    log_file_text = gw.get("log_file", str, "")
    log_file = base_dir / log_file_text if log_file_text else None
    gw.done()

    ingest = top.section("ingest")
    ingest_enabled = ingest.get("enabled", bool, True)
    ingest.done()

    mqtt = _mqtt(top.section("mqtt"))
    rules = _rules(top.section("rules"))
    batch = _batch(top.section("batch"))
    channels = _channels(top.section("channels"))

    top.used.add("thresholds")
    thresholds = _thresholds(data.get("thresholds", []), channels)

    plan = _plan(top.section("plan"))
    web = _web(top.section("web"))
    top.done()
    return GatewayConfig(
        gateway_id=gateway_id,
        db_path=db_path,
        keys_path=keys_path,
        utc_offset_s=utc_offset_s,
        grace_s=grace_s,
        ingest_enabled=ingest_enabled,
        log_level=log_level,
        log_file=log_file,
        mqtt=mqtt,
        rules=rules,
        batch=batch,
        channels=channels,
        thresholds=thresholds,
        plan=plan,
        source=source,
        web=web,
    )


def _web(s: _Section) -> WebConfig:
    host = s.get("host", str, WebConfig().host)
    port = s.get("port", int, WebConfig().port)
    if not 0 <= port < 65536:
        raise ConfigError("web.port", f"must be 0 (off) or 1..65535, got {port}")
    s.done()
    return WebConfig(host, port)


def _mqtt(s: _Section) -> MqttConfig:
    host = s.get("host", str, "127.0.0.1")
    port = s.get("port", int, 1883)
    if not 0 < port < 65536:
        raise ConfigError("mqtt.port", f"must be 1..65535, got {port}")
    prefix = s.get("prefix", str, "lantian/v1")
    if not _TOPIC_PREFIX.fullmatch(prefix):
        raise ConfigError("mqtt.prefix", "a topic without wildcards, spaces or a trailing /")
    keepalive = s.get("keepalive", int, 30)
    _positive("mqtt.keepalive", keepalive)
    username = s.get("username", str, None)
    password = s.get("password", str, None)
    s.done()
    return MqttConfig(host, port, prefix, keepalive, username, password)


def _rules(s: _Section) -> RulesConfig:
    ruleset = s.get("ruleset", str, RulesConfig().ruleset)
    if ruleset != AUTO and ruleset not in RULESETS:
        raise ConfigError("rules.ruleset", f"unknown; known: auto, {', '.join(RULESETS)}")
    limit_set = s.get("limit_set", str, RulesConfig().limit_set)
    if limit_set not in ("auto-I", "auto-II") and limit_set not in LIMIT_SETS:
        raise ConfigError(
            "rules.limit_set", f"unknown; known: auto-I, auto-II, {', '.join(LIMIT_SETS)}"
        )
    aqi = s.get("aqi", str, RulesConfig().aqi)
    if aqi not in (AUTO, AQI_OFF, *GENERATIONS):
        raise ConfigError("rules.aqi", f"unknown; known: auto, off, {', '.join(GENERATIONS)}")
    warning_days = s.get("warning_days", int, 7)
    if not 1 <= warning_days <= 366:
        raise ConfigError("rules.warning_days", "must be 1..366")
    s.done()
    return RulesConfig(ruleset, limit_set, aqi, warning_days)


def _batch(s: _Section) -> BatchConfig:
    d = BatchConfig()
    size = s.get("ingest_batch_size", int, d.ingest_batch_size)
    _positive("batch.ingest_batch_size", size)
    flush = s.get("ingest_flush_s", float, d.ingest_flush_s)
    _positive("batch.ingest_flush_s", flush)
    interval = s.get("engine_interval_s", float, d.engine_interval_s)
    _positive("batch.engine_interval_s", interval)
    max_hours = s.get("max_hours_per_tick", int, d.max_hours_per_tick)
    _positive("batch.max_hours_per_tick", max_hours)
    window = s.get("publish_window", int, d.publish_window)
    if not 1 <= window <= 1000:
        raise ConfigError("batch.publish_window", "must be 1..1000")
    status = s.get("status_interval_s", float, d.status_interval_s)
    _positive("batch.status_interval_s", status)
    shutdown = s.get("shutdown_timeout_s", float, d.shutdown_timeout_s)
    _positive("batch.shutdown_timeout_s", shutdown, zero_ok=True)
    s.done()
    return BatchConfig(size, flush, interval, max_hours, window, status, shutdown)


def _channels(s: _Section) -> Mapping[str, str]:
    mapping = dict(DEFAULT_CHANNEL_MAP)
    for channel in list(s.data):
        pollutant = s.get(channel, str, "")
        if pollutant == "":
            mapping.pop(channel, None)  # "" unmaps a default
        elif pollutant not in POLLUTANTS:
            raise ConfigError(s.path(channel), f"unknown pollutant; known: {', '.join(POLLUTANTS)}")
        else:
            mapping[channel] = pollutant
    s.done()
    return MappingProxyType(mapping)


def _thresholds(data: object, channels: Mapping[str, str]) -> tuple[ThresholdBinding, ...]:
    if not isinstance(data, list):
        raise ConfigError("thresholds", "must be an array of tables ([[thresholds]])")
    out: list[ThresholdBinding] = []
    for i, item in enumerate(data):
        s = _Section(item, f"thresholds[{i}]")
        station = s.get("station", str, "*")
        channel = s.get("channel", str, None)
        if channel is None:
            raise ConfigError(s.path("channel"), "is required")
        builtin = s.get("builtin", str, None)
        name = s.get("name", str, None)
        if builtin is not None:
            if builtin not in SITE_THRESHOLDS:
                raise ConfigError(
                    s.path("builtin"), f"unknown; known: {', '.join(SITE_THRESHOLDS)}"
                )
            threshold = SITE_THRESHOLDS[builtin]
            if name is not None:
                raise ConfigError(s.path("name"), "give either builtin or name/value, not both")
        else:
            if name is None:
                raise ConfigError(s.path("name"), "give builtin = <name> or a custom name")
            value = s.get("value", (int, float), None)
            if value is None:
                raise ConfigError(s.path("value"), "is required for a custom threshold")
            averaging = s.get("averaging", str, "1h")
            if averaging not in ("1h", "single"):
                raise ConfigError(s.path("averaging"), "must be 1h or single")
            unit = s.get("unit", str, "ug/m3")
            quantity = channels.get(channel) or channel
            try:
                threshold = custom_threshold(
                    name, quantity, averaging, value, unit, s.get("source", str, "custom")
                )
            except StandardsError as error:
                raise ConfigError(s.path("value"), str(error)) from error
        s.done()
        out.append(ThresholdBinding(station, channel, threshold))
    names = [(b.station, b.channel, b.threshold.name) for b in out]
    if len(set(names)) != len(names):
        raise ConfigError("thresholds", "the same threshold is bound twice to a channel")
    return tuple(out)


def _plan(s: _Section) -> Plan | None:
    enabled = s.get("enabled", bool, True)
    name = s.get("name", str, None)
    targets_data = s.get("targets", list, None)
    s.done()
    if not enabled:
        return None
    if targets_data is None:
        if name is not None:
            raise ConfigError("plan.name", "a custom plan name needs [[plan.targets]]")
        return DEFAULT_PLAN
    targets: dict[int, PlanTarget] = {}
    for i, item in enumerate(targets_data):
        t = _Section(item, f"plan.targets[{i}]")
        year = t.get("year", int, None)
        pm25 = t.get("pm25_annual_max", (int, float), None)
        pm10 = t.get("pm10_annual_max", (int, float), None)
        good = t.get("good_days_min", int, None)
        t.done()
        missing = [
            key
            for key, v in (
                ("year", year),
                ("pm25_annual_max", pm25),
                ("pm10_annual_max", pm10),
                ("good_days_min", good),
            )
            if v is None
        ]
        if missing or year is None or good is None:
            raise ConfigError(t.path(missing[0] if missing else "year"), "is required")
        if year in targets:
            raise ConfigError(t.path("year"), f"{year} is listed twice")
        targets[year] = PlanTarget(year, Decimal(repr(pm25)), Decimal(repr(pm10)), good)
    return Plan(name or "custom plan", MappingProxyType(targets))
