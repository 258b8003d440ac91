"""Config and device-key files: atomic saves, the ``.bak`` fallback when the primary is
corrupt or invalid, safe mode when neither copy is usable (CPython, plus one run of the
same fallback on the real micropython binary)."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from firmware.atomic import SOURCE_BACKUP, SOURCE_PRIMARY
from firmware.config import (
    PROBLEM_MAX,
    ConfigError,
    DeviceKeyError,
    load_config,
    load_key,
    safe_mode_status,
    safe_mode_uplink,
    save_config,
)
from tests.firmware.test_config import EXAMPLE
from tests.tooling import ROOT, micropython_binary


def example(**top: Any) -> dict[str, Any]:
    d = copy.deepcopy(EXAMPLE)
    d.update(top)
    return d


@pytest.fixture
def saved_twice(tmp_path: Path) -> Path:
    """config.json = the example polled every 10 s; config.json.bak = every 5 s."""
    path = tmp_path / "config.json"
    save_config(str(path), example())
    newer = example()
    newer["devices"][0]["poll_s"] = 10
    save_config(str(path), newer)
    return path


def test_save_then_load_reads_the_primary(saved_twice: Path) -> None:
    cfg = load_config(str(saved_twice))
    assert cfg.source == SOURCE_PRIMARY
    assert cfg.device("pm").poll_s == 10
    assert cfg.warnings == []
    assert (
        json.loads((saved_twice.parent / "config.json.bak").read_text())["devices"][0]["poll_s"]
        == 5
    )


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], id="torn-half"),
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: b"\xff" * len(raw), id="erased-flash"),
        pytest.param(lambda raw: raw.replace(b'"bus": "rs485a"', b'"bus": "rs485x"'), id="invalid"),
    ],
)
def test_a_bad_primary_falls_back_to_the_backup(saved_twice: Path, damage: Any) -> None:
    saved_twice.write_bytes(damage(saved_twice.read_bytes()))
    cfg = load_config(str(saved_twice))
    assert cfg.source == SOURCE_BACKUP
    assert cfg.device("pm").poll_s == 5  # the previous good config
    assert len(cfg.warnings) == 1
    assert cfg.warnings[0].startswith(f"loaded {saved_twice}.bak: {saved_twice} was unusable")


def test_a_missing_primary_falls_back_to_the_backup(saved_twice: Path) -> None:
    # between the two renames of write_atomic: config.json gone, .bak the old copy
    saved_twice.unlink()
    cfg = load_config(str(saved_twice))
    assert cfg.source == SOURCE_BACKUP
    assert "missing or unreadable" in cfg.warnings[0]


def test_neither_copy_usable_is_the_primarys_error(saved_twice: Path) -> None:
    raw = saved_twice.read_bytes()
    saved_twice.write_bytes(raw.replace(b'"profile": "particulate"', b'"profile": "nope"'))
    (saved_twice.parent / "config.json.bak").write_bytes(raw[:40])
    with pytest.raises(ConfigError) as info:
        load_config(str(saved_twice))
    err = info.value
    assert err.field == "devices[0].profile"
    assert len(err.reasons) == 2
    assert "config.json invalid" in err.reasons[0]
    assert "config.json.bak invalid" in err.reasons[1] and "not valid JSON" in err.reasons[1]

    # the station keeps its identity and uplink, and says what is wrong
    station, uplink = safe_mode_uplink(str(saved_twice))
    assert station == "yb-town-01"
    assert uplink is not None and (uplink.host, uplink.port) == ("127.0.0.1", 1883)
    status = safe_mode_status(err, station)
    assert status["mode"] == "safe" and status["error"]["field"] == "devices[0].profile"
    copies = status["error"]["copies"]
    assert len(copies) == 2 and all(len(c) <= PROBLEM_MAX for c in copies)
    assert copies[1] == err.reasons[1] and copies[0].endswith("...")  # clipped to fit
    json.dumps(status)


def test_no_config_at_all(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "config.json"))
    assert info.value.field == "file"
    assert "config.json missing" in info.value.problem
    assert safe_mode_uplink(str(tmp_path / "config.json")) == (None, None)


def test_safe_mode_uplink_needs_a_valid_uplink(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    d = example()
    d["uplink"]["port"] = 0
    path.write_text(json.dumps(d))
    assert safe_mode_uplink(str(path)) == (None, None)
    d = example(station="Bad Name")
    path.write_text(json.dumps(d))
    assert safe_mode_uplink(str(path)) == (None, None)


def test_save_refuses_an_invalid_config(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    save_config(str(path), example())
    before = path.read_bytes()
    with pytest.raises(ConfigError) as info:
        save_config(str(path), example(watchdog={"timeout_ms": 20000}))
    assert info.value.field == "watchdog.timeout_ms"
    assert path.read_bytes() == before
    assert not (tmp_path / "config.json.bak").exists()


# ------------------------------------------------------------------------ the key


def test_load_key(tmp_path: Path) -> None:
    path = tmp_path / "key.bin"
    key = bytes(range(1, 33))
    path.write_bytes(key)
    assert load_key(str(path)) == key
    path.write_bytes(key[:16])  # the shortest key accepted
    assert load_key(str(path)) == key[:16]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "key.bin missing"),
        (b"abc", "3 bytes, at least 16 needed"),
        (b"\x00" * 32, "every byte is 0x00"),
        (b"\xff" * 32, "every byte is 0xff"),
        (bytes(65), "65 bytes, at most 64 allowed"),
    ],
)
def test_bad_keys_are_named_errors(tmp_path: Path, content: bytes | None, words: str) -> None:
    path = tmp_path / "key.bin"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DeviceKeyError) as info:
        load_key(str(path))
    assert info.value.path == str(path)
    assert words in info.value.problem
    status = safe_mode_status(info.value, "yb-town-01")
    assert status["error"]["kind"] == "key"


def test_a_short_key_falls_back_to_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "key.bin"
    (tmp_path / "key.bin.bak").write_bytes(b"k" * 15 + b"!")
    path.write_bytes(b"trunc")
    assert load_key(str(path)) == b"k" * 15 + b"!"


# --------------------------------------------------------- on the real interpreter


def test_fallback_on_micropython(saved_twice: Path) -> None:
    raw = saved_twice.read_bytes()
    saved_twice.write_bytes(raw[:100])
    script = (
        "import sys\nsys.path.insert(0, '.')\n"
        "from firmware.config import load_config, ConfigError, safe_mode_status\n"
        f"c = load_config({str(saved_twice)!r})\n"
        "print(c.source, c.station, c.device('pm').poll_s, c.device('pm').timeout_ms)\n"
        f"open({str(saved_twice) + '.bak'!r}, 'w').close()\n"
        "try:\n"
        f"    load_config({str(saved_twice)!r})\n"
        "except ConfigError as e:\n"
        "    print(safe_mode_status(e)['error']['field'], len(e.reasons))\n"
    )
    proc = subprocess.run(
        [micropython_binary(), "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["backup yb-town-01 5 200", "file 2"]
