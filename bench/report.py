"""Machine facts for bench/results.json, and the results as a table.

    python -m bench.report [bench/results.json] [--markdown]

prints the table of a results file (plain text, or Markdown for docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.tooling import ROOT, micropython_binary

SIMD_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw")


def _cpuinfo() -> tuple[str, list[str]]:
    model = platform.processor() or "unknown"
    flags: list[str] = []
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            model = value.strip()
        elif key.strip() == "flags" and not flags:
            present = set(value.split())
            flags = [f for f in SIMD_FLAGS if f in present]
    return model, flags


def _mem_total_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _command_line(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    return lines[0] if lines else None


def _native_simd() -> str | None:
    """The vectorised loop the compiled kernel picked on this CPU (avx2, sse2, none)."""
    try:
        from native import _aggregate_c
    except ImportError:
        return None
    level: str = _aggregate_c._simd()
    return level


def machine_info() -> dict[str, Any]:
    """What the figures depend on: CPU, cores, memory, interpreters and library versions,
    and the OpenBLAS variables this machine may set (the element-wise kernels do not use
    BLAS; they are recorded so that nobody has to wonder)."""
    from native import aggregate

    model, simd = _cpuinfo()
    mosquitto = "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else "mosquitto"
    return {
        "cpu_model": model,
        "cpu_simd": simd,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": _mem_total_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "numpy": _version("numpy"),
        "cython": _version("Cython"),
        "pandas": _version("pandas"),
        "paho_mqtt": _version("paho-mqtt"),
        "micropython": _command_line(
            [micropython_binary(), "-c", "import sys; print(sys.version)"]
        ),
        "mosquitto": _command_line([mosquitto, "-h"]),
        "native_kernel": aggregate.IMPLEMENTATION,
        "native_simd": _native_simd(),
        "env": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")},
    }


# ------------------------------------------------------------------------------ table
# (section, field, unit, format, note)
ROWS: tuple[tuple[str, str, str, str, str], ...] = (
    ("kernel", "native_s", "s", "{:.3f}", "Cython minute_to_day, whole data set"),
    ("kernel", "numpy_s", "s", "{:.3f}", "best vectorised numpy"),
    ("kernel", "pandas_s", "s", "{:.3f}", "pandas resample, count validity"),
    ("kernel", "python_s_scaled", "s", "{:.1f}", "pure-Python twin on a slice, scaled"),
    ("kernel", "floor_s", "s", "{:.4f}", "one numpy pass over the same bytes"),
    ("kernel", "pandas_over_native", "x", "{:.1f}", ""),
    ("kernel", "numpy_over_native", "x", "{:.3f}", ""),
    ("kernel", "native_over_floor", "x", "{:.3f}", ""),
    ("ingest", "pipeline_records_per_s", "rec/s", "{:.0f}", "verify+validate+dedup+store+hours"),
    ("ingest", "bare_records_per_s", "rec/s", "{:.0f}", "bare paho, same broker, QoS 1"),
    ("ingest", "pipeline_over_bare", "x", "{:.3f}", "gateway ingest / bare paho"),
    ("firmware", "cpu_us_per_poll", "us", "{:.1f}", "MicroPython unix port, NOx analyser"),
    ("firmware", "cpu_over_wire_9600", "", "{:.5f}", "CPU / wire time incl. 2 x t3.5"),
    ("firmware", "cpu_over_wire_115200", "", "{:.4f}", ""),
    ("firmware", "heap_growth_bytes_per_cycle", "B", "{:.1f}", "after gc.collect()"),
    ("firmware", "peak_heap_bytes", "B", "{:.0f}", "64-bit unix port"),
    ("replay", "records_per_s", "rec/s", "{:.1f}", "broker start -> last backlog record"),
    ("replay", "drain_records_per_s", "rec/s", "{:.0f}", "first -> last backlog record"),
    ("replay", "reconnect_s", "s", "{:.2f}", "station MQTT back-off"),
    ("replay", "records", "", "{:.0f}", "backlog per run"),
)


def _target(section: dict[str, Any], field: str) -> tuple[str, str]:
    t = section.get("targets", {}).get(field)
    if not t:
        return "", ""
    op = "≥" if t["op"] == ">=" else "≤"
    return f"{op} {t['value']:g}", "met" if t["met"] else "MISSED"


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for section_name, field, unit, fmt, note in ROWS:
        section = results.get(section_name)
        if section is None:
            continue
        value = section.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            shown = fmt.format(value) + (f" {unit}" if unit and unit != "x" else "")
            if unit == "x":
                shown += "×"
        elif section.get("status"):
            shown = str(section["status"])
        else:
            shown = "—"
        target, verdict = _target(section, field)
        rows.append([f"{section_name}.{field}", shown, target, verdict, note])
    return rows


HEADER = ["figure", "value", "target", "", "what"]


def render_table(results: dict[str, Any], markdown: bool = False) -> str:
    rows = table_rows(results)
    if markdown:
        lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [HEADER, *rows]) for i in range(len(HEADER))]
    out = ["  ".join(h.ljust(w) for h, w in zip(HEADER, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    m = results.get("machine", {})
    out.append(
        f"\nmachine: {m.get('cpu_model')}, {m.get('cores')} cores, {m.get('memory_gb')} GB; "
        f"Python {m.get('python')}, numpy {m.get('numpy')}, pandas {m.get('pandas')}, "
        f"Cython {m.get('cython')}; {m.get('micropython')}"
    )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.report")
    parser.add_argument("path", nargs="?", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args(argv)
    results = json.loads(args.path.read_text(encoding="utf-8"))
    print(render_table(results, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
