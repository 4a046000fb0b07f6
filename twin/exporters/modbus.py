"""The Modbus TCP server (pymodbus 3.16, imported here only): the native map and SunSpec.

One pymodbus ``SimDevice`` per unit (one per pack, one for the fleet aggregate) over one
shared block, so FC3 and FC4 read the same registers; a catch-all device 0 answers every other
unit id with exception 0x0B (gateway: no response), as a Victron GX does.

Reads are served from pymodbus's own block of each unit: the device action (the documented
hook that receives the block "to modify inline") encodes the hub's newest state into it on the
first read after a new state arrived (``modbus_map.encode_into``), and a 0.1 s tick refreshes
the time-dependent registers (heartbeat, data age, the lock). A read in between costs the
action call and a flag test. Nothing awaits inside the action, so a multi-register read is
always one consistent snapshot.

Exceptions (docs/register-map.md): an unmapped address 0x02; a write to a read-only register
0x02 (pymodbus's ``readonly``); a value refused (range, PIN not unlocked, locked out, part of a
32-bit register) 0x03; coils and discrete inputs 0x01; an unknown unit id 0x0B.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.simulator import DataType, SimData, SimDevice
from pymodbus.simulator.simdevice import SimAction

from twin.errors import StartupError, WriteError
from twin.exporters.modbus_map import (
    PLANT_SETPOINT_NAMES,
    ModbusSettings,
    RegisterMaps,
    UnitInfo,
    UnitLayout,
    decode_write,
    encode_into,
    fleet_values,
    pack_values,
    unit_layout,
)
from twin.exporters.modbus_tcp import HardenedTcpServer, ensure_descriptors
from twin.exporters.ports import CommandPort, StateFeed
from twin.model.pin import LockState, PinResult
from twin.retry import Backoff

log = logging.getLogger(__name__)

_BIT_FUNCTIONS = frozenset({1, 2, 5, 15})
_WRITE_FUNCTIONS = frozenset({6, 16, 23})
_MASK_WRITE = 22


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
        self.image: list[int] = [0] * layout.end
        """The registers: pymodbus's block of this unit once the first request has come."""
        self.base = 0
        """The address of ``image[0]``."""
        self.values: dict[str, Any] = {}
        self.sfs: dict[str, int] = {}
        self.ctrl_hb: int | None = None
        self.ctrl_hb_at: float | None = None
        self.ctrl_hb_alarm = False
        self.plant_timeout_s: float | None = None
        """The timeout of the plant setpoints written next (register ``plant_timeout``)."""
        self.dirty = True
        """A new state has arrived since the image was encoded."""


