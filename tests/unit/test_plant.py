"""The plant: sun, clouds, household, chargers and inverter."""

from __future__ import annotations

import numpy as np
import pytest

from twin.emulator.pack import Pack, PackSpec, Spread
from twin.emulator.plant import (
    ChargePhase,
    Charger,
    ChargerSpec,
    InverterMode,
    InverterSpec,
    LoadSpec,
    Plant,
    PlantSpec,
    SolarSpec,
    cloud_factor,
    household_power_w,
    solar_power_w,
)
from twin.model.limits import InverterLimits, LimitFlag

DAY = np.arange(0.0, 86_400.0, 60.0)


def test_the_sun_is_down_at_night_and_highest_near_solar_noon() -> None:
    clear = SolarSpec(peak_w=5000.0, cloudiness=0.0)
    power = solar_power_w(DAY, 172, clear, seed=0)
    hours = DAY / 3600.0
    assert power[(hours < 4.0) | (hours > 22.5)].max() == 0.0
    noon_h = hours[int(power.argmax())]
    # Utrecht (5.1 E) on CEST: solar noon at about 13:40 local time.
    assert 13.2 < noon_h < 14.1
    # Haurwitz peaks near 900 W/m2 in June at 52 N: 5 kWp x 0.85 gives about 3.8 kW.
    assert 3300.0 < power.max() < 4300.0


def test_a_winter_day_yields_much_less_than_a_summer_day() -> None:
    clear = SolarSpec(peak_w=5000.0, cloudiness=0.0, utc_offset_h=1.0)
    june = solar_power_w(DAY, 172, clear, 0).sum() * 60 / 3600
    december = solar_power_w(DAY, 355, clear, 0).sum() * 60 / 3600
    assert june > 4 * december > 0


def test_clouds_are_seeded_and_cover_the_share_asked_for() -> None:
    times = np.arange(0.0, 20 * 86_400.0, 10.0)
    spec = SolarSpec(cloudiness=0.3)
    a = cloud_factor(times, spec, seed=4)
    assert np.array_equal(a, cloud_factor(times, spec, seed=4))
    assert not np.array_equal(a, cloud_factor(times, spec, seed=5))
    shaded = float((a < 0.5).mean())
    assert 0.2 < shaded < 0.4
    assert a.max() <= spec.edge_enhancement + 1e-9
    assert np.all(cloud_factor(times, SolarSpec(cloudiness=0.0), 1) == 1.0)


def test_the_household_profile_has_the_annual_mean_and_an_evening_peak() -> None:
    times = np.arange(0.0, 86_400.0, 1.0)
    power = household_power_w(times, LoadSpec(annual_kwh=3500.0, appliances=False), 0)
    assert power.mean() == pytest.approx(3500e3 / 8760, rel=0.02)
    hours = times / 3600.0
    assert power[(hours > 18) & (hours < 21)].mean() > 1.3 * power[(hours > 1) & (hours < 5)].mean()
    with_appliances = household_power_w(times, LoadSpec(annual_kwh=3500.0), 3)
    assert with_appliances.max() >= 2000.0  # a kettle: the sensor's 20 A range switch
    year = np.arange(0.0, 365 * 86_400.0, 60.0)
    annual_kwh = household_power_w(year, LoadSpec(annual_kwh=3500.0), 3).mean() * 8.76
    assert annual_kwh == pytest.approx(3500.0, rel=0.05)


def test_a_given_profile_is_held_between_points_and_repeats() -> None:
    spec = LoadSpec(points=((0.0, 100.0), (3600.0, 500.0)), repeat_s=7200.0)
    times = np.array([0.0, 1800.0, 3600.0, 7199.0, 7200.0, 10_800.0])
    assert household_power_w(times, spec, 0).tolist() == [100, 100, 500, 500, 100, 500]
    with pytest.raises(ValueError, match="increase"):
        LoadSpec(points=((0.0, 1.0), (0.0, 2.0)))


