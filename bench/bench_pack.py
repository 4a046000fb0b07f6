"""Throughput of the pack physics and the current sensors (the plant side of a closed loop).

Context: the emulated-chain issue targets a 24 h, 1 s-step closed loop at >= 20,000x real time
for 16 cells (<= 50 us per step for everything) and >= 7,000x for 255 cells (<= 143 us). This
prints the share the physics takes. Prints figures; asserts nothing.

Run: python bench/bench_pack.py [--steps N]
"""

from __future__ import annotations

import argparse
import math
import time

from twin.emulator.pack import Pack, PackSpec, board_currents_a
from twin.emulator.sensor import CurrentSensor, SensorErrors, SensorWiring
from twin.model.settings import CurrentSensorSettings, Generation


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    args = parser.parse_args()
    steps = args.steps
    currents = [80.0 * math.sin(2 * math.pi * k / 3600) for k in range(3600)]
    for cells in (16, 255):
        pack = Pack(PackSpec(cell_count=cells), board_currents_a(Generation.GEN3, cells))
        best = math.inf
        for _ in range(3):
            start = time.perf_counter()
            for k in range(steps):
                pack.step(currents[k % 3600], 1.0, 3.45)
            best = min(best, time.perf_counter() - start)
        per_step_us = best / steps * 1e6
        print(
            f"bench_pack: Pack.step {cells:3d} cells: {per_step_us:6.2f} us/step "
            f"= {1e6 / per_step_us:,.0f}x real time at 1 s steps (physics alone)"
        )
    settings = CurrentSensorSettings()
    wiring = SensorWiring(
        CurrentSensor(settings, SensorErrors.typical(1)),
        CurrentSensor(settings, SensorErrors.typical(2)),
    )
    start = time.perf_counter()
    for k in range(steps):
        i = currents[k % 3600]
        wiring.read(max(i, 0.0), max(-i, 0.0))
    per_read_us = (time.perf_counter() - start) / steps * 1e6
    print(f"bench_pack: SensorWiring.read, two sensors: {per_read_us:6.2f} us/reading")


if __name__ == "__main__":
    main()
