"""A stand-in for the service behind the exporters: one real (not emulated) pack's port."""

from __future__ import annotations

from collections.abc import Mapping

from twin.model.pin import PinGuard
from twin.model.settings import BmsSettings, with_settings


class PackPort:
    """A ``CommandPort`` (and so a ``SettingsPort``) over one pack with PIN 4321.

    Settings are validated as the service does; cleared counters are counted; the pack is not
    emulated, so fault commands must never reach it.
    """

    def __init__(self, settings: BmsSettings) -> None:
        self.guard = PinGuard("4321")
        self.current = settings
        self.cleared = 0

    def pin_guard(self, pack_id: str) -> PinGuard:
        return self.guard

    def settings(self, pack_id: str) -> BmsSettings:
        return self.current

    def apply_settings(self, pack_id: str, values: dict[str, float]) -> None:
        self.current = with_settings(self.current, values)

    def clear_counters(self, pack_id: str) -> None:
        self.cleared += 1

    def emulated(self, pack_id: str) -> bool:
        return False

    def inject_fault(
        self, pack_id: str, name: str, params: Mapping[str, object]
    ) -> dict[str, object]:
        raise AssertionError("never called for a pack that is not emulated")

    def clear_fault(self, pack_id: str, name: str, params: Mapping[str, object]) -> list[str]:
        raise AssertionError("never called for a pack that is not emulated")

    def active_faults(self, pack_id: str) -> dict[str, dict[str, object]]:
        return {}

    def fault_kinds(self) -> dict[str, dict[str, object]]:
        return {}

    def set_plant(self, pack_id: str, name: str, value: float, timeout_s: float | None) -> None:
        raise AssertionError("never called for a pack that is not emulated")

    def clear_plant(self, pack_id: str, name: str) -> bool:
        raise AssertionError("never called for a pack that is not emulated")

    def plant_setpoints(self, pack_id: str) -> dict[str, float]:
        return {}
