"""The CAN exporter (python-can and cantools): the inverter link and the native twin frames.

Any python-can bus (``socketcan`` on ``vcan0``, ``virtual``, ``udp_multicast``, serial
adapters, ...) from ``[can]``. Every frame has its own schedule (``due = start + k x cycle``,
so sends never drift however late a loop turn is); the inverter frames carry the fleet
aggregate with the profile's quirks (``can_map``), the native frames each pack. Stale data
sends fail-safe values (CCL = DCL = 0, the communication alarm). A send that fails is counted
and the frame is sent again at its next due time; a bus that keeps failing (bus-off, adapter
gone) is closed and opened again after ``retry_s``; the twin never stops for it.

The inverter's 0x305 is watched with ``heartbeat_timeout_s``: the action is a log line, the
communication alarm in the frames, or fail-safe limits. With ``silent_until_inverter`` nothing
is sent before the inverter has sent a frame.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import can
import cantools
from cantools.database.can import Database

from twin.errors import BusError
from twin.exporters.can_map import (
    NATIVE_OFFSETS,
    PLANT_COMMAND_OFFSET,
    PLANT_SETPOINT_CODES,
    CanSettings,
    HeartbeatAction,
    decode_plant_command,
    encode_frames,
    encode_native,
    inverter_values,
    native_cell_values,
    native_values,
    resolve_profile,
)
from twin.exporters.ports import CommandPort, StateFeed
from twin.model.limits import LimitFlag
from twin.protocol.readout import FleetReadout
from twin.retry import Backoff

log = logging.getLogger(__name__)

#: A python-can bus, for the modules that hand one out without importing python-can.
Bus = can.BusABC

#: Consecutive failed sends after which the bus is closed and opened again.
MAX_SEND_FAILURES = 20
#: The inverter's frames (received).
INVERTER_IDS = frozenset({0x305, 0x306, 0x307})
CELL_CYCLE_S = 0.1


def load_dbc(name: str) -> Database:
    """One of the DBC files shipped in ``twin.dbc``, loaded strictly."""
    path = Path(str(resources.files("twin.dbc") / name))
    database = cantools.database.load_file(path, strict=True)
    assert isinstance(database, Database)
    return database


def describe_dbc(path: str | None = None) -> str:
    """``twin dbc``: the messages and signals of a DBC (the shipped ones by default)."""
    files = (
        [Path(path)]
        if path
        else [
            Path(str(resources.files("twin.dbc") / n))
            for n in ("inverter.dbc", "inverter_solark.dbc", "twin.dbc")
        ]
    )
    lines: list[str] = []
    for file in files:
        database = cantools.database.load_file(file, strict=True)
        assert isinstance(database, Database)
        lines.append(f"{file.name}:")
        for message in database.messages:
            cycle = f", every {message.cycle_time} ms" if message.cycle_time else ""
            senders = ",".join(message.senders) or "-"
            lines.append(
                f"  {message.frame_id:#05x} {message.name} ({message.length} bytes, "
                f"from {senders}{cycle})"
            )
            signals = message.signals
            if len(signals) > 24:
                lines.append(f"      {len(signals)} signals (multiplexed)")
                signals = signals[:4]
            for s in signals:
                unit = f" {s.unit}" if s.unit else ""
                kind = "signed" if s.is_signed else "unsigned"
                lines.append(
                    f"      {s.name}: bits {s.start}+{s.length} {kind}, x{s.scale:g}"
                    f"{'+' + format(s.offset, 'g') if s.offset else ''}{unit}"
                )
    return "\n".join(lines) + "\n"


#: Due times kept per frame (``CanExporter.inverter_slots``): a minute of a 1 s frame.
SLOTS_RECORDED = 64


class _Schedule:
    """When each frame is next due (no drift: due times step by whole cycles)."""

    def __init__(self, start: float, record: int = 0) -> None:
        self.start = start
        self._due: dict[object, tuple[float, float]] = {}
        self.record = record
        self.slots: dict[object, collections.deque[float]] = {}
        """Per key, the due times it was last sent for (the ``record`` newest): its schedule
        as the exporter kept it, whatever the wall clock or the load did."""

    def due(self, key: object, cycle_s: float, now: float) -> bool:
        """Whether ``key`` is due at ``now``; if so, its next due time is set."""
        entry = self._due.get(key)
        if entry is None:
            # A frame's grid starts when it is first sent (a pack's first state may come late).
            self._due[key] = (now + cycle_s, cycle_s)
            self._note(key, now)
            return True
        next_s, _ = entry
        if now < next_s:
            return False
        # Skip whole cycles that were missed (a stalled loop), never send a burst.
        missed = int((now - next_s) // cycle_s) + 1
        self._due[key] = (next_s + missed * cycle_s, cycle_s)
        self._note(key, next_s + (missed - 1) * cycle_s)
        return True

    def _note(self, key: object, slot_s: float) -> None:
        if self.record:
            slots = self.slots.get(key)
            if slots is None:
                slots = self.slots[key] = collections.deque(maxlen=self.record)
            slots.append(slot_s)

    def next_time(self) -> float:
        """The earliest due time."""
        return min((d for d, _ in self._due.values()), default=self.start)


#: python-can's udp_multicast default hop limit (1) sends every frame out of the host on the
#: default interface: the twin's default is host-local (0: delivered to this host's sockets
#: only). A bus meant for the LAN says so with ``options = { hop_limit = 1 }``.
HOST_LOCAL_HOP_LIMIT = 0


def bus_arguments(
    interface: str, options: Mapping[str, str | int | float | bool] | None
) -> dict[str, Any]:
    """python-can's extra ``Bus`` arguments: the options, udp_multicast kept on this host."""
    arguments: dict[str, Any] = dict(options or {})
    if interface == "udp_multicast":
        arguments.setdefault("hop_limit", HOST_LOCAL_HOP_LIMIT)
    return arguments


