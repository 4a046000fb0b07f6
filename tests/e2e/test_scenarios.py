"""The example scenarios in a closed loop through the wire, shortened where needed.

Each asserts the behaviour its file says it shows. Only simulated time is asserted on.
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from twin.commands.simulate import with_inverter_mode, write_outputs
from twin.config import load_scenario
from twin.emulator import Scenario, SimResult, Simulation
from twin.emulator.plant import InverterMode
from twin.emulator.simulation import RelayChange
from twin.model.settings import CurrentSensorSettings

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def _load(name: str, **changes: object) -> Scenario:
    scenario = load_scenario(SCENARIOS / f"{name}.toml")
    return dataclasses.replace(scenario, **changes)  # type: ignore[arg-type]


def _changes(result: SimResult, who: str, relay: str) -> list[RelayChange]:
    return [c for c in result.changes if c.who == who and c.relay == relay]


def _at(result: SimResult, column: str, time_s: float) -> float:
    times = result.column("time_s")
    return float(result.column(column)[int(np.searchsorted(times, time_s))])


def test_every_example_scenario_loads() -> None:
    names = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
    assert names == [
        "chain-broken",
        "hot-day-balancing",
        "limits-vs-relays",
        "standby-blind-spot",
        "summer-day",
        "winter-fortnight",
    ]
    for name in names:
        assert _load(name).steps > 0


@pytest.mark.slow
def test_summer_day_fills_the_pack_recalibrates_and_cycles_the_charge_relay() -> None:
    # 06:00 to 20:00 of the summer day, with a 2 s step: the full charge and the evening.
    scenario = _load("summer-day", start_h=6.0, duration_s=14 * 3600.0, step_s=2.0, record_s=2.0)
    result = Simulation(scenario).run()
    charge = _changes(result, "bms", "charge")
    opened = [c for c in charge if not c.on]
    assert opened, "the charge relay never opened"
    first = opened[0]
    # Full: every cell reached V-balance, SOC recalibrated to 100 %, the pack really is full.
    assert first.reason == "ALL_CELLS_AT_VBALANCE"
    assert _at(result, "cell_min_v", first.time_s) >= 3.39
    assert _at(result, "bms_soc_pct", first.time_s) == 100.0
    assert _at(result, "true_soc_pct", first.time_s) > 95.0
    assert result.summary.full_recalibrations >= 1
    # It closes again only once SOC fell below the 90 % charge restart.
    reopened = [c for c in charge if c.on and c.time_s > first.time_s]
    assert reopened, "the charge relay never closed again"
    before = reopened[0].time_s - scenario.step_s
    assert _at(result, "bms_soc_pct", before) < 90.0 + 0.1
    # The twin, on the decoded bytes, decided the same.
    twin_charge = _changes(result, "twin", "charge")
    assert [c.on for c in twin_charge[:3]] == [c.on for c in charge[:3]]
    assert result.summary.frames_decoded == result.summary.frames_sent


@pytest.mark.slow
def test_a_broken_chain_opens_both_relays_within_one_watchdog_period() -> None:
    scenario = _load("chain-broken", duration_s=3.2 * 3600.0)
    result = Simulation(scenario).run()
    broken_s, repaired_s = 2 * 3600.0, 3 * 3600.0
    watchdog_s = scenario.twin_stale_after_s
    for who in ("twin", "bms"):
        for relay in ("charge", "load"):
            off = [c for c in _changes(result, who, relay) if not c.on and c.time_s >= broken_s]
            assert off, f"{who} {relay} relay stayed closed"
            assert off[0].time_s - broken_s <= watchdog_s
            assert off[0].reason == "NO_COMMUNICATION"
            back = [c for c in _changes(result, who, relay) if c.on and c.time_s > broken_s]
            assert back and back[0].time_s >= repaired_s
    first_e = result.summary.first_comm_error_s
    assert first_e is not None and broken_s < first_e <= broken_s + watchdog_s
    # No frames while broken; the charger and inverter stopped with the End board's relays.
    assert result.summary.frames_sent < result.summary.steps - 3500
    assert _at(result, "charger_a", broken_s + 60) == 0.0
    assert _at(result, "load_a", broken_s + 60) == 0.0
    assert _at(result, "twin_comm_error", broken_s + 60) == 1.0


@pytest.mark.slow
def test_balancing_heat_trips_tmax_on_a_board_sensor_not_a_cell() -> None:
    scenario = _load("hot-day-balancing", duration_s=8.2 * 3600.0)
    result = Simulation(scenario).run()
    trips = [c for c in _changes(result, "bms", "load") if "TEMP_ABOVE_TMAX" in c.reason]
    assert trips, "T-max never tripped"
    trip_s = trips[0].time_s
    tmax = scenario.settings.tmax_c
    # The board reads hot: within its +-2 C accuracy (and the frame's 0.86 C steps) of T-max.
    assert _at(result, "board_temp_max_c", trip_s) > tmax - 2.5
    assert _at(result, "cell_temp_max_c", trip_s) < tmax - 5.0  # the cells are not that hot
    assert _at(result, "balancing_cells", trip_s - 60) >= 1
    charge_off = [c for c in _changes(result, "bms", "charge") if not c.on]
    assert any("TEMP_ABOVE_TMAX" in c.reason for c in charge_off)  # BOTH relays


@pytest.mark.slow
@pytest.mark.parametrize("loops", [1, 4])
def test_a_standby_load_in_the_blind_spot_drains_unnoticed_unless_looped(loops: int) -> None:
    base = _load("standby-blind-spot", duration_s=2 * 86_400.0)
    sensor = dataclasses.replace(base.settings.sensor, loops=loops)
    assert isinstance(sensor, CurrentSensorSettings)
    scenario = dataclasses.replace(base, settings=dataclasses.replace(base.settings, sensor=sensor))
    result = Simulation(scenario).run()
    summary = result.summary
    drained = summary.true_soc_start_pct - summary.true_soc_end_pct
    # 0.25 A for 48 h is 12 Ah: 4.3 % of 280 Ah (plus the boards' own few mA).
    assert drained == pytest.approx(4.4, abs=0.4)
    if loops == 1:
        assert summary.bms_consumed_wh == 0.0
        assert summary.soc_error_pct == pytest.approx(drained, abs=0.3)
    else:
        assert summary.bms_consumed_wh > 500.0
        assert abs(summary.soc_error_pct) < 0.6


@pytest.mark.slow
def test_winter_days_without_a_full_charge_let_the_cells_drift_apart() -> None:
    scenario = _load("winter-fortnight", duration_s=3 * 86_400.0, step_s=10.0)
    simulation = Simulation(scenario)
    start = simulation.pack.soc.copy()
    result = simulation.run()
    summary = result.summary
    assert summary.full_recalibrations == 0
    assert summary.bms_charge_toggles <= 1  # the pack is never full
    # The leaky cell 9 lost more than the median cell.
    lost = start - simulation.pack.soc
    assert lost[8] > np.median(lost) + 0.005
    # At the bottom the weak cells reach V-min first: the LOAD relay opens on a cell, and the
    # spread there is large.
    load_off = [c for c in _changes(result, "bms", "load") if not c.on]
    assert load_off and "CELL_AT_VMIN" in load_off[0].reason
    assert summary.max_spread_mv > 150.0


def _rows(result: SimResult, tmp_path: Path, name: str) -> tuple[list[dict[str, float]], str]:
    """The run's timeseries.csv rows and its relays.csv, as ``twin simulate`` writes them."""
    out = tmp_path / name
    write_outputs(result, out, 1.0)
    with (out / "timeseries.csv").open(encoding="utf-8") as file:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(file)]
    return rows, (out / "relays.csv").read_text(encoding="utf-8")


