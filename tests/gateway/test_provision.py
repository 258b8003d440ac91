"""``lantian provision``: a station id and device key, registered with the gateway's key
store; secrets written 0600; an existing station's key is never replaced without --rotate."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.deploy import bundle as bundle_mod
from gateway.deploy import provision as provision_mod
from gateway.deploy.provision import StationExists, provision_station, skeleton_config
from gateway.keys import KeyStore


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """A umask that would leave new files world-readable: 0600 must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_provision_writes_a_0600_key_and_registers_it(tmp_path: Path, loose_umask: None) -> None:
    keys = tmp_path / "gw" / "keys.json"
    keys.parent.mkdir()
    done = provision_station(keys, tmp_path / "out", station="yb-town-01")
    key = done.key_file.read_bytes()
    assert done.key_file == tmp_path / "out" / "yb-town-01.key"
    assert len(key) == 32 and len(set(key)) > 1
    assert mode(done.key_file) == 0o600
    assert mode(keys) == 0o600
    assert KeyStore.load(keys).get("yb-town-01") == key
    assert json.loads(keys.read_text()) == {"yb-town-01": key.hex()}
    assert not done.rotated and done.config is None
    # No temporary files left beside the secrets.
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["yb-town-01.key"]


def test_generated_ids_use_the_prefix_and_do_not_clash(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    made = {provision_station(keys, tmp_path, prefix="yb-site").station for _ in range(5)}
    assert len(made) == 5
    for station in made:
        assert re.fullmatch(r"yb-site-[0-9a-f]{6}", station)
    assert sorted(KeyStore.load(keys).stations()) == sorted(made)
    keyvals = {KeyStore.load(keys).get(s) for s in made}
    assert len(keyvals) == 5  # every station its own key


def test_an_existing_station_is_refused_without_rotate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    first = provision_station(keys, tmp_path, station="yb-town-01")
    key = first.key_file.read_bytes()
    with pytest.raises(StationExists) as e:
        provision_station(keys, tmp_path, station="yb-town-01")
    assert e.value.station == "yb-town-01"
    assert "--rotate" in str(e.value)
    assert len(e.value.where) == 2  # the store and the key file both say so

    rc = provision_mod.main(
        ["--station", "yb-town-01", "--keys", str(keys), "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert "refused: station yb-town-01 already has a device key" in err
    assert "Use --rotate" in err
    # Nothing changed.
    assert first.key_file.read_bytes() == key
    assert KeyStore.load(keys).get("yb-town-01") == key


def test_a_key_only_in_the_store_is_also_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    provision_station(keys, tmp_path / "a", station="yb-town-01")
    with pytest.raises(StationExists, match=r"registered in .*keys\.json"):
        provision_station(keys, tmp_path / "b", station="yb-town-01")
    assert not (tmp_path / "b").exists()


def test_rotate_replaces_the_key_in_both_places(tmp_path: Path, loose_umask: None) -> None:
    keys = tmp_path / "keys.json"
    old = provision_station(keys, tmp_path, station="yb-town-01").key_file.read_bytes()
    done = provision_station(keys, tmp_path, station="yb-town-01", rotate=True)
    new = done.key_file.read_bytes()
    assert done.rotated and new != old and len(new) == 32
    assert KeyStore.load(keys).get("yb-town-01") == new
    assert mode(done.key_file) == 0o600 and mode(keys) == 0o600


def test_the_config_skeleton_passes_the_firmware_validator(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    done = provision_station(keys, tmp_path, station="yb-town-01", config=True, broker="10.0.0.5")
    assert done.config == tmp_path / "yb-town-01.json"
    doc = json.loads(done.config.read_text())
    assert doc == json.loads(json.dumps(skeleton_config("yb-town-01", "10.0.0.5")))
    assert doc["schema"] == 1
    checked = bundle_mod.check_config(done.config)  # firmware.config.validate + load_key
    assert checked.station == "yb-town-01"
    assert checked.key == done.key_file

    # Rotating keeps a config the deployer has edited.
    doc["uplink"]["host"] = "10.9.9.9"
    done.config.write_text(json.dumps(doc))
    again = provision_station(keys, tmp_path, station="yb-town-01", config=True, rotate=True)
    assert again.config is None and again.config_kept == done.config
    assert json.loads(done.config.read_text())["uplink"]["host"] == "10.9.9.9"


@pytest.mark.parametrize("station", ["YB-Town", "yb town", "x" * 33, ""])
def test_bad_station_ids_are_usage_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], station: str
) -> None:
    rc = provision_mod.main(["--station", station, "--keys", str(tmp_path / "k.json")])
    assert rc == 2
    assert "use 1-32 of a-z, 0-9, '-' and '_'" in capsys.readouterr().err
    assert not (tmp_path / "k.json").exists()


def test_a_key_store_others_can_read_is_not_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text("{}")
    keys.chmod(0o644)
    rc = provision_mod.main(
        ["--station", "yb-town-01", "--keys", str(keys), "--out", str(tmp_path)]
    )
    assert rc == 1
    assert "mode 0644" in capsys.readouterr().err
    assert not (tmp_path / "yb-town-01.key").exists()


def test_cli_output_names_every_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.json"
    rc = provision_mod.main(
        ["--prefix", "yb-voc", "--keys", str(keys), "--out", str(tmp_path), "--config"]
    )
    out = capsys.readouterr().out
    assert rc == 0
    station = re.search(r"^station   (yb-voc-[0-9a-f]{6})$", out, re.M)
    assert station is not None
    sid = station.group(1)
    assert f"key       {tmp_path / (sid + '.key')} (32 bytes, mode 0600)" in out
    assert f"keystore  {keys}: registered (mode 0600)" in out
    assert f"next      lantian bundle {tmp_path / (sid + '.json')}" in out
    assert KeyStore.load(keys).get(sid) == (tmp_path / f"{sid}.key").read_bytes()
