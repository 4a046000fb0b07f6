"""The DBC files: strict loading, every message round-trips, the reference's golden frames."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cantools
import pytest
from cantools.database.can import Database, Message

DBC_FILES = ("inverter.dbc", "inverter_solark.dbc", "twin.dbc")


def _load(name: str) -> Database:
    path = Path(str(resources.files("twin.dbc") / name))
    database = cantools.database.load_file(path, strict=True)
    assert isinstance(database, Database)
    return database


INVERTER = _load("inverter.dbc")


@pytest.mark.parametrize("name", DBC_FILES)
def test_each_file_loads_strictly_with_both_nodes_and_cycle_times(name: str) -> None:
    database = _load(name)
    assert {node.name for node in database.nodes} == {"BMS", "INVERTER"}
    for message in database.messages:
        if message.senders == ["BMS"]:
            assert message.cycle_time, f"{message.name} has no GenMsgCycleTime"
            assert 100 <= message.cycle_time <= 5000


def _as_dict(decoded: object) -> dict[str, float]:
    """cantools types a decode as dict-or-container-list; these messages give dicts."""
    assert isinstance(decoded, dict)
    return decoded


def _values(message: Message, where: float, mux: int | None) -> dict[str, float | int]:
    """A value for every signal of ``message`` at ``where`` (0 = minimum .. 1 = maximum)."""
    values: dict[str, float | int] = {}
    for signal in message.signals:
        if signal.is_multiplexer:
            assert mux is not None
            values[signal.name] = mux
            continue
        if signal.multiplexer_ids is not None and mux not in signal.multiplexer_ids:
            continue
        lo = signal.minimum if signal.minimum is not None else 0.0
        hi = signal.maximum if signal.maximum is not None else 0.0
        raw_lo = round((lo - signal.offset) / signal.scale)
        raw_hi = round((hi - signal.offset) / signal.scale)
        raw = raw_lo + round((raw_hi - raw_lo) * where)
        value = raw * signal.scale + signal.offset
        values[signal.name] = int(value) if signal.scale == 1 and signal.offset == 0 else value
    return values


def _cases() -> list[tuple[str, Message, float, int | None]]:
    cases = []
    for name in DBC_FILES:
        for message in _load(name).messages:
            muxes: list[int | None] = [None]
            if message.is_multiplexed():
                muxes = [1, 2, 128, 255]
            for where in (0.0, 0.37, 1.0):
                for mux in muxes:
                    cases.append((name, message, where, mux))
    return cases


@pytest.mark.parametrize(
    ("name", "message", "where", "mux"),
    _cases(),
    ids=lambda v: v.name if isinstance(v, Message) else str(v),
)
def test_every_message_encodes_strictly_and_decodes_to_the_same_values(
    name: str, message: Message, where: float, mux: int | None
) -> None:
    values = _values(message, where, mux)
    data = message.encode(values, strict=True, scaling=True)
    assert len(data) == message.length
    decoded = _as_dict(message.decode(data, decode_choices=False, scaling=True))
    assert decoded.keys() == values.keys()
    for key, value in values.items():
        assert decoded[key] == pytest.approx(value, abs=1e-9), key


@pytest.mark.parametrize(
    ("frame_id", "data", "expected"),
    [
        (
            0x351,
            "28 02 F4 01 20 03 E0 01",
            {
                "ChargeVoltageLimit": 55.2,
                "ChargeCurrentLimit": 50.0,
                "DischargeCurrentLimit": 80.0,
                "DischargeVoltageLimit": 48.0,
            },
        ),
        (
            0x351,
            "48 02 00 05 00 05 AE 01",
            {
                "ChargeVoltageLimit": 58.4,
                "ChargeCurrentLimit": 128.0,
                "DischargeCurrentLimit": 128.0,
                "DischargeVoltageLimit": 43.0,
            },
        ),
        (
            0x356,
            "6C 14 04 00 DC 00",
            {"BatteryVoltage": 52.28, "BatteryCurrent": 0.4, "BatteryTemperature": 22.0},
        ),
        (
            0x356,
            "BE 14 F9 FF 8C 00",
            {"BatteryVoltage": 53.10, "BatteryCurrent": -0.7, "BatteryTemperature": 14.0},
        ),
        (
            0x356,
            "6C 14 9C FF 38 FF",
            {"BatteryVoltage": 52.28, "BatteryCurrent": -10.0, "BatteryTemperature": -20.0},
        ),
        (0x355, "3C 00 64 00", {"StateOfCharge": 60, "StateOfHealth": 100}),
        (0x359, "00 00 00 00 01 50 4E", {"ModuleCount": 1, "ProtocolChar0": 0x50}),
        (0x35C, "C0 00", {"ChargeEnable": 1, "DischargeEnable": 1, "RequestForceChargeI": 0}),
        (0x35A, "AA AA AA AA AA AA AA AA", {"AlarmGeneral": 2, "WarningCellImbalance": 2}),
    ],
)
def test_golden_frames_decode_to_the_reference_values(
    frame_id: int, data: str, expected: dict[str, float]
) -> None:
    decoded = _as_dict(
        INVERTER.decode_message(
            frame_id, bytes.fromhex(data), decode_choices=False, allow_truncated=True
        )
    )
    for key, value in expected.items():
        assert decoded[key] == pytest.approx(value), key


def test_the_solark_variant_carries_the_voltage_in_tenths() -> None:
    solark = _load("inverter_solark.dbc")
    data = solark.encode_message(
        0x356, {"BatteryVoltage": 52.3, "BatteryCurrent": -5.0, "BatteryTemperature": 21.0}
    )
    assert data[:2] == (523).to_bytes(2, "little")
    assert len(data) == 8  # Sol-Ark recognises 8-byte frames only


def test_the_native_cell_frame_is_multiplexed_by_cell_index() -> None:
    twin = _load("twin.dbc")
    cells = twin.get_message_by_name("TwinCells")
    data = cells.encode(
        {"CellIndex": 255, "Cell255Voltage": 3.312, "Cell255Temperature": -4.5, "Cell255Flags": 3}
    )
    assert data[0] == 255
    decoded = _as_dict(cells.decode(data))
    assert decoded["Cell255Voltage"] == pytest.approx(3.312)
    assert decoded["Cell255Temperature"] == pytest.approx(-4.5)
