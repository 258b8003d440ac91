"""Runs the shared test modules on the real ``micropython`` binary.

A test module opts in by setting ``RUNS_ON_MICROPYTHON = True`` at module level; it is then
written in the MicroPython subset and pytest runs it on CPython as usual, while this test
runs it again, unchanged, on the MicroPython unix port through tests/mp/runner.py.
A missing interpreter is a failure with a message, never a skip.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.tooling import ROOT, micropython_binary

SHARED_MARK = re.compile(r"^RUNS_ON_MICROPYTHON\s*=\s*True\s*$", re.MULTILINE)


def shared_modules() -> list[Path]:
    found = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        if SHARED_MARK.search(path.read_text(encoding="utf-8")):
            found.append(path.relative_to(ROOT))
    return found


def test_there_are_shared_modules() -> None:
    assert shared_modules(), "no test module is marked RUNS_ON_MICROPYTHON = True"


def test_shared_modules_pass_on_micropython() -> None:
    mp = micropython_binary()
    paths = [str(p) for p in shared_modules()]
    proc = subprocess.run(
        [mp, "tests/mp/runner.py", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    print(proc.stdout)
    print(proc.stderr)
    assert proc.returncode == 0, f"MicroPython run failed:\n{proc.stdout}\n{proc.stderr}"
    assert re.search(r"micropython: [1-9]\d* passed, 0 failed", proc.stdout)
