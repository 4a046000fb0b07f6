"""The Modbus TCP server (pymodbus 3.16, imported here only): the native map and SunSpec.

One pymodbus ``SimDevice`` per unit (one per pack, one for the fleet aggregate) over one
shared block, so FC3 and FC4 read the same registers; a catch-all device 0 answers every other
unit id with exception 0x0B (gateway: no response), as a Victron GX does.

Reads are served from an image the exporter encodes from the hub's newest state when a new
one has arrived (``modbus_map.encode_into``); the time-dependent registers (heartbeat, data
age, the lock) are refreshed on every read. The image is copied into pymodbus's block inside
the device action, so a multi-register read is always one consistent snapshot.

Exceptions (docs/register-map.md): an unmapped address 0x02; a write to a read-only register
0x02 (pymodbus's ``readonly``); a value refused (range, PIN not unlocked, locked out, part of a
32-bit register) 0x03; coils and discrete inputs 0x01; an unknown unit id 0x0B.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from functools import partial
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from twin.exporters.modbus_map import (
    ModbusSettings,
    RegisterMaps,
    UnitInfo,
    UnitLayout,
    WriteError,
    decode_write,
    encode_into,
    fleet_values,
    pack_values,
    unit_layout,
)
from twin.exporters.ports import SettingsPort, StateFeed
from twin.model.pin import LockState, PinResult

log = logging.getLogger(__name__)

_BIT_FUNCTIONS = frozenset({1, 2, 5, 15})
_WRITE_FUNCTIONS = frozenset({6, 16, 23})


class _Unit:
    """One unit id: its layout, its register image and how it gets its values."""

    def __init__(
        self, unit_id: int, layout: UnitLayout, pack_id: str | None, info: UnitInfo
    ) -> None:
        self.unit_id = unit_id
        self.layout = layout
        self.pack_id = pack_id
        """None for the fleet unit."""
        self.info = info
        self.image = [0] * layout.end
        self.values: dict[str, Any] = {}
        self.seen: object = None
        """What the image was encoded from (a state's sequence, or the hub version)."""
        self.ctrl_hb: int | None = None
        self.ctrl_hb_at: float | None = None


class ModbusExporter:
    """Serves the hub's state over Modbus TCP; ``run`` until cancelled."""

    def __init__(
        self,
        feed: StateFeed,
        settings_port: SettingsPort,
        maps: RegisterMaps,
        settings: ModbusSettings,
        cell_counts: dict[str, int],
        version: str = "",
    ) -> None:
        self.feed = feed
        self.settings_port = settings_port
        self.settings = settings
        self.units: dict[int, _Unit] = {}
        for pack_id, unit_id in settings.pack_unit_ids:
            layout = unit_layout(maps, cell_counts[pack_id], fleet=False)
            self.units[unit_id] = _Unit(
                unit_id, layout, pack_id, UnitInfo(unit_id, pack_id, version=version)
            )
        if settings.fleet_unit_id is not None:
            layout = unit_layout(maps, 0, fleet=True)
            self.units[settings.fleet_unit_id] = _Unit(
                settings.fleet_unit_id,
                layout,
                None,
                UnitInfo(settings.fleet_unit_id, "fleet", version=version),
            )
        self.clients = 0
        self.requests = 0
        self.refused_writes = 0
        self.listening = False
        self._server: ModbusTcpServer | None = None
        self._started = 0.0

    # ---- the server ------------------------------------------------------------------------

    def devices(self) -> list[SimDevice]:
        """The pymodbus devices: one per unit, and the 0x0B catch-all."""
        devices = []
        for unit in self.units.values():
            blocks = [
                SimData(address, count, values=0, datatype=DataType.REGISTERS, readonly=not rw)
                for address, count, rw in unit.layout.writable_ranges()
            ]
            devices.append(SimDevice(unit.unit_id, blocks, action=partial(self._action, unit)))
        everything = SimData(0, 65535, values=0, datatype=DataType.REGISTERS)
        devices.append(SimDevice(0, [everything], action=_no_such_unit))
        return devices

    async def run(self) -> None:
        """Listen and serve until cancelled; an address that cannot be bound is retried."""
        loop = asyncio.get_running_loop()
        self._started = loop.time()
        address = (self.settings.host, self.settings.port)
        while True:
            server = ModbusTcpServer(
                self.devices(), address=address, trace_connect=self._on_connect
            )
            try:
                await server.serve_forever(background=True)
            except (OSError, RuntimeError) as exc:
                log.error(
                    "modbus: cannot listen on %s:%d (%s); retrying in %.0f s",
                    *address,
                    exc,
                    self.settings.retry_s,
                )
                await server.shutdown()  # type: ignore[no-untyped-call]
                await asyncio.sleep(self.settings.retry_s)
                continue
            self._server = server
            self.listening = True
            log.info(
                "modbus: listening on %s:%d, units %s",
                *address,
                ", ".join(f"{u.unit_id} ({u.pack_id or 'fleet'})" for u in self.units.values()),
            )
            try:
                await server.serving
            finally:
                self.listening = False
                await server.shutdown()  # type: ignore[no-untyped-call]
            return

    def status(self) -> str:
        """For the status line."""
        if not self.listening:
            return "modbus: not listening"
        return f"modbus {self.settings.host}:{self.settings.port} {self.clients} clients"

    def _on_connect(self, connected: bool) -> None:
        self.clients += 1 if connected else -1

    # ---- the device action -----------------------------------------------------------------

    async def _action(
        self,
        unit: _Unit,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        self.requests += 1
        if function_code in _BIT_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if set_values is not None and function_code in _WRITE_FUNCTIONS:
            result = self._write(unit, address, [int(v) for v in set_values])
            if result is not None:
                self.refused_writes += 1
                return result
        self.refresh(unit)
        offset = address - start_address
        registers[offset : offset + count] = unit.image[address : address + count]
        if set_values is not None:
            # A write (or FC23's write part) echoes what it wrote: pymodbus copies set_values
            # into the block after the action; keep it equal to what the twin holds now.
            set_values[:] = unit.image[address : address + len(set_values)]  # type: ignore[assignment]
        return None

    def refresh(self, unit: _Unit) -> None:
        """Encode the unit's image from the newest state, and its time-dependent registers."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        if unit.pack_id is not None:
            state = self.feed.latest(unit.pack_id)
            mark: object = None if state is None else state.sequence
            if mark != unit.seen or not unit.values:
                unit.values = pack_values(state, unit.info)
                unit.seen = mark
                encode_into(unit.image, unit.layout, unit.values)
            values = unit.values
            published = self.feed.published_at(unit.pack_id)
            age = None if state is None else state.data_age_s
            if age is not None and published is not None:
                age += max(0.0, now - published)
            values["data_age_s"] = None if age is None else min(age, 6553.4)
            guard = self.settings_port.pin_guard(unit.pack_id)
            values["lock_state"] = guard.state(now).value
            values["lock_remaining_s"] = int(guard.remaining_s(now) + 0.999)
            values["wrong_pins"] = min(guard.wrong_total, 65534)
        else:
            mark = self.feed.version
            if mark != unit.seen or not unit.values:
                unit.values = fleet_values(self.feed.fleet, self.feed.pack_ids, unit.info)
                unit.seen = mark
                encode_into(unit.image, unit.layout, unit.values)
            values = unit.values
        values["heartbeat"] = int(now - self._started) % 65535
        values["ctrl_hb"] = unit.ctrl_hb
        if self._ctrl_hb_lost(unit, now):
            values["sunspec.evt1"] = int(values.get("sunspec.evt1") or 0) | 1
            encode_into(unit.image, unit.layout, values)
        encode_into(unit.image, unit.layout, values, only=unit.layout.dynamic)

    def _ctrl_hb_lost(self, unit: _Unit, now: float) -> bool:
        timeout = self.settings.ctrl_hb_timeout_s
        return (
            timeout is not None and unit.ctrl_hb_at is not None and now - unit.ctrl_hb_at > timeout
        )

    # ---- writes -----------------------------------------------------------------------------

    def _write(self, unit: _Unit, address: int, words: Sequence[int]) -> ExcCodes | None:
        try:
            values = decode_write(unit.layout, address, words)
        except WriteError as exc:
            log.warning("modbus: unit %d: write at %d refused: %s", unit.unit_id, address, exc)
            return ExcCodes.ILLEGAL_VALUE
        now = asyncio.get_running_loop().time()
        settings: dict[str, float] = {}
        for key, value in values.items():
            if key == "unlock":
                refused = self._unlock(unit, int(value), now)
                if refused is not None:
                    return refused
            elif key == "ctrl_hb":
                unit.ctrl_hb, unit.ctrl_hb_at = int(value), now
            elif key == "alarm_reset":
                if value not in (0, 1):
                    return self._refuse(unit, f"AlmRst {value:g} is not 0 or 1")
            elif key.startswith("setting."):
                settings[key.removeprefix("setting.")] = value
        if settings:
            if unit.pack_id is None:
                return self._refuse(unit, "the fleet unit has no settings")
            guard = self.settings_port.pin_guard(unit.pack_id)
            state = guard.state(now)
            if state is not LockState.UNLOCKED:
                return self._refuse(unit, f"settings are {state.name.lower()}: write the PIN first")
            try:
                self.settings_port.apply_settings(unit.pack_id, settings)
            except ValueError as exc:
                return self._refuse(unit, str(exc))
            log.info(
                "modbus: unit %d (%s): settings %s written", unit.unit_id, unit.pack_id, settings
            )
            # The settings registers read back the new values at once (the next state carries
            # them too).
            self._reencode_settings(unit, settings)
        return None

    def _reencode_settings(self, unit: _Unit, settings: dict[str, float]) -> None:
        for name, value in settings.items():
            unit.values[f"setting.{name}"] = value
        encode_into(unit.image, unit.layout, unit.values)

    def _unlock(self, unit: _Unit, number: int, now: float) -> ExcCodes | None:
        if unit.pack_id is None:
            return self._refuse(unit, "the fleet unit has no settings to unlock")
        guard = self.settings_port.pin_guard(unit.pack_id)
        if number == 0:
            guard.lock()
            return None
        result = guard.attempt(guard.matches_number(number), now)
        if result is PinResult.UNLOCKED:
            log.info("modbus: unit %d (%s): settings unlocked", unit.unit_id, unit.pack_id)
            return None
        if result is PinResult.LOCKED_OUT:
            return self._refuse(unit, "wrong PIN: locked out for 5 minutes")
        return self._refuse(unit, "wrong PIN")

    def _refuse(self, unit: _Unit, why: str) -> ExcCodes:
        log.warning("modbus: unit %d: write refused: %s", unit.unit_id, why)
        return ExcCodes.ILLEGAL_VALUE


async def _no_such_unit(
    function_code: int,
    start_address: int,
    address: int,
    count: int,
    registers: list[int],
    set_values: list[int] | list[bool] | None,
) -> ExcCodes:
    """Every unit id the twin does not serve: 0x0B, as a gateway with nothing behind it."""
    return ExcCodes.GATEWAY_NO_RESPONSE
