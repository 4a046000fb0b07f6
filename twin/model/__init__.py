"""The functional core: the BMS logic alone (the emulated pack lives in ``twin.emulator``).

Standard library only: no I/O, no clock, no asyncio, no logging, and no other
``twin`` package (tests/unit/test_architecture.py keeps this true). Time comes in as ``now_s``;
problems go out as values.
"""

from twin.model.fleet import CellRef, FleetState, aggregate_fleet
from twin.model.inputs import BmsInputs
from twin.model.limits import InverterLimits, LimitFlag, LimitSettings
from twin.model.logic import BmsLogic, LogicState, PackState
from twin.model.relays import Condition, RelayDecision, decide_relays
from twin.model.settings import (
    BmsSettings,
    Chemistry,
    CurrentSensorSettings,
    Generation,
    RelayMode,
    SensorKind,
)
from twin.model.status import StatusFlag

__all__ = [
    "BmsInputs",
    "BmsLogic",
    "BmsSettings",
    "CellRef",
    "Chemistry",
    "Condition",
    "CurrentSensorSettings",
    "FleetState",
    "Generation",
    "InverterLimits",
    "LimitFlag",
    "LimitSettings",
    "LogicState",
    "PackState",
    "RelayDecision",
    "RelayMode",
    "SensorKind",
    "StatusFlag",
    "aggregate_fleet",
    "decide_relays",
]
