"""The inverter CAN frames of a profile, from the fleet's state: pure (cantools only encodes).

A profile (``pylon``, ``victron``, ``sma``, ``solark``) chooses the frames of dbc/inverter.dbc
that are sent, their DLC and the quirks of the inverters it targets
(../shared/reference/inverter-can.md sections 1.7-1.9):

- ``pylon``: Pylontech LV 1.2, 0x351 / 355 / 356 / 359 / 35C / 35E "PYLON" (space padded), with
  the DLCs of real packs (8 / 4 / 6 / 7 / 2 / 8);
- ``victron``: 0x351 / 355 / 356 / 35A / 35E / 35F / 370-379 / 382; charging is stopped with
  CVL = the pack voltage and CCL 0, and CVL is never 0 (a GX takes CVL 0 as over-voltage);
- ``sma``: Sunny Island, 0x351 / 355 / 356 / 35A / 35E / 35F; fields the twin does not fill are
  "invalid" (0x8000 signed, 0xFFFF unsigned), never faster than one frame per id per 200 ms;
- ``solark``: 0x351 / 355 / 356 (voltage in 0.1 V) / 359 / 35C / 35E / 379, 8-byte frames.

``inverter_values`` gives each frame's signal values; ``encode_frames`` packs them with the
DBC (strict: a value the frame cannot carry is an error, not a silent wrap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from cantools.database.can import Database, Message

from twin.model.limits import LimitFlag
from twin.model.status import StatusFlag
from twin.protocol.shadow import FleetView, TwinState

KELVIN = 273.15


class Profile(StrEnum):
    """Which inverter family the frames are for."""

    PYLON = "pylon"
    VICTRON = "victron"
    SMA = "sma"
    SOLARK = "solark"


@dataclass(frozen=True, slots=True)
class ProfileSpec:
    """The frames of a profile and how they are sent."""

    frames: tuple[int, ...]
    manufacturer: str
    pad: bytes = b"\0"
    dlc: Mapping[int, int] = field(default_factory=dict)
    """Frame id -> DLC where it differs from the DBC's length."""
    min_period_s: float = 0.0
    sma_invalid: bool = False
    stop_with_cvl: bool = False
    voltage_tenths: bool = False
    withheld_when_stale: tuple[int, ...] = ()
    """Measurement frames not sent while the data is stale: the protocol has no "invalid"
    value for their fields, and 0 V / 0 A / 0.0 C would read as a plausible measurement. The
    limits (CCL = DCL = 0), the enables (off) and the alarms keep going."""


PROFILES: dict[Profile, ProfileSpec] = {
    Profile.PYLON: ProfileSpec(
        frames=(0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E),
        manufacturer="PYLON",
        pad=b" ",
        dlc={0x355: 4, 0x356: 6, 0x359: 7, 0x35C: 2},
        withheld_when_stale=(0x356,),
    ),
    Profile.VICTRON: ProfileSpec(
        frames=(
            0x351,
            0x355,
            0x356,
            0x35A,
            0x35E,
            0x35F,
            0x370,
            0x371,
            0x372,
            0x373,
            0x374,
            0x375,
            0x376,
            0x377,
            0x378,
            0x379,
            0x382,
        ),
        manufacturer="TWIN",
        stop_with_cvl=True,
        withheld_when_stale=(0x356, 0x373),
    ),
    Profile.SMA: ProfileSpec(
        frames=(0x351, 0x355, 0x356, 0x35A, 0x35E, 0x35F),
        manufacturer="SMA",
        min_period_s=0.2,
        sma_invalid=True,
    ),
    Profile.SOLARK: ProfileSpec(
        frames=(0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E, 0x379),
        manufacturer="PYLON",
        pad=b" ",
        dlc={0x355: 8, 0x356: 8, 0x359: 8, 0x35C: 8},
        voltage_tenths=True,
        withheld_when_stale=(0x356,),
    ),
}


class HeartbeatAction(StrEnum):
    """What the twin does when the inverter's 0x305 stops."""

    LOG = "log"
    """A warning in the log, nothing else."""
    ALARM = "alarm"
    """The communication alarm in the frames (0x359 / 0x35A) as well."""
    FAIL_SAFE = "fail-safe"
    """The alarm, and CCL = DCL = 0 until the inverter speaks again."""


