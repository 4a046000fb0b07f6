"""Throughput of ``BmsLogic.step`` (one pack, one message cycle per step).

Context: the emulated-chain issue targets a 24 h, 1 s-step closed loop at >= 20,000x real time
for 16 cells, i.e. 86,400 steps in <= 4.3 s including the pack physics and the codec; the logic
alone must therefore run far above 20,000 steps/s. Prints figures; asserts nothing.

Run: python bench/bench_logic.py [--steps N]
"""

from __future__ import annotations

import argparse
import math
import time

from twin.model.fleet import aggregate_fleet
from twin.model.inputs import BmsInputs
from twin.model.logic import BmsLogic
from twin.model.settings import BmsSettings


def _readings(n: int) -> list[BmsInputs]:
    out = []
    for k in range(n):
        phase = 2 * math.pi * k / 3600
        current = 60.0 * math.sin(phase)
        v = 3.30 + 0.08 * math.sin(phase)
        out.append(
            BmsInputs(
                pack_voltage_v=16 * v,
                current1_a=max(current, 0.0),
                current2_a=max(-current, 0.0),
                battery_current_a=current,
                min_cell_voltage_v=v - 0.01,
                min_cell_index=3,
                max_cell_voltage_v=v + 0.01,
                max_cell_index=7,
                min_temp_c=24.0,
                min_temp_index=1,
                max_temp_c=27.0,
                max_temp_index=2,
                cell_count=16,
                cell_index=k % 16 + 1,
                cell_voltage_v=v,
                cell_temp_c=25.0,
            )
        )
    return out


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=86_400)
    args = parser.parse_args()
    settings = BmsSettings(
        cell_count=16, vmin_v=2.90, vbalance_v=3.40, vmax_v=3.70, capacity_wh=11_470.0
    )
    readings = _readings(3600)
    logic = BmsLogic(settings)
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for k in range(args.steps):
            state = logic.step(readings[k % 3600], float(k), 1 + k // 86_400)
        best = min(best, time.perf_counter() - start)
    rate = args.steps / best
    print(
        f"bench_logic: BmsLogic.step 16S: {rate:,.0f} steps/s "
        f"({best * 1e6 / args.steps:.1f} us/step; best of 3 x {args.steps:,} steps)"
    )
    print(
        f"bench_logic: 24 h at 1 s steps, logic alone: {86_400 / rate:.2f} s "
        f"= {86_400 / (86_400 / rate):,.0f}x real time"
    )
    packs = {f"p{i}": state for i in range(8)}
    n = 20_000
    start = time.perf_counter()
    for _ in range(n):
        aggregate_fleet(packs)
    elapsed = time.perf_counter() - start
    print(f"bench_logic: aggregate_fleet of 8 packs: {n / elapsed:,.0f} aggregates/s")


if __name__ == "__main__":
    main()
