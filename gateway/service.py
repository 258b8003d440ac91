"""The gateway service: ingest, the results engine and the outbox publisher in one process.

``lantian gateway run --config FILE`` (gateway/cli.py) builds a :class:`GatewayService`
and runs it until SIGTERM or SIGINT. Threads, each owning what it touches:

==================  ===========================================================
thread              owns
==================  ===========================================================
main                the results engine and its Store connection; the status
lantian-ingest      ``gateway.ingest.IngestClient.serve``: its own Store
                    connection, batched transactions, acknowledgement after commit
lantian-outbox      the outbox feeder (plus paho's network threads)
lantian-status      gateway/status.py: stations' retained status -> station_status
lantian-web         gateway/web.py: the read-only status page ([web] port, 0 = off)
==================  ===========================================================

SQLite in WAL mode lets them work side by side. The engine wakes when the ingest commits
a batch (and every ``batch.engine_interval_s`` anyway, for the wall-clock grace), and the
publisher wakes when the engine commits results.

Shutdown (SIGTERM/SIGINT): the ingest stops taking messages, handles what it has queued,
flushes and acknowledges; the engine closes whatever is ready; the publisher waits up to
``batch.shutdown_timeout_s`` for in-flight PUBACKs, publishes the retained
``{"online": false}`` status and disconnects. What is still pending stays in the outbox
for the next start. A SIGKILL loses nothing either: unacknowledged records are redelivered
by the broker, unpublished results stay pending, and the broker publishes the last-will.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any, Final

from gateway import outbox
from gateway.config import GatewayConfig
from gateway.counters import Counters
from gateway.logging import get_logger, log_event
from gateway.results import ResultsEngine
from gateway.status import StatusListener
from gateway.store import Store
from gateway.web import StatusPage
from native import aggregate

VERSION: Final = "0.1.0"


def status_topic(config: GatewayConfig) -> str:
    return config.topic("gateway", config.gateway_id, "status")


def offline_status(config: GatewayConfig) -> bytes:
    """The last-will and the final status: ``{"online": false}`` with who says it."""
    doc = {"v": 1, "type": "gateway_status", "gateway": config.gateway_id, "online": False}
    return json.dumps(doc, separators=(",", ":")).encode()


class GatewayService:
    """One gateway process (see module doc). ``run(stop)`` blocks until ``stop`` is set."""

    def __init__(self, config: GatewayConfig, *, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.counters = Counters()
        self.log = get_logger("gateway.service")
        self.started_at = clock()
        self._wake = threading.Event()
        self._status_due = threading.Event()
        self._ingest_stop = threading.Event()
        self._ingest_thread: threading.Thread | None = None
        self._ingest_client: Any = None
        self._ingest_ready = threading.Event()
        self._ingest_error: BaseException | None = None
        self.status_page: StatusPage | None = None

    # ------------------------------------------------------------ run
    def run(self, stop: threading.Event) -> int:
        cfg = self.config
        log_event(
            self.log,
            20,
            "gateway_starting",
            gateway=cfg.gateway_id,
            config=str(cfg.source),
            db=str(cfg.db_path),
            broker=f"{cfg.mqtt.host}:{cfg.mqtt.port}",
            ruleset=cfg.rules.ruleset,
            limit_set=cfg.rules.limit_set,
            aqi=cfg.rules.aqi,
            kernels=aggregate.IMPLEMENTATION,
            ingest=cfg.ingest_enabled,
        )
        store = Store(cfg.db_path)
        try:
            publisher = outbox.Publisher(
                cfg.db_path,
                outbox.BrokerSettings(
                    cfg.mqtt.host,
                    cfg.mqtt.port,
                    f"lantian-{cfg.gateway_id}-results",
                    cfg.mqtt.keepalive,
                    cfg.mqtt.username,
                    cfg.mqtt.password,
                ),
                status_topic=status_topic(cfg),
                will_payload=offline_status(cfg),
                window=cfg.batch.publish_window,
                counters=self.counters,
                clock=self.clock,
                on_connect=self._status_due.set,
            )
            engine = ResultsEngine(
                store, cfg, clock=self.clock, counters=self.counters, on_enqueued=publisher.notify
            )
            publisher.start()
            # The operator's side (gateway/status.py, gateway/web.py): the stations'
            # retained status into station_status, and the read-only status page.
            listener = (
                StatusListener.for_config(cfg, self.counters, self.clock)
                if cfg.ingest_enabled
                else None
            )
            self.status_page = StatusPage.for_config(cfg, self.counters.snapshot, self.clock)
            try:
                if cfg.ingest_enabled:
                    self._start_ingest()
                if listener is not None:
                    listener.start()
                self._start_status_page()
                self._loop(engine, publisher, store, stop)
            finally:
                if self.status_page is not None:
                    self.status_page.stop()
                if listener is not None:
                    listener.stop()
                self._stop_ingest()
                with contextlib.suppress(Exception):
                    engine.step()
                publisher.stop(cfg.batch.shutdown_timeout_s, final_status=offline_status(cfg))
        finally:
            store.close()
        log_event(self.log, 20, "gateway_stopped", counters=self.counters.snapshot())
        return 0 if self._ingest_error is None else 1

    def _loop(
        self,
        engine: ResultsEngine,
        publisher: outbox.Publisher,
        store: Store,
        stop: threading.Event,
    ) -> None:
        cfg = self.config
        next_status = 0.0
        while not stop.is_set():
            if self._ingest_error is not None:
                log_event(self.log, 50, "ingest_died", error=repr(self._ingest_error))
                break
            try:
                engine.step()
            except Exception:
                self.counters.inc("engine.errors")
                log_event(self.log, 40, "engine_step_failed", exc_info=True)
            now = time.monotonic()
            if (self._status_due.is_set() or now >= next_status) and publisher.connected:
                self._status_due.clear()
                next_status = now + cfg.batch.status_interval_s
                publisher.publish_status(self.status_payload(store))
            self._wake.wait(cfg.batch.engine_interval_s)
            self._wake.clear()

    def _start_status_page(self) -> None:
        """Serve the status page; a taken port is logged, not fatal (data comes first)."""
        if self.status_page is None:
            return
        try:
            self.status_page.start()
        except OSError as error:
            self.counters.inc("web.bind_failed")
            log_event(self.log, 40, "status_page_failed", error=str(error))
            self.status_page = None
        else:
            log_event(self.log, 20, "status_page_started", url=self.status_page.url)

    def wake(self) -> None:
        """Run the engine now (ingest committed a batch, or a stop was requested)."""
        self._wake.set()

    # ------------------------------------------------------------ status
    def status_payload(self, store: Store) -> bytes:
        """The retained gateway status (docs/schemas/gateway-status.schema.json)."""
        cfg = self.config
        box = outbox.stats(store.conn)
        now = self.clock()
        doc = {
            "v": 1,
            "type": "gateway_status",
            "gateway": cfg.gateway_id,
            "online": True,
            "ts": round(now, 3),
            "started_at": round(self.started_at, 3),
            "version": VERSION,
            "kernels": aggregate.IMPLEMENTATION,
            "ruleset": cfg.rules.ruleset,
            "limit_set": cfg.rules.limit_set,
            "aqi": cfg.rules.aqi,
            "ingest": cfg.ingest_enabled,
            "stations": len(store.stations()),
            "outbox": {
                "pending": box.pending,
                "published": box.published,
                "oldest_pending_age_s": None
                if box.oldest_pending_created_at is None
                else round(max(0.0, now - box.oldest_pending_created_at), 3),
            },
            "counters": self.counters.snapshot(),
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    # ------------------------------------------------------------ ingest
    def _start_ingest(self) -> None:
        self._ingest_thread = threading.Thread(
            target=self._ingest_main, name="lantian-ingest", daemon=True
        )
        self._ingest_thread.start()
        self._ingest_ready.wait(30)

    def _ingest_main(self) -> None:
        """The ingest thread: its own Store, the other module's client, ``serve``."""
        cfg = self.config
        try:
            # Imported here: the service and its tests run without ingest (ingest.enabled
            # = false), and the ingest module's dependencies load only when it is used.
            ingest = importlib.import_module("gateway.ingest")
            keys_module = importlib.import_module("gateway.keys")
            keys = keys_module.KeyStore.load(cfg.keys_path)
            with Store(cfg.db_path) as store:
                ingestor = ingest.Ingestor(
                    store, keys, self.counters, now=self.clock, prefix=cfg.mqtt.prefix
                )
                client = ingest.IngestClient(
                    cfg.mqtt.host,
                    cfg.mqtt.port,
                    ingestor,
                    prefix=cfg.mqtt.prefix,
                    client_id=f"lantian-{cfg.gateway_id}-ingest",
                    batch_size=cfg.batch.ingest_batch_size,
                    batch_ms=int(cfg.batch.ingest_flush_s * 1000),
                    keepalive_s=cfg.mqtt.keepalive,
                    username=cfg.mqtt.username,
                    password=cfg.mqtt.password,
                    on_flush=lambda result: self.wake(),
                )
                self._ingest_client = client
                client.start()
                self._ingest_ready.set()
                log_event(self.log, 20, "ingest_started", stations=len(keys))
                try:
                    client.serve(self._ingest_stop)
                finally:
                    client.stop()
        except BaseException as error:
            self._ingest_error = error
            log_event(self.log, 50, "ingest_failed", exc_info=True)
            self.wake()
        finally:
            self._ingest_ready.set()

    def _stop_ingest(self) -> None:
        self._ingest_stop.set()
        if self._ingest_thread is not None:
            self._ingest_thread.join(30)
