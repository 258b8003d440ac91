"""Fixtures for the firmware tests: a real mosquitto on a free loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hil_tests.broker import Mosquitto


@pytest.fixture
def mosquitto() -> Iterator[Mosquitto]:
    """A fresh mosquitto (own config, store and log in a temp dir), always stopped."""
    broker = Mosquitto()
    try:
        broker.start()
        yield broker
    finally:
        broker.close()
