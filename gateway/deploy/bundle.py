"""``lantian bundle STATION.json``: everything one station's board needs, compiled and hashed.

A bundle is a folder (or a ``.tar`` of it) laid out exactly as the board's flash will be::

    main.py                 from firmware.main import run; run()
    config.json             the station config (schema 1), checked by the firmware's validator
    key.bin                 the device key, raw bytes
    firmware/*.mpy          every module of firmware/, compiled by mpy-cross
    drivers/**/*.mpy        every module of drivers/, compiled by mpy-cross
    drivers/profiles/*.json the device profiles, read at boot by drivers.profile
    manifest.json           what is in the bundle (below); not listed in itself

``manifest.json``::

    {"format": 1, "station": "yb-town-01", "built": "2026-11-29T13:30:00Z",
     "firmware": {"version": "0.1.0", "commit": "1dacd0a...", "dirty": false},
     "mpy": {"version": 6, "sub_version": 0, "arch": null, "arch_code": 0, "small_int_bits": 31,
             "mpy_cross": "MicroPython v1.29.0 ...; mpy-cross emitting mpy v6.3"},
     "files": [{"path": "config.json", "size": 812, "sha256": "..."}, ...]}

The ``mpy`` fields are read from the compiled files themselves, not from the compiler's
banner: an .mpy file starts with four bytes (py/persistentcode.c, ``mp_raw_code_load``)::

    byte 0  'M'
    byte 1  the .mpy version (6 since MicroPython 1.19)
    byte 2  feature flags: bits 0-1 the sub-version, bits 2-7 the native architecture
            (0 = bytecode only; 1 x86, 2 x64, 3 armv6, 4 armv6m, 5 armv7m, 6 armv7em,
            7 armv7emsp, 8 armv7emdp, 9 xtensa, 10 xtensawin, 11 rv32imc, 12 rv64imc)
    byte 3  the small-int bits the code was compiled for (mpy-cross's default: 31)

mpy-cross writes the sub-version and architecture only into a file that holds native code;
a bytecode-only file says 0 for both, and a board loads it whatever its own sub-version
and architecture are (see :func:`mpy_incompatibility`).

The config is checked with ``firmware.config.validate`` and the key with
``firmware.config.load_key`` -- the firmware's own code, from the source tree being
bundled, run on CPython in a child process: the gateway package never imports firmware/
(the layering of DESIGN.md), and the check is always the one the board will run.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.keys import write_private

BUNDLE_FORMAT = 1
MANIFEST = "manifest.json"
MAIN_PY = b"from firmware.main import run\nrun()\n"
CODE_DIRS = ("firmware", "drivers")
"""Folders of the bundle that belong to it whole: deploy removes anything else in them."""

MPY_ARCHS = (
    None,
    "x86",
    "x64",
    "armv6",
    "armv6m",
    "armv7m",
    "armv7em",
    "armv7emsp",
    "armv7emdp",
    "xtensa",
    "xtensawin",
    "rv32imc",
    "rv64imc",
)
"""Native architectures by their code in an .mpy header (py/persistentcode.h MP_NATIVE_ARCH_*)."""


class BundleError(Exception):
    """The bundle cannot be built or read; the message says why."""


class ConfigInvalid(BundleError):
    """The station config fails the firmware's validation: ``field`` and ``problem`` of its
    ``ConfigError``; the message is the ConfigError's own text (``config FIELD: PROBLEM``)."""

    def __init__(self, path: Path, field: str, problem: str) -> None:
        self.path = path
        self.field = field
        self.problem = problem
        super().__init__(f"{path}: config {field}: {problem}")


class KeyInvalid(BundleError):
    """The device key file is missing or unusable (the firmware's DeviceKeyError text)."""


class MpyCrossError(BundleError):
    """mpy-cross failed on ``module`` (or could not be run)."""

    def __init__(self, module: str, detail: str) -> None:
        self.module = module
        super().__init__(f"mpy-cross {module}: {detail}")


class BundleDamaged(BundleError):
    """A bundle's files do not match its manifest (``problems`` lists each)."""

    def __init__(self, where: Path, problems: list[str]) -> None:
        self.where = where
        self.problems = problems
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        )
        super().__init__(f"bundle {where} does not match its manifest: {shown}")


