"""Every module of drivers/ and firmware/ compiles with mpy-cross, and the compiled .mpy
files (no sources beside them) import on the real MicroPython interpreter — the check a
field deployer relies on when a bundle of .mpy files is flashed to a board."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.tooling import ROOT, micropython_binary, mpy_cross_binary


def station_modules() -> list[Path]:
    return sorted(
        p.relative_to(ROOT) for d in ("drivers", "firmware") for p in (ROOT / d).rglob("*.py")
    )


def test_every_station_module_compiles_and_imports_from_mpy(tmp_path: Path) -> None:
    modules = station_modules()
    assert modules
    for rel in modules:
        out = tmp_path / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            [mpy_cross_binary(), "-o", str(out), str(rel)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, f"mpy-cross {rel}: {proc.stderr}"
    # Data files a module reads at run time travel with the bundle too.
    for data in (ROOT / "drivers").rglob("*.json"):
        dest = tmp_path / data.relative_to(ROOT)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data.read_bytes())
    names = [".".join(rel.with_suffix("").parts).removesuffix(".__init__") for rel in modules]
    script = (
        "import sys\nsys.path.insert(0, '.')\n"
        + "".join(f"import {name}\n" for name in names)
        + "print('imported', %d)\n" % len(names)
    )
    proc = subprocess.run(
        [micropython_binary(), "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"imported {len(names)}" in proc.stdout
    assert not list(tmp_path.rglob("*.py")), "the import must come from .mpy files only"
