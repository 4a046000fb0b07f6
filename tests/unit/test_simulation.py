"""The closed loop with injected faults, on short runs."""

from __future__ import annotations

import dataclasses

import pytest

from twin.emulator import Scenario, Simulation, TimedEvent
from twin.emulator.events import (
    BypassLoad,
    Calibrate,
    ChangeSettings,
    LeakyCell,
    SensorFaultEvent,
    SetPlant,
    WeakCell,
    WireNoise,
    apply_changes,
)
from twin.emulator.pack import PackSpec, Spread
from twin.emulator.plant import LoadSpec, PlantSpec, SolarSpec
from twin.emulator.sensor import SensorErrors
from twin.emulator.simulation import SensorSetup, World
from twin.model.settings import BmsSettings

SETTINGS = BmsSettings(cell_count=8, vmin_v=2.9, vbalance_v=3.4, vmax_v=3.7, capacity_wh=7168)
IDEAL = SensorSetup(SensorErrors(), SensorErrors())


def _scenario(**changes: object) -> Scenario:
    base = Scenario(
        name="test",
        settings=SETTINGS,
        duration_s=600.0,
        start_h=12.0,
        pack=PackSpec(cell_count=8, spread=Spread.MATCHED, initial_soc_pct=50.0),
        plant=PlantSpec(
            solar=SolarSpec(peak_w=2000.0, cloudiness=0.0),
            load=LoadSpec(points=((0.0, 500.0),), appliances=False),
        ),
        sensors=IDEAL,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_a_clean_loop_decodes_every_frame_and_the_twin_agrees() -> None:
    result = Simulation(_scenario()).run()
    s = result.summary
    assert s.frames_sent == s.frames_decoded == 600
    assert s.bytes_rejected == 0
    assert s.divergent_s == 0.0
    assert s.twin_soc_end_pct == pytest.approx(s.bms_soc_end_pct, abs=0.05)
    assert s.energy_in_wh > s.energy_out_wh > 0.0


def test_wire_noise_loses_frames_but_not_the_twin() -> None:
    result = Simulation(_scenario(events=(TimedEvent(0.0, WireNoise(0.2)),))).run()
    s = result.summary
    assert s.frames_sent == 600
    assert 60 < s.frames_sent - s.frames_decoded < 180  # about one in five
    assert s.bytes_rejected >= 58 * (s.frames_sent - s.frames_decoded) // 2
    assert s.first_comm_error_s is None  # a lost frame now and then is not a broken chain
    assert s.twin_soc_end_pct == pytest.approx(s.bms_soc_end_pct, abs=0.2)


def test_a_reversed_sensor_counts_charging_as_discharging() -> None:
    reversed_ = Simulation(_scenario(sensors=dataclasses.replace(IDEAL, reversed1=True))).run()
    normal = Simulation(_scenario()).run()
    assert normal.summary.bms_soc_end_pct > 50.0
    assert reversed_.summary.bms_soc_end_pct < 50.0
    assert reversed_.summary.true_soc_end_pct == pytest.approx(normal.summary.true_soc_end_pct)


def test_sensor_drift_and_a_calibration_under_load_bias_the_count() -> None:
    drift = _scenario(events=(TimedEvent(0.0, SensorFaultEvent(1, offset_a=2.0)),))
    shifted = Simulation(drift).run().summary
    clean = Simulation(_scenario()).run().summary
    # 2 A too much on the charger line for 600 s: 0.33 Ah = 0.12 % of 280 Ah counted in.
    assert shifted.bms_soc_end_pct - clean.bms_soc_end_pct == pytest.approx(0.12, abs=0.02)
    calibrated = _scenario(events=(TimedEvent(10.0, Calibrate()),))
    baked = Simulation(calibrated).run().summary
    # The charger's current at calibration became "zero": most of the charge is not counted.
    assert baked.bms_soc_end_pct < clean.bms_soc_end_pct - 1.0


def test_cell_faults_settings_changes_and_a_bypass_load_apply_at_their_time() -> None:
    events = (
        TimedEvent(100.0, WeakCell(3, 100.0)),
        TimedEvent(100.0, LeakyCell(4, 20.0)),
        TimedEvent(200.0, ChangeSettings((("tmax_c", 20.0),), target="bms")),
        TimedEvent(300.0, BypassLoad(260.0)),
    )
    simulation = Simulation(_scenario(events=events))
    result = simulation.run()
    assert simulation.pack.capacity_ah[2] == 100.0
    assert simulation.pack.self_discharge_pct_per_month[3] == 20.0
    # Only the BMS got T-max 20 C: it switches off, the twin (still 55 C) does not.
    bms_off = [c for c in result.changes if c.who == "bms" and not c.on]
    assert bms_off and bms_off[0].time_s == pytest.approx(201.0)
    assert "TEMP_ABOVE_TMAX" in bms_off[0].reason
    assert not [c for c in result.changes if c.who == "twin" and not c.on]
    assert result.summary.divergent_s > 300.0
    # The bypass load drains the pack with both relays off; the sensors see nothing of it.
    assert result.column("bypass_a")[-1] == pytest.approx(260.0 / 26.5, rel=0.05)
    assert result.column("measured_battery_a")[-1] == 0.0


def test_bad_events_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="cannot change during a run"):
        apply_changes(SETTINGS, (("cell_count", 9),))
    with pytest.raises(ValueError, match="vmin_v < vbalance_v < vmax_v"):
        apply_changes(SETTINGS, (("vmin_v", 3.5),))
    with pytest.raises(ValueError, match="no current sensor 3"):
        Simulation(_scenario(events=(TimedEvent(0.0, SensorFaultEvent(3)),))).run()


