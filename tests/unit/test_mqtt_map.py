"""What MQTT publishes: the state JSON, per-cell values, deadbands, Home Assistant discovery."""

from __future__ import annotations

import json
import re

import pytest

from tests.factories import lfp_settings, readouts
from tests.frames import frame_stream, sample_frame
from twin.errors import CommandError
from twin.exporters.mqtt_map import (
    ENTITIES,
    FLEET_KEYS,
    PACK_KEYS,
    MqttSettings,
    cell_values,
    changed,
    command_pin,
    command_subscriptions,
    discovery_configs,
    fleet_state,
    pack_state,
    parse_command,
    plant_values,
    result_payload,
    setting_values,
    unit_of_state_topic,
    unit_topics,
)
from twin.protocol.frame import encode_frame
from twin.protocol.readout import pack_readout
from twin.protocol.shadow import PackShadow, TwinState

DAY = 740_000


def _state() -> tuple[PackShadow, TwinState]:
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    state = None
    for n, wire in enumerate(frame_stream(20)):
        state = shadow.feed(wire, float(n), DAY) or state
    assert state is not None
    return shadow, state


def test_the_state_json_carries_units_in_its_keys_and_is_json() -> None:
    _, state = _state()
    payload = pack_state(pack_readout(state))
    text = json.dumps(payload)
    assert json.loads(text) == payload
    assert payload["pack_voltage_v"] == 53.095
    assert payload["battery_current_a"] == 10.5
    assert payload["charge_effective"] is True and payload["stale"] is False
    assert payload["cell_count"] == 16
    assert all(
        key.endswith(("_v", "_a", "_ah", "_w", "_wh", "_pct", "_c", "_s"))
        for key, value in payload.items()
        if isinstance(value, float)
    )


def test_stale_data_shows_in_the_state_not_as_a_silent_freeze() -> None:
    shadow, _ = _state()
    stale = shadow.tick(60.0, DAY)
    assert stale is not None
    payload = pack_state(pack_readout(stale))
    assert payload["stale"] is True and payload["warning_e"] is True
    assert payload["pack_voltage_v"] is None  # not available: null, never the last value
    assert payload["charge_effective"] is False
    assert payload["charge_current_limit_a"] == 0.0
    assert all(c["voltage_v"] is None for c in cell_values(pack_readout(stale)))
    # Before the first snapshot: every key a template reads, null where nothing is known.
    before = pack_state(None)
    assert tuple(before) == PACK_KEYS
    assert before["stale"] is True and before["warning_e"] is True
    assert before["charge_effective"] is False and before["discharge_effective"] is False
    assert before["pack_voltage_v"] is None and before["soc_pct"] is None


def test_cells_and_the_fleet() -> None:
    _, state = _state()
    cells = cell_values(pack_readout(state))
    assert len(cells) == 16 and cells[0]["voltage_v"] == 3.3
    fleet = fleet_state(readouts({"pack1": state})[1])
    assert fleet["pack_count"] == 1 and fleet["complete"] is True
    assert state.logic is not None
    assert fleet["soc_pct"] == round(state.logic.soc_pct, 2)


def test_deadbands_suppress_noise_but_never_a_change_of_kind() -> None:
    assert not changed(53.10, 53.105, "pack_voltage_v")
    assert changed(53.10, 53.12, "pack_voltage_v")
    assert changed(None, 0.0, "pack_voltage_v")
    assert changed(True, False, "charge_effective")
    assert changed(3, 4, "frames_received")
    assert not changed("a,b", "a,b", "alarms")


