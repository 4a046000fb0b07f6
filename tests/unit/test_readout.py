"""The readout every exporter publishes: one derivation, one vocabulary, one stale rule."""

from __future__ import annotations

import dataclasses
import re
from importlib import resources
from pathlib import Path

import cantools
import pytest
from cantools.database.can import Database

from tests.factories import lfp_settings, readouts
from tests.frames import frame_stream, sample_frame
from twin.config import load_register_maps
from twin.emulator.plant import PLANT_SETPOINTS
from twin.exporters import can_map, modbus_map, mqtt_map
from twin.exporters.can_map import CanSettings, Profile, encode_frames, inverter_values
from twin.exporters.modbus_map import UnitInfo, encode_into, pack_values, unit_layout
from twin.model.settings import CHEMISTRY_THRESHOLDS, BmsSettings, Chemistry
from twin.protocol.frame import encode_frame
from twin.protocol.readout import (
    PLANT_FIELDS,
    CellReadout,
    FleetReadout,
    PackReadout,
    pack_readout,
)
from twin.protocol.shadow import PackShadow, TwinState

DAY = 740_000
MAPS = load_register_maps()
PACK_FIELDS = {f.name for f in dataclasses.fields(PackReadout)}
FLEET_FIELDS = {f.name for f in dataclasses.fields(FleetReadout)}
CELL_FIELDS = {f.name for f in dataclasses.fields(CellReadout)}


def _db(name: str) -> Database:
    path = Path(str(resources.files("twin.dbc") / name))
    database = cantools.database.load_file(path, strict=True)
    assert isinstance(database, Database)
    return database


def _pack(chemistry: Chemistry, cells: int, capacity_wh: float) -> TwinState:
    t = CHEMISTRY_THRESHOLDS[chemistry]
    settings = BmsSettings(
        cell_count=cells,
        vmin_v=t.vmin_v,
        vbalance_v=t.vbalance_v,
        vmax_v=t.vmax_v,
        vnominal_v=t.vnominal_v,
        capacity_wh=capacity_wh,
    )
    shadow = PackShadow("pack1", settings)
    state = None
    for n, wire in enumerate(frame_stream(4, cells=cells)):
        state = shadow.feed(wire, float(n), DAY) or state
    assert state is not None and state.logic is not None
    return state


@pytest.mark.parametrize(
    ("chemistry", "cells", "capacity_wh", "expected_ah"),
    [
        (Chemistry.LIFEPO4, 16, 14_336.0, 280.0),  # 16 x 3.2 V x 280 Ah
        (Chemistry.NMC, 14, 10_000.0, 193.0),  # 10 kWh / (14 x 3.7 V) = 193.05 Ah
        (Chemistry.LTO, 7, 3_220.0, 200.0),  # 7 x 2.3 V x 200 Ah
    ],
)
def test_the_same_pack_reads_the_same_ah_on_modbus_can_and_mqtt(
    chemistry: Chemistry, cells: int, capacity_wh: float, expected_ah: float
) -> None:
    # A 14S NMC 10 kWh pack read 193 Ah on Modbus and 223 Ah on CAN (3.2 V per cell assumed).
    state = _pack(chemistry, cells, capacity_wh)
    packs, fleet = readouts({"pack1": state})
    # Modbus: SunSpec 802 AHRtg with its scale factor.
    layout = unit_layout(MAPS, cells, fleet=False)
    image = [0] * layout.end
    encode_into(image, layout, pack_values(packs["pack1"], UnitInfo(1, "pack1")))
    by_name = {s.register.name: s.address for s in layout.slots if s.cell is None}
    sf = image[by_name["AHRtg_SF"]]
    sf = sf - 0x10000 if sf >= 0x8000 else sf
    modbus_ah = image[by_name["AHRtg"]] * 10.0**sf
    # CAN: Victron's 0x35F CapacityAh and 0x379 InstalledCapacityAh (whole Ah).
    inverter = _db("inverter.dbc")
    profile = can_map.resolve_profile(CanSettings(profile=Profile.VICTRON), inverter)
    frames = dict(encode_frames(profile, inverter_values(fleet, profile)))
    info = inverter.decode_message(0x35F, frames[0x35F])
    installed = inverter.decode_message(0x379, frames[0x379])
    assert isinstance(info, dict) and isinstance(installed, dict)
    # MQTT: the state JSON.
    mqtt_ah = mqtt_map.pack_state(packs["pack1"])["capacity_ah"]
    assert isinstance(mqtt_ah, float)
    assert (
        round(modbus_ah) == round(mqtt_ah) == info["CapacityAh"] == installed["InstalledCapacityAh"]
    )
    assert round(mqtt_ah) == expected_ah
    assert mqtt_map.fleet_state(fleet)["capacity_ah"] == mqtt_ah