def _charge_to_absorption(spec: ChargerSpec) -> tuple[Pack, Charger, list[float]]:
    pack = Pack(PackSpec(cell_count=16, spread=Spread.MATCHED, initial_soc_pct=93.0))
    charger = Charger(spec, 16)
    voltages = []
    for _ in range(4000):
        current = charger.step(200.0, pack.pack_voltage_v, pack.ohmic_resistance_ohm, True, 1.0)
        pack.step(current, 1.0, None)
        voltages.append(pack.pack_voltage_v)
    return pack, charger, voltages


def test_the_charger_regulates_to_its_voltage_without_overshoot() -> None:
    spec = ChargerSpec(max_current_a=100.0, absorption_v=55.2, float_v=54.0, absorption_s=7200.0)
    _, charger, voltages = _charge_to_absorption(spec)
    assert max(voltages) < 55.2 + 0.05
    assert voltages[-1] == pytest.approx(55.2, abs=0.03)
    assert charger.phase in (ChargePhase.ABSORPTION, ChargePhase.FLOAT)
    assert charger.current_a < 100.0


def test_the_charger_floats_after_absorption_and_stops_when_disabled() -> None:
    spec = ChargerSpec(max_current_a=100.0, absorption_v=55.2, float_v=54.0, absorption_s=600.0)
    pack, charger, voltages = _charge_to_absorption(spec)
    assert charger.phase is ChargePhase.FLOAT
    # Above its float voltage the charger gives nothing; the pack rests.
    assert charger.current_a == 0.0
    assert max(voltages) < 55.2 + 0.05
    assert charger.step(200.0, pack.pack_voltage_v, 0.005, False, 1.0) == 0.0
    assert charger.phase in (ChargePhase.OFF,)  # (a tuple: mypy narrowed the phase above)


def test_the_inverter_draws_its_demand_plus_losses_within_its_power() -> None:
    inverter = InverterSpec(max_power_w=3000.0, efficiency=0.9, idle_w=20.0)
    assert inverter.dc_current_a(900.0, 50.0) == pytest.approx((1000.0 + 20.0) / 50.0)
    assert inverter.dc_current_a(9000.0, 50.0) == pytest.approx((3000.0 / 0.9 + 20.0) / 50.0)


def test_the_relays_gate_the_plant() -> None:
    plant = Plant(PlantSpec(solar=SolarSpec(cloudiness=0.0)), 16, 3.4, 12 * 3600.0, 1.0)
    on = plant.currents(0, 52.0, 0.005, True, True, 1.0)
    assert on.charger_a > 10.0 and on.load_a > 0.0
    off = plant.currents(1, 52.0, 0.005, False, False, 1.0)
    assert off.charger_a == 0.0 and off.load_a == 0.0
    assert off.demand_w > 0.0  # the household still wants power: the grid serves it
    bypass = Plant(PlantSpec(bypass_load_w=52.0), 16, 3.4, 12 * 3600.0, 1.0).currents(
        0, 52.0, 0.005, False, False, 1.0
    )
    assert bypass.bypass_a == pytest.approx(1.0)  # not switched by the LOAD relay
    assert bypass.battery_a == pytest.approx(-1.0)


def test_the_mains_charger_runs_in_its_hours_and_shares_the_voltage_with_the_sun() -> None:
    mains = ChargerSpec(max_current_a=40.0, absorption_v=55.2, float_v=54.0)
    night_tariff = PlantSpec(
        solar=None, load=None, mains_charger=mains, mains_from_h=22.0, mains_to_h=6.0
    )
    night = Plant(night_tariff, 16, 3.4, 0.0, 1.0).currents(2 * 3600, 52.0, 0.005, True, True, 1.0)
    assert night.charger_a == pytest.approx(40.0)  # inside the window (22:00 to 06:00)
    day = Plant(night_tariff, 16, 3.4, 0.0, 1.0).currents(12 * 3600, 52.0, 0.005, True, True, 1.0)
    assert day.charger_a == 0.0  # outside it
    # At noon both chargers regulate on one voltage: together they do not overshoot it.
    both = PlantSpec(solar=SolarSpec(cloudiness=0.0), load=None, mains_charger=mains)
    pack = Pack(PackSpec(cell_count=16, spread=Spread.MATCHED, initial_soc_pct=95.0))
    plant = Plant(both, 16, 3.4, 12 * 3600.0, 1.0)
    peak = 0.0
    for k in range(3000):
        current = plant.currents(k, pack.pack_voltage_v, pack.ohmic_resistance_ohm, True, True, 1)
        pack.step(current.battery_a, 1.0, None)
        peak = max(peak, pack.pack_voltage_v)
    assert peak < 55.2 + 0.05
    assert plant.mains_charger is not None
    assert plant.mains_charger.current_a + plant.solar_charger.current_a < 40.0  # tapering


