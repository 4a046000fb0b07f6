"""MQTT exporter: the announcement at connect, and state latency, against a real broker.

8 emulated 255-cell packs (every cell reported), the exporter in this process, and the broker
the tests use (mosquitto when installed, else amqtt) on a free loopback port; a paho subscriber
in a thread timestamps what arrives.

1. Announcement: from the exporter's start to ``online`` at the subscriber, which by then holds
   the discovery configs and every retained topic (8 x (44 values + 765 cell topics + ...)).
   Target <= 5 s (what a reconnect costs before the state is whole again).
2. Latency: new states enter the hub at 2 Hz per pack (each pack's next emulated frame); for
   each, the time until its ``state`` JSON reaches the subscriber. Target p99 <= 100 ms.

Prints figures; asserts nothing (the machines are shared and noisy).

Run: python bench/bench_mqtt.py [--seconds S]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' broker helper

from tests.mqtt_broker import Broker
from tests.ports import PackPort
from twin.app import StateHub
from twin.config import parse_config
from twin.emulator.simulation import World
from twin.exporters.mqtt import MqttExporter
from twin.exporters.mqtt_map import MqttSettings
from twin.model.settings import BmsSettings
from twin.protocol.shadow import PackShadow, TwinState

PACKS = 8
CELLS = 255
PREFIX = "bench"
CONFIG = f"""
[[pack]]
id = "p"
chemistry = "LiFePO4"
cells = {CELLS}
capacity_wh = 182000
"""


def _states(steps: int) -> tuple[dict[str, list[TwinState]], BmsSettings]:
    """Per pack, ``steps`` successive states after every cell has been reported once."""
    pack = parse_config(CONFIG, "bench").packs[0]
    assert pack.source.world is not None
    result: dict[str, list[TwinState]] = {}
    for i in range(PACKS):
        world = World(pack.source.world)
        shadow = PackShadow(f"pack{i + 1}", pack.settings, pack.limits)
        states: list[TwinState] = []
        for n in range(CELLS + 5 + steps):
            wire = world.advance()
            state = shadow.feed(wire, float(n), 740_000) if wire is not None else None
            if state is not None and n > CELLS + 5:
                states.append(state)
        result[f"pack{i + 1}"] = states
    return result, pack.settings


class Subscriber:
    """paho in its own thread: when ``online`` came, and when each (pack, frame) state came."""

    def __init__(self, broker: Broker) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.messages = 0
        self.online_at: float | None = None
        self.arrived: dict[tuple[str, int], float] = {}
        self._ready = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self._ready.wait(10)

    def _on_connect(self, client: object, *_: object) -> None:
        self.client.subscribe([(f"{PREFIX}/#", 1), ("homeassistant/#", 1)])
        self._ready.set()

    def _on_message(self, client: object, userdata: object, message: object) -> None:
        now = time.monotonic()
        self.messages += 1
        topic: str = message.topic  # type: ignore[attr-defined]
        payload: bytes = message.payload  # type: ignore[attr-defined]
        if topic == f"{PREFIX}/status" and payload == b"online":
            self.online_at = now
        elif topic.endswith("/state") and not topic.startswith(f"{PREFIX}/fleet"):
            frames = json.loads(payload).get("frames_received")
            if isinstance(frames, int):
                self.arrived.setdefault((topic.split("/")[1], frames), now)

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


async def run(broker: Broker, seconds: float) -> None:
    states, settings = _states(int(seconds * 2) + 2)
    hub = StateHub(tuple(states))
    for series in states.values():
        hub.publish(series[0])
    exporter = MqttExporter(
        hub,
        PackPort(settings),
        MqttSettings(port=broker.port, prefix=PREFIX, refresh_s=3600.0),
        dict.fromkeys(states, CELLS),
    )
    subscriber = Subscriber(broker)
    started = time.monotonic()
    task = asyncio.create_task(exporter.run())
    while subscriber.online_at is None:
        await asyncio.sleep(0.005)
    announce_s = subscriber.online_at - started
    count = exporter.published
    ok = "meets" if announce_s <= 5.0 else "misses"
    print(
        f"bench_mqtt: announcement of {PACKS} x {CELLS}-cell packs: {count:,} retained messages "
        f"in {announce_s:.2f} s = {count / announce_s:,.0f} msg/s to {broker.kind} "
        f"(target <= 5 s: {ok})"
    )

    sent: dict[tuple[str, int], float] = {}
    published_before = exporter.published
    loop_started = time.monotonic()
    for step in range(1, int(seconds * 2) + 1):
        due = loop_started + step * 0.5
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        for pack_id, series in states.items():
            state = series[step]
            sent[(pack_id, state.frames_received)] = time.monotonic()
            hub.publish(state)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not all(k in subscriber.arrived for k in sent):
        await asyncio.sleep(0.01)
    elapsed = time.monotonic() - loop_started
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    subscriber.close()
    latencies = sorted(
        (subscriber.arrived[k] - t) * 1000.0 for k, t in sent.items() if k in subscriber.arrived
    )
    if not latencies:
        print("bench_mqtt: no state arrived")
        return
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
    lost = len(sent) - len(latencies)
    rate = (exporter.published - published_before) / elapsed
    ok = "meets" if p99 <= 100.0 and not lost else "misses"
    print(
        f"bench_mqtt: state latency, {PACKS} packs at 2 Hz for {seconds:.0f} s: "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(latencies)} states ({lost} missing), "
        f"{rate:,.0f} msg/s on change (target p99 <= 100 ms: {ok})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        broker = Broker(Path(directory))
        broker.start()
        try:
            asyncio.run(run(broker, args.seconds))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
