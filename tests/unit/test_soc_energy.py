"""SOC (Coulomb counting, recalibrations, calibrated flag) and the energy counters."""

from __future__ import annotations

import pytest

from tests.factories import lfp_settings, reading
from twin.model.energy import EnergyCounters, split_power
from twin.model.logic import BmsLogic, LogicState
from twin.model.settings import CurrentSensorSettings, Generation, RelayMode, SensorKind
from twin.model.soc import SocState


def logic(soc_pct: float = 50.0, **settings: object) -> BmsLogic:
    return BmsLogic(lfp_settings(**settings), state=LogicState(soc=SocState(soc_pct)))


def test_coulomb_counting_one_hour_at_10_amps_is_10_percent_of_100_ah() -> None:
    bms = logic(50.0)
    for t in range(3601):
        state = bms.step(reading(current_a=10.0), float(t), 1)
    assert state.soc_pct == pytest.approx(60.0, rel=1e-9)
    assert state.stored_energy_wh == pytest.approx(0.60 * 5120.0)
    assert not state.soc_calibrated


def test_charge_efficiency_applies_to_charging_only() -> None:
    bms = logic(50.0, charge_efficiency_pct=95.0)
    for t in range(3601):
        state = bms.step(reading(current_a=10.0), float(t), 1)
    assert state.soc_pct == pytest.approx(59.5)
    for t in range(3601, 7202):
        state = bms.step(reading(current_a=-10.0), float(t), 1)
    assert state.soc_pct == pytest.approx(49.5)


def test_no_counting_across_a_gap_or_a_comm_error() -> None:
    bms = logic(50.0)
    bms.step(reading(current_a=100.0), 0.0, 1)
    state = bms.step(reading(current_a=100.0), 60.0, 1)  # 60 s gap > 10 s: not integrated
    assert state.soc_pct == 50.0
    bms.step(reading(current_a=100.0, comm_error=True), 61.0, 1)
    state = bms.step(reading(current_a=100.0), 62.0, 1)
    assert state.soc_pct == 50.0
    state = bms.step(reading(current_a=100.0), 63.0, 1)
    assert state.soc_pct > 50.0


def test_soc_clamps_at_both_ends() -> None:
    bms = logic(99.99)
    for t in range(100):
        state = bms.step(reading(current_a=100.0), float(t), 1)
    assert state.soc_pct == 100.0
    bms = logic(0.01)
    for t in range(100):
        state = bms.step(reading(current_a=-100.0), float(t), 1)
    assert state.soc_pct == 0.0


def test_full_recalibration_normal_needs_every_cell_at_vbalance() -> None:
    bms = logic(70.0)
    state = bms.step(reading(vmin=3.39, vmax=3.60), 0.0, 1)
    assert state.soc_pct == 70.0 and not state.soc_calibrated
    state = bms.step(reading(vmin=3.40, vmax=3.45), 1.0, 1)
    assert state.soc_pct == 100.0 and state.soc_calibrated
    assert not state.limits.full_charge  # just recalibrated


def test_full_recalibration_critical_uses_pack_voltage() -> None:
    bms = logic(70.0, mode=RelayMode.CRITICAL)
    # One cell below V-balance, but the average is above: critical mode recalibrates.
    state = bms.step(reading(vmin=3.30, vmax=3.55, pack_v=16 * 3.41), 0.0, 1)
    assert state.soc_pct == 100.0 and state.soc_calibrated
    bms = logic(70.0, mode=RelayMode.CRITICAL)
    state = bms.step(reading(vmin=3.40, vmax=3.41, pack_v=16 * 3.399), 0.0, 1)
    assert state.soc_pct == 70.0


def test_empty_recalibration_gen3_after_the_configured_time() -> None:
    bms = logic(30.0, empty_recalibration_s=30.0)
    low = {"vmin": 2.80, "vmax": 3.00, "current_a": 0.0}
    state = bms.step(reading(**low), 0.0, 1)  # type: ignore[arg-type]
    assert not state.discharge_allowed
    for t in range(1, 30):
        state = bms.step(reading(**low), float(t), 1)  # type: ignore[arg-type]
    assert state.soc_pct == 30.0
    state = bms.step(reading(**low), 30.0, 1)  # type: ignore[arg-type]
    assert state.soc_pct == 0.0
    assert not state.soc_calibrated  # only a full recalibration calibrates


