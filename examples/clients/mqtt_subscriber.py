"""An MQTT subscriber: the pack's state as the twin publishes it (aiomqtt).

Subscribes to ``<prefix>/<pack>/state`` (JSON, docs/mqtt.md) and ``<prefix>/status``
(online / offline) on a broker and prints a line per state until ``--count`` states or
``--duration`` seconds.

    python examples/clients/mqtt_subscriber.py --port 1883 --prefix twin --pack pack1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiomqtt


async def listen(args: argparse.Namespace) -> int:
    """Print the states as they come; the number of states printed."""
    states = 0
    async with aiomqtt.Client(args.host, args.port) as client:
        await client.subscribe(f"{args.prefix}/{args.pack}/state")
        await client.subscribe(f"{args.prefix}/status")
        async for message in client.messages:
            payload = message.payload
            text = payload.decode() if isinstance(payload, bytes | bytearray) else str(payload)
            if str(message.topic).endswith("/status"):
                print(f"status: {text}", flush=True)
                continue
            state = json.loads(text)
            print(
                f"{state.get('pack_voltage_v')} V  {state.get('battery_current_a')} A  "
                f"SOC {state.get('soc_pct')} %  stale {state.get('stale')}  "
                f"charge {state.get('charge_effective')}  load {state.get('discharge_effective')}",
                flush=True,
            )
            states += 1
            if states >= args.count:
                break
    return states


def main(argv: list[str] | None = None) -> int:
    """Listen; exit 1 when no state came (or the broker cannot be reached)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="twin")
    parser.add_argument("--pack", default="pack1")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    args = parser.parse_args(argv)

    async def bounded() -> int:
        try:
            return await asyncio.wait_for(listen(args), args.duration)
        except TimeoutError:
            return 0

    try:
        states = asyncio.run(bounded())
    except aiomqtt.MqttError as exc:
        print(f"mqtt subscriber: {exc}", file=sys.stderr)
        return 1
    return 0 if states else 1


if __name__ == "__main__":
    sys.exit(main())
