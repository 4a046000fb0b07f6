"""The Modbus maps as data, and what goes into them: pure, no pymodbus.

``register_maps/native.toml`` and ``register_maps/sunspec.toml`` (loaded by
``twin.config.load_register_maps``) become a ``UnitLayout`` per Modbus unit: every register
with its address, type, scale and the *value key* naming what the twin puts there. The values
of a unit (``pack_values`` / ``fleet_values``) are a flat dict of those keys, computed once
per new state; ``encode_into`` turns them into registers; ``decode_write`` turns a client's
write back into named values for the exporter to check (PIN, ranges) and apply.

Conventions (docs/register-map.md): 0-based protocol addresses; 32-bit values high word
first; "not available" is the type's sentinel (0xFFFF, 0x8000, 0xFFFFFFFF, 0x80000000, NULs),
never 0; a value out of its register's range reads "not available" too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from itertools import pairwise
from typing import Any

from twin.errors import WriteError
from twin.model.limits import LimitFlag
from twin.model.settings import WRITABLE_SETTINGS
from twin.model.status import StatusFlag
from twin.protocol.readout import PLANT_FIELDS, CellReadout, FleetReadout, PackReadout

# ---- the map data ------------------------------------------------------------------------


class RegType(StrEnum):
    """Register types of both maps (SunSpec's names included)."""

    UINT16 = "uint16"
    INT16 = "int16"
    UINT32 = "uint32"
    INT32 = "int32"
    STRING = "string"
    ENUM16 = "enum16"
    BITFIELD16 = "bitfield16"
    BITFIELD32 = "bitfield32"
    SUNSSF = "sunssf"
    PAD = "pad"


#: Registers per value of each fixed-size type.
TYPE_SIZE = {
    RegType.UINT16: 1,
    RegType.INT16: 1,
    RegType.UINT32: 2,
    RegType.INT32: 2,
    RegType.ENUM16: 1,
    RegType.BITFIELD16: 1,
    RegType.BITFIELD32: 2,
    RegType.SUNSSF: 1,
    RegType.PAD: 1,
}
_SIGNED = {RegType.INT16, RegType.INT32, RegType.SUNSSF}


def sentinel_words(reg_type: RegType, size: int) -> list[int]:
    """The "not available" registers of a type (SunSpec's "unimplemented" values)."""
    if reg_type is RegType.STRING:
        return [0] * size
    if reg_type is RegType.PAD:
        return [0]
    if reg_type in (RegType.INT16, RegType.SUNSSF):
        return [0x8000]
    if reg_type is RegType.INT32:
        return [0x8000, 0x0000]
    return [0xFFFF] * size


@dataclass(frozen=True, slots=True)
class Register:
    """One value in a map (a native register, a SunSpec point, or a per-cell template)."""

    name: str
    type: RegType
    size: int
    address: int = 0
    """Absolute for native registers; the offset within the block for per-cell templates."""
    scale: float = 1.0
    unit: str = ""
    writable: bool = False
    value: str | None = None
    """The value key; None = not implemented (reads its sentinel)."""
    description: str = ""
    sf: str | None = None
    """SunSpec: the name of the scale-factor point of this value."""
    sf_value: int | None = None
    """SunSpec: a fixed scale factor (for a sunssf point)."""


@dataclass(frozen=True, slots=True)
class RegisterGroup:
    """A titled run of registers (a section of the documentation)."""

    title: str
    registers: tuple[Register, ...]


@dataclass(frozen=True, slots=True)
class CellBlock:
    """Registers repeated for each cell: cell i at ``address + stride x (i - 1)``."""

    title: str
    address: int
    stride: int
    count: int
    registers: tuple[Register, ...]


@dataclass(frozen=True, slots=True)
class NativeMap:
    """The native map."""

    title: str
    version: int
    groups: tuple[RegisterGroup, ...]
    cells: CellBlock


@dataclass(frozen=True, slots=True)
class SunSpecModel:
    """One SunSpec model: its fixed points and an optional repeating (per-cell) group."""

    model_id: int
    name: str
    points: tuple[Register, ...]
    group: tuple[Register, ...] = ()
    group_name: str = ""
    pack_only: bool = False

    @property
    def fixed_length(self) -> int:
        """Registers of the fixed part (after ID and L)."""
        return sum(p.size for p in self.points)

    def length(self, cells: int) -> int:
        """L: the registers after ID and L with ``cells`` repetitions of the group."""
        return self.fixed_length + cells * sum(p.size for p in self.group)


@dataclass(frozen=True, slots=True)
class SunSpecMap:
    """The SunSpec chain from ``base``: "SunS", the models, the end model."""

    title: str
    base: int
    models: tuple[SunSpecModel, ...]


@dataclass(frozen=True, slots=True)
class RegisterMaps:
    """Both maps, as loaded from register_maps/."""

    native: NativeMap
    sunspec: SunSpecMap


@dataclass(frozen=True, slots=True)
class ModbusSettings:
    """Where the server listens and which unit ids it answers."""

    host: str = "127.0.0.1"
    port: int = 5020
    pack_unit_ids: tuple[tuple[str, int], ...] = ()
    """(pack id, unit id) for every pack."""
    fleet_unit_id: int | None = 100
    """None: no fleet unit."""
    ctrl_hb_timeout_s: float | None = None
    """SunSpec 802 CtrlHb: with a timeout, a controller that stops writing it raises Evt1
    bit 0 (communication) on the units it watched. None: not watched."""
    retry_s: float = 5.0
    """Wait before trying to listen again when the address is lost while running."""
    max_connections: int = 100
    """Client connections open at once; a new one closes the one quiet the longest."""
    idle_timeout_s: float | None = 120.0
    """A connection with no request for this long is closed (None: never)."""


# ---- one unit's layout -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    """One value at its absolute address in a unit."""

    address: int
    register: Register
    cell: int | None = None
    """0-based cell of a per-cell value."""
    scale: float = 1.0
    sf_key: str | None = None
    """SunSpec: the value key (``sf:<point>``) whose value is this slot's scale factor."""
    literal: tuple[int, ...] | None = None
    """Fixed words (the "SunS" marker, model IDs and lengths)."""


SUNS_MARKER = (0x5375, 0x6E53)
END_MODEL = (0xFFFF, 0)

#: The settings a client may write: ``setting.<readout field>``.
SETTING_KEYS = frozenset(f"setting.{name}" for name in WRITABLE_SETTINGS)

#: The plant setpoints of an emulated pack (the readout's ``PLANT_FIELDS``), written as
#: ``plant.<name>`` without a PIN and read back from the readout; and the block's timeout and
#: clear registers.
PLANT_SETPOINT_NAMES = tuple(PLANT_FIELDS)
PLANT_KEYS = frozenset(f"plant.{name}" for name in PLANT_SETPOINT_NAMES) | {
    "plant.timeout_s",
    "plant.clear",
}

#: The keys a client may write, and what they are.
WRITABLE_KEYS = SETTING_KEYS | PLANT_KEYS | {"unlock", "ctrl_hb", "alarm_reset", "clear_counters"}

#: Keys computed when a register is read, not when the state changes.
DYNAMIC_KEYS = frozenset(
    {"heartbeat", "data_age_s", "lock_state", "lock_remaining_s", "wrong_pins", "ctrl_hb"}
)


@dataclass(frozen=True)
class UnitLayout:
    """Every slot of one unit, sorted by address."""

    slots: tuple[Slot, ...]
    end: int = field(init=False)
    """One past the highest address."""
    dynamic: tuple[int, ...] = field(init=False)
    """Indexes of the slots with a dynamic key."""
    dynamic_spans: tuple[tuple[int, int], ...] = field(init=False)
    """(first address, one past the last) of each dynamic slot."""

    def __post_init__(self) -> None:
        last = max(s.address + s.register.size for s in self.slots)
        object.__setattr__(self, "end", last)
        dynamic = tuple(i for i, s in enumerate(self.slots) if s.register.value in DYNAMIC_KEYS)
        object.__setattr__(self, "dynamic", dynamic)
        spans = tuple(
            (self.slots[i].address, self.slots[i].address + self.slots[i].register.size)
            for i in dynamic
        )
        object.__setattr__(self, "dynamic_spans", spans)

    def touches_dynamic(self, address: int, count: int) -> bool:
        """Whether registers ``address .. address + count - 1`` include a dynamic one."""
        end = address + count
        return any(
            self.slots[i].address < end
            and address < self.slots[i].address + self.slots[i].register.size
            for i in self.dynamic
        )

    def writable_ranges(self) -> list[tuple[int, int, bool]]:
        """(address, count, writable) runs of consecutive registers (for the server blocks)."""
        runs: list[tuple[int, int, bool]] = []
        for slot in self.slots:
            size, writable = slot.register.size, slot.register.writable
            if runs:
                start, count, flag = runs[-1]
                if start + count == slot.address and flag == writable:
                    runs[-1] = (start, count + size, flag)
                    continue
            runs.append((slot.address, size, writable))
        return runs


def native_layout(native: NativeMap, cells: int) -> list[Slot]:
    """The native map's slots for a unit with ``cells`` cells (0 for the fleet)."""
    slots = [Slot(r.address, r, scale=r.scale) for group in native.groups for r in group.registers]
    block = native.cells
    for i in range(block.count):
        base = block.address + block.stride * i
        for r in block.registers:
            slots.append(Slot(base + r.address, r, cell=i if i < cells else None, scale=r.scale))
    return slots


def sunspec_layout(sunspec: SunSpecMap, cells: int, fleet: bool) -> list[Slot]:
    """The SunSpec chain's slots; the fleet unit leaves out the pack-only models."""
    address = sunspec.base
    marker = Register("SunS", RegType.UINT32, 2, description="SunSpec marker")
    slots = [Slot(address, marker, literal=SUNS_MARKER)]
    address += 2
    header = Register("ID/L", RegType.UINT32, 2, description="model id and length")
    for model in sunspec.models:
        if fleet and model.pack_only:
            continue
        repeats = cells if model.group else 0
        slots.append(Slot(address, header, literal=(model.model_id, model.length(repeats))))
        address += 2
        sf_keys = {
            p.name: f"sf:{model.model_id}:{p.name}"
            for p in model.points
            if p.type is RegType.SUNSSF
        }
        for point in model.points:
            slots.append(Slot(address, point, sf_key=sf_keys.get(point.sf or "")))
            address += point.size
        for i in range(repeats):
            for point in model.group:
                slots.append(Slot(address, point, cell=i, sf_key=sf_keys.get(point.sf or "")))
                address += point.size
    end = Register("end", RegType.UINT32, 2, description="end model")
    slots.append(Slot(address, end, literal=END_MODEL))
    return slots


def unit_layout(maps: RegisterMaps, cells: int, fleet: bool) -> UnitLayout:
    """Both maps of one unit."""
    slots = native_layout(maps.native, 0 if fleet else cells) + sunspec_layout(
        maps.sunspec, cells, fleet
    )
    slots.sort(key=lambda s: s.address)
    for a, b in pairwise(slots):
        if a.address + a.register.size > b.address:
            raise ValueError(f"registers {a.register.name} and {b.register.name} overlap")
    return UnitLayout(tuple(slots))


# ---- encoding ----------------------------------------------------------------------------

Values = Mapping[str, Any]
"""A unit's values by key; ``cells`` holds a list of per-cell dicts."""


def _words(value: int, reg_type: RegType, size: int) -> list[int] | None:
    """``value`` as ``size`` registers of ``reg_type``, or None when it does not fit."""
    bits = 16 * size
    if reg_type in _SIGNED:
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        # The most negative value is the sentinel: a real value never takes it.
        if not lo < value <= hi:
            return None
        value &= (1 << bits) - 1
    elif not 0 <= value < (1 << bits) - 1:  # all ones is the sentinel
        return None
    return [(value >> (16 * (size - 1 - i))) & 0xFFFF for i in range(size)]


def encode_string(text: str, size: int) -> list[int]:
    """``text`` in ``size`` registers, two characters each, high byte first, NUL-padded."""
    data = text.encode("latin-1", errors="replace")[: 2 * size].ljust(2 * size, b"\0")
    return [(data[2 * i] << 8) | data[2 * i + 1] for i in range(size)]


def encode_slot(slot: Slot, values: Values, sfs: Mapping[str, int]) -> list[int]:
    """The registers of one slot."""
    reg = slot.register
    if slot.literal is not None:
        return list(slot.literal)
    if reg.type is RegType.SUNSSF:
        sf = reg.sf_value if reg.sf_value is not None else values.get(reg.value or "")
        return [sf & 0xFFFF] if isinstance(sf, int) else sentinel_words(reg.type, 1)
    if reg.value is None:
        return sentinel_words(reg.type, reg.size)
    if slot.cell is not None:
        cells = values.get("cells") or ()
        value = cells[slot.cell].get(reg.value) if slot.cell < len(cells) else None
    elif reg.value.startswith("cell."):
        value = None  # a cell the unit does not have
    else:
        value = values.get(reg.value)
    if value is None:
        return sentinel_words(reg.type, reg.size)
    if reg.type is RegType.STRING:
        return encode_string(str(value), reg.size)
    if isinstance(value, bool):
        value = int(value)
    scale = slot.scale
    if slot.sf_key is not None:
        sf = sfs.get(slot.sf_key)
        if sf is None:
            return sentinel_words(reg.type, reg.size)
        scale = 10.0 ** (-sf)
    number = float(value) * scale
    if not math.isfinite(number):
        return sentinel_words(reg.type, reg.size)
    words = _words(round(number), reg.type, reg.size)
    return words if words is not None else sentinel_words(reg.type, reg.size)


def scale_factors(layout: UnitLayout, values: Values) -> dict[str, int]:
    """Every SunSpec scale factor of the unit, by ``sf:<model>:<point>``."""
    sfs: dict[str, int] = {}
    model = 0
    for slot in layout.slots:
        if slot.literal is not None and slot.register.name == "ID/L":
            model = slot.literal[0]
        reg = slot.register
        if reg.type is RegType.SUNSSF:
            sf = reg.sf_value if reg.sf_value is not None else values.get(reg.value or "")
            if isinstance(sf, int):
                sfs[f"sf:{model}:{reg.name}"] = sf
    return sfs


def encode_into(
    image: list[int],
    layout: UnitLayout,
    values: Values,
    *,
    only: Sequence[int] | None = None,
    sfs: Mapping[str, int] | None = None,
    base: int = 0,
) -> dict[str, int]:
    """Write the unit's registers into ``image`` (``image[0]`` is address ``base``).

    ``only``: just these slot indexes (the dynamic ones on a read); ``sfs``: the scale factors
    from the last full encoding (they change only with the values). Returns the scale factors.
    """
    factors = dict(sfs) if sfs is not None else scale_factors(layout, values)
    slots = layout.slots
    for index in only if only is not None else range(len(slots)):
        slot = slots[index]
        words = encode_slot(slot, values, factors)
        start = slot.address - base
        image[start : start + len(words)] = words
    return factors


# ---- decoding writes ---------------------------------------------------------------------


def decode_write(layout: UnitLayout, address: int, words: Sequence[int]) -> dict[str, float]:
    """The values a write carries, by key; it must cover whole writable registers."""
    end = address + len(words)
    found: dict[str, float] = {}
    for slot in layout.slots:
        reg = slot.register
        start, stop = slot.address, slot.address + reg.size
        if stop <= address or start >= end:
            continue
        if not reg.writable or reg.value is None:
            raise WriteError(f"register {reg.name} at {start} is read-only")
        if start < address or stop > end:
            raise WriteError(f"a write must cover all {reg.size} registers of {reg.name}")
        raw = 0
        for word in words[start - address : stop - address]:
            raw = (raw << 16) | word
        bits = 16 * reg.size
        if raw == (1 << bits) - 1 or (reg.type in _SIGNED and raw == 1 << (bits - 1)):
            raise WriteError(f"{reg.name}: the 'not available' value cannot be written")
        if reg.type in _SIGNED and raw >= 1 << (bits - 1):
            raw -= 1 << bits
        found[reg.value] = raw / slot.scale
    return found


# ---- the values of a unit ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnitInfo:
    """What a unit says about itself (the model 1 strings, the unit id)."""

    unit_id: int
    name: str
    manufacturer: str = "twin"
    model_name: str = "123SmartBMS digital twin"
    version: str = ""


#: warning_bits: the app's lights in bits 0..4 (8 divergence, 9 stale data on top).
_WARNING_BITS = (StatusFlag.E, StatusFlag.VL, StatusFlag.VH, StatusFlag.TL, StatusFlag.TH)


def warning_bits(warnings: StatusFlag) -> int:
    """The app's warning lights as bits 0..4 (E, Vl, Vh, Tl, Th)."""
    return sum(1 << bit for bit, flag in enumerate(_WARNING_BITS) if warnings & flag)


#: SunSpec 802 Evt1 bits of each inverter alarm (the BMS acted) and early warning.
_EVT1_ALARM = {
    LimitFlag.COMMUNICATION: 0,
    LimitFlag.OVER_TEMPERATURE: 1,
    LimitFlag.UNDER_TEMPERATURE: 3,
    LimitFlag.CHARGE_OVER_CURRENT: 5,
    LimitFlag.DISCHARGE_OVER_CURRENT: 7,
    LimitFlag.CELL_OVER_VOLTAGE: 9,
    LimitFlag.CELL_UNDER_VOLTAGE: 11,
    LimitFlag.BMS_INTERNAL: 25,
}
_EVT1_WARNING = {
    LimitFlag.OVER_TEMPERATURE: 2,
    LimitFlag.UNDER_TEMPERATURE: 4,
    LimitFlag.CHARGE_OVER_CURRENT: 6,
    LimitFlag.DISCHARGE_OVER_CURRENT: 8,
    LimitFlag.CELL_OVER_VOLTAGE: 10,
    LimitFlag.CELL_UNDER_VOLTAGE: 12,
    LimitFlag.CELL_IMBALANCE: 17,
}


def evt1(alarms: LimitFlag, warnings: LimitFlag) -> int:
    """SunSpec 802 Evt1 from the twin's alarms and early warnings."""
    bits = 0
    for flag, bit in _EVT1_ALARM.items():
        if alarms & flag:
            bits |= 1 << bit
    for flag, bit in _EVT1_WARNING.items():
        if warnings & flag:
            bits |= 1 << bit
    return bits


def choose_sf(magnitude: float, *, signed: bool, finest: int = -3) -> int:
    """The finest scale factor (>= ``finest``) at which ``magnitude`` fits a 16-bit register."""
    limit = 32767 if signed else 65534
    sf = finest
    while magnitude / 10.0**sf > limit:
        sf += 1
    return sf


#: The readout fields the registers take as they are (the value key is the field's name).
PACK_FIELDS = tuple(
    f.name for f in fields(PackReadout) if f.name not in ("cells", "warnings", "pack_id")
)
FLEET_FIELDS = tuple(f.name for f in fields(FleetReadout) if f.name not in ("warnings",))
CELL_FIELDS = ("voltage_v", "temp_c", "age_s")

#: Value keys that are encodings of readout fields (or the unit's identity), not fields.
ENCODING_KEYS = frozenset(
    {
        "map_version", "unit_kind", "unit_name", "manufacturer", "model_name", "twin_version",
        "serial", "unit_id", "zero", "one", "one_if_cells", "relay_bits", "warning_bits",
        "comm_state", "heartbeat", "request_bits", "unlock", "lock_state", "lock_remaining_s",
        "wrong_pins", "soc_max_pct", "soc_min_pct", "ctrl_hb", "alarm_reset", "clear_counters",
        "data_age_s",
        "sunspec.local_remote", "sunspec.battery_type", "sunspec.state", "sunspec.evt1",
        "sunspec.evt_vendor1", "sunspec.request_inverter",
        "sf.pack_voltage_v", "sf.capacity_wh", "sf.capacity_ah", "sf.current_a",
        "sf.limit_current_a", "sf.power_w", "sf.max_power_w",
        "cell.flags", "cell.sunspec_status",
    }
)  # fmt: skip


#: Every value key the twin fills in (a map naming another is refused when it is loaded):
#: a readout field by its name, a cell's field as ``cell.<field>``, a writable setting as
#: ``setting.<field>``, or an encoding.
VALUE_KEYS = (
    frozenset(PACK_FIELDS)
    | frozenset(FLEET_FIELDS)
    | {f"cell.{name}" for name in CELL_FIELDS}
    | SETTING_KEYS
    | PLANT_KEYS
    | ENCODING_KEYS
)


def _identity(info: UnitInfo, kind: int) -> dict[str, Any]:
    return {
        "map_version": 1,
        "unit_kind": kind,
        "unit_name": info.name,
        "manufacturer": info.manufacturer,
        "model_name": info.model_name,
        "twin_version": info.version,
        "serial": info.name,
        "unit_id": info.unit_id,
        "zero": 0,
        "one": 1,
        "sunspec.battery_type": 4,  # LITHIUM_ION
        "sunspec.local_remote": 1,  # LOCAL: the BMS decides; the twin takes no commands
        "alarm_reset": 0,
        "clear_counters": 0,
        "unlock": 0,
        "soc_max_pct": 100.0,
        "soc_min_pct": 0.0,
        "comm_state": 2,
        "cells": [],
    }


def _cell_values(cell: CellReadout) -> dict[str, Any]:
    """One cell's value keys (``cell.<field>``) and its flags."""
    return {
        "cell.voltage_v": cell.voltage_v,
        "cell.temp_c": cell.temp_c,
        "cell.flags": (1 if cell.balancing else 0) | (2 if cell.stale else 0),
        "cell.age_s": None if cell.age_s is None else min(cell.age_s, 65534.0),
        "cell.sunspec_status": 1 if cell.balancing else 0,
    }


def _sunspec_state(readout: PackReadout | FleetReadout) -> int:
    """SunSpec 802 State: 2 initializing, 3 operating, 4 standby, 99 fault (stale)."""
    if not readout.initialized:
        return 2
    if readout.stale:
        return 99
    return 3 if readout.charge_effective or readout.discharge_effective else 4


def _limit_values(readout: PackReadout | FleetReadout) -> dict[str, Any]:
    alarms, early = readout.alarms, readout.early_warnings
    if alarms is None or early is None:
        return {}
    return {
        "request_bits": int(bool(readout.force_charge_request))
        | int(bool(readout.full_charge_request)) << 1,
        "sunspec.evt1": evt1(alarms, early),
    }


def pack_values(readout: PackReadout | None, info: UnitInfo) -> dict[str, Any]:
    """Every value key of a pack unit (static part: recomputed per new state)."""
    values = _identity(info, kind=1)
    values["pack_count"] = 1
    if readout is None:
        return values
    values.update((name, getattr(readout, name)) for name in PACK_FIELDS)
    values.update((f"plant.{name}", getattr(readout, f)) for name, f in PLANT_FIELDS.items())
    current_range = readout.current_rating_a * 1.2
    max_v = readout.voltage_rating_v * 1.1
    # The lights, then bit 8 divergence and bit 9 stale data (register 130 and SunSpec's EvtVnd1).
    all_warnings = (
        warning_bits(readout.warnings)
        | (1 << 8 if readout.divergent else 0)
        | (1 << 9 if readout.stale else 0)
    )
    values.update(
        {
            "one_if_cells": 1,
            "comm_state": 1 if readout.stale else 0,
            "cells": [_cell_values(cell) for cell in readout.cells],
            "relay_bits": sum(
                1 << i
                for i, on in enumerate(
                    (
                        readout.charge_reported,
                        readout.discharge_reported,
                        readout.charge_twin,
                        readout.discharge_twin,
                        readout.charge_effective,
                        readout.discharge_effective,
                    )
                )
                if on
            ),
            "warning_bits": all_warnings,
            "sunspec.evt_vendor1": all_warnings,
            "sunspec.state": _sunspec_state(readout),
            "sunspec.request_inverter": None if readout.pack_voltage_v is None else 0,
            "sf.pack_voltage_v": choose_sf(max_v, signed=False, finest=-2),
            "sf.capacity_wh": choose_sf(readout.capacity_wh, signed=False, finest=0),
            "sf.capacity_ah": choose_sf(readout.capacity_ah, signed=False, finest=-1),
            "sf.current_a": choose_sf(current_range, signed=True, finest=-2),
            "sf.limit_current_a": choose_sf(current_range, signed=False, finest=-2),
            "sf.power_w": choose_sf(max_v * current_range, signed=True, finest=0),
            "sf.max_power_w": choose_sf(max_v * current_range, signed=False, finest=0),
        }
    )
    values.update(_limit_values(readout))
    values.update((key, values[key.removeprefix("setting.")]) for key in SETTING_KEYS)
    return values


def fleet_values(readout: FleetReadout, info: UnitInfo) -> dict[str, Any]:
    """Every value key of the fleet unit.

    The extreme cells' registers hold ``pack index x 1000 + cell`` (pack index 1-based, in
    configuration order): one register names both.
    """
    values = _identity(info, kind=2)
    values.update((name, getattr(readout, name)) for name in FLEET_FIELDS)
    index = {pid: i + 1 for i, pid in enumerate(readout.pack_ids)}

    def cell_id(pack_id: str | None, cell: int | None) -> int | None:
        return None if pack_id is None or cell is None else index.get(pack_id, 0) * 1000 + cell

    max_v = readout.voltage_rating_v * 1.1
    warnings = warning_bits(readout.warnings)
    values.update(
        {
            "comm_state": 2 if not readout.initialized else 1 if readout.stale else 0,
            "min_cell_index": cell_id(readout.min_cell_pack_id, readout.min_cell_index),
            "max_cell_index": cell_id(readout.max_cell_pack_id, readout.max_cell_index),
            "min_temp_index": cell_id(readout.min_temp_pack_id, readout.min_temp_index),
            "max_temp_index": cell_id(readout.max_temp_pack_id, readout.max_temp_index),
            "relay_bits": (int(bool(readout.charge_twin)) << 2)
            | (int(bool(readout.discharge_twin)) << 3)
            | (int(readout.charge_effective) << 4)
            | (int(readout.discharge_effective) << 5),
            "warning_bits": warnings | (1 << 9 if readout.stale else 0),
            "sunspec.evt_vendor1": warnings,
            "sunspec.state": _sunspec_state(readout),
            "sf.pack_voltage_v": choose_sf(max_v, signed=False, finest=-2),
            "sf.capacity_wh": choose_sf(readout.capacity_wh or 0.0, signed=False, finest=0),
            "sf.capacity_ah": choose_sf(readout.capacity_ah or 0.0, signed=False, finest=-1),
            "sf.current_a": 0,
            "sf.limit_current_a": 0,
            "sf.power_w": choose_sf(max_v * 32767.0, signed=True, finest=0),
            "sf.max_power_w": choose_sf(max_v * 65534.0, signed=False, finest=0),
        }
    )
    if not readout.initialized:
        for key in ("relay_bits", "warning_bits", "sunspec.evt_vendor1"):
            values.pop(key)
    values.update(_limit_values(readout))
    return values
