"""The configuration as the twin runs it: frozen objects, each holding the core's settings."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from twin.emulator.simulation import (
    Scenario,
)
from twin.exporters.can_map import CanSettings
from twin.exporters.modbus_map import (
    ModbusSettings,
)
from twin.exporters.mqtt_map import MqttSettings
from twin.model.limits import LimitSettings
from twin.model.settings import (
    BmsSettings,
    Chemistry,
)
from twin.protocol.assembly import AssemblySettings
from twin.protocol.frame import FrameFormat

# ---------------------------------------------------------------------------------------------


class SourceKind(Enum):
    """Where a pack's UART bytes come from."""

    EMULATOR = "emulator"
    SERIAL = "serial"
    REPLAY = "replay"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """A pack's byte source and the decoding of its frames."""

    kind: SourceKind = SourceKind.EMULATOR
    port: str = "auto"
    """serial: a device path, a pyserial URL, or ``auto`` (the SmartBMSToUSB cable)."""
    usb_serial: str | None = None
    baudrate: int = 9600
    file: Path | None = None
    """replay: a capture file or raw dump (relative paths are relative to the config file)."""
    speed: float | None = 1.0
    """replay: 1 = the recorded pace, N = N x faster, None = as fast as possible."""
    repeat: bool = False
    frame_format: FrameFormat = field(default_factory=FrameFormat)
    assembly: AssemblySettings = field(default_factory=AssemblySettings)
    world: Scenario | None = None
    """emulator: the emulated pack and its plant (the clock is set when the service starts)."""


@dataclass(frozen=True, slots=True)
class PackConfig:
    """One pack, ready for the core."""

    pack_id: str
    settings: BmsSettings
    limits: LimitSettings
    pin: str
    initial_soc_pct: float
    chemistry: Chemistry | None = None
    source: SourceConfig = SourceConfig()


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/twin/state.json`` (``~/.local/state/twin/state.json``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "twin" / "state.json"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The state file and how often it is written (and at every clean stop)."""

    path: Path = field(default_factory=default_state_path)
    save_interval_s: float = 30.0


@dataclass(frozen=True, slots=True)
class TwinConfig:
    """The whole configuration."""

    packs: tuple[PackConfig, ...]
    source: str
    """Where it came from: a path, or ``<embedded default>``."""
    store: StoreConfig = field(default_factory=StoreConfig)
    modbus: ModbusSettings | None = field(default_factory=ModbusSettings)
    """None: no Modbus server."""
    can: CanSettings | None = field(default_factory=CanSettings)
    """None: no CAN exporter."""
    mqtt: MqttSettings | None = None
    """None: no MQTT exporter (the default: it needs a broker)."""
