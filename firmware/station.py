"""The station runtime: buses -> calibration -> minute records -> flash ring -> MQTT.

One asyncio task per RS-485 bus (firmware/bus.py) hands every sample to
:meth:`Station.sample`, which applies the channel's calibration and mode flags
(firmware/calibration.py) and adds it to the minute accumulator (firmware/minute.py).
At every minute boundary of the station clock the minute task closes the minute, builds
the record body (firmware/record.py), signs it with the device key and appends it to the
flash ring (firmware/store.py) under the next sequence number. The uplink task publishes
the oldest waiting record over MQTT QoS 1 (firmware/mqtt.py) and advances the ring's
read cursor only on PUBACK, so an uplink outage or a reboot loses nothing: measuring
never waits for the network, and records leave in sequence order.

Commands arrive on ``<prefix>/station/<id>/cmd``, signed like records; each is verified
(signature, station, expiry, nonce: firmware/sign.py), executed, written to the on-device
audit log and acknowledged, signed, on ``.../ack`` -- refusals too, with their reason.

The retained status on ``.../status`` carries health (free heap, uptime, ring fill and
drops, bus counters, firmware and calibration versions); the broker replaces it with the
last-will ``{"online": false}`` when the station vanishes.

A supervisor (firmware/watchdog.py) feeds the hardware watchdog only while every task's
heartbeat is fresh, so a stuck task resets the board.

Time comes from the injected clock (firmware/clock.py): ``SystemClock`` on a board,
``SimulatedClock`` in tests, through this same code.
"""

import gc
import json

try:
    import asyncio
except ImportError:  # pragma: no cover - very old ports
    import uasyncio as asyncio  # type: ignore[no-redef]

from firmware import record, sign
from firmware.bus import Bus, Device
from firmware.calibration import AuditLog, Calibration, CalibrationError
from firmware.clock import SystemClock
from firmware.minute import MinuteAccumulator
from firmware.mqtt import MQTTClient
from firmware.store import Ring
from firmware.watchdog import Supervisor

FW_VERSION = "0.1.0"
MINUTE_S = 60
STATUS_INTERVAL_S = 60  # simulated/field seconds between retained status updates
_IDLE_UPLINK_MS = 200  # real ms the uplink waits when the ring is empty


def _join(root, name):
    if not root or name.startswith("/"):
        return name
    return root.rstrip("/") + "/" + name


def _mkdirs(path):
    import os

    parts = path.split("/")
    cur = "/" if path.startswith("/") else ""
    for p in parts:
        if not p:
            continue
        cur = cur + p if (not cur or cur.endswith("/")) else cur + "/" + p
        try:
            os.mkdir(cur)
        except OSError:
            pass


