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
from twin.protocol.readout import FleetReadout, PackReadout

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
class ResolvedProfile:
    """A profile made ready to send, once: its frames, their DBC messages, lengths and cycles.

    The exporter resolves its settings into one of these at start; the frames are then only
    encoded (no profile, DBC or DLC look-up per frame).
    """

    profile: Profile
    spec: ProfileSpec
    manufacturer: str
    messages: Mapping[int, Message]
    """Frame id -> the DBC message it is encoded with (SolArk's 0.1 V 0x356 included)."""
    lengths: Mapping[int, int]
    """Frame id -> DLC, from the DLC policy."""
    cycles_s: Mapping[int, float]
    """Frame id -> send period (the DBC's cycle, or the configured one; the profile's
    minimum period applied)."""


def resolve_profile(
    settings: CanSettings, database: Database, tenths: Database | None = None
) -> ResolvedProfile:
    """The profile of ``settings`` with its DBC messages, DLCs and cycles.

    ``tenths``: the DBC with the 0.1 V battery voltage (SolArk's 0x356).
    """
    spec = PROFILES[settings.profile]
    messages: dict[int, Message] = {}
    lengths: dict[int, int] = {}
    cycles: dict[int, float] = {}
    for frame_id in spec.frames:
        db = tenths if (spec.voltage_tenths and frame_id == 0x356 and tenths) else database
        message = db.get_message_by_frame_id(frame_id)
        messages[frame_id] = message
        if settings.dlc_policy == "8":
            lengths[frame_id] = 8
        elif settings.dlc_policy == "dbc":
            lengths[frame_id] = message.length
        else:
            lengths[frame_id] = spec.dlc.get(frame_id, message.length)
        cycle = settings.cycle_s
        if cycle is None:
            cycle = (message.cycle_time or 1000) / 1000.0
        cycles[frame_id] = max(cycle, spec.min_period_s)
    return ResolvedProfile(
        profile=settings.profile,
        spec=spec,
        manufacturer=settings.manufacturer or spec.manufacturer,
        messages=messages,
        lengths=lengths,
        cycles_s=cycles,
    )


def _cell_id(pack_id: str | None, cell: int | None, several: bool) -> str:
    """A cell id for 0x374-0x377: ``C12``, or ``pack2C12`` when there are several packs."""
    if pack_id is None or cell is None:
        return ""
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


