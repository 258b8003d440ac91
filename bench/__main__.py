"""``python -m bench``: run the benchmarks of issue 7, write bench/results.json, print a table.

    python -m bench                      # everything, full sizes (make bench)
    python -m bench --quick --out X.json # tiny sizes, for the smoke test (no timing claims)
    python -m bench --only kernel,firmware

Sections: ``kernel`` (bench/kernel.py), ``ingest`` (bench/ingest.py, gateway against a
bare paho subscriber on a real mosquitto), ``firmware`` (bench/firmware.py on
MicroPython), ``replay`` (bench/replay.py). Every
figure is the median of ``--runs`` runs (at least 5 unless asked otherwise; the quick
replay runs once). docs/performance.md explains each figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import firmware, ingest, kernel, replay
from bench.report import machine_info, render_table
from tests.tooling import ROOT

SECTIONS = ("kernel", "ingest", "firmware", "replay")
DEFAULT_OUT = ROOT / "bench" / "results.json"


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results JSON path")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}"
    )
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(only) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}; choose from {SECTIONS}")
    if args.runs < 1:
        parser.error("--runs must be >= 1")

    started = time.perf_counter()
    results: dict[str, Any] = {
        "schema": 1,
        "issue": 7,
        "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "runs": args.runs,
        "machine": machine_info(),
    }
    runners: dict[str, Callable[[], dict[str, Any]]] = {
        "kernel": lambda: kernel.run(quick=args.quick, runs=args.runs, log=_log),
        "ingest": lambda: ingest.run(quick=args.quick, runs=args.runs, log=_log),
        "firmware": lambda: firmware.run(quick=args.quick, runs=args.runs),
        "replay": lambda: replay.run(quick=args.quick, runs=args.runs, log=_log),
    }
    for name in SECTIONS:
        if name not in only:
            continue
        t0 = time.perf_counter()
        _log(f"bench: {name} ...")
        results[name] = runners[name]()
        _log(f"bench: {name} done in {time.perf_counter() - t0:.1f} s")
    results["elapsed_s"] = time.perf_counter() - started

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    print(render_table(results))
    print(f"\nwritten: {args.out} ({results['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
