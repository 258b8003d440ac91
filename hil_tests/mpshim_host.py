"""Host side of the ``machine``/``network`` shims (hil_tests/mpshim/): environment and
control files for running the real firmware on the MicroPython unix port.

The protocols themselves are documented in hil_tests/mpshim/machine.py and network.py;
this module only builds and reads them, so a harness never spells a variable by hand::

    env = shim_env(uarts={1: sensor.port_path}, pins={4: tmp / "pin4.log"},
                   wdt_file=tmp / "wdt", net_file=tmp / "net")
    set_network(tmp / "net", up=False)        # the station loses its WLAN link
    read_pin_log(tmp / "pin4.log")            # [(ticks_ms, value), ...]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tests.tooling import ROOT

MPSHIM_DIR = ROOT / "hil_tests" / "mpshim"
RESET_EXIT_CODE = 82  # machine.RESET_EXIT_CODE: the process called machine.reset()
WDT_RESET = 3  # machine.WDT_RESET, for LANTIAN_RESET_CAUSE
SOFT_RESET = 5


def micropython_path(*extra: str | os.PathLike[str]) -> str:
    """``MICROPYPATH``: the shims first, then the repository root, then ``.frozen``
    (the port's asyncio; MICROPYPATH replaces the default path, so it must be named)."""
    parts = [str(MPSHIM_DIR), str(ROOT), *(str(p) for p in extra), ".frozen"]
    return ":".join(parts)


def shim_env(
    *,
    uarts: Mapping[int, str | os.PathLike[str]] | None = None,
    pins: Mapping[int | str, str | os.PathLike[str]] | None = None,
    wdt_file: str | os.PathLike[str] | None = None,
    net_file: str | os.PathLike[str] | None = None,
    reset_cause: int | None = None,
    unique_id: bytes | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment for a ``micropython`` child that uses the shims."""
    env = dict(os.environ if base is None else base)
    for key in [k for k in env if k.startswith("LANTIAN_")]:
        del env[key]  # nothing leaks in from the caller's own environment
    env["MICROPYPATH"] = micropython_path()
    for uid, path in (uarts or {}).items():
        env[f"LANTIAN_UART_{uid}"] = str(path)
    for pid, path in (pins or {}).items():
        env[f"LANTIAN_PIN_{pid}"] = str(path)
    if wdt_file is not None:
        env["LANTIAN_WDT_FILE"] = str(wdt_file)
    if net_file is not None:
        env["LANTIAN_NET_FILE"] = str(net_file)
    if reset_cause is not None:
        env["LANTIAN_RESET_CAUSE"] = str(reset_cause)
    if unique_id is not None:
        env["LANTIAN_UNIQUE_ID"] = unique_id.hex()
    return env


def set_network(path: str | os.PathLike[str], up: bool) -> None:
    """Switch the shimmed WLAN link (atomically: the firmware never reads half a word)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("up\n" if up else "down\n", encoding="ascii")
    os.replace(tmp, path)


def read_pin_log(path: str | os.PathLike[str]) -> list[tuple[int, int]]:
    """The ``(ticks_ms, value)`` lines a shimmed Pin appended (complete lines only)."""
    try:
        text = Path(path).read_text(encoding="ascii")
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines(keepends=True):
        if not line.endswith("\n"):
            break  # being written right now
        ticks, value = line.split()
        out.append((int(ticks), int(value)))
    return out
