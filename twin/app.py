r"""``twin run``: the composition root, the only module that sees sources and exporters together.

One asyncio TaskGroup runs, per pack, its byte source (an emulated pack in real time or
``speed`` x faster, a serial port, a capture replay) feeding a ``PackShadow`` (decoder,
assembler, the twin's own ``BmsLogic``) and the pack's watchdog; the latest-value hub holds the
newest frozen ``TwinState`` of every pack and the fleet aggregate; the exporters read the hub;
the store saves SOC, counters and written settings every interval and at the end; a status line
shows what is going on. SIGINT and SIGTERM stop it cleanly (a final save, exit code 0).

A failing source or exporter never stops the twin: a source that fails is restarted with a
backoff while the watchdog marks the pack stale (warning E, relays off everywhere), and an
exporter retries by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import gc
import logging
import math
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TextIO

from twin import __version__
from twin.config import PackConfig, SourceKind, TwinConfig, load_register_maps
from twin.emulator.events import apply_changes
from twin.emulator.faults import FAULTS, FaultPanel
from twin.emulator.simulation import World
from twin.errors import SourceError, StoreError
from twin.exporters.canbus import CanExporter
from twin.exporters.modbus import ModbusExporter
from twin.exporters.mqtt import MqttExporter
from twin.exporters.ports import Exporter
from twin.exporters.web import WebExporter
from twin.model.logic import LogicState
from twin.model.pin import PinGuard
from twin.model.relays import condition_names
from twin.model.settings import BmsSettings, with_settings, writable_values
from twin.model.status import StatusFlag
from twin.protocol.readout import PackReadout, fleet_readout, pack_readout
from twin.protocol.shadow import PackShadow, TwinState, fleet_view
from twin.retry import Backoff
from twin.sources.base import ByteSource
from twin.sources.capture import ReplaySource
from twin.sources.emulator import EmulatorSource
from twin.sources.serial import SerialSource
from twin.sources.served import ServedUart
from twin.store import PackMemory, StateStore

log = logging.getLogger("twin")

#: Wall seconds after the start in which "no frame yet" is not logged as an error.
STARTUP_GRACE_S = 2.0
#: How often the watchdog looks at each pack (wall seconds).
WATCHDOG_INTERVAL_S = 0.25
#: Backoff of a source that failed or ended, before it is started again.
SOURCE_RETRY_MIN_S = 0.5
SOURCE_RETRY_MAX_S = 10.0


# ---- the latest-value hub ----------------------------------------------------------------


class StateHub:
    """The newest ``TwinState`` of each pack, its readout and the fleet's; exporters read it.

    ``publish`` replaces a pack's snapshot, builds its readout and the fleet's (once per state,
    for every exporter); ``wait`` lets an exporter sleep until something newer than the
    version it has seen arrives.
    """

    def __init__(self, pack_ids: tuple[str, ...]) -> None:
        if not pack_ids:
            raise ValueError("a hub needs at least one pack")
        self.pack_ids = pack_ids
        self._states: dict[str, TwinState] = {}
        self._readouts: dict[str, PackReadout] = {}
        self._published_at: dict[str, float] = {}
        self._plant: dict[str, dict[str, float]] = {}
        self.fleet_view = fleet_view({}, pack_ids)
        self.fleet = fleet_readout(self.fleet_view, pack_ids, {})
        self.version = 0
        self._changed = asyncio.Event()

    def publish(self, state: TwinState, plant: Mapping[str, float] | None = None) -> None:
        """A new snapshot of one pack; ``plant``: an emulated pack's setpoints in effect."""
        self._published_at[state.pack_id] = asyncio.get_running_loop().time()
        self._plant[state.pack_id] = dict(plant or {})
        self._replace(state)

    def replant(self, pack_id: str, plant: Mapping[str, float]) -> None:
        """The pack's newest snapshot again, with plant setpoints just set (read back at once)."""
        state = self._states.get(pack_id)
        if state is not None and self._plant.get(pack_id) != plant:
            self._plant[pack_id] = dict(plant)
            self._replace(state)

    def republish(self, pack_id: str, settings: BmsSettings) -> None:
        """The pack's newest snapshot again, with settings just written (read back at once)."""
        state = self._states.get(pack_id)
        if state is not None and state.settings != settings:
            self._replace(dataclasses.replace(state, settings=settings))

    def _replace(self, state: TwinState) -> None:
        self._states[state.pack_id] = state
        self._readouts[state.pack_id] = pack_readout(state, self._plant.get(state.pack_id))
        self.fleet_view = fleet_view(self._states, self.pack_ids)
        self.fleet = fleet_readout(self.fleet_view, self.pack_ids, self._readouts)
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def latest(self, pack_id: str) -> TwinState | None:
        """The newest snapshot of ``pack_id``; None before its first."""
        return self._states.get(pack_id)

    def pack(self, pack_id: str) -> PackReadout | None:
        """The newest readout of ``pack_id``; None before its first state."""
        return self._readouts.get(pack_id)

    def packs(self) -> Mapping[str, PackReadout]:
        """The newest readout of every pack that has a state."""
        return dict(self._readouts)

    def published_at(self, pack_id: str) -> float | None:
        """When (event-loop time) the newest snapshot of ``pack_id`` was published."""
        return self._published_at.get(pack_id)

    def states(self) -> Mapping[str, TwinState]:
        """The newest snapshot of every pack that has one."""
        return dict(self._states)

    async def wait(self, seen_version: int) -> int:
        """Wait for a version newer than ``seen_version``; returns the current one."""
        while self.version <= seen_version:
            await self._changed.wait()
        return self.version


