"""What MQTT publishes: the state JSON, per-cell values, deadbands, Home Assistant discovery."""

from __future__ import annotations

import json

from tests.factories import lfp_settings
from tests.frames import frame_stream, sample_frame
from twin.exporters.mqtt_map import (
    ENTITIES,
    cell_values,
    changed,
    discovery_configs,
    fleet_state,
    pack_state,
    removal_topics,
)
from twin.protocol.frame import encode_frame
from twin.protocol.shadow import PackShadow, TwinState, fleet_view

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
    payload = pack_state(state)
    text = json.dumps(payload)
    assert json.loads(text) == payload
    assert payload["pack_voltage_v"] == 53.095
    assert payload["battery_current_a"] == 10.5
    assert payload["charge_effective"] is True and payload["stale"] is False
    assert payload["cell_count"] == 16
    assert all(
        key.endswith(("_v", "_a", "_w", "_wh", "_pct", "_c", "_s"))
        for key, value in payload.items()
        if isinstance(value, float)
    )


def test_stale_data_shows_in_the_state_not_as_a_silent_freeze() -> None:
    shadow, _ = _state()
    stale = shadow.tick(60.0, DAY)
    assert stale is not None
    payload = pack_state(stale)
    assert payload["stale"] is True and payload["warning_e"] is True
    assert payload["pack_voltage_v"] is None  # not available: null, never the last value
    assert payload["charge_effective"] is False
    assert payload["charge_current_limit_a"] == 0.0
    assert all(c["voltage_v"] is None for c in cell_values(stale))
    assert pack_state(None) == {"stale": True, "comm_error": True}


def test_cells_and_the_fleet() -> None:
    _, state = _state()
    cells = cell_values(state)
    assert len(cells) == 16 and cells[0]["voltage_v"] == 3.3
    fleet = fleet_state(fleet_view({"pack1": state}, ("pack1",)))
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
    assert len(configs) == len(ENTITIES) + 2
    # Every config names a key the state JSON has.
    _, state = _state()
    payload = pack_state(state)
    for entity in ENTITIES:
        assert entity.key in payload


def test_the_fleet_device_leaves_out_pack_only_entities_and_removal_clears_all() -> None:
    configs = discovery_configs("fleet", "twin/fleet", "twin/status", fleet=True)
    assert not any("min_cell_voltage" in topic for topic in configs)
    assert any("soc_pct" in topic for topic in configs)
    assert removal_topics(configs) == sorted(configs)
    payload = fleet_state(fleet_view({}, ("pack1",)))
    assert payload == {
        "stale": True,
        "complete": False,
        "charge_effective": False,
        "discharge_effective": False,
    }


def test_a_frame_with_currents_not_available_publishes_null() -> None:
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    shadow.feed(encode_frame(sample_frame(current2_a=None)), 0.0, DAY)
    state = shadow.feed(encode_frame(sample_frame(current2_a=None)), 1.0, DAY)
    assert state is not None
    assert pack_state(state)["current2_a"] is None
