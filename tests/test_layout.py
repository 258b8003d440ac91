"""The layout and layering of DESIGN.md, enforced.

| folder    | may import (of the project) |
|-----------|-----------------------------|
| drivers/  | nothing but itself          |
| firmware/ | drivers/                    |
| native/   | nothing but itself          |
| gateway/  | drivers/, native/           |

Imports are read from the syntax tree, including imports inside functions and
``try``/``except`` blocks, so a lazy import cannot slip past.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.tooling import ROOT

PROJECT_PACKAGES = {"drivers", "firmware", "native", "gateway", "hil_tests", "tests"}
ALLOWED = {
    "drivers": {"drivers"},
    "firmware": {"firmware", "drivers"},
    "native": {"native"},
    "gateway": {"gateway", "drivers", "native"},
}
REQUIRED = ["firmware", "gateway", "drivers", "native", "hil_tests", "tests", "docs"]


def project_imports(path: Path) -> set[str]:
    """Top-level project packages imported anywhere in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: stays inside its own package
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PROJECT_PACKAGES:
                found.add(top)
    return found


def test_layout_folders_exist() -> None:
    missing = [d for d in REQUIRED if not (ROOT / d).is_dir()]
    assert not missing, f"missing top-level folders: {missing}"
    assert (ROOT / "pyproject.toml").is_file()


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_import_boundaries(package: str) -> None:
    violations = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = project_imports(path) - ALLOWED[package]
        if bad:
            violations.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not violations, "layering broken:\n" + "\n".join(violations)


def test_boundary_checker_catches_violations(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text(
        "import os\n"
        "def f():\n"
        "    from gateway.store import db\n"
        "try:\n"
        "    import native.kernels as k\n"
        "except ImportError:\n"
        "    pass\n"
        "from . import sibling\n",
        encoding="utf-8",
    )
    assert project_imports(sample) == {"gateway", "native"}


def test_micropython_subset_has_no_runtime_typing() -> None:
    """drivers/ and firmware/ run on MicroPython: no typing/dataclasses at run time."""
    banned = {"typing", "dataclasses", "enum", "abc"}
    violations = []
    for package in ("drivers", "firmware"):
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                mods = []
                if isinstance(node, ast.Import):
                    mods = [a.name.split(".")[0] for a in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    mods = [(node.module or "").split(".")[0]]
                hits = banned.intersection(mods)
                if hits:
                    violations.append(f"{path.relative_to(ROOT)}: {sorted(hits)}")
    assert not violations, violations