@dataclass(frozen=True, slots=True)
class CanSettings:
    """The CAN exporter: the bus, the inverter profile, the native frames, the heartbeat."""

    interface: str = "virtual"
    channel: str = "twin"
    bitrate: int | None = 500_000
    bus_options: tuple[tuple[str, str | int | float | bool], ...] = ()
    """More python-can bus arguments (e.g. ("receive_own_messages", False))."""
    profile: Profile = Profile.PYLON
    manufacturer: str | None = None
    """0x35E; None = the profile's."""
    cycle_s: float | None = None
    """One cycle for every inverter frame; None = the DBC's GenMsgCycleTime."""
    dlc_policy: str = "profile"
    """"profile" (the profile's DLCs), "dbc" (the DBC lengths) or "8" (every frame 8 bytes)."""
    native: bool = True
    native_base_id: int = 0x700
    """Native frames of pack i (0-based) at base + 0x10 x i + 0..5."""
    cells_per_cycle: int = 16
    """Native cell frames sent per 100 ms cell cycle (all cells rotate through)."""
    heartbeat_timeout_s: float | None = None
    """Watch the inverter's 0x305: None = not watched."""
    heartbeat_action: HeartbeatAction = HeartbeatAction.LOG
    silent_until_inverter: bool = False
    """Send nothing until the inverter has sent a frame (as BYD-style inverters expect)."""
    retry_s: float = 2.0
    """Wait before reopening a bus that failed (bus-off, adapter unplugged)."""

    def __post_init__(self) -> None:
        if self.dlc_policy not in ("profile", "dbc", "8"):
            raise ValueError(f"dlc_policy {self.dlc_policy!r} is not profile, dbc or 8")
        if self.cycle_s is not None and not self.cycle_s > 0:
            raise ValueError("cycle_s must be > 0")
        if not 0 <= self.native_base_id <= 0x7FF - 5:
            raise ValueError(f"native_base_id {self.native_base_id:#x} is not an 11-bit id")
        if self.cells_per_cycle < 1:
            raise ValueError("cells_per_cycle must be >= 1")


@dataclass(frozen=True, slots=True)
class InverterView:
    """What the inverter link carries: the fleet, or fail-safe values when it is stale."""

    cvl_v: float
    ccl_a: float
    dcl_a: float
    dvl_v: float
    soc_pct: float | None
    soh_pct: float | None
    voltage_v: float | None
    current_a: float | None
    temperature_c: float | None
    alarms: LimitFlag
    warnings: LimitFlag
    charge_enable: bool
    discharge_enable: bool
    force_charge: bool
    full_charge: bool
    modules: int
    capacity_ah: float
    charged_kwh: float
    discharged_kwh: float
    min_cell_v: float | None
    max_cell_v: float | None
    min_temp_c: float | None
    max_temp_c: float | None
    min_cell_id: str
    max_cell_id: str
    min_temp_id: str
    max_temp_id: str
    stale: bool


def inverter_view(
    fleet: FleetView, states: Mapping[str, TwinState], nominal_cell_v: float = 3.2
) -> InverterView | None:
    """The inverter's view of the fleet; None before any pack has a state.

    Stale data (or an incomplete fleet) sends fail-safe values: CCL = DCL = 0, both enables
    off, the communication alarm set, measurements withheld.
    """
    state = fleet.state
    if state is None:
        return None
    limits = state.limits
    logic = [s.logic for s in states.values() if s.logic is not None]
    capacity_ah = sum(p.capacity_wh / (nominal_cell_v * p.inputs.cell_count) for p in logic)
    safe = fleet.stale or not fleet.complete
    alarms = limits.alarms | (LimitFlag.COMMUNICATION if safe else LimitFlag.NONE)
    temps = [state.min_temp.value, state.max_temp.value]
    several = len(states) > 1
    return InverterView(
        cvl_v=limits.charge_voltage_v,
        ccl_a=0.0 if safe or not fleet.effective_charge else limits.charge_current_a,
        dcl_a=0.0 if safe or not fleet.effective_discharge else limits.discharge_current_a,
        dvl_v=limits.discharge_voltage_v,
        soc_pct=state.soc_pct,
        soh_pct=None,
        voltage_v=None if safe else state.pack_voltage_v,
        current_a=None if safe else state.battery_current_a,
        temperature_c=None if safe else sum(temps) / 2,
        alarms=alarms,
        warnings=limits.warnings,
        charge_enable=not safe and fleet.effective_charge,
        discharge_enable=not safe and fleet.effective_discharge,
        force_charge=limits.force_charge,
        full_charge=limits.full_charge,
        modules=len(states),
        capacity_ah=capacity_ah,
        charged_kwh=state.energy.harvested_total_wh / 1000.0,
        discharged_kwh=state.energy.consumed_total_wh / 1000.0,
        min_cell_v=None if safe else state.min_cell_voltage.value,
        max_cell_v=None if safe else state.max_cell_voltage.value,
        min_temp_c=None if safe else state.min_temp.value,
        max_temp_c=None if safe else state.max_temp.value,
        min_cell_id=_cell_id(
            state.min_cell_voltage.pack_id, state.min_cell_voltage.cell_index, several
        ),
        max_cell_id=_cell_id(
            state.max_cell_voltage.pack_id, state.max_cell_voltage.cell_index, several
        ),
        min_temp_id=_cell_id(state.min_temp.pack_id, state.min_temp.cell_index, several),
        max_temp_id=_cell_id(state.max_temp.pack_id, state.max_temp.cell_index, several),
        stale=safe,
    )


