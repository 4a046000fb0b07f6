"""A tiny battery controller that closes the loop through the twin: Modbus in, setpoint out.

Each step it reads the pack's SOC, the relays and the limits over Modbus (pymodbus), decides
the inverter's DC current and writes it into the twin's plant block, with a timeout so that
the plant falls back to its own profile if this controller dies:

- discharge ``--discharge`` A while the SOC is above ``--floor`` %, within DCL;
- charge ``--charge`` A once the SOC is below the floor, within CCL;
- nothing (0 A) while the BMS reports a communication error (E) or the relay is off.

This is the code under test in examples/pytest/test_controller.py; replace ``decide`` with
your own strategy. Run it against ``twin run`` (Modbus on 127.0.0.1:5020 by default):

    python examples/clients/controller.py --steps 10
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from pymodbus.client import ModbusTcpClient
from pymodbus.exceptions import ModbusException

# The twin's native register map (docs/register-map.md): holding registers, unit 1 = pack 1.
SOC = 110  # uint16 x10 %
EFFECTIVE = 124  # charge_effective, discharge_effective: uint16 0/1
WARNING_E = 131  # uint16 0/1
CCL = 162  # uint32 x100 A, then DCL at 164
PLANT_INVERTER_DC = 240  # int16 x10 A, + charges the battery
PLANT_TIMEOUT = 247  # uint16 s: the timeout of the setpoints written after it


@dataclass(frozen=True)
class Reading:
    """What the controller reads from the BMS each step."""

    soc_pct: float
    ccl_a: float
    dcl_a: float
    charge_ok: bool
    discharge_ok: bool
    comm_error: bool


class Controller:
    """Reads the twin over Modbus and drives its inverter setpoint."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5020,
        unit: int = 1,
        *,
        floor_pct: float = 30.0,
        discharge_a: float = 40.0,
        charge_a: float = 20.0,
        timeout_s: int = 10,
    ) -> None:
        self.client = ModbusTcpClient(host, port=port, timeout=3)
        self.unit = unit
        self.floor_pct = floor_pct
        self.discharge_a = discharge_a
        self.charge_a = charge_a
        self.timeout_s = timeout_s

    def close(self) -> None:
        """Close the Modbus connection."""
        self.client.close()

    def _registers(self, address: int, count: int) -> list[int]:
        response = self.client.read_holding_registers(address, count=count, device_id=self.unit)
        if response.isError():
            raise RuntimeError(f"read {address}: {response}")
        return list(response.registers)

    def read(self) -> Reading:
        """SOC, limits, relays and E, from the native map."""
        soc = self._registers(SOC, 1)[0]
        charge_ok, discharge_ok = self._registers(EFFECTIVE, 2)
        comm_error = self._registers(WARNING_E, 1)[0]
        limits = self._registers(CCL, 4)
        return Reading(
            soc_pct=soc / 10.0,
            ccl_a=((limits[0] << 16) | limits[1]) / 100.0,
            dcl_a=((limits[2] << 16) | limits[3]) / 100.0,
            charge_ok=charge_ok == 1,
            discharge_ok=discharge_ok == 1,
            comm_error=comm_error == 1,
        )

    def decide(self, reading: Reading) -> float:
        """The inverter's DC current: + charges the battery, - discharges it."""
        if reading.comm_error:
            return 0.0  # the BMS cannot vouch for the battery: do nothing
        if reading.soc_pct > self.floor_pct:
            return -min(self.discharge_a, reading.dcl_a) if reading.discharge_ok else 0.0
        return min(self.charge_a, reading.ccl_a) if reading.charge_ok else 0.0

    def write(self, current_a: float) -> None:
        """The setpoint into the plant block (the timeout first: it applies to what follows)."""
        raw = round(current_a * 10) & 0xFFFF  # int16, two's complement
        for address, value in ((PLANT_TIMEOUT, self.timeout_s), (PLANT_INVERTER_DC, raw)):
            response = self.client.write_register(address, value, device_id=self.unit)
            if response.isError():
                raise RuntimeError(f"write {address}: {response}")

    def step(self) -> tuple[Reading, float]:
        """Read, decide, write: one turn of the loop."""
        reading = self.read()
        current = self.decide(reading)
        self.write(current)
        return reading, current


def main(argv: list[str] | None = None) -> int:
    """Run ``--steps`` turns of the loop, a line each; exit 1 when the twin cannot be read."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5020)
    parser.add_argument("--unit", type=int, default=1)
    parser.add_argument("--floor", type=float, default=30.0, help="SOC floor, %% (default 30)")
    parser.add_argument("--discharge", type=float, default=40.0, help="A (default 40)")
    parser.add_argument("--charge", type=float, default=20.0, help="A (default 20)")
    parser.add_argument("--steps", type=int, default=10, help="turns of the loop (default 10)")
    parser.add_argument("--period", type=float, default=1.0, help="s between turns (default 1)")
    args = parser.parse_args(argv)
    controller = Controller(
        args.host,
        args.port,
        args.unit,
        floor_pct=args.floor,
        discharge_a=args.discharge,
        charge_a=args.charge,
    )
    try:
        for _ in range(args.steps):
            reading, current = controller.step()
            print(
                f"SOC {reading.soc_pct:5.1f} %  CCL {reading.ccl_a:6.1f} A  "
                f"DCL {reading.dcl_a:6.1f} A  E {int(reading.comm_error)}  "
                f"-> inverter {current:+.1f} A",
                flush=True,
            )
            time.sleep(args.period)
    except (RuntimeError, OSError, ModbusException) as exc:
        print(f"controller: {exc}", file=sys.stderr)
        return 1
    finally:
        controller.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
