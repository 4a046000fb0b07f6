r"""The emulated board chain: Begin / Between / End boards and the End board's UART output.

Each board measures its own cell (voltage with a small per-board offset, temperature of its own
sensor); the Begin board reads the current sensors; the data travels Begin -> Between -> End and
the End board runs the very ``BmsLogic`` the twin runs, drives the CHARGE and LOAD relays and
emits the 58-byte frame through the codec (``encode_frame``), with the rotating cell and the
key/value channel (or the legacy clock) as the firmware layout says.

Faults a scenario can inject:

- the link broken after board k: nothing passes the break, so no frame leaves the End board
  (the twin's watchdog must raise E) and the End board opens both relays after
  ``end_timeout_cycles`` silent cycles;
- a dead temperature sensor: the board reports the bottom (open NTC) or top (shorted NTC) of
  its range;
- everything else (weak or leaky cell, sensor drift, reversed sensor, wire noise) lives in the
  pack, the sensors and the wire, where it happens physically.

Pure: the caller passes the time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from twin.emulator.pack import Pack
from twin.emulator.sensor import CurrentReading
from twin.model.inputs import BmsInputs
from twin.model.limits import LimitFlag, LimitSettings
from twin.model.logic import BmsLogic, LogicState, PackState
from twin.model.settings import BmsSettings
from twin.model.soc import SocState
from twin.model.status import StatusFlag
from twin.protocol.assembly import Key, Status2Flag
from twin.protocol.frame import (
    KEY_COUNT,
    KEY_OFFSET,
    FirmwareLayout,
    Frame,
    FrameFormat,
    TemperatureScale,
    encode_frame,
)

#: What a board with a dead temperature sensor reports (the board's range, bms-behaviour.md 2).
OPEN_SENSOR_C = -40.0
SHORTED_SENSOR_C = 85.0


class SensorFault(Enum):
    """How a temperature sensor died."""

    OPEN = "open"
    """Broken wire or NTC: reads the coldest value (-40 C): Tl, both relays off."""
    SHORTED = "shorted"
    """Shorted NTC: reads the hottest value (85 C): Th, both relays off."""


@dataclass(frozen=True, slots=True)
class ChainSpec:
    """The boards' measurement quality and the End board's firmware."""

    frame_format: FrameFormat = field(default_factory=FrameFormat)
    voltage_error_v: float = 0.003
    """Standard deviation of each board's voltage offset (clipped at the +-20 mV spec)."""
    temperature_error_c: float = 0.7
    """Standard deviation of each board's temperature offset (clipped at the +-2 C spec)."""
    end_timeout_cycles: int = 3
    """Silent message cycles after which the End board raises E and opens both relays (an
    estimate: the manual says only that it does)."""
    firmware: tuple[int, int, int] = (3, 3, 11)
    soh_pct: int = 100
    vlow_v: float | None = None
    """The V-low setting sent as keys 2/3; None = V-min + 0.1 V (an emulator default)."""
    charge_cycles: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.voltage_error_v < 0 or self.temperature_error_c < 0:
            raise ValueError("measurement errors must be >= 0")
        if self.end_timeout_cycles < 1:
            raise ValueError("end_timeout_cycles must be >= 1")
        major, minor, patch = self.firmware
        if not (0 <= major <= 15 and 0 <= minor <= 15 and 0 <= patch <= 255):
            raise ValueError(f"firmware {self.firmware} does not fit keys 6/7")
        if not 0 <= self.soh_pct <= 100:
            raise ValueError(f"soh_pct {self.soh_pct} is out of range (0..100)")


def _quantise_temp(values: np.ndarray, scale: TemperatureScale) -> np.ndarray:
    """Temperatures as the frame carries them (so the End board and a twin agree exactly)."""
    if scale is TemperatureScale.APP:
        raw = np.clip(np.round((values + 232.0) / 0.857), 0, 0xFFFF)
        return (857.0 * raw - 232_000.0) / 1000.0
    return np.round(values)


