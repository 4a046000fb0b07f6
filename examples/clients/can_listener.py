"""A CAN listener: what an inverter or a data logger hears from the twin, decoded with its DBCs.

Opens any python-can bus (``--interface socketcan --channel vcan0``, or the twin's
``udp_multicast`` group) and prints each frame decoded with the DBC files that ship with twin
(``dbc/inverter.dbc``: the inverter profile's 0x35x frames; ``dbc/twin.dbc``: the native
frames) until ``--count`` frames or ``--duration`` seconds. The cell frames (one per cell,
ten times a second) are counted, not printed, unless ``--cells``.

    python examples/clients/can_listener.py --interface udp_multicast --channel 239.0.0.1

udp_multicast note: python-can's default hop limit (1) sends frames out of this machine's
network interface; this listener, like the twin, uses hop limit 0 (this host only).
"""

from __future__ import annotations

import argparse
import sys
import time
from importlib import resources
from pathlib import Path

import can
import cantools
from cantools.database.can import Database, Message


def databases() -> dict[int, Message]:
    """The messages of the DBCs twin ships, by frame id."""
    by_id: dict[int, Message] = {}
    for name in ("inverter.dbc", "twin.dbc"):
        database = cantools.database.load_file(Path(str(resources.files("twin.dbc") / name)))
        assert isinstance(database, Database)
        by_id.update({message.frame_id: message for message in database.messages})
    return by_id


def describe(message: Message, data: bytes) -> str:
    """The frame's signals, decoded (a frame shorter than its DBC length decodes what it has)."""
    values = message.decode(data, decode_choices=False, allow_truncated=True)
    assert isinstance(values, dict)
    units = {signal.name: signal.unit or "" for signal in message.signals}
    return " ".join(f"{k}={v:g}{units[k]}" for k, v in values.items() if isinstance(v, int | float))


def main(argv: list[str] | None = None) -> int:
    """Listen until ``--count`` frames or ``--duration`` s; exit 1 when nothing was heard."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interface", default="socketcan")
    parser.add_argument("--channel", default="vcan0")
    parser.add_argument("--count", type=int, default=50, help="stop after N frames printed")
    parser.add_argument("--duration", type=float, default=10.0, help="stop after S seconds")
    parser.add_argument("--cells", action="store_true", help="print the cell frames too")
    args = parser.parse_args(argv)
    known = databases()
    options = {"hop_limit": 0} if args.interface == "udp_multicast" else {}
    bus = can.Bus(interface=args.interface, channel=args.channel, **options)
    printed = cells = 0
    deadline = time.monotonic() + args.duration
    try:
        while printed < args.count and time.monotonic() < deadline:
            frame = bus.recv(timeout=0.5)
            if frame is None or frame.is_error_frame:
                continue
            message = known.get(frame.arbitration_id)
            data = bytes(frame.data)
            if message is not None and message.name == "TwinCells" and not args.cells:
                cells += 1
                continue
            text = describe(message, data) if message is not None else data.hex(" ")
            name = message.name if message is not None else "?"
            print(f"{frame.arbitration_id:#05x} {name}: {text}", flush=True)
            printed += 1
    finally:
        bus.shutdown()
    print(f"{printed} frames printed, {cells} cell frames counted")
    return 0 if printed else 1


if __name__ == "__main__":
    sys.exit(main())
