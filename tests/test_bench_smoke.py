"""`python -m bench --quick` runs end to end and writes every field of issue 7 as a number.

The bench's sections on tiny sizes: the kernel on 2 stations x 14 days (checked against
native inside the bench), the firmware on the real MicroPython binary, one replay through
a real mosquitto. This test asserts the shape of bench/results.json, never a timing: how
fast anything is belongs to `make bench` and docs/performance.md, not to a test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.tooling import ROOT

REQUIRED = {
    "kernel": (
        "native_s",
        "numpy_s",
        "pandas_s",
        "python_s_scaled",
        "floor_s",
        "pandas_over_native",
        "numpy_over_native",
        "native_over_floor",
    ),
    "ingest": ("pipeline_records_per_s", "bare_records_per_s", "pipeline_over_bare"),
    "firmware": (
        "cpu_us_per_poll",
        "cpu_over_wire_9600",
        "cpu_over_wire_115200",
        "heap_growth_bytes_per_cycle",
        "peak_heap_bytes",
    ),
    "replay": ("records_per_s", "records"),
}
MACHINE = ("cpu_model", "cores", "python", "numpy", "cython", "pandas", "micropython")


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out: Path = tmp_path_factory.mktemp("bench") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"python -m bench --quick failed:\n{proc.stdout}\n{proc.stderr}"
    assert "kernel.pandas_over_native" in proc.stdout  # the table was printed
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    return data


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@pytest.mark.parametrize(
    "field", [f"{s}.{f}" for s, fields in REQUIRED.items() for f in fields], ids=str
)
def test_every_required_field_is_a_number(results: dict[str, Any], field: str) -> None:
    section, name = field.split(".")
    assert is_number(results[section].get(name)), (field, results[section].get(name))


def test_ingest_target_and_verification_are_recorded(results: dict[str, Any]) -> None:
    ingest = results["ingest"]
    target = ingest["targets"]["pipeline_over_bare"]
    assert target["op"] == ">=" and isinstance(target["met"], bool)
    assert ingest["verified"]["accepted"] == ingest["verified"]["stored"] == ingest["records"]
    assert ingest["verified"]["hour_results"] > 0
    assert len(ingest["pipeline_s_all"]) == len(ingest["bare_s_all"]) == ingest["runs"] >= 5


def test_kernel_targets_and_verification_are_recorded(results: dict[str, Any]) -> None:
    kernel = results["kernel"]
    assert set(kernel["targets"]) == {
        "pandas_over_native",
        "numpy_over_native",
        "native_over_floor",
    }
    for target in kernel["targets"].values():
        assert isinstance(target["met"], bool) and target["op"] in (">=", "<=")
    assert kernel["verified"] == ["numpy", "pandas", "python"]
    assert kernel["native_implementation"] == "cython"
    assert kernel["runs"] >= 5


def test_replay_backlog_and_firmware_heap_are_plausible(results: dict[str, Any]) -> None:
    assert results["replay"]["records"] >= results["replay"]["target_records"]
    assert results["firmware"]["peak_heap_bytes"] > results["firmware"]["heap"]["live_bytes"] > 0
    for device in results["firmware"]["devices"].values():
        assert device["all_polls_ok"] is True


def test_machine_info_is_recorded(results: dict[str, Any]) -> None:
    machine = results["machine"]
    for key in MACHINE:
        assert machine.get(key), key
    assert set(machine["env"]) == {"OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"}
