r"""The emulated 123\SmartBMS chain and closed-loop scenarios (pure, like the core).

It builds on ``twin.model`` (pack physics, sensors, plant, the BMS logic) and ``twin.protocol``
(the frame codec and decoder) and, like them, does no I/O and reads no clock; the adapters in
``twin.simulate`` (files, plots) and ``twin.sources`` (real-time byte streams) drive it.
"""

from twin.emulator.chain import ChainSpec, EmulatedChain, SensorFault
from twin.emulator.simulation import (
    COLUMNS,
    Ambient,
    Scenario,
    SensorSetup,
    SimResult,
    Simulation,
    Summary,
    TimedEvent,
)

__all__ = [
    "COLUMNS",
    "Ambient",
    "ChainSpec",
    "EmulatedChain",
    "Scenario",
    "SensorFault",
    "SensorSetup",
    "SimResult",
    "Simulation",
    "Summary",
    "TimedEvent",
]
