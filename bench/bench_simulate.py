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

Side by side: ``--baseline DIR`` runs the same measurement against another checkout of the
repository (an earlier revision, e.g. ``git worktree add /tmp/base main``) in alternating
subprocesses, each importing its own tree, and prints both lines and the ratio.

``--modes`` runs each size with the inverter in ``relays`` and in ``limits`` mode (the
inverter and chargers obeying the twin's CVL / CCL / DCL, docs/testbench.md), alternately, and
prints the cost of ``limits`` (target: at most 10 % over ``relays``).

Run: python bench/bench_simulate.py [--repeat N] [--hours H] [--baseline DIR | --modes]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from twin.config import load_scenario
from twin.emulator import Scenario, Simulation
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
    pack = dataclasses.replace(base.pack, cell_count=cells)
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


def measure(cells: int, hours: float, repeat: int, mode: str | None = None) -> dict[str, Any]:
    """The best of ``repeat`` runs of the ``cells``-cell day, with its figures.

    ``mode``: the inverter's (``relays`` / ``limits``) instead of the scenario's.
    """
    scenario = scenario_for(cells, hours)
    if mode is not None:
        # Imported here: a --baseline tree from before the modes measures without them.
        from twin.emulator.plant import InverterMode

        plant = scenario.plant
        inverter = dataclasses.replace(plant.inverter, mode=InverterMode(mode))
        scenario = dataclasses.replace(
            scenario, plant=dataclasses.replace(plant, inverter=inverter)
        )
    best = math.inf
    result = None
    for _ in range(repeat):
        simulation = Simulation(scenario)
        started = time.perf_counter()
        result = simulation.run()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return {
        "best_s": best,
        "duration_s": scenario.duration_s,
        "steps": scenario.steps,
        "step_s": scenario.step_s,
        "frames": result.summary.frames_decoded,
        "toggles": result.summary.bms_charge_toggles,
        "compiled": COMPILED,
    }


def line(name: str, cells: int, hours: float, figures: dict[str, Any]) -> str:
    """One result line."""
    target = TARGETS[cells]
    factor = figures["duration_s"] / figures["best_s"]
    compiled = figures["compiled"]
    if factor >= target:
        verdict = "meets"
    else:
        verdict = "MISSES" if compiled else "below it: the target is the compiled build's"
    build = "compiled" if compiled else "pure Python"
    return (
        f"{name} ({build}): {cells:3d}S {hours:g} h at {figures['step_s']:g} s steps "
        f"({figures['steps']:,} steps) in {figures['best_s']:.2f} s = {factor:,.0f}x real time "
        f"({1e6 * figures['best_s'] / figures['steps']:.1f} us/step; target {target:,.0f}x: "
        f"{verdict}); {figures['frames']:,} frames decoded, {figures['toggles']} charge relay "
        "toggles"
    )


def _in_tree(tree: Path, cells: int, hours: float, repeat: int) -> dict[str, Any]:
    """``measure`` in a subprocess that imports ``twin`` from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    command = [sys.executable, __file__, "--worker", str(cells), "--hours", str(hours)]
    command += ["--repeat", str(repeat)]
    out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
    figures: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return figures


def side_by_side(baseline: Path, hours: float, repeat: int) -> None:
    """This tree and ``baseline``, alternately, one run at a time; the best of each."""
    here = Path(__file__).resolve().parents[1]
    for cells in TARGETS:
        best: dict[str, dict[str, Any]] = {}
        for _ in range(repeat):
            for name, tree in (("baseline", baseline), ("this tree", here)):
                figures = _in_tree(tree, cells, hours, 1)
                if name not in best or figures["best_s"] < best[name]["best_s"]:
                    best[name] = figures
        for name in ("baseline", "this tree"):
            print(line(f"bench_simulate {name}", cells, hours, best[name]))
        ratio = best["this tree"]["best_s"] / best["baseline"]["best_s"]
        print(f"bench_simulate {cells}S: this tree takes {ratio:.3f}x the baseline's time")


def compare_modes(hours: float, repeat: int) -> None:
    """``relays`` and ``limits`` alternately, one run at a time; the best of each."""
    for cells in TARGETS:
        best: dict[str, dict[str, Any]] = {}
        for _ in range(repeat):
            for mode in ("relays", "limits"):
                figures = measure(cells, hours, 1, mode)
                if mode not in best or figures["best_s"] < best[mode]["best_s"]:
                    best[mode] = figures
        for mode in ("relays", "limits"):
            print(line(f"bench_simulate inverter={mode}", cells, hours, best[mode]))
        ratio = best["limits"]["best_s"] / best["relays"]["best_s"]
        verdict = "meets" if ratio <= 1.10 else "MISSES"
        print(
            f"bench_simulate {cells}S: limits takes {ratio:.3f}x the time of relays "
            f"(target <= 1.10x: {verdict})"
        )


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per size (best counts)")
    parser.add_argument("--hours", type=float, default=24.0, help="simulated hours per run")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure side by side")
    parser.add_argument("--modes", action="store_true", help="relays vs limits, side by side")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.hours, args.repeat)))
        return
    if args.modes:
        compare_modes(args.hours, args.repeat)
        return
    if args.baseline is not None:
        side_by_side(args.baseline.resolve(), args.hours, args.repeat)
        return
    for cells in TARGETS:
        print(line("bench_simulate", cells, args.hours, measure(cells, args.hours, args.repeat)))


if __name__ == "__main__":
    main()
