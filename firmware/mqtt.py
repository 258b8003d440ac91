"""The station's MQTT 3.1.1 uplink: an asyncio client that never blocks sampling.

Why not ``umqtt.simple``: it uses a blocking socket, so a broker that stops answering
(or a WiFi link that silently dies) freezes the whole station -- including the Modbus
poll loop that must sample every few seconds -- and it has no keepalive watchdog, no
in-flight bookkeeping and no reconnect. ``umqtt.robust`` retries, but still blocks while
it does. This module follows the shape of ``mqtt_as`` (peterhinch/micropython-mqtt):

* **Two layers, one exception type.** The protocol layer (``_connect``, ``_read_packet``,
  ``_write``) raises ``OSError`` for everything that goes wrong on the link --
  including ``mqtt_codec.MalformedPacket`` and ``ConnectRefused``, which subclass it.
  The resilience layer (``_supervise``) catches it, counts it, closes the socket and
  reconnects with exponential back-off and jitter, bounded by ``backoff_max_ms``.
* **Every wait is bounded.** TCP connect: ``connect_timeout_ms``. Each write (drain):
  ``io_timeout_ms``. A PUBLISH waiting for PUBACK: retransmitted with DUP every
  ``retransmit_ms``, given up after ``publish_timeout_ms``. The reader waits for the
  broker without a deadline of its own, but the keepalive task bounds it: it sends
  PINGREQ when the link has been idle for half the keepalive and declares the link dead
  when no PINGRESP arrives within ``ping_timeout_ms`` (§3.1.2.10, §3.12, §3.13).
* **Strict order, window of one.** One QoS 1 PUBLISH is in flight at a time. The caller
  (the flash ring buffer) awaits ``publish()``, which returns True only when the PUBACK
  for *that* packet id arrived, and False on timeout; the caller advances its cursor
  only on True and otherwise offers the same record again. While a disconnect lasts less
  than ``publish_timeout_ms`` the message stays in flight and is re-sent with DUP and the
  same packet id as soon as the persistent session is resumed (§4.4: "When a Client
  reconnects with CleanSession set to 0, both the Client and Server MUST re-send any
  unacknowledged PUBLISH Packets"). So a subscriber may see the in-flight message twice
  -- QoS 1 is at-least-once -- and never out of order; the gateway de-duplicates on
  (station, seq).
* **Persistent session.** CONNECT always has CleanSession=0: the broker keeps our
  subscription and queues commands (QoS 1) while the station is offline. When CONNACK
  says no session was present, the subscriptions are sent again.
* **Last will.** Retained, QoS 1, on the status topic: the broker publishes it when the
  station vanishes without a DISCONNECT.

Transport: asyncio streams over a non-blocking socket, not a ``select.poll`` loop of our
own. The stream's ``readinto`` parks the reader task in the scheduler's poller
(``asyncio`` itself is built on ``select.poll``) and wakes it exactly when bytes arrive:
no polling interval, no added latency, no CPU burnt while idle, and the Modbus tasks run
meanwhile. ``asyncio.StreamReader`` / ``StreamWriter`` wrap any socket and exist on the
unix port, ESP32 and RP2040 alike, so the same file runs on a board with ``network`` up
and in the tests on the unix port. We make the socket ourselves instead of calling
``asyncio.open_connection`` so that a connect that times out closes its socket (the
stock helper would leak it) -- the connect phase polls the socket every 20 ms, which is
the only polling in the module and happens only while connecting. Name resolution
(``getaddrinfo``) blocks on every port: give an IP address or a name the board resolves
from its hosts table, or accept one DNS round trip per reconnect.

Allocation: the receive buffer, the transmit buffer and the PUBACK buffer are made once
in the constructor; received topics/payloads are handed to ``on_message`` as
memoryviews into the receive buffer (copy them to keep them). A PUBLISH is assembled in
the transmit buffer -- header, then the payload copied behind it -- so it leaves in one
``send()``: written as two sends, Nagle's algorithm and the peer's delayed ACK cost
~40 ms per message (measured: 200 messages took 8.9 s instead of 0.05 s on loopback).
A payload larger than ``tx_payload_size`` is sent from the caller's buffer after the
header, and TCP_NODELAY is requested too. What still allocates per message: the
short-lived memoryview slices and the timeout task of ``asyncio.wait_for_ms`` (small,
collected at once). Bytes topics avoid an encode per publish.

Time: ``clock`` (a ``ticks_ms``-like function) and ``sleep_ms`` (a coroutine function)
are injectable. The keepalive and back-off timers run on them, so a test can run a
60-second keepalive in a second; socket deadlines (connect, drain) use the scheduler's
real clock.
"""