def _cell_id(pack_id: str, cell: int, several: bool) -> str:
    """A cell id for 0x374-0x377: ``C12``, or ``pack2C12`` when there are several packs."""
    text = f"{pack_id}C{cell}" if several else f"C{cell}"
    return text[:8]


def _chars(prefix: str, text: str, pad: bytes) -> dict[str, float | None]:
    data = text.encode("ascii", errors="replace")[:8].ljust(8, pad)
    return {f"{prefix}{i}": float(b) for i, b in enumerate(data)}


#: Pylon 0x359 protection (the BMS acted) and alarm (early warning) bits of each flag.
_PYLON_PROTECT = {
    LimitFlag.CELL_OVER_VOLTAGE: "ProtectCellOverVoltage",
    LimitFlag.CELL_UNDER_VOLTAGE: "ProtectCellUnderVoltage",
    LimitFlag.OVER_TEMPERATURE: "ProtectOverTemperature",
    LimitFlag.UNDER_TEMPERATURE: "ProtectUnderTemperature",
    LimitFlag.DISCHARGE_OVER_CURRENT: "ProtectDischargeOverCurrent",
    LimitFlag.CHARGE_OVER_CURRENT: "ProtectChargeOverCurrent",
    LimitFlag.BMS_INTERNAL: "ProtectSystemError",
}
_PYLON_WARN = {
    LimitFlag.CELL_OVER_VOLTAGE: "WarnHighVoltage",
    LimitFlag.CELL_UNDER_VOLTAGE: "WarnLowVoltage",
    LimitFlag.OVER_TEMPERATURE: "WarnHighTemperature",
    LimitFlag.UNDER_TEMPERATURE: "WarnLowTemperature",
    LimitFlag.DISCHARGE_OVER_CURRENT: "WarnDischargeHighCurrent",
    LimitFlag.CHARGE_OVER_CURRENT: "WarnChargeHighCurrent",
    LimitFlag.COMMUNICATION: "WarnInternalCommunication",
}
#: SMA/Victron 0x35A pairs of each flag (the twin supports these events; the rest send 0).
_PAIRS = {
    LimitFlag.CELL_OVER_VOLTAGE: "HighVoltage",
    LimitFlag.CELL_UNDER_VOLTAGE: "LowVoltage",
    LimitFlag.OVER_TEMPERATURE: "HighTemperature",
    LimitFlag.UNDER_TEMPERATURE: "LowTemperature",
    LimitFlag.DISCHARGE_OVER_CURRENT: "HighDischargeCurrent",
    LimitFlag.CHARGE_OVER_CURRENT: "HighChargeCurrent",
    LimitFlag.BMS_INTERNAL: "BmsInternal",
    LimitFlag.CELL_IMBALANCE: "CellImbalance",
}
RAISED, CLEARED = 1, 2


def _pairs(view: InverterView) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for prefix in ("Alarm", "Warning"):
        flags = view.alarms if prefix == "Alarm" else view.warnings
        values[f"{prefix}General"] = float(
            RAISED if (prefix == "Alarm" and flags & LimitFlag.COMMUNICATION) else CLEARED
        )
        for flag, name in _PAIRS.items():
            values[f"{prefix}{name}"] = float(RAISED if flags & flag else CLEARED)
        # Events the twin cannot know: "not supported" (0), never "OK".
        for name in ("HighTemperatureCharge", "LowTemperatureCharge", "Contactor", "ShortCircuit"):
            values[f"{prefix}{name}"] = 0.0
        for name in ("Reserved13", "Reserved14", "Reserved15"):
            values[f"{prefix}{name}"] = 0.0
    return values


