"""Shared test configuration."""

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.mqtt_broker import Broker

# Tests never assert on wall time: these machines are shared and noisy.
settings.register_profile(
    "twin", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("twin")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    """A real MQTT broker (mosquitto, else amqtt) on a free loopback port, for one test."""
    server = Broker(tmp_path)
    server.start()
    yield server
    server.stop()
