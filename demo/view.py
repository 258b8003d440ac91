"""The demo's live view: what a subscriber to the gateway's results sees, redrawn in place.

:class:`DemoState` subscribes (paho, its own thread) to the stations' retained status, the
hourly and daily results, the alarms and the gateway's status, and keeps the latest of
each. :class:`LiveView` redraws one screen from it on a terminal (ANSI colours, the AQI
in its HJ 633 category colour); :class:`PlainView` prints plain lines instead when stdout
is not a terminal (CI logs, pipes, the test). Neither reads the database: everything on
screen came over MQTT, as it would to a dashboard.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import threading
import unicodedata
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

PREFIX = "lantian/v1"

# HJ 633 AQI levels (spec/standards.md §3): upper bound, level, 类别, category, RGB.
# The results carry their own ``rgb``; this table is the fallback and the legend.
AQI_LEVELS: tuple[tuple[int | None, str, str, str, tuple[int, int, int]], ...] = (
    (50, "I", "优", "Excellent", (0, 228, 0)),
    (100, "II", "良", "Good", (255, 255, 0)),
    (150, "III", "轻度污染", "Lightly polluted", (255, 126, 0)),
    (200, "IV", "中度污染", "Moderately polluted", (255, 0, 0)),
    (300, "V", "重度污染", "Heavily polluted", (153, 0, 76)),
    (None, "VI", "严重污染", "Severely polluted", (126, 0, 35)),
)

UNIT_TEXT = {"ug/m3": "µg/m³", "mg/m3": "mg/m³"}


# ------------------------------------------------------------------ colours
def colour_mode(stream: TextIO) -> str:
    """``"24bit"``, ``"256"`` or ``""`` (no colour: NO_COLOR, dumb terminal, not a TTY)."""
    if os.environ.get("NO_COLOR") or not stream.isatty() or os.environ.get("TERM") == "dumb":
        return ""
    if os.environ.get("COLORTERM", "").lower() in ("truecolor", "24bit"):
        return "24bit"
    return "256"


def rgb_to_256(rgb: tuple[int, int, int]) -> int:
    """The nearest colour of the xterm 6x6x6 cube (indices 16-231)."""
    steps = (0, 95, 135, 175, 215, 255)

    def q(v: int) -> int:
        return min(range(6), key=lambda i: abs(steps[i] - v))

    r, g, b = rgb
    return 16 + 36 * q(r) + 6 * q(g) + q(b)


def paint(text: str, rgb: tuple[int, int, int] | None, mode: str) -> str:
    """``text`` on an ``rgb`` background (black or white text, whichever reads better)."""
    if not mode or rgb is None:
        return text
    r, g, b = rgb
    fg = "30" if 0.299 * r + 0.587 * g + 0.114 * b > 110 else "97"
    bg = f"48;2;{r};{g};{b}" if mode == "24bit" else f"48;5;{rgb_to_256(rgb)}"
    return f"\x1b[{bg};{fg}m{text}\x1b[0m"


def style(text: str, code: str, mode: str) -> str:
    return f"\x1b[{code}m{text}\x1b[0m" if mode else text


def width(text: str) -> int:
    """Display width: CJK characters take two columns."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def pad(text: str, n: int) -> str:
    return text + " " * max(0, n - width(text))


def level_for(aqi: int) -> tuple[int | None, str, str, str, tuple[int, int, int]]:
    for row in AQI_LEVELS:
        if row[0] is None or aqi <= row[0]:
            return row
    return AQI_LEVELS[-1]


def aqi_badge(aqi: dict[str, Any] | None, mode: str, primary: bool = True) -> str:
    """``[ 72 II 良 Good ]`` in the category colour, or why there is no AQI."""
    if not aqi:
        return "no AQI indicator"
    value = aqi.get("aqi")
    if value is None:
        missing = ",".join(aqi.get("missing") or [])
        return f"AQI {aqi.get('aqi_text') or 'NA'}" + (f" (missing {missing})" if missing else "")
    row = level_for(int(value))
    rgb = tuple(aqi["rgb"]) if aqi.get("rgb") else row[4]
    text = (
        f" {value:>3} {aqi.get('level') or row[1]} {aqi.get('category_zh') or row[2]} "
        f"{aqi.get('category') or row[3]} "
    )
    badge = paint(text, rgb, mode)  # type: ignore[arg-type]
    if not mode:
        badge = f"[{text.strip()}]"
    names = aqi.get("primary_pollutants") or []
    return badge + (f" primary {','.join(names)}" if primary and names else "")


