"""Inverter limits: CVL, CCL, DCL, DVL, filters, requests, alarms (inverter-can.md 5.5)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.factories import lfp_settings, reading
from twin.model.limits import (
    LimitFlag,
    LimitSettings,
    Ramp,
    follow,
    interpolate,
    temperature_curve,
)
from twin.model.logic import BmsLogic, LogicState, PackState
from twin.model.soc import SocState


def run(readings: list[dict[str, Any]], soc_pct: float = 50.0, **limits: Any) -> list[PackState]:
    bms = BmsLogic(lfp_settings(), LimitSettings(**limits), LogicState(soc=SocState(soc_pct)))
    return [bms.step(reading(**r), float(t), 1) for t, r in enumerate(readings)]


def test_nominal_cvl_and_dvl_of_a_16s_lifepo4_pack() -> None:
    (state,) = run([{}])
    # 16 x (3.40 + 0.05) and 16 x (2.90 + 0.10): the reference's golden 0x351 frame values.
    assert state.limits.charge_voltage_v == pytest.approx(55.2)
    assert state.limits.discharge_voltage_v == pytest.approx(48.0)
    assert state.limits.charge_current_a == 100.0
    assert state.limits.discharge_current_a == 100.0


def test_cvl_drops_by_the_overshoot_at_once_and_recovers_slowly() -> None:
    states = run(
        [{}, {"vmin": 3.38, "vmax": 3.55, "pack_v": 54.6}] + [{}] * 200,
        cvl_ramp_v_per_s=0.01,
        cvl_increase_hold_s=60.0,
    )
    assert states[1].limits.charge_voltage_v == pytest.approx(54.6 - (3.55 - 3.45))
    assert states[2].limits.charge_voltage_v == pytest.approx(54.5)  # held
    assert states[61].limits.charge_voltage_v == pytest.approx(54.5)  # still held
    assert states[100].limits.charge_voltage_v == pytest.approx(54.5 + 0.01 * 40, abs=0.011)
    assert states[-1].limits.charge_voltage_v == pytest.approx(55.2)


def test_cvl_never_goes_below_its_floor() -> None:
    (_, state) = run([{}, {"vmin": 2.95, "vmax": 4.9, "pack_v": 50.0}])
    assert state.limits.charge_voltage_v == pytest.approx(16 * 3.2)


def test_ccl_tapers_with_the_highest_cell_and_is_zero_at_vmax() -> None:
    states = run([{"vmax": v, "vmin": 3.30} for v in (3.30, 3.375, 3.40, 3.55, 3.69)])
    ccl = [s.limits.charge_current_a for s in states]
    assert ccl[0] == 100.0
    assert ccl[1] == pytest.approx(62.5)  # half way between 3.35 (100 %) and 3.40 (25 %)
    assert ccl[2] == pytest.approx(25.0)
    assert ccl[3] == pytest.approx(2.0)
    assert ccl[4] == pytest.approx(2.0 * (3.70 - 3.69) / 0.15)
    (_, at_vmax) = run([{}, {"vmax": 3.70}])
    assert at_vmax.limits.charge_current_a == 0.0 and not at_vmax.charge_allowed


def test_dcl_tapers_with_the_lowest_cell() -> None:
    states = run([{"vmin": v, "vmax": 3.3} for v in (3.25, 3.15, 3.05, 2.95)])
    assert [round(s.limits.discharge_current_a, 3) for s in states] == [100.0, 62.5, 15.0, 2.5]


def test_temperature_derating_uses_the_worse_of_both_sensors() -> None:
    curve = temperature_curve(lfp_settings(), LimitSettings())
    assert [interpolate(curve, t) for t in (0, 2, 5, 10, 40, 45, 50, 55)] == [
        0.0,
        0.25,
        0.5,
        1.0,
        1.0,
        0.5,
        0.25,
        0.0,
    ]
    (state,) = run([{"tmin": 5.0, "tmax": 47.5}])
    assert state.limits.charge_current_a == pytest.approx(37.5)  # 47.5 C -> 37.5 %
    assert state.limits.discharge_current_a == pytest.approx(37.5)


def test_limits_are_zero_when_the_relay_disallows() -> None:
    (state,) = run([{"vmin": 2.85}])  # discharge relay off
    assert state.limits.discharge_current_a == 0.0
    assert state.limits.charge_current_a > 0.0


def test_comm_error_zeroes_both_currents_but_not_cvl() -> None:
    (_, state) = run([{}, {"comm_error": True}])
    assert state.limits.charge_current_a == 0.0
    assert state.limits.discharge_current_a == 0.0
    assert state.limits.charge_voltage_v == pytest.approx(55.2)
    assert LimitFlag.COMMUNICATION in state.limits.alarms


def test_decreases_are_immediate_increases_held_then_ramped() -> None:
    r = follow(Ramp(100.0), 20.0, 0.0, 1.0, rate_per_s=5, hold_s=10, deadband=1, resume_threshold=2)
    assert r.value == 20.0
    values = []
    for t in range(1, 40):
        r = follow(r, 100.0, float(t), 1.0, rate_per_s=5, hold_s=10, deadband=1, resume_threshold=2)
        values.append(r.value)
    assert values[:10] == [20.0] * 10  # held for 10 s
    assert values[10] == 25.0  # then 5 A/s
    assert values[-1] == pytest.approx(100.0)
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_zero_limit_resumes_only_above_the_threshold_and_small_rises_are_ignored() -> None:
    kw = {"rate_per_s": 5.0, "hold_s": 0.0, "deadband": 1.0, "resume_threshold": 2.0}
    r = Ramp(0.0)
    for t in range(10):
        r = follow(r, 1.5, float(t), 1.0, **kw)
    assert r.value == 0.0
    r = follow(r, 3.0, 10.0, 1.0, **kw)
    assert r.value == 3.0
    r = follow(Ramp(50.0), 50.8, 0.0, 1.0, **kw)
    assert r.value == 50.0  # inside the deadband: no flapping


def test_force_charge_request_with_hysteresis() -> None:
    bms = BmsLogic(lfp_settings(), state=LogicState(soc=SocState(6.0)))
    t = 0.0
    state = bms.step(reading(current_a=-50.0, vmin=3.05), t, 1)
    assert not state.limits.force_charge
    while state.soc_pct > 5.0:
        t += 1
        state = bms.step(reading(current_a=-50.0, vmin=3.05), t, 1)
    assert state.limits.force_charge
    while state.soc_pct < 9.0:
        t += 1
        state = bms.step(reading(current_a=50.0, vmin=3.05), t, 1)
    assert state.limits.force_charge  # still on between 5 and 10 %
    while state.soc_pct < 10.0:
        t += 1
        state = bms.step(reading(current_a=50.0, vmin=3.05), t, 1)
    assert not state.limits.force_charge


def test_full_charge_request_until_recalibrated_and_after_the_interval() -> None:
    bms = BmsLogic(lfp_settings(), LimitSettings(full_charge_interval_days=1.0), LogicState())
    assert bms.step(reading(), 0.0, 1).limits.full_charge  # never calibrated
    assert not bms.step(reading(vmin=3.40, vmax=3.42), 1.0, 1).limits.full_charge
    t = 1.0
    state = bms.step(reading(), t, 1)
    while t < 86_402:
        t += 10.0
        state = bms.step(reading(), t, 1)
    assert state.limits.full_charge


def test_alarms_follow_the_bms_warnings_and_warnings_come_early() -> None:
    (state,) = run([{"vmax": 3.66, "tmax": 51.0, "vmin": 3.30}])
    assert state.limits.alarms == LimitFlag.NONE
    assert LimitFlag.CELL_OVER_VOLTAGE in state.limits.warnings
    assert LimitFlag.OVER_TEMPERATURE in state.limits.warnings
    assert LimitFlag.CELL_IMBALANCE in state.limits.warnings
    (state,) = run([{"vmax": 3.71, "tmin": -1.0}])
    assert state.limits.alarms == LimitFlag.CELL_OVER_VOLTAGE | LimitFlag.UNDER_TEMPERATURE


def test_overcurrent_warning_against_the_published_limit() -> None:
    (state,) = run([{"current_a": 130.0}])
    assert LimitFlag.CHARGE_OVER_CURRENT in state.limits.warnings
    (state,) = run([{"current_a": -105.0}])
    assert state.limits.warnings == LimitFlag.NONE


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"current_ramp_a_per_s": 0.0}, "ramp"),
        ({"cvl_floor_cell_v": 0.0}, "never 0"),
        ({"force_charge_on_pct": 20.0, "force_charge_off_pct": 10.0}, "force charge"),
        ({"charge_taper": ((3.5, 1.0), (3.4, 0.0))}, "ascending"),
        ({"discharge_taper": ((3.0, 0.0), (3.1, 1.5))}, "0..1"),
        ({"max_charge_current_a": -1.0}, "negative"),
    ],
)
def test_limit_settings_reject_nonsense(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        LimitSettings(**changes)  # type: ignore[arg-type]
