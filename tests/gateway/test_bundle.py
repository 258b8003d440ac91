"""``lantian bundle``: firmware and drivers compiled by the real mpy-cross, the config and
key checked by the firmware's own code, and a manifest whose versions and hashes are
read from the files themselves."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from firmware import config as fw_config
from firmware import station as fw_station
from gateway.deploy import bundle as bundle_mod
from gateway.deploy import provision as provision_mod
from gateway.deploy.bundle import (
    BoardMpy,
    BundleDamaged,
    ConfigInvalid,
    KeyInvalid,
    MpyHeader,
    build_bundle,
    mpy_incompatibility,
    open_bundle,
    verify_bundle,
)
from tests.tooling import ROOT, micropython_binary, mpy_cross_binary

STATION = "yb-town-01"


@pytest.fixture(scope="module")
def station_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("station")
    provision_mod.provision_station(work / "keys.json", work, station=STATION, config=True)
    return work


@pytest.fixture(scope="module")
def built(station_files: Path) -> Path:
    return build_bundle(station_files / f"{STATION}.json", station_files / "bundle").path


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def test_manifest_lists_every_file_with_its_hash_and_size(built: Path) -> None:
    m = manifest_of(built)
    listed = {e["path"]: e for e in m["files"]}
    on_disk = sorted(
        p.relative_to(built).as_posix()
        for p in built.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    )
    assert sorted(listed) == on_disk
    for path, entry in listed.items():
        data = (built / path).read_bytes()
        assert entry["size"] == len(data), path
        assert entry["sha256"] == hashlib.sha256(data).hexdigest(), path
    assert verify_bundle(built).station == STATION


def test_bundle_content_is_what_the_board_needs(built: Path, station_files: Path) -> None:
    m = manifest_of(built)
    paths = {e["path"] for e in m["files"]}
    for rel in bundle_mod.station_modules(ROOT):
        assert rel.with_suffix(".mpy").as_posix() in paths, rel
    for profile in (ROOT / "drivers" / "profiles").glob("*.json"):
        assert f"drivers/profiles/{profile.name}" in paths
    assert [p for p in paths if p.endswith(".py")] == ["main.py"]
    assert (built / "main.py").read_text() == "from firmware.main import run\nrun()\n"
    assert (built / "config.json").read_bytes() == (station_files / f"{STATION}.json").read_bytes()
    assert (built / "key.bin").read_bytes() == (station_files / f"{STATION}.key").read_bytes()
    assert (built / "key.bin").stat().st_mode & 0o077 == 0
    assert m["format"] == 1 and m["station"] == STATION
    assert m["firmware"]["version"] == fw_station.FW_VERSION
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    )
    assert m["firmware"]["commit"] == head.stdout.strip()
    assert isinstance(m["firmware"]["dirty"], bool)


def test_mpy_version_is_read_from_the_compiled_files(built: Path) -> None:
    mpy = manifest_of(built)["mpy"]
    banner = subprocess.run([mpy_cross_binary(), "--version"], capture_output=True, text=True)
    assert mpy["mpy_cross"] == banner.stdout.strip()
    emitted = banner.stdout.strip().rsplit("mpy v", 1)[1]  # "6.3"
    assert mpy["version"] == int(emitted.split(".")[0]) == 6
    # Bytecode-only files carry no sub-version or architecture (py/persistentcode.c).
    assert (mpy["sub_version"], mpy["arch"], mpy["arch_code"]) == (0, None, 0)
    assert mpy["small_int_bits"] == 31
    for p in built.rglob("*.mpy"):
        assert p.read_bytes()[:4] == b"M\x06\x00\x1f", p


def test_header_of_native_code_names_its_architecture(tmp_path: Path) -> None:
    src = tmp_path / "fast.py"
    src.write_text("import micropython\n@micropython.native\ndef f(x):\n    return x + 1\n")
    for march, code in (("armv6m", 4), ("xtensawin", 10), ("x64", 2)):
        out = tmp_path / f"fast-{march}.mpy"
        subprocess.run(
            [mpy_cross_binary(), f"-march={march}", "-o", str(out), str(src)], check=True
        )
        h = bundle_mod.read_mpy_header(out)
        assert (h.version, h.sub_version, h.arch_code, h.arch) == (6, 3, code, march)
        assert h.describe() == f"mpy v6.3 ({march})"


def test_board_mpy_is_decoded_like_sys_implementation_mpy() -> None:
    proc = subprocess.run(
        [micropython_binary(), "-c", "import sys; print(sys.implementation._mpy)"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    board = BoardMpy.from_sys_mpy(int(proc.stdout))
    assert (board.version, board.sub_version, board.arch) == (6, 3, "x64")
    assert board.describe() == "mpy v6.3 (x64)"


@pytest.mark.parametrize(
    ("header", "board", "why"),
    [
        (MpyHeader(6, 0, 0, 31), 0x0B06, None),  # bytecode: any arch, any sub-version
        (MpyHeader(6, 0, 0, 31), 0x1206, None),  # armv6m board (RP2040)
        (MpyHeader(6, 0, 0, 31), 0x2B06, None),  # xtensawin board (ESP32)
        (MpyHeader(5, 0, 0, 31), 0x0B06, "version 5, the board loads version 6"),
        (MpyHeader(6, 0, 0, 31), 0x0A05, "version 6, the board loads version 5"),
        (MpyHeader(6, 3, 4, 31), 0x1306, None),  # armv6m native code on an armv6m board
        (MpyHeader(6, 3, 4, 31), 0x0B06, "native code for armv6m, the board's architecture is x64"),
        (MpyHeader(6, 2, 2, 31), 0x0B06, "sub-version 2, the board's is 3"),
        (MpyHeader(6, 3, 2, 31), 0x0006, "native code for x64, the board's architecture is none"),
    ],
)
def test_compatibility_follows_the_loaders_rule(
    header: MpyHeader, board: int, why: str | None
) -> None:
    reason = mpy_incompatibility(header, BoardMpy.from_sys_mpy(board))
    if why is None:
        assert reason is None
    else:
        assert reason is not None and why in reason


def test_an_invalid_config_is_refused_with_the_firmwares_message(
    station_files: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads((station_files / f"{STATION}.json").read_text())
    doc["devices"][0]["bus"] = "rs485z"
    bad = tmp_path / f"{STATION}.json"
    bad.write_text(json.dumps(doc))
    shutil.copy(station_files / f"{STATION}.key", tmp_path)
    with pytest.raises(fw_config.ConfigError) as expected:
        fw_config.validate(doc)
    with pytest.raises(ConfigInvalid) as e:
        build_bundle(bad, tmp_path / "out")
    assert (e.value.field, e.value.problem) == (expected.value.field, expected.value.problem)
    assert str(expected.value) in str(e.value)  # "config devices[0].bus: ..."
    assert not (tmp_path / "out").exists()

    rc = bundle_mod.main([str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"refused: {bad}: {expected.value}" in err


def test_unparsable_config_and_bad_key_are_refused(station_files: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"schema": 1,')
    with pytest.raises(ConfigInvalid, match=r"config file: not valid JSON"):
        build_bundle(bad, tmp_path / "out")
    cfg = station_files / f"{STATION}.json"
    short = tmp_path / "short.key"
    short.write_bytes(b"\x01\x02" * 4)
    with pytest.raises(KeyInvalid, match=r"8 bytes, at least 16 needed"):
        build_bundle(cfg, tmp_path / "out", key=short)
    with pytest.raises(KeyInvalid, match=r"missing\.key"):
        build_bundle(cfg, tmp_path / "out", key=tmp_path / "missing.key")


def test_tar_bundle_opens_to_the_same_files(
    station_files: Path, built: Path, tmp_path: Path
) -> None:
    out = build_bundle(station_files / f"{STATION}.json", tmp_path / "b.tar").path
    assert out.is_file() and out.stat().st_mode & 0o077 == 0
    with tarfile.open(out) as tar:
        assert tar.getmember("key.bin").mode == 0o600
    with open_bundle(out) as b:
        files = {e["path"]: e["sha256"] for e in b.files}
    assert files == {e["path"]: e["sha256"] for e in manifest_of(built)["files"]}


def test_a_tampered_bundle_is_refused(built: Path, tmp_path: Path) -> None:
    copy = tmp_path / "b"
    shutil.copytree(built, copy)
    (copy / "firmware" / "clock.mpy").write_bytes(b"M\x06\x00\x1f")
    (copy / "firmware" / "extra.mpy").write_bytes(b"M\x06\x00\x1f")
    with pytest.raises(BundleDamaged) as e:
        verify_bundle(copy)
    assert e.value.problems == [
        "firmware/clock.mpy differs from its manifest entry",
        "firmware/extra.mpy not in the manifest",
    ]
