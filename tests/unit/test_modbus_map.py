"""The Modbus maps as data: SunSpec conformance, encoding, sentinels, writes, stale data."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

from tests.factories import lfp_settings, readouts
from tests.frames import sample_frame
from twin.config import load_register_maps
from twin.errors import WriteError
from twin.exporters.modbus_map import (
    VALUE_KEYS,
    RegType,
    UnitInfo,
    UnitLayout,
    decode_write,
    encode_into,
    encode_string,
    fleet_values,
    pack_values,
    unit_layout,
)
from twin.model.status import StatusFlag
from twin.protocol.frame import encode_frame
from twin.protocol.readout import pack_readout
from twin.protocol.shadow import PackShadow, TwinState

MAPS = load_register_maps()
INFO = UnitInfo(1, "pack1", version="0.1.0")
DAY = 740_000


def _sunspec_json(model_id: int) -> dict[str, object]:
    path = resources.files("sunspec2") / "models" / "json" / f"model_{model_id}.json"
    data = json.loads(Path(str(path)).read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("model", MAPS.sunspec.models, ids=lambda m: str(m.model_id))
def test_each_sunspec_model_matches_the_sunspec_definition(model: object) -> None:
    from twin.exporters.modbus_map import SunSpecModel

    assert isinstance(model, SunSpecModel)
    group = _sunspec_json(model.model_id)["group"]
    assert isinstance(group, dict)
    expected = [(p["name"], p["type"], p["size"]) for p in group["points"]][2:]  # ID, L
    assert [(p.name, p.type.value, p.size) for p in model.points] == expected
    groups = group.get("groups", [])
    assert [(p.name, p.type.value, p.size) for p in model.group] == (
        [(p["name"], p["type"], p["size"]) for p in groups[0]["points"]] if groups else []
    )


def test_the_sunspec_chain_is_where_clients_look() -> None:
    layout = unit_layout(MAPS, 16, fleet=False)
    image = [0] * layout.end
    encode_into(image, layout, pack_values(None, INFO))
    assert image[40000:40002] == [0x5375, 0x6E53]  # "SunS"
    assert image[40002:40004] == [1, 66]
    assert image[40070:40072] == [802, 62]
    assert image[40134:40136] == [805, 42 + 4 * 16]
    assert image[40242:40244] == [0xFFFF, 0]
    fleet = unit_layout(MAPS, 0, fleet=True)
    image = [0] * fleet.end
    encode_into(image, fleet, fleet_values(readouts({}, ("a",))[1], INFO))
    assert image[40134:40136] == [0xFFFF, 0]  # no 805 on the fleet unit


def _state(**changes: object) -> TwinState:
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    state = None
    for n in range(3):
        state = shadow.feed(encode_frame(sample_frame(**changes)), float(n), DAY)
    assert state is not None
    return state


def _image(layout: UnitLayout, values: dict[str, object]) -> list[int]:
    image = [0] * layout.end
    encode_into(image, layout, values)
    return image


def test_a_pack_reads_its_values_scaled_and_high_word_first() -> None:
    layout = unit_layout(MAPS, 16, fleet=False)
    image = _image(layout, pack_values(pack_readout(_state()), INFO))
    assert image[100:102] == [0, 53_200]  # 53.200 V in mV
    assert image[102:104] == [0, 1050]  # +10.5 A in 0.01 A
    assert image[110] == 500  # the twin's own SOC (it starts at 50 %), x 10
    assert image[120:126] == [1, 1, 1, 1, 1, 1]
    assert image[150:154] == [3310, 7, 3340, 12]
    assert image[130] == 0 and image[140] == 0
    assert image[2:4] == encode_string("pack1", 2)
    assert image[40070 + 11] != 0xFFFF  # 802 SoC


def test_negative_values_are_twos_complement() -> None:
    layout = unit_layout(MAPS, 16, fleet=False)
    image = _image(
        layout,
        pack_values(
            pack_readout(_state(current1_a=0.0, current2_a=20.0, battery_current_a=-20.0)), INFO
        ),
    )
    assert image[102:104] == [0xFFFF, 0x10000 - 2000]


def test_not_available_is_the_sentinel_never_zero() -> None:
    layout = unit_layout(MAPS, 16, fleet=False)
    image = _image(layout, pack_values(None, INFO))
    assert image[100:102] == [0xFFFF, 0xFFFF]  # uint32
    assert image[102:104] == [0x8000, 0x0000]  # int32
    assert image[110] == 0xFFFF  # uint16
    assert image[155] == 0x8000  # int16
    assert image[140] == 2  # comm state: no frame yet
    assert image[1000] == 0xFFFF  # cell 1 unknown
    assert image[13:17] == [0, 0, 0, 0]  # firmware string unknown


def test_a_value_out_of_range_reads_not_available() -> None:
    layout = unit_layout(MAPS, 16, fleet=False)
    values = dict(pack_values(pack_readout(_state()), INFO))
    values["soc_pct"] = 7000.0  # x10 does not fit 16 bits
    image = _image(layout, values)
    assert image[110] == 0xFFFF


def test_stale_data_reads_not_available_with_e_and_the_relays_off() -> None:
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    shadow.feed(encode_frame(sample_frame()), 0.0, DAY)
    state = shadow.tick(20.0, DAY)
    assert state is not None and state.stale
    layout = unit_layout(MAPS, 16, fleet=False)
    image = _image(layout, pack_values(pack_readout(state), INFO))
    assert image[100:102] == [0xFFFF, 0xFFFF]
    assert image[124:126] == [0, 0]
    assert image[130] & 1 and image[130] & (1 << 9) and image[131] == 1
    assert image[140] == 1
    assert image[137] & (1 << 4)  # communication alarm
    assert image[162:166] == [0, 0, 0, 0]  # CCL = DCL = 0
    assert image[1000] == 0xFFFF and image[1002] & 2  # cell voltage n/a, flagged stale
    evt1 = (image[40070 + 26] << 16) | image[40070 + 27]
    assert evt1 & 1  # COMMUNICATION_ERROR
    assert image[40070 + 22] == 99  # State FAULT


def test_every_value_a_unit_fills_in_is_a_known_key() -> None:
    for values in (
        pack_values(pack_readout(_state(status=StatusFlag.DISCHARGE_ALLOWED)), INFO),
        fleet_values(readouts({"pack1": _state()})[1], INFO),
    ):
        cells = values.pop("cells")
        assert set(values) <= VALUE_KEYS
        for cell in cells:
            assert set(cell) <= VALUE_KEYS


def test_writes_decode_whole_writable_registers_only() -> None:
    layout = unit_layout(MAPS, 16, fleet=False)
    assert decode_write(layout, 201, [3650]) == {"setting.vmax_v": 3.65}
    assert decode_write(layout, 202, [0xFFFF - 49]) == {"setting.tmin_c": -5.0}
    assert decode_write(layout, 206, [0, 12000]) == {"setting.capacity_wh": 12000.0}
    assert decode_write(layout, 220, [0, 4321]) == {"unlock": 4321.0}
    with pytest.raises(WriteError, match="all 2 registers"):
        decode_write(layout, 207, [5])
    with pytest.raises(WriteError, match="read-only"):
        decode_write(layout, 205, [10, 0, 12000, 3400])  # 205..208: 208 is V-balance
    with pytest.raises(WriteError, match="not available"):
        decode_write(layout, 201, [0xFFFF])


def test_a_write_to_the_fleet_unit_settings_is_not_a_setting() -> None:
    layout = unit_layout(MAPS, 0, fleet=True)
    values = fleet_values(readouts({}, ("p",))[1], INFO)
    image = _image(layout, values)
    assert image[200] == 0xFFFF  # pack-only rows read n/a on the fleet unit
    assert image[1] == 2


def test_string_encoding_is_two_characters_per_register_nul_padded() -> None:
    assert encode_string("SunS", 2) == [0x5375, 0x6E53]
    assert encode_string("abc", 3) == [0x6162, 0x6300, 0]
    assert encode_string("toolongtext", 2) == [0x746F, 0x6F6C]


def test_register_types_of_the_maps_are_known() -> None:
    layout = unit_layout(MAPS, 255, fleet=False)
    assert {s.register.type for s in layout.slots} <= set(RegType)
    assert layout.end <= 65536
