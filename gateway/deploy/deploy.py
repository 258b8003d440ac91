"""``lantian deploy --port PORT [--bundle DIR|FILE.tar]``: put a bundle on a board, safely.

The steps, each reported on one line (docs/deploying.md explains them for the deployer):

1. **bundle** -- open the bundle and check every file against its manifest (a damaged or
   hand-edited bundle is refused before the board is touched).
2. **board** -- connect (gateway/deploy/board.py: raw REPL, soft reset, watchdog taken
   over) and read ``sys.implementation._mpy``. A board that cannot load the bundle's .mpy
   files is refused, naming both sides (:func:`gateway.deploy.bundle.mpy_incompatibility`,
   the loader's own rule). So is a board that already holds another station's config,
   unless ``--replace-station``: the usual cause is the wrong board on the bench.
3. **plan** -- hash every bundle file on the board (SHA-256, computed there). A file with
   the right hash is skipped; a file whose ``name.tmp`` has the right hash (a copy that was
   cut after writing, before renaming) only needs the rename.
4. **copy** -- if anything changes, ``main.py`` is removed first, so that a board cut off
   half way never boots a mix of old and new modules (it boots to the REPL instead, and
   the next deploy finishes the job); stale files in firmware/ and drivers/ (modules the
   bundle no longer has, sources that would shadow the .mpy, leftovers) are removed; each
   file is written to ``name.tmp``, its hash checked on the board, then renamed onto
   ``name``. An interrupted copy therefore never leaves a half file under a real name,
   and a rerun skips everything already complete. ``main.py`` and ``manifest.json`` go
   last: a board holding the bundle's manifest holds the whole bundle.
5. **verify** -- hash every file on the board again and compare with the manifest.

Exit codes: 0 deployed and verified; 1 refused (incompatible board, another station) or
failed (link lost, verification failed: rerun to resume); 2 bad usage or bad bundle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gateway.deploy.board import Board, BoardError, BoardInfo
from gateway.deploy.bundle import (
    CODE_DIRS,
    MANIFEST,
    BoardMpy,
    Bundle,
    BundleError,
    mpy_incompatibility,
    open_bundle,
    sha256_file,
)

LAST = ("main.py", MANIFEST)  # written after everything else, in this order
TMP = ".tmp"


class DeployRefused(Exception):
    """The board is not one to deploy this bundle to; the message says why."""


class IncompatibleBoard(DeployRefused):
    """The board's MicroPython cannot load the bundle's .mpy files."""

    def __init__(self, bundle: str, board: str, reason: str) -> None:
        self.bundle = bundle
        self.board = board
        self.reason = reason
        super().__init__(
            f"incompatible board: the bundle is {bundle}, the board's MicroPython loads {board}: "
            f"{reason}. Build the bundle with the mpy-cross of the board's MicroPython "
            "version, or flash the board with the MicroPython the bundle was built for."
        )


class WrongStation(DeployRefused):
    def __init__(self, board_station: str, bundle_station: str) -> None:
        self.board_station = board_station
        self.bundle_station = bundle_station
        super().__init__(
            f"the board is station {board_station}, the bundle is for {bundle_station}: "
            "wrong board? To re-identify this board use --replace-station (records still "
            f"in its ring were signed as {board_station} and will be refused by the gateway)."
        )


class VerifyFailed(Exception):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("verification failed: " + "; ".join(problems[:5]))


@dataclass
class DeployReport:
    station: str
    board: BoardInfo | None = None
    board_station: str | None = None
    files: int = 0
    copied: list[str] = field(default_factory=list)
    copied_bytes: int = 0
    resumed: list[str] = field(default_factory=list)  # complete .tmp found: renamed only
    skipped: list[str] = field(default_factory=list)
    skipped_bytes: int = 0
    removed: list[str] = field(default_factory=list)
    verified: int = 0


Say = Callable[[str, str], None]


def _quiet(tag: str, text: str) -> None:
    pass


def check_compatible(bundle: Bundle, info: BoardInfo) -> None:
    if info.sys_mpy is None:
        raise IncompatibleBoard(
            bundle.mpy.describe(),
            f"MicroPython {info.version} (no sys.implementation._mpy: older than 1.12)",
            "the board cannot say which .mpy version it loads",
        )
    board_mpy = BoardMpy.from_sys_mpy(info.sys_mpy)
    reason = mpy_incompatibility(bundle.mpy, board_mpy)
    if reason is not None:
        raise IncompatibleBoard(bundle.mpy.describe(), board_mpy.describe(), reason)
    if not info.has_sha256:
        raise DeployRefused(
            "the board's MicroPython has no hashlib.sha256, so copies cannot be verified there"
        )


def _board_station(board: Board) -> str | None:
    text = board.read_text("config.json")
    if text is None:
        return None
    import json

    try:
        station = json.loads(text).get("station")
    except (ValueError, AttributeError):
        return None
    return station if isinstance(station, str) else None


def deploy_bundle(
    bundle: Bundle,
    board: Board,
    *,
    replace_station: bool = False,
    say: Say = _quiet,
) -> DeployReport:
    """Deploy ``bundle`` over the open ``board`` session (steps in the module docstring)."""
    report = DeployReport(bundle.station)
    info = board.info()
    report.board = info
    board_mpy = BoardMpy.from_sys_mpy(info.sys_mpy) if info.sys_mpy is not None else None
    say(
        "board",
        f"{board.port}: MicroPython {info.version} on {info.platform}"
        + (f", loads {board_mpy.describe()}" if board_mpy else ""),
    )
    check_compatible(bundle, info)
    report.board_station = _board_station(board)
    if report.board_station is not None and report.board_station != bundle.station:
        if not replace_station:
            raise WrongStation(report.board_station, bundle.station)
        say("station", f"re-identifying the board: {report.board_station} -> {bundle.station}")
    else:
        say(
            "station",
            f"{bundle.station}" + (" (fresh board)" if report.board_station is None else ""),
        )

    entries = {e["path"]: e for e in bundle.files}
    entries[MANIFEST] = {
        "path": MANIFEST,
        "size": (bundle.root / MANIFEST).stat().st_size,
        "sha256": sha256_file(bundle.root / MANIFEST),
    }
    order = sorted((p for p in entries if p not in LAST), key=lambda p: (p.count("/") == 0, p))
    order += list(LAST)
    report.files = len(order)

    on_board = board.hashes(order + [p + TMP for p in order])
    todo = [p for p in order if on_board[p] != (entries[p]["size"], entries[p]["sha256"])]
    # Anything else in firmware/ and drivers/ goes: retired modules, sources that would
    # shadow a .mpy (MicroPython looks for name.py before name.mpy), foreign leftovers. A
    # bundle file's name.tmp is not stale: _copy finishes or overwrites it.
    tmps = {p + TMP for p in entries}
    stale = sorted(
        p for d in CODE_DIRS for p in board.walk(d) if p not in entries and p not in tmps
    )
    if todo or stale:
        # No half-updated station at the next power-up: no main.py (and no manifest, the
        # mark of a complete deploy) until everything else is in place.
        todo = [p for p in order if p in todo or p in LAST]
    for path in order:
        if path not in todo:
            report.skipped.append(path)
            report.skipped_bytes += entries[path]["size"]
    to_write = sum(
        entries[p]["size"]
        for p in todo
        if on_board[p + TMP] != (entries[p]["size"], entries[p]["sha256"])
    )
    say(
        "plan",
        f"{len(todo)} to copy ({to_write} bytes), {len(report.skipped)} already on the board, "
        f"{len(stale)} stale to remove",
    )
    if info.free_bytes is not None:
        freed = sum(v[0] for p in todo if (v := on_board[p]) is not None)
        if to_write - freed > info.free_bytes:
            raise DeployRefused(
                f"the board has {info.free_bytes} bytes free, "
                f"the copy needs {to_write - freed} more"
            )

    if todo:
        for path in LAST:
            if on_board[path] is not None:
                board.remove(path)
        for path in stale:
            board.remove(path)
            report.removed.append(path)
        for folder in sorted({p.rsplit("/", 1)[0] for p in todo if "/" in p}):
            board.mkdirs(folder)
        for path in todo:
            _copy(board, bundle, path, entries[path], on_board[path + TMP], report)
            say("copy", f"{path} ({entries[path]['size']} bytes)")

    after = board.hashes(order)
    problems = []
    for path in order:
        want = (entries[path]["size"], entries[path]["sha256"])
        if after[path] != want:
            problems.append(f"{path}: " + ("missing" if after[path] is None else "hash differs"))
    if problems:
        raise VerifyFailed(problems)
    report.verified = len(order)
    # Leftover name.tmp files of an earlier, interrupted run.
    for path in order:
        if on_board.get(path + TMP) is not None and path not in report.resumed:
            board.remove(path + TMP)
    return report


def _copy(
    board: Board,
    bundle: Bundle,
    path: str,
    entry: dict[str, object],
    tmp_state: tuple[int, str] | None,
    report: DeployReport,
) -> None:
    want = (entry["size"], entry["sha256"])
    if tmp_state == want:  # a complete copy from an interrupted run: only the rename was missing
        board.rename(path + TMP, path)
        report.resumed.append(path)
        return
    data = (bundle.root / path).read_bytes()
    board.write_file(path + TMP, data)
    got = board.hashes([path + TMP])[path + TMP]
    if got != want:
        raise VerifyFailed([f"{path}{TMP}: written but its hash on the board differs ({got})"])
    board.rename(path + TMP, path)
    report.copied.append(path)
    report.copied_bytes += len(data)


# ---------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", required=True, help="the board's serial port, e.g. /dev/ttyUSB0")
    p.add_argument(
        "--bundle",
        type=Path,
        help="bundle folder or .tar (default: the only one under build/bundles/)",
    )
    p.add_argument("--baudrate", type=int, default=115200)
    p.add_argument(
        "--replace-station",
        action="store_true",
        help="deploy even though the board holds another station's config",
    )
    p.add_argument("--no-soft-reset", action="store_true", help="do not soft-reset on connecting")


def _default_bundle() -> Path:
    root = Path("build") / "bundles"
    found = (
        sorted(p for p in root.glob("*") if p.is_dir() or p.suffix == ".tar")
        if root.is_dir()
        else []
    )
    if len(found) != 1:
        which = ", ".join(str(p) for p in found) or f"none under {root}/"
        raise BundleError(f"say which bundle to deploy with --bundle (found: {which})")
    return found[0]


def _say(tag: str, text: str) -> None:
    print(f"{tag:<9} {text}", flush=True)


def run(args: argparse.Namespace) -> int:
    try:
        path = args.bundle or _default_bundle()
        with open_bundle(path) as bundle:
            m = bundle.manifest
            fw = m["firmware"]
            _say(
                "bundle",
                f"{path}: station {bundle.station}, firmware {fw['version']}"
                + (f" ({fw['commit'][:12]})" if fw.get("commit") else "")
                + f", {bundle.mpy.describe()}, {len(bundle.files) + 1} files",
            )
            try:
                with Board(
                    args.port, baudrate=args.baudrate, soft_reset=not args.no_soft_reset
                ) as board:
                    report = deploy_bundle(
                        bundle, board, replace_station=args.replace_station, say=_say
                    )
            except DeployRefused as e:
                print(f"lantian deploy: refused: {e}", file=sys.stderr)
                return 1
            except (BoardError, VerifyFailed) as e:
                print(f"lantian deploy: failed: {e}", file=sys.stderr)
                print(
                    "lantian deploy: run the same command again: it resumes where this stopped",
                    file=sys.stderr,
                )
                return 1
    except BundleError as e:
        print(f"lantian deploy: {e}", file=sys.stderr)
        return 2
    _say(
        "copied",
        f"{len(report.copied)} files, {report.copied_bytes} bytes"
        + (f"; {len(report.resumed)} finished from a complete .tmp" if report.resumed else ""),
    )
    _say(
        "skipped",
        f"{len(report.skipped)} files already on the board with the right hash "
        f"({report.skipped_bytes} bytes)",
    )
    if report.removed:
        _say("removed", f"{len(report.removed)} stale: {', '.join(report.removed)}")
    _say(
        "verified",
        f"{report.verified} of {report.files} files on the board match the manifest (SHA-256)",
    )
    if report.board is not None and report.board.watchdog:
        start = "the board restarts into it within ~8 s (its watchdog), or press reset"
    else:
        start = "press the board's reset button (or: mpremote connect PORT reset) to start it"
    _say("done", f"station {report.station} deployed; {start}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="lantian deploy", description="copy a station bundle to a board"
    )
    configure_parser(p)
    return run(p.parse_args(argv))