import asyncio
import random
import socket
import sys
from errno import ECONNREFUSED, ECONNRESET, EINPROGRESS, ENOTCONN, ETIMEDOUT
from select import POLLERR, POLLHUP, POLLOUT, poll

from drivers._compat import const, ticks_diff, ticks_ms
from firmware.mqtt_codec import (
    DISCONNECT_PACKET,
    PINGREQ_PACKET,
    ConnectRefused,
    MalformedPacket,
    check_fixed_header,
    connect_packet,
    decode_length,
    parse_connack,
    parse_publish,
    parse_suback,
    puback_into,
    publish_header,
    set_dup,
    subscribe_packet,
)

# Packet types the reader dispatches on (§2.2.1, Table 2.1). Mirrors mqtt_codec: a
# `_NAME = const()` is private to its module on MicroPython, so it cannot be imported.
_CONNACK = const(2)  # §3.2
_PUBLISH = const(3)  # §3.3
_PUBACK = const(4)  # §3.4
_SUBACK = const(9)  # §3.9
_PINGRESP = const(13)  # §3.13

_IPPROTO_TCP = const(6)  # IANA protocol number of TCP; the value Linux and lwIP use
_TCP_NODELAY = const(1)  # Linux <netinet/tcp.h> and lwIP <lwip/tcp.h>: 0x01
_CONNECT_POLL_MS = const(20)  # socket poll period while a TCP connect is pending
_STABLE_LINK_MS = const(10000)  # a link up this long resets the back-off to its minimum

# Platform quirks, chosen once here.
# - unix port ("linux", "darwin"): tests and the demo, broker on loopback or LAN. A
#   connect either completes or is refused within milliseconds, RAM is plentiful.
# - boards ("esp32", "rp2", ...): lwIP over WiFi. A SYN to an unreachable broker is only
#   abandoned by lwIP's own retry schedule (tens of seconds), so our bound must be the
#   one that fires, yet generous enough for a first connect right after association;
#   the heap is a few hundred kB, so the receive buffer (the largest command we accept
#   whole) is kept small.
if sys.platform in ("linux", "darwin"):
    _CONNECT_TIMEOUT_MS = 3000
    _RX_SIZE = 2048
else:
    _CONNECT_TIMEOUT_MS = 10000
    _RX_SIZE = 1024

_COUNTER_NAMES = (
    "connects",  # CONNACK accepted
    "connect_failures",  # TCP connect, CONNECT/CONNACK or resume failed
    "disconnects",  # an established link was lost
    "publishes",  # publish() calls accepted (QoS 0 and 1)
    "puback",  # PUBACKs matching the in-flight packet
    "stale_puback",  # PUBACKs for no in-flight packet (late, after a timeout)
    "retransmits",  # PUBLISH re-sent with DUP
    "publish_timeouts",  # publish() returned False
    "rx_messages",  # PUBLISH received and handed to on_message
    "rx_dropped",  # PUBLISH too large for the receive buffer: acked, not delivered
    "callback_errors",  # on_message raised; the message is still acknowledged
    "subacks",  # SUBACK received
    "sub_failures",  # SUBACK return code 0x80 (§3.9.3)
    "pings",  # PINGREQ sent
    "ping_timeouts",  # no PINGRESP in time: link declared dead
    "malformed",  # MalformedPacket from the broker
    "errors",  # every OSError the resilience layer caught
)