class ModbusExporter:
    """Serves the hub's state over Modbus TCP; ``run`` until cancelled."""

    def __init__(
        self,
        feed: StateFeed,
        settings_port: CommandPort,
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
        self.refused_writes = 0
        self.listening = False
        self._server: HardenedTcpServer | None = None
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
            devices.append(SimDevice(unit.unit_id, blocks, action=self._action_of(unit)))
        everything = SimData(0, 65535, values=0, datatype=DataType.REGISTERS)
        devices.append(SimDevice(0, [everything], action=_no_such_unit))
        return devices

    async def start(self) -> None:
        """Listen now; ``StartupError`` (one line) when the address cannot be had.

        The service calls it before anything else runs, so that a port in use stops ``twin
        run`` at once with exit code 2 instead of a silent retry loop.
        """
        address = (self.settings.host, self.settings.port)
        server = self._new_server()
        try:
            await server.serve_forever(background=True)
        except (OSError, RuntimeError) as exc:
            await server.shutdown()  # type: ignore[no-untyped-call]
            raise StartupError(
                f"modbus: cannot listen on {address[0]}:{address[1]} ({_bind_reason(exc)}); "
                "is another twin or Modbus server running there? ([modbus] port)"
            ) from exc
        self._server = server
        self.listening = True  # bound: clients are taken in from now on

    def _new_server(self) -> HardenedTcpServer:
        return HardenedTcpServer(
            self.devices(),
            address=(self.settings.host, self.settings.port),
            max_connections=ensure_descriptors(self.settings.max_connections),
            idle_timeout_s=self.settings.idle_timeout_s,
            trace_connect=self._on_connect,
        )

    async def run(self) -> None:
        """Serve until cancelled (listening first if ``start`` was not called).

        An address that cannot be bound here (not at start) is retried every ``retry_s``.
        """
        self._started = time.monotonic()
        address = (self.settings.host, self.settings.port)
        backoff = Backoff(self.settings.retry_s, self.settings.retry_s)
        while self._server is None:
            try:
                await self.start()
            except StartupError as exc:
                log.error("%s; retrying in %.0f s", exc, backoff.delay_s)
                await backoff.wait()
        server = self._server
        self.listening = True
        log.info(
            "modbus: listening on %s:%d, units %s (at most %d connections)",
            *address,
            ", ".join(f"{u.unit_id} ({u.pack_id or 'fleet'})" for u in self.units.values()),
            self.settings.max_connections,
        )
        helpers = [asyncio.create_task(self._follow_feed()), asyncio.create_task(self._tick())]
        try:
            await server.serving
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            self.listening = False
            self._server = None
            await server.shutdown()  # type: ignore[no-untyped-call]

    async def _follow_feed(self) -> None:
        """Mark every unit for encoding when the hub has a new state (encoded on the next read)."""
        version = -1
        while True:
            version = await self.feed.wait(version)
            for unit in self.units.values():
                unit.dirty = True

    async def _tick(self, interval_s: float = 0.1) -> None:
        """The time-dependent registers: heartbeat, data age, the lock, the CtrlHb watchdog."""
        while True:
            await asyncio.sleep(interval_s)
            now = time.monotonic()
            if self._server is not None:
                self._server.sweep(now)
            for unit in self.units.values():
                if unit.ctrl_hb_alarm != self._ctrl_hb_lost(unit, now):
                    unit.dirty = True
                elif unit.values:
                    self._update_dynamic(unit, now)

    def status(self) -> str:
        """For the status line."""
        if not self.listening:
            return "modbus: not listening"
        return f"modbus {self.settings.host}:{self.settings.port} {self.clients} clients"

    def _on_connect(self, connected: bool) -> None:
        self.clients += 1 if connected else -1

    # ---- the device action -----------------------------------------------------------------

    def _action_of(self, unit: _Unit) -> SimAction:
        """The device action of ``unit`` (a closure: every request calls it)."""
        handle = self._handle

        async def unit_action(
            function_code: int,
            start_address: int,
            address: int,
            count: int,
            registers: list[int],
            set_values: list[int] | list[bool] | None,
        ) -> ExcCodes | None:
            return handle(unit, function_code, start_address, address, count, registers, set_values)

        return unit_action

    def _handle(
        self,
        unit: _Unit,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        if function_code in _BIT_FUNCTIONS:
            return ExcCodes.ILLEGAL_FUNCTION
        if function_code == _MASK_WRITE:
            return self._refuse_mask_write(unit)
        if unit.image is not registers:
            # The first request: from now on the twin encodes into pymodbus's block itself.
            unit.image, unit.base, unit.dirty = registers, start_address, True
        if unit.dirty:
            self.refresh(unit)
        if set_values is not None and function_code in _WRITE_FUNCTIONS:
            result = self._write(unit, address, [int(v) for v in set_values])
            if result is not None:
                self.refused_writes += 1
                self._update_dynamic(unit, time.monotonic())  # the lock registers, at once
                return result
            # pymodbus copies set_values into the block after the action: make them what the
            # twin holds now (a setting as it was accepted, the unlock register as 0).
            offset = address - start_address
            set_values[:] = registers[offset : offset + len(set_values)]  # type: ignore[assignment]
        return None

    def refresh(self, unit: _Unit) -> None:
        """Encode the unit's whole image from the newest state.

        The read path calls it when a new state has arrived; reads in between cost nothing.
        """
        # time.monotonic() is the event loop's clock, without get_running_loop() (which costs a
        # getpid() system call).
        now = time.monotonic()
        lost = self._ctrl_hb_lost(unit, now)
        if unit.pack_id is not None:
            unit.values = pack_values(self.feed.pack(unit.pack_id), unit.info)
            unit.values["plant.timeout_s"] = unit.plant_timeout_s or 0
            unit.values["plant.clear"] = 0
        else:
            unit.values = fleet_values(self.feed.fleet, unit.info)
        if lost:
            # The controller stopped writing CtrlHb: Evt1 bit 0 (communication error).
            unit.values["sunspec.evt1"] = int(unit.values.get("sunspec.evt1") or 0) | 1
        unit.ctrl_hb_alarm = lost
        unit.dirty = False
        unit.sfs = encode_into(unit.image, unit.layout, unit.values, base=unit.base)
        self._update_dynamic(unit, now)

    def _update_dynamic(self, unit: _Unit, now: float) -> None:
        values = unit.values
        if unit.pack_id is not None:
            readout = self.feed.pack(unit.pack_id)
            published = self.feed.published_at(unit.pack_id)
            age = None if readout is None else readout.data_age_s
            if age is not None and published is not None:
                age += max(0.0, now - published)
            values["data_age_s"] = None if age is None else min(age, 6553.4)
            guard = self.settings_port.pin_guard(unit.pack_id)
            values["lock_state"] = guard.state(now).value
            values["lock_remaining_s"] = int(guard.remaining_s(now) + 0.999)
            values["wrong_pins"] = min(guard.wrong_total, 65534)
        values["heartbeat"] = int(now - self._started) % 65535
        values["ctrl_hb"] = unit.ctrl_hb
        encode_into(
            unit.image, unit.layout, values, only=unit.layout.dynamic, sfs=unit.sfs, base=unit.base
        )

    def _ctrl_hb_lost(self, unit: _Unit, now: float) -> bool:
        """The controller wrote CtrlHb once and then stopped for longer than the timeout."""
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
        now = time.monotonic()
        settings: dict[str, float] = {}
        plant: dict[str, float] = {}
        clear = False
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
            elif key == "clear_counters":
                if value not in (0, 1):
                    return self._refuse(unit, f"clear_counters {value:g} is not 0 or 1")
                clear = value == 1
            elif key.startswith("setting."):
                settings[key.removeprefix("setting.")] = value
            elif key.startswith("plant."):
                plant[key.removeprefix("plant.")] = value
        if plant:
            refused = self._write_plant(unit, plant)
            if refused is not None:
                return refused
        if settings or clear:
            if unit.pack_id is None:
                return self._refuse(unit, "the fleet unit has no settings or counters to clear")
            guard = self.settings_port.pin_guard(unit.pack_id)
            state = guard.state(now)
            if state is not LockState.UNLOCKED:
                return self._refuse(unit, f"settings are {state.name.lower()}: write the PIN first")
        if settings:
            assert unit.pack_id is not None
            try:
                self.settings_port.apply_settings(unit.pack_id, settings)
            except ValueError as exc:
                return self._refuse(unit, str(exc))
            log.info(
                "modbus: unit %d (%s): settings %s written", unit.unit_id, unit.pack_id, settings
            )
        if clear:
            assert unit.pack_id is not None
            self.settings_port.clear_counters(unit.pack_id)
            log.info("modbus: unit %d (%s): energy totals cleared", unit.unit_id, unit.pack_id)
        # The registers read back what was written (settings as held, the lock state) at once.
        self.refresh(unit)
        return None

    def _write_plant(self, unit: _Unit, values: dict[str, float]) -> ExcCodes | None:
        """Plant setpoints of an emulated pack (no PIN: the simulated world, not the BMS)."""
        pack_id = unit.pack_id
        if pack_id is None:
            return self._refuse(unit, "the fleet unit has no plant: use a pack's unit")
        if not self.settings_port.emulated(pack_id):
            log.warning(
                "modbus: unit %d: plant write refused: %s is not emulated (its plant is real)",
                unit.unit_id,
                pack_id,
            )
            return ExcCodes.ILLEGAL_ADDRESS
        # The timeout first: it applies to the setpoints written with it.
        if "timeout_s" in values:
            timeout = values.pop("timeout_s")
            unit.plant_timeout_s = timeout if timeout > 0 else None
        if "clear" in values:
            if values.pop("clear") != 1:
                return self._refuse(unit, "plant_clear takes 1 (every setpoint to the profile)")
            for name in PLANT_SETPOINT_NAMES:
                self.settings_port.clear_plant(pack_id, name)
        for name, value in values.items():
            try:
                self.settings_port.set_plant(pack_id, name, value, unit.plant_timeout_s)
            except ValueError as exc:
                return self._refuse(unit, str(exc))
        return None

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

    def _refuse_mask_write(self, unit: _Unit) -> ExcCodes:
        """FC22 is not served, and on a pack it counts as a wrong PIN.

        pymodbus applies a mask write to its block without the write path (the PIN, the
        checks); no client needs it for settings (FC6 / FC16 write them), so a masked write is
        an attempt to get past the lock and counts towards the lockout like a wrong PIN.
        """
        if unit.pack_id is not None:
            guard = self.settings_port.pin_guard(unit.pack_id)
            now = time.monotonic()
            guard.authorize(False, now)
            self._update_dynamic(unit, now)
        self.refused_writes += 1
        log.warning("modbus: unit %d: mask write (FC22) refused: not supported", unit.unit_id)
        return ExcCodes.ILLEGAL_FUNCTION

    def _refuse(self, unit: _Unit, why: str) -> ExcCodes:
        log.warning("modbus: unit %d: write refused: %s", unit.unit_id, why)
        return ExcCodes.ILLEGAL_VALUE


def _bind_reason(exc: BaseException) -> str:
    """Why a listen failed, in words (pymodbus wraps the socket error in a RuntimeError)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    if isinstance(cause, OSError):
        return cause.strerror or str(cause)
    return "address in use or not available"


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
