"""The repository's conftest turns a skip into a failure (never a silent skip)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.tooling import ROOT


def test_a_skipped_test_fails_with_its_reason(tmp_path: Path) -> None:
    shutil.copy(ROOT / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n\ndef test_needs_a_tool():\n    pytest.skip('micropython missing')\n",
        encoding="utf-8",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout
    assert "1 failed" in proc.stdout
    assert "micropython missing" in proc.stdout
