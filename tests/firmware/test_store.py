"""Store-and-forward and atomic config under power loss, on the real micropython binary.

The station firmware runs as the MicroPython unix port in a subprocess (scripts in
tests/firmware/mp/). Power loss comes two ways:

- SIGKILL at a random point while the writer appends and acknowledges. A killed host
  process keeps everything the kernel has, so this tests the *order* of writes.
- hil_tests/tornfs.py fails the power at a random mutating operation and lets only a
  random prefix of that write land, as a board losing power mid-program would.

After each loss a fresh micropython process reopens the ring and drains it (as if the
broker came back), and we check: it opens; every record it hands out is intact (the
payload carries its own seq and SHA-256 tag, independent of the ring's CRC); nothing is
lost but the record in flight (the append or the ack that was interrupted); and
sequence numbers never repeat across all runs.

The randomness is seeded: set LANTIAN_SEED to replay a failure; the seed is printed
and is part of every assertion message.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.tooling import ROOT, micropython_binary

MP_DIR = "tests/firmware/mp"
CAPACITY = 12  # tests/firmware/mp/records.py: 3 segments x 4 slots
RUNS = 50
CONFIG_RUNS = 25


@pytest.fixture
def seed() -> int:
    value = int(os.environ.get("LANTIAN_SEED", random.randrange(1, 2**31)))
    print(f"LANTIAN_SEED={value}")
    return value


def run_mp(*args: str, expect_rc: int = 0) -> list[str]:
    proc = subprocess.run(
        [micropython_binary(), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == expect_rc, (
        f"micropython {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    )
    return proc.stdout.splitlines()


def kill_after(args: list[str], lines_wanted: int, extra_delay: float) -> tuple[list[str], str]:
    """Start micropython, SIGKILL it once it printed ``lines_wanted`` lines (plus a
    short random delay, so the kill lands anywhere in the write path)."""
    proc = subprocess.Popen(
        [micropython_binary(), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        while len(lines) < lines_wanted:
            line = proc.stdout.readline()
            if not line.endswith("\n"):
                out_tail = line
                break
            lines.append(line[:-1])
        else:
            out_tail = ""
        time.sleep(extra_delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # read() through the same buffered reader as readline(): communicate() would
        # read the raw pipe and miss what readline() already buffered.
        out = proc.stdout.read()
        err = proc.stderr.read() if proc.stderr is not None else ""
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # The scripts write each line with one write(2), so a line is complete or absent;
    # still, never parse a last line the kill cut short.
    rest = (out_tail + out).split("\n")
    lines.extend(rest[:-1])  # rest[-1] is "" or an unterminated fragment
    return lines, err


# ---------------------------------------------------------------------------- checks


@dataclass
class History:
    """What all runs so far handed out and what the checker saw."""

    handed_out: set[int] = field(default_factory=set)  # seqs append() returned
    max_issued: int = 0  # highest seq that append() returned or the checker saw
    corrupt_skipped: int = 0
    torn_ops: dict[str, int] = field(default_factory=dict)


def parse_o(line: str) -> tuple[int, int, int]:
    _, next_seq, fill, corrupt = line.split()
    return int(next_seq), int(fill), int(corrupt)


def check_run(ctx: str, writer: list[str], checker: list[str], hist: History) -> None:
    """One power-loss run: the writer's output, then a fresh checker's drain."""
    appended: list[int] = []
    ack_bound = 0  # every seq <= it may have been acknowledged (persisted or in flight)
    acked = 0  # highest seq whose ack() returned
    opened_at = None
    for line in writer:
        kind, *rest = line.split()
        if kind == "O":
            opened_at, _, _ = parse_o(line)
            assert opened_at > hist.max_issued, f"{ctx}: next_seq {opened_at} reuses a seq"
        elif kind == "A":
            seq = int(rest[0])
            assert seq not in hist.handed_out, f"{ctx}: seq {seq} handed out twice"
            expected = appended[-1] + 1 if appended else opened_at
            assert seq == expected, f"{ctx}: append returned {seq}, expected {expected}"
            appended.append(seq)
            hist.handed_out.add(seq)
            hist.max_issued = max(hist.max_issued, seq)
        elif kind == "P":
            assert rest[1] == "ok", f"{ctx}: writer peeked a bad record: {line}"
            assert int(rest[0]) > acked
            ack_bound = max(ack_bound, int(rest[0]))
        elif kind == "K":
            acked = int(rest[0])
        elif kind == "TORN":
            hist.torn_ops[rest[0] + ":" + rest[1].rsplit("/", 1)[-1]] = (
                hist.torn_ops.get(rest[0] + ":" + rest[1].rsplit("/", 1)[-1], 0) + 1
            )
        else:
            raise AssertionError(f"{ctx}: unexpected writer line {line!r}")

    assert checker and checker[0].startswith("O "), f"{ctx}: checker did not open: {checker}"
    next_seq, fill, _ = parse_o(checker[0])
    assert next_seq > hist.max_issued, f"{ctx}: reopened with next_seq {next_seq}, reuses a seq"
    seen: list[int] = []
    for line in checker[1:]:
        kind, *rest = line.split()
        if kind == "R":
            assert rest[1] == "ok", f"{ctx}: a damaged record was handed out: {line}"
            seen.append(int(rest[0]))
        elif kind == "S":
            hist.corrupt_skipped += int(rest[3])
            assert int(rest[4]) == 0, f"{ctx}: ring not drained: {line}"
    assert seen == sorted(set(seen)), f"{ctx}: records out of order or repeated: {seen}"
    assert len(seen) <= CAPACITY <= fill + CAPACITY

    in_flight = appended[-1] + 1 if appended else opened_at
    allowed = set(appended)
    if in_flight is not None:
        allowed.add(in_flight)  # append() may have finished before its print
    extra = set(seen) - allowed
    assert not extra, f"{ctx}: records never appended in this run: {sorted(extra)}"
    assert all(s > acked for s in seen), f"{ctx}: acknowledged records came back: {seen}"
    # What must survive: appended this run, not acknowledged (nor ack in flight), and
    # within the last CAPACITY slots written (the in-flight append may have overwritten
    # the oldest of them).
    newest = in_flight if in_flight is not None else 0
    required = {s for s in appended if s > ack_bound and s > newest - CAPACITY}
    lost = required - set(seen)
    assert not lost, f"{ctx}: records lost beyond the one in flight: {sorted(lost)}"
    if seen:
        hist.max_issued = max(hist.max_issued, max(seen))


# ---------------------------------------------------------------------------- tests


def test_functional_order_wrap_and_reopen(tmp_path: Path) -> None:
    ring = str(tmp_path / "ring")
    out = run_mp(
        f"{MP_DIR}/store_cli.py",
        ring,
        *("append:5", "peek", "ack:2", "ack:1", "peek", "stats"),
        *("append:12", "peek", "stats"),
    )
    assert out[0] == "O 1 0 0"
    assert out[1:6] == [f"A {i}" for i in range(1, 6)]
    assert out[6:11] == ["P 1 ok", "K 2 False", "K 1 True", "P 2 ok", "S 5 1 0 0 4 12 6"]
    assert out[11:23] == [f"A {i}" for i in range(6, 18)]
    # 4 waiting + 12 appended into 12 slots: 2..5 were overwritten, 6 is the oldest.
    assert out[23:] == ["P 6 ok", "S 17 1 4 0 12 12 18"]

    # A fresh process (a reboot) finds all 12, in order, and continues the sequence.
    out = run_mp(f"{MP_DIR}/store_cli.py", ring, "drain", "stats", "append:1")
    assert out[0] == "O 18 12 0"
    assert out[1:13] == [f"R {i} ok" for i in range(6, 18)]
    assert out[13:] == ["S 0 12 0 0 0 12 18", "A 18"]
    out = run_mp(f"{MP_DIR}/store_cli.py", ring, "reopen", "drain")
    assert out == ["O 19 1 0", "O 19 1 0", "R 18 ok"]


def test_sigkill_at_random_points(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ring = str(tmp_path / "ring")
    hist = History()
    for run in range(RUNS):
        ctx = f"LANTIAN_SEED={seed} kill run {run}"
        writer_seed = rng.randrange(1, 2**31)
        lines, err = kill_after(
            [f"{MP_DIR}/store_writer.py", ring, str(writer_seed), "0"],
            lines_wanted=rng.randint(1, 120),
            extra_delay=rng.random() * 0.004,
        )
        assert "Traceback" not in err, f"{ctx}: writer crashed:\n{err}"
        checker = run_mp(f"{MP_DIR}/store_cli.py", ring, "drain", "stats")
        check_run(ctx, lines, checker, hist)
    assert len(hist.handed_out) > RUNS * 5, "the writer barely ran; the test proves little"


def test_torn_writes_at_random_bytes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    ring = str(tmp_path / "ring")
    hist = History()
    for run in range(RUNS):
        ctx = f"LANTIAN_SEED={seed} tear run {run}"
        writer_seed = rng.randrange(1, 2**31)
        tear_at = rng.randint(1, 60)
        lines = run_mp(
            f"{MP_DIR}/store_writer.py", ring, str(writer_seed), str(tear_at), expect_rc=3
        )
        assert lines[-1].startswith("TORN "), f"{ctx}: no tear: {lines[-3:]}"
        checker = run_mp(f"{MP_DIR}/store_cli.py", ring, "drain", "stats")
        check_run(ctx, lines, checker, hist)
    kinds = hist.torn_ops
    print("torn operations:", kinds, "corrupt slots skipped:", hist.corrupt_skipped)
    assert any(k.startswith("write:seg") for k in kinds), f"seed {seed}: no slot write torn"
    assert any(k.startswith("write:cursor") for k in kinds), f"seed {seed}: no cursor torn"
    assert hist.corrupt_skipped > 0, f"seed {seed}: no torn slot was ever detected"


def check_config_run(ctx: str, writer: list[str], loaded: list[str]) -> str:
    start = writer[0].split()
    assert start[0] == "L", f"{ctx}: the writer could not load the config: {writer[0]}"
    last = int(start[1])
    for line in writer[1:]:
        kind, *rest = line.split()
        if kind == "W":
            assert int(rest[0]) == last + 1
            last = int(rest[0])
    assert len(loaded) == 1 and loaded[0].startswith("L "), f"{ctx}: no config: {loaded}"
    _, version, source = loaded[0].split()
    assert int(version) in (last, last + 1), (
        f"{ctx}: loaded version {version}, last written {last} (in flight {last + 1})"
    )
    return source


def test_config_survives_kills_and_tears(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    path = str(tmp_path / "station.json")
    run_mp(f"{MP_DIR}/config_cli.py", "init", path)
    sources: dict[str, int] = {}
    for run in range(CONFIG_RUNS):
        ctx = f"LANTIAN_SEED={seed} config kill run {run}"
        lines, err = kill_after(
            [f"{MP_DIR}/config_cli.py", "loop", path, "1", "0"],
            lines_wanted=rng.randint(1, 30),
            extra_delay=rng.random() * 0.004,
        )
        assert "Traceback" not in err, f"{ctx}: writer crashed:\n{err}"
        loaded = run_mp(f"{MP_DIR}/config_cli.py", "load", path)
        src = check_config_run(ctx, lines, loaded)
        sources[src] = sources.get(src, 0) + 1
    for run in range(CONFIG_RUNS):
        ctx = f"LANTIAN_SEED={seed} config tear run {run}"
        # Each write_atomic is 3 operations (write tmp, rename to .bak, rename tmp):
        # cycle the torn one through all three, after 0..3 complete writes.
        tear_at = 3 * rng.randint(0, 3) + 1 + run % 3
        lines = run_mp(
            f"{MP_DIR}/config_cli.py",
            "loop",
            path,
            str(rng.randrange(1, 2**31)),
            str(tear_at),
            expect_rc=3,
        )
        loaded = run_mp(f"{MP_DIR}/config_cli.py", "load", path)
        src = check_config_run(ctx, lines, loaded)
        sources[src] = sources.get(src, 0) + 1
    print("config loaded from:", sources)
    assert sources.get("backup"), f"seed {seed}: the .bak fallback was never exercised"
