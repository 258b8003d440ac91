"""Atomic config writes under power loss, on the real micropython binary.

    micropython tests/firmware/mp/config_cli.py load <path>
    micropython tests/firmware/mp/config_cli.py init <path>
    micropython tests/firmware/mp/config_cli.py loop <path> <seed> <tear_at_op>

``load`` prints ``L <version> <source>`` or ``NOVALID <reasons>``. ``init`` writes version
0. ``loop`` loads the current version v, then writes v+1, v+2, ... with
``firmware.atomic.write_atomic`` and prints ``W <version>`` after each write returned,
until SIGKILLed (tear_at_op 0) or until hil_tests/tornfs.py fails the power at that
operation (prints ``TORN ...``, exits 3).
"""

import json
import sys

sys.path.insert(0, ".")

from firmware.atomic import NoValidCopy, read_with_fallback, write_atomic
from hil_tests.tornfs import PowerLoss, TornFs


def validate(raw):
    cfg = json.loads(raw)
    if not isinstance(cfg, dict) or not isinstance(cfg.get("version"), int):
        raise ValueError("not a station config")
    return cfg


def encode(version):
    # Lengths vary so that a torn file is sometimes a valid JSON prefix of nothing.
    cfg = {"version": version, "station": "yb-town-01", "pad": "x" * (version * 13 % 97)}
    return json.dumps(cfg).encode()


def emit(line):
    # One write(2) per line: a SIGKILL never leaves half a line that parses as another.
    sys.stdout.write(line + "\n")


def load(path):
    try:
        cfg, source = read_with_fallback(path, validate)
    except NoValidCopy as e:
        emit(f"NOVALID {e}")
        return None
    emit(f"L {cfg['version']} {source}")
    return cfg["version"]


def main(argv):
    mode, path = argv[1], argv[2]
    if mode == "load":
        load(path)
    elif mode == "init":
        write_atomic(path, encode(0))
        emit("W 0")
    elif mode == "loop":
        seed, tear_at = int(argv[3]), int(argv[4])
        fs = TornFs(tear_at, seed=seed) if tear_at else None
        version = load(path)
        if version is None:
            sys.exit(2)
        try:
            for _ in range(1000000):
                version += 1
                write_atomic(path, encode(version), fs)
                emit(f"W {version}")
        except PowerLoss:
            emit(fs.report())
            sys.exit(3)


main(sys.argv)