def test_stale_data_is_not_available_in_the_readout_never_a_last_value() -> None:
    state = _pack(Chemistry.LIFEPO4, 16, 14_336.0)
    shadow = PackShadow("pack1", state.settings)
    for n, wire in enumerate(frame_stream(4)):
        shadow.feed(wire, float(n), DAY)
    stale = shadow.tick(60.0, DAY)
    assert stale is not None and stale.stale
    packs, fleet = readouts({"pack1": stale})
    pack = packs["pack1"]
    measured = (
        "pack_voltage_v", "battery_current_a", "current1_a", "current2_a", "battery_power_w",
        "charge_state", "min_cell_voltage_v", "min_cell_index", "max_cell_voltage_v",
        "max_cell_index", "cell_spread_v", "avg_cell_voltage_v", "min_temp_c", "min_temp_index",
        "max_temp_c", "max_temp_index", "avg_temp_c", "balancing_cells",
    )  # fmt: skip
    assert all(getattr(pack, name) is None for name in measured)
    assert all(getattr(fleet, name) is None for name in measured if name != "balancing_cells")
    assert all(c.voltage_v is None and c.temp_c is None and c.stale for c in pack.cells)
    # The twin's own counts stay; the fail-safe values are set.
    assert pack.soc_pct is not None and pack.capacity_ah == pytest.approx(280.0)
    assert pack.warning_e and fleet.warning_e
    assert pack.charge_current_limit_a == 0.0 and fleet.discharge_current_limit_a == 0.0
    assert not pack.charge_effective and not fleet.discharge_effective


def test_a_fleet_of_two_packs_sums_each_packs_own_ah() -> None:
    lfp = dataclasses.replace(_pack(Chemistry.LIFEPO4, 16, 14_336.0), pack_id="a")
    nmc = dataclasses.replace(_pack(Chemistry.NMC, 14, 10_000.0), pack_id="b")
    packs, fleet = readouts({"a": lfp, "b": nmc})
    assert fleet.capacity_ah == pytest.approx(packs["a"].capacity_ah + packs["b"].capacity_ah)
    assert packs["b"].capacity_ah == pytest.approx(10_000.0 / (14 * 3.7))


# ---- one vocabulary ----------------------------------------------------------------------

#: Register names that differ from their field's name on purpose (docs/vocabulary.md).
REGISTER_NAME_EXCEPTIONS = {
    "capacity_setting": "the writable capacity: register 114 `capacity` reads it back",
    "requests": "force / full charge requests as bits: an encoding",
}
UNIT_SUFFIXES = ("_v", "_a", "_ah", "_w", "_wh", "_pct", "_s", "_c")


def _strip_unit(field: str) -> str:
    for suffix in UNIT_SUFFIXES:
        if field.endswith(suffix):
            return field.removesuffix(suffix)
    return field


def test_every_native_register_is_a_readout_field_under_its_own_name() -> None:
    fields = PACK_FIELDS | FLEET_FIELDS
    for group in MAPS.native.groups:
        for reg in group.registers:
            key = reg.value
            assert key is not None
            if key in modbus_map.ENCODING_KEYS:
                continue
            if key.startswith("plant."):
                # An emulated pack's plant setpoint (docs/testbench.md), not a BMS value.
                name = key.removeprefix("plant.")
                assert name in (*PLANT_SETPOINTS, "timeout_s", "clear"), key
                assert reg.name == "plant_" + _strip_unit(name), f"register {reg.name}"
                continue
            field = key.removeprefix("setting.")
            assert field in fields, f"register {reg.name}: {key} is not a readout field"
            if reg.name not in REGISTER_NAME_EXCEPTIONS:
                assert reg.name == _strip_unit(field), f"register {reg.name} holds {field}"
    for reg in MAPS.native.cells.registers:
        assert reg.value is not None
        if reg.value in modbus_map.ENCODING_KEYS:
            continue
        field = reg.value.removeprefix("cell.")
        assert field in CELL_FIELDS
        assert reg.name == "cell_" + _strip_unit(field)


def test_every_sunspec_point_is_a_readout_field_or_an_encoding() -> None:
    fields = PACK_FIELDS | FLEET_FIELDS | {f"cell.{name}" for name in CELL_FIELDS}
    for model in MAPS.sunspec.models:
        for point in (*model.points, *model.group):
            if point.value is not None:
                assert point.value in fields or point.value in modbus_map.ENCODING_KEYS, (
                    f"{model.model_id} {point.name}: {point.value}"
                )