def _pairs(alarms: LimitFlag, warnings: LimitFlag) -> dict[str, float | None]:
    values: dict[str, float | None] = {}
    for prefix in ("Alarm", "Warning"):
        flags = alarms if prefix == "Alarm" else warnings
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
    fleet: FleetReadout, profile: ResolvedProfile
) -> dict[int, dict[str, float | None]]:
    """Each frame of the profile: its signal values (None = the field is not available).

    The fleet readout already holds the fail-safe values of stale data (CCL = DCL = 0, the
    enables off, the communication alarm, no measurements); while the fleet is not complete,
    the profile's ``withheld_when_stale`` frames are left out. Empty before any pack's logic
    has run (nothing is said rather than something made up).
    """
    spec = profile.spec
    cvl = fleet.charge_voltage_limit_v
    ccl = fleet.charge_current_limit_a
    dcl = fleet.discharge_current_limit_a
    dvl = fleet.discharge_voltage_limit_v
    alarms = fleet.alarms
    warnings = fleet.early_warnings
    if cvl is None or ccl is None or dcl is None or dvl is None or alarms is None:
        return {}
    warnings = warnings if warnings is not None else LimitFlag.NONE
    stale = not fleet.complete
    voltage = fleet.pack_voltage_v
    if spec.stop_with_cvl and ccl == 0.0 and voltage is not None:
        # Victron does not stop charging on CCL 0: hold CVL at the pack voltage (never 0).
        cvl = max(0.1, min(cvl, voltage))
    modules = fleet.pack_count
    several = modules > 1
    capacity_ah = float(round(fleet.capacity_ah or 0.0))
    soc = fleet.soc_pct
    frames: dict[int, dict[str, float | None]] = {
        0x351: {
            "ChargeVoltageLimit": max(cvl, 0.1),
            "ChargeCurrentLimit": ccl,
            "DischargeCurrentLimit": dcl,
            "DischargeVoltageLimit": dvl,
        },
        0x355: {
            "StateOfCharge": None if soc is None else round(soc),
            "StateOfHealth": 100.0,  # the fleet's health is not known: the protocol's default
            "StateOfChargeHiRes": soc,
        },
        0x356: {
            "BatteryVoltage": voltage,
            "BatteryCurrent": fleet.battery_current_a,
            "BatteryTemperature": fleet.avg_temp_c,
        },
        0x359: {
            **{name: float(bool(alarms & flag)) for flag, name in _PYLON_PROTECT.items()},
            "ProtectSystemErrorBit7": 0.0,
            **{name: float(bool(warnings & flag)) for flag, name in _PYLON_WARN.items()},
            # A lost chain (or inverter link) is a protection: the system error bit, besides
            # the internal communication warning.
            **(
                {"ProtectSystemError": 1.0, "WarnInternalCommunication": 1.0}
                if alarms & LimitFlag.COMMUNICATION
                else {}
            ),
            "ModuleCount": float(min(modules, 255)),
            "ProtocolChar0": float(ord("P")),
            "ProtocolChar1": float(ord("N")),
        },
        0x35A: _pairs(alarms, warnings),
        0x35C: {
            "ChargeEnable": float(fleet.charge_effective),
            "DischargeEnable": float(fleet.discharge_effective),
            "RequestForceChargeI": float(bool(fleet.force_charge_request)),
            "RequestForceChargeII": float(bool(fleet.force_charge_request)),
            "RequestFullCharge": float(bool(fleet.full_charge_request)),
        },
        0x35E: _chars("ManufacturerChar", profile.manufacturer, spec.pad),
        0x35F: {
            "ProductCode": float(0x694C),  # "Li", low byte first
            "FirmwareMajor": 0.0,
            "FirmwareMinor": 1.0,
            "CapacityAh": capacity_ah,
            "HardwareVersion": 0.0,
        },
        0x370: _chars("NameChar", "123Smart", b"\0"),
        0x371: _chars("NameChar", "BMS twin", b"\0"),
        0x372: {
            "ModulesOnline": float(0 if stale else modules),
            "ModulesBlockingCharge": float(0 if fleet.charge_effective else modules),
            "ModulesBlockingDischarge": float(0 if fleet.discharge_effective else modules),
            "ModulesOffline": float(modules if stale else 0),
        },
        0x373: {
            "MinCellVoltage": fleet.min_cell_voltage_v,
            "MaxCellVoltage": fleet.max_cell_voltage_v,
            "MinCellTemperature": _kelvin(fleet.min_temp_c),
            "MaxCellTemperature": _kelvin(fleet.max_temp_c),
        },
        0x374: _chars(
            "IdChar", _cell_id(fleet.min_cell_pack_id, fleet.min_cell_index, several), b"\0"
        ),
        0x375: _chars(
            "IdChar", _cell_id(fleet.max_cell_pack_id, fleet.max_cell_index, several), b"\0"
        ),
        0x376: _chars(
            "IdChar", _cell_id(fleet.min_temp_pack_id, fleet.min_temp_index, several), b"\0"
        ),
        0x377: _chars(
            "IdChar", _cell_id(fleet.max_temp_pack_id, fleet.max_temp_index, several), b"\0"
        ),
        0x378: {
            "EnergyCharged": _kwh(fleet.harvested_total_wh),
            "EnergyDischarged": _kwh(fleet.consumed_total_wh),
        },
        0x379: {"InstalledCapacityAh": capacity_ah},
        0x382: _chars("ProductChar", "TWIN", b"\0"),
    }
    withheld = spec.withheld_when_stale if stale else ()
    return {frame_id: frames[frame_id] for frame_id in spec.frames if frame_id not in withheld}


def _kelvin(temp_c: float | None) -> float | None:
    return None if temp_c is None else temp_c + KELVIN


def _kwh(energy_wh: float | None) -> float | None:
    return None if energy_wh is None else energy_wh / 1000.0


def encode_frames(
    profile: ResolvedProfile,
    values: Mapping[int, Mapping[str, float | None]],
    out_of_range: list[str] | None = None,
) -> list[tuple[int, bytes]]:
    """(frame id, data) of each frame, strict; "not available" per the profile.

    A field without a value is 0 (pylon, victron, solark: their convention for unused bytes)
    or the SMA "invalid" value (0x8000 signed, 0xFFFF unsigned), which makes a Sunny Island
    keep its own default instead of taking a fake 0. A value the field cannot carry (a 255-cell
    pack's voltage in the LV family's 0.01 V field) is sent as "not available" too, and its
    name is added to ``out_of_range``. Each frame has the profile's DLC.
    """
    sma_invalid = profile.spec.sma_invalid
    out: list[tuple[int, bytes]] = []
    for frame_id, signals in values.items():
        message = profile.messages[frame_id]
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
            if sma_invalid:
                raw_invalid[signal.name] = 0x8000 if signal.is_signed else (1 << signal.length) - 1
            else:
                raw_invalid[signal.name] = 0
        data = bytearray(message.encode(_scaled(message, known), strict=True, padding=False))
        if raw_invalid:
            data = bytearray(_overlay_raw(message, bytes(data), raw_invalid))
        length = profile.lengths[frame_id]
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