def inverter_values(
    view: InverterView, profile: Profile, manufacturer: str | None = None
) -> dict[int, dict[str, float | None]]:
    """Each frame of the profile: its signal values (None = the field is not available).

    While the data is stale, the profile's ``withheld_when_stale`` frames are left out.
    """
    spec = PROFILES[profile]
    cvl = view.cvl_v
    ccl = view.ccl_a
    if spec.stop_with_cvl and ccl == 0.0 and view.voltage_v is not None:
        # Victron does not stop charging on CCL 0: hold CVL at the pack voltage (never 0).
        cvl = max(0.1, min(cvl, view.voltage_v))
    frames: dict[int, dict[str, float | None]] = {
        0x351: {
            "ChargeVoltageLimit": max(cvl, 0.1),
            "ChargeCurrentLimit": ccl,
            "DischargeCurrentLimit": view.dcl_a,
            "DischargeVoltageLimit": view.dvl_v,
        },
        0x355: {
            "StateOfCharge": None if view.soc_pct is None else round(view.soc_pct),
            "StateOfHealth": view.soh_pct if view.soh_pct is not None else 100.0,
            "StateOfChargeHiRes": view.soc_pct,
        },
        0x356: {
            "BatteryVoltage": view.voltage_v,
            "BatteryCurrent": view.current_a,
            "BatteryTemperature": view.temperature_c,
        },
        0x359: {
            **{name: float(bool(view.alarms & flag)) for flag, name in _PYLON_PROTECT.items()},
            "ProtectSystemErrorBit7": 0.0,
            **{name: float(bool(view.warnings & flag)) for flag, name in _PYLON_WARN.items()},
            # A lost chain (or inverter link) is a protection: the system error bit, besides
            # the internal communication warning.
            **(
                {"ProtectSystemError": 1.0, "WarnInternalCommunication": 1.0}
                if view.alarms & LimitFlag.COMMUNICATION
                else {}
            ),
            "ModuleCount": float(min(view.modules, 255)),
            "ProtocolChar0": float(ord("P")),
            "ProtocolChar1": float(ord("N")),
        },
        0x35A: _pairs(view),
        0x35C: {
            "ChargeEnable": float(view.charge_enable),
            "DischargeEnable": float(view.discharge_enable),
            "RequestForceChargeI": float(view.force_charge),
            "RequestForceChargeII": float(view.force_charge),
            "RequestFullCharge": float(view.full_charge),
        },
        0x35E: _chars("ManufacturerChar", manufacturer or spec.manufacturer, spec.pad),
        0x35F: {
            "ProductCode": float(0x694C),  # "Li", low byte first
            "FirmwareMajor": 0.0,
            "FirmwareMinor": 1.0,
            "CapacityAh": float(round(view.capacity_ah)),
            "HardwareVersion": 0.0,
        },
        0x370: _chars("NameChar", "123Smart", b"\0"),
        0x371: _chars("NameChar", "BMS twin", b"\0"),
        0x372: {
            "ModulesOnline": float(0 if view.stale else view.modules),
            "ModulesBlockingCharge": float(0 if view.charge_enable else view.modules),
            "ModulesBlockingDischarge": float(0 if view.discharge_enable else view.modules),
            "ModulesOffline": float(view.modules if view.stale else 0),
        },
        0x373: {
            "MinCellVoltage": view.min_cell_v,
            "MaxCellVoltage": view.max_cell_v,
            "MinCellTemperature": None if view.min_temp_c is None else view.min_temp_c + KELVIN,
            "MaxCellTemperature": None if view.max_temp_c is None else view.max_temp_c + KELVIN,
        },
        0x374: _chars("IdChar", view.min_cell_id, b"\0"),
        0x375: _chars("IdChar", view.max_cell_id, b"\0"),
        0x376: _chars("IdChar", view.min_temp_id, b"\0"),
        0x377: _chars("IdChar", view.max_temp_id, b"\0"),
        0x378: {"EnergyCharged": view.charged_kwh, "EnergyDischarged": view.discharged_kwh},
        0x379: {"InstalledCapacityAh": float(round(view.capacity_ah))},
        0x382: _chars("ProductChar", "TWIN", b"\0"),
    }
    withheld = spec.withheld_when_stale if view.stale else ()
    return {frame_id: frames[frame_id] for frame_id in spec.frames if frame_id not in withheld}


