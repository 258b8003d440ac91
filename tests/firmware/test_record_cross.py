"""The same inputs on CPython and on the real MicroPython binary give byte-identical
minute records, signatures and canonical floats.

Inputs cross the interpreter boundary as IEEE-754 bit patterns (hex of the 8 bytes), not
as decimal text: MicroPython's float parser is not correctly rounded for every input, and
the test is about the firmware's output, not the parser.
"""

from __future__ import annotations

import json
import math
import random
import struct
import subprocess
from pathlib import Path

from drivers import flags
from firmware import canonical, record, sign
from firmware.minute import MinuteAccumulator
from tests.tooling import ROOT, micropython_binary

MP_SCRIPT = r"""
import sys
sys.path.insert(0, ".")
import json, struct, binascii
from firmware import canonical, record, sign
from firmware.minute import MinuteAccumulator

def f64(h):
    return struct.unpack("<d", binascii.unhexlify(h))[0]

with open(sys.argv[1]) as fh:
    spec = json.load(fh)
out = {"floats": [], "records": []}
for h in spec["floats"]:
    out["floats"].append(canonical.format_float(f64(h)))
for c in spec["records"]:
    acc = MinuteAccumulator(len(c["names"]), c["poll_ms"], fraction=c["fraction"])
    for ch, h, flag in c["samples"]:
        acc.add(ch, f64(h), flag)
    r = acc.close(c["ts"])
    body = record.minute_body(c["station"], c["seq"], r, c["names"], c["units"],
                              c["time_valid"], c["fw"], c["cal"])
    key = binascii.unhexlify(c["key"])
    out["records"].append([binascii.hexlify(body).decode(),
                           record.signed_minute(key, body)[-64:].decode()])
print(json.dumps(out))
"""

TRICKY = [
    0.0,
    -0.0,
    41.2,
    38.0,
    0.1,
    0.2,
    0.3,
    1 / 3,
    2 / 3,
    1e-7,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    123456789.0,
    999999.5,
    9999995.0,
    0.000099999,
    0.0001,
    99999999999999.0,
    1e15,
    12345.65,
    12345.75,
    0.8234567,
    -1.5e-5,
    2.5,
    0.125,
    float(2**53),
    1e22,
    1e23,
    4.35,
    0.015,
    1.0000005,
]


def _hex(x: float) -> str:
    return struct.pack("<d", x).hex()


def _f64(h: str) -> float:
    return struct.unpack("<d", bytes.fromhex(h))[0]


def _cases(rng: random.Random) -> dict:
    floats = [_hex(x) for x in TRICKY]
    for _ in range(400):
        x = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            floats.append(_hex(x))
    for _ in range(400):
        floats.append(_hex(rng.uniform(-1000, 1000) * 10 ** rng.randint(-8, 8)))
    records = []
    for k in range(40):
        n = rng.randint(1, 4)
        poll = [rng.choice([1000, 2000, 5000, 10000]) for _ in range(n)]
        samples = []
        for i in range(n):
            for _ in range(rng.randint(0, 60000 // poll[i] + 1)):
                flag = rng.choice("NNNNNNNNT" + flags.ALL)
                v = rng.choice(
                    [
                        rng.uniform(0, 500),
                        rng.gauss(40, 15),
                        round(rng.uniform(0, 99), 1),
                        math.nan,
                        rng.uniform(-2, 2),
                    ]
                )
                samples.append([i, _hex(v), flag])
        rng.shuffle(samples)
        records.append(
            {
                "names": ["pm25", "pm10", "so2", "co"][:n],
                "units": ["ug/m3", "ug/m3", "ug/m3", "mg/m3"][:n],
                "poll_ms": poll,
                "fraction": rng.choice([0.75, 0.5, 0.9]),
                "samples": samples,
                "ts": 1764374400 + 60 * k,
                "station": rng.choice(["yb-town-01", "site-\u00e9\u5de5", 'q"uote\\']),
                "seq": rng.randint(0, 2**40),
                "time_valid": rng.random() < 0.8,
                "fw": "0.1.0",
                "cal": rng.randint(0, 50),
                "key": rng.randbytes(rng.choice([16, 32, 64, 65, 100])).hex(),
            }
        )
    return {"floats": floats, "records": records}


def _cpython(spec: dict) -> dict:
    out: dict = {"floats": [canonical.format_float(_f64(h)) for h in spec["floats"]], "records": []}
    for c in spec["records"]:
        acc = MinuteAccumulator(len(c["names"]), c["poll_ms"], fraction=c["fraction"])
        for ch, h, flag in c["samples"]:
            acc.add(ch, _f64(h), flag)
        r = acc.close(c["ts"])
        body = record.minute_body(
            c["station"], c["seq"], r, c["names"], c["units"], c["time_valid"], c["fw"], c["cal"]
        )
        key = bytes.fromhex(c["key"])
        out["records"].append([body.hex(), sign.sign(key, body).decode()])
    return out


def test_micropython_and_cpython_write_identical_records(tmp_path: Path) -> None:
    spec = _cases(random.Random(20251129))
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    script = tmp_path / "cross.py"
    script.write_text(MP_SCRIPT, encoding="utf-8")
    proc = subprocess.run(
        [micropython_binary(), "-X", "heapsize=32M", str(script), str(spec_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    mp = json.loads(proc.stdout)
    cp = _cpython(spec)
    assert len(mp["floats"]) == len(cp["floats"]) > 800
    for h, a, b in zip(spec["floats"], mp["floats"], cp["floats"], strict=True):
        assert a == b, (_f64(h), a, b)
    assert len(mp["records"]) == len(cp["records"]) == 40
    for k, (a, b) in enumerate(zip(mp["records"], cp["records"], strict=True)):
        assert a[0] == b[0], f"record {k}:\n{bytes.fromhex(a[0])!r}\n{bytes.fromhex(b[0])!r}"
        assert a[1] == b[1], f"signature of record {k}"
        json.loads(bytes.fromhex(b[0]))  # and it is JSON