#: The plant command frame a controller sends to a pack (offset from the pack's base id).
PLANT_COMMAND = "TwinPlantCommand"
PLANT_COMMAND_OFFSET = 8
#: Its ``Setpoint`` codes: the plant setpoints of an emulated pack (0: clear them all).
PLANT_SETPOINT_CODES = {
    1: "inverter_dc_a",
    2: "inverter_ac_w",
    3: "load_w",
    4: "solar_limit_pct",
    5: "mains_charger",
}


@dataclass(frozen=True, slots=True)
class PlantCommand:
    """A decoded plant command: a setpoint (None: every one) to a value, or cleared."""

    setpoint: str | None
    value: float | None
    """None: back to the profile."""
    timeout_s: float | None


def decode_plant_command(database: Database, data: bytes) -> PlantCommand:
    """The plant command in ``data``; ``ValueError`` says what is wrong with the frame."""
    message = database.get_message_by_name(PLANT_COMMAND)
    if len(data) != message.length:
        raise ValueError(f"{len(data)} bytes, not {message.length}")
    try:
        decoded = message.decode(data, decode_choices=False, scaling=True)
    except Exception as exc:  # cantools raises several kinds for a bad frame
        raise ValueError(f"not a {PLANT_COMMAND} ({exc})") from exc
    assert isinstance(decoded, dict)
    numbers = {k: v for k, v in decoded.items() if isinstance(v, int | float)}
    if len(numbers) != len(decoded):
        raise ValueError(f"not a {PLANT_COMMAND}: a signal is not a number")
    code = int(numbers["Setpoint"])
    if code == 0:
        return PlantCommand(None, None, None)
    name = PLANT_SETPOINT_CODES.get(code)
    if name is None:
        raise ValueError(f"setpoint code {code} is not one of 0..{len(PLANT_SETPOINT_CODES)}")
    timeout = float(numbers["TimeoutS"])
    if int(numbers["Clear"]):
        return PlantCommand(name, None, None)
    return PlantCommand(name, round(float(numbers["Value"]), 1), timeout or None)


def encode_plant_command(
    database: Database, setpoint: str | None, value: float | None, timeout_s: float | None
) -> bytes:
    """A ``TwinPlantCommand`` frame's data (the inverse of ``decode_plant_command``).

    ``setpoint`` to ``value`` (None: back to the profile; a ``setpoint`` of None clears them
    all), for ``timeout_s`` (None: until changed).
    """
    codes = {name: code for code, name in PLANT_SETPOINT_CODES.items()}
    if setpoint is not None and setpoint not in codes:
        raise ValueError(f"{setpoint!r} is not a plant setpoint ({', '.join(codes)})")
    message = database.get_message_by_name(PLANT_COMMAND)
    return bytes(
        message.encode(
            {
                "Setpoint": 0 if setpoint is None else codes[setpoint],
                "Value": 0.0 if value is None else round(value, 1),
                "TimeoutS": 0 if timeout_s is None else round(timeout_s),
                "Clear": 1 if value is None and setpoint is not None else 0,
            },
            strict=True,
        )
    )


#: The native frames of one pack, by offset from the pack's base id.
NATIVE_OFFSETS = {
    "TwinPackSummary": 0,
    "TwinRelaysWarnings": 1,
    "TwinLimits": 2,
    "TwinCounters": 3,
    "TwinCellExtremes": 4,
    "TwinCells": 5,
    "TwinPlantSetpoints": 6,
}