# --------------------------------------------------------------------------- .mpy


@dataclass(frozen=True)
class MpyHeader:
    """The four header bytes of an .mpy file, decoded."""

    version: int
    sub_version: int
    arch_code: int
    small_int_bits: int

    @property
    def arch(self) -> str | None:
        """The native architecture's name; None for bytecode only."""
        if self.arch_code < len(MPY_ARCHS):
            return MPY_ARCHS[self.arch_code]
        return f"arch#{self.arch_code}"

    @classmethod
    def parse(cls, head: bytes, where: str = ".mpy") -> MpyHeader:
        if len(head) < 4 or head[0:1] != b"M":
            raise BundleError(f"{where}: not an .mpy file (header {head[:4]!r})")
        return cls(head[1], head[2] & 3, head[2] >> 2, head[3])

    def describe(self) -> str:
        arch = self.arch or "bytecode only"
        return f"mpy v{self.version}.{self.sub_version} ({arch})"


@dataclass(frozen=True)
class BoardMpy:
    """What a board's MicroPython loads, from ``sys.implementation._mpy``: bits 0-7 the
    version, bits 8-9 the sub-version, bits 10-13 the native architecture (docs: "MicroPython
    .mpy files", "Versioning and compatibility")."""

    version: int
    sub_version: int
    arch_code: int

    @classmethod
    def from_sys_mpy(cls, value: int) -> BoardMpy:
        return cls(value & 0xFF, (value >> 8) & 3, (value >> 10) & 0x0F)

    @property
    def arch(self) -> str | None:
        if self.arch_code < len(MPY_ARCHS):
            return MPY_ARCHS[self.arch_code]
        return f"arch#{self.arch_code}"

    def describe(self) -> str:
        return f"mpy v{self.version}.{self.sub_version} ({self.arch or 'no native code'})"


def read_mpy_header(path: Path) -> MpyHeader:
    with path.open("rb") as f:
        return MpyHeader.parse(f.read(4), str(path))


def mpy_incompatibility(bundle: MpyHeader, board: BoardMpy) -> str | None:
    """Why ``board`` cannot load .mpy files with header ``bundle``; None when it can.

    The rule is the loader's own (py/persistentcode.c ``mp_raw_code_load``): the version
    must be equal; the sub-version and the architecture only matter for a file with native
    code, which then needs the board's exact sub-version and architecture. (Byte 3, the
    small-int bits, is not reported by ``sys.implementation``; mpy-cross's default of 31 is
    the smallest any port has.)"""
    if bundle.version != board.version:
        return (
            f"the bundle's .mpy files are version {bundle.version}, "
            f"the board loads version {board.version}"
        )
    if bundle.arch_code:
        if bundle.arch_code != board.arch_code:
            return (
                f"the bundle holds native code for {bundle.arch}, "
                f"the board's architecture is {board.arch or 'none (no native code)'}"
            )
        if bundle.sub_version != board.sub_version:
            return (
                f"the bundle's native code is sub-version {bundle.sub_version}, "
                f"the board's is {board.sub_version}"
            )
    return None


# ------------------------------------------------------------------------ helpers


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(65536), b""):
            h.update(block)
    return h.hexdigest()


def default_source_root() -> Path:
    """The repository holding firmware/ and drivers/ (this file is gateway/deploy/bundle.py)."""
    return Path(__file__).resolve().parents[2]


def mpy_cross_binary() -> str:
    """mpy-cross next to this interpreter (the venv's), else on PATH."""
    here = Path(sys.executable).parent / "mpy-cross"
    if here.exists():
        return str(here)
    found = shutil.which("mpy-cross")
    if found is None:
        raise MpyCrossError(
            "*", "mpy-cross not found next to the Python interpreter nor on PATH (make setup)"
        )
    return found


def firmware_version(source: Path) -> str:
    """``FW_VERSION`` of firmware/station.py, read from its syntax tree (not imported)."""
    path = source / "firmware" / "station.py"
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "FW_VERSION" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise BundleError(f"{path}: no FW_VERSION = '...' found")