# ---- one pack ----------------------------------------------------------------------------


class Timeline:
    """A source's clock: anchored at its last timed chunk, running at ``rate`` x wall time.

    A live port runs on the event loop's clock (rate 1), an emulated pack on its emulated
    clock (rate = speed), a replay on the recorded times. The watchdog asks ``now`` between
    chunks; ``now`` never goes back behind a chunk already seen.
    """

    def __init__(self, anchor_s: float, wall_s: float, rate: float) -> None:
        self._anchor_s = anchor_s
        self._wall_s = wall_s
        self.rate = rate

    def mark(self, time_s: float, wall_s: float) -> None:
        """A chunk stamped ``time_s`` arrived at ``wall_s``."""
        self._anchor_s, self._wall_s = time_s, wall_s

    def now(self, wall_s: float) -> float:
        """The source's time at ``wall_s``."""
        return self._anchor_s + max(0.0, wall_s - self._wall_s) * self.rate


def restored_settings(
    config: PackConfig, memory: PackMemory | None, store: StateStore | None = None
) -> BmsSettings:
    """The config's settings with the remotely written ones from the store, if still valid.

    Stored settings that do not fit the configuration are refused with a warning (the file is
    copied aside first: the next save replaces it) and the config's are used.
    """
    if memory is None or not memory.settings:
        return config.settings
    try:
        return with_settings(config.settings, dict(memory.settings))
    except (KeyError, ValueError) as exc:
        log.warning(
            "%s: the stored settings %s do not fit the configuration (%s): using the config's",
            config.pack_id,
            dict(memory.settings),
            exc,
        )
        if store is not None:
            store.keep_copy(f"{config.pack_id}'s settings refused")
        return config.settings


