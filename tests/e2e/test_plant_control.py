"""A controller under test sets the emulated plant over MQTT; Modbus and MQTT show the effect."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, mqtt_config, wait_until
from tests.mqtt_broker import Broker, Watcher

pytestmark = pytest.mark.slow


def _current2_a(port: int) -> float:
    """Register 106-107: sensor 2 (the inverter's path), int32 x 0.01 A, + = out."""
    with RawModbus(port) as raw:
        registers = raw.read_holding(1, 106, 2)
    assert isinstance(registers, list), f"exception {registers}"
    raw_value = (registers[0] << 16) | registers[1]
    if raw_value >= 1 << 31:
        raw_value -= 1 << 32
    return raw_value / 100.0


@contextlib.contextmanager
def _running(tmp_path: Path, broker: Broker) -> Iterator[tuple[TwinProcess, Watcher, int, str]]:
    """``twin run`` with MQTT, frames arriving: (the process, a watcher, Modbus port, prefix)."""
    config, port, prefix = mqtt_config(tmp_path, broker.port)
    with TwinProcess(config) as twin:
        twin.wait_for_message("mqtt: connected")
        watcher = Watcher(broker, f"{prefix}/#")
        try:
            wait_until(
                lambda: (watcher.json(f"{prefix}/pack1/state") or {}).get("stale") is False,
                what="fresh data",
            )
            yield twin, watcher, port, prefix
        finally:
            watcher.close()
        assert twin.stop() == 0


def _mqtt_current2_a(watcher: Watcher, prefix: str) -> float:
    """Sensor 2's current in the pack's MQTT state (0 before one)."""
    return float((watcher.json(f"{prefix}/pack1/state") or {}).get("current2_a") or 0.0)


def test_an_inverter_setpoint_over_mqtt_moves_the_pack_current_until_its_timeout(
    tmp_path: Path, broker: Broker
) -> None:
    with _running(tmp_path, broker) as (twin, watcher, port, prefix):
        topic = f"{prefix}/pack1/emulator/plant/inverter_dc_a"
        watcher.publish(topic, {"value": -30, "timeout_s": 6, "id": "c1"})
        wait_until(
            lambda: (watcher.json(f"{prefix}/pack1/result") or {}).get("id") == "c1",
            what="the answer",
        )
        result = watcher.json(f"{prefix}/pack1/result")
        assert result["ok"] is True and result["plant"] == {"inverter_dc_a": -30.0}
        wait_until(lambda: abs(_current2_a(port) - 30.0) < 1.0, what="30 A out through sensor 2")
        wait_until(
            lambda: abs(_mqtt_current2_a(watcher, prefix) - 30.0) < 1.0,
            what="the same on MQTT",
        )
        assert watcher.json(f"{prefix}/pack1/emulator/plant") == {"inverter_dc_a": -30.0}
        twin.wait_for_message("plant inverter_dc_a = -30 for 6 s")
        # The timeout hands the inverter back to the household profile.
        twin.wait_for_message("plant inverter_dc_a timed out", timeout_s=30.0)
        wait_until(lambda: abs(_current2_a(port) - 30.0) > 1.0, what="the profile again")
        wait_until(
            lambda: watcher.json(f"{prefix}/pack1/emulator/plant") == {},
            what="no setpoint on MQTT",
        )
        # A bad setpoint is refused with the problem named.
        watcher.publish(f"{prefix}/pack1/emulator/plant/grid_w", {"value": 1, "id": "c2"})
        wait_until(
            lambda: (watcher.json(f"{prefix}/pack1/result") or {}).get("id") == "c2",
            what="the refusal",
        )
        refusal = watcher.json(f"{prefix}/pack1/result")
        assert refusal["ok"] is False and "not a plant setpoint" in refusal["error"]


def test_a_modbus_write_of_the_inverter_setpoint_moves_the_pack_until_its_timeout(
    tmp_path: Path, broker: Broker
) -> None:
    with _running(tmp_path, broker) as (twin, watcher, port, prefix):
        with RawModbus(port) as raw:
            assert raw.write_single(1, 247, 6) is None  # the next setpoints: 6 s
            assert raw.write_single(1, 240, 0x10000 - 300) is None  # -30.0 A, no PIN
            assert raw.read_holding(1, 240, 1) == [0x10000 - 300]
            assert raw.write_single(1, 245, 101) == 3  # 101 %: refused, named in the log
        wait_until(lambda: abs(_current2_a(port) - 30.0) < 1.0, what="30 A on Modbus")
        wait_until(
            lambda: abs(_mqtt_current2_a(watcher, prefix) - 30.0) < 1.0,
            what="30 A on MQTT",
        )
        twin.wait_for_message("plant inverter_dc_a timed out", timeout_s=30.0)
        wait_until(lambda: abs(_current2_a(port) - 30.0) > 1.0, what="the profile again")
        with RawModbus(port) as raw:
            assert raw.read_holding(1, 240, 1) == [0x8000]  # no setpoint in effect