def test_home_assistant_discovery_has_classes_units_and_state_classes() -> None:
    configs = discovery_configs("pack1", "twin/pack1", "twin/status", cells=2, version="0.1.0")
    voltage = configs["homeassistant/sensor/twin_pack1_pack_voltage_v/config"]
    assert voltage["device_class"] == "voltage" and voltage["unit_of_measurement"] == "V"
    assert voltage["state_class"] == "measurement"
    assert voltage["state_topic"] == "twin/pack1/state"
    assert voltage["availability_topic"] == "twin/status"
    # null renders as "None": Home Assistant's "unknown", not 0 and not a parse error.
    assert voltage["value_template"] == "{{ value_json.pack_voltage_v }}"
    assert voltage["device"]["identifiers"] == ["twin_pack1"]
    energy = configs["homeassistant/sensor/twin_pack1_harvested_total_wh/config"]
    assert energy["device_class"] == "energy" and energy["state_class"] == "total_increasing"
    soc = configs["homeassistant/sensor/twin_pack1_soc_pct/config"]
    assert soc["device_class"] == "battery" and soc["unit_of_measurement"] == "%"
    relay = configs["homeassistant/binary_sensor/twin_pack1_charge_effective/config"]
    assert relay["payload_on"] == "ON" and "value_json.charge_effective" in relay["value_template"]
    cell = configs["homeassistant/sensor/twin_pack1_cell_2_voltage/config"]
    assert cell["state_topic"] == "twin/pack1/cell/2/voltage_v"
    assert cell["enabled_by_default"] is False
    assert cell["value_template"] == "{{ value_json }}"
    temp = configs["homeassistant/sensor/twin_pack1_cell_1_temperature/config"]
    assert temp["device_class"] == "temperature" and temp["unit_of_measurement"] == "°C"
    assert temp["state_topic"] == "twin/pack1/cell/1/temp_c"
    assert len(configs) == len(ENTITIES) + 2 * 2
    # Every config names a key the state JSON has.
    _, state = _state()
    payload = pack_state(pack_readout(state))
    for entity in ENTITIES:
        assert entity.key in payload


def test_the_fleet_device_leaves_out_pack_only_entities() -> None:
    configs = discovery_configs("fleet", "twin/fleet", "twin/status", fleet=True)
    assert not any("min_cell_voltage" in topic for topic in configs)
    assert any("soc_pct" in topic for topic in configs)
    payload = fleet_state(readouts({}, ("pack1",))[1])
    assert tuple(payload) == FLEET_KEYS
    assert {k: v for k, v in payload.items() if v is not None} == {
        "stale": True,
        "complete": False,
        "charge_effective": False,
        "discharge_effective": False,
        "pack_count": 1,  # known from the configuration
        "warning_e": True,  # as a pack before its first state: no data is an error
    }


def test_a_frame_with_currents_not_available_publishes_null() -> None:
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    shadow.feed(encode_frame(sample_frame(current2_a=None)), 0.0, DAY)
    state = shadow.feed(encode_frame(sample_frame(current2_a=None)), 1.0, DAY)
    assert state is not None
    assert pack_state(pack_readout(state))["current2_a"] is None


def test_the_key_lists_are_the_state_keys() -> None:
    _, state = _state()
    assert tuple(pack_state(pack_readout(state))) == PACK_KEYS
    assert tuple(fleet_state(readouts({"pack1": state})[1])) == FLEET_KEYS


def test_ids_follow_the_prefix_so_two_twins_never_share_an_entity() -> None:
    configs = discovery_configs("pack1", "site-1/twin/pack1", "site-1/twin/status")
    assert "homeassistant/sensor/site_1_twin_pack1_soc_pct/config" in configs
    config = configs["homeassistant/sensor/site_1_twin_pack1_soc_pct/config"]
    assert config["device"]["identifiers"] == ["site_1_twin_pack1"]


SETTINGS = MqttSettings(prefix="site/twin")
WRITABLE = {"vmax_v": "", "vmin_v": ""}


def test_command_topics_and_payloads() -> None:
    command = parse_command(SETTINGS, "site/twin/pack1/set/vmax_v", b'{"value": 3.6, "pin": 1234}')
    assert command is not None and command.kind == "set" and command.name == "vmax_v"
    assert command.label == "set/vmax_v" and command.problem is None
    assert command_pin(command) == "1234"
    assert setting_values(command, WRITABLE) == {"vmax_v": 3.6}
    together = parse_command(
        SETTINGS,
        "site/twin/pack1/set",
        b'{"values": {"vmax_v": 3.6, "vmin_v": 2.8}, "pin": "0042"}',
    )
    assert together is not None and together.label == "set"
    assert setting_values(together, WRITABLE) == {"vmax_v": 3.6, "vmin_v": 2.8}
    assert command_pin(together) == "0042"
    fault = parse_command(SETTINGS, "site/twin/pack1/emulator/fault/break-chain", b"")
    assert fault is not None and fault.kind == "fault" and fault.payload == {}
    assert fault.label == "emulator/fault/break-chain"
    cmd = parse_command(SETTINGS, "site/twin/pack1/cmd/clear_counters", b'{"pin":"1234","id":"a"}')
    assert cmd is not None and cmd.request_id == "a"
    for topic in (
        "site/twin/pack1/state",
        "site/twin/status",
        "other/pack1/set/x",
        "site/twin/a/b/c/d/e",
    ):
        assert parse_command(SETTINGS, topic, b"{}") is None


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        (b"{nope", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b"3.6", "not a JSON object"),
        (b"{" + b" " * 5000 + b"}", "over 4096 bytes"),
    ],
)
def test_unreadable_payloads_become_a_problem_not_an_exception(
    payload: bytes, problem: str
) -> None:
    command = parse_command(SETTINGS, "site/twin/pack1/set/vmax_v", payload)
    assert command is not None and command.problem is not None and problem in command.problem


