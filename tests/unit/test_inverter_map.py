"""The virtual inverter's pure side: its decisions, its conformance check, its own frames."""

from __future__ import annotations

import pytest

from tests.factories import fleet_sample
from twin.cli import INVERTER_PROFILES, main
from twin.exporters.can_map import (
    CanSettings,
    PlantCommand,
    Profile,
    ResolvedProfile,
    decode_plant_command,
    encode_frames,
    encode_plant_command,
    inverter_values,
    resolve_profile,
)
from twin.exporters.canbus import load_dbc
from twin.exporters.inverter_map import (
    VICTRON_307,
    BmsHeard,
    Conformance,
    InverterSettings,
    decide,
    heartbeat_frames,
)
from twin.model.limits import LimitFlag

# The shipped DBCs, loaded strictly as the CAN exporter loads them.
INVERTER, SOLARK, TWIN = (
    load_dbc("inverter.dbc"),
    load_dbc("inverter_solark.dbc"),
    load_dbc("twin.dbc"),
)


def _profile(profile: Profile) -> ResolvedProfile:
    return resolve_profile(CanSettings(profile=profile), INVERTER, SOLARK)


def _heard(**changes: object) -> BmsHeard:
    heard = BmsHeard(cvl_v=55.2, ccl_a=100.0, dcl_a=100.0, dvl_v=48.0, voltage_v=52.0, soc_pct=60.0)
    for name, value in changes.items():
        setattr(heard, name, value)
    return heard


# ---- decisions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("want", "changes", "current", "reason"),
    [
        (30.0, {}, 30.0, "as wanted"),
        (150.0, {}, 100.0, "CCL"),
        (30.0, {"ccl_a": 0.0}, 0.0, "CCL 0"),
        (30.0, {"charge_enable": False}, 0.0, "charge disabled by the BMS"),
        # Constant voltage: 0.1 V below CVL at 100 A/V leaves 10 A; at CVL nothing.
        (30.0, {"voltage_v": 55.1}, 10.0, "holding CVL"),
        (30.0, {"voltage_v": 55.3}, 0.0, "holding CVL"),
        (-30.0, {}, -30.0, "as wanted"),
        (-150.0, {"dcl_a": 80.0}, -80.0, "DCL"),
        (-30.0, {"dcl_a": 0.0}, 0.0, "DCL 0"),
        (-30.0, {"discharge_enable": False}, 0.0, "discharge disabled by the BMS"),
        (-30.0, {"voltage_v": 48.1}, -10.0, "at DVL"),
        (-30.0, {"silent": True}, 0.0, "BMS silent: fail-safe"),
        (30.0, {"cvl_v": None}, 0.0, "waiting for the BMS's limits"),
        (0.0, {}, 0.0, "stand-by"),
    ],
)
def test_the_inverter_takes_what_the_limits_leave(
    want: float, changes: dict[str, object], current: float, reason: str
) -> None:
    decision = decide(InverterSettings(current_a=want), _heard(**changes))
    assert decision.current_a == pytest.approx(current, abs=0.05)
    assert decision.reason == reason


def test_a_victron_gx_charges_on_at_ccl_0_until_cvl_is_the_pack_voltage() -> None:
    gx = InverterSettings(profile=Profile.VICTRON, current_a=30.0)
    assert gx.ignores_ccl
    assert decide(gx, _heard(ccl_a=0.0)).current_a == 30.0
    # The victron profile stops charging with CVL = the pack voltage (never 0).
    assert decide(gx, _heard(ccl_a=0.0, cvl_v=52.0)).current_a == 0.0
    pylon_like = InverterSettings(profile=Profile.VICTRON, current_a=30.0, cvl_only=False)
    assert decide(pylon_like, _heard(ccl_a=0.0)).current_a == 0.0


# ---- conformance -------------------------------------------------------------------------


def _twin_frames(profile: ResolvedProfile, **changes: object) -> list[tuple[int, bytes]]:
    """The frames the twin's exporter sends for the sample fleet."""
    return encode_frames(profile, inverter_values(fleet_sample(**changes), profile))


def _feed(checker: Conformance, frames: list[tuple[int, bytes]], t: float) -> None:
    for frame_id, data in frames:
        checker.frame(t, frame_id, data)


@pytest.mark.parametrize("name", list(Profile))
def test_the_twin_s_own_frames_conform_to_each_profile(name: Profile) -> None:
    profile = _profile(name)
    checker = Conformance(profile, INVERTER, InverterSettings(profile=name), start_s=0.0)
    for second in range(10):
        _feed(checker, _twin_frames(profile), 0.5 + second)
        checker.tick(1.0 + second)
    assert checker.violations == []
    assert checker.heard.cvl_v == pytest.approx(55.2)
    assert checker.heard.voltage_v == pytest.approx(fleet_sample().pack_voltage_v, abs=0.1)
    assert checker.report()["violation_counts"] == {}