# ------------------------------------------------------------------ state
@dataclass
class StationState:
    station: str
    title: str
    channels: list[str]
    online: bool | None = None
    status: dict[str, Any] = field(default_factory=dict)
    hour: dict[str, Any] | None = None
    hours: int = 0
    hours_valid: int = 0  # channel-hours
    channel_hours: int = 0
    day: dict[str, Any] | None = None


class DemoState:
    """The latest of everything, fed by an MQTT subscriber (see module doc)."""

    def __init__(self, stations: list[tuple[str, str, list[str]]], tz: timezone) -> None:
        self.tz = tz
        self.stations = {s: StationState(s, title, chans) for s, title, chans in stations}
        self.alarms: deque[dict[str, Any]] = deque(maxlen=200)
        self.days: list[dict[str, Any]] = []
        self.gateway: dict[str, Any] = {}
        self.published: list[tuple[str, Any]] = []  # every result and alarm, in order
        self.new_events: deque[tuple[str, dict[str, Any]]] = deque()
        self.lock = threading.Lock()
        self._client: mqtt.Client | None = None
        self._connected = threading.Event()

    # -------------------------------------------------------------- MQTT
    def connect(self, host: str, port: int) -> None:
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"lantian-demo-view-{os.getpid()}"
        )
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.reconnect_delay_set(min_delay=0.1, max_delay=1)
        client.connect(host, port, keepalive=30)
        client.loop_start()
        self._client = client
        if not self._connected.wait(10):
            self.close()
            raise TimeoutError(f"the demo's subscriber could not connect to {host}:{port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties):  # type: ignore[no-untyped-def]
        for topic in (
            f"{PREFIX}/station/+/status",
            f"{PREFIX}/result/#",
            f"{PREFIX}/alarm/#",
            f"{PREFIX}/gateway/+/status",
        ):
            client.subscribe(topic, qos=1)
        self._connected.set()

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        for name in ("_sockpairR", "_sockpairW"):  # paho closes these only on GC
            sock = getattr(client, name, None)
            if sock is not None:
                sock.close()

    def _on_message(self, client, userdata, msg):  # type: ignore[no-untyped-def]
        # A foreign or malformed message on a shared broker is not ours to show.
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.handle(msg.topic, bytes(msg.payload))

    def handle(self, topic: str, payload: bytes) -> None:
        parts = topic.split("/")
        with self.lock:
            if parts[2:3] == ["station"] and parts[-1] == "status":
                st = self.stations.get(parts[3])
                if st is None or not payload:
                    return
                doc = _station_status(payload)
                st.online = bool(doc.get("online"))
                # The last-will says only "offline"; keep the last counters beside it.
                st.status = {**st.status, **doc} if not st.online else doc
            elif parts[2:3] == ["result"]:
                doc = json.loads(payload)
                self.published.append((topic, doc))
                st = self.stations.get(doc.get("station", ""))
                if parts[3] == "hour" and st is not None:
                    st.hour = doc
                    st.hours += 1
                    for ch in doc["channels"].values():
                        st.channel_hours += 1
                        st.hours_valid += bool(ch["valid"])
                elif parts[3] == "day":
                    self.days.append(doc)
                    if st is not None:
                        st.day = doc
                    self.new_events.append(("day", doc))
            elif parts[2:3] == ["alarm"]:
                doc = json.loads(payload)
                self.published.append((topic, doc))
                self.alarms.append(doc)
                self.new_events.append(("alarm", doc))
            elif parts[2:3] == ["gateway"]:
                doc = json.loads(payload)
                self.gateway = doc if doc.get("online") else {**self.gateway, **doc}

    def local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self.tz)


def _station_status(payload: bytes) -> dict[str, Any]:
    """A station status: signed (``body\\n<hmac>``) while online; the last-will is plain
    JSON. The view shows it; the gateway is what verifies signatures."""
    try:
        return json.loads(payload)  # type: ignore[no-any-return]
    except ValueError:
        body, _, _sig = payload.rpartition(b"\n")
        return json.loads(body)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ rendering helpers
