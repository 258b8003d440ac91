"""Realistic, seedable air-quality signals driven by an injectable clock.

Every signal is a pure function of ``(t, seed)``: ``t`` is UTC epoch seconds, ``seed`` an
int. Nothing is cached and nothing depends on call order, so a test that freezes a
``SimulatedClock`` knows the exact value an emulated sensor holds at that moment, and
two emulators with the same seed serve the same values.

Shapes (local time, UTC+8 by default, DESIGN.md "Time"):

- PM2.5: a site baseline (15..45 µg/m³ from the seed) × a multi-day "weather" factor ×
  a diurnal cycle (high at night and during the morning rush, lowest mid-afternoon when
  the boundary layer is deepest) × minute-scale noise. PM10 is PM2.5 × a coarse ratio
  (1.5..2.0, slowly varying) plus a daytime dust term.
- NO / NO2 (ppb): traffic peaks ~07-09 and ~17-19 local, weaker at weekends; NO2 is a
  smoother, slightly lagged function of the same traffic; NOx = NO + NO2 exactly.
- VOC (ppb isobutylene-equivalent): a low baseline plus episodes (a release at a
  fence-line: fast rise, exponential decay) placed pseudo-randomly per hour slot.

Noise is hash-based (splitmix64 of seed, stream and knot index), interpolated between
knots so the signals are continuous. Units: PM in µg/m³, gases in ppb; ``value_for``
converts to a channel's ``raw_unit`` (ppm, mg/m³) where a profile asks for it.
"""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol

TZ_OFFSET_H = 8.0
DAY_S = 86400.0
_MASK64 = (1 << 64) - 1


# -- clocks -----------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> float:
        """UTC epoch seconds."""
        ...


class RealClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


class SimulatedClock:
    """A clock that runs ``speed`` × real time from ``start``; ``speed=0`` freezes it.

    ``advance(dt)`` and ``set(t)`` move it by hand in either mode. Thread-safe: the
    emulator's loop thread reads it while a test moves it.
    """

    def __init__(self, start: float | None = None, speed: float = 0.0) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self._lock = threading.Lock()
        self._base = time.time() if start is None else float(start)
        self._mono = time.monotonic()
        self._speed = float(speed)

    def now(self) -> float:
        with self._lock:
            return self._base + (time.monotonic() - self._mono) * self._speed

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        with self._lock:
            mono = time.monotonic()
            self._base += (mono - self._mono) * self._speed
            self._mono = mono
            self._speed = float(speed)

    def advance(self, seconds: float) -> float:
        with self._lock:
            self._base += seconds
        return self.now()

    def set(self, t: float) -> None:
        with self._lock:
            self._base = float(t)
            self._mono = time.monotonic()


# -- deterministic noise ----------------------------------------------------------------


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def _stream_id(name: str) -> int:
    h = 1469598103934665603  # FNV-1a 64
    for ch in name.encode():
        h = ((h ^ ch) * 1099511628211) & _MASK64
    return h


def uniform(seed: int, stream: str, k: int) -> float:
    """A uniform value in [0, 1) fixed by (seed, stream, k)."""
    x = _splitmix64((seed & _MASK64) ^ _stream_id(stream))
    x = _splitmix64(x ^ (k & _MASK64))
    return (x >> 11) / float(1 << 53)


def gaussian(seed: int, stream: str, k: int) -> float:
    """A standard normal value fixed by (seed, stream, k) (Box-Muller)."""
    u1 = uniform(seed, stream + "/a", k)
    u2 = uniform(seed, stream + "/b", k)
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2.0 * math.pi * u2)


def smooth_noise(t: float, seed: int, stream: str, period_s: float) -> float:
    """Standard-normal knots every ``period_s``, cosine-interpolated (continuous in t)."""
    x = t / period_s
    k = math.floor(x)
    f = x - k
    w = (1.0 - math.cos(math.pi * f)) / 2.0
    a = gaussian(seed, stream, k)
    b = gaussian(seed, stream, k + 1)
    return a + (b - a) * w