#: The native signals that carry a readout field as it is: message -> signal -> field.
NATIVE_SIGNALS: dict[str, dict[str, str]] = {
    "TwinPackSummary": {
        "PackVoltage": "pack_voltage_v",
        "BatteryCurrent": "battery_current_a",
        "StateOfCharge": "soc_pct",
        "MinTemperature": "min_temp_c",
        "MaxTemperature": "max_temp_c",
    },
    "TwinRelaysWarnings": {
        "ChargeReported": "charge_reported",
        "DischargeReported": "discharge_reported",
        "ChargeTwin": "charge_twin",
        "DischargeTwin": "discharge_twin",
        "ChargeEffective": "charge_effective",
        "DischargeEffective": "discharge_effective",
        "WarningE": "warning_e",
        "WarningVl": "warning_vl",
        "WarningVh": "warning_vh",
        "WarningTl": "warning_tl",
        "WarningTh": "warning_th",
        "Divergent": "divergent",
        "Stale": "stale",
        "SocCalibrated": "soc_calibrated",
        "Alarms": "alarms",
        "EarlyWarnings": "early_warnings",
        "DataAge": "data_age_s",
    },
    "TwinLimits": {
        "ChargeVoltageLimit": "charge_voltage_limit_v",
        "ChargeCurrentLimit": "charge_current_limit_a",
        "DischargeCurrentLimit": "discharge_current_limit_a",
        "DischargeVoltageLimit": "discharge_voltage_limit_v",
    },
    "TwinCounters": {
        "HarvestedTotal": "harvested_total_wh",
        "ConsumedTotal": "consumed_total_wh",
    },
    "TwinPlantSetpoints": {
        "InverterDc": "plant_inverter_dc_a",
        "InverterAc": "plant_inverter_ac_w",
        "Load": "plant_load_w",
        "SolarLimit": "plant_solar_limit_pct",
        "MainsCharger": "plant_mains_charger",
    },
    "TwinCellExtremes": {
        "MinCellVoltage": "min_cell_voltage_v",
        "MaxCellVoltage": "max_cell_voltage_v",
        "MinCellId": "min_cell_index",
        "MaxCellId": "max_cell_index",
        "MinTemperatureId": "min_temp_index",
        "MaxTemperatureId": "max_temp_index",
    },
}
#: The multiplexed cell frame's signals (``Cell<n>Voltage`` ...): suffix -> cell field.
NATIVE_CELL_SIGNALS = {"Voltage": "voltage_v", "Temperature": "temp_c", "Flags": "flags"}
#: Bit flags sent as 0/1 even before they are known (a relay not reported reads off).
_NATIVE_BITS = frozenset(NATIVE_SIGNALS["TwinRelaysWarnings"]) - {
    "Alarms",
    "EarlyWarnings",
    "DataAge",
}
#: Encodings of fields into a narrower range (whole degrees in an int8, 0.1 s in a u16).
_NATIVE_CLAMPS = {"MinTemperature": (-128.0, 127.0), "MaxTemperature": (-128.0, 127.0)}
_NATIVE_CAPS = {"DataAge": 6553.5}


def _native_value(signal: str, value: object) -> float | None:
    if signal in _NATIVE_BITS:
        return float(bool(value))
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]  # fields are numbers, bools or flags
    if signal in _NATIVE_CLAMPS:
        lo, hi = _NATIVE_CLAMPS[signal]
        return _clamp(number, lo, hi)
    if signal in _NATIVE_CAPS:
        return min(number, _NATIVE_CAPS[signal])
    return number


#: The plant frame's set bits, in its signals' order (``SetMask``).
_PLANT_SIGNALS = tuple(NATIVE_SIGNALS["TwinPlantSetpoints"])


def native_values(readout: PackReadout) -> dict[str, dict[str, float | None]]:
    """The native frames of one pack (but the cell frames), by message name."""
    values = {
        message: {
            signal: _native_value(signal, getattr(readout, field))
            for signal, field in signals.items()
        }
        for message, signals in NATIVE_SIGNALS.items()
    }
    # The plant frame says which setpoints are set; a field not set reads 0, not "not
    # available" (all ones would read -0.1 A in a signed field).
    plant = values["TwinPlantSetpoints"]
    plant["SetMask"] = float(
        sum(1 << bit for bit, name in enumerate(_PLANT_SIGNALS) if plant[name] is not None)
    )
    for name in _PLANT_SIGNALS:
        if plant[name] is None:
            plant[name] = 0.0
    return values


def native_cell_values(readout: PackReadout, index: int) -> dict[str, float | None]:
    """The multiplexed cell frame of cell ``index`` (1-based)."""
    cells = readout.cells
    cell = cells[index - 1] if 1 <= index <= len(cells) else None
    flags = 0
    if cell is not None:
        flags = (1 if cell.balancing else 0) | (2 if cell.stale else 0)
    return {
        "CellIndex": float(index),
        f"Cell{index}Voltage": None if cell is None else cell.voltage_v,
        f"Cell{index}Temperature": None if cell is None else cell.temp_c,
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