def fmt_value(v: float | None) -> str:
    if v is None:
        return "—"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def validity_text(ch: dict[str, Any]) -> str:
    if ch["valid"]:
        return "valid"
    return f"INVALID {ch.get('reason') or ''}".rstrip()


def exceedance_text(ch: dict[str, Any]) -> str:
    out = []
    for e in ch.get("exceedances") or []:
        if e.get("exceeds"):
            unc = "" if e.get("confirmed", True) else "*"
            out.append(f"> {e['rule']} {fmt_value(e['limit'])}{unc}")
    return "; ".join(out)


def progress_bar(frac: float, n: int = 40) -> str:
    frac = min(1.0, max(0.0, frac))
    full = int(frac * n)
    return "█" * full + "░" * (n - full)


def alarm_line(a: dict[str, Any], tz: timezone) -> str:
    """One alarm message; ``*`` marks a threshold that is a local setting (not confirmed)."""
    when = datetime.fromtimestamp(a["period_ts"], tz).strftime("%m-%d %H:%M")
    unit = UNIT_TEXT.get(a["unit"], a["unit"])
    star = "" if a.get("confirmed", True) else "*"
    if a["event"] == "start":
        what = f"START {fmt_value(a['value'])} > {fmt_value(a['limit'])}{star} {unit}"
    else:
        span = f"{a['n_exceeding']} {a['period']}{'s' if a['n_exceeding'] != 1 else ''}"
        what = (
            f"clear {fmt_value(a['value'])} ≤ {fmt_value(a['limit'])}{star} {unit} "
            f"({span} over, peak {fmt_value(a['peak'])})"
        )
    return f"{when}  {a['station']:<12} {a['rule']:<31} {what}"


def day_line(d: dict[str, Any], mode: str, channels: list[str] | None = None) -> str:
    """One closed day: its AQI badge and each channel's daily mean (✗ reason if invalid)."""
    parts = []
    hours = set()
    for name in channels or list(d["channels"]):
        ch = d["channels"].get(name)
        if ch is None:
            continue
        hours.add(ch["n_valid"])
        if ch["valid"]:
            parts.append(f"{name} {fmt_value(ch['mean'])}")
        else:
            parts.append(f"{name} ✗ {ch.get('reason') or 'invalid'}")
    aqi = d.get("aqi")
    badge = aqi_badge(aqi, mode, primary=False) if aqi and aqi.get("iaqi") else "no AQI indicator"
    lo, hi = min(hours, default=0), max(hours, default=0)
    hrs = str(lo) if lo == hi else f"{lo}-{hi}"
    return (
        f"{d['station']:<12} {d['day'][5:]}  {badge}  " + " · ".join(parts) + f" · hours {hrs}/24"
    )


