"""MQTT against ``twin run`` as a subprocess and a real broker (mosquitto, else amqtt).

The subscriber is plain paho-mqtt, not the twin's aiomqtt. Modbus is read at the same time to
check that what MQTT says and does is what the twin holds.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, wait_until, write_config
from tests.mqtt_broker import Broker, Watcher

pytestmark = pytest.mark.slow

MQTT = """
[can]
enabled = false

[mqtt]
host = "127.0.0.1"
port = {port}
prefix = "{prefix}"
refresh_s = 30
reconnect_min_s = 0.2
reconnect_max_s = 2
"""


def _prefix() -> str:
    # One prefix per test: a broker left over by another run never mixes in.
    return f"t{random.randrange(16**8):08x}"


def _config(tmp_path: Path, broker: Broker, prefix: str, **kwargs: float) -> tuple[Path, int]:
    port = free_port()
    extra = MQTT.format(port=broker.port, prefix=prefix)
    return write_config(tmp_path, port=port, extra=extra, **kwargs), port


def _read(port: int, address: int, count: int) -> list[int]:
    with RawModbus(port) as raw:
        registers = raw.read_holding(1, address, count)
    assert isinstance(registers, list), f"exception {registers}"
    return registers


def test_discovery_retained_state_online_and_the_last_will(tmp_path: Path, broker: Broker) -> None:
    prefix = _prefix()
    config, _ = _config(tmp_path, broker, prefix)
    with TwinProcess(config) as twin:
        twin.wait_for_message("mqtt: connected")
        watcher = Watcher(broker, f"{prefix}/#", "homeassistant/#", client_id="w1")
        try:
            wait_until(lambda: watcher.get(f"{prefix}/status") == b"online", what="online")
            wait_until(
                lambda: watcher.get(f"{prefix}/pack1/cell/8/voltage_v") is not None,
                what="a frame's values published",
            )
            # A subscriber that comes later gets everything from the broker, all retained.
            late = Watcher(broker, f"{prefix}/#", "homeassistant/#", client_id="late")
            node = f"{prefix}_pack1"
            # The broker sends the retained messages in no particular order: wait for each
            # one read below, not for one of them.
            needed = [
                f"{prefix}/pack1/cell/8/voltage_v",
                f"{prefix}/status",
                f"{prefix}/pack1/state",
                f"{prefix}/pack1/soc_pct",
                f"{prefix}/fleet/state",
                f"{prefix}/pack1/settings",
                f"homeassistant/sensor/{node}_pack_voltage_v/config",
                f"homeassistant/sensor/{node}_harvested_total_wh/config",
                f"homeassistant/binary_sensor/{node}_charge_effective/config",
                f"homeassistant/sensor/{prefix}_fleet_soc_pct/config",
            ]
            try:
                wait_until(
                    lambda: all(topic in late.retained for topic in needed),
                    what="the retained topics",
                )
                retained = dict(late.retained)
            finally:
                late.close()
            assert retained[f"{prefix}/status"] == b"online"
            state = json.loads(retained[f"{prefix}/pack1/state"])
            assert state["cell_count"] == 8 and state["stale"] is False
            assert state["pack_voltage_v"] > 20
            assert f"{prefix}/pack1/soc_pct" in retained
            assert f"{prefix}/fleet/state" in retained
            settings = json.loads(retained[f"{prefix}/pack1/settings"])
            assert settings["capacity_wh"] == 5734

            voltage = json.loads(retained[f"homeassistant/sensor/{node}_pack_voltage_v/config"])
            assert voltage["device_class"] == "voltage" and voltage["unit_of_measurement"] == "V"
            assert voltage["state_topic"] == f"{prefix}/pack1/state"
            assert voltage["availability_topic"] == f"{prefix}/status"
            energy = json.loads(retained[f"homeassistant/sensor/{node}_harvested_total_wh/config"])
            assert energy["state_class"] == "total_increasing"
            relay = json.loads(
                retained[f"homeassistant/binary_sensor/{node}_charge_effective/config"]
            )
            assert relay["device"]["identifiers"] == [node]
            assert f"homeassistant/sensor/{prefix}_fleet_soc_pct/config" in retained

            # SIGKILL: the twin cannot say goodbye; the broker publishes its last will.
            assert twin.process is not None
            twin.process.kill()
            twin.process.wait(timeout=10)
            wait_until(lambda: watcher.get(f"{prefix}/status") == b"offline", what="offline")
        finally:
            watcher.close()
    later = Watcher(broker, f"{prefix}/status", client_id="w2")
    try:
        wait_until(lambda: later.get(f"{prefix}/status") == b"offline", what="retained offline")
    finally:
        later.close()


def test_a_clean_stop_says_offline(tmp_path: Path, broker: Broker) -> None:
    prefix = _prefix()
    config, _ = _config(tmp_path, broker, prefix)
    watcher = Watcher(broker, f"{prefix}/status")
    try:
        with TwinProcess(config) as twin:
            wait_until(lambda: watcher.get(f"{prefix}/status") == b"online", what="online")
            assert twin.stop(signal.SIGTERM) == 0
        wait_until(lambda: watcher.get(f"{prefix}/status") == b"offline", what="offline")
    finally:
        watcher.close()


def test_the_twin_outlives_its_broker_and_republishes(tmp_path: Path, broker: Broker) -> None:
    prefix = _prefix()
    config, port = _config(tmp_path, broker, prefix)
    with TwinProcess(config) as twin:
        twin.wait_for_message("mqtt: connected")
        broker.stop()
        twin.wait_for_message("mqtt: lost the broker")
        # Twice over the backoff cap, the twin keeps running and Modbus keeps answering.
        twin.wait_for_log(
            lambda e: "cannot reach the broker" in str(e.get("message")) and "2.0 s" in e["message"]
        )
        assert twin.process is not None and twin.process.poll() is None
        frames = _read(port, 142, 2)
        wait_until(lambda: _read(port, 142, 2) != frames, what="frames still counted")
        retries = [
            float(e["message"].rsplit("retrying in ", 1)[1].split()[0])
            for e in twin.logs
            if "retrying in" in str(e.get("message"))
        ]
        assert retries and max(retries) <= 2.0  # the backoff is capped (reconnect_max_s)

        broker.start()  # the same port, no persistence: it remembers nothing
        twin.wait_for_log(
            lambda e: "mqtt: connected" in str(e.get("message")) and "again" in e["message"],
            timeout_s=15,
        )
        retained = _retained_once_online_again(broker, prefix)
        state = json.loads(retained[f"{prefix}/pack1/state"])
        assert state["pack_voltage_v"] is not None
        assert f"{prefix}/pack1/cell/8/voltage_v" in retained
        assert twin.stop() == 0


def _retained_once_online_again(broker: Broker, prefix: str) -> dict[str, bytes]:
    """What a subscriber gets from the broker once the twin says ``online`` again."""
    watcher = Watcher(broker, f"{prefix}/status", client_id="after")
    try:
        wait_until(lambda: watcher.get(f"{prefix}/status") == b"online", what="online again")
    finally:
        watcher.close()
    # Online comes last: by now the broker holds the state again, for anyone who comes.
    late = Watcher(broker, f"{prefix}/#", client_id="late")
    try:
        # The broker hands its retained messages over in no particular order: wait for both.
        topics = {f"{prefix}/pack1/state", f"{prefix}/status", f"{prefix}/pack1/cell/8/voltage_v"}
        wait_until(lambda: topics <= set(late.retained), what="the state, a cell and the status")
        assert late.retained[f"{prefix}/status"] == b"online"
        return dict(late.retained)
    finally:
        late.close()


def _steady_state_then_outage(
    twin: TwinProcess, broker: Broker, prefix: str, port: int, cycle: int
) -> None:
    """Wait for the steady state (a fresh state after online), stop and restart the broker."""
    watcher = Watcher(broker, f"{prefix}/#", client_id=f"cycle{cycle}")
    try:
        wait_until(lambda: watcher.get(f"{prefix}/status") == b"online", what=f"online {cycle}")
        state_topic = f"{prefix}/pack1/state"
        first = watcher.count()

        def fresh_state_after_online() -> bool:
            return any(
                topic == state_topic and json.loads(payload)["pack_voltage_v"] is not None
                for topic, payload, _ in watcher.since(first)
            )

        wait_until(fresh_state_after_online, what=f"a state after online ({cycle})")
    finally:
        watcher.close()
    broker.stop()
    twin.wait_for_log(
        lambda e: (
            "lost the broker" in str(e.get("message"))
            and sum("lost the broker" in str(x.get("message")) for x in twin.logs) >= cycle
        ),
    )
    frames = _read(port, 142, 2)
    wait_until(lambda: _read(port, 142, 2) != frames, what="Modbus during the outage")
    broker.start()
    twin.wait_for_message(f"(connection {cycle + 1})", timeout_s=15)


def test_five_outages_in_the_steady_state_each_republish(tmp_path: Path, broker: Broker) -> None:
    # The link drops while the twin follows states and reads commands (not while announcing):
    # under Python 3.11 each such drop used to leave the exporter's task "cancelling", and it
    # ended silently after the first outage.
    prefix = _prefix()
    config, port = _config(tmp_path, broker, prefix)
    with TwinProcess(config) as twin:
        for cycle in range(1, 6):
            _steady_state_then_outage(twin, broker, prefix, port, cycle)
        retained = _retained_once_online_again(broker, prefix)
        assert json.loads(retained[f"{prefix}/pack1/state"])["pack_voltage_v"] is not None
        # Nothing ended or restarted the exporter (the supervisor logs that as an error).
        errors = [e for e in twin.logs if e["level"] == "error" and e["logger"].startswith("twin")]
        assert not errors, twin.transcript()
        assert twin.stop() == 0


def test_settings_commands_check_the_pin_and_reach_modbus(tmp_path: Path, broker: Broker) -> None:
    prefix = _prefix()
    config, port = _config(tmp_path, broker, prefix)
    with TwinProcess(config) as twin:
        twin.wait_for_message("mqtt: connected")
        watcher = Watcher(broker, f"{prefix}/#")
        try:
            wait_until(lambda: watcher.get(f"{prefix}/status") == b"online", what="online")
            wait_until(lambda: _read(port, 201, 1)[0] != 0xFFFF, what="the first frame")
            before = _read(port, 201, 1)[0]
            assert before == 3700  # vmax_v of the LiFePO4 preset, in mV

            result = f"{prefix}/pack1/result"
            watcher.publish(f"{prefix}/pack1/set/vmax_v", {"value": 3.62, "pin": "0000", "id": 1})
            wait_until(lambda: watcher.json(result) is not None, what="a result")
            refused = watcher.json(result)
            assert refused["ok"] is False and refused["id"] == 1
            assert "wrong PIN" in refused["error"]
            assert _read(port, 201, 1)[0] == before
            assert _read(port, 222, 1)[0] == 0  # ... and Modbus writes are still locked

            watcher.publish(f"{prefix}/pack1/set/vmax_v", {"value": 3.62, "pin": "4321", "id": 2})
            wait_until(lambda: watcher.json(result)["id"] == 2, what="the second result")
            accepted = watcher.json(result)
            assert accepted["ok"] is True, accepted
            assert accepted["settings"]["vmax_v"] == pytest.approx(3.62)
            wait_until(lambda: _read(port, 201, 1)[0] == 3620, what="V-max in Modbus")
            wait_until(
                lambda: watcher.json(f"{prefix}/pack1/settings")["vmax_v"] == pytest.approx(3.62),
                what="the settings topic",
            )
            # A value the BMS cannot hold is refused with the reason, even with the right PIN.
            watcher.publish(f"{prefix}/pack1/set/vmax_v", {"value": 3.3, "pin": "4321", "id": 3})
            wait_until(lambda: watcher.json(result)["id"] == 3, what="the third result")
            assert watcher.json(result)["ok"] is False
            assert _read(port, 201, 1)[0] == 3620

            watcher.publish(f"{prefix}/pack1/cmd/clear_counters", {"pin": "4321", "id": 4})
            wait_until(lambda: watcher.json(result)["id"] == 4, what="the fourth result")
            assert watcher.json(result)["ok"] is True
        finally:
            watcher.close()
        assert twin.stop() == 0
    stored = json.loads((tmp_path / "state.json").read_text())
    assert stored["packs"]["pack1"]["settings"]["vmax_v"] == pytest.approx(3.62)


def test_a_broken_chain_injected_over_mqtt_shows_e_and_relays_off(
    tmp_path: Path, broker: Broker
) -> None:
    prefix = _prefix()
    config, port = _config(tmp_path, broker, prefix, stale_after_s=2.0)
    with TwinProcess(config) as twin:
        twin.wait_for_message("mqtt: connected")
        watcher = Watcher(broker, f"{prefix}/#")
        try:
            state_topic = f"{prefix}/pack1/state"
            wait_until(
                lambda: (watcher.json(state_topic) or {}).get("stale") is False,
                what="fresh data",
            )
            assert _read(port, 131, 1) == [0]
            watcher.publish(f"{prefix}/pack1/emulator/fault/break-chain", {"after_board": 3})
            wait_until(
                lambda: (watcher.json(f"{prefix}/pack1/result") or {}).get("ok") is True,
                what="the fault accepted",
            )
            assert "break-chain" in watcher.json(f"{prefix}/pack1/emulator/faults")

            def broken() -> bool:
                state = watcher.json(state_topic)
                return bool(state["warning_e"] and state["stale"])

            wait_until(broken, what="E in the MQTT state")
            state = watcher.json(state_topic)
            assert state["charge_effective"] is False and state["discharge_effective"] is False
            assert state["pack_voltage_v"] is None  # stale: not available, never a frozen value
            wait_until(
                lambda: watcher.get(f"{prefix}/pack1/warning_e") == b"true", what="warning_e"
            )
            assert _read(port, 131, 1) == [1]  # E in Modbus
            assert _read(port, 124, 2) == [0, 0]  # both effective relays off

            watcher.publish(f"{prefix}/pack1/emulator/fault/break-chain", {"clear": True})
            wait_until(lambda: watcher.json(state_topic)["stale"] is False, what="frames again")
            assert watcher.json(f"{prefix}/pack1/emulator/faults") == {}
        finally:
            watcher.close()
        assert twin.stop() == 0


def test_the_embedded_amqtt_broker_serves_the_same(tmp_path: Path) -> None:
    # The fallback when mosquitto is not installed: exercised here even where it is.
    server = Broker(tmp_path, kind="amqtt")
    server.start()
    try:
        prefix = _prefix()
        config, port = _config(tmp_path, server, prefix)
        with TwinProcess(config) as twin:
            twin.wait_for_message("mqtt: connected")
            watcher = Watcher(server, f"{prefix}/#")
            try:
                wait_until(
                    lambda: (
                        watcher.get(f"{prefix}/pack1/cell/8/voltage_v") is not None
                        and watcher.get(f"{prefix}/status") == b"online"
                    ),
                    what="online and a frame published",
                )
                result = f"{prefix}/pack1/result"
                watcher.publish(f"{prefix}/pack1/set/tmax_c", {"value": 50, "pin": "4321"})
                wait_until(lambda: watcher.json(result) is not None, what="a result")
                assert watcher.json(result)["ok"] is True
                wait_until(lambda: _read(port, 203, 1)[0] == 500, what="T-max in Modbus")
                assert twin.process is not None
                twin.process.kill()
                twin.process.wait(timeout=10)
                wait_until(lambda: watcher.get(f"{prefix}/status") == b"offline", what="offline")
            finally:
                watcher.close()
    finally:
        server.stop()