class Station:
    """A configured station. ``cfg`` is a validated config (firmware/config.py),
    ``key`` the device key bytes, ``clock`` an injectable clock, ``machine`` the
    ``machine`` module (real on a board, the shim on the unix port), ``root`` the folder
    for the ring, audit log and calibration state."""

    def __init__(self, cfg, key, clock, machine, root="", fs=None, wdt_clock=None):
        self.cfg = cfg
        self.key = key
        self.clock = clock
        self.machine = machine
        self.root = root
        self.station_id = cfg.station
        up = cfg.uplink
        base = up.topic_prefix.rstrip("/") + "/station/" + cfg.station
        self.topic_data = (base + "/data").encode()
        self.topic_status = (base + "/status").encode()
        self.topic_cmd = (base + "/cmd").encode()
        self.topic_ack = (base + "/ack").encode()
        self.started_epoch = clock.now()
        self.calibration_error = None

        # Channels, in config order; units come from the device profiles (one Profile
        # instance per device, loaded by the config: it holds the device's image).
        devices = {}
        for d in cfg.devices:
            devices[d.name] = d
        names = []
        units = []
        poll_ms = []
        for ch in cfg.channels:
            dev = devices[ch.device]
            prof = dev.profile
            names.append(ch.name)
            units.append(prof.units[prof.channel_names.index(ch.source)])
            poll_ms.append(int(dev.poll_s * 1000))
        self.channel_names = tuple(names)
        self.units = tuple(units)

        if root:
            _mkdirs(root)
        self.audit = AuditLog(_join(root, "audit.log"))
        self.cal_path = _join(root, "calibration.json")
        self.calibration = Calibration(
            self.channel_names, clock, self.audit, persist=self._persist_calibration
        )
        self._load_calibration()
        self.acc = MinuteAccumulator(len(names), poll_ms, fraction=cfg.validity_fraction)
        store = cfg.store
        ring_dir = _join(root, store.dir)
        _mkdirs(ring_dir)
        self.ring = Ring(
            ring_dir,
            slot_size=store.slot_size,
            slots_per_segment=store.slots_per_segment,
            segments=store.segments,
            fs=fs,
        )

        # Buses and their devices.
        self.buses = []
        for b in cfg.buses:
            bus_devices = []
            for d in cfg.devices:
                if d.bus != b.name:
                    continue
                sink = []
                for src in d.profile.channel_names:
                    idx = -1
                    for k in range(len(cfg.channels)):
                        ch = cfg.channels[k]
                        if ch.device == d.name and ch.source == src:
                            idx = k
                    sink.append(idx)
                power = None
                if d.power_pin is not None:
                    power = machine.Pin(d.power_pin, machine.Pin.OUT, value=1)
                bus_devices.append(
                    Device(
                        d.name,
                        d.profile,
                        d.address,
                        int(d.poll_s * 1000),
                        tuple(sink),
                        timeout_ms=d.timeout_ms,
                        power_pin=power,
                        fail_limit=d.fail_limit,
                        backoff_ms=int(d.backoff_s * 1000),
                        power_off_ms=min(2000, int(d.backoff_s * 500)),
                    )
                )
            if not bus_devices:
                continue
            kw = {"baudrate": b.baudrate, "bits": b.bits, "parity": b.parity, "stop": b.stop}
            if b.tx is not None:
                kw["tx"] = b.tx
            if b.rx is not None:
                kw["rx"] = b.rx
            port = machine.UART(b.uart, **kw)
            de = None
            if b.de_pin is not None:
                de = machine.Pin(b.de_pin, machine.Pin.OUT, value=0)
            self.buses.append(Bus(b.name, port, b.baudrate, bus_devices, self, clock, de_pin=de))

        self.nonces = sign.NonceCache(64)
        self.commands = []  # type: list
        self.commands_dropped = 0
        self.messages_foreign = 0
        self.commands_refused = 0
        self.commands_done = 0
        self.records_too_large = 0
        self.publish_timeout_ms = 30000
        self.mqtt = MQTTClient(
            up.host,
            up.port,
            client_id=up.client_id,
            keepalive_s=up.keepalive_s,
            username=up.user,
            password=up.password,
            will_topic=self.topic_status,
            will_payload=b'{"online": false, "station": "' + cfg.station.encode() + b'"}',
            subscriptions=(self.topic_cmd,),
            on_message=self._on_message,
            publish_timeout_ms=self.publish_timeout_ms,
        )
        # The watchdog is physical: its supervisor runs on real time even when the
        # station's clock is simulated.
        self.wdt_clock = wdt_clock if wdt_clock is not None else SystemClock()
        self.supervisor = Supervisor(
            machine.WDT(timeout=cfg.watchdog.timeout_ms), self.wdt_clock, cfg.watchdog.timeout_ms
        )
        self.minute_closed = 0

    # ------------------------------------------------------------ sample path (no alloc)
    def sample(self, i, value, flag):
        """Sink of the bus tasks: calibrate, flag for the modes, accumulate."""
        cal = self.calibration
        if flag == "N" or flag == "T":
            value = cal.apply_value(i, value)
        flag = cal.apply_flag(i, flag)
        self.acc.add(i, value, flag)

    # ------------------------------------------------------------ calibration state
    def _persist_calibration(self, data):
        from firmware.atomic import write_atomic

        write_atomic(self.cal_path, data)

    def _load_calibration(self):
        from firmware.atomic import read_with_fallback

        def check(data):
            self.calibration.load_state(data)
            return data

        try:
            read_with_fallback(self.cal_path, check)
        except OSError:
            pass  # first boot: no calibration stored yet
        except Exception as e:
            self.calibration_error = repr(e)

    # ------------------------------------------------------------ minute records
    def close_minute(self, minute_start):
        """Close the accumulator's minute into a signed record on the ring."""
        closed = self.acc.close(minute_start)
        seq = self.ring.next_seq
        body = record.minute_body(
            self.station_id,
            seq,
            closed,
            self.channel_names,
            self.units,
            self.clock.synced,
            FW_VERSION,
            self.calibration.version,
        )
        payload = record.signed_minute(self.key, body)
        try:
            self.ring.append(payload)
        except ValueError:  # RecordTooLarge: config has more channels than a slot holds
            self.records_too_large += 1
            return None
        self.minute_closed += 1
        return seq

    async def _minute_task(self, hb):
        clock = self.clock
        # The first (partial) minute is closed too: its n_expected says how partial.
        start = clock.now() // MINUTE_S * MINUTE_S
        while True:
            nxt = start + MINUTE_S
            while True:
                left = nxt - clock.now()
                if left <= 0:
                    break
                hb.beat()
                await clock.sleep_ms(min(left * 1000, 1000))
            hb.beat()
            self.close_minute(start)
            start = nxt
            now_min = clock.now() // MINUTE_S * MINUTE_S
            if now_min > start:  # the clock jumped (NTP sync): restart on its grid
                start = now_min

    # ------------------------------------------------------------ uplink
    async def _uplink_task(self, hb):
        mqtt = self.mqtt
        ring = self.ring
        while True:
            hb.beat()
            rec = ring.peek()
            if rec is None or not mqtt.isconnected():
                await asyncio.sleep_ms(_IDLE_UPLINK_MS)
                continue
            seq, view = rec
            # publish() copies the payload into its own transmit buffer before awaiting
            # the PUBACK, so the ring's read view may be reused afterwards.
            ok = await mqtt.publish(self.topic_data, view)
            if ok:
                ring.ack(seq)

    def status(self):
        ring = self.ring.counters()
        buses = {}
        for b in self.buses:
            buses[b.name] = b.counters()
        gc.collect()
        return {
            "v": 1,
            "type": "status",
            "station": self.station_id,
            "online": True,
            "ts": self.clock.now(),
            "time_valid": bool(self.clock.synced),
            "uptime_s": self.clock.now() - self.started_epoch,
            "fw": FW_VERSION,
            "cal": self.calibration.version,
            "maintenance": bool(self.calibration.in_maintenance),
            "heap_free": gc.mem_free() if hasattr(gc, "mem_free") else None,
            "heap_used": gc.mem_alloc() if hasattr(gc, "mem_alloc") else None,
            "ring": ring,
            "minutes": self.minute_closed,
            "records_too_large": self.records_too_large,
            "buses": buses,
            "mqtt": self.mqtt.counters,
            "commands": {
                "done": self.commands_done,
                "refused": self.commands_refused,
                "dropped": self.commands_dropped,
                "foreign": self.messages_foreign,
            },
            "watchdog": self.supervisor.status(),
        }

    async def _status_task(self, hb):
        while True:
            hb.beat()
            if self.mqtt.isconnected():
                body = json.dumps(self.status()).encode()
                await self.mqtt.publish(
                    self.topic_status, sign.signed_payload(self.key, body), retain=True
                )
            for _ in range(STATUS_INTERVAL_S):
                hb.beat()
                await self.clock.sleep_ms(1000)

    # ------------------------------------------------------------ commands
    def _on_message(self, topic, payload, retained, dup):
        # Only the command topic is subscribed, but a broker may still deliver others
        # (amqtt 0.12 sends retained messages of other clients' subscriptions): count
        # and ignore them rather than audit them as refused commands.
        if bytes(topic) != self.topic_cmd:
            self.messages_foreign += 1
            return
        # payload is a view into the client's receive buffer: copy it.
        if len(self.commands) >= 8:
            self.commands_dropped += 1
            return
        self.commands.append(bytes(payload))

    async def _command_task(self, hb):
        while True:
            hb.beat()
            if not self.commands:
                await asyncio.sleep_ms(50)
                continue
            payload = self.commands.pop(0)
            ack = self.handle_command(payload)
            body = json.dumps(ack).encode()
            await self.mqtt.publish(self.topic_ack, sign.signed_payload(self.key, body))

    def handle_command(self, payload):
        """Verify and execute one signed command; return the acknowledgement dict.

        Every outcome is written to the audit log, refusals included."""
        ok, reason, cmd = sign.verify_command(
            self.key, payload, self.clock.now(), self.nonces, self.station_id
        )
        nonce = cmd.get("nonce") if cmd else None
        if not ok:
            self.commands_refused += 1
            self._audit_refusal(reason, nonce, payload)
            return {"nonce": nonce, "ok": False, "reason": reason, "station": self.station_id}
        try:
            before, after = self._execute(cmd)
        except (CalibrationError, KeyError, TypeError, ValueError) as e:
            self.commands_refused += 1
            self._audit_refusal("invalid: " + str(e), nonce, payload)
            return {
                "nonce": nonce,
                "ok": False,
                "reason": "invalid",
                "detail": str(e),
                "station": self.station_id,
            }
        self.commands_done += 1
        return {
            "nonce": nonce,
            "ok": True,
            "cmd": cmd["cmd"],
            "station": self.station_id,
            "cal": self.calibration.version,
            "before": before,
            "after": after,
        }

    def _audit_refusal(self, reason, nonce, payload):
        line = json.dumps(
            {
                "ts": self.clock.now(),
                "time_valid": bool(self.clock.synced),
                "who": "mqtt",
                "action": "refused",
                "reason": reason,
                "nonce": nonce,
                "bytes": len(payload),
            }
        )
        try:
            self.audit.append(line.encode())
        except OSError:
            pass  # the refusal is still counted in the status

    def _constants(self, i):
        cal = self.calibration
        return {"zero": float(cal.zero_offset[i]), "gain": float(cal.gain[i])}

    def _execute(self, cmd):
        cal = self.calibration
        name = cmd["cmd"]
        if name == "maintenance":
            before = bool(cal.in_maintenance)
            cal.maintenance(bool(cmd["on"]), who="mqtt")
            return {"maintenance": before}, {"maintenance": bool(cal.in_maintenance)}
        i = cal.index(cmd["channel"])
        before = self._constants(i)
        if name == "calibration":
            cal.calibration(i, bool(cmd["on"]), who="mqtt")
            return {"calibration": not cmd["on"]}, {"calibration": bool(cmd["on"])}
        if name == "zero":
            cal.zero(i, cmd.get("value"), who="mqtt")
        elif name == "span":
            cal.span(i, cmd["reference"], cmd.get("measured"), who="mqtt")
        elif name == "set":
            cal.set(i, zero=cmd.get("zero"), gain=cmd.get("gain"), who="mqtt")
        elif name == "reset":
            cal.reset(i, who="mqtt")
        else:
            raise ValueError("unknown command %r" % name)
        return before, self._constants(i)

    # ------------------------------------------------------------ run
    async def _bus_watch_task(self, beats):
        # Bus tasks beat by moving ``bus.heartbeat``; a task that died stops moving it.
        last = [None] * len(self.buses)
        while True:
            for k in range(len(self.buses)):
                hb = self.buses[k].heartbeat
                if hb != last[k]:
                    last[k] = hb
                    beats[k].beat()
            await asyncio.sleep_ms(250)

    async def run(self):
        sup = self.supervisor
        self.mqtt.start()
        age = 10000
        uplink_age = self.publish_timeout_ms + age  # publish() may wait that long for PUBACK
        beats = [sup.register("bus:" + b.name, age) for b in self.buses]
        for b in self.buses:
            asyncio.create_task(b.run())
        asyncio.create_task(self._bus_watch_task(beats))
        asyncio.create_task(self._minute_task(sup.register("minute", age)))
        asyncio.create_task(self._uplink_task(sup.register("uplink", uplink_age)))
        asyncio.create_task(self._status_task(sup.register("status", uplink_age)))
        asyncio.create_task(self._command_task(sup.register("command", uplink_age)))
        await sup.run()