@pytest.mark.parametrize(
    ("topic", "payload", "error"),
    [
        ("set/vmax_v", {"value": "3.6"}, "vmax_v: '3.6' is not a number"),
        ("set/vmax_v", {"value": True}, "is not a number"),
        ("set/vmax_v", {"pin": "1"}, 'no "value"'),
        ("set/cell_count", {"value": 4}, "cell_count: not a writable setting"),
        ("set", {"values": {}}, '"values" is not an object'),
        ("set", {"values": {"nope": 1}}, "nope: not a writable setting"),
    ],
)
def test_bad_settings_commands_name_the_problem(
    topic: str, payload: dict[str, object], error: str
) -> None:
    command = parse_command(SETTINGS, f"site/twin/pack1/{topic}", json.dumps(payload).encode())
    assert command is not None
    with pytest.raises(ValueError, match=re.escape(error)):
        setting_values(command, WRITABLE)


@pytest.mark.parametrize(
    ("pin", "ok"),
    [("1234", True), (1234, True), (None, False), (True, False), ("12a", False), (-1, False)],
)
def test_the_pin_is_digits_as_a_string_or_a_number(pin: object, ok: bool) -> None:
    payload = {} if pin is None else {"pin": pin}
    command = parse_command(
        SETTINGS, "site/twin/p/cmd/clear_counters", json.dumps(payload).encode()
    )
    assert command is not None
    if ok:
        assert command_pin(command) == "1234"
    else:
        with pytest.raises(ValueError, match="pin"):
            command_pin(command)


def test_results_echo_the_id_and_say_why() -> None:
    command = parse_command(SETTINGS, "site/twin/p/set/vmax_v", b'{"id": 7}')
    assert command is not None
    refused = json.loads(result_payload(command, ok=False, message="wrong PIN"))
    assert refused == {"command": "set/vmax_v", "ok": False, "id": 7, "error": "wrong PIN"}
    done = json.loads(result_payload(command, ok=True, message="written", settings={"vmax_v": 3.6}))
    assert done["ok"] is True and done["message"] == "written" and done["settings"]["vmax_v"] == 3.6


def test_a_removed_units_topics() -> None:
    assert unit_of_state_topic(SETTINGS, "site/twin/old/state") == "old"
    assert unit_of_state_topic(SETTINGS, "site/twin/a/b/state") is None
    assert unit_of_state_topic(SETTINGS, "site/twin/old/soc_pct") is None
    topics = unit_topics(SETTINGS, "old", 2)
    assert "site/twin/old/state" in topics and "site/twin/old/soc_pct" in topics
    assert (
        "site/twin/old/cell/2/balancing" in topics and "site/twin/old/cell/3/temp_c" not in topics
    )
    assert "site/twin/old/settings" in topics and "site/twin/old/emulator/faults" in topics


def test_plant_commands_are_parsed_with_their_problems_named() -> None:
    settings = MqttSettings(prefix="twin")
    assert "twin/+/emulator/plant/+" in command_subscriptions(settings)
    command = parse_command(
        settings, "twin/pack1/emulator/plant/inverter_dc_a", b'{"value": -30, "timeout_s": 60}'
    )
    assert command is not None and command.kind == "plant" and command.name == "inverter_dc_a"
    assert command.label == "emulator/plant/inverter_dc_a"
    assert plant_values(command) == (-30.0, 60.0)
    clear = parse_command(settings, "twin/pack1/emulator/plant/load_w", b'{"clear": true}')
    assert clear is not None and plant_values(clear) == (None, None)
    for payload, problem in (
        (b"{}", 'no "value"'),
        (b'{"value": "a lot"}', "is not a number"),
        (b'{"value": 1, "clear": true}', "not both"),
        (b'{"value": 1, "for": 3}', "for is not value, timeout_s or clear"),
    ):
        bad = parse_command(settings, "twin/pack1/emulator/plant/load_w", payload)
        assert bad is not None
        with pytest.raises(CommandError, match=problem):
            plant_values(bad)