# -- time helpers -----------------------------------------------------------------------


def local_hour(t: float, tz_offset_h: float = TZ_OFFSET_H) -> float:
    """Hour of the local day, 0 <= h < 24."""
    return ((t + tz_offset_h * 3600.0) % DAY_S) / 3600.0


def local_weekday(t: float, tz_offset_h: float = TZ_OFFSET_H) -> int:
    """0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday)."""
    return (int((t + tz_offset_h * 3600.0) // DAY_S) + 3) % 7


def _bump(h: float, centre: float, width: float) -> float:
    """A Gaussian bump on the 24 h circle."""
    d = (h - centre + 12.0) % 24.0 - 12.0
    return math.exp(-0.5 * (d / width) ** 2)


def traffic(t: float, tz_offset_h: float = TZ_OFFSET_H) -> float:
    """Relative traffic intensity: peaks ~08 and ~18 local, ~0.6x at weekends."""
    h = local_hour(t, tz_offset_h)
    week = 0.6 if local_weekday(t, tz_offset_h) >= 5 else 1.0
    return (
        0.12 + week * (_bump(h, 8.0, 0.8) + 0.9 * _bump(h, 18.0, 0.9)) + 0.25 * _bump(h, 13.0, 3.0)
    )


# -- signals ----------------------------------------------------------------------------


def _weather(t: float, seed: int) -> float:
    """Multi-day dispersion factor (log-normal, knots every 12 h)."""
    return math.exp(0.35 * smooth_noise(t, seed, "weather", 12 * 3600.0))


def pm25(t: float, seed: int = 0) -> float:
    """PM2.5 in µg/m³."""
    base = 15.0 + 30.0 * uniform(seed, "pm25-base", 0)
    h = local_hour(t)
    diurnal = 1.0 + 0.35 * math.cos(2.0 * math.pi * (h - 2.0) / 24.0) + 0.35 * _bump(h, 8.5, 1.3)
    noise = math.exp(0.12 * smooth_noise(t, seed, "pm25-min", 60.0))
    jitter = 1.0 + 0.02 * gaussian(seed, "pm25-s", int(t))
    return max(0.0, base * _weather(t, seed) * diurnal * noise * jitter)


def pm10(t: float, seed: int = 0) -> float:
    """PM10 in µg/m³ (always >= PM2.5)."""
    ratio = 1.75 + 0.25 * math.tanh(smooth_noise(t, seed, "pm-ratio", 3 * 3600.0))
    h = local_hour(t)
    dust = 12.0 * _bump(h, 14.0, 3.0) * (1.0 + 0.5 * smooth_noise(t, seed, "dust", 900.0))
    return pm25(t, seed) * ratio + max(0.0, dust)


def no(t: float, seed: int = 0) -> float:
    """NO in ppb."""
    scale = 40.0 + 40.0 * uniform(seed, "no-base", 0)
    noise = math.exp(0.15 * smooth_noise(t, seed, "no-min", 120.0))
    return max(0.0, 2.0 + scale * traffic(t) * _weather(t, seed) * noise)


def no2(t: float, seed: int = 0) -> float:
    """NO2 in ppb: smoother and ~40 min behind the traffic that makes it."""
    scale = 15.0 + 15.0 * uniform(seed, "no2-base", 0)
    lagged = (traffic(t - 2400.0) + traffic(t - 1200.0) + traffic(t - 3600.0)) / 3.0
    noise = math.exp(0.08 * smooth_noise(t, seed, "no2-min", 300.0))
    return max(0.0, 8.0 + scale * lagged * _weather(t, seed) * noise)


def nox(t: float, seed: int = 0) -> float:
    """NOx in ppb (= NO + NO2)."""
    return no(t, seed) + no2(t, seed)


VOC_EPISODE_CHANCE = 0.12  # per hour slot


def voc_episodes(t: float, seed: int = 0) -> list[tuple[float, float, float]]:
    """Episodes that may touch ``t``: (start, duration_s, peak_ppb) from nearby slots."""
    out = []
    slot = math.floor(t / 3600.0)
    for k in range(slot - 3, slot + 1):
        if uniform(seed, "voc-ep", k) >= VOC_EPISODE_CHANCE:
            continue
        start = (k + uniform(seed, "voc-start", k)) * 3600.0
        duration = 600.0 + 2400.0 * uniform(seed, "voc-dur", k)
        peak = 200.0 + 1800.0 * uniform(seed, "voc-peak", k)
        out.append((start, duration, peak))
    return out


def voc(t: float, seed: int = 0) -> float:
    """Total VOC in ppb isobutylene-equivalent: baseline plus release episodes."""
    h = local_hour(t)
    base = (20.0 + 20.0 * uniform(seed, "voc-base", 0)) * (1.0 + 0.3 * _bump(h, 3.0, 4.0))
    value = base * math.exp(0.1 * smooth_noise(t, seed, "voc-min", 60.0))
    for start, duration, peak in voc_episodes(t, seed):
        dt = t - start
        if dt < 0:
            continue
        if dt < 120.0:  # fast rise
            value += peak * dt / 120.0
        elif dt < duration:  # plateau with wobble
            value += peak * (0.8 + 0.2 * math.cos(dt / 90.0))
        else:  # decay once the release stops
            value += (
                peak * (0.8 + 0.2 * math.cos(duration / 90.0)) * math.exp(-(dt - duration) / 300.0)
            )
    return value


def generic(t: float, seed: int = 0) -> float:
    """A slow positive wave for channels with no known gas (arbitrary units)."""
    return (
        50.0
        + 20.0 * math.sin(2.0 * math.pi * local_hour(t) / 24.0)
        + 5.0 * smooth_noise(t, seed, "generic", 300.0)
    )


# -- gas names and units ----------------------------------------------------------------

# key: gas name upper-cased with '.', '_', '-' and spaces removed
SIGNALS = {
    "PM25": (pm25, "ug/m3"),
    "PM10": (pm10, "ug/m3"),
    "NO": (no, "ppb"),
    "NO2": (no2, "ppb"),
    "NOX": (nox, "ppb"),
    "VOC": (voc, "ppb"),
    "TVOC": (voc, "ppb"),
    "ISOBUTYLENE": (voc, "ppb"),
}

# factor to go from the signal's base unit to a channel's raw unit
_UNIT_FACTORS = {
    ("ug/m3", "ug/m3"): 1.0,
    ("ug/m3", "mg/m3"): 1e-3,
    ("ppb", "ppb"): 1.0,
    ("ppb", "ppm"): 1e-3,
}


def normalise_gas(name: str) -> str:
    out = name.upper()
    for ch in "._- ":
        out = out.replace(ch, "")
    return out.replace("µ", "U")


def _normalise_unit(unit: str) -> str:
    return unit.replace("µ", "u").replace("μ", "u").replace("³", "3").lower()


def signal_for(channel: dict):
    """``(fn(t, seed) -> value in the channel's raw unit)`` for a profile channel."""
    keys = [channel.get("gas") or "", channel.get("name") or ""]
    for key in keys:
        found = SIGNALS.get(normalise_gas(key))
        if found is None:
            continue
        fn, base_unit = found
        raw_unit = _normalise_unit(channel.get("raw_unit") or base_unit)
        factor = _UNIT_FACTORS.get((base_unit, raw_unit))
        if factor is None:
            name, unit = channel.get("name"), channel.get("raw_unit")
            raise ValueError(f"channel {name!r}: no conversion from {base_unit} to {unit!r}")
        if factor == 1.0:
            return fn
        return lambda t, seed, _fn=fn, _k=factor: _fn(t, seed) * _k
    return generic
