r"""What the 123\SmartBMS tells over many frames: the cell table, the key/value channel, comm loss.

A frame carries the pack-level fields in full, but only one cell (rotating 1..N) and one
key/value pair (keys 0..18, firmware >= 3.3.6). ``FrameAssembler`` collects them
(smartbms-uart.md sections 2.5-2.7):

- **Cell table**: accepts cell numbers 1..N, keeps a time per cell, and calls a cell stale when it
  was not refreshed within ``cell_stale_factor`` x N x the frame period. A change of the cell
  count empties the table. Frames with the communication-error bit set do not update cells
  (their per-cell data may come from a broken chain).
- **Key/value channel**: the last value of each key with its time; a value older than
  ``key_freshness_s`` is missing, and a multi-byte value needs all its parts fresh.
- **Watchdog**: no valid frame for ``stale_after_s`` is a communication loss, reported as
  warning E in ``inputs`` so that the BMS logic opens both relays.

The assembler is pure: every method takes ``now_s``. It lives next to the codec because all of
it is about how the wire spreads data over frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag
from typing import Final

from twin.model.inputs import BmsInputs
from twin.protocol.frame import KEY_COUNT, FirmwareLayout, Frame


class Status2Flag(IntFlag):
    """Status byte 2, sent as key 16 (bit order per the vendor PDF, smartbms-uart.md 2.5)."""

    NONE = 0
    EARLY_WARNING = 0x02
    TMIN_CHARGE = 0x04
    """A cell is below the charge temperature minimum."""
    TMIN_DISCHARGE = 0x08
    """A cell is below the discharge temperature minimum."""
    CHARGE_RELAY = 0x10
    """The CHARGE relay is closed."""
    LOAD_RELAY = 0x20
    """The LOAD relay is closed."""


class Key:
    """The keys of the side channel (byte 47 - 25)."""

    # Final: constants of the class (a compiled build would otherwise see instance attributes).
    SOH: Final = 0
    CHARGE_EFFICIENCY: Final = 1
    VLOW_MSB: Final = 2
    VLOW_LSB: Final = 3
    VNOMINAL_MSB: Final = 4
    VNOMINAL_LSB: Final = 5
    FIRMWARE: Final = 6
    FIRMWARE_PATCH: Final = 7
    CYCLES_MSB: Final = 8
    CYCLES_LSB: Final = 9
    CHARGED_KWH: Final = (10, 11, 12)
    DISCHARGED_KWH: Final = (13, 14, 15)
    STATUS2: Final = 16
    VFULL_MSB: Final = 17
    VFULL_LSB: Final = 18


@dataclass(frozen=True, slots=True)
class AssemblySettings:
    """Timing of the assembly; the defaults follow the readers of smartbms-uart.md 2.6-2.7."""

    frame_period_s: float = 1.0
    """The BMS message cycle (1.0 s, or 0.5 s on fast gen2 boards)."""
    cell_stale_factor: float = 3.0
    """A cell is stale when not refreshed within this many full rotations."""
    key_freshness_s: float = 60.0
    """A key/value older than this is missing (the Venus driver's rule)."""
    stale_after_s: float = 10.0
    """No valid frame for this long is a communication loss."""
    layout: FirmwareLayout = FirmwareLayout.KEY_VALUE

    def __post_init__(self) -> None:
        for name in ("frame_period_s", "cell_stale_factor", "key_freshness_s", "stale_after_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class BmsInfo:
    """What the key/value channel (or the legacy clock) told; None = missing or stale."""

    soh_pct: int | None = None
    charge_efficiency_pct: int | None = None
    vlow_v: float | None = None
    vnominal_v: float | None = None
    firmware: str | None = None
    """``"3.3.11"``, or ``"3.3"`` while the patch key is missing."""
    charge_cycles: int | None = None
    charged_kwh: int | None = None
    discharged_kwh: int | None = None
    status2: Status2Flag | None = None
    vfull_v: float | None = None
    device_clock: tuple[int, int] | None = None
    """(hours, minutes) of firmware with the legacy layout of bytes 47/48."""


@dataclass(frozen=True, slots=True)
class CellView:
    """One cell as last reported by the rotating cell slot."""

    index: int
    """1-based, as on the wire."""
    voltage_v: float | None
    temp_c: float | None
    age_s: float | None
    """Time since the cell was last reported; None if never since the table was (re)built."""
    stale: bool
    """Never reported, or not refreshed within the stale time."""
    balancing: bool | None
    """Inferred as voltage >= V-balance (not on the wire; the app does the same); None = unknown."""


@dataclass(frozen=True, slots=True)
class Observation:
    """A snapshot of everything assembled so far, at ``now_s``."""

    frame: Frame | None
    """The latest valid frame (kept after a comm loss, for diagnosis; ``comm_error`` says)."""
    frame_age_s: float | None
    comm_lost: bool
    """The watchdog: no valid frame within ``stale_after_s`` (or none yet)."""
    cells: tuple[CellView, ...]
    info: BmsInfo
    frames_received: int

    @property
    def comm_error(self) -> bool:
        """Warning E: the BMS reports a chain error, or the twin's watchdog fired."""
        return self.comm_lost or (self.frame is not None and self.frame.comm_error)

    @property
    def cells_complete(self) -> bool:
        """Every cell of the table is fresh."""
        return bool(self.cells) and not any(cell.stale for cell in self.cells)


class FrameAssembler:
    """Collects frames of one BMS; ``inputs`` feeds ``BmsLogic``, ``observe`` the exporters."""

    def __init__(self, settings: AssemblySettings | None = None) -> None:
        self.settings = settings if settings is not None else AssemblySettings()
        self.frames_received = 0
        self._frame: Frame | None = None
        self._frame_s: float | None = None
        self._cell_count = 0
        self._volts: list[float | None] = []
        self._temps: list[float | None] = []
        self._times: list[float | None] = []
        self._key_values: list[int | None] = [None] * KEY_COUNT
        self._key_times: list[float] = [0.0] * KEY_COUNT

    def add(self, frame: Frame, now_s: float) -> None:
        """Take a valid frame received at ``now_s``."""
        self.frames_received += 1
        self._frame, self._frame_s = frame, now_s
        count = frame.cell_count
        if count != self._cell_count:
            self._cell_count = count
            self._volts = [None] * count
            self._temps = [None] * count
            self._times = [None] * count
        index = frame.cell_index
        if 1 <= index <= count and not frame.comm_error:
            self._volts[index - 1] = frame.cell_voltage_v
            self._temps[index - 1] = frame.cell_temp_c
            self._times[index - 1] = now_s
        if self.settings.layout is FirmwareLayout.KEY_VALUE:
            key = frame.key
            if key is not None:
                self._key_values[key] = frame.raw_value
                self._key_times[key] = now_s

    @property
    def latest_frame(self) -> Frame | None:
        """The newest valid frame (None before any)."""
        return self._frame

    def comm_lost(self, now_s: float) -> bool:
        """True when no valid frame arrived within ``stale_after_s`` before ``now_s``."""
        return self._frame_s is None or now_s - self._frame_s >= self.settings.stale_after_s

    def inputs(self, now_s: float) -> BmsInputs | None:
        """The latest frame as ``BmsInputs`` for the logic (E on comm loss); None before any."""
        frame = self._frame
        if frame is None:
            return None
        index = frame.cell_index
        has_cell = 1 <= index <= frame.cell_count
        return BmsInputs(
            pack_voltage_v=frame.pack_voltage_v,
            current1_a=frame.current1_a,
            current2_a=frame.current2_a,
            battery_current_a=frame.battery_current_a,
            min_cell_voltage_v=frame.min_cell_voltage_v,
            min_cell_index=frame.min_cell_index,
            max_cell_voltage_v=frame.max_cell_voltage_v,
            max_cell_index=frame.max_cell_index,
            min_temp_c=frame.min_temp_c,
            min_temp_index=frame.min_temp_index,
            max_temp_c=frame.max_temp_c,
            max_temp_index=frame.max_temp_index,
            cell_count=frame.cell_count,
            cell_index=index if has_cell else None,
            cell_voltage_v=frame.cell_voltage_v if has_cell else None,
            cell_temp_c=frame.cell_temp_c if has_cell else None,
            comm_error=frame.comm_error or self.comm_lost(now_s),
        )

    def cell_stale_after_s(self) -> float:
        """How long a cell stays fresh: the stale factor x the cell count x the frame period."""
        s = self.settings
        return s.cell_stale_factor * max(self._cell_count, 1) * s.frame_period_s

    def observe(self, now_s: float) -> Observation:
        """A frozen snapshot of the table, the key/value channel and the watchdog at ``now_s``."""
        frame = self._frame
        stale_after_s = self.cell_stale_after_s()
        vbalance_v = frame.vbalance_v if frame is not None else None
        cells = []
        for i in range(self._cell_count):
            updated_s = self._times[i]
            age_s = None if updated_s is None else max(0.0, now_s - updated_s)
            voltage_v = self._volts[i]
            stale = age_s is None or age_s > stale_after_s
            cells.append(
                CellView(
                    index=i + 1,
                    voltage_v=voltage_v,
                    temp_c=self._temps[i],
                    age_s=age_s,
                    stale=stale,
                    balancing=(
                        None
                        if stale or voltage_v is None or not vbalance_v
                        else voltage_v >= vbalance_v
                    ),
                )
            )
        return Observation(
            frame=frame,
            frame_age_s=None if self._frame_s is None else max(0.0, now_s - self._frame_s),
            comm_lost=self.comm_lost(now_s),
            cells=tuple(cells),
            info=self._info(now_s),
            frames_received=self.frames_received,
        )

    def _value(self, now_s: float, *keys: int) -> int | None:
        """The big-endian value of ``keys`` (MSB first) if every part is fresh, else None."""
        total = 0
        for key in keys:
            value = self._key_values[key]
            if value is None or now_s - self._key_times[key] > self.settings.key_freshness_s:
                return None
            total = (total << 8) | value
        return total

    def _info(self, now_s: float) -> BmsInfo:
        frame = self._frame
        if self.settings.layout is FirmwareLayout.LEGACY_CLOCK:
            clock = None if frame is None else (frame.raw_key, frame.raw_value)
            return BmsInfo(device_clock=clock)
        value = self._value
        soh = value(now_s, Key.SOH)
        efficiency = value(now_s, Key.CHARGE_EFFICIENCY)
        vlow = value(now_s, Key.VLOW_MSB, Key.VLOW_LSB)
        vnominal = value(now_s, Key.VNOMINAL_MSB, Key.VNOMINAL_LSB)
        version = value(now_s, Key.FIRMWARE)
        patch = value(now_s, Key.FIRMWARE_PATCH)
        status2 = value(now_s, Key.STATUS2)
        vfull = value(now_s, Key.VFULL_MSB, Key.VFULL_LSB)
        firmware = None
        if version is not None:
            firmware = f"{version >> 4}.{version & 0x0F}"
            if patch is not None:
                firmware += f".{patch}"
        return BmsInfo(
            # Values above 100 % mean "not available" (the BLE app sends 255; Venus drops them).
            soh_pct=soh if soh is not None and soh <= 100 else None,
            charge_efficiency_pct=efficiency
            if efficiency is not None and efficiency <= 100
            else None,
            vlow_v=None if vlow is None else vlow / 200,
            vnominal_v=None if vnominal is None else vnominal / 200,
            firmware=firmware,
            charge_cycles=value(now_s, Key.CYCLES_MSB, Key.CYCLES_LSB),
            charged_kwh=value(now_s, *Key.CHARGED_KWH),
            discharged_kwh=value(now_s, *Key.DISCHARGED_KWH),
            status2=None if status2 is None else Status2Flag(status2),
            vfull_v=None if vfull is None else vfull / 200,
        )