# ------------------------------------------------------------------ the views
class LiveView:
    """One screen, redrawn in place on a terminal (cursor home, overwrite, clear rest)."""

    def __init__(
        self, state: DemoState, header: str, stream: TextIO = sys.stdout, scenario: str = ""
    ) -> None:
        self.state = state
        self.header = header
        self.scenario = scenario
        self.out = stream
        self.mode = colour_mode(stream)
        self._started = False

    def start(self) -> None:
        self.out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear once
        self._started = True

    def render(
        self,
        sim_now: float,
        frac: float,
        day_n: float,
        days: float,
        note: str = "",
        force: bool = False,
    ) -> None:
        st = self.state
        m = self.mode
        cols = shutil.get_terminal_size((110, 40)).columns
        lines: list[str] = []
        with st.lock:
            st.new_events.clear()  # the screen shows the latest days and alarms
            when = st.local(sim_now).strftime("%Y-%m-%d %H:%M")
            lines.append(style(self.header, "1", m))
            lines.append(
                f"simulated {when} +08:00  {progress_bar(frac, 30)} {frac * 100:5.1f}%  "
                f"day {min(day_n, days):.1f} of {days:g}  {note}"
            )
            if self.scenario:
                lines.append(style(self.scenario, "2", m))
            lines.append("")
            for s in st.stations.values():
                lines.extend(self._station_block(s))
            lines.append(
                style("DAYS  (valid with ≥ 20 valid hours; daily AQI from the 24-h means)", "1", m)
            )
            for d in st.days[-6:]:
                known = st.stations.get(d["station"])
                lines.append("  " + day_line(d, m, known.channels if known else None))
            if not st.days:
                lines.append("  (a day closes with its last hour, 24:00 local)")
            lines.append(
                style(
                    "ALARMS  (start: first exceeding hour; clear: first valid hour back under)",
                    "1",
                    m,
                )
            )
            for a in list(st.alarms)[-7:]:
                text = alarm_line(a, st.tz)
                lines.append("  " + (style(text, "31", m) if a["event"] == "start" else text))
            if not st.alarms:
                lines.append("  (none yet)")
            elif any(not a.get("confirmed", True) for a in st.alarms):
                lines.append(
                    style(
                        "  * a site threshold that is a local setting, not a confirmed legal limit",
                        "2",
                        m,
                    )
                )
            lines.extend(self._gateway_lines())
        frame = "\x1b[H" + "".join(_clip(line, cols) + "\x1b[K\n" for line in lines) + "\x1b[J"
        self.out.write(frame)
        self.out.flush()

    def _station_block(self, s: StationState) -> list[str]:
        m = self.mode
        if s.online is None:
            link = style(pad("booting", 9), "33", m)
        elif s.online:
            link = style(pad("● online", 9), "32", m)
        else:
            link = style(pad("○ offline", 9), "31", m)
        hour = s.hour
        when = (
            datetime.fromtimestamp(hour["hour_ts"], self.state.tz).strftime("%m-%d %H:00")
            if hour
            else "—"
        )
        hour_aqi = (hour or {}).get("aqi") or {}
        if hour is None:
            aqi = "AQI —"
        elif hour_aqi.get("iaqi"):
            aqi = "AQI " + aqi_badge(hour_aqi, m, primary=False)
        else:
            aqi = "no AQI indicator"
        primary = {p.split("_")[0] for p in hour_aqi.get("primary_pollutants") or []}
        out = [f"{style(pad(s.station, 12), '1', m)} {pad(s.title, 28)} {link} {when}  {aqi}"]
        out.append(
            style(
                "    channel    hourly mean unit   minutes flag validity"
                "                   IAQI  exceeds  (◀ primary pollutant)",
                "2",
                m,
            )
        )
        for name in s.channels:
            ch = hour["channels"].get(name) if hour else None
            if ch is None:
                out.append(f"    {name:<9} {'—':>12}")
                continue
            value = ch["mean"] if ch["valid"] else ch.get("partial_mean")
            vtext = fmt_value(value) if ch["valid"] else f"({fmt_value(value)})"
            valid = style(pad(validity_text(ch), 26), "32" if ch["valid"] else "31", m)
            iaqi = "" if ch.get("iaqi") is None else str(ch["iaqi"])
            if ch.get("pollutant") in primary:
                iaqi += "◀"
            exc = exceedance_text(ch)
            out.append(
                f"    {name:<9} {vtext:>12} {pad(UNIT_TEXT.get(ch['unit'], ch['unit']), 6)} "
                f"{ch['n_valid']:>2}/{ch['n_expected']:<2}   {ch.get('flag') or '-':<4} {valid} "
                f"{iaqi:>5} {style(exc, '31;1', m) if exc else ''}"
            )
        share = f"{s.hours_valid}/{s.channel_hours}" if s.channel_hours else "—"
        ring = s.status.get("ring") or {}
        sent = ring.get("sent", "—")
        waiting = max(0, ring.get("appended", 0) - ring.get("sent", 0)) if ring else "—"
        out.append(
            style(
                f"    hours closed {s.hours} · valid channel-hours {share}"
                f" · minute records sent {sent} · waiting in flash {waiting}",
                "2",
                m,
            )
        )
        out.append("")
        return out

    def _gateway_lines(self) -> list[str]:
        g = self.state.gateway
        if not g:
            return ["GATEWAY  (waiting for its retained status)"]
        c = g.get("counters", {})
        box = g.get("outbox", {})
        online = (
            "online" if g.get("online") else "offline (clean stop; counts as of its last status)"
        )
        return [
            style(f"GATEWAY {g.get('gateway')} {online}", "1", self.mode)
            + f" · kernels {g.get('kernels', '?')} · rules {g.get('ruleset', '?')},"
            f" {g.get('limit_set', '?')}, {g.get('aqi', '?')}",
            f"  minute records received {c.get('received', 0)}, stored {c.get('stored', 0)},"
            f" duplicate {c.get('duplicate', 0)}, rejected {c.get('rejected', 0)}",
            f"  hours closed {c.get('hours_closed', 0)} · days closed {c.get('days_closed', 0)}"
            f" · results published {box.get('published', 0)},"
            f" waiting in the outbox {box.get('pending', 0)}",
        ]

    def stop(self) -> None:
        if self._started:
            self.out.write("\x1b[0m\x1b[?25h")
            self.out.flush()
            self._started = False