def test_a_wrong_dlc_a_foreign_frame_and_cvl_0_are_violations() -> None:
    profile = _profile(Profile.PYLON)
    checker = Conformance(profile, INVERTER, InverterSettings(), start_s=0.0)
    frames = dict(_twin_frames(profile))
    checker.frame(0.1, 0x355, frames[0x355] + bytes(4))  # 8 bytes: a real Pylontech sends 4
    checker.frame(0.1, 0x35A, bytes(8))  # an SMA/Victron frame in a Pylon profile
    checker.frame(0.1, 0x351, bytes(8))  # CVL 0 (and DVL 0)
    checker.frame(0.1, 0x701, bytes(8))  # the twin's native frames are not checked
    kinds = [(v.kind, v.frame_id) for v in checker.violations]
    assert kinds == [("dlc", 0x355), ("frame-set", 0x35A), ("limits", 0x351)]
    assert "CVL 0" in checker.violations[-1].detail


def test_limits_out_of_order_and_values_out_of_range_are_violations() -> None:
    profile = _profile(Profile.PYLON)
    checker = Conformance(profile, INVERTER, InverterSettings(), start_s=0.0)
    frames = dict(_twin_frames(profile, discharge_voltage_limit_v=56.0, soc_pct=100.0))
    checker.frame(0.1, 0x351, frames[0x351])
    soc_120 = (120).to_bytes(2, "little") + frames[0x355][2:]
    checker.frame(0.1, 0x355, soc_120)
    details = [v.detail for v in checker.violations]
    assert details == [
        "DVL 56 V is not below CVL 55.2 V",
        "StateOfCharge = 120 outside 0..100",
    ]


def test_a_frame_faster_than_its_cycle_or_sma_s_inhibit_time_is_too_fast() -> None:
    pylon = _profile(Profile.PYLON)
    checker = Conformance(pylon, INVERTER, InverterSettings(), start_s=0.0)
    frame = dict(_twin_frames(pylon))[0x351]
    for t in (0.0, 1.0, 1.1):
        checker.frame(t, 0x351, frame)
    assert [v.kind for v in checker.violations] == ["too-fast"]
    sma = _profile(Profile.SMA)
    checker = Conformance(sma, INVERTER, InverterSettings(profile=Profile.SMA), start_s=0.0)
    frame = dict(_twin_frames(sma))[0x351]
    for t in (0.0, 0.2, 0.35):
        checker.frame(t, 0x351, frame)
    assert [v.detail for v in checker.violations] == [
        "150 ms after the last one (the profile's 200 ms inhibit time, cycle 1 s)"
    ]


def test_a_late_frame_is_one_violation_per_gap() -> None:
    profile = _profile(Profile.PYLON)
    checker = Conformance(profile, INVERTER, InverterSettings(), start_s=0.0)
    frames = _twin_frames(profile)
    _feed(checker, frames, 0.0)
    # Every frame but 0x356 keeps coming.
    for t in (1.0, 2.0, 3.0, 4.0):
        _feed(checker, [f for f in frames if f[0] != 0x356], t)
        checker.tick(t + 0.01)
    assert [(v.kind, v.frame_id) for v in checker.violations] == [("late", 0x356)]
    assert checker.violations[0].detail == "none for 1.75 s (cycle 1 s)"


def test_withheld_measurements_are_not_late_while_the_bms_reports_its_data_lost() -> None:
    profile = _profile(Profile.PYLON)
    checker = Conformance(profile, INVERTER, InverterSettings(), start_s=0.0)
    # Stale data: the twin withholds 0x356 and raises the communication alarm in 0x359.
    stale = _twin_frames(profile, complete=False, alarms=LimitFlag.COMMUNICATION)
    assert 0x356 not in dict(stale)
    for t in (0.0, 1.0, 2.0, 3.0):
        _feed(checker, stale, t)
        checker.tick(t + 0.01)
    assert checker.heard.communication_alarm
    assert checker.violations == []


