"""What an exporter needs from the service, as Protocols (the service implements them).

Exporters never import ``twin.app``: they are handed a ``StateFeed`` (the latest-value hub,
holding each state's readout) and a ``SettingsPort`` (validated settings writes behind each
pack's PIN guard); the service holds them as a list of ``Exporter``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from twin.model.pin import PinGuard
from twin.model.settings import BmsSettings
from twin.protocol.readout import FleetReadout, PackReadout


class Exporter(Protocol):
    """What the service runs and shows of each exporter."""

    async def run(self) -> None:
        """Serve until cancelled (failures are retried inside, with a backoff)."""
        ...

    def status(self) -> str:
        """A few words for the status line."""
        ...


class StateFeed(Protocol):
    """The newest readout of every pack and of the fleet (one per state, built once)."""

    pack_ids: tuple[str, ...]
    fleet: FleetReadout
    version: int

    def pack(self, pack_id: str) -> PackReadout | None:
        """The newest readout of a pack; None before its first state."""
        ...

    def packs(self) -> Mapping[str, PackReadout]:
        """The newest readout of every pack that has a state."""
        ...

    def published_at(self, pack_id: str) -> float | None:
        """When (event-loop time) the newest snapshot of a pack was published."""
        ...

    async def wait(self, seen_version: int) -> int:
        """Wait for a version newer than ``seen_version``; returns the current one."""
        ...


class SettingsPort(Protocol):
    """Remote writes: the PIN guard of each pack, validated settings, clearing the counters."""

    def pin_guard(self, pack_id: str) -> PinGuard:
        """The pack's guard, shared by every interface."""
        ...

    def settings(self, pack_id: str) -> BmsSettings:
        """The settings the pack's twin runs with now (written ones included)."""
        ...

    def apply_settings(self, pack_id: str, values: dict[str, float]) -> None:
        """Apply and persist writable settings; ``ValueError`` names a value refused."""
        ...

    def clear_counters(self, pack_id: str) -> None:
        """The app's "clear energy counters" on the pack's twin (and its emulated BMS)."""
        ...


class CommandPort(SettingsPort, Protocol):
    """What MQTT commands reach besides settings and counters: an emulated pack's faults."""

    def emulated(self, pack_id: str) -> bool:
        """The pack is an emulated chain (faults can be injected into it)."""
        ...

    def inject_fault(
        self, pack_id: str, name: str, params: Mapping[str, object]
    ) -> dict[str, object]:
        """Inject an emulator fault; returns its parameters. ``ValueError`` names a bad one."""
        ...

    def clear_fault(self, pack_id: str, name: str, params: Mapping[str, object]) -> list[str]:
        """Clear an emulator fault (all of its kind, or the one a parameter picks)."""
        ...

    def fault_kinds(self) -> dict[str, dict[str, object]]:
        """The live faults there are, by name.

        Each: its description, required and optional parameters (with defaults) and the
        parameter that picks one of several.
        """
        ...

    def active_faults(self, pack_id: str) -> dict[str, dict[str, object]]:
        """The emulator faults in effect now."""
        ...

    def set_plant(self, pack_id: str, name: str, value: float, timeout_s: float | None) -> None:
        """A plant setpoint of an emulated pack; ``ValueError`` names a bad one."""
        ...

    def clear_plant(self, pack_id: str, name: str) -> bool:
        """A plant setpoint back to the profile; False when it was not set."""
        ...

    def plant_setpoints(self, pack_id: str) -> dict[str, float]:
        """The plant setpoints in effect now (none for a real BMS)."""
        ...