class PackRuntime:
    """One pack in the service: its source, its shadow, its clock and local calendar day."""

    def __init__(
        self,
        config: PackConfig,
        source: ByteSource,
        timeline: Timeline,
        local_day: Callable[[float], int],
        memory: PackMemory | None,
        world: World | None = None,
        served: ServedUart | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.timeline = timeline
        self.local_day = local_day
        self.world = world
        """The emulated pack behind an emulator source."""
        self.served = served
        """Where an emulated pack's UART stream is served to UART readers (pty, TCP)."""
        self.scenario_ended = asyncio.Event()
        """A scenario played live (``twin run --scenario``) reached its end."""
        self.faults = FaultPanel(world) if world is not None else None
        """Faults injected into the emulated pack from outside (MQTT)."""
        settings = restored_settings(config, memory)
        state = LogicState(
            soc=memory.soc if memory is not None else None,
            energy=memory.energy if memory is not None else None,
        )
        if memory is None:
            state = state.replace(soc=state.soc.replace(soc_pct=config.initial_soc_pct))
        src = config.source
        self.shadow = PackShadow(
            config.pack_id,
            settings,
            config.limits,
            fmt=src.frame_format,
            assembly=src.assembly,
            state=state,
            # A real BMS (serial, or a replay of one): its SOC drives the restart rules.
            follow_reported_soc=src.kind is not SourceKind.EMULATOR,
        )
        if world is not None and settings != world.chain.settings:
            world.chain.update_settings(settings)
        self.pin_guard = PinGuard(config.pin)
        self.source_failures = 0
        self._was_stale: bool | None = None
        self._started_s = timeline.now(asyncio.get_running_loop().time())
        self._started_wall_s = asyncio.get_running_loop().time()
        self._was_divergent = False
        self._relays: dict[str, bool] = {}
        """The relays as last logged ("twin charge", "bms load", ...)."""
        self._warnings: StatusFlag | None = None

    def plant_setpoints(self) -> dict[str, float]:
        """The plant setpoints in effect (none for a real BMS)."""
        if self.world is None:
            return {}
        return {name: value for name, (value, _) in self.world.plant_setpoints().items()}

    @property
    def pack_id(self) -> str:
        """The pack's id from the configuration."""
        return self.config.pack_id

    def memory(self) -> PackMemory:
        """What the store keeps for this pack."""
        soc, energy = self.shadow.memory()
        settings = self.shadow.settings
        written = {
            name: value
            for name, value in writable_values(settings).items()
            if not math.isclose(value, float(getattr(self.config.settings, name)))
        }
        return PackMemory(soc=soc, energy=energy, settings=written)

    def apply_settings(self, values: dict[str, float]) -> BmsSettings:
        """Validated remote settings: the twin (and an emulated BMS) use them from now on."""
        settings = with_settings(self.shadow.settings, values)
        self.shadow.update_settings(settings)
        if self.world is not None:
            self.world.chain.update_settings(settings)
        return settings

    def clear_counters(self) -> None:
        """The app's "clear energy counters", on the twin and on an emulated BMS alike."""
        self.shadow.logic.clear_counters()
        if self.world is not None:
            self.world.chain.logic.clear_counters()

    def source_now(self) -> float:
        """The source's clock now."""
        return self.timeline.now(asyncio.get_running_loop().time())

    async def run_source(self, hub: StateHub) -> None:
        """Feed the shadow from the source for ever, restarting a source that fails or ends."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(SOURCE_RETRY_MIN_S, SOURCE_RETRY_MAX_S)
        while True:
            try:
                async for chunk in self.source.chunks():
                    wall = loop.time()
                    if chunk.time_s is not None:
                        self.timeline.mark(chunk.time_s, wall)
                    now = chunk.time_s if chunk.time_s is not None else self.timeline.now(wall)
                    state = self.shadow.feed(chunk.data, now, self.local_day(now))
                    self._log_rejected()
                    self._log_expired()
                    if state is not None:
                        self._log_transition(state)
                        hub.publish(state, self.plant_setpoints())
                    backoff.reset()
                if self.config.source.live is not None:
                    self.scenario_ended.set()
                    return  # the scenario is over: the service stops
                log.warning("%s: source %s ended", self.pack_id, self.source.name)
                if self.config.source.kind is SourceKind.REPLAY:
                    return  # a replay that ended stays ended; the watchdog reports it stale
            except (SourceError, OSError, ValueError) as exc:
                self.source_failures += 1
                log.error("%s: source %s failed: %s", self.pack_id, self.source.name, exc)
            await backoff.wait()

    async def run_watchdog(self, hub: StateHub) -> None:
        """Mark the pack stale when its frames stop (checked every WATCHDOG_INTERVAL_S).

        Faster than real time it looks twice per emulated second, so that E comes within a
        second of emulated time at any speed.
        """
        loop = asyncio.get_running_loop()
        interval_s = min(WATCHDOG_INTERVAL_S, 0.5 / max(self.timeline.rate, 1e-9))
        while True:
            await asyncio.sleep(interval_s)
            now = self.timeline.now(loop.time())
            state = self.shadow.tick(now, self.local_day(now))
            if state is not None:
                self._log_transition(state)
                hub.publish(state)

    def _log_transition(self, state: TwinState) -> None:
        """Log when frames start, stop (the watchdog) and come back, and divergences."""
        if state.stale != self._was_stale:
            if state.stale:
                age = state.data_age_s
                # Not an error yet within the watchdog time, nor (far faster than real time)
                # while the service is still starting up.
                just_started = (
                    state.now_s - self._started_s < self.config.source.assembly.stale_after_s
                    or asyncio.get_running_loop().time() - self._started_wall_s < STARTUP_GRACE_S
                )
                if age is None and just_started:
                    return  # just started: not an error yet (the state says "no frame yet")
                log.warning(
                    "%s: no valid frame %s: communication error E, both relays off%s",
                    self.pack_id,
                    "yet" if age is None else f"for {age:.1f} s",
                    self._emulated_at(state),
                )
            else:
                log.info("%s: receiving frames from %s", self.pack_id, self.source.name)
            self._was_stale = state.stale
        if state.divergent != self._was_divergent:
            if state.divergent:
                log.warning(
                    "%s: the BMS reports charge %s / discharge %s, the twin decides %s / %s",
                    self.pack_id,
                    state.reported_charge,
                    state.reported_discharge,
                    state.twin_charge,
                    state.twin_discharge,
                )
            else:
                log.info("%s: the BMS and the twin agree again", self.pack_id)
            self._was_divergent = state.divergent
        self._log_relays(state)
        self._log_warnings(state)

    def _log_warnings(self, state: TwinState) -> None:
        """Log each change of the warning lights (E, Vl, Vh, Tl, Th)."""
        lights = state.warnings & _LIGHTS
        if self._warnings is not None and lights != self._warnings:
            names = [name for flag, name in _LIGHT_NAMES if lights & flag]
            log.info(
                "%s: warnings %s%s",
                self.pack_id,
                " ".join(names) if names else "off",
                self._emulated_at(state),
            )
        self._warnings = lights

    def _log_relays(self, state: TwinState) -> None:
        """Log each relay change: the twin's with the rows that decided it, the BMS's own."""
        logic = state.logic
        if logic is None:
            return
        relays = (
            ("charge", state.twin_charge, state.reported_charge, logic.charge.blocking),
            ("load", state.twin_discharge, state.reported_discharge, logic.discharge.blocking),
        )
        for name, twin_on, reported_on, blocking in relays:
            key_twin, key_bms = f"twin {name}", f"bms {name}"
            before = self._relays.get(key_twin)
            if before is not None and before != twin_on:
                why = "" if twin_on else f" ({', '.join(condition_names(blocking))})"
                log.info(
                    "%s: %s relay %s (the twin)%s%s",
                    self.pack_id,
                    name,
                    "on" if twin_on else "off",
                    why,
                    self._emulated_at(state),
                )
            self._relays[key_twin] = twin_on
            if reported_on is not None:
                before = self._relays.get(key_bms)
                if before is not None and before != reported_on:
                    log.info(
                        "%s: the BMS reports its %s relay %s%s",
                        self.pack_id,
                        name,
                        "on" if reported_on else "off",
                        self._emulated_at(state),
                    )
                self._relays[key_bms] = reported_on

    def _emulated_at(self, state: TwinState) -> str:
        """`` at hh:mm:ss`` of a scenario played live (its emulated clock); else nothing."""
        if self.config.source.live is None:
            return ""
        whole = int(state.now_s)
        return f" at {whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"

    def _log_expired(self) -> None:
        world = self.world
        if world is not None and world.plant.expired:
            for name in world.plant.expired:
                log.info("%s: plant %s timed out: back to the profile", self.pack_id, name)
            world.plant.expired.clear()

    def _log_rejected(self) -> None:
        rejected = self.shadow.rejected
        if rejected:
            for event in rejected[:3]:
                log.debug("%s: %d bytes rejected: %s", self.pack_id, len(event.data), event.reason)
            rejected.clear()


#: The app's warning lights, in its order.
_LIGHT_NAMES = (
    (StatusFlag.E, "E"),
    (StatusFlag.VH, "Vh"),
    (StatusFlag.VL, "Vl"),
    (StatusFlag.TH, "Th"),
    (StatusFlag.TL, "Tl"),
)
_LIGHTS = StatusFlag.E | StatusFlag.VL | StatusFlag.VH | StatusFlag.TL | StatusFlag.TH


def build_runtime(
    config: PackConfig, memory: PackMemory | None, *, speed: float, now: dt.datetime
) -> PackRuntime:
    """The pack's source, clock and calendar, from its configuration."""
    loop = asyncio.get_running_loop()
    src = config.source
    if src.kind is SourceKind.EMULATOR:
        assert src.world is not None, "the config builds the emulated world"
        live = src.live
        if live is None:
            # A pack emulated from now on: the world's clock and day are this machine's.
            start_s = now.hour * 3600.0 + now.minute * 60.0 + now.second
            scenario = dataclasses.replace(
                src.world,
                start_h=start_s / 3600.0,
                plant=dataclasses.replace(src.world.plant, day_of_year=now.timetuple().tm_yday),
            )
            first_day = now.date().toordinal()
        else:
            # A scenario played live keeps its own clock and day.
            scenario = src.world
            start_s = scenario.start_h * 3600.0
            first_day = dt.date(now.year, 1, 1).toordinal() + scenario.plant.day_of_year - 1
        world = World(scenario)
        if memory is not None:
            # The emulated BMS remembers what the twin remembers (both survived the restart).
            world.chain.logic.state = world.chain.logic.state.replace(
                soc=memory.soc, energy=memory.energy
            )
        out = src.served
        served = (
            ServedUart(
                config.pack_id,
                pty=out.pty,
                pty_file=out.pty_file,
                tcp_host=out.tcp_host,
                tcp_port=out.tcp_port,
                speed=speed,
            )
            if out.enabled
            else None
        )
        emulator = EmulatorSource(
            world,
            name=f"emulator:{config.pack_id}",
            speed=speed,
            served=served,
            events=scenario.events if live is not None else (),
            duration_s=scenario.duration_s if live is not None else None,
            hold=live is not None and live.hold,
        )

        def emulated_day(time_s: float) -> int:
            return first_day + int((start_s + time_s) // 86_400.0)

        runtime = PackRuntime(
            config,
            emulator,
            Timeline(0.0, loop.time(), speed),
            emulated_day,
            memory,
            world,
            served,
        )

        def twin_settings(changes: tuple[tuple[str, float | bool | str], ...]) -> None:
            shadow = runtime.shadow
            shadow.update_settings(apply_changes(shadow.settings, changes))

        world.twin_settings = twin_settings  # a scenario's settings for the twin's end
        return runtime
    if src.kind is SourceKind.SERIAL:
        serial_source = SerialSource(src.port, baudrate=src.baudrate, usb_serial=src.usb_serial)
        return PackRuntime(
            config, serial_source, Timeline(loop.time(), loop.time(), 1.0), _today, memory
        )
    assert src.file is not None, "the config checks that a replay has a file"
    replay = ReplaySource(src.file, speed=src.speed, repeat=src.repeat)
    rate = src.speed if src.speed is not None else 1.0
    return PackRuntime(config, replay, Timeline(0.0, loop.time(), rate), _today, memory)


def _today(_time_s: float) -> int:
    return dt.date.today().toordinal()


# ---- the status line ---------------------------------------------------------------------

#: The app's warning lights, in its order.
WARNING_LETTERS = (
    (StatusFlag.E, "E"),
    (StatusFlag.VL, "Vl"),
    (StatusFlag.VH, "Vh"),
    (StatusFlag.TL, "Tl"),
    (StatusFlag.TH, "Th"),
)


class StatusSource(Protocol):
    """Something that adds to the status line (an exporter: its clients)."""

    def status(self) -> str:
        """A few words, e.g. ``modbus 3 clients``."""
        ...


def pack_status(state: TwinState | None, pack_id: str) -> str:
    """One pack in the status line."""
    if state is None:
        return f"{pack_id}: waiting for frames"
    if state.logic is None:
        return f"{pack_id}: no frame yet (stale)"
    inputs = state.logic.inputs
    current = inputs.measured_battery_current_a
    current_text = "   n/a" if current is None else f"{current:+6.1f} A"
    warnings = "".join(letter for flag, letter in WARNING_LETTERS if state.logic.warnings & flag)
    relays = (
        f"C {'on ' if state.effective_charge else 'off'} D "
        f"{'on ' if state.effective_discharge else 'off'}"
    )
    stale = " STALE" if state.stale else ""
    diverge = " DIVERGENT" if state.divergent else ""
    return (
        f"{pack_id}: {inputs.pack_voltage_v:6.2f} V {current_text} SOC "
        f"{state.logic.soc_pct:5.1f} % {relays} {warnings or '-'}{stale}{diverge}"
    )


class StatusLine:
    """A live status line on a terminal; a periodic log line otherwise."""

    def __init__(
        self,
        hub: StateHub,
        extras: list[StatusSource],
        stream: TextIO = sys.stderr,
        *,
        interval_s: float = 1.0,
        plain_every_s: float = 10.0,
    ) -> None:
        self.hub = hub
        self.extras = extras
        self.stream = stream
        self.interval_s = interval_s
        self.plain_every_s = plain_every_s
        self.live = stream.isatty()
        self._width = 0

    def text(self) -> str:
        """The line as it is now."""
        parts = [pack_status(self.hub.latest(pid), pid) for pid in self.hub.pack_ids]
        parts += [extra.status() for extra in self.extras]
        return " | ".join(parts)

    async def run(self) -> None:
        """Refresh the line until cancelled; then end it with a newline."""
        last_plain = -math.inf
        loop = asyncio.get_running_loop()
        try:
            while True:
                text = self.text()
                if self.live:
                    self.stream.write("\r" + text.ljust(self._width))
                    self.stream.flush()
                    self._width = len(text)
                elif loop.time() - last_plain >= self.plain_every_s:
                    self.stream.write(text + "\n")
                    self.stream.flush()
                    last_plain = loop.time()
                await asyncio.sleep(self.interval_s)
        finally:
            if self.live and self._width:
                self.stream.write("\n")
                self.stream.flush()


# ---- the service -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What the command line adds to the configuration."""

    speed: float = 1.0
    quiet: bool = False
    state_path: str | None = None
    persist: bool = True
    """Restore and save the state file (a scenario played live starts from its own state and
    leaves the service's file alone, unless a state file is named)."""
    freeze_gc: bool = True
    """Freeze what start-up built out of the cyclic collector's way (a process of its own);
    off for a twin run inside another program (``twin.testing``), whose objects it would pin."""


class _StopRequestedError(Exception):
    """Raised inside the TaskGroup to end it on a signal."""


class Service:
    """Everything ``twin run`` runs, built from a validated configuration."""

    def __init__(self, config: TwinConfig, options: RunOptions) -> None:
        self.config = config
        self.options = options
        path = (
            config.store.path
            if options.state_path is None
            else Path(options.state_path).expanduser()
        )
        self.store = StateStore(path)
        self.hub = StateHub(tuple(p.pack_id for p in config.packs))
        self.packs: list[PackRuntime] = []
        self.stopping = asyncio.Event()
        self._save_soon = asyncio.Event()

    # ---- SettingsPort (for the exporters) ------------------------------------------------

    def _pack(self, pack_id: str) -> PackRuntime:
        for pack in self.packs:
            if pack.pack_id == pack_id:
                return pack
        raise KeyError(pack_id)

    def pin_guard(self, pack_id: str) -> PinGuard:
        """The pack's PIN guard, shared by every interface."""
        return self._pack(pack_id).pin_guard

    def settings(self, pack_id: str) -> BmsSettings:
        """The settings the pack's twin runs with now."""
        return self._pack(pack_id).shadow.settings

    def apply_settings(self, pack_id: str, values: dict[str, float]) -> None:
        """Apply validated settings to the pack's twin (and its emulated BMS); save soon."""
        try:
            settings = self._pack(pack_id).apply_settings(values)
        except KeyError as exc:
            raise ValueError(str(exc).strip("'")) from exc
        self.hub.republish(pack_id, settings)
        self._save_soon.set()

    def clear_counters(self, pack_id: str) -> None:
        """The pack's energy totals to zero (twin and emulated BMS); saved soon."""
        self._pack(pack_id).clear_counters()
        self._save_soon.set()

    def emulated(self, pack_id: str) -> bool:
        """The pack is an emulated chain."""
        return self._pack(pack_id).faults is not None

    def _panel(self, pack_id: str) -> FaultPanel:
        panel = self._pack(pack_id).faults
        if panel is None:
            raise ValueError(f"{pack_id} is not an emulated pack")
        return panel

    def inject_fault(
        self, pack_id: str, name: str, params: Mapping[str, object]
    ) -> dict[str, object]:
        """Inject an emulator fault into the pack (``ValueError`` names a bad parameter)."""
        values = self._panel(pack_id).inject(name, params, self._pack(pack_id).source_now())
        log.warning("%s: emulator fault %s injected %s", pack_id, name, values)
        return values

    def clear_fault(self, pack_id: str, name: str, params: Mapping[str, object]) -> list[str]:
        """Clear an emulator fault of the pack."""
        cleared = self._panel(pack_id).clear(name, params)
        if cleared:
            log.warning("%s: emulator fault %s cleared", pack_id, ", ".join(cleared))
        return cleared

    def fault_kinds(self) -> dict[str, dict[str, object]]:
        """The live faults there are (the dashboard's fault panel)."""
        return {
            name: {
                "description": kind.description,
                "required": list(kind.required),
                "optional": {key: default for key, default in kind.optional},
                "target": kind.target,
            }
            for name, kind in FAULTS.items()
        }

    def active_faults(self, pack_id: str) -> dict[str, dict[str, object]]:
        """The emulator faults in effect in the pack."""
        panel = self._pack(pack_id).faults
        return {} if panel is None else panel.active()

    def _world(self, pack_id: str) -> World:
        world = self._pack(pack_id).world
        if world is None:
            raise ValueError(f"{pack_id} is not an emulated pack: its plant is real")
        return world

    def set_plant(self, pack_id: str, name: str, value: float, timeout_s: float | None) -> None:
        """A controller's plant setpoint for an emulated pack (``ValueError`` names a bad one).

        A change is logged; the same value again (a controller that refreshes its setpoint
        before the timeout, as ``twin inverter`` does each second) only at debug level.
        """
        world = self._world(pack_id)
        before = world.plant_setpoints().get(name)
        world.set_plant(name, value, timeout_s)
        log.log(
            logging.DEBUG if before is not None and before[0] == value else logging.INFO,
            "%s: plant %s = %g%s (a controller)",
            pack_id,
            name,
            value,
            "" if timeout_s is None else f" for {timeout_s:g} s",
        )
        self.hub.replant(pack_id, self.plant_setpoints(pack_id))

    def clear_plant(self, pack_id: str, name: str) -> bool:
        """A plant setpoint back to the pack's profile; False when it was not set."""
        cleared = self._world(pack_id).clear_plant(name)
        if cleared:
            log.info("%s: plant %s back to the profile (a controller)", pack_id, name)
            self.hub.replant(pack_id, self.plant_setpoints(pack_id))
        return cleared

    def plant_setpoints(self, pack_id: str) -> dict[str, float]:
        """The plant setpoints in effect (none for a real BMS)."""
        return self._pack(pack_id).plant_setpoints()

    def memories(self) -> dict[str, PackMemory]:
        """What the store keeps, for every pack."""
        return {pack.pack_id: pack.memory() for pack in self.packs}

    async def save(self) -> bool:
        """Write the state file (in a thread: fsync may take a while); False if it failed."""
        memories = self.memories()
        try:
            await asyncio.to_thread(self.store.save, memories)
        except StoreError as exc:
            log.error("%s", exc)
            return False
        return True

    async def run(self) -> None:
        """Run until ``stopping`` is set; then save and return."""
        memories = self.store.load() if self.options.persist else {}
        if memories:
            log.info("restored %s from %s", ", ".join(sorted(memories)), self.store.path)
        for config in self.config.packs:
            memory = memories.get(config.pack_id)
            # Settings the configuration cannot take are refused once, here (a copy of the
            # file is kept aside); the pack starts with its configured ones.
            if (
                memory is not None
                and memory.settings
                and restored_settings(config, memory, self.store) is config.settings
            ):
                memories[config.pack_id] = dataclasses.replace(memory, settings={})
        now = dt.datetime.now().astimezone()
        self.packs = [
            build_runtime(p, memories.get(p.pack_id), speed=self.options.speed, now=now)
            for p in self.config.packs
        ]
        for pack in self.packs:
            log.info(
                "%s: %d cells, source %s",
                pack.pack_id,
                pack.shadow.settings.cell_count,
                pack.source.name,
            )
        served = [pack.served for pack in self.packs if pack.served is not None]
        exporters = self._exporters()
        try:
            # A port in use, here or for Modbus: StartupError, exit 2, nothing left running.
            for outlet in served:
                await outlet.start()
            modbus = exporters.get("modbus")
            if isinstance(modbus, ModbusExporter):
                await modbus.start()
            web = exporters.get("web")
            if isinstance(web, WebExporter):
                await web.start()
        except BaseException:
            for outlet in served:
                await outlet.close()
            raise
        # Everything built so far lives as long as the service: move it out of the cyclic
        # collector's way, so the per-request garbage of the servers is collected cheaply.
        if self.options.freeze_gc:
            gc.collect()
            gc.freeze()
        status = None if self.options.quiet else StatusLine(self.hub, list(exporters.values()))
        try:
            async with asyncio.TaskGroup() as group:
                for pack in self.packs:
                    group.create_task(pack.run_source(self.hub), name=f"source:{pack.pack_id}")
                    group.create_task(pack.run_watchdog(self.hub), name=f"watch:{pack.pack_id}")
                    if pack.served is not None:
                        group.create_task(pack.served.run(), name=f"uart:{pack.pack_id}")
                if self.options.persist:
                    group.create_task(self._save_periodically(), name="store")
                for name, exporter in exporters.items():
                    group.create_task(_supervised(name, exporter.run), name=name)
                if status is not None:
                    group.create_task(status.run(), name="status")
                group.create_task(self._stop_on_request(), name="stop")
                live = [p for p in self.packs if p.config.source.live is not None]
                if live:  # a scenario played live is the service's one pack
                    group.create_task(self._stop_after_scenario(live[0]), name="scenario")
        except* _StopRequestedError:
            pass
        finally:
            for outlet in served:
                await outlet.close()
        if not self.options.persist:
            log.info("stopped")
        elif await self.save():
            log.info("stopped; state saved to %s", self.store.path)
        else:
            log.error("stopped; the state could NOT be saved to %s (see above)", self.store.path)

    async def _stop_after_scenario(self, pack: PackRuntime) -> None:
        """``twin run --scenario`` without ``--hold``: stop when the scenario has ended."""
        await pack.scenario_ended.wait()
        log.info("the scenario has ended: stopping")
        self.stopping.set()

    async def _stop_on_request(self) -> None:
        await self.stopping.wait()
        raise _StopRequestedError

    def _exporters(self) -> dict[str, Exporter]:
        exporters: dict[str, Exporter] = {}
        modbus = self.config.modbus
        if modbus is not None:
            exporters["modbus"] = ModbusExporter(
                self.hub,
                self,
                load_register_maps(),
                modbus,
                {p.pack_id: p.shadow.settings.cell_count for p in self.packs},
                version=__version__,
            )
        can = self.config.can
        if can is not None:
            exporters["can"] = CanExporter(
                self.hub, can, {p.pack_id: i for i, p in enumerate(self.packs)}, self
            )
        mqtt = self.config.mqtt
        if mqtt is not None:
            exporters["mqtt"] = MqttExporter(
                self.hub,
                self,
                mqtt,
                {p.pack_id: p.shadow.settings.cell_count for p in self.packs},
                version=__version__,
            )
        web = self.config.web
        if web is not None:
            others = dict(exporters)
            exporters["web"] = WebExporter(
                self.hub,
                self,
                web,
                [p.pack_id for p in self.packs],
                lambda: {name: exporter.status() for name, exporter in others.items()},
                version=__version__,
            )
        return exporters

    async def _save_periodically(self) -> None:
        """Every interval, and soon after an accepted settings write."""
        interval = self.config.store.save_interval_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._save_soon.wait()
            self._save_soon.clear()
            await self.save()


async def _supervised(name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run an exporter for ever; whatever ends it but the service's stop is logged, and it restarts.

    An exporter handles its own transport failures; this is the net under it, so that a bug
    in one exporter never stops the twin or the others. The exporter runs in a task of its own:
    a ``CancelledError`` that it raises without having been cancelled (a request lost or left
    behind by asyncio, as Python 3.11's TaskGroup and ``wait_for`` do) is then told apart from
    the service cancelling this supervisor, and an exporter that returns is restarted too.
    """
    backoff = Backoff(1.0, 60.0)
    while True:
        started = time.monotonic()
        task = asyncio.create_task(run(), name=f"{name}:run")
        try:
            await asyncio.wait([task])
        except asyncio.CancelledError:
            # The service stops: the exporter goes with it.
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise
        if time.monotonic() - started > 60.0:
            backoff.reset()  # it ran a good while: a fresh failure, not a crash loop
        delay = backoff.delay_s
        if task.cancelled():
            log.error(
                "%s: ended by a cancellation nobody asked for; restarting in %.0f s", name, delay
            )
        elif (error := task.exception()) is not None:
            log.error(
                "%s: stopped by an unexpected error; restarting in %.0f s",
                name,
                delay,
                exc_info=error,
            )
        else:
            log.error("%s: ended by itself; restarting in %.0f s", name, delay)
        await backoff.wait()


async def serve(config: TwinConfig, options: RunOptions) -> int:
    """Run the service until SIGINT / SIGTERM; returns the exit code."""
    service = Service(config, options)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # platforms without signal handlers
            loop.add_signal_handler(signum, service.stopping.set)
    started = time.monotonic()
    await service.run()
    log.debug("ran for %.1f s", time.monotonic() - started)
    return 0
