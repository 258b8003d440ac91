"""Boot: load the config and key, then run the station -- or safe mode, never a crash loop.

On a board, the root ``main.py`` of the bundle is two lines::

    from firmware.main import run
    run()

``run()`` loads ``config.json`` (falling back to ``config.json.bak``, firmware/atomic.py)
and ``key.bin``. When either is missing or invalid the station enters **safe mode**
instead of raising into a reset loop: it keeps the watchdog fed, connects to the broker
when the config names one it can read, and publishes a retained status with
``"safe_mode": true`` and the error, every minute, until a technician fixes the files
(over the REPL, or with a new bundle). Any other unexpected exception is printed, written
to ``crash.log`` and the board is reset after a pause, so that a transient fault heals.

In tests, ``hil_tests/mp_station.py`` calls ``run()`` with a simulated clock and the
``machine``/``network`` shims on the path: the same code path as in the field.
"""

import json
import sys

try:
    import asyncio
except ImportError:  # pragma: no cover
    import uasyncio as asyncio  # type: ignore[no-redef]

from firmware import config as _config
from firmware import sign
from firmware.clock import SystemClock

SAFE_MODE_STATUS_S = 60

# The running Station, for a technician at the REPL: after Ctrl-C,
# ``from firmware.main import station as st`` gives its calibration and status.
station = None


def _join(root, name):
    if not root:
        return name
    return root.rstrip("/") + "/" + name


def _log_crash(root, exc):
    try:
        with open(_join(root, "crash.log"), "a") as f:
            sys.print_exception(exc, f)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        pass


async def _safe_mode(error, station, uplink, key, machine, clock):
    from firmware.mqtt import MQTTClient

    wdt = machine.WDT(timeout=8000)
    status = _config.safe_mode_status(error, station)
    client = None
    topic = None
    if uplink is not None and station is not None:
        topic = (uplink.topic_prefix.rstrip("/") + "/station/" + station + "/status").encode()
        client = MQTTClient(
            uplink.host,
            uplink.port,
            client_id=uplink.client_id,
            keepalive_s=uplink.keepalive_s,
            username=uplink.user,
            password=uplink.password,
            will_topic=topic,
        )
        client.start()
    while True:
        published = False
        if client is not None and client.isconnected():
            status["ts"] = clock.now()
            body = json.dumps(status).encode()
            payload = sign.signed_payload(key, body) if key else body
            published = await client.publish(topic, payload, retain=True)
        # Until the status is out, retry every second; then refresh it every minute.
        for _ in range(SAFE_MODE_STATUS_S if published else 1):
            wdt.feed()
            await asyncio.sleep_ms(1000)


def run(root="", clock=None, machine=None, fs=None):
    """Boot the station found in ``root`` (config.json, key.bin) and run it forever."""
    global station
    if machine is None:
        import machine as _machine

        machine = _machine
    if clock is None:
        clock = SystemClock()
    cfg_path = _join(root, "config.json")
    try:
        cfg = _config.load_config(cfg_path)
        key = _config.load_key(_join(root, "key.bin"))
    except (_config.ConfigError, OSError, ValueError) as e:
        print("lantian: SAFE MODE:", repr(e))
        station_id, uplink = _config.safe_mode_uplink(cfg_path)
        key = None
        try:
            key = _config.load_key(_join(root, "key.bin"))
        except (OSError, ValueError):
            pass  # safe mode reports what it can; an unsigned status then
        asyncio.run(_safe_mode(e, station_id, uplink, key, machine, clock))
        return
    if hasattr(clock, "sync_ntp") and not clock.synced:
        clock.sync_ntp(cfg.time.get("ntp_host"))
    from firmware.station import Station

    try:
        station = Station(cfg, key, clock, machine, root=root, fs=fs)
        asyncio.run(station.run())
    except Exception as e:
        print("lantian: crashed:", repr(e))
        sys.print_exception(e)  # type: ignore[attr-defined]
        _log_crash(root, e)
        import time

        time.sleep(5)
        machine.reset()
