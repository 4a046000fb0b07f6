r"""The emulated 123\SmartBMS chain and closed-loop scenarios (pure, like the core).

It builds on ``twin.model`` (pack physics, sensors, plant, the BMS logic) and ``twin.protocol``
(the frame codec and decoder) and, like them, does no I/O and reads no clock; the adapters in
``twin.commands.simulate`` (files, plots) and ``twin.sources`` (real-time byte streams) drive it.
"""

from twin.emulator.chain import ChainSpec, EmulatedChain, SensorFault
from twin.emulator.events import EVENT_KINDS, TimedEvent
from twin.emulator.simulation import (
    COLUMNS,
    Ambient,
    Scenario,
    SensorSetup,
    SimResult,
    Simulation,
    Summary,
)

__all__ = [
    "COLUMNS",
    "EVENT_KINDS",
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
