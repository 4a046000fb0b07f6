"""The MQTT exporter in-process against a real broker: cleanup, refusals, lockout, outages."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.factories import lfp_settings
from tests.frames import sample_frame
from tests.mqtt_broker import Broker, Watcher, broker_kind
from tests.ports import PackPort
from tests.waiting import until
from twin.app import StateHub
from twin.exporters.mqtt import MqttExporter
from twin.exporters.mqtt_map import CELL_KEYS, MqttSettings
from twin.model.pin import LockState
from twin.protocol.frame import encode_frame
from twin.protocol.shadow import PackShadow

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

PREFIX = "adapter"


def _hub_and_port() -> tuple[StateHub, PackPort]:
    """A hub with one pack's state, and the pack's port."""
    settings = lfp_settings(vbalance_v=3.5, vmax_v=3.65)
    hub = StateHub(("pack1",))
    state = PackShadow("pack1", settings).feed(encode_frame(sample_frame()), 0.0, 740_000)
    assert state is not None
    hub.publish(state)
    return hub, PackPort(settings)


class Running:
    """An exporter over one pack with a state, running as a task."""

    def __init__(self, broker: Broker, *, cells: bool = True, timeout_s: float = 10.0) -> None:
        self.hub, self.port = _hub_and_port()
        settings_mqtt = MqttSettings(
            port=broker.port,
            prefix=PREFIX,
            reconnect_min_s=0.1,
            reconnect_max_s=0.5,
            cells=cells,
            timeout_s=timeout_s,
        )
        self.exporter = MqttExporter(self.hub, self.port, settings_mqtt, {"pack1": 16})
        self.task = asyncio.create_task(self.exporter.run())

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest_asyncio.fixture
async def running(broker: Broker) -> AsyncIterator[Running]:
    twin = Running(broker)
    await until(lambda: twin.exporter.connected, "connected")
    yield twin
    await twin.stop()


async def _command(watcher: Watcher, topic: str, payload: object, n: int) -> dict[str, object]:
    """Publish a command with id ``n`` and return its result."""
    body = dict(payload) if isinstance(payload, dict) else payload
    if isinstance(body, dict):
        body["id"] = n
    watcher.publish(f"{PREFIX}/{topic}", body)
    unit = topic.split("/")[0]
    result_topic = f"{PREFIX}/{unit}/result"

    def answered() -> bool:
        result = watcher.json(result_topic)
        return result is not None and (not isinstance(body, dict) or result.get("id") == n)

    await until(answered, f"the result of {topic}")
    result = watcher.json(result_topic)
    assert isinstance(result, dict)
    return result


async def test_packs_no_longer_configured_are_cleared_and_others_left_alone(
    broker: Broker,
) -> None:
    old = Watcher(broker, client_id="previous-run")
    # What a previous run with a second pack left on the broker, and another twin's entity.
    leftovers = {
        f"{PREFIX}/pack2/state": json.dumps({"cell_count": 2, "stale": False}),
        f"{PREFIX}/pack2/soc_pct": "55.0",
        f"{PREFIX}/pack2/cell/2/voltage_v": "3.3",
        f"{PREFIX}/pack2/settings": "{}",
        f"homeassistant/sensor/{PREFIX}_pack2_soc_pct/config": json.dumps(
            {"state_topic": f"{PREFIX}/pack2/state"}
        ),
        f"homeassistant/sensor/{PREFIX}_pack2_cell_2_voltage/config": json.dumps(
            {"state_topic": f"{PREFIX}/pack2/cell/2/voltage_v"}
        ),
        # ha_cells was on in the previous run: pack1's cell sensors go too.
        f"homeassistant/sensor/{PREFIX}_pack1_cell_1_voltage/config": json.dumps(
            {"state_topic": f"{PREFIX}/pack1/cell/1/voltage_v"}
        ),
    }
    foreign = {
        "homeassistant/sensor/other_pack2_soc_pct/config": json.dumps(
            {"state_topic": "other/pack2/state"}
        ),
        f"{PREFIX}x/pack2/state": "{}",
    }
    for topic, payload in {**leftovers, **foreign}.items():
        old.publish(topic, payload, retain=True)
    old.close()

    twin = Running(broker)
    try:
        await until(lambda: twin.exporter.connected, "connected")
        watcher = Watcher(broker, "#", client_id="after")
        try:
            # The leftovers are cleared as the broker hands them over at the subscription.
            await until(
                lambda: (
                    all(watcher.get(topic) in (None, b"") for topic in leftovers)
                    and watcher.get(f"{PREFIX}/status") == b"online"
                ),
                "the leftovers cleared",
            )
        finally:
            watcher.close()
        fresh = Watcher(broker, "#", client_id="fresh")
        try:
            await until(lambda: f"{PREFIX}/status" in fresh.retained, "the retained topics")
            await until(lambda: all(t in fresh.retained for t in foreign), "the foreign topics")
            for topic in leftovers:
                assert topic not in fresh.retained, topic
            assert f"homeassistant/sensor/{PREFIX}_pack1_soc_pct/config" in fresh.retained
            assert f"{PREFIX}/pack1/state" in fresh.retained
        finally:
            fresh.close()
    finally:
        await twin.stop()


async def test_bad_commands_are_refused_with_the_reason(broker: Broker, running: Running) -> None:
    watcher = Watcher(broker, f"{PREFIX}/#")
    try:
        cases = [
            ("fleet/set/vmax_v", {"value": 3.6, "pin": "4321"}, "the fleet has no settings"),
            ("pack9/set/vmax_v", {"value": 3.6, "pin": "4321"}, "no pack 'pack9'"),
            ("pack1/set/vmax_v", {"value": 3.6}, 'no "pin"'),
            ("pack1/set/vmax_v", {"value": 9.9, "pin": "4321"}, "vmax_v"),
            ("pack1/set/cell_count", {"value": 4, "pin": "4321"}, "not a writable setting"),
            ("pack1/set/capacity_wh", {"value": 1e300, "pin": "4321"}, "what the UART frame"),
            ("pack1/cmd/reboot", {"pin": "4321"}, "no command 'reboot'"),
            ("pack1/emulator/fault/break-chain", {}, "not an emulated pack"),
        ]
        for n, (topic, payload, error) in enumerate(cases):
            result = await _command(watcher, topic, payload, n)
            assert result["ok"] is False and error in str(result["error"]), result
        watcher.publish(f"{PREFIX}/pack1/set/vmax_v", "{not json")
        await until(
            lambda: "not JSON" in str((watcher.json(f"{PREFIX}/pack1/result") or {}).get("error")),
            "the JSON refusal",
        )
        assert running.port.current.vmax_v == 3.65  # nothing changed
        assert running.port.guard.wrong_total == 0  # no PIN was tried
        assert running.exporter.connected and not running.task.done()

        done = await _command(watcher, "pack1/cmd/clear_counters", {"pin": 4321}, 99)
        assert done["ok"] is True and running.port.cleared == 1
        together = await _command(
            watcher, "pack1/set", {"values": {"vmax_v": 3.6, "vmin_v": 2.8}, "pin": "4321"}, 100
        )
        assert together["ok"] is True
        assert (running.port.current.vmax_v, running.port.current.vmin_v) == (3.6, 2.8)
        await until(
            lambda: (watcher.json(f"{PREFIX}/pack1/settings") or {}).get("vmin_v") == 2.8,
            "the settings topic",
        )
    finally:
        watcher.close()


async def test_wrong_pins_over_mqtt_lock_out_the_shared_guard(
    broker: Broker, running: Running
) -> None:
    watcher = Watcher(broker, f"{PREFIX}/#")
    try:
        errors = [
            str(
                (await _command(watcher, "pack1/set/vmax_v", {"value": 3.6, "pin": "1"}, n))[
                    "error"
                ]
            )
            for n in range(5)
        ]
        assert errors[:4] == ["wrong PIN"] * 4 and "locked out" in errors[4]
        # The guard is the pack's, shared with Modbus: its writes are locked out as well.
        assert running.port.guard.state(time.monotonic()) is LockState.LOCKED_OUT
        result = await _command(watcher, "pack1/set/vmax_v", {"value": 3.6, "pin": "4321"}, 5)
        assert result["ok"] is False and "locked out" in str(result["error"])
        assert running.port.current.vmax_v == 3.65
    finally:
        watcher.close()


async def test_a_retained_command_is_not_carried_out(broker: Broker) -> None:
    setter = Watcher(broker, f"{PREFIX}/pack1/result", client_id="setter")
    setter.publish(f"{PREFIX}/pack1/set/vmax_v", {"value": 3.6, "pin": "4321"}, retain=True)
    twin = Running(broker)
    try:
        await until(lambda: setter.json(f"{PREFIX}/pack1/result") is not None, "a result")
        result = setter.json(f"{PREFIX}/pack1/result")
        assert result["ok"] is False and "retained" in result["error"]
        assert twin.port.current.vmax_v == 3.65
    finally:
        setter.publish(f"{PREFIX}/pack1/set/vmax_v", "", retain=True)
        setter.close()
        await twin.stop()


async def test_a_command_published_retained_while_connected_is_refused_and_cleared(
    broker: Broker, running: Running
) -> None:
    # MQTT 5 "retain as published": a live command keeps its retain flag, so it is told apart.
    if broker.kind != "mosquitto":
        pytest.skip("MQTT 5 needs mosquitto (amqtt speaks 3.1.1 only)")
    command = f"{PREFIX}/pack1/set/vmax_v"
    watcher = Watcher(broker, f"{PREFIX}/pack1/result", command, client_id="setter")
    try:
        watcher.publish(command, {"value": 3.6, "pin": "4321", "id": 7}, retain=True)
        await until(lambda: watcher.json(f"{PREFIX}/pack1/result") is not None, "a result")
        result = watcher.json(f"{PREFIX}/pack1/result")
        assert result["ok"] is False and "retained" in result["error"] and result["id"] == 7
        assert running.port.current.vmax_v == 3.65
        assert running.port.guard.wrong_total == 0
        # ... and cleared from the broker: the twin publishes an empty retained message on the
        # command's topic, which deletes the stored one (MQTT's rule for an empty payload).
        await until(lambda: watcher.get(command) == b"", "the stored command cleared")
    finally:
        watcher.close()
    late = Watcher(broker, f"{PREFIX}/pack1/#", client_id="late")
    try:
        # The broker's handover to a new subscriber holds the state, never the command.
        await until(lambda: f"{PREFIX}/pack1/state" in late.retained, "the retained state")
        assert command not in late.retained
    finally:
        late.close()


async def test_deeply_nested_json_gets_a_refusal(broker: Broker, running: Running) -> None:
    watcher = Watcher(broker, f"{PREFIX}/pack1/result", client_id="nested")
    try:
        watcher.publish(f"{PREFIX}/pack1/set/vmax_v", "[" * 2000 + "]" * 2000)
        await until(lambda: watcher.json(f"{PREFIX}/pack1/result") is not None, "a result")
        result = watcher.json(f"{PREFIX}/pack1/result")
        assert result["ok"] is False and "nested" in result["error"]
        nested = {"value": {"deeper": [1, {"x": 2}]}, "pin": "4321", "id": 3}
        watcher.publish(f"{PREFIX}/pack1/set/vmax_v", nested)
        await until(lambda: watcher.json(f"{PREFIX}/pack1/result").get("id") == 3, "result 3")
        assert "is not a number" in watcher.json(f"{PREFIX}/pack1/result")["error"]
        assert running.exporter.connected and not running.task.done()
    finally:
        watcher.close()


async def test_a_broker_that_speaks_only_3_1_1_is_used_with_3_1_1(tmp_path: Path) -> None:
    server = Broker(tmp_path, kind="amqtt")
    server.start()
    watcher = Watcher(server, f"{PREFIX}/#", client_id="old")
    twin = Running(server, timeout_s=2.0)
    try:
        # amqtt never answers an MQTT 5 connect with a will: after the timeout, 3.1.1.
        await until(lambda: watcher.get(f"{PREFIX}/status") == b"online", "online over 3.1.1")
        assert twin.exporter._v5 is False
    finally:
        watcher.close()
        await twin.stop()
        server.stop()


async def test_a_broker_that_is_not_there_yet_is_retried_until_it_is(tmp_path: Path) -> None:
    broker = Broker(tmp_path)  # its port chosen, not started
    twin = Running(broker)
    try:
        await until(lambda: twin.exporter.retry_in_s is not None, "a retry")
        assert not twin.exporter.connected and "DOWN" in twin.exporter.status()
        await until(lambda: twin.exporter.retry_in_s == 0.5, "the capped backoff")
        broker.start()
        await until(lambda: twin.exporter.connected, "connected")
        assert "up" in twin.exporter.status()
        watcher = Watcher(broker, f"{PREFIX}/status")
        try:
            await until(lambda: watcher.get(f"{PREFIX}/status") == b"online", "online")
        finally:
            watcher.close()
    finally:
        await twin.stop()
        broker.stop()


async def test_home_assistants_birth_message_brings_discovery_again(
    broker: Broker, running: Running
) -> None:
    watcher = Watcher(broker, "homeassistant/+/+/config", f"{PREFIX}/pack1/state")
    try:
        config = f"homeassistant/sensor/{PREFIX}_pack1_soc_pct/config"
        await until(lambda: watcher.get(config) is not None, "the retained config")
        seen = watcher.count()
        watcher.publish("homeassistant/status", "online")
        await until(
            lambda: any(topic == config for topic, _, _ in watcher.since(seen)),
            "the config published again",
        )
        await until(
            lambda: any(topic == f"{PREFIX}/pack1/state" for topic, _, _ in watcher.since(seen)),
            "the state published again",
        )
        sensor = watcher.json(config)
        assert sensor["default_entity_id"] == f"sensor.{PREFIX}_pack1_soc_pct"
        assert "object_id" not in sensor  # deprecated by Home Assistant 2025.10
    finally:
        watcher.close()


@pytest.mark.skipif(
    shutil.which("openssl") is None or broker_kind() != "mosquitto",
    reason="the TLS test needs openssl and mosquitto (apt-get install openssl mosquitto)",
)
async def test_tls_with_the_brokers_ca_and_a_refusal_with_another(tmp_path: Path) -> None:
    broker = Broker(tmp_path, tls=True)
    broker.start()
    assert broker.tls_port is not None
    hub, port = _hub_and_port()
    watcher = Watcher(broker, f"{PREFIX}/status", f"{PREFIX}x/status")
    good = MqttExporter(
        hub,
        port,
        MqttSettings(
            port=broker.tls_port, prefix=PREFIX, tls=True, ca_file=str(tmp_path / "ca.crt")
        ),
        {"pack1": 16},
    )
    wrong = MqttExporter(
        hub,
        port,
        MqttSettings(
            port=broker.tls_port,
            prefix=PREFIX + "x",
            tls=True,
            ca_file=str(tmp_path / "other-ca.crt"),
            reconnect_min_s=0.1,
            reconnect_max_s=0.2,
        ),
        {"pack1": 16},
    )
    tasks = [asyncio.create_task(good.run()), asyncio.create_task(wrong.run())]
    try:
        await until(lambda: watcher.get(f"{PREFIX}/status") == b"online", "online over TLS")
        await until(lambda: wrong.retry_in_s is not None, "the refusal")
        assert not wrong.connected and watcher.get(f"{PREFIX}x/status") is None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        watcher.close()
        broker.stop()


async def test_cell_topics_of_a_run_with_cells_are_cleared_when_cells_are_off(
    broker: Broker,
) -> None:
    cells = [f"{PREFIX}/pack1/cell/{n}/{key}" for n in range(1, 17) for key in CELL_KEYS]
    first = Running(broker)
    try:
        watcher = Watcher(broker, f"{PREFIX}/pack1/cell/#", client_id="cells")
        try:
            # Every cell topic, not only the last cell's temperature: a topic still unpublished
            # when the first run stops is never retained, and so never cleared.
            await until(lambda: all(watcher.get(t) is not None for t in cells), "every cell topic")
        finally:
            watcher.close()
    finally:
        await first.stop()
    before = Watcher(broker, f"{PREFIX}/pack1/cell/#", client_id="before")
    second = Running(broker, cells=False)
    try:
        try:
            await until(lambda: all(before.get(t) == b"" for t in cells), "the cell topics cleared")
        finally:
            before.close()
        fresh = Watcher(broker, f"{PREFIX}/#", client_id="fresh")
        try:
            await until(lambda: f"{PREFIX}/status" in fresh.retained, "the retained topics")
            assert f"{PREFIX}/pack1/state" in fresh.retained
            assert not [t for t in fresh.retained if "/cell/" in t]
        finally:
            fresh.close()
    finally:
        await second.stop()