def _reach(settings: CanSettings) -> str:
    """How far a udp_multicast bus reaches, for the log."""
    if settings.interface != "udp_multicast":
        return ""
    hops = bus_arguments(settings.interface, dict(settings.bus_options))["hop_limit"]
    return " (host-local: hop limit 0)" if hops == 0 else f" (hop limit {hops}: leaves the host)"


def open_bus(settings: CanSettings) -> can.BusABC:
    """The twin's bus of ``[can]`` (host-local for udp_multicast unless told otherwise)."""
    arguments = bus_arguments(settings.interface, dict(settings.bus_options))
    if settings.bitrate is not None and settings.interface not in (
        "virtual",
        "udp_multicast",
        "socketcan",
    ):
        arguments.setdefault("bitrate", settings.bitrate)
    return can.Bus(interface=settings.interface, channel=settings.channel, **arguments)


class CanExporter:
    """Sends the hub's state on a CAN bus; ``run`` until cancelled."""

    def __init__(
        self,
        feed: StateFeed,
        settings: CanSettings,
        pack_index: dict[str, int],
        port: CommandPort | None = None,
    ) -> None:
        self.feed = feed
        self.settings = settings
        self.pack_index = pack_index
        self.port = port
        """Where plant commands received go (None: they are not listened to)."""
        self._plant_ids = {
            settings.native_base_id + 0x10 * index + PLANT_COMMAND_OFFSET: pack_id
            for pack_id, index in pack_index.items()
        }
        self.commands_received = 0
        self.commands_refused = 0
        self.profile = resolve_profile(
            settings, load_dbc("inverter.dbc"), load_dbc("inverter_solark.dbc")
        )
        self.twin_db = load_dbc("twin.dbc")
        self.frames_sent = 0
        self.send_errors = 0
        self.frames_received = 0
        self.inverter_seen_at: float | None = None
        self.heartbeat_lost = False
        self.open = False
        self._bus: can.BusABC | None = None
        self._cell_next: dict[str, int] = {}
        self._failures = 0
        self._started = time.monotonic()
        self._warned: set[str] = set()
        self._schedule: _Schedule | None = None
        self.transmit_cycles = 0
        """Turns of the send loop (sending or not): a test sees the exporter at work."""

    def status(self) -> str:
        """For the status line."""
        s = self.settings
        if not self.open:
            return f"can {s.interface}:{s.channel} closed"
        lost = " inverter lost" if self.heartbeat_lost else ""
        return f"can {s.interface}:{s.channel} {self.frames_sent} sent{lost}"

    # ---- the bus ------------------------------------------------------------------------

    def _open_bus(self) -> can.BusABC:
        """The bus, or ``BusError`` (python-can's exceptions mapped at this edge)."""
        try:
            return open_bus(self.settings)
        except (can.CanError, OSError, ValueError, ImportError) as exc:
            raise BusError(
                f"cannot open {self.settings.interface}:{self.settings.channel} ({exc})"
            ) from exc

    async def run(self) -> None:
        """Open the bus (again after a failure) and send and receive until cancelled."""
        backoff = Backoff(self.settings.retry_s, self.settings.retry_s)
        while True:
            try:
                bus = await asyncio.to_thread(self._open_bus)
            except BusError as exc:
                log.error("can: %s; retrying in %.0f s", exc, backoff.delay_s)
                await backoff.wait()
                continue
            self._bus, self.open, self._failures = bus, True, 0
            log.info(
                "can: %s:%s open, profile %s%s",
                self.settings.interface,
                self.settings.channel,
                self.settings.profile.value,
                _reach(self.settings),
            )
            try:
                await self._serve(bus)
            except BusError as exc:
                log.error("can: %s; reopening in %.0f s", exc, backoff.delay_s)
            finally:
                self.open = False
                self._bus = None
                await asyncio.to_thread(bus.shutdown)
            await backoff.wait()

    async def _serve(self, bus: can.BusABC) -> None:
        loop = asyncio.get_running_loop()
        reader = can.AsyncBufferedReader()
        notifier = can.Notifier(bus, [reader], loop=loop)
        receiving = asyncio.create_task(self._receive(reader))
        try:
            await self._transmit(bus)
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)
            notifier.stop()

    async def _receive(self, reader: can.AsyncBufferedReader) -> None:
        async for message in reader:
            self.frames_received += 1
            if message.is_error_frame or message.is_extended_id:
                continue
            if message.arbitration_id in INVERTER_IDS:
                if self.inverter_seen_at is None:
                    log.info("can: the inverter speaks (%#05x)", message.arbitration_id)
                self.inverter_seen_at = time.monotonic()
            pack_id = self._plant_ids.get(message.arbitration_id)
            if pack_id is not None and self.port is not None:
                self.plant_command(pack_id, bytes(message.data))

    def plant_command(self, pack_id: str, data: bytes) -> bool:
        """Carry out a received plant command frame; a bad one is logged and counted."""
        self.commands_received += 1
        port = self.port
        assert port is not None
        try:
            if not port.emulated(pack_id):
                raise ValueError(f"{pack_id} is not an emulated pack: its plant is real")
            command = decode_plant_command(self.twin_db, data)
            if command.setpoint is None:
                for name in PLANT_SETPOINT_CODES.values():
                    port.clear_plant(pack_id, name)
            elif command.value is None:
                port.clear_plant(pack_id, command.setpoint)
            else:
                port.set_plant(pack_id, command.setpoint, command.value, command.timeout_s)
        except ValueError as exc:
            self.commands_refused += 1
            log.warning("can: plant command for %s refused: %s", pack_id, exc)
            return False
        return True

    # ---- sending ------------------------------------------------------------------------

    async def _transmit(self, bus: can.BusABC) -> None:
        s = self.settings
        schedule = _Schedule(time.monotonic(), record=SLOTS_RECORDED)
        self._schedule = schedule
        while True:
            now = time.monotonic()
            self.transmit_cycles += 1
            self._watch_heartbeat(now)
            if s.silent_until_inverter and self.inverter_seen_at is None:
                await asyncio.sleep(0.05)
                continue
            for frame_id, data in self.compose(now, schedule):
                self._send(bus, frame_id, data)
            await asyncio.sleep(max(0.0, min(schedule.next_time(), now + 0.05) - time.monotonic()))

    def compose(self, now: float, schedule: _Schedule | None = None) -> list[tuple[int, bytes]]:
        """The frames due at ``now`` (every frame when no schedule is given), encoded."""
        schedule = schedule if schedule is not None else _Schedule(now - 3600.0)
        frames = self._inverter_frames(now, schedule)
        if self.settings.native:
            frames += self._native_frames(now, schedule)
        return frames

    def send(self, bus: can.BusABC, frames: list[tuple[int, bytes]]) -> None:
        """Send ``frames`` (counted; failures counted too)."""
        for frame_id, data in frames:
            self._send(bus, frame_id, data)

    def _send(self, bus: can.BusABC, frame_id: int, data: bytes) -> None:
        message = can.Message(arbitration_id=frame_id, data=data, is_extended_id=False)
        try:
            bus.send(message, timeout=0.05)
        except (can.CanError, OSError) as exc:
            self.send_errors += 1
            self._failures += 1
            if self._failures == 1:
                log.warning("can: send %#05x failed: %s (retried at its next cycle)", frame_id, exc)
            if self._failures >= MAX_SEND_FAILURES:
                raise BusError(f"{self._failures} sends in a row failed") from exc
            return
        self._failures = 0
        self.frames_sent += 1

    def inverter_slots(self, frame_id: int) -> list[float]:
        """The due times (monotonic s) inverter frame ``frame_id`` was last sent for."""
        schedule = self._schedule
        if schedule is None:
            return []
        return list(schedule.slots.get(("inverter", frame_id), ()))

    def view(self) -> FleetReadout:
        """The fleet as the inverter is told it, with the heartbeat action applied."""
        fleet = self.feed.fleet
        if not self.heartbeat_lost or fleet.alarms is None:
            return fleet
        action = self.settings.heartbeat_action
        if action is HeartbeatAction.LOG:
            return fleet
        alarms = fleet.alarms | LimitFlag.COMMUNICATION
        if action is HeartbeatAction.ALARM:
            return dataclasses.replace(fleet, alarms=alarms)
        return dataclasses.replace(
            fleet,
            alarms=alarms,
            charge_current_limit_a=0.0,
            discharge_current_limit_a=0.0,
            charge_effective=False,
            discharge_effective=False,
        )

    def _inverter_frames(self, now: float, schedule: _Schedule) -> list[tuple[int, bytes]]:
        profile = self.profile
        due = [
            fid
            for fid in profile.spec.frames
            if schedule.due(("inverter", fid), profile.cycles_s[fid], now)
        ]
        if not due:
            return []
        values = inverter_values(self.view(), profile)
        out_of_range: list[str] = []
        frames = encode_frames(
            profile,
            {fid: values[fid] for fid in due if fid in values},  # some withheld while stale
            out_of_range,
        )
        for problem in out_of_range:
            if problem.split(" = ")[0] not in self._warned:
                self._warned.add(problem.split(" = ")[0])
                log.warning(
                    "can: %s does not fit the %s frame: sent as not available "
                    "(the 0x35x family is for packs up to 327 V)",
                    problem,
                    profile.profile.value,
                )
        return frames

    def _native_frames(self, now: float, schedule: _Schedule) -> list[tuple[int, bytes]]:
        frames: list[tuple[int, bytes]] = []
        for pack_id, index in self.pack_index.items():
            readout = self.feed.pack(pack_id)
            if readout is None:
                continue
            base = self.settings.native_base_id + 0x10 * index
            values = native_values(readout)
            emulated = self.port is None or self.port.emulated(pack_id)
            for name, offset in NATIVE_OFFSETS.items():
                if name == "TwinCells" or (name == "TwinPlantSetpoints" and not emulated):
                    continue  # cells below; a real BMS's pack has no plant to show
                message = self.twin_db.get_message_by_name(name)
                cycle = (message.cycle_time or 1000) / 1000.0
                if schedule.due((pack_id, name), cycle, now):
                    frames.append(encode_native(self.twin_db, name, values[name], base + offset))
            cells = readout.cell_count
            if cells and schedule.due((pack_id, "cells"), CELL_CYCLE_S, now):
                start = self._cell_next.get(pack_id, 1)
                for i in range(self.settings.cells_per_cycle):
                    cell = (start - 1 + i) % cells + 1
                    frames.append(
                        encode_native(
                            self.twin_db,
                            "TwinCells",
                            native_cell_values(readout, cell),
                            base + NATIVE_OFFSETS["TwinCells"],
                        )
                    )
                self._cell_next[pack_id] = (start - 1 + self.settings.cells_per_cycle) % cells + 1
        return frames

    def _watch_heartbeat(self, now: float) -> None:
        timeout = self.settings.heartbeat_timeout_s
        if timeout is None:
            return
        # Before the inverter's first frame, the timeout counts from the start.
        seen = self.inverter_seen_at if self.inverter_seen_at is not None else self._started
        lost = now - seen > timeout
        if lost and not self.heartbeat_lost:
            log.warning(
                "can: no frame from the inverter for %.0f s (action: %s)",
                timeout,
                self.settings.heartbeat_action.value,
            )
        elif not lost and self.heartbeat_lost:
            log.info("can: the inverter speaks again")
        self.heartbeat_lost = lost