class EmulatedChain:
    """The chain of one pack: its boards' measurements and the End board's logic and frame."""

    def __init__(
        self,
        spec: ChainSpec,
        settings: BmsSettings,
        limits: LimitSettings,
        pack: Pack,
        initial_soc_pct: float,
    ) -> None:
        n = pack.cell_count
        if n != settings.cell_count:
            raise ValueError(f"the pack has {n} cells, the BMS settings say {settings.cell_count}")
        self.spec = spec
        self.settings = settings
        self.pack = pack
        self.logic = BmsLogic(settings, limits, LogicState(soc=SocState(soc_pct=initial_soc_pct)))
        rng = np.random.default_rng(spec.seed)
        self._v_offset = np.clip(spec.voltage_error_v * rng.standard_normal(n), -0.02, 0.02)
        self._t_offset = np.clip(spec.temperature_error_c * rng.standard_normal(n), -2.0, 2.0)
        self.broken_after: int | None = None
        """The link after this board (1-based) is broken; None = the chain is whole."""
        self.dead_sensors: dict[int, SensorFault] = {}
        self.state: PackState | None = None
        self.frames_sent = 0
        self._silent_cycles = 0
        self._cell = 0
        self._key = 0
        self._temps_source: np.ndarray | None = None
        self._temps: list[float] = []
        self._tmin = self._tmax = (0.0, 0)
        self._v_step = 1.0 / 200.0

    # ---- faults ---------------------------------------------------------------------------

    def break_link(self, after_board: int) -> None:
        """Break the link between board ``after_board`` and the next one (1..cells-1)."""
        if not 1 <= after_board < self.pack.cell_count:
            raise ValueError(
                f"no link after board {after_board} "
                f"(links follow boards 1..{self.pack.cell_count - 1})"
            )
        self.broken_after = after_board

    def repair_link(self) -> None:
        """Reconnect the chain."""
        self.broken_after = None

    def kill_temperature_sensor(self, board: int, fault: SensorFault = SensorFault.OPEN) -> None:
        """Board ``board``'s temperature sensor fails as ``fault``."""
        if not 1 <= board <= self.pack.cell_count:
            raise ValueError(f"no board {board} (1..{self.pack.cell_count})")
        self.dead_sensors[board] = fault
        self._temps_source = None

    def revive_temperature_sensor(self, board: int | None = None) -> None:
        """Board ``board``'s temperature sensor is replaced (None: every dead one)."""
        if board is None:
            self.dead_sensors.clear()
        else:
            self.dead_sensors.pop(board, None)
        self._temps_source = None

    def update_settings(self, settings: BmsSettings) -> None:
        """New settings from the app (the End board uses them from the next cycle)."""
        if settings.cell_count != self.pack.cell_count:
            raise ValueError("the cell count of a chain cannot change")
        self.settings = settings
        self.logic.update_settings(settings)

    # ---- relays ----------------------------------------------------------------------------

    @property
    def charge_allowed(self) -> bool:
        """The End board's CHARGE relay."""
        return self.logic.state.charge_allowed

    @property
    def discharge_allowed(self) -> bool:
        """The End board's LOAD relay."""
        return self.logic.state.discharge_allowed

    # ---- one message cycle ----------------------------------------------------------------

    def _temperatures(self) -> None:
        """Board temperatures as measured; recomputed only when the pack's thermal step ran."""
        source = self.pack.board_temp_c
        if source is self._temps_source:
            return
        temps = source + self._t_offset
        for board, fault in self.dead_sensors.items():
            temps[board - 1] = OPEN_SENSOR_C if fault is SensorFault.OPEN else SHORTED_SENSOR_C
        temps = _quantise_temp(temps, self.spec.frame_format.temperature_scale)
        lo, hi = int(temps.argmin()), int(temps.argmax())
        self._tmin = (float(temps[lo]), lo + 1)
        self._tmax = (float(temps[hi]), hi + 1)
        self._temps = temps.tolist()
        self._temps_source = source

    def cycle(
        self, reading: CurrentReading, now_s: float, local_day: int, clock: tuple[int, int]
    ) -> bytes | None:
        """One message cycle at ``now_s``: the End board's logic runs; returns the frame sent.

        ``clock`` is the device's (hours, minutes), sent by the legacy firmware layout. None is
        returned while the chain is broken: nothing reaches the End board, nothing leaves it.
        """
        settings = self.settings
        if self.broken_after is not None:
            self._silent_cycles += 1
            if self._silent_cycles >= self.spec.end_timeout_cycles:
                last = self.logic.state.last_inputs
                if last is not None:
                    self.state = self.logic.step(last.with_comm_error(), now_s, local_day)
            return None
        self._silent_cycles = 0
        # What the boards measure, in the frame's 5 mV steps (np.rint: half the cost of round).
        volts = self.pack.voltage_v + self._v_offset
        volts *= 200.0
        np.rint(volts, out=volts)
        volts *= self._v_step
        lo, hi = int(volts.argmin()), int(volts.argmax())
        vmin, vmax = float(volts[lo]), float(volts[hi])
        self._temperatures()
        cell = self._cell
        self._cell = (cell + 1) % self.pack.cell_count
        cell_v = float(volts[cell])
        cell_t = self._temps[cell]
        pack_v = float(volts.sum())
        # The fields the logic's inputs and the frame share, in their common order.
        measured = (
            pack_v,
            reading.current1_a,
            reading.current2_a,
            reading.battery_current_a,
            vmin,
            lo + 1,
            vmax,
            hi + 1,
            *self._tmin,
            *self._tmax,
        )
        inputs = BmsInputs(*measured, settings.cell_count, cell + 1, cell_v, cell_t)
        state = self.logic.step(inputs, now_s, local_day)
        self.state = state
        raw_key, raw_value = self._side_channel(state, clock)
        energy = state.energy
        frame = Frame(
            *measured,
            cell + 1,
            settings.cell_count,
            cell_v,
            cell_t,
            state.status,
            int(energy.harvested_today_wh),
            int(state.stored_energy_wh),
            int(energy.consumed_today_wh),
            round(state.soc_pct),
            int(energy.harvested_total_wh / 1000.0),
            int(energy.consumed_total_wh / 1000.0),
            raw_key,
            raw_value,
            settings.capacity_wh / 1000.0,
            settings.vmin_v,
            settings.vmax_v,
            settings.vbalance_v,
        )
        self.frames_sent += 1
        return encode_frame(frame, self.spec.frame_format)

    def _side_channel(self, state: PackState, clock: tuple[int, int]) -> tuple[int, int]:
        """Bytes 47/48: the next key and its value, or the device clock (legacy firmware)."""
        if self.spec.frame_format.layout is FirmwareLayout.LEGACY_CLOCK:
            return clock
        key = self._key
        self._key = (key + 1) % KEY_COUNT
        return key + KEY_OFFSET, self.key_value(key, state)

    def key_value(self, key: int, state: PackState) -> int:
        """The value byte the End board sends for ``key``."""
        spec, settings = self.spec, self.settings
        if key == Key.SOH:
            return spec.soh_pct
        if key == Key.CHARGE_EFFICIENCY:
            return round(settings.charge_efficiency_pct)
        if key in (Key.VLOW_MSB, Key.VLOW_LSB):
            vlow = spec.vlow_v if spec.vlow_v is not None else settings.vmin_v + 0.1
            return _byte_of(round(vlow * 200), 2, key - Key.VLOW_MSB)
        if key in (Key.VNOMINAL_MSB, Key.VNOMINAL_LSB):
            return _byte_of(round(settings.vnominal_v * 200), 2, key - Key.VNOMINAL_MSB)
        if key == Key.FIRMWARE:
            return (spec.firmware[0] << 4) | spec.firmware[1]
        if key == Key.FIRMWARE_PATCH:
            return spec.firmware[2]
        if key in (Key.CYCLES_MSB, Key.CYCLES_LSB):
            return _byte_of(min(spec.charge_cycles, 0xFFFF), 2, key - Key.CYCLES_MSB)
        if key in Key.CHARGED_KWH:
            kwh = int(state.energy.harvested_total_wh / 1000.0)
            return _byte_of(min(kwh, 0xFFFFFF), 3, key - Key.CHARGED_KWH[0])
        if key in Key.DISCHARGED_KWH:
            kwh = int(state.energy.consumed_total_wh / 1000.0)
            return _byte_of(min(kwh, 0xFFFFFF), 3, key - Key.DISCHARGED_KWH[0])
        if key == Key.STATUS2:
            return status2(state).value
        if key in (Key.VFULL_MSB, Key.VFULL_LSB):
            return _byte_of(round(settings.vbalance_v * 200), 2, key - Key.VFULL_MSB)
        raise ValueError(f"no key {key}")


def _byte_of(value: int, width: int, index: int) -> int:
    """Byte ``index`` (0 = most significant) of ``value`` written in ``width`` bytes."""
    return (value >> (8 * (width - 1 - index))) & 0xFF


def status2(state: PackState) -> Status2Flag:
    """Status byte 2 (key 16) of a cycle: early warning, cold, and the relays."""
    flags = Status2Flag.NONE
    if state.limits.warnings & ~LimitFlag.COMMUNICATION:
        flags |= Status2Flag.EARLY_WARNING
    # The emulated BMS has one T-min for charge and discharge (the setting the app shows).
    if StatusFlag.TL in state.warnings:
        flags |= Status2Flag.TMIN_CHARGE | Status2Flag.TMIN_DISCHARGE
    if state.charge_allowed:
        flags |= Status2Flag.CHARGE_RELAY
    if state.discharge_allowed:
        flags |= Status2Flag.LOAD_RELAY
    return flags