def encode_frames(
    database: Database,
    values: Mapping[int, Mapping[str, float | None]],
    profile: Profile,
    solark: Database | None = None,
    out_of_range: list[str] | None = None,
) -> list[tuple[int, bytes]]:
    """(frame id, data) of each frame, strict; "not available" per the profile.

    A field without a value is 0 (pylon, victron, solark: their convention for unused bytes)
    or the SMA "invalid" value (0x8000 signed, 0xFFFF unsigned), which makes a Sunny Island
    keep its own default instead of taking a fake 0. A value the field cannot carry (a 255-cell
    pack's voltage in the LV family's 0.01 V field) is sent as "not available" too, and its
    name is added to ``out_of_range``.
    """
    spec = PROFILES[profile]
    out: list[tuple[int, bytes]] = []
    for frame_id, signals in values.items():
        db = solark if (spec.voltage_tenths and frame_id == 0x356 and solark) else database
        message = db.get_message_by_frame_id(frame_id)
        known = {name: value for name, value in signals.items() if value is not None}
        for signal in message.signals:
            value = known.get(signal.name)
            if value is None:
                continue
            lo = signal.minimum if signal.minimum is not None else -math.inf
            hi = signal.maximum if signal.maximum is not None else math.inf
            if not lo <= value <= hi:
                del known[signal.name]
                if out_of_range is not None:
                    out_of_range.append(f"{message.name}.{signal.name} = {value:g}")
        raw_invalid: dict[str, int] = {}
        for signal in message.signals:
            if signal.name in known:
                continue
            if spec.sma_invalid:
                raw_invalid[signal.name] = 0x8000 if signal.is_signed else (1 << signal.length) - 1
            else:
                raw_invalid[signal.name] = 0
        data = bytearray(message.encode(_scaled(message, known), strict=True, padding=False))
        if raw_invalid:
            data = bytearray(_overlay_raw(message, bytes(data), raw_invalid))
        length = spec.dlc.get(frame_id, message.length)
        out.append((frame_id, bytes(data[:length]).ljust(length, b"\0")))
    return out


def _scaled(message: Message, known: Mapping[str, float]) -> dict[str, float]:
    """Every signal of the message: the known values, 0 for the others (overlaid later)."""
    values: dict[str, float] = {}
    for signal in message.signals:
        if signal.name in known:
            values[signal.name] = known[signal.name]
        else:
            lo = signal.minimum if signal.minimum is not None else 0.0
            values[signal.name] = max(lo, min(0.0, signal.maximum or 0.0))
    return values


def _overlay_raw(message: Message, data: bytes, raw: Mapping[str, int]) -> bytes:
    """Write raw (unscaled) values over some little-endian signals of an encoded frame."""
    number = int.from_bytes(data, "little")
    for signal in message.signals:
        if signal.name not in raw:
            continue
        mask = ((1 << signal.length) - 1) << signal.start
        value = (raw[signal.name] & ((1 << signal.length) - 1)) << signal.start
        number = (number & ~mask) | value
    return number.to_bytes(len(data), "little")


# ---- the native twin frames (dbc/twin.dbc) -----------------------------------------------

#: The native frames of one pack, by offset from the pack's base id.
NATIVE_OFFSETS = {
    "TwinPackSummary": 0,
    "TwinRelaysWarnings": 1,
    "TwinLimits": 2,
    "TwinCounters": 3,
    "TwinCellExtremes": 4,
    "TwinCells": 5,
}


