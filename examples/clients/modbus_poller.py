"""A PLC-style Modbus poller: read the twin's native map in fixed blocks, as a SCADA tag list does.

Every ``--period`` seconds it reads three blocks of holding registers from unit 1 (the pack;
unit 100 is the fleet) with pymodbus and prints one line: pack voltage and current, SOC, the
effective relays, the warnings and the inverter limits. A value "not available" (the type's
sentinel: 0xFFFF, 0x8000, 0xFFFFFFFF) prints as "-". Stops after ``--polls`` polls.

    python examples/clients/modbus_poller.py --port 5020 --polls 5
"""

from __future__ import annotations

import argparse
import sys
import time

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

#: (first register, count) of each block read. A block spans mapped registers only: a gap in
#: the map (127-129) answers exception 0x02, as on most devices.
BLOCKS = {"measured": (100, 17), "relays": (120, 7), "warnings": (130, 6), "limits": (160, 8)}


def u32(registers: list[int], offset: int, scale: float) -> float | None:
    """An unsigned 32-bit value (high word first); None when not available."""
    raw = (registers[offset] << 16) | registers[offset + 1]
    return None if raw == 0xFFFFFFFF else raw / scale


def s32(registers: list[int], offset: int, scale: float) -> float | None:
    """A signed 32-bit value (high word first); None when not available."""
    raw = (registers[offset] << 16) | registers[offset + 1]
    if raw == 0x80000000:
        return None
    return (raw - (1 << 32) if raw >= 1 << 31 else raw) / scale


def u16(registers: list[int], offset: int, scale: float = 1.0) -> float | None:
    """An unsigned 16-bit value; None when not available."""
    raw = registers[offset]
    return None if raw == 0xFFFF else raw / scale


def show(value: float | None, unit: str, digits: int = 1) -> str:
    """A value with its unit, or "-"."""
    return "-" if value is None else f"{value:.{digits}f} {unit}"


def poll(client: ModbusTcpClient, unit: int) -> str:
    """One poll: the blocks, decoded into a line."""
    blocks: dict[str, list[int]] = {}
    for name, (address, count) in BLOCKS.items():
        response = client.read_holding_registers(address, count=count, device_id=unit)
        if response.isError():
            raise RuntimeError(f"read {address}+{count}: {response}")
        blocks[name] = list(response.registers)
    measured, limits = blocks["measured"], blocks["limits"]
    relays = f"C{blocks['relays'][4]} D{blocks['relays'][5]}"  # 124, 125: effective relays
    bits = blocks["warnings"][0]  # 130: warning_bits
    warnings = "".join(
        name for bit, name in enumerate(("E", "Vl", "Vh", "Tl", "Th")) if bits >> bit & 1
    )
    return (
        f"{show(u32(measured, 0, 1000), 'V', 2)}  {show(s32(measured, 2, 100), 'A', 2)}  "
        f"SOC {show(u16(measured, 10, 10), '%')}  relays {relays}  "
        f"warnings {warnings or '-'}  CVL {show(u32(limits, 0, 1000), 'V', 2)}  "
        f"CCL {show(u32(limits, 2, 100), 'A')}  DCL {show(u32(limits, 4, 100), 'A')}"
    )


def main(argv: list[str] | None = None) -> int:
    """Poll ``--polls`` times; exit 1 when the server cannot be read."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--unit", type=int, default=1, help="1 = the first pack, 100 = fleet")
    parser.add_argument("--polls", type=int, default=5)
    parser.add_argument("--period", type=float, default=1.0, help="s between polls")
    args = parser.parse_args(argv)
    client = ModbusTcpClient(args.host, port=args.port, timeout=3)
    try:
        for _ in range(args.polls):
            print(poll(client, args.unit), flush=True)
            time.sleep(args.period)
    except (RuntimeError, OSError, ModbusException) as exc:
        print(f"modbus poller: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