def test_profiles_are_computed_a_day_at_a_time_and_are_reproducible() -> None:
    spec = PlantSpec(solar=SolarSpec(cloudiness=0.3))
    a = Plant(spec, 16, 3.4, 6 * 3600.0, 10.0)
    b = Plant(spec, 16, 3.4, 6 * 3600.0, 10.0)
    steps = range(0, 3 * 8640, 7)  # three days of 10 s steps, visited out of order too
    first = [a.profile(k) for k in steps]
    assert [b.profile(k) for k in reversed(steps)][::-1] == first
    # Step 6480 is the next midnight (18 h after 06:00): a new day, the sun is down.
    assert a.profile(6479)[0] == a.profile(6480)[0] == 0.0
    assert a._end - a._first <= 8640  # one day held, not the run


def _published(**changes: object) -> InverterLimits:
    values: dict[str, object] = {
        "charge_voltage_v": 55.2,
        "charge_current_a": 30.0,
        "discharge_current_a": 5.0,
        "discharge_voltage_v": 48.0,
        "force_charge": False,
        "full_charge": False,
        "alarms": LimitFlag.NONE,
        "warnings": LimitFlag.NONE,
    }
    values.update(changes)
    return InverterLimits(**values)  # type: ignore[arg-type]


def _dvcc(**inverter: object) -> Plant:
    spec = PlantSpec(
        solar=SolarSpec(cloudiness=0.0),
        load=LoadSpec(annual_kwh=20_000.0),
        inverter=InverterSpec(mode=InverterMode.LIMITS, **inverter),  # type: ignore[arg-type]
    )
    return Plant(spec, 16, 3.4, 12 * 3600.0, 1.0)


def test_with_limits_the_chargers_stop_at_ccl_and_the_inverter_at_dcl() -> None:
    plant = _dvcc()
    step = plant.currents(0, 52.0, 0.005, True, True, 1.0, _published())
    assert step.charger_a == pytest.approx(30.0)  # the sun offers more: CCL caps it
    assert step.load_a == pytest.approx(5.0)  # the household wants more: DCL caps it
    zero = plant.currents(1, 52.0, 0.005, True, True, 1.0, _published(charge_current_a=0.0))
    assert zero.charger_a == 0.0
    # The relays still count.
    off = plant.currents(2, 52.0, 0.005, False, False, 1.0, _published())
    assert off.charger_a == 0.0 and off.load_a == 0.0
    # In relays mode the same limits are ignored.
    relays = Plant(PlantSpec(solar=SolarSpec(cloudiness=0.0)), 16, 3.4, 12 * 3600.0, 1.0)
    assert relays.currents(0, 52.0, 0.005, True, True, 1.0, _published()).charger_a > 30.0


def test_with_limits_the_pack_is_held_at_cvl_and_the_load_stops_at_dvl() -> None:
    pack = Pack(PackSpec(cell_count=16, spread=Spread.MATCHED, initial_soc_pct=90.0))
    plant = _dvcc()
    cvl = 53.6
    peak = 0.0
    for k in range(1800):
        step = plant.currents(
            k, pack.pack_voltage_v, pack.ohmic_resistance_ohm, True, False, 1.0,
            _published(charge_voltage_v=cvl, charge_current_a=200.0),
        )  # fmt: skip
        pack.step(step.battery_a, 1.0, None)
        peak = max(peak, pack.pack_voltage_v)
    assert peak <= cvl + 0.01
    assert pack.pack_voltage_v == pytest.approx(cvl, abs=0.02)
    below = plant.currents(0, 47.9, 0.005, True, True, 1.0, _published())
    assert below.load_a == 0.0  # at DVL the inverter stops discharging: the grid serves


