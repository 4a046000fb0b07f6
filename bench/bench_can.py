"""CAN exporter: frame throughput on a virtual bus, and cycle jitter under Modbus load.

1. Throughput: the exporter composes and sends every frame of 8 packs (the Victron profile's
   17 inverter frames, 6 native frames per pack and 16 cell frames per pack) on python-can's
   virtual bus as fast as it can, for a few seconds. Target >= 4,000 frames/s (a saturated
   500 kbit/s bus carries about 4,000 8-byte frames per second).
2. Jitter: ``twin run`` with 8 emulated 16-cell packs sends on udp_multicast; this process
   listens and measures, for every periodic frame (inverter and native, not the rotating cell
   frames), how far each interval is from the frame's cycle, while the Modbus benchmark's load
   (10 raw-socket clients reading 100 registers) runs against the same twin. Target p99
   <= 5 ms.

Prints figures; asserts nothing (the machines are shared and noisy).

Run: python bench/bench_can.py [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import can
from bench_modbus import free_port, wait_for_port

from twin.app import StateHub
from twin.config import load_config
from twin.emulator.simulation import World
from twin.exporters.can_map import CanSettings, Profile
from twin.exporters.canbus import CanExporter, load_dbc
from twin.protocol.shadow import PackShadow

PACKS = 8


def _hub() -> tuple[StateHub, dict[str, int]]:
    """8 packs' states: the embedded default's emulated 16-cell pack, 32 frames each."""
    ids = tuple(f"pack{i + 1}" for i in range(PACKS))
    hub = StateHub(ids)
    pack = load_config().packs[0]
    assert pack.source.world is not None
    for pack_id in ids:
        world = World(pack.source.world)
        shadow = PackShadow(pack_id, pack.settings, pack.limits)
        state = None
        for n in range(32):
            wire = world.advance()
            if wire is not None:
                state = shadow.feed(wire, float(n), 740_000) or state
        assert state is not None
        hub.publish(state)
    return hub, {pack_id: i for i, pack_id in enumerate(ids)}


async def throughput(seconds: float) -> tuple[float, int]:
    """Frames per second composed and sent on a virtual bus."""
    hub, index = _hub()
    channel = f"bench-{random.randrange(1 << 30)}"
    exporter = CanExporter(
        hub, CanSettings(interface="virtual", channel=channel, profile=Profile.VICTRON), index
    )
    sender = can.Bus(interface="virtual", channel=channel)
    receiver = can.Bus(interface="virtual", channel=channel)
    sent = 0
    started = time.perf_counter()
    try:
        while time.perf_counter() - started < seconds:
            frames = exporter.compose(time.monotonic())
            exporter.send(sender, frames)
            sent += len(frames)
            while receiver.recv(0) is not None:  # keep the virtual queue short
                pass
    finally:
        sender.shutdown()
        receiver.shutdown()
    return sent / (time.perf_counter() - started), exporter.send_errors


CONFIG_PACK = """
[[pack]]
id = "pack{n}"
chemistry = "LiFePO4"
cells = 16
capacity_wh = 11470
[pack.source]
kind = "emulator"
seed = {n}
"""

CONFIG_TAIL = """
[store]
path = "state.json"
save_interval_s = 3600

[modbus]
port = {port}

[web]
enabled = false        # what is measured here is the interfaces, not the page

[can]
interface = "udp_multicast"
channel = "{group}"
profile = "victron"
"""


def jitter(seconds: float) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, intervals) of the periodic frames of 8 packs under Modbus load."""
    inverter, twin_db = load_dbc("inverter.dbc"), load_dbc("twin.dbc")
    cycles: dict[int, float] = {
        m.frame_id: m.cycle_time / 1000.0 for m in inverter.messages if m.cycle_time
    }
    for i in range(PACKS):
        for m in twin_db.messages:
            if m.cycle_time and m.name != "TwinCells":
                cycles[m.frame_id + 0x10 * i] = m.cycle_time / 1000.0
    group = f"239.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    port = free_port()
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "twin.toml"
        text = "".join(CONFIG_PACK.format(n=n + 1) for n in range(PACKS))
        config.write_text(text + CONFIG_TAIL.format(port=port, group=group), encoding="utf-8")
        twin = subprocess.Popen(
            [sys.executable, "-m", "twin", "run", "--config", str(config), "--quiet"],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        listener = can.Bus(interface="udp_multicast", channel=group, hop_limit=0)  # host-local
        try:
            wait_for_port(port)
            time.sleep(2.0)  # frames from every pack
            # The load in a process of its own (a fork of this one would share the listener's
            # socket and its scheduling with it).
            load = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    f"import bench_modbus; bench_modbus.measure({port}, 10, {seconds + 1.0})",
                ]
            )
            # Frames queued while the twin started would arrive in a burst: drop them.
            while listener.recv(0.0) is not None:
                pass
            last: dict[int, float] = {}
            deviations: list[float] = []
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                message = listener.recv(0.2)
                if message is None or message.arbitration_id not in cycles:
                    continue
                fid = message.arbitration_id
                # The receive time, not the sender's stamp: what an inverter would see.
                now = time.monotonic()
                if fid in last:
                    deviations.append(abs(now - last[fid] - cycles[fid]) * 1000.0)
                last[fid] = now
            load.wait(timeout=seconds + 60)
        finally:
            listener.shutdown()
            twin.send_signal(signal.SIGTERM)
            twin.wait(timeout=30)
    deviations.sort()
    p99 = deviations[min(len(deviations) - 1, int(len(deviations) * 0.99))]
    return statistics.median(deviations), p99, len(deviations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="jitter measurement")
    args = parser.parse_args()
    rate, errors = asyncio.run(throughput(3.0))
    verdict = "meets" if rate >= 4000 else "MISSES"
    print(
        f"bench_can: throughput {rate:,.0f} frames/s on a virtual bus, 8 packs, Victron profile "
        f"+ native frames ({errors} send errors; target >= 4,000: {verdict})"
    )
    p50, p99, count = jitter(args.seconds)
    verdict = "meets" if p99 <= 5.0 else "MISSES"
    print(
        f"bench_can: cycle jitter of 8 packs' periodic frames under the Modbus load (10 clients): "
        f"p50 {p50:.2f} ms, p99 {p99:.2f} ms over {count:,} intervals (target p99 <= 5 ms: "
        f"{verdict})"
    )


if __name__ == "__main__":
    main()