def monitor(
    interface: str,
    channel: str,
    dbc_path: str | None,
    out: Any,
    *,
    count: int | None = None,
    duration_s: float | None = None,
    bus_options: dict[str, Any] | None = None,
) -> int:
    """``twin can-monitor``: print each frame of a bus decoded (like a decoded candump).

    Returns the number of frames printed. The shipped DBCs are used unless ``dbc_path`` names
    another; a frame no DBC knows is printed raw.
    """
    databases: list[Database]
    if dbc_path:
        database = cantools.database.load_file(dbc_path, strict=True)
        assert isinstance(database, Database)
        databases = [database]
    else:
        databases = [load_dbc("inverter.dbc"), load_dbc("twin.dbc")]
    by_id = {m.frame_id: (db, m) for db in databases for m in db.messages}
    bus = can.Bus(interface=interface, channel=channel, **bus_arguments(interface, bus_options))
    printed = 0
    deadline = None if duration_s is None else time.monotonic() + duration_s
    try:
        while count is None or printed < count:
            timeout = 0.5 if deadline is None else max(0.0, deadline - time.monotonic())
            if deadline is not None and timeout == 0.0:
                break
            message = bus.recv(min(timeout, 0.5))
            if message is None:
                continue
            data = bytes(message.data)
            line = (
                f"{message.timestamp:17.6f}  {message.arbitration_id:#05x}  [{len(data)}]  "
                f"{data.hex(' ')}"
            )
            known = by_id.get(message.arbitration_id)
            if known is not None:
                _, definition = known
                try:
                    decoded = definition.decode(data, decode_choices=True, allow_truncated=True)
                except (ValueError, KeyError, cantools.database.DecodeError) as exc:
                    line += f"  {definition.name}: cannot decode ({exc})"
                else:
                    assert isinstance(decoded, dict)
                    units = {s.name: f" {s.unit}" if s.unit else "" for s in definition.signals}
                    fields = " ".join(
                        f"{k}={_show(v)}{units.get(k, '')}" for k, v in decoded.items()
                    )
                    line += f"  {definition.name}: {fields}"
            out.write(line + "\n")
            out.flush()
            printed += 1
    finally:
        bus.shutdown()
    return printed


def _show(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)