def test_the_inverter_quirks_are_options() -> None:
    # A reading 0.5 V low makes the inverter hold the true voltage 0.5 V above CVL.
    pack = Pack(PackSpec(cell_count=16, spread=Spread.MATCHED, initial_soc_pct=90.0))
    plant = _dvcc(voltage_offset_v=-0.5)
    for k in range(1800):
        step = plant.currents(
            k, pack.pack_voltage_v, pack.ohmic_resistance_ohm, True, False, 1.0,
            _published(charge_voltage_v=53.6, charge_current_a=200.0),
        )  # fmt: skip
        pack.step(step.battery_a, 1.0, None)
    assert pack.pack_voltage_v == pytest.approx(54.1, abs=0.03)
    # Victron: CCL = 0 does not stop charging (only CVL at the pack voltage does).
    victron = _dvcc(cvl_only=True)
    assert (
        victron.currents(
            0, 52.0, 0.005, True, True, 1.0, _published(charge_current_a=0.0)
        ).charger_a
        > 0
    )
    # SMA: above CVL it discharges into the grid, ignoring DCL.
    sma = _dvcc(overvoltage_discharge_a=20.0)
    above = sma.currents(0, 55.5, 0.005, True, True, 1.0, _published(discharge_current_a=0.0))
    assert above.load_a == pytest.approx(20.0)
    # Holding the last limits when the BMS falls silent, then the fail-safe ones.
    holding = _dvcc(hold_limits_s=5.0)
    holding.currents(0, 52.0, 0.005, True, True, 1.0, _published())
    safe = _published(charge_current_a=0.0, discharge_current_a=0.0)
    for k in range(1, 6):
        held = holding.currents(k, 52.0, 0.005, True, True, 1.0, safe, limits_fresh=False)
        assert held.charger_a > 0 and held.load_a > 0
    late = holding.currents(6, 52.0, 0.005, True, True, 1.0, safe, limits_fresh=False)
    assert late.charger_a == 0.0 and late.load_a == 0.0
    # Before the BMS has published anything, a limits-mode inverter waits.
    waiting = _dvcc().currents(0, 52.0, 0.005, True, True, 1.0, None)
    assert waiting.charger_a == 0.0 and waiting.load_a == 0.0


def test_impossible_inverter_options_are_refused() -> None:
    with pytest.raises(ValueError, match="voltage_offset_v"):
        InverterSpec(voltage_offset_v=9.0)
    with pytest.raises(ValueError, match="hold_limits_s"):
        InverterSpec(hold_limits_s=-1.0)


def test_a_controllers_inverter_setpoint_charges_and_discharges_within_the_relays() -> None:
    plant = Plant(PlantSpec(solar=None), 16, 3.4, 12 * 3600.0, 1.0)
    plant.set_point("inverter_dc_a", 40.0, 0.0)
    charging = plant.currents(0, 52.0, 0.005, True, True, 1.0)
    assert charging.load_a == -40.0 and charging.battery_a == pytest.approx(40.0)
    assert plant.currents(1, 52.0, 0.005, False, True, 1.0).load_a == 0.0  # CHARGE relay off
    plant.set_point("inverter_ac_w", -1880.0, 2.0)  # replaces the DC setpoint
    assert set(plant.setpoints) == {"inverter_ac_w"}
    feeding = plant.currents(2, 50.0, 0.005, True, True, 1.0)
    assert feeding.load_a == pytest.approx(1880.0 / 0.94 / 50.0)
    assert plant.currents(3, 50.0, 0.005, True, False, 1.0).load_a == 0.0  # LOAD relay off


