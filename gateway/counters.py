"""Named counters of the gateway: nothing is dropped without a number someone can see.

A :class:`Counters` registry holds monotonically increasing integers by name. Any thread
may increment (the MQTT network thread, the ingest writer, the results engine); a
``snapshot()`` is a consistent copy taken under the same lock, for the gateway's status
payload and for tests.

Names used by the ingest pipeline (gateway/ingest.py):

=======================  ==================================================================
``received``             every message handed to ``Ingestor.handle``
``accepted``             authenticated, valid, new records (queued for the next batch)
``duplicate``            an identical copy of a record already stored or queued (QoS 1
                         redelivery); not dead-lettered
``rejected``             every rejected message, and ``rejected.<reason>`` per reason
``dead_lettered``        dead letters produced (each rejected message makes one)
``stored``               records written by ``flush()``; ``batches`` the transactions
``duplicate_minute``     a stored record whose minute (station, channel, ts) already had a
                         value: the record is kept, the earlier minute is not overwritten
``unsynced_time``        a stored record with ``time_valid: false``: kept in ``records``,
                         not placed in ``minutes``
``out_of_order``         an accepted record whose seq is below the station's highest seen
                         (a backlog replay after an outage: normal)
``dead_letters_stored``  dead letters written to the ``dead_letters`` table
``flush_failed``         a batch transaction that failed (the batch is kept and retried)
``store_conflicts``      records the store found already present (0 unless a bug)
``deadletter_publish_``  a dead letter published while disconnected (paho sends it after
``deferred``             the reconnect; it is in the table either way)
``mqtt.*``               the adapter's link: ``connects``, ``connect_failures``,
                         ``disconnects``, ``subscribe_failures``, ``ack_failed``
=======================  ==================================================================

``accepted + rejected + duplicate == received`` holds after every ``handle`` returns.
"""

from __future__ import annotations

import threading


class Counters:
    """A thread-safe registry of named integer counters; unknown names read as 0."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, int] = {}

    def inc(self, name: str, n: int = 1) -> None:
        """Add ``n`` (>= 0) to the counter ``name``, creating it at 0 first."""
        if n < 0:
            raise ValueError(f"counter {name!r}: counters only go up, not by {n}")
        with self._lock:
            self._values[name] = self._values.get(name, 0) + n

    def get(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of every counter, sorted by name."""
        with self._lock:
            return dict(sorted(self._values.items()))

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()!r})"