def test_a_silent_bms_is_one_finding_not_a_late_frame_each() -> None:
    profile = _profile(Profile.PYLON)
    settings = InverterSettings(current_a=20.0, bms_timeout_s=3.0)
    checker = Conformance(profile, INVERTER, settings, start_s=0.0)
    _feed(checker, _twin_frames(profile), 0.0)
    for t in (1.0, 2.0, 2.9):
        checker.tick(t)
    assert checker.counts == {"late": 6}  # not yet silent: six late frames
    checker.tick(3.1)
    assert checker.heard.silent is True
    assert checker.counts == {"silent": 1}
    assert [v.kind for v in checker.violations] == ["silent"]
    assert decide(settings, checker.heard).reason == "BMS silent: fail-safe"
    # The BMS speaks again: timed afresh, no late frames for the silence.
    _feed(checker, _twin_frames(profile), 10.0)
    checker.tick(10.5)
    assert checker.counts == {"silent": 1}
    assert decide(settings, checker.heard).current_a == 20.0  # not silent any more


def test_a_bms_never_heard_is_silent_after_the_timeout() -> None:
    checker = Conformance(_profile(Profile.PYLON), INVERTER, InverterSettings(), start_s=100.0)
    checker.tick(104.0)
    assert checker.violations == []
    checker.tick(105.5)
    assert [v.detail for v in checker.violations] == [
        "no frame from the BMS since the start: fail-safe (0 A)"
    ]


def test_sma_invalid_values_are_not_measurements_nor_out_of_range() -> None:
    profile = _profile(Profile.SMA)
    checker = Conformance(profile, INVERTER, InverterSettings(profile=Profile.SMA), start_s=0.0)
    # No temperature known: the twin sends SMA's "invalid" (0x8000) in its place.
    _feed(checker, _twin_frames(profile, avg_temp_c=None), 0.0)
    assert checker.violations == []
    assert checker.heard.temp_c is None
    assert checker.heard.voltage_v is not None


# ---- the inverter's frames ---------------------------------------------------------------


def test_each_profile_s_inverter_sends_its_own_heartbeat_frames() -> None:
    heard = _heard(temp_c=25.0)
    assert heartbeat_frames(Profile.PYLON, INVERTER, heard, 10.0) == [(0x305, bytes(8))]
    assert heartbeat_frames(Profile.SOLARK, INVERTER, heard, 10.0) == [(0x305, bytes(8))]
    victron = heartbeat_frames(Profile.VICTRON, INVERTER, heard, 10.0)
    assert [frame_id for frame_id, _ in victron] == [0x305, 0x306, 0x307]
    assert victron[2][1] == VICTRON_307
    sma = dict(heartbeat_frames(Profile.SMA, INVERTER, heard, 10.0))
    decoded = INVERTER.get_message_by_frame_id(0x305).decode(sma[0x305])
    assert isinstance(decoded, dict)
    assert decoded["InverterBatteryVoltage"] == pytest.approx(52.0)
    assert decoded["InverterBatteryCurrent"] == pytest.approx(-10.0)  # negative: charging
    status = INVERTER.get_message_by_frame_id(0x306).decode(sma[0x306])
    assert isinstance(status, dict)
    assert status["ChargingProcedure"] == 10
    assert status["ChargeVoltageSetpoint"] == pytest.approx(55.2)


def test_sma_heartbeat_values_not_known_are_invalid() -> None:
    frames = dict(heartbeat_frames(Profile.SMA, INVERTER, BmsHeard(), 0.0))
    assert frames[0x305][:2] == b"\xff\xff"  # voltage: unsigned invalid
    assert frames[0x305][4:6] == b"\x00\x80"  # temperature: signed invalid (0x8000)


def test_a_plant_command_encodes_as_the_twin_decodes_it() -> None:
    for setpoint, value, timeout in (
        ("inverter_dc_a", -30.0, 5.0),
        ("load_w", 1500.0, None),
        ("solar_limit_pct", None, None),
        (None, None, None),
    ):
        data = encode_plant_command(TWIN, setpoint, value, timeout)
        assert decode_plant_command(TWIN, data) == PlantCommand(setpoint, value, timeout)
    with pytest.raises(ValueError, match="'grid_w' is not a plant setpoint"):
        encode_plant_command(TWIN, "grid_w", 1.0, None)


# ---- the command line --------------------------------------------------------------------


def test_the_command_line_offers_every_profile() -> None:
    assert tuple(p.value for p in Profile) == INVERTER_PROFILES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--option", "hop_limit"], "--option 'hop_limit': not KEY=VALUE"),
        (["--pack-index", "200"], "the plant command id 0x1388 is not an 11-bit id"),
        (["--cycle-tolerance", "-1"], "cycle_tolerance must be >= 0"),
    ],
)
def test_a_bad_inverter_argument_is_one_line_and_exit_code_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inverter", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert message in err
