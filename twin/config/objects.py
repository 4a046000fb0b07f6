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
from twin.exporters.web_map import WebSettings
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
class ServedUartSettings:
    """Where an emulated pack's UART is served (``[pack.source] uart_*``).

    ``twin.sources.served`` serves it.
    """

    pty: bool = False
    """Serve on a pseudo-terminal (its path is logged)."""
    pty_file: Path | None = None
    """Also write the pseudo-terminal's path to this file (for a script to read)."""
    tcp_host: str = "127.0.0.1"
    tcp_port: int | None = None
    """Serve raw bytes on this TCP port (None: no TCP; 0: any free port, logged)."""

    @property
    def enabled(self) -> bool:
        """Anything to serve."""
        return self.pty or self.tcp_port is not None


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
    served: ServedUartSettings = field(default_factory=ServedUartSettings)
    """emulator: where its UART stream is served to UART readers (a pty, a TCP port)."""
    live: LiveScenario | None = None
    """emulator: the world is a scenario played live (``twin run --scenario``): its own clock
    and day, its timed events; None: a pack emulated from now on, with no events."""


@dataclass(frozen=True, slots=True)
class LiveScenario:
    """How ``twin run --scenario`` plays a scenario's world."""

    hold: bool = False
    """At the scenario's end keep running (the world goes on, no more events); else stop."""


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
    web: WebSettings | None = field(default_factory=WebSettings)
    """None: no dashboard."""
