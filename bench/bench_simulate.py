"""Real-time factor of a closed-loop scenario: 24 h at 1 s steps, 16 and 255 cells.

The loop is the whole of ``twin simulate``: plant, pack physics, sensors, the End board's
BmsLogic and frame encoder, the wire, the twin's stream decoder, assembler and BmsLogic, and
the recording. The scenario is examples/scenarios/summer-day.toml (clouds, appliances,
balancing, relay cycling); the 255-cell run scales its pack and BMS to 255 cells.

Targets (issue "The emulated chain"): >= 20,000x real time for 16S, >= 7,000x for 255S, for
the compiled build (``TWIN_COMPILE=1 pip install .``, see docs/emulator.md "Speed"); the
pure-Python (editable) build runs the same code at about 10,000x. Each line names the build it
measured. Prints figures; asserts nothing (the machines are shared and noisy: it takes the best
of a few).

Run: python bench/bench_simulate.py [--repeat N] [--hours H]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

from twin.config import load_scenario
from twin.emulator import Scenario, Simulation
from twin.emulator.pack import PackSpec
from twin.model.values import COMPILED

SCENARIO = Path(__file__).resolve().parents[1] / "examples" / "scenarios" / "summer-day.toml"
TARGETS = {16: 20_000.0, 255: 7_000.0}


def scenario_for(cells: int, hours: float) -> Scenario:
    """The summer day, scaled to ``cells`` cells."""
    base = load_scenario(SCENARIO)
    settings = dataclasses.replace(
        base.settings,
        cell_count=cells,
        capacity_wh=base.settings.capacity_wh * cells / base.settings.cell_count,
    )
    pack: PackSpec = dataclasses.replace(base.pack, cell_count=cells)
    plant = base.plant
    if cells != base.settings.cell_count:
        # Same C-rate: the array and the household grow with the pack.
        scale = cells / base.settings.cell_count
        assert plant.solar is not None
        assert plant.load is not None
        plant = dataclasses.replace(
            plant,
            solar=dataclasses.replace(plant.solar, peak_w=plant.solar.peak_w * scale),
            solar_charger=None,
            load=dataclasses.replace(plant.load, annual_kwh=plant.load.annual_kwh * scale),
            inverter=dataclasses.replace(
                plant.inverter, max_power_w=plant.inverter.max_power_w * scale
            ),
        )
    return dataclasses.replace(
        base, settings=settings, pack=pack, plant=plant, duration_s=hours * 3600.0
    )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (best counts)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours per run")
    args = parser.parse_args()
    build = "compiled" if COMPILED else "pure Python"
    for cells, target in TARGETS.items():
        scenario = scenario_for(cells, args.hours)
        best = math.inf
        result = None
        for _ in range(args.repeat):
            simulation = Simulation(scenario)
            started = time.perf_counter()
            result = simulation.run()
            best = min(best, time.perf_counter() - started)
        assert result is not None
        factor = scenario.duration_s / best
        if factor >= target:
            verdict = "meets"
        else:
            verdict = "MISSES" if COMPILED else "below it: the target is the compiled build's"
        print(
            f"bench_simulate ({build}): {cells:3d}S {args.hours:g} h at {scenario.step_s:g} s "
            f"steps ({scenario.steps:,} steps) in {best:.2f} s = {factor:,.0f}x real time "
            f"({1e6 * best / scenario.steps:.1f} us/step; target {target:,.0f}x: {verdict}); "
            f"{result.summary.frames_decoded:,} frames decoded, "
            f"{result.summary.bms_charge_toggles} charge relay toggles"
        )


if __name__ == "__main__":
    main()
