"""Inverter CAN profiles: frame sets, DLCs, quirks, fail-safe values, strict encoding."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import cantools
import pytest
from cantools.database.can import Database

from tests.factories import fleet_sample, lfp_settings, readouts
from tests.frames import sample_frame
from twin.exporters.can_map import (
    PROFILES,
    CanSettings,
    PlantCommand,
    Profile,
    ResolvedProfile,
    decode_plant_command,
    encode_frames,
    inverter_values,
    resolve_profile,
)
from twin.model.limits import LimitFlag
from twin.protocol.frame import encode_frame
from twin.protocol.readout import FleetReadout
from twin.protocol.shadow import PackShadow


def _db(name: str) -> Database:
    database = cantools.database.load_file(
        Path(str(resources.files("twin.dbc") / name)), strict=True
    )
    assert isinstance(database, Database)
    return database


INVERTER, SOLARK = _db("inverter.dbc"), _db("inverter_solark.dbc")


_RENAMED = {
    "cvl_v": "charge_voltage_limit_v",
    "ccl_a": "charge_current_limit_a",
    "dcl_a": "discharge_current_limit_a",
    "dvl_v": "discharge_voltage_limit_v",
    "voltage_v": "pack_voltage_v",
    "current_a": "battery_current_a",
    "temperature_c": "avg_temp_c",
}


def _view(**changes: object) -> FleetReadout:
    """The sample fleet (old InverterView names renamed to the readout's)."""
    return fleet_sample(**{_RENAMED.get(k, k): v for k, v in changes.items()})


def _profile(profile: Profile, **settings: object) -> ResolvedProfile:
    return resolve_profile(CanSettings(profile=profile, **settings), INVERTER, SOLARK)  # type: ignore[arg-type]


def _frames(view: FleetReadout, profile: Profile) -> dict[int, bytes]:
    resolved = _profile(profile)
    return dict(encode_frames(resolved, inverter_values(view, resolved)))


@pytest.mark.parametrize("profile", list(Profile))
def test_each_profile_sends_its_frames_and_they_decode_back(profile: Profile) -> None:
    frames = _frames(_view(), profile)
    assert tuple(frames) == PROFILES[profile].frames
    for frame_id, data in frames.items():
        database = SOLARK if profile is Profile.SOLARK and frame_id == 0x356 else INVERTER
        decoded = database.decode_message(frame_id, data, allow_truncated=True)
        assert isinstance(decoded, dict) and decoded


def test_the_reference_limits_frame_is_reproduced_byte_for_byte() -> None:
    frames = _frames(_view(), Profile.PYLON)
    assert frames[0x351] == bytes.fromhex("28 02 F4 01 20 03 E0 01")
    assert frames[0x356] == bytes.fromhex("6C 14 04 00 DC 00")
    assert frames[0x355] == bytes.fromhex("3C 00 64 00")


def test_pylon_sends_real_pack_dlcs_the_name_pn_and_the_enables() -> None:
    frames = _frames(_view(), Profile.PYLON)
    assert {k: len(v) for k, v in frames.items()} == {
        0x351: 8, 0x355: 4, 0x356: 6, 0x359: 7, 0x35C: 2, 0x35E: 8,
    }  # fmt: skip
    assert frames[0x35E] == b"PYLON   "
    assert frames[0x359][4:7] == bytes([1, ord("P"), ord("N")])
    assert frames[0x35C] == bytes([0xC0, 0x00])
    alarm = _frames(_view(alarms=LimitFlag.CELL_OVER_VOLTAGE), Profile.PYLON)
    assert alarm[0x359][0] == 0b10  # byte 0 bit 1: over-voltage protection


def test_victron_stops_charging_with_cvl_at_the_pack_voltage_never_zero() -> None:
    victron = _profile(Profile.VICTRON)
    values = inverter_values(_view(ccl_a=0.0, voltage_v=53.4), victron)
    assert values[0x351]["ChargeVoltageLimit"] == pytest.approx(53.4)
    assert values[0x351]["ChargeCurrentLimit"] == 0.0
    floor = inverter_values(_view(cvl_v=0.0, ccl_a=0.0, voltage_v=None), victron)
    limit = floor[0x351]["ChargeVoltageLimit"]
    assert limit is not None and limit > 0


def test_victron_and_sma_pairs_say_ok_for_supported_events_not_zero() -> None:
    frames = _frames(_view(), Profile.VICTRON)
    decoded = INVERTER.decode_message(0x35A, frames[0x35A], decode_choices=False)
    assert isinstance(decoded, dict)
    assert decoded["AlarmHighVoltage"] == 2 and decoded["WarningCellImbalance"] == 2
    assert decoded["AlarmContactor"] == 0  # the twin cannot know: "not supported"
    raised = _frames(_view(alarms=LimitFlag.OVER_TEMPERATURE), Profile.SMA)
    decoded = INVERTER.decode_message(0x35A, raised[0x35A], decode_choices=False)
    assert isinstance(decoded, dict) and decoded["AlarmHighTemperature"] == 1


def test_sma_marks_what_the_twin_does_not_know_invalid() -> None:
    frames = _frames(_view(voltage_v=None, current_a=None, temperature_c=None), Profile.SMA)
    assert frames[0x356][:6] == bytes([0x00, 0x80, 0x00, 0x80, 0x00, 0x80])  # 0x8000 x3
    assert len(frames[0x356]) == 6
    assert frames[0x355][4:6] == (6000).to_bytes(2, "little")  # the high-resolution SOC
    assert frames[0x35E] == b"SMA\0\0\0\0\0"


def test_solark_sends_the_voltage_in_tenths_in_eight_byte_frames() -> None:
    frames = _frames(_view(), Profile.SOLARK)
    assert all(len(data) == 8 for data in frames.values())
    assert frames[0x356][:2] == (523).to_bytes(2, "little")
    assert frames[0x379][:2] == (280).to_bytes(2, "little")


def test_a_stale_fleet_sends_fail_safe_limits_and_the_communication_alarm() -> None:
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    shadow.feed(encode_frame(sample_frame()), 0.0, 740_000)
    fresh = shadow.feed(encode_frame(sample_frame()), 1.0, 740_000)
    assert fresh is not None
    _, view = readouts({"pack1": fresh})
    assert view.charge_current_limit_a and not view.stale
    stale = shadow.tick(30.0, 740_000)
    assert stale is not None
    _, safe = readouts({"pack1": stale})
    assert safe.stale and not safe.complete
    assert safe.charge_current_limit_a == 0.0 and safe.discharge_current_limit_a == 0.0
    assert safe.alarms is not None and safe.alarms & LimitFlag.COMMUNICATION
    assert not safe.charge_effective and not safe.discharge_effective
    frames = _frames(safe, Profile.PYLON)
    assert frames[0x351][2:6] == bytes(4)  # CCL = DCL = 0
    assert frames[0x35C][0] & 0xC0 == 0  # charge and discharge enable off


def test_no_frames_before_any_pack_has_a_state() -> None:
    _, fleet = readouts({}, ("pack1",))
    assert inverter_values(fleet, _profile(Profile.PYLON)) == {}


def test_a_value_the_frame_cannot_carry_is_not_available_not_a_crash() -> None:
    # A 255-cell pack: 833 V does not fit 0x356's 0.01 V field (at most 327.67 V).
    problems: list[str] = []
    sma = _profile(Profile.SMA)
    values = inverter_values(_view(voltage_v=833.59, cvl_v=879.0, dvl_v=765.0), sma)
    frames = dict(encode_frames(sma, values, problems))
    assert frames[0x356][:2] == bytes([0x00, 0x80])  # SMA "invalid", not a wrapped value
    assert problems == ["BatteryMeasurements.BatteryVoltage = 833.59"]
    decoded = INVERTER.decode_message(0x351, frames[0x351])
    assert isinstance(decoded, dict) and decoded["ChargeVoltageLimit"] == pytest.approx(879.0)


def _stale_view() -> FleetReadout:
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    shadow.feed(encode_frame(sample_frame()), 0.0, 740_000)
    stale = shadow.tick(30.0, 740_000)
    assert stale is not None
    _, view = readouts({"pack1": stale})
    assert view.stale
    return view


@pytest.mark.parametrize("profile", list(Profile))
def test_stale_measurements_are_never_sent_as_zero(profile: Profile) -> None:
    # 0x356 used to go out as 00 00 00 00 00 00 while stale: 0 V, 0 A and a plausible 0.0 C.
    frames = _frames(_stale_view(), profile)
    if PROFILES[profile].sma_invalid:
        # SMA has "invalid" values: the frame goes on, each field invalid (0x8000, signed).
        assert frames[0x356][:6] == bytes([0x00, 0x80] * 3)
    else:
        # The LV family has none: the measurement frames wait for fresh data.
        assert 0x356 not in frames
        assert not set(PROFILES[profile].withheld_when_stale) & set(frames)
    # The fail-safe frames keep going: limits 0 and the enables off.
    assert frames[0x351][2:6] == bytes(4)
    assert 0x35C not in PROFILES[profile].frames or frames[0x35C][0] & 0xC0 == 0


@pytest.mark.parametrize("profile", list(Profile))
def test_a_chain_loss_raises_a_protection_or_alarm_bit_on_every_profile(profile: Profile) -> None:
    frames = _frames(_stale_view(), profile)
    if 0x359 in frames:
        decoded = INVERTER.decode_message(
            0x359, frames[0x359].ljust(8, b"\0"), decode_choices=False
        )
        assert isinstance(decoded, dict)
        assert decoded["ProtectSystemError"] == 1  # a protection, not only a warning
        assert decoded["WarnInternalCommunication"] == 1
    if 0x35A in frames:
        decoded = INVERTER.decode_message(0x35A, frames[0x35A], decode_choices=False)
        assert isinstance(decoded, dict) and decoded["AlarmGeneral"] == 1  # raised
    assert 0x359 in frames or 0x35A in frames


def test_a_plant_command_frame_decodes_to_its_setpoint() -> None:
    twin = _db("twin.dbc")
    message = twin.get_message_by_name("TwinPlantCommand")

    def frame(**values: float) -> bytes:
        fields: dict[str, float] = {"Setpoint": 0, "Value": 0, "TimeoutS": 0, "Clear": 0}
        return bytes(message.encode(fields | values))

    assert decode_plant_command(twin, frame(Setpoint=2, Value=-1500.5, TimeoutS=60)) == (
        PlantCommand("inverter_ac_w", -1500.5, 60.0)
    )
    assert decode_plant_command(twin, frame(Setpoint=4, Value=40)) == PlantCommand(
        "solar_limit_pct", 40.0, None
    )
    assert decode_plant_command(twin, frame(Setpoint=4, Clear=1)).value is None
    assert decode_plant_command(twin, frame()) == PlantCommand(None, None, None)
    with pytest.raises(ValueError, match="setpoint code 9"):
        decode_plant_command(twin, b"\x09" + bytes(7))
    with pytest.raises(ValueError, match="2 bytes, not 8"):
        decode_plant_command(twin, b"\x01\x02")
