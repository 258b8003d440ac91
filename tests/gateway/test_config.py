"""The config file: documented keys, checked names, unknown keys are errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.config import ConfigError, config_from_mapping, load_config, parse_utc_offset
from gateway.standards import DEFAULT_PLAN

FULL = """
[gateway]
id = "gw-01"
db = "data/lantian.db"
keys = "keys.json"
utc_offset = "+08:00"
grace_s = 1800
log_level = "debug"

[ingest]
enabled = true

[mqtt]
host = "broker.local"
port = 1884
prefix = "lantian/v1"

[rules]
ruleset = "auto"
limit_set = "auto-II"
aqi = "HJ633-2026"
warning_days = 5

[batch]
publish_window = 10
engine_interval_s = 2

[channels]
"PM2.5" = "pm25"
tvoc = ""

[[thresholds]]
station = "site-07"
channel = "pm10"
builtin = "construction_dust_pm10_1h"

[[thresholds]]
channel = "nmhc"
name = "plant_fence"
value = 4.5
unit = "mg/m3"
averaging = "single"

[plan]
name = "city plan 2026"
[[plan.targets]]
year = 2026
pm25_annual_max = 30
pm10_annual_max = 60
good_days_min = 300
"""


def test_a_full_toml_file(tmp_path: Path):
    path = tmp_path / "gw.toml"
    path.write_text(FULL, encoding="utf-8")
    cfg = load_config(path)
    assert cfg.gateway_id == "gw-01"
    assert cfg.db_path == tmp_path.resolve() / "data" / "lantian.db"
    assert (cfg.utc_offset_s, cfg.grace_s, cfg.log_level) == (28800, 1800, "debug")
    assert (cfg.mqtt.host, cfg.mqtt.port) == ("broker.local", 1884)
    assert (cfg.rules.ruleset, cfg.rules.limit_set, cfg.rules.aqi) == (
        "auto",
        "auto-II",
        "HJ633-2026",
    )
    assert cfg.batch.publish_window == 10 and cfg.batch.engine_interval_s == 2.0
    assert cfg.pollutant("PM2.5") == "pm25" and cfg.pollutant("pm10") == "pm10"
    assert cfg.pollutant("tvoc") is None and cfg.pollutant("temperature") is None
    dust = cfg.thresholds_for("site-07", "pm10")
    assert [t.name for t in dust] == ["construction_dust_pm10_1h"]
    assert cfg.thresholds_for("site-08", "pm10") == ()
    (fence,) = cfg.thresholds_for("any", "nmhc")
    assert (fence.averaging, str(fence.value), fence.confirmed) == ("single", "4.5", False)
    assert cfg.plan is not None and cfg.plan.target(2026).good_days_min == 300
    assert cfg.topic("result", "hour", "s1") == "lantian/v1/result/hour/s1"


def test_defaults_and_json(tmp_path: Path):
    path = tmp_path / "gw.json"
    path.write_text(json.dumps({"gateway": {"id": "g"}}), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.rules.ruleset == "GB3095-2012/HJ663-2013"
    assert cfg.rules.limit_set == "GB3095-2012-II" and cfg.rules.aqi == "HJ633-2012"
    assert cfg.utc_offset_s == 8 * 3600 and cfg.plan is DEFAULT_PLAN
    assert cfg.mqtt.prefix == "lantian/v1" and cfg.ingest_enabled


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({}, "gateway.id"),
        ({"gateway": {"id": "g", "colour": "red"}}, "gateway.colour"),
        ({"gateway": {"id": "g"}, "mqqt": {}}, "mqqt"),
        ({"gateway": {"id": "g"}, "rules": {"ruleset": "GB3095-1996"}}, "rules.ruleset"),
        ({"gateway": {"id": "g"}, "rules": {"limit_set": "II"}}, "rules.limit_set"),
        ({"gateway": {"id": "g"}, "rules": {"aqi": "US"}}, "rules.aqi"),
        ({"gateway": {"id": "g"}, "mqtt": {"port": "1883"}}, "mqtt.port"),
        ({"gateway": {"id": "g"}, "mqtt": {"port": 70000}}, "mqtt.port"),
        ({"gateway": {"id": "g"}, "mqtt": {"prefix": "a/#"}}, "mqtt.prefix"),
        ({"gateway": {"id": "g", "utc_offset": "8"}}, "gateway.utc_offset"),
        ({"gateway": {"id": "g", "grace_s": True}}, "gateway.grace_s"),
        ({"gateway": {"id": "a b"}}, "gateway.id"),
        ({"gateway": {"id": "g"}, "channels": {"x": "pm1"}}, "channels.x"),
        (
            {"gateway": {"id": "g"}, "thresholds": [{"channel": "pm10", "builtin": "x"}]},
            "thresholds[0].builtin",
        ),
        (
            {"gateway": {"id": "g"}, "thresholds": [{"channel": "pm10", "name": "n"}]},
            "thresholds[0].value",
        ),
        (
            {"gateway": {"id": "g"}, "thresholds": [{"name": "n", "value": 1}]},
            "thresholds[0].channel",
        ),
        (
            {
                "gateway": {"id": "g"},
                "thresholds": [{"channel": "c", "name": "n", "value": 1, "x": 1}],
            },
            "thresholds[0].x",
        ),
        ({"gateway": {"id": "g"}, "batch": {"publish_window": 0}}, "batch.publish_window"),
        (
            {"gateway": {"id": "g"}, "plan": {"targets": [{"year": 2026}]}},
            "plan.targets[0].pm25_annual_max",
        ),
    ],
)
def test_errors_name_the_key(tmp_path: Path, data: dict[str, object], where: str):
    with pytest.raises(ConfigError) as info:
        config_from_mapping(data, base_dir=tmp_path)
    assert info.value.where == where


def test_unreadable_and_malformed_files(tmp_path: Path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nid=", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_utc_offsets():
    assert parse_utc_offset("+08:00") == 28800
    assert parse_utc_offset("-05:30") == -(5 * 3600 + 30 * 60)
    with pytest.raises(ConfigError):
        parse_utc_offset("+08:60")


def test_plan_can_be_disabled(tmp_path: Path):
    cfg = config_from_mapping(
        {"gateway": {"id": "g"}, "plan": {"enabled": False}}, base_dir=tmp_path
    )
    assert cfg.plan is None


def test_the_documented_example_config_loads():
    docs = Path(__file__).resolve().parents[2] / "docs" / "gateway.md"
    text = docs.read_text(encoding="utf-8")
    start = text.index("```toml\n") + len("```toml\n")
    example = text[start : text.index("```", start)]
    cfg = config_from_mapping(__import__("tomllib").loads(example), base_dir=docs.parent)
    assert cfg.gateway_id