def git_state(source: Path) -> tuple[str | None, bool | None]:
    """``(commit, dirty)`` of the source tree; ``(None, None)`` outside a git checkout.
    ``dirty`` covers firmware/ and drivers/ only: the code that goes into the bundle."""
    try:
        head = subprocess.run(
            ["git", "-C", str(source), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None, None
        status = subprocess.run(
            ["git", "-C", str(source), "status", "--porcelain", "--", *CODE_DIRS],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    return head.stdout.strip(), bool(status.stdout.strip())


_VALIDATE = r"""
import json, sys
from firmware import config as c
out = {"ok": False}
try:
    with open(sys.argv[1], "rb") as f:
        raw = f.read()
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise c.ConfigError("file", "not valid JSON (%s)" % e)
    cfg = c.validate(doc)
    key = sys.argv[2] or sys.argv[1].rsplit("/", 1)[0] + "/" + cfg.station + ".key"
    c.load_key(key)
    out = {"ok": True, "station": cfg.station, "warnings": list(cfg.warnings), "key": key}
except c.ConfigError as e:
    out = {"ok": False, "kind": "config", "field": e.field, "problem": e.problem}
except c.DeviceKeyError as e:
    out = {"ok": False, "kind": "key", "message": str(e)}
except OSError as e:
    out = {"ok": False, "kind": "config", "field": "file", "problem": "cannot read: %s" % e}
print(json.dumps(out))
"""


@dataclass(frozen=True)
class CheckedConfig:
    station: str
    warnings: list[str]
    key: Path


def check_config(
    config: Path, key: Path | None = None, source: Path | None = None
) -> CheckedConfig:
    """Run the firmware's validator and key check on CPython; ``key`` defaults to
    ``<station>.key`` beside the config. ``ConfigInvalid`` / ``KeyInvalid`` with the
    firmware's own message."""
    source = source or default_source_root()
    args = [
        sys.executable,
        "-c",
        _VALIDATE,
        str(config.resolve()),
        str(key.resolve()) if key else "",
    ]
    env = dict(os.environ, PYTHONPATH=str(source), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(args, cwd=source, env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise BundleError(f"the firmware's config validator failed to run: {proc.stderr.strip()}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["ok"]:
        if result["kind"] == "key":
            raise KeyInvalid(result["message"])
        raise ConfigInvalid(config, result["field"], result["problem"])
    return CheckedConfig(result["station"], list(result["warnings"]), Path(result["key"]))


def station_modules(source: Path) -> list[Path]:
    """Every module of firmware/ and drivers/, relative to ``source``, sorted."""
    return sorted(
        p.relative_to(source)
        for d in CODE_DIRS
        for p in (source / d).rglob("*.py")
        if "__pycache__" not in p.parts
    )


def compile_module(rel: Path, source: Path, out: Path, mpy_cross: str) -> None:
    """mpy-cross ``source/rel`` to ``out/rel.mpy``; the embedded source name is ``rel``
    (relative), so tracebacks read ``firmware/bus.py`` and builds are reproducible."""
    dest = out / rel.with_suffix(".mpy")
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run(
            [mpy_cross, "-s", rel.as_posix(), "-o", str(dest), rel.as_posix()],
            cwd=source,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except OSError as e:
        raise MpyCrossError(rel.as_posix(), str(e)) from e
    if proc.returncode != 0:
        raise MpyCrossError(rel.as_posix(), (proc.stderr or proc.stdout).strip())


def mpy_cross_version(mpy_cross: str) -> str:
    proc = subprocess.run([mpy_cross, "--version"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip()


def file_entries(root: Path) -> list[dict[str, Any]]:
    """Path, size and SHA-256 of every file under ``root`` except the manifest, sorted."""
    entries = []
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.relative_to(root).as_posix() != MANIFEST:
            entries.append(
                {
                    "path": p.relative_to(root).as_posix(),
                    "size": p.stat().st_size,
                    "sha256": sha256_file(p),
                }
            )
    return entries


def common_mpy_header(root: Path) -> MpyHeader:
    """The one header every .mpy under ``root`` shares (a mix is a broken build)."""
    headers = {read_mpy_header(p): p for p in sorted(root.rglob("*.mpy"))}
    if not headers:
        raise BundleError(f"{root}: no .mpy files")
    if len(headers) > 1:
        seen = ", ".join(f"{p.relative_to(root)}: {h.describe()}" for h, p in headers.items())
        raise BundleError(f"{root}: .mpy files of different versions ({seen})")
    return next(iter(headers))


def write_manifest(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """(Re)write ``root/manifest.json`` from the files and headers found under ``root``,
    keeping ``meta``'s station/firmware/built fields."""
    header = common_mpy_header(root)
    manifest = {
        "format": BUNDLE_FORMAT,
        "station": meta["station"],
        "built": meta["built"],
        "firmware": meta["firmware"],
        "mpy": {
            "version": header.version,
            "sub_version": header.sub_version,
            "arch": header.arch,
            "arch_code": header.arch_code,
            "small_int_bits": header.small_int_bits,
            "mpy_cross": meta.get("mpy", {}).get("mpy_cross", ""),
        },
        "files": file_entries(root),
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


# -------------------------------------------------------------------------- build


@dataclass(frozen=True)
class BuiltBundle:
    path: Path  # the folder or the .tar written
    manifest: dict[str, Any]
    warnings: list[str]


def build_bundle(
    config: Path,
    out: Path | None = None,
    *,
    key: Path | None = None,
    source: Path | None = None,
    mpy_cross: str | None = None,
) -> BuiltBundle:
    """Check ``config`` and ``key`` (default: ``<station>.key`` beside the config), compile
    firmware/ and drivers/ of ``source``, and write the bundle to ``out`` -- a folder, or a
    tar archive when ``out`` ends in ``.tar`` (default: ``build/bundles/<station>``). An
    existing ``out`` is replaced."""
    source = (source or default_source_root()).resolve()
    checked = check_config(config, key, source)
    key = checked.key
    if out is None:
        out = Path("build") / "bundles" / checked.station
    mpy_cross = mpy_cross or mpy_cross_binary()
    commit, dirty = git_state(source)
    as_tar = out.suffix == ".tar"
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        os.chmod(stage, 0o700)  # it holds the device key
        for rel in station_modules(source):
            compile_module(rel, source, stage, mpy_cross)
        for data in sorted((source / "drivers" / "profiles").glob("*.json")):
            dest = stage / data.relative_to(source)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(data, dest)
        (stage / "config.json").write_bytes(config.read_bytes())
        write_private(stage / "key.bin", key.read_bytes())
        (stage / "main.py").write_bytes(MAIN_PY)
        built = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
        meta = {
            "station": checked.station,
            "built": built,
            "firmware": {"version": firmware_version(source), "commit": commit, "dirty": dirty},
            "mpy": {"mpy_cross": mpy_cross_version(mpy_cross)},
        }
        manifest = write_manifest(stage, meta)
        if as_tar:
            _write_tar(stage, out)
        else:
            if out.exists():
                shutil.rmtree(out)
            stage.rename(out)
    finally:
        if stage.exists():
            shutil.rmtree(stage)
    return BuiltBundle(out, manifest, checked.warnings)


def _write_tar(stage: Path, out: Path) -> None:
    """A reproducible tar: sorted names, mtime 0, root:root, the key 0600."""
    tmp = out.with_name(out.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with (
        os.fdopen(fd, "wb") as f,
        tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for p in sorted(stage.rglob("*")):
            if not p.is_file():
                continue
            info = tarfile.TarInfo(p.relative_to(stage).as_posix())
            data = p.read_bytes()
            info.size = len(data)
            info.mode = 0o600 if info.name == "key.bin" else 0o644
            tar.addfile(info, io.BytesIO(data))
    os.replace(tmp, out)


# --------------------------------------------------------------------------- read


@dataclass(frozen=True)
class Bundle:
    """A bundle opened for deploying: its folder (a temporary copy for a .tar) and manifest."""

    root: Path
    manifest: dict[str, Any]

    @property
    def station(self) -> str:
        return str(self.manifest["station"])

    @property
    def files(self) -> list[dict[str, Any]]:
        return list(self.manifest["files"])

    @property
    def mpy(self) -> MpyHeader:
        m = self.manifest["mpy"]
        return MpyHeader(
            int(m["version"]), int(m["sub_version"]), int(m["arch_code"]), int(m["small_int_bits"])
        )


def verify_bundle(root: Path) -> Bundle:
    """Open the bundle folder ``root`` and check it against its manifest: every listed
    file present with its size and hash, nothing unlisted, the .mpy headers as recorded.
    ``BundleDamaged`` listing every mismatch."""
    try:
        manifest: dict[str, Any] = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise BundleError(f"{root}: no readable {MANIFEST} ({e}); is this a bundle folder?") from e
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{root}: bundle format {manifest.get('format')!r}, this tool reads {BUNDLE_FORMAT}"
        )
    problems = []
    listed = {e["path"]: e for e in manifest["files"]}
    for path, entry in listed.items():
        p = root / path
        if not p.is_file():
            problems.append(f"{path} missing")
        elif p.stat().st_size != entry["size"] or sha256_file(p) != entry["sha256"]:
            problems.append(f"{path} differs from its manifest entry")
    for entry in file_entries(root):
        if entry["path"] not in listed:
            problems.append(f"{entry['path']} not in the manifest")
    if problems:
        raise BundleDamaged(root, problems)
    bundle = Bundle(root, manifest)
    actual = common_mpy_header(root)
    if actual != bundle.mpy:
        raise BundleDamaged(
            root,
            [f"the .mpy files are {actual.describe()}, the manifest says {bundle.mpy.describe()}"],
        )
    return bundle


@contextlib.contextmanager
def open_bundle(path: Path) -> Any:
    """``with open_bundle(path) as bundle``: a verified :class:`Bundle` from a folder or a
    ``.tar`` (unpacked into a private temporary folder, removed afterwards)."""
    if path.is_dir():
        yield verify_bundle(path)
        return
    if not path.is_file():
        raise BundleError(f"{path}: no such bundle folder or .tar")
    with tempfile.TemporaryDirectory(prefix="lantian-bundle-") as tmp:
        try:
            with tarfile.open(path) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as e:
            raise BundleError(f"{path}: not a readable bundle archive ({e})") from e
        yield verify_bundle(Path(tmp))


# ---------------------------------------------------------------------------- CLI


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "config", type=Path, metavar="STATION.json", help="the station config (schema 1)"
    )
    p.add_argument(
        "--key", type=Path, help="the device key file (default: <station>.key beside the config)"
    )
    p.add_argument(
        "--out", type=Path, help="bundle folder, or FILE.tar (default: build/bundles/<station>)"
    )
    p.add_argument(
        "--source",
        type=Path,
        help="the tree holding firmware/ and drivers/ (default: this checkout)",
    )


def run(args: argparse.Namespace) -> int:
    """Exit codes: 0 built, 2 invalid config or key, 1 anything else that failed."""
    config: Path = args.config
    try:
        built = build_bundle(config, args.out, key=args.key, source=args.source)
    except (ConfigInvalid, KeyInvalid) as e:
        print(f"lantian bundle: refused: {e}", file=sys.stderr)
        return 2
    except (BundleError, OSError) as e:
        print(f"lantian bundle: failed: {e}", file=sys.stderr)
        return 1
    m = built.manifest
    fw = m["firmware"]
    commit = (fw["commit"] or "no git")[:12] + (" (uncommitted changes)" if fw["dirty"] else "")
    mpy = m["mpy"]
    n_mpy = sum(1 for f in m["files"] if f["path"].endswith(".mpy"))
    print(f"station   {m['station']}")
    print(f"firmware  {fw['version']} at {commit}")
    print(
        f"mpy       v{mpy['version']}.{mpy['sub_version']} {mpy['arch'] or 'bytecode only'}, "
        f"{n_mpy} modules"
    )
    print(f"files     {len(m['files'])}, {sum(f['size'] for f in m['files'])} bytes")
    for w in built.warnings:
        print(f"warning   {w}")
    print(f"bundle    {built.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lantian bundle", description="build a station bundle")
    configure_parser(p)
    return run(p.parse_args(argv))