def test_every_mqtt_key_is_a_readout_field_or_a_documented_alias() -> None:
    docs = (Path(__file__).parents[2] / "docs" / "vocabulary.md").read_text(encoding="utf-8")
    for key in mqtt_map.PACK_KEYS:
        assert key in PACK_FIELDS or key in mqtt_map.ALIASES, key
    for key in mqtt_map.FLEET_KEYS:
        assert key in FLEET_FIELDS or key in mqtt_map.ALIASES, key
    for old, new in mqtt_map.ALIASES.items():
        assert new in PACK_FIELDS
        assert f"`{old}`" in docs and f"`{new}`" in docs, f"alias {old} not documented"
    for key in mqtt_map.CELL_KEYS:
        assert key in CELL_FIELDS
    for entity in mqtt_map.ENTITIES:
        assert entity.key in PACK_FIELDS


def test_every_native_can_signal_maps_to_a_readout_field() -> None:
    database = _db("twin.dbc")
    for message in database.messages:
        if message.senders != ["BMS"]:
            continue  # a frame to the twin (the plant command), not a published value
        names = {s.name for s in message.signals}
        if message.name == "TwinCells":
            for name in names - {"CellIndex"}:
                suffix = re.sub(r"^Cell\d+", "", name)
                field = can_map.NATIVE_CELL_SIGNALS[suffix]
                assert field in CELL_FIELDS or field == "flags", name
            continue
        table = can_map.NATIVE_SIGNALS[message.name]
        encodings = {"SetMask"} if message.name == "TwinPlantSetpoints" else set()
        assert set(table) | encodings == names, message.name
        for signal, field in table.items():
            assert field in PACK_FIELDS, f"{message.name}.{signal}: {field}"


def test_no_map_derives_what_the_readout_holds() -> None:
    # The maps read the readout, never the state behind it.
    for module in (modbus_map, mqtt_map, can_map):
        text = Path(str(module.__file__)).read_text(encoding="utf-8")
        for name in ("TwinState", "FleetView", ".logic", ".observation", "nominal_cell_v"):
            assert name not in text, f"{module.__name__} uses {name}"


def test_the_readout_is_frozen() -> None:
    pack = pack_readout(_pack(Chemistry.LIFEPO4, 16, 14_336.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        pack.soc_pct = 1.0  # type: ignore[misc]


def test_the_modbus_plant_block_names_the_plants_setpoints() -> None:
    assert set(modbus_map.PLANT_SETPOINT_NAMES) == set(PLANT_SETPOINTS)
    assert set(PLANT_FIELDS) == set(PLANT_SETPOINTS)
    for field in PLANT_FIELDS.values():
        assert field in PACK_FIELDS


def test_the_plant_setpoints_in_effect_are_in_the_readout_and_the_native_frame() -> None:
    state = _pack(Chemistry.LIFEPO4, 16, 14_336.0)
    plain = pack_readout(state)
    assert plain.plant_inverter_dc_a is None
    readout = pack_readout(state, {"inverter_dc_a": -30.0, "solar_limit_pct": 50.0})
    assert readout.plant_inverter_dc_a == -30.0
    assert readout.plant_solar_limit_pct == 50.0
    assert readout.plant_load_w is None
    assert mqtt_map.plant_state(readout) == {"inverter_dc_a": -30.0, "solar_limit_pct": 50.0}
    frame = can_map.native_values(readout)["TwinPlantSetpoints"]
    assert frame == {
        "InverterDc": -30.0,
        "InverterAc": 0.0,
        "Load": 0.0,
        "SolarLimit": 50.0,
        "MainsCharger": 0.0,
        "SetMask": float(0b01001),
    }
    _, data = can_map.encode_native(_db("twin.dbc"), "TwinPlantSetpoints", frame, 0x706)
    assert data == bytes.fromhex("d4fe000000003209")  # -300 x 0.1 A, 50 %, bits 0 and 3


def test_the_rows_that_hold_a_relay_off_are_in_the_readout() -> None:
    from twin.model.relays import Condition, condition_names

    assert condition_names(Condition.CELL_AT_VMAX | Condition.CELLS_NOT_BELOW_VMAX) == (
        "CELL_AT_VMAX",
        "CELLS_NOT_BELOW_VMAX",
    )
    assert condition_names(Condition.NONE) == ()
    readout = pack_readout(_pack(Chemistry.LIFEPO4, 16, 14_336.0))
    assert readout.charge_twin is True
    assert readout.charge_blocking == ()
    # A cell above V-max: the twin opens the charge relay, and says why.
    shadow = PackShadow("pack1", lfp_settings())
    state = shadow.feed(encode_frame(sample_frame(max_cell_voltage_v=3.75)), 0.0, DAY)
    assert state is not None
    high = pack_readout(state)
    assert high.charge_twin is False
    assert "CELL_AT_VMAX" in high.charge_blocking
    assert high.discharge_blocking == ()
