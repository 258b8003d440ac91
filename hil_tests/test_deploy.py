"""``lantian deploy`` against a real MicroPython REPL: the unix port behind a pty
(hil_tests/ptyrepl.py), driven by mpremote's SerialTransport as a board on USB would be.

A real bundle (provisioned key, firmware and drivers compiled by mpy-cross) is deployed;
the board then imports every module from the .mpy files alone and loads its config and
key with the firmware's own code. A copy cut off half way (the rig pulls the plug after
n bytes) leaves no half file under a real name and resumes on the next run; a board
whose MicroPython cannot load the bundle's .mpy is refused before anything is written.
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.deploy import bundle as bundle_mod
from gateway.deploy import deploy as deploy_mod
from gateway.deploy import provision as provision_mod
from gateway.deploy.board import Board
from hil_tests.ptyrepl import PtyReplBoard
from tests.tooling import ROOT, micropython_binary

STATION = "yb-town-01"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle folder for STATION, built the way a deployer builds one."""
    work = tmp_path_factory.mktemp("deployer")
    assert (
        provision_mod.main(
            [
                "--station",
                STATION,
                "--keys",
                str(work / "keys.json"),
                "--out",
                str(work),
                "--config",
            ]
        )
        == 0
    )
    out = work / "bundle"
    assert bundle_mod.main([str(work / f"{STATION}.json"), "--out", str(out)]) == 0
    return out


def manifest_of(root: Path) -> dict:
    return json.loads((root / "manifest.json").read_text())


def flash_matches(flash: Path, root: Path) -> list[str]:
    """Bundle files whose copy on the flash is missing or differs."""
    bad = []
    for entry in manifest_of(root)["files"]:
        p = flash / entry["path"]
        if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != entry["sha256"]:
            bad.append(entry["path"])
    if (flash / "manifest.json").read_bytes() != (root / "manifest.json").read_bytes():
        bad.append("manifest.json")
    return bad