def test_empty_recalibration_timer_restarts_when_the_cell_recovers() -> None:
    bms = logic(30.0, empty_recalibration_s=30.0)
    for t in range(20):
        bms.step(reading(vmin=2.80, vmax=3.0), float(t), 1)
    bms.step(reading(vmin=2.95, vmax=3.0), 20.0, 1)  # recovered above V-min for a moment
    for t in range(21, 45):
        state = bms.step(reading(vmin=2.80, vmax=3.0), float(t), 1)
    assert state.soc_pct == 30.0


def test_gen2_has_no_empty_recalibration() -> None:
    bms = logic(
        30.0,
        generation=Generation.GEN2,
        sensor=CurrentSensorSettings(kind=SensorKind.GEN2, rating_a=100),
        empty_recalibration_s=5.0,
    )
    for t in range(60):
        state = bms.step(reading(vmin=2.80, vmax=3.0), float(t), 1)
    assert state.soc_pct == 30.0


# ---- energy ---------------------------------------------------------------------------------


def test_two_sensor_energy_split_and_today_rollover() -> None:
    bms = logic(50.0)
    # 1 h with 20 A from the charger and 5 A to the consumers at 52.8 V.
    for t in range(3601):
        state = bms.step(reading(current1_a=20.0, current2_a=5.0, pack_v=52.8), float(t), 7)
    e = state.energy
    assert e.harvested_today_wh == pytest.approx(20 * 52.8)
    assert e.consumed_today_wh == pytest.approx(5 * 52.8)
    assert e.harvested_total_wh == pytest.approx(20 * 52.8)
    assert state.powers.battery_w == pytest.approx(15 * 52.8)
    assert state.powers.input_w == pytest.approx(20 * 52.8)
    assert state.powers.output_w == pytest.approx(5 * 52.8)
    # Local midnight: "today" restarts, totals go on.
    state = bms.step(reading(current1_a=20.0, current2_a=5.0, pack_v=52.8), 3601.0, 8)
    assert state.energy.harvested_today_wh == pytest.approx(20 * 52.8 / 3600)
    assert state.energy.harvested_total_wh == pytest.approx(20 * 52.8 * 3601 / 3600)
    assert state.energy.day == 8


def test_one_sensor_energy_follows_the_sign_of_the_battery_current() -> None:
    bms = logic(50.0, sensor=CurrentSensorSettings(sensor_count=1))
    for t in range(1801):
        state = bms.step(reading(current1_a=10.0, current2_a=None, pack_v=50.0), float(t), 1)
    for t in range(1801, 3602):
        state = bms.step(reading(current1_a=-4.0, current2_a=None, pack_v=50.0), float(t), 1)
    # The one sign change interval is split by the trapezoid rule; allow one second of it.
    assert state.energy.harvested_today_wh == pytest.approx(250.0, abs=0.2)
    assert state.energy.consumed_today_wh == pytest.approx(100.0, abs=0.2)
    assert state.inputs.current2_a is None and state.powers.output_w is None


def test_split_power_balances_with_the_battery() -> None:
    r = reading(current1_a=-2.0, current2_a=-3.0, pack_v=50.0)
    power_in, power_out = split_power(r, one_sensor=False)
    assert power_in == pytest.approx(150.0)  # the consumer line feeding back counts in
    assert power_out == pytest.approx(100.0)  # the charger line drawing counts out
    assert power_in - power_out == pytest.approx(50.0 * r.battery_current_a)  # type: ignore[operator]


def test_clear_counters_clears_totals_only() -> None:
    bms = logic(50.0)
    for t in range(100):
        bms.step(reading(current1_a=20.0, current2_a=5.0), float(t), 1)
    bms.clear_counters()
    state = bms.step(reading(current1_a=20.0, current2_a=5.0), 100.0, 1)
    assert state.energy.harvested_total_wh < 1.0
    assert state.energy.harvested_today_wh == pytest.approx(20 * 52.96 * 100 / 3600, rel=0.01)


def test_counters_reject_negative_values() -> None:
    with pytest.raises(ValueError, match="negative"):
        EnergyCounters(consumed_total_wh=-1.0)
