"""The machine/network shims (hil_tests/mpshim/) on the real micropython binary, with the
host side (hil_tests/mpshim_host.py, hil_tests/watchdog_host.py) in this process."""

from __future__ import annotations

import os
import select
import subprocess
import time
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from hil_tests.mpshim_host import (
    RESET_EXIT_CODE,
    WDT_RESET,
    read_pin_log,
    set_network,
    shim_env,
)
from hil_tests.watchdog_host import WatchdogHost, supervise
from tests.tooling import ROOT, micropython_binary

RAW = bytes([0x00, 0x0D, 0x11, 0x13, 0x0A, 0xFF])  # NUL, CR, XON, XOFF, LF, 0xFF


class Child:
    """A micropython process running ``code``, read line by line with deadlines."""

    def __init__(self, code: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [micropython_binary(), "-c", code],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self._buf = b""
        self.lines: list[str] = []

    def line(self, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise AssertionError(f"no line within {timeout}s; so far {self.lines}")
            chunk = os.read(fd, 4096)
            if not chunk:
                raise AssertionError(f"micropython ended; output {self.lines} {self._buf!r}")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\n", 1)
        text = raw.decode()
        self.lines.append(text)
        return text

    def expect(self, prefix: str, timeout: float = 10.0) -> str:
        text = self.line(timeout)
        assert text.startswith(prefix), f"expected {prefix!r}, got {text!r}; {self.lines}"
        return text[len(prefix) :].strip()

    def finish(self, timeout: float = 10.0) -> int:
        code = self.proc.wait(timeout)
        assert self.proc.stdout is not None
        rest = self.proc.stdout.read()
        self.lines += rest.decode().splitlines()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def children() -> Iterator[list[Child]]:
    made: list[Child] = []
    try:
        yield made
    finally:
        for c in made:
            c.close()


@pytest.fixture
def pty() -> Iterator[tuple[int, str]]:
    master, slave = os.openpty()
    tty.setraw(master)
    try:
        yield master, os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


def spawn(children: list[Child], code: str, env: dict[str, str]) -> Child:
    c = Child(code, env)
    children.append(c)
    return c


# --------------------------------------------------------------------------- UART

UART_SCRIPT = r"""
import asyncio, time
from machine import UART
u = UART(1, baudrate=9600, bits=8, parity=None, stop=1, tx=17, rx=16, timeout=0)
buf = bytearray(16)
print("empty", u.readinto(buf), u.any(), u.read())
print("ready")
t0 = time.ticks_ms()
while not u.any() and time.ticks_diff(time.ticks_ms(), t0) < 5000:
    time.sleep_ms(1)
time.sleep_ms(100)
print("any", u.any())
n = u.readinto(buf, 4)
print("part", n, bytes(buf[:n]).hex(), u.any())
print("rest", u.read().hex(), u.any())
print("after", u.readinto(buf), u.read(3), u.any())
print("wrote", u.write(bytes(buf[:4]) + b"\n\xff"))
u.flush()
u.flush()
print("flushed")
async def main():
    r = asyncio.StreamReader(u)
    print("async", (await r.read(16)).hex())
asyncio.run(main())
u.deinit()
print("done")
"""


def test_uart_round_trip_keeps_raw_bytes(children: list[Child], pty: tuple[int, str]) -> None:
    master, path = pty
    c = spawn(children, UART_SCRIPT, shim_env(uarts={1: path}))
    assert c.expect("empty") == "None 0 None"  # nothing waiting: None, like a real UART
    c.expect("ready")
    os.write(master, RAW)
    assert c.expect("any") == "6"
    assert c.expect("part") == "4 000d1113 2"
    assert c.expect("rest") == "0aff 0"
    assert c.expect("after") == "None None 0"
    assert c.expect("wrote") == "6"
    c.expect("flushed")  # flush() twice: no EINVAL from the pty
    echoed = b""
    deadline = time.monotonic() + 5
    while len(echoed) < 6 and time.monotonic() < deadline:
        if select.select([master], [], [], 0.1)[0]:
            echoed += os.read(master, 64)
    assert echoed == RAW  # nothing translated on the way out (no ONLCR, no IXON)
    os.write(master, b"\x13\x11\r\n")
    assert c.expect("async") == "1311" + "0d0a"  # asyncio.StreamReader over the shim
    c.expect("done")
    assert c.finish() == 0


def test_uart_timeout_waits_for_the_first_byte(children: list[Child], pty: tuple[int, str]) -> None:
    _master, path = pty
    code = (
        "import time\nfrom machine import UART\n"
        "u = UART(1, timeout=200)\nt = time.ticks_ms()\nr = u.read(4)\n"
        "print('waited', time.ticks_diff(time.ticks_ms(), t) >= 190, r)\n"
    )
    c = spawn(children, code, shim_env(uarts={1: path}))
    assert c.expect("waited") == "True None"
    assert c.finish() == 0


def test_uart_without_its_variable_is_a_named_error(children: list[Child]) -> None:
    code = (
        "import machine\ntry:\n    machine.UART(7)\n"
        "except machine.ShimConfigError as e:\n    print('error', e.variable, e)\n"
    )
    c = spawn(children, code, shim_env())
    text = c.expect("error")
    assert text.startswith("LANTIAN_UART_7 LANTIAN_UART_7: not set")
    assert c.finish() == 0


# ---------------------------------------------------------------------------- Pin


def test_pin_appends_each_change_to_its_file(children: list[Child], tmp_path: Path) -> None:
    log = tmp_path / "pin4.log"
    code = (
        "import time\nfrom machine import Pin, Signal\n"
        "p = Pin(4, Pin.OUT, value=1)\ntime.sleep_ms(20)\np.off()\np.off()\n"
        "time.sleep_ms(20)\np.on()\np.value(0)\nprint('value', p.value())\n"
        "print('kept', [v for _, v in p.transitions], p.transitions_dropped)\n"
        "s = Signal(Pin(5, Pin.OUT), invert=True)\ns.on()\nprint('signal', s.value())\n"
    )
    c = spawn(children, code, shim_env(pins={4: log}))
    assert c.expect("value") == "0"
    assert c.expect("kept") == "[1, 0, 1, 0] 0"
    assert c.expect("signal") == "1"
    assert c.finish() == 0
    lines = read_pin_log(log)
    assert [v for _, v in lines] == [1, 0, 1, 0]  # the repeated off() is not a change
    ticks = [t for t, _ in lines]
    assert ticks == sorted(ticks) and ticks[1] - ticks[0] >= 15
    assert log.read_text().count("\n") == 4
    assert not (tmp_path / "pin5.log").exists()


# ---------------------------------------------------------------------------- WDT

FEED_THEN_STOP = """
import time
from machine import WDT
w = WDT(timeout={timeout})
for _ in range({feeds}):
    time.sleep_ms(50)
    w.feed()
print("stopped")
time.sleep(30)
print("still alive")
"""


def test_watchdog_kills_a_process_that_stops_feeding(children: list[Child], tmp_path: Path) -> None:
    feed = tmp_path / "wdt"
    c = spawn(children, FEED_THEN_STOP.format(timeout=300, feeds=8), shim_env(wdt_file=feed))
    with WatchdogHost(feed, c.proc, margin_ms=150) as host:
        c.expect("stopped")
        stopped = time.monotonic()
        assert host.wait_for_bite(timeout=5)
        bite = host.bites[0]
    assert c.proc.wait(5) == -9  # SIGKILL: no cleanup ran, like a reset
    assert bite.feeds == 8 and bite.pid == c.proc.pid
    # bites once the last feed is older than timeout + margin (300 + 150 ms), promptly
    assert 450 < bite.age_ms < 450 + 250
    assert bite.at - stopped < 0.45 + 0.35
    assert host.resets == ["wdt"]
    assert not feed.exists()  # a reset disarms; the next boot arms again


def test_watchdog_spares_a_process_that_feeds(children: list[Child], tmp_path: Path) -> None:
    feed = tmp_path / "wdt"
    code = (
        "import time\nfrom machine import WDT\nw = WDT(timeout=300)\n"
        "for _ in range(25):\n    time.sleep_ms(60)\n    w.feed()\nprint('fed', w.feeds)\n"
    )
    c = spawn(children, code, shim_env(wdt_file=feed))
    with WatchdogHost(feed, c.proc) as host:
        assert c.expect("fed", timeout=10) == "25"
        assert c.finish() == 0
        deadline = time.monotonic() + 5
        while host.watching and time.monotonic() < deadline:
            time.sleep(0.02)
    assert host.bites == []
    assert host.resets == ["exit"]


def test_watchdog_restarts_with_wdt_reset_cause(children: list[Child], tmp_path: Path) -> None:
    feed = tmp_path / "wdt"
    env = shim_env(wdt_file=feed)
    first = spawn(children, FEED_THEN_STOP.format(timeout=200, feeds=2), env)
    after = (
        "import machine\nprint('cause', machine.reset_cause(), machine.reset_cause() == "
        "machine.WDT_RESET)\nmachine.WDT(timeout=200).feed()\nmachine.reset()\n"
    )

    def restart(reason: str) -> subprocess.Popen[bytes] | None:
        if reason != "wdt":
            return None
        return spawn(children, after, shim_env(wdt_file=feed, reset_cause=WDT_RESET)).proc

    with WatchdogHost(feed, first.proc, on_reset=restart) as host:
        assert host.wait_for_bite(timeout=5)
        deadline = time.monotonic() + 5
        while host.watching and time.monotonic() < deadline:
            time.sleep(0.02)
    assert host.resets == ["wdt", "reset"]
    second = children[1]
    assert second.expect("cause") == "3 True"
    assert second.finish() == RESET_EXIT_CODE


def test_supervise_restarts_up_to_the_limit(tmp_path: Path) -> None:
    code = "from machine import WDT\nimport time\nWDT(timeout=100)\ntime.sleep(30)\n"
    t0 = time.monotonic()
    resets = supervise(
        [micropython_binary(), "-c", code],
        tmp_path / "wdt",
        max_restarts=1,
        margin_ms=100,
        env=shim_env(),
    )
    assert resets == ["wdt", "wdt"]
    # Not a speed figure: each script would sleep 30 s if the watchdog did not bite, so
    # two runs ending well before one such sleep show the bites ended them.
    assert time.monotonic() - t0 < 25


def test_wdt_refuses_a_timeout_the_rp2040_cannot_do(children: list[Child]) -> None:
    code = (
        "import machine\ntry:\n    machine.WDT(timeout=9000)\n"
        "except ValueError as e:\n    print('error', e)\n"
        "print('id', machine.unique_id().hex(), machine.freq(), machine.reset_cause())\n"
        "machine.freq(48000000)\nprint('freq', machine.freq())\nmachine.reset()\n"
    )
    c = spawn(children, code, shim_env(unique_id=bytes.fromhex("e6614c311b4a2d37")))
    assert "8388" in c.expect("error")
    assert c.expect("id") == "e6614c311b4a2d37 125000000 1"
    assert c.expect("freq") == "48000000"
    assert c.finish() == RESET_EXIT_CODE


# ------------------------------------------------------------------------ network

NET_SCRIPT = r"""
import sys, time, network
w = network.WLAN(network.STA_IF)
def wait(state):
    t = time.ticks_ms()
    while w.isconnected() != state and time.ticks_diff(time.ticks_ms(), t) < 5000:
        time.sleep_ms(5)
    return w.isconnected() == state
try:
    w.connect("ssid", "key")
except OSError:
    print("inactive refused")
w.active(True)
w.connect("ssid", "key")
print("up", w.isconnected(), w.status() == network.STAT_GOT_IP, w.ifconfig()[0])
print("cut", wait(False), w.status() == network.STAT_CONNECTING, w.ifconfig()[0])
w.connect("ssid", "key")
print("retry", w.isconnected(), w.status() == network.STAT_NO_AP_FOUND, w.connect_failures)
print("back", wait(True), w.status() == network.STAT_GOT_IP)
w.disconnect()
print("off", w.isconnected(), w.status() == network.STAT_IDLE)
"""


def test_network_follows_the_control_file(children: list[Child], tmp_path: Path) -> None:
    net = tmp_path / "net"
    set_network(net, up=True)
    c = spawn(children, NET_SCRIPT, shim_env(net_file=net))
    c.expect("inactive refused")
    assert c.expect("up") == "True True 127.0.0.1"
    set_network(net, up=False)
    assert c.expect("cut") == "True True 0.0.0.0"
    assert c.expect("retry") == "False True 1"  # a connect attempt during the outage fails
    set_network(net, up=True)
    assert c.expect("back") == "True True"  # reconnects by itself, like ESP-IDF/CYW43
    assert c.expect("off") == "False True"
    assert c.finish() == 0


def test_network_rejects_a_garbled_control_file(children: list[Child], tmp_path: Path) -> None:
    net = tmp_path / "net"
    net.write_text("sideways")
    code = (
        "import network\nw = network.WLAN()\nw.active(True)\ntry:\n    w.connect('s', 'k')\n"
        "except network.ShimConfigError as e:\n    print('error', e.variable)\n"
    )
    c = spawn(children, code, shim_env(net_file=net))
    assert c.expect("error") == "LANTIAN_NET_FILE"
    assert c.finish() == 0