def test_an_inverter_obeying_the_limits_charges_to_full_without_a_vmax_trip(
    tmp_path: Path,
) -> None:
    scenario = _load("limits-vs-relays")
    assert scenario.plant.inverter.mode is InverterMode.LIMITS
    limits, limit_relays = _rows(Simulation(scenario).run(), tmp_path, "limits")
    relays, relay_relays = _rows(
        Simulation(with_inverter_mode(scenario, InverterMode.RELAYS)).run(), tmp_path, "relays"
    )
    # relays: the charger follows its own 57.6 V, a cell reaches V-max, the relay trips.
    assert "bms,charge,0,CELL_AT_VMAX" in relay_relays
    assert max(r["pack_voltage_v"] - r["cvl_v"] for r in relays if r["cvl_v"] == r["cvl_v"]) > 0.1
    assert "ALL_CELLS_AT_VBALANCE" not in relay_relays.split("CELL_AT_VMAX")[0]
    # limits: no V-max trip, CVL never exceeded (within one step's regulation), and full: the
    # charge ends because every cell reached V-balance, the SOC recalibrated to 100 %.
    assert "CELL_AT_VMAX" not in limit_relays
    ends = [
        line
        for line in limit_relays.splitlines()
        if line.split(",", 1)[-1].startswith(("bms,charge,0", "twin,charge,0"))
    ]
    assert ends and all(line.endswith("ALL_CELLS_AT_VBALANCE") for line in ends), ends
    published = [r for r in limits if r["cvl_v"] == r["cvl_v"]]  # NaN before the first frame
    assert max(r["pack_voltage_v"] - r["cvl_v"] for r in published) <= 0.02
    assert max(r["cell_max_v"] for r in limits) < 3.70
    assert max(r["true_soc_pct"] for r in limits) >= 98.0
    assert max(r["bms_soc_pct"] for r in limits) >= 99.9  # recalibrated to 100 %
    assert max(r["bms_soc_pct"] for r in relays) < 99.0  # relays: never full
    # The charge current tapers: full current while the pack is low, a fraction near full
    # with the sun still strong (CCL recovers in steps now and then, so the mean), and CCL
    # well below its cap then.
    sunny = [r for r in limits if r["solar_w"] > 3000.0]
    assert max(r["charger_a"] for r in sunny if r["true_soc_pct"] < 80.0) > 50.0
    full = [r["charger_a"] for r in sunny if r["true_soc_pct"] > 95.0]
    assert full and sum(full) / len(full) < 15.0
    assert min(r["ccl_a"] for r in sunny if r["true_soc_pct"] > 95.0) < 50.0