def _clip(line: str, cols: int) -> str:
    """Cut a line to ``cols`` display columns, keeping ANSI sequences whole."""
    out, n, i = [], 0, 0
    while i < len(line):
        if line[i] == "\x1b":
            j = line.find("m", i)
            j = len(line) - 1 if j < 0 else j
            out.append(line[i : j + 1])
            i = j + 1
            continue
        w = width(line[i])
        if n + w > cols:
            out.append("\x1b[0m")
            break
        out.append(line[i])
        n += w
        i += 1
    return "".join(out)


class PlainView:
    """Plain lines for logs: progress every ``every_s`` simulated seconds, and each day and
    alarm as it arrives."""

    def __init__(
        self, state: DemoState, header: str, stream: TextIO = sys.stdout, every_s: float = 6 * 3600
    ) -> None:
        self.state = state
        self.out = stream
        self.every_s = every_s
        self._next: float | None = None
        self._done = False
        self.out.write(header + "\n")

    def start(self) -> None:
        pass

    def render(
        self,
        sim_now: float,
        frac: float,
        day_n: float,
        days: float,
        note: str = "",
        force: bool = False,
    ) -> None:
        st = self.state
        lines = self._events()
        with st.lock:
            done = frac >= 1.0 and not self._done
            if self._next is None or sim_now >= self._next or done or force:
                self._done = self._done or frac >= 1.0
                self._next = sim_now + self.every_s
                when = st.local(sim_now).strftime("%Y-%m-%d %H:%M")
                lines.append(f"[{when} +08:00 {progress_bar(frac, 20)} {frac * 100:3.0f}%] {note}")
                for s in st.stations.values():
                    lines.append("  " + self._station_line(s))
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()

    def _station_line(self, s: StationState) -> str:
        link = {None: "booting", True: "online", False: "offline"}[s.online]
        h = s.hour
        if h is None:
            return f"{s.station:<12} {link:<7} no hour closed yet"
        when = datetime.fromtimestamp(h["hour_ts"], self.state.tz).strftime("%H:00")
        parts = []
        for name in s.channels:
            ch = h["channels"].get(name)
            if ch is None:
                continue
            mark = "ok" if ch["valid"] else (ch.get("reason") or "invalid")
            parts.append(
                f"{name} {fmt_value(ch['mean'] if ch['valid'] else None)} {ch['n_valid']}/60 {mark}"
            )
        aqi = aqi_badge(h["aqi"], "") if (h.get("aqi") or {}).get("iaqi") else "no AQI indicator"
        return f"{s.station:<12} {link:<7} hour {when}: " + ", ".join(parts) + f"; {aqi}"

    def _events(self) -> list[str]:
        st = self.state
        lines = []
        with st.lock:
            while st.new_events:
                kind, doc = st.new_events.popleft()
                if kind == "alarm":
                    lines.append("ALARM " + alarm_line(doc, st.tz))
                else:
                    lines.append("DAY   " + day_line(doc, ""))
        return lines

    def stop(self) -> None:
        lines = self._events()  # what arrived after the last render
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()


def make_view(
    state: DemoState, header: str, plain: bool, stream: TextIO = sys.stdout, scenario: str = ""
) -> LiveView | PlainView:
    if plain or not stream.isatty():
        return PlainView(state, header + ("\n" + scenario if scenario else ""), stream)
    return LiveView(state, header, stream, scenario)


__all__ = [
    "AQI_LEVELS",
    "DemoState",
    "LiveView",
    "PlainView",
    "colour_mode",
    "make_view",
    "paint",
    "rgb_to_256",
]