def test_with_limits_a_setpoint_is_capped_by_ccl_dcl_cvl_and_dvl() -> None:
    plant = _dvcc()
    plant.set_point("inverter_dc_a", 200.0, 0.0)
    step = plant.currents(0, 52.0, 0.005, True, True, 1.0, _published(charge_current_a=30.0))
    assert step.charger_a + -step.load_a == pytest.approx(30.0)  # sun and inverter within CCL
    full = plant.currents(1, 55.3, 0.005, True, True, 1.0, _published())
    assert full.load_a == 0.0  # at CVL the inverter stops charging
    plant.set_point("inverter_dc_a", -200.0, 2.0)
    assert plant.currents(2, 52.0, 0.005, True, True, 1.0, _published()).load_a == 5.0  # DCL
    assert plant.currents(3, 47.0, 0.005, True, True, 1.0, _published()).load_a == 0.0  # DVL


def test_setpoints_expire_back_to_the_profile_and_are_reported() -> None:
    spec = PlantSpec(solar=SolarSpec(cloudiness=0.0), load=LoadSpec(annual_kwh=3500.0))
    plant = Plant(spec, 16, 3.4, 12 * 3600.0, 1.0)
    profile = plant.currents(0, 52.0, 0.005, True, True, 1.0)
    plant.set_point("load_w", 0.0, 1.0, timeout_s=3.0)
    plant.set_point("solar_limit_pct", 0.0, 1.0)
    held = plant.currents(1, 52.0, 0.005, True, True, 1.0)
    assert held.load_a == pytest.approx(20.0 / 52.0)  # no demand: the inverter's own use only
    assert held.charger_a == 0.0
    assert held.solar_w == pytest.approx(profile.solar_w, rel=1e-3)  # still recorded
    plant.currents(4, 52.0, 0.005, True, True, 1.0)  # t = 4 s: the load setpoint ended
    assert plant.expired == ["load_w"] and set(plant.setpoints) == {"solar_limit_pct"}
    assert plant.currents(5, 52.0, 0.005, True, True, 1.0).load_a > 20.0 / 52.0
    assert plant.clear_point("solar_limit_pct") and not plant.clear_point("solar_limit_pct")
    assert plant.currents(6, 52.0, 0.005, True, True, 1.0).charger_a > 0.0


def test_the_mains_charger_can_be_switched_over_its_hours() -> None:
    mains = ChargerSpec(max_current_a=40.0, absorption_v=55.2, float_v=54.0)
    spec = PlantSpec(solar=None, load=None, mains_charger=mains, mains_from_h=22.0, mains_to_h=6.0)
    plant = Plant(spec, 16, 3.4, 12 * 3600.0, 1.0)
    assert plant.currents(0, 52.0, 0.005, True, True, 1.0).charger_a == 0.0  # noon: off
    plant.set_point("mains_charger", 1.0, 1.0)
    assert plant.currents(1, 52.0, 0.005, True, True, 1.0).charger_a == pytest.approx(40.0)
    with pytest.raises(ValueError, match="no mains charger"):
        Plant(PlantSpec(), 16, 3.4, 0.0, 1.0).set_point("mains_charger", 1.0, 0.0)


@pytest.mark.parametrize(
    ("name", "value", "timeout_s", "message"),
    [
        ("inverter_kw", 1.0, None, "not a plant setpoint"),
        ("load_w", -5.0, None, r"load_w: -5 is out of range \(allowed 0..1e\+06\)"),
        ("solar_limit_pct", float("nan"), None, "out of range"),
        ("mains_charger", 0.5, None, "no mains charger"),
        ("inverter_dc_a", 10.0, 0.0, "timeout_s"),
    ],
)
def test_bad_setpoints_are_refused_naming_the_problem(
    name: str, value: float, timeout_s: float | None, message: str
) -> None:
    plant = Plant(PlantSpec(), 16, 3.4, 0.0, 1.0)
    with pytest.raises(ValueError, match=message):
        plant.set_point(name, value, 0.0, timeout_s)
