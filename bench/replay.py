"""Issue 7 item 4: store-and-forward replay rate after an uplink outage, firmware to broker.

Each run starts the real station firmware on MicroPython (``hil_tests.rig.StationRig``:
emulated particulate sensor on a pty, simulated time at ``SPEED``× real time, one poll a
simulated minute) while the broker (a real mosquitto, ``hil_tests.broker.Mosquitto``) is
stopped, so every minute record goes to the flash ring and stays there. Once the ring
holds at least ``target`` records the broker is started, and a CPython paho subscriber
(``hil_tests.subscriber.Subscriber``, persistent session, subscribed before the outage)
collects what arrives. Figures per run:

- ``records_per_s``: backlog records / (arrival of the last of them − broker start): the
  whole recovery as the issue asks, including the station's reconnect back-off;
- ``reconnect_s``: broker start → first record at the subscriber (the firmware's MQTT
  back-off: 0.5 s doubling to 60 s, jittered, real time, so it depends on how long the
  outage lasted in real seconds);
- ``drain_records_per_s``: (backlog − 1) / (last arrival − first arrival): the ring
  replay itself, one QoS 1 PUBLISH/PUBACK round trip per record.

The backlog is every record whose minute closed before the broker started (``ts + 60``
at least ``MARGIN_S`` simulated seconds before it; the two processes share simulated time
to within a few real ms); records are de-duplicated by ``seq`` (QoS 1 may repeat the one
in flight), their HMAC is checked with the station key, and the sequence must be complete
(1..n: nothing dropped). During the replay the station keeps measuring: at ``SPEED`` it
closes ``SPEED/60`` new records and publishes as many statuses per real second, which
share the uplink with the replay, so the figures err low against a field station.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hil_tests.broker import Mosquitto
from hil_tests.rig import DeviceSpec, StationRig
from hil_tests.signals import SimulatedClock
from hil_tests.subscriber import Message, Subscriber

SPEED = 1200.0  # simulated s per real s: 200 minutes in 10 s; a poll takes ~36 sim s
T0 = 1_700_000_000 // 60 * 60 + 30  # 2023-11-15 06:12:30 local, as hil_tests
MARGIN_S = 10  # simulated seconds: a record closed this close to broker start is not counted
TIMEOUT_S = 120.0
MAX_RETRIES = 3  # runs repeated because the subscriber came back after the station
# The ring must hold the backlog AND what the station closes while it waits out its
# reconnect back-off (up to 16 s after a 10 s outage: 320 more records at 1200x), or it
# drops the oldest: 64 segments x 16 slots of 1 KB.
STORE = {"dir": "ring", "slot_size": 1024, "segments": 64, "slots_per_segment": 16}


class ReplayError(RuntimeError):
    """The replay run did not deliver a complete, verified backlog; the message says why."""


class SubscriberLate(ReplayError):
    """The station reconnected before the subscriber: the run is repeated (see run())."""


def _verify(key: bytes, msg: Message) -> dict[str, Any]:
    body, _, sig = msg.payload.rpartition(b"\n")
    want = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
    if not hmac.compare_digest(sig, want):
        raise ReplayError(f"bad signature on {msg.payload[:80]!r}")
    record: dict[str, Any] = json.loads(body)
    return record


def _one_run(
    k: int,
    broker: Mosquitto,
    sub: Subscriber,
    connects: list[float],
    root: Path,
    target: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    station = f"bench-replay-{k}"
    clock = SimulatedClock(start=T0, speed=SPEED)
    pm = DeviceSpec("pm", "particulate", 1, 60, {"pm25": "pm25"}, seed=k + 1)
    rig = StationRig(root / f"run{k}", station, broker.port, clock, [pm], store=STORE)
    topic = f"/station/{station}/data"
    try:
        rig.start()
        t_fill = time.monotonic()
        # Minutes count from the firmware's boot (its ring files appear then), not from
        # the launch: MicroPython's start takes a few simulated minutes at this speed.
        first_segment = root / f"run{k}" / "ring" / "seg0.bin"
        boot = None
        while boot is None or clock.now() < boot + (target + 3) * 60:
            if not rig.alive():
                raise ReplayError(f"{station}: firmware exited:\n{rig.log()}")
            if boot is None and first_segment.exists():
                boot = clock.now()
            if time.monotonic() - t_fill > TIMEOUT_S:
                raise ReplayError(f"{station}: the firmware did not start:\n{rig.log()}")
            time.sleep(0.02)
        fill_s = time.monotonic() - t_fill
        t0 = time.time()
        s0 = clock.now()
        broker.start()
        broker_ready_s = time.time() - t0
        deadline = time.monotonic() + TIMEOUT_S
        while True:  # records leave in order: one closed after the start ends the backlog
            msgs = sub.on(topic)
            if any(_verify(rig.key, m)["ts"] >= s0 for m in msgs[-3:]):
                break
            if time.monotonic() > deadline:
                raise ReplayError(
                    f"{station}: backlog not delivered in {TIMEOUT_S} s "
                    f"({len(msgs)} records):\n{rig.log()}"
                )
            time.sleep(0.02)
        first_arrival: dict[int, float] = {}
        for m in sub.on(topic):
            r = _verify(rig.key, m)
            if r["ts"] + 60 <= s0 - MARGIN_S:
                first_arrival.setdefault(r["seq"], m.received)
        seqs = sorted(first_arrival)
        count = len(seqs)
        if seqs != list(range(1, count + 1)):
            all_seqs = [
                (_verify(rig.key, m)["seq"], round(m.received - t0, 3)) for m in sub.on(topic)
            ]
            raise ReplayError(
                f"{station}: backlog incomplete or dropped: {seqs[:5]}..{seqs[-3:]} "
                f"of {count}; arrivals {all_seqs[:30]}; subscriber connects "
                f"{[round(t - t0, 3) for t in connects]}\n{rig.log()}"
            )
        if count < target:
            raise ReplayError(f"{station}: only {count} records in the ring, wanted {target}")
        t_first = min(first_arrival.values())
        t_last = max(first_arrival.values())
        sub_back = min((t for t in connects if t >= t0), default=float("nan"))
        if not sub_back < t_first:
            raise SubscriberLate(
                f"{station}: the subscriber reconnected after the first record arrived: "
                "the broker queued records for it, so arrival times are not the station's"
            )
        heap = [
            _verify(rig.key, m).get("heap_used")
            for m in sub.on(f"/station/{station}/status")
            if not m.payload.startswith(b'{"online": false')
        ]
        result = {
            "records": count,
            "records_per_s": count / (t_last - t0),
            "drain_records_per_s": (count - 1) / (t_last - t_first) if count > 1 else 0.0,
            "reconnect_s": t_first - t0,
            "recovery_s": t_last - t0,
            "broker_ready_s": broker_ready_s,
            "subscriber_back_s": sub_back - t0,
            "outage_real_s": fill_s,
            "station_heap_used_max": max((h for h in heap if h is not None), default=None),
        }
        log(
            f"replay run {k}: {count} records in {t_last - t0:.2f} s "
            f"(reconnect {t_first - t0:.2f} s, drain {result['drain_records_per_s']:.0f}/s)"
        )
        return result
    finally:
        rig.stop()
        broker.stop()


def run(quick: bool = False, runs: int = 5, log: Callable[[str], None] = print) -> dict[str, Any]:
    target = 20 if quick else 200
    n_runs = 1 if quick else runs
    with tempfile.TemporaryDirectory(prefix="lantian-bench-replay-") as tmp:
        broker = Mosquitto()
        try:
            broker.start()
            # Subscribed before the outage, persistent session: the broker queues for it.
            sub = Subscriber(
                broker.port, ["lantian/v1/station/+/data", "lantian/v1/station/+/status"]
            )
            # Back within ~20 ms of the broker, well before the station's first retry:
            # records must not wait at the broker for the subscriber.
            sub.client.reconnect_delay_set(min_delay=0.01, max_delay=0.02)  # type: ignore[arg-type]
            connects: list[float] = []
            on_connect = sub.client.on_connect
            assert on_connect is not None  # Subscriber sets it

            def on_connect_timed(*args: Any) -> None:
                connects.append(time.time())
                on_connect(*args)

            sub.client.on_connect = on_connect_timed
            try:
                broker.stop()
                results: list[dict[str, Any]] = []
                retries = 0
                for k in range(n_runs + MAX_RETRIES):
                    if len(results) == n_runs:
                        break
                    try:
                        results.append(_one_run(k, broker, sub, connects, Path(tmp), target, log))
                    except SubscriberLate as e:  # rare: the station retried within ~20 ms
                        retries += 1
                        log(f"replay run {k} repeated: {e}")
                if len(results) < n_runs:
                    raise ReplayError(f"the subscriber was late in {retries} runs")
            finally:
                broker.start()  # let the subscriber disconnect cleanly
                sub.close()
        finally:
            broker.close()

    def med(name: str) -> float:
        return float(statistics.median(float(r[name]) for r in results))

    heaps = [r["station_heap_used_max"] for r in results if r["station_heap_used_max"]]
    return {
        "records_per_s": med("records_per_s"),
        "records": int(med("records")),
        "drain_records_per_s": med("drain_records_per_s"),
        "reconnect_s": med("reconnect_s"),
        "recovery_s": med("recovery_s"),
        "outage_real_s": med("outage_real_s"),
        "speed": SPEED,
        "target_records": target,
        "runs": n_runs,
        "repeated_runs": retries,
        "per_run": results,
        "station_heap_used_max_bytes": max(heaps) if heaps else None,
    }
