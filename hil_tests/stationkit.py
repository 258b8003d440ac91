"""Shared pieces of the station end-to-end tests: the reference station, and helpers that
read what a subscriber received (verifying every signature) and what the emulators held."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from drivers.decoder import conversion_factor
from drivers.profile import load_profile
from hil_tests.rig import DeviceSpec, StationRig
from hil_tests.subscriber import Message, Subscriber

# 2023-11-15 06:12:30 local; records start on the next minute.
T0 = 1_700_000_000 // 60 * 60 + 30
STATION = "yb-town-01"
PM = DeviceSpec("pm", "particulate", 1, 5, {"pm25": "pm25", "pm10": "pm10"}, seed=1)
NOX = DeviceSpec("nox", "nox-analyser", 2, 5, {"no": "no", "no2": "no2", "nox": "nox"}, seed=2)


def body_of(rig: StationRig, msg: Message) -> dict[str, Any]:
    """The record body after checking its HMAC over the exact bytes received."""
    body, _, sig = msg.payload.rpartition(b"\n")
    want = hmac.new(rig.key, body, hashlib.sha256).hexdigest().encode()
    assert hmac.compare_digest(sig, want), f"bad signature on {msg.payload[:80]!r}"
    return json.loads(body)  # type: ignore[no-any-return]


def records(rig: StationRig, sub: Subscriber) -> list[dict[str, Any]]:
    return [body_of(rig, m) for m in sub.on("/data")]


def wait_records(rig: StationRig, sub: Subscriber, n: int, timeout: float = 60) -> None:
    try:
        sub.wait_for(lambda s: len(s.on("/data")) >= n, timeout, f"{n} records")
    except TimeoutError as e:
        raise AssertionError(f"fewer than {n} records arrived; firmware said:\n{rig.log()}") from e


def statuses(rig: StationRig, sub: Subscriber) -> list[dict[str, Any]]:
    out = []
    for m in sub.on("/status"):
        if m.payload.startswith(b'{"online": false'):
            continue
        out.append(body_of(rig, m))
    return out


def signal_envelope(
    rig: StationRig, device: DeviceSpec, source: str, ts: int
) -> tuple[float, float, float]:
    """(min, mean, max) of the value the emulator held over the minute ``ts``, sampled
    every simulated second, in the station's reporting unit."""
    sensor = rig.sensors[device.name]
    prof = load_profile(device.profile)
    i = prof.channel_names.index(source)
    factor = conversion_factor(prof.raw_units[i], prof.units[i], prof.gases[i])
    vals = [sensor.held_value(source, ts + k) for k in range(60)]
    held = [v * factor for v in vals if v is not None]
    return min(held), sum(held) / len(held), max(held)