async def _real_sleep_ms(ms):
    await asyncio.sleep_ms(ms)


class MQTTClient:
    """MQTT 3.1.1 client, QoS 0/1, one in-flight PUBLISH, persistent session.

    ``start()`` launches the supervisor task, which connects and keeps reconnecting
    until ``disconnect()``. ``publish()`` is a coroutine returning True once acknowledged.
    ``on_message(topic, payload, retained, dup)`` receives memoryviews that alias the
    receive buffer and are valid only during the call; it must not block.
    ``on_connect(session_present)`` and ``on_disconnect(exc)`` are optional sync hooks.
    """

    def __init__(
        self,
        host,
        port=1883,
        *,
        client_id,
        keepalive_s=60,
        username=None,
        password=None,
        will_topic=None,
        will_payload=b'{"online": false}',
        subscriptions=(),
        on_message=None,
        on_connect=None,
        on_disconnect=None,
        retransmit_ms=5000,
        publish_timeout_ms=30000,
        connect_timeout_ms=_CONNECT_TIMEOUT_MS,
        io_timeout_ms=5000,
        ping_timeout_ms=None,
        backoff_min_ms=500,
        backoff_max_ms=60000,
        rx_size=_RX_SIZE,
        max_topic_len=128,
        tx_payload_size=1024,
        clock=ticks_ms,
        sleep_ms=_real_sleep_ms,
        rand=None,
    ):
        if keepalive_s <= 0:
            raise ValueError("keepalive_s must be > 0: it is the dead-link watchdog")
        self.host = host
        self.port = port
        self._connect_pkt = connect_packet(
            client_id,
            keepalive_s,
            clean_session=False,
            will_topic=will_topic,
            will_payload=will_payload,
            will_qos=1,
            will_retain=True,
            username=username,
            password=password,
        )
        self._subs = [s.encode() if isinstance(s, str) else s for s in subscriptions]
        self.on_message = on_message
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self._keepalive_ms = keepalive_s * 1000
        self._ping_timeout_ms = ping_timeout_ms or max(1000, self._keepalive_ms // 2)
        self._retransmit_ms = retransmit_ms
        self._publish_timeout_ms = publish_timeout_ms
        self._connect_timeout_ms = connect_timeout_ms
        self._io_timeout_ms = io_timeout_ms
        self._backoff_min_ms = backoff_min_ms
        self._backoff_max_ms = backoff_max_ms
        self._clock = clock
        self._sleep_ms = sleep_ms
        self._rand = rand or random.getrandbits

        # Preallocated buffers (see the module docstring).
        self._rx = bytearray(rx_size)
        self._rxmv = memoryview(self._rx)
        self._hdr = bytearray(5)  # fixed header: byte 1 + up to 4 length bytes (§2.2)
        hmv = memoryview(self._hdr)
        self._hdr_byte = [hmv[i : i + 1] for i in range(5)]  # one-byte read targets
        self._skip = bytearray(64)  # sink for the tail of an oversize PUBLISH
        # Outgoing PUBLISH: header, then the payload copied behind it when it fits, so
        # that the packet leaves in one send() (two sends meet Nagle's algorithm and the
        # broker's delayed ACK: ~40 ms per message on Linux). A larger payload is
        # written from the caller's buffer right after the header.
        self._tx = bytearray(1 + 4 + 2 + max_topic_len + 2 + tx_payload_size)
        self._tx_mv = memoryview(self._tx)
        self._ack = bytearray(4)  # PUBACK we send (reader task only)

        self.counters = {}
        for name in _COUNTER_NAMES:
            self.counters[name] = 0
        self.last_error = None  # the last exception the resilience layer caught

        self._sock = None
        self._stream = None
        self._connected = False
        self._running = False
        self._supervisor = None
        self._tasks = []
        self._conn_event = asyncio.Event()  # set while connected
        self._down_event = asyncio.Event()  # set when the link fails
        self._state_event = asyncio.Event()  # PUBACK or link change: wakes publish()
        self._wlock = asyncio.Lock()  # one writer on the socket at a time
        self._inflight_lock = asyncio.Lock()  # in-flight window of one
        self._pid = 0
        self._session_present = 0
        self._rx_len = 0
        self._inflight_pid = 0  # 0: nothing in flight
        self._inflight_len = 0
        self._inflight_payload = None
        self._inflight_tries = 0
        self._inflight_at = 0
        self._acked = False
        self._last_tx = 0
        self._last_rx = 0
        self._ping_out = False
        self._ping_at = 0
        self._up_at = 0

        # Table dispatch on packet type (index = type nibble).
        self._handlers = [self._on_unexpected] * 16
        self._handlers[_PUBLISH] = self._on_publish
        self._handlers[_PUBACK] = self._on_puback
        self._handlers[_SUBACK] = self._on_suback
        self._handlers[_PINGRESP] = self._on_pingresp

    # ------------------------------------------------------------------ public API

    def start(self):
        """Start the supervisor task (connect, keep connected). Idempotent."""
        if not self._running:
            self._running = True
            self._supervisor = asyncio.create_task(self._supervise())

    def isconnected(self):
        return self._connected

    async def wait_connected(self, timeout_ms):
        """True once connected, False if ``timeout_ms`` passes first."""
        if self._connected:
            return True
        try:
            await asyncio.wait_for_ms(self._conn_event.wait(), timeout_ms)
        except asyncio.TimeoutError:
            pass
        return self._connected

    async def publish(self, topic, payload, retain=False, qos=1, timeout_ms=None):
        """Publish ``payload`` (bytes) on ``topic`` (bytes preferred).

        QoS 1: waits for the PUBACK, re-sending with DUP every ``retransmit_ms`` and
        after a reconnect; returns True when it arrived and False when ``timeout_ms``
        (default ``publish_timeout_ms``) passed without it. QoS 0: True once written to
        a connected socket, False when not connected. Raises ValueError for a topic
        longer than ``max_topic_len`` or with wildcards (the caller's bug, not the link's).
        """
        if qos == 0:
            if not self._connected:
                return False
            self.counters["publishes"] += 1
            async with self._inflight_lock:  # the tx buffer is shared with QoS 1
                n, rest = self._stage(
                    publish_header(self._tx, topic, len(payload), 0, retain), payload
                )
                try:
                    await self._write(self._tx_mv[:n], rest)
                except OSError as e:
                    self._link_failed(e)
                    return False
            return True
        if qos != 1:
            raise ValueError("qos must be 0 or 1")
        timeout = self._publish_timeout_ms if timeout_ms is None else timeout_ms
        async with self._inflight_lock:
            pid = self._next_pid()
            h = publish_header(self._tx, topic, len(payload), 1, retain, False, pid)
            self._inflight_len, self._inflight_payload = self._stage(h, payload)
            self._inflight_tries = 0
            self._acked = False
            self._inflight_pid = pid
            self.counters["publishes"] += 1
            start = self._clock()
            try:
                while True:
                    self._state_event.clear()
                    if self._acked:
                        return True
                    left = timeout - ticks_diff(self._clock(), start)
                    if left <= 0:
                        self.counters["publish_timeouts"] += 1
                        return False
                    wait = left
                    if self._connected:
                        since = ticks_diff(self._clock(), self._inflight_at)
                        if self._inflight_tries == 0 or since >= self._retransmit_ms:
                            try:
                                await self._send_inflight()
                            except OSError as e:
                                self._link_failed(e)
                            continue
                        wait = min(left, self._retransmit_ms - since)
                    try:
                        await asyncio.wait_for_ms(self._state_event.wait(), max(1, wait))
                    except asyncio.TimeoutError:
                        pass
            finally:
                self._inflight_pid = 0
                self._inflight_payload = None

    async def subscribe(self, topic_filter):
        """Add a QoS 1 subscription; sent now if connected, and after every reconnect
        that finds no session. The SUBACK is counted by the reader (``subacks``,
        ``sub_failures``)."""
        if isinstance(topic_filter, str):
            topic_filter = topic_filter.encode()
        self._subs.append(topic_filter)
        if self._connected:
            try:
                await self._write(subscribe_packet(self._next_pid(), topic_filter, 1))
            except OSError as e:
                self._link_failed(e)

    async def disconnect(self):
        """Send DISCONNECT (the broker then discards the will, §3.14.4) and stop."""
        self._running = False
        if self._connected:
            try:
                await self._write(DISCONNECT_PACKET)
            except OSError:
                pass
        self._connected = False
        self._conn_event.clear()
        self._down_event.set()
        self._state_event.set()
        sup = self._supervisor
        if sup is not None:
            sup.cancel()
            try:
                await sup
            except BaseException:  # CancelledError is a BaseException on MicroPython
                pass
        await self._teardown()

    # ---------------------------------------------------- resilience layer

    async def _supervise(self):
        attempt = 0
        while self._running:
            try:
                await self._connect()
            except OSError as e:
                self.counters["connect_failures"] += 1
                self._count_error(e)
                await self._teardown()
                await self._sleep_ms(self._backoff(attempt))
                attempt += 1
                continue
            self._down_event.clear()
            self._tasks = [
                asyncio.create_task(self._read_loop()),
                asyncio.create_task(self._keepalive_loop()),
            ]
            self._conn_event.set()
            self._state_event.set()
            if self.on_connect is not None:
                try:
                    self.on_connect(self._session_present)
                except Exception as e:  # a hook's bug must not take the link down
                    self.counters["callback_errors"] += 1
                    self.last_error = e
            await self._down_event.wait()
            await self._teardown()
            if ticks_diff(self._clock(), self._up_at) >= _STABLE_LINK_MS:
                attempt = 0
            if self._running:
                await self._sleep_ms(self._backoff(attempt))
                attempt += 1

    def _backoff(self, attempt):
        """Exponential back-off with "equal jitter": a delay in [d/2, d], where
        d = min(backoff_max_ms, backoff_min_ms * 2**attempt). The jitter keeps a
        district's stations from reconnecting in lock-step after a broker restart."""
        d = self._backoff_min_ms << min(attempt, 16)
        if d > self._backoff_max_ms:
            d = self._backoff_max_ms
        half = d // 2
        return half + self._rand(16) * (d - half) // 0xFFFF

    def _link_failed(self, exc):
        """Called by any task that saw the link fail; the supervisor cleans up."""
        self._count_error(exc)
        if self._connected:
            self._connected = False
            self.counters["disconnects"] += 1
            self._conn_event.clear()
            self._down_event.set()
            self._state_event.set()
            if self.on_disconnect is not None:
                try:
                    self.on_disconnect(exc)
                except Exception:
                    self.counters["callback_errors"] += 1

    def _count_error(self, exc):
        self.counters["errors"] += 1
        if isinstance(exc, MalformedPacket):
            self.counters["malformed"] += 1
        self.last_error = exc

    async def _teardown(self):
        cur = asyncio.current_task()
        for t in self._tasks:
            if t is not cur:
                t.cancel()
        for t in self._tasks:
            if t is not cur:
                try:
                    await t
                except BaseException:  # CancelledError, or what the task died of
                    pass
        self._tasks = []
        # A publisher may be mid-write on the old socket: its drain is bounded by
        # io_timeout_ms, so taking the lock waits at most that long.
        async with self._wlock:
            s = self._sock
            self._sock = None
            self._stream = None
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    # ------------------------------------------------------ protocol layer

    async def _connect(self):
        """TCP connect, CONNECT/CONNACK, resume the session. Raises OSError."""
        self._connected = False
        ai = socket.getaddrinfo(self.host, self.port, 0, socket.SOCK_STREAM)[0]
        s = socket.socket(ai[0], socket.SOCK_STREAM)
        self._sock = s
        s.setblocking(False)
        try:
            # PUBACKs and PINGREQs are tiny and must not wait for Nagle. The socket
            # modules have no IPPROTO_TCP/TCP_NODELAY names; the numbers are 6 and 1 on
            # Linux and in lwIP alike. Best effort: a port that refuses it still works,
            # since a PUBLISH normally leaves in a single send (see _stage).
            s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except (OSError, TypeError):
            pass
        try:
            s.connect(ai[-1])
        except OSError as e:
            if e.errno != EINPROGRESS:
                raise
        p = poll()
        p.register(s, POLLOUT)
        t0 = ticks_ms()
        while True:
            ev = p.poll(0)
            if ev:
                if ev[0][1] & (POLLERR | POLLHUP):
                    raise OSError(ECONNREFUSED)  # refused or reset during the TCP handshake
                break
            if ticks_diff(ticks_ms(), t0) >= self._connect_timeout_ms:
                raise OSError(ETIMEDOUT)
            await asyncio.sleep_ms(_CONNECT_POLL_MS)
        p.unregister(s)
        self._stream = asyncio.StreamReader(s)
        self._ping_out = False
        await self._write(self._connect_pkt)
        # CONNACK is the first packet the server sends (§3.2); bound the wait for it.
        try:
            ptype = await asyncio.wait_for_ms(self._read_packet(), self._io_timeout_ms)  # type: int
        except asyncio.TimeoutError:
            raise OSError(ETIMEDOUT)
        if ptype != _CONNACK:
            raise MalformedPacket("expected_connack")  # §3.2 [MQTT-3.2.0-1]
        present, rc = parse_connack(self._rx)
        if rc:
            raise ConnectRefused(rc)
        self._session_present = present
        # §4.4: re-send the unacknowledged PUBLISH first, same packet id, DUP set.
        if self._inflight_pid:
            await self._send_inflight()
        if not present:
            for f in self._subs:
                await self._write(subscribe_packet(self._next_pid(), f, 1))
        now = self._clock()
        self._last_rx = now
        self._up_at = now
        self._connected = True
        self.counters["connects"] += 1

    async def _send_inflight(self):
        if self._inflight_tries:
            set_dup(self._tx)  # §3.3.1.1: DUP on every re-delivery attempt
            self.counters["retransmits"] += 1
        self._inflight_tries += 1
        self._inflight_at = self._clock()
        await self._write(self._tx_mv[: self._inflight_len], self._inflight_payload)

    def _stage(self, h, payload):
        """Copy ``payload`` behind the ``h``-byte header in the tx buffer if it fits.
        Returns (bytes to send from the tx buffer, payload still to send or None)."""
        n = len(payload)
        if h + n <= len(self._tx):
            self._tx[h : h + n] = payload
            return h + n, None
        return h, payload

    async def _write(self, a, b=None):
        async with self._wlock:
            st = self._stream
            if st is None:
                raise OSError(ENOTCONN)
            st.write(a)
            if b:
                st.write(b)
            try:
                await asyncio.wait_for_ms(st.drain(), self._io_timeout_ms)
            except asyncio.TimeoutError:
                raise OSError(ETIMEDOUT)
            self._last_tx = self._clock()

    async def _read_exact(self, mv, n):
        st = self._stream
        if st is None:
            raise OSError(ENOTCONN)
        got = 0
        while got < n:
            r = await st.readinto(mv[got:n])
            if r is None:  # spurious wake-up of a non-blocking socket: nothing yet
                continue
            if r == 0:
                raise OSError(ECONNRESET)  # the broker closed the connection
            got += r

    async def _read_packet(self):
        """Read one packet into the receive buffer; return its type. Raises OSError."""
        st = self._stream
        if st is None:
            raise OSError(ENOTCONN)
        hdr = self._hdr
        await self._read_exact(self._hdr_byte[0], 1)
        k = 1
        while True:
            await self._read_exact(self._hdr_byte[k], 1)
            k += 1
            n, _ = decode_length(hdr, 1, k)  # raises MalformedPacket after 4 bytes
            if n >= 0:
                break
        b0 = hdr[0]
        ptype = check_fixed_header(b0, n)
        self._rx_len = n
        cap = len(self._rx)
        if n <= cap:
            await self._read_exact(self._rxmv, n)
        elif ptype == _PUBLISH:
            # Keep what fits (topic and packet id, normally), discard the rest.
            await self._read_exact(self._rxmv, cap)
            left = n - cap
            skip = memoryview(self._skip)
            while left:
                k = min(left, len(self._skip))
                await self._read_exact(skip, k)
                left -= k
        else:
            raise MalformedPacket("bad_length")
        self._last_rx = self._clock()
        return ptype

    async def _read_loop(self):
        try:
            while True:
                ptype = await self._read_packet()
                await self._handlers[ptype](self._hdr[0])
        except OSError as e:
            self._link_failed(e)

    async def _keepalive_loop(self):
        """PINGREQ after half a keepalive of silence in either direction; the link is
        dead when the PINGRESP is ``ping_timeout_ms`` late (§3.1.2.10, §3.12)."""
        half = self._keepalive_ms // 2
        tick = min(1000, max(20, self._keepalive_ms // 10))
        try:
            while True:
                await self._sleep_ms(tick)
                now = self._clock()
                if self._ping_out:
                    if ticks_diff(now, self._ping_at) >= self._ping_timeout_ms:
                        self.counters["ping_timeouts"] += 1
                        raise OSError(ETIMEDOUT)
                elif (
                    ticks_diff(now, self._last_tx) >= half or ticks_diff(now, self._last_rx) >= half
                ):
                    self._ping_out = True
                    self._ping_at = now
                    self.counters["pings"] += 1
                    await self._write(PINGREQ_PACKET)
        except OSError as e:
            self._link_failed(e)

    # -------------------------------------------------- per packet type handlers

    async def _on_unexpected(self, b0):
        # CONNACK again, PUBREC/PUBREL/PUBCOMP (we never use QoS 2), UNSUBACK (we never
        # unsubscribe): valid packets, but a protocol violation here (§4.8).
        raise MalformedPacket("unexpected_packet")

    async def _on_puback(self, b0):
        pid = (self._rx[0] << 8) | self._rx[1]
        if pid and pid == self._inflight_pid and not self._acked:
            self._acked = True
            self.counters["puback"] += 1
            self._state_event.set()
        else:
            self.counters["stale_puback"] += 1

    async def _on_pingresp(self, b0):
        self._ping_out = False

    async def _on_suback(self, b0):
        _pid, failures = parse_suback(self._rx, self._rx_len)
        self.counters["subacks"] += 1
        if failures:
            self.counters["sub_failures"] += failures

    async def _on_publish(self, b0):
        n = self._rx_len
        cap = len(self._rx)
        truncated = n > cap
        topic_end, pid, start = parse_publish(b0, self._rx, cap if truncated else n)
        if truncated:
            self.counters["rx_dropped"] += 1
        else:
            self.counters["rx_messages"] += 1
            cb = self.on_message
            if cb is not None:
                mv = self._rxmv
                try:
                    cb(mv[2:topic_end], mv[start:n], bool(b0 & 0x01), bool(b0 & 0x08))
                except Exception as e:  # the command handler's bug, not the link's
                    self.counters["callback_errors"] += 1
                    self.last_error = e
        if pid:  # QoS 1: acknowledge after handing it over (§4.3.2)
            puback_into(self._ack, pid)
            await self._write(self._ack)

    # ------------------------------------------------------------------ helpers

    def _next_pid(self):
        # One counter for PUBLISH and SUBSCRIBE: 1..65535, never 0 (§2.3.1). With one
        # PUBLISH in flight, an id comes round again only 65535 packets later.
        self._pid = self._pid % 0xFFFF + 1
        return self._pid