@pytest.mark.parametrize(("period_s", "step_s", "frames"), [(1.0, 1.0, 60), (0.5, 0.25, 120)])
def test_frames_follow_the_message_cycle(period_s: float, step_s: float, frames: int) -> None:
    settings = dataclasses.replace(SETTINGS, message_period_s=period_s)
    result = Simulation(_scenario(settings=settings, duration_s=60.0, step_s=step_s)).run()
    assert result.summary.frames_sent == frames


def test_a_scenario_is_reproducible() -> None:
    a = Simulation(_scenario(sensors=SensorSetup())).run()
    b = Simulation(_scenario(sensors=SensorSetup())).run()
    assert (a.data == b.data).all()
    assert a.changes == b.changes


def test_a_plant_event_sets_the_inverter_for_its_timeout_then_the_profile_returns() -> None:
    events = (TimedEvent(200.0, SetPlant("inverter_dc_a", -30.0, timeout_s=100.0)),)
    result = Simulation(
        _scenario(plant=PlantSpec(solar=None, load=None), events=events, record_s=1.0)
    ).run()
    battery = result.column("battery_a")
    times = result.column("time_s")
    during = battery[(times > 205.0) & (times < 295.0)]
    after = battery[times > 310.0]
    assert during.min() == pytest.approx(-30.0, abs=0.01)
    assert during.max() == pytest.approx(-30.0, abs=0.01)
    assert abs(after).max() < 1.0  # only the inverter's idle draw (no load, no sun)


def test_a_live_world_takes_setpoints_and_reports_them() -> None:
    world = World(_scenario())
    world.set_plant("load_w", 0.0, timeout_s=5.0)
    assert world.plant_setpoints() == {"load_w": (0.0, 5.0)}
    for _ in range(3):
        world.advance()
    assert world.plant_setpoints() == {"load_w": (0.0, 2.0)}
    with pytest.raises(ValueError, match="not a plant setpoint"):
        world.set_plant("grid_w", 1.0)
    assert world.clear_plant("load_w") and world.plant_setpoints() == {}
