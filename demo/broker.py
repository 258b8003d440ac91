"""The demo's embedded MQTT broker: amqtt, in this process, on a free loopback port.

DESIGN.md "Real components, embedded defaults": the demo needs no system broker. The
broker runs on its own asyncio event loop in a daemon thread, listens on 127.0.0.1 only
(a port the kernel picks, so a broker already on 1883 does not matter) and allows
anonymous clients, as the test brokers do. ``stop()`` shuts it down and joins the thread.

When amqtt cannot be imported, :func:`start_broker` falls back to the tests' mosquitto
(hil_tests/broker.py, a child process on a free port) and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from typing import Any, Protocol

HOST = "127.0.0.1"


class BrokerHandle(Protocol):
    host: str
    port: int
    kind: str

    def stop(self) -> None: ...


class EmbeddedBroker:
    """amqtt on 127.0.0.1:``port`` (a free one unless given), in a thread of its own."""

    kind = "amqtt (embedded, in-process)"

    def __init__(self, port: int | None = None) -> None:
        self.host = HOST
        self.port = port or _free_port()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        # amqtt logs every connection at INFO and a traceback when a client drops its
        # socket at shutdown; the demo shows its own view instead.
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._thread = threading.Thread(target=self._run, name="demo-amqtt", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"amqtt did not start within {timeout} s")
        if self._error is not None:
            self._thread.join(5)
            raise RuntimeError(f"amqtt failed to start: {self._error!r}") from self._error
        # The listener is up when a TCP connect succeeds.
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return self
            except OSError as error:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"amqtt is not accepting connections on {self.port}"
                    ) from error
                time.sleep(0.02)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._start())
        except BaseException as error:  # reported to start()
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._broker.shutdown())
            with contextlib.suppress(Exception):
                _cancel_all(loop)
            loop.close()

    async def _start(self) -> None:
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{HOST}:{self.port}"}},
            # Only anonymous auth: no packet/event loggers, no $SYS publisher.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }
        self._broker = _DemoBroker(config)
        # amqtt 0.12.1 iterates its subscription table across ``await``s (when a client
        # connects: broker.py _handle_client_session; when it broadcasts: _run_broadcast),
        # so a client subscribing meanwhile ends the connecting client's session with
        # "RuntimeError: dictionary changed size during iteration" (seen here when the
        # three stations connect together). Iterating a snapshot avoids it.
        self._broker._subscriptions = _SnapshotDict(self._broker._subscriptions)
        await self._broker.start()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self._thread = None
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(15)


def _broker_class() -> type:
    from amqtt.broker import Broker

    class DemoBroker(Broker):  # type: ignore[misc]
        """amqtt's Broker with its retained-message offer limited to the client's own
        subscriptions.

        amqtt 0.12.1, when a client connects, offers it the retained messages matching
        every topic filter in the broker's table, whoever subscribed them
        (broker.py ``_handle_client_session``). In the demo that handed the stations the
        gateway's retained status on their command subscription (the firmware refused it
        as an unsigned command) and the gateway's ingest a status message (dead-lettered
        as ``bad_topic``). A subscription's own path (``_handle_subscription``) adds the
        subscription first, so this check passes there.
        """

        async def _publish_retained_messages_for_subscription(
            self, subscription: Any, session: Any
        ) -> None:
            subscribers = self._subscriptions.get(subscription[0], ())
            if any(s.client_id == session.client_id for s, _qos in subscribers):
                await super()._publish_retained_messages_for_subscription(subscription, session)

    return DemoBroker


def _DemoBroker(config: dict[str, Any]) -> Any:
    return _broker_class()(config)


class _SnapshotDict(dict):  # type: ignore[type-arg]
    """A dict whose iteration views are snapshots (see ``EmbeddedBroker._start``)."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(dict.keys(self)))

    def keys(self):  # type: ignore[no-untyped-def]
        return list(dict.keys(self))

    def values(self):  # type: ignore[no-untyped-def]
        return list(dict.values(self))

    def items(self):  # type: ignore[no-untyped-def]
        return list(dict.items(self))


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


class _MosquittoFallback:
    """hil_tests.broker.Mosquitto behind the same small interface."""

    kind = "mosquitto (fallback: amqtt is not available)"

    def __init__(self) -> None:
        from hil_tests.broker import Mosquitto

        self._m = Mosquitto()
        self._m.start()
        self.host = self._m.host
        self.port = self._m.port

    def stop(self) -> None:
        self._m.close()


class ExternalBroker:
    """A broker the user runs (``--broker mqtt://host:port``): nothing to start or stop."""

    kind = "external"

    def __init__(self, url: str) -> None:
        self.host, self.port = parse_broker_url(url)

    def stop(self) -> None:
        pass


def parse_broker_url(url: str) -> tuple[str, int]:
    """``mqtt://host:port`` (or ``host:port``, or ``host``) → (host, port); 1883 by default."""
    rest = url.strip()
    if "://" in rest:
        scheme, _, rest = rest.partition("://")
        if scheme not in ("mqtt", "tcp"):
            raise ValueError(f"--broker {url!r}: only mqtt:// (plain TCP) is supported")
    rest = rest.rstrip("/")
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        host, port_text = rest, "1883"
    if not host:
        raise ValueError(f"--broker {url!r}: no host")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"--broker {url!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"--broker {url!r}: port must be 1..65535")
    return host, port


def start_broker(url: str | None, say: Any = print) -> BrokerHandle:
    """The broker the demo uses: ``url`` if given, else embedded amqtt (mosquitto if
    amqtt is missing)."""
    if url:
        return ExternalBroker(url)
    try:
        import amqtt.broker  # noqa: F401
    except ImportError as error:
        say(
            f"demo: amqtt is not importable ({error}); falling back to mosquitto on a "
            "free port. `make setup` installs amqtt from requirements/dev.txt."
        )
        return _MosquittoFallback()
    return EmbeddedBroker().start()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])