def native_values(state: TwinState) -> dict[str, dict[str, float | None]]:
    """The native frames of one pack (but the cell frames), by message name."""
    logic = state.logic
    obs = state.observation
    inputs = None if logic is None or state.stale else logic.inputs
    limits = state.limits
    warnings = state.warnings
    bits = {
        "ChargeReported": state.reported_charge,
        "DischargeReported": state.reported_discharge,
        "ChargeTwin": state.twin_charge,
        "DischargeTwin": state.twin_discharge,
        "ChargeEffective": state.effective_charge,
        "DischargeEffective": state.effective_discharge,
        "WarningE": bool(warnings & StatusFlag.E),
        "WarningVl": bool(warnings & StatusFlag.VL),
        "WarningVh": bool(warnings & StatusFlag.VH),
        "WarningTl": bool(warnings & StatusFlag.TL),
        "WarningTh": bool(warnings & StatusFlag.TH),
        "Divergent": state.divergent,
        "Stale": state.stale,
        "SocCalibrated": logic is not None and logic.soc_calibrated,
    }
    age = obs.frame_age_s
    return {
        "TwinPackSummary": {
            "PackVoltage": None if inputs is None else inputs.pack_voltage_v,
            "BatteryCurrent": None if inputs is None else inputs.measured_battery_current_a,
            "StateOfCharge": None if logic is None else logic.soc_pct,
            "MinTemperature": None if inputs is None else _clamp(inputs.min_temp_c, -128, 127),
            "MaxTemperature": None if inputs is None else _clamp(inputs.max_temp_c, -128, 127),
        },
        "TwinRelaysWarnings": {
            **{name: float(bool(on)) for name, on in bits.items()},
            "Alarms": None if limits is None else float(int(limits.alarms)),
            "EarlyWarnings": None if limits is None else float(int(limits.warnings)),
            "DataAge": None if age is None else min(age, 6553.5),
        },
        "TwinLimits": {
            "ChargeVoltageLimit": None if limits is None else limits.charge_voltage_v,
            "ChargeCurrentLimit": None if limits is None else limits.charge_current_a,
            "DischargeCurrentLimit": None if limits is None else limits.discharge_current_a,
            "DischargeVoltageLimit": None if limits is None else limits.discharge_voltage_v,
        },
        "TwinCounters": {
            "HarvestedTotal": None if logic is None else logic.energy.harvested_total_wh,
            "ConsumedTotal": None if logic is None else logic.energy.consumed_total_wh,
        },
        "TwinCellExtremes": {
            "MinCellVoltage": None if inputs is None else inputs.min_cell_voltage_v,
            "MaxCellVoltage": None if inputs is None else inputs.max_cell_voltage_v,
            "MinCellId": None if inputs is None else float(inputs.min_cell_index),
            "MaxCellId": None if inputs is None else float(inputs.max_cell_index),
            "MinTemperatureId": None if inputs is None else float(inputs.min_temp_index),
            "MaxTemperatureId": None if inputs is None else float(inputs.max_temp_index),
        },
    }


def native_cell_values(state: TwinState, index: int) -> dict[str, float | None]:
    """The multiplexed cell frame of cell ``index`` (1-based)."""
    cells = state.observation.cells
    cell = cells[index - 1] if 1 <= index <= len(cells) else None
    fresh = cell is not None and not state.stale
    flags = 0
    if cell is not None:
        flags = (1 if cell.balancing else 0) | (2 if cell.stale or state.stale else 0)
    return {
        "CellIndex": float(index),
        f"Cell{index}Voltage": cell.voltage_v if fresh and cell is not None else None,
        f"Cell{index}Temperature": cell.temp_c if fresh and cell is not None else None,
        f"Cell{index}Flags": float(flags),
    }


def _clamp(value: float, lo: float, hi: float) -> float:
    return float(min(hi, max(lo, round(value))))


def encode_native(
    database: Database, name: str, values: Mapping[str, float | None], frame_id: int
) -> tuple[int, bytes]:
    """One native frame at ``frame_id``; a value not available is sent as all ones."""
    message = database.get_message_by_name(name)
    # Every signal named in ``values`` (a multiplexed frame names its own branch only); the
    # unknown ones are encoded as their minimum, then overwritten with all ones.
    encodable: dict[str, float] = {}
    unknown_names = {name for name, value in values.items() if value is None}
    for signal in message.signals:
        if signal.name in values:
            value = values[signal.name]
            lo = signal.minimum if signal.minimum is not None else 0.0
            hi = signal.maximum if signal.maximum is not None else math.inf
            if value is not None and not lo <= value <= hi:
                value = None  # does not fit the field: "not available", never a wrapped value
                unknown_names.add(signal.name)
            encodable[signal.name] = value if value is not None else max(lo, 0.0)
    data = message.encode(encodable, strict=True)
    unknown = {s.name: (1 << s.length) - 1 for s in message.signals if s.name in unknown_names}
    if unknown:
        data = _overlay_raw(message, data, unknown)
    return frame_id, bytes(data)