def run_deploy(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    rc = deploy_mod.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def line(out: str, tag: str) -> str:
    found = [ln for ln in out.splitlines() if ln.split(" ", 1)[0] == tag]
    assert found, f"no {tag!r} line in:\n{out}"
    return found[-1]


def test_deploy_then_the_board_imports_every_module_from_mpy(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flash = tmp_path / "flash"
    n_files = len(manifest_of(built)["files"]) + 1
    with PtyReplBoard(flash) as board:
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
        assert rc == 0, out + err
        assert f"copied    {n_files} files" in out
        assert line(out, "verified").startswith(f"verified  {n_files} of {n_files} files")
        assert "loads mpy v6.3 (x64)" in line(out, "board")
        assert board.soft_reboots == 1  # mpremote soft-reset the board on entering raw REPL
        assert flash_matches(flash, built) == []
        assert [p.name for p in flash.rglob("*.py")] == ["main.py"]
        assert not list(flash.rglob("*.tmp"))

        # On the board, from the deployed .mpy files only: every module imports, the
        # firmware reads its config and key, main.py is the two-line boot.
        modules = [
            e["path"][: -len(".mpy")].replace("/", ".").removesuffix(".__init__")
            for e in manifest_of(built)["files"]
            if e["path"].endswith(".mpy")
        ]
        script = "".join(f"import {m}\n" for m in modules) + (
            "from firmware import config\n"
            "c = config.load_config('config.json')\n"
            "k = config.load_key('key.bin')\n"
            "import firmware.main\n"
            f"print(repr((len({modules!r}), c.station, len(k), firmware.main.__file__,"
            " [d.profile_name for d in c.devices], open('main.py').read())))\n"
        )
        with Board(board.port) as session:
            n, station, key_len, main_file, profiles, main_py = _run(session, script)
        assert n == len(modules) == len(bundle_mod.station_modules(ROOT))
        assert station == STATION and key_len == 32
        assert main_file.endswith("firmware/main.mpy")
        assert profiles == ["particulate"]
        assert main_py == "from firmware.main import run\nrun()\n"

        # A second deploy of the same bundle copies nothing and verifies everything.
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
        assert rc == 0, out + err
        assert "copied    0 files, 0 bytes" in out
        assert f"skipped   {n_files} files" in out
        assert f"verified  {n_files} of {n_files}" in out


def _run(session: Board, script: str) -> tuple:
    out = session.exec(script, what="importing the deployed modules")
    return ast.literal_eval(out.decode().strip().splitlines()[-1])


def test_interrupted_copy_resumes_and_verifies(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Where to cut: in the middle of the largest module's second chunk. A first deploy to
    # an empty flash records the host's byte stream; the second, to another empty flash,
    # sends the same bytes, so the cut lands at the same place.
    with PtyReplBoard(tmp_path / "scratch", record=True) as board:
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
        assert rc == 0, out + err
        stream = bytes(board.recorded)
    victim = "firmware/config.mpy"
    full_size = (built / victim).stat().st_size
    opened = stream.index(b"_lt_open('%s.tmp')" % victim.encode())
    second_chunk = stream.index(b"_lt_w(", stream.index(b"_lt_w(", opened) + 1)
    cut = second_chunk + 300

    flash = tmp_path / "flash"
    with PtyReplBoard(flash) as board:
        board.cut_after(cut)
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
        assert board.cut_done.wait(5)
        assert rc == 1
        assert "connection lost" in err and "run the same command again" in err

        # The cut left: the files before complete, the victim only as a short .tmp, no
        # main.py (the board would boot to the REPL, not a half-updated station).
        tmp = flash / (victim + ".tmp")
        assert tmp.is_file() and 0 < tmp.stat().st_size < full_size
        assert not (flash / victim).exists()
        assert not (flash / "main.py").exists()
        done_before = [
            e["path"]
            for e in manifest_of(built)["files"]
            if (flash / e["path"]).is_file()
            and hashlib.sha256((flash / e["path"]).read_bytes()).hexdigest() == e["sha256"]
        ]
        assert "drivers/profile.mpy" in done_before
        # Nothing under a real name is a half file.
        for e in manifest_of(built)["files"]:
            p = flash / e["path"]
            assert not p.exists() or e["path"] in done_before, e["path"]

        port = board.replug()
        rc, out, err = run_deploy(capsys, "--port", port, "--bundle", str(built))
        assert rc == 0, out + err
        assert f"skipped   {len(done_before)} files" in out
        assert f"copy      {victim} " in out
        for path in done_before:
            assert f"copy      {path} " not in out
        assert flash_matches(flash, built) == []
        assert not list(flash.rglob("*.tmp"))

        # Cut after a .tmp was complete but before its rename: only the rename is redone.
        (flash / "firmware/bus.mpy").rename(flash / "firmware/bus.mpy.tmp")
        (flash / "main.py").unlink()
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
        assert rc == 0, out + err
        assert "1 finished from a complete .tmp" in line(out, "copied")
        assert flash_matches(flash, built) == []
        assert not list(flash.rglob("*.tmp"))


def _patched_bundle(built: Path, dest: Path, byte: int, value: int) -> Path:
    """A copy of ``built`` whose .mpy headers have ``byte`` set to ``value`` and whose
    manifest was rewritten to match: a bundle from another mpy-cross, as far as anyone can
    tell from its files."""
    shutil.copytree(built, dest)
    for p in dest.rglob("*.mpy"):
        data = bytearray(p.read_bytes())
        data[byte] = value
        p.write_bytes(bytes(data))
    bundle_mod.write_manifest(dest, manifest_of(built))
    return dest


@pytest.mark.parametrize(
    ("byte", "value", "bundle_says", "reason", "loader_says"),
    [
        (
            1,
            5,
            "mpy v5.0 (bytecode only)",
            "version 5, the board loads version 6",
            "incompatible .mpy file",
        ),
        (
            2,
            (10 << 2) | 3,
            "mpy v6.3 (xtensawin)",
            "native code for xtensawin, the board's architecture is x64",
            "incompatible .mpy arch",
        ),
    ],
    ids=["mpy-version", "native-arch"],
)
def test_board_that_cannot_load_the_bundle_is_refused(
    built: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    byte: int,
    value: int,
    bundle_says: str,
    reason: str,
    loader_says: str,
) -> None:
    foreign = _patched_bundle(built, tmp_path / "foreign", byte, value)
    # The rule deploy applies is the loader's: the real interpreter refuses these files too.
    proc = subprocess.run(
        [micropython_binary(), "-c", "import firmware.clock"],
        cwd=foreign,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert loader_says in proc.stdout + proc.stderr

    flash = tmp_path / "flash"
    with PtyReplBoard(flash) as board:
        rc, _out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(foreign))
    assert rc == 1
    assert "refused: incompatible board" in err
    assert f"the bundle is {bundle_says}" in err
    assert "the board's MicroPython loads mpy v6.3 (x64)" in err
    assert reason in err
    assert list(flash.iterdir()) == [], "nothing may be written to a refused board"


def test_a_board_of_another_station_is_refused_unless_replacing(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flash = tmp_path / "flash"
    flash.mkdir()
    (flash / "config.json").write_text(json.dumps({"schema": 1, "station": "yb-site-07"}))
    with PtyReplBoard(flash) as board:
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
        assert rc == 1
        assert "the board is station yb-site-07, the bundle is for yb-town-01" in err
        assert "--replace-station" in err
        rc, out, err = run_deploy(
            capsys, "--port", board.port, "--bundle", str(built), "--replace-station"
        )
        assert rc == 0, out + err
        assert "re-identifying the board: yb-site-07 -> yb-town-01" in out
    assert flash_matches(flash, built) == []


def test_stale_modules_that_would_shadow_the_mpy_are_removed(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flash = tmp_path / "flash"
    (flash / "firmware").mkdir(parents=True)
    # A source file beside its .mpy wins the import (.py is looked for first), and a module
    # the firmware no longer has must not linger; data outside firmware/ and drivers/ stays.
    (flash / "firmware" / "station.py").write_text("raise ImportError('stale source')\n")
    (flash / "firmware" / "retired.mpy").write_bytes(b"M\x06\x00\x1f")
    (flash / "calibration.json").write_text("{}")
    with PtyReplBoard(flash) as board:
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
    assert rc == 0, out + err
    assert "removed   2 stale: firmware/retired.mpy, firmware/station.py" in out
    assert not (flash / "firmware" / "station.py").exists()
    assert (flash / "calibration.json").read_text() == "{}"
    assert flash_matches(flash, built) == []


def test_deploy_keeps_the_boards_watchdog_fed(
    built: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A station's firmware arms machine.WDT, which nothing can disarm: after the Ctrl-C
    that stops it, the board would reset mid-copy unless the deploy feeds it. Here the
    board has the machine shim, whose WDT reports every feed (hil_tests/watchdog_host.py)."""
    feed_file = tmp_path / "wdt"
    env = {
        "MICROPYPATH": f".frozen:{ROOT / 'hil_tests' / 'mpshim'}",
        "LANTIAN_WDT_FILE": str(feed_file),
    }
    with PtyReplBoard(tmp_path / "flash", env=env) as board:
        rc, out, err = run_deploy(capsys, "--port", board.port, "--bundle", str(built))
    assert rc == 0, out + err
    feeds, _ticks, timeout_ms, _pid = feed_file.read_text().split()
    assert int(timeout_ms) == 8000
    # At least one feed per written chunk and per hashed block.
    assert int(feeds) > len(manifest_of(built)["files"])
    assert "the board restarts into it within ~8 s (its watchdog)" in line(out, "done")
