r"""The 58-byte 123\SmartBMS UART frame: ``Frame``, ``encode_frame`` and ``decode_frame``.

Layout (smartbms-uart.md section 2): big-endian, no header, byte 57 = the low 8 bits of the sum
of bytes 0..56. Voltages are 5 mV per bit, currents sign-magnitude at 0.125 A per bit with an
ASCII sign (``+``, ``-``, ``X`` = sensor absent), temperatures an offset code whose scaling is
disputed between sources (``TemperatureScale``), energies in Wh (today, stored) and kWh
(totals), and bytes 47/48 either the key+25/value side channel (firmware >= 3.3.6) or the legacy
device clock (``FirmwareLayout``).

Physical values are computed as ``raw / 200`` rather than ``raw * 0.005`` so that they are the
nearest double to the decimal value (``decode`` of 10640 gives exactly ``53.2``); encoding
rounds to the nearest raw step, so ``decode(encode(f)) == f`` for every frame that decoding can
produce, and ``encode(decode(b)) == b`` for every plausible frame whose currents are not "X".
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Final

from twin.model.status import STATUS_FLAGS, StatusFlag
from twin.model.values import Value

FRAME_LENGTH = 58
"""Bytes per frame, checksum included."""
CHECKSUM_OFFSET = 57

SIGN_PLUS = 0x2B
SIGN_MINUS = 0x2D
SIGN_ABSENT = 0x58
"""``X``: the current sensor is not available."""
SIGN_BYTES = frozenset((SIGN_PLUS, SIGN_MINUS, SIGN_ABSENT))

KEY_OFFSET = 25
"""Byte 47 carries key + 25 (firmware >= 3.3.6), so that legacy hours 0..23 never read as keys."""
KEY_COUNT = 19
"""Keys 0..18 (smartbms-uart.md section 2.5)."""
MAX_RAW_KEY = KEY_OFFSET + KEY_COUNT - 1

# Byte offsets of the fields that plausibility checks look at.
SIGN_OFFSETS = (3, 6, 9)
_I1_SIGN, _I2_SIGN, _ISUM_SIGN = SIGN_OFFSETS
MIN_CELL_OFFSET, MAX_CELL_OFFSET, MIN_TEMP_CELL_OFFSET, MAX_TEMP_CELL_OFFSET = 14, 17, 20, 23
CELL_INDEX_OFFSET = 24
CELL_COUNT_OFFSET = 25
SOC_OFFSET = 40
KEY_BYTE_OFFSET, VALUE_BYTE_OFFSET = 47, 48

# fmt: off
_LAYOUT = struct.Struct(
    ">"
    "BH"        #  0 pack voltage, u24 x 5 mV (high byte, low 16 bits)
    "BH"        #  3 I1 sign, magnitude x 0.125 A
    "BH"        #  6 I2 sign, magnitude
    "BH"        #  9 I-sum (battery) sign, magnitude
    "HB"        # 12 lowest cell voltage, its cell number
    "HB"        # 15 highest cell voltage, its cell number
    "HB"        # 18 lowest temperature, its cell number
    "HB"        # 21 highest temperature, its cell number
    "BB"        # 24 rotating cell number, number of cells
    "HH"        # 26 that cell's voltage, temperature
    "B"         # 30 status byte 1
    "BH"        # 31 energy collected today, Wh
    "BH"        # 34 energy stored, Wh
    "BH"        # 37 energy consumed today, Wh
    "B"         # 40 SOC %
    "BH"        # 41 total energy collected, kWh
    "BH"        # 44 total energy consumed, kWh
    "BB"        # 47 key + 25 / value (or legacy hours / minutes)
    "HHHH"      # 49 capacity x 0.1 kWh, V-min, V-max, V-balance x 5 mV
)
# fmt: on
assert _LAYOUT.size == FRAME_LENGTH - 1


class TemperatureScale(Enum):
    """How a raw temperature code maps to degrees Celsius (smartbms-uart.md section 2.3)."""

    APP = "app"
    """``T = 0.857 x raw - 232``: 123electric's own software (Venus driver, BLE app). Default."""
    OFFSET_276 = "offset276"
    """``T = raw - 276``: the vendor's protocol PDF (1 degree per bit)."""


class FirmwareLayout(Enum):
    """What bytes 47/48 carry (smartbms-uart.md section 4)."""

    KEY_VALUE = "key-value"
    """Firmware >= 3.3.6: key + 25 and its value byte; a key byte below 25 means "no pair"."""
    LEGACY_CLOCK = "legacy-clock"
    """Older firmware: device hours (0..23) and minutes (0..59)."""


@dataclass(frozen=True, slots=True)
class FrameFormat:
    """The decoding choices that the bytes themselves cannot tell."""

    temperature_scale: TemperatureScale = TemperatureScale.APP
    layout: FirmwareLayout = FirmwareLayout.KEY_VALUE


DEFAULT_FORMAT = FrameFormat()


_CHARGE_ALLOWED = int(StatusFlag.CHARGE_ALLOWED)
_DISCHARGE_ALLOWED = int(StatusFlag.DISCHARGE_ALLOWED)
_COMM_ERROR = int(StatusFlag.E)


class Frame(Value):
    """Every field of one frame, in physical units (``raw_*`` where the byte has no unit).

    A current is ``None`` when its sign byte is ``X`` (sensor not available). Cell numbers are
    1-based as on the wire. Build frames for ``encode_frame`` with any values: encoding rounds
    to the wire's resolution and refuses what does not fit the bytes.
    """

    FIELDS: ClassVar = (
        "pack_voltage_v",
        "current1_a",
        "current2_a",
        "battery_current_a",
        "min_cell_voltage_v",
        "min_cell_index",
        "max_cell_voltage_v",
        "max_cell_index",
        "min_temp_c",
        "min_temp_index",
        "max_temp_c",
        "max_temp_index",
        "cell_index",
        "cell_count",
        "cell_voltage_v",
        "cell_temp_c",
        "status",
        "energy_in_today_wh",
        "energy_stored_wh",
        "energy_out_today_wh",
        "soc_pct",
        "energy_in_total_kwh",
        "energy_out_total_kwh",
        "raw_key",
        "raw_value",
        "capacity_kwh",
        "vmin_v",
        "vmax_v",
        "vbalance_v",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        pack_voltage_v: float,
        current1_a: float | None,
        current2_a: float | None,
        battery_current_a: float | None,
        min_cell_voltage_v: float,
        min_cell_index: int,
        max_cell_voltage_v: float,
        max_cell_index: int,
        min_temp_c: float,
        min_temp_index: int,
        max_temp_c: float,
        max_temp_index: int,
        cell_index: int,
        cell_count: int,
        cell_voltage_v: float,
        cell_temp_c: float,
        status: StatusFlag,
        energy_in_today_wh: int,
        energy_stored_wh: int,
        energy_out_today_wh: int,
        soc_pct: int,
        energy_in_total_kwh: int,
        energy_out_total_kwh: int,
        raw_key: int,
        raw_value: int,
        capacity_kwh: float,
        vmin_v: float,
        vmax_v: float,
        vbalance_v: float,
    ) -> None:
        self.pack_voltage_v: Final = pack_voltage_v
        self.current1_a: Final = current1_a
        self.current2_a: Final = current2_a
        self.battery_current_a: Final = battery_current_a
        self.min_cell_voltage_v: Final = min_cell_voltage_v
        self.min_cell_index: Final = min_cell_index
        self.max_cell_voltage_v: Final = max_cell_voltage_v
        self.max_cell_index: Final = max_cell_index
        self.min_temp_c: Final = min_temp_c
        self.min_temp_index: Final = min_temp_index
        self.max_temp_c: Final = max_temp_c
        self.max_temp_index: Final = max_temp_index
        self.cell_index: Final = cell_index
        self.cell_count: Final = cell_count
        self.cell_voltage_v: Final = cell_voltage_v
        self.cell_temp_c: Final = cell_temp_c
        self.status: Final = status
        self.energy_in_today_wh: Final = energy_in_today_wh
        self.energy_stored_wh: Final = energy_stored_wh
        self.energy_out_today_wh: Final = energy_out_today_wh
        self.soc_pct: Final = soc_pct
        self.energy_in_total_kwh: Final = energy_in_total_kwh
        self.energy_out_total_kwh: Final = energy_out_total_kwh
        self.raw_key: Final = raw_key
        """Byte 47: key + 25 (or the legacy device hour)."""
        self.raw_value: Final = raw_value
        """Byte 48: the key's value byte (or the legacy device minute)."""
        self.capacity_kwh: Final = capacity_kwh
        self.vmin_v: Final = vmin_v
        self.vmax_v: Final = vmax_v
        self.vbalance_v: Final = vbalance_v

    @property
    def allowed_to_charge(self) -> bool:
        """Status bit 0: the BMS allows charging (its CHARGE relay is on)."""
        # int(): a Flag membership test is slow, and the decoder asks every frame.
        return int(self.status) & _CHARGE_ALLOWED != 0

    @property
    def allowed_to_discharge(self) -> bool:
        """Status bit 1: the BMS allows discharging (its LOAD relay is on)."""
        return int(self.status) & _DISCHARGE_ALLOWED != 0

    @property
    def comm_error(self) -> bool:
        """Status bit 2: the chain of cell boards has a communication error (warning E)."""
        return int(self.status) & _COMM_ERROR != 0

    @property
    def key(self) -> int | None:
        """The side-channel key 0..18 (firmware >= 3.3.6), or None when byte 47 carries none."""
        raw = self.raw_key
        return raw - KEY_OFFSET if KEY_OFFSET <= raw <= MAX_RAW_KEY else None


def checksum(data: bytes | bytearray | memoryview) -> int:
    """The checksum byte of a frame: the low 8 bits of the sum of bytes 0..56."""
    return sum(data[:CHECKSUM_OFFSET]) & 0xFF


def implausibility(data: bytes | bytearray | memoryview, fmt: FrameFormat = DEFAULT_FORMAT) -> str:
    """Why 58 bytes with a good checksum cannot be a frame, or ``""`` when they can.

    A window misaligned with the frame boundaries passes the checksum with probability 1/256;
    these checks (three sign bytes, cell numbers within the cell count, SOC <= 100, the key
    range of the layout) reject nearly all of those.
    """
    count = data[CELL_COUNT_OFFSET]
    # The common case in one expression (every frame passes here); the loop below finds the
    # reason only when something is wrong.
    if (
        data[_I1_SIGN] in SIGN_BYTES
        and data[_I2_SIGN] in SIGN_BYTES
        and data[_ISUM_SIGN] in SIGN_BYTES
        and max(
            data[MIN_CELL_OFFSET],
            data[MAX_CELL_OFFSET],
            data[MIN_TEMP_CELL_OFFSET],
            data[MAX_TEMP_CELL_OFFSET],
            data[CELL_INDEX_OFFSET],
        )
        <= count
        and data[SOC_OFFSET] <= 100
        and (
            data[KEY_BYTE_OFFSET] <= MAX_RAW_KEY
            if fmt.layout is FirmwareLayout.KEY_VALUE
            else data[KEY_BYTE_OFFSET] <= 23 and data[VALUE_BYTE_OFFSET] <= 59
        )
    ):
        return ""
    for offset, name in zip(SIGN_OFFSETS, ("I1", "I2", "I-sum"), strict=True):
        if data[offset] not in SIGN_BYTES:
            return f"sign byte of {name} is 0x{data[offset]:02X}, not '+', '-' or 'X'"
    for offset, name in (
        (CELL_INDEX_OFFSET, "rotating cell"),
        (MIN_CELL_OFFSET, "lowest-voltage cell"),
        (MAX_CELL_OFFSET, "highest-voltage cell"),
        (MIN_TEMP_CELL_OFFSET, "lowest-temperature cell"),
        (MAX_TEMP_CELL_OFFSET, "highest-temperature cell"),
    ):
        if data[offset] > count:
            return f"{name} number {data[offset]} is above the cell count {count}"
    if data[SOC_OFFSET] > 100:
        return f"SOC {data[SOC_OFFSET]} % is above 100"
    key, value = data[KEY_BYTE_OFFSET], data[VALUE_BYTE_OFFSET]
    if fmt.layout is FirmwareLayout.KEY_VALUE:
        if key > MAX_RAW_KEY:
            return f"key byte {key} is above {MAX_RAW_KEY} (key 18 + 25)"
    elif key > 23 or value > 59:
        return f"device clock {key:02d}:{value:02d} is not a time of day"
    return ""


def decode_frame(data: bytes | bytearray | memoryview, fmt: FrameFormat = DEFAULT_FORMAT) -> Frame:
    """Decode exactly 58 bytes; raises ``ValueError`` naming what is wrong.

    Use ``StreamDecoder`` for a byte stream: it finds the frames and never raises.
    """
    if len(data) != FRAME_LENGTH:
        raise ValueError(f"a frame is {FRAME_LENGTH} bytes, got {len(data)}")
    expected = checksum(data)
    if data[CHECKSUM_OFFSET] != expected:
        raise ValueError(
            f"bad checksum: byte 57 is 0x{data[CHECKSUM_OFFSET]:02X}, the sum gives "
            f"0x{expected:02X}"
        )
    reason = implausibility(data, fmt)
    if reason:
        raise ValueError(f"implausible frame: {reason}")
    return unpack_frame(data, fmt)


def unpack_frame(data: bytes | bytearray | memoryview, fmt: FrameFormat = DEFAULT_FORMAT) -> Frame:
    """Decode 58 bytes whose checksum and plausibility were already checked (no checks here)."""
    (
        v_hi, v_lo,
        s1, i1, s2, i2, s3, i3,
        vlow, vlow_n, vhigh, vhigh_n,
        tlow, tlow_n, thigh, thigh_n,
        cell_n, cells, cell_v, cell_t,
        status,
        e_in_hi, e_in_lo, e_st_hi, e_st_lo, e_out_hi, e_out_lo,
        soc,
        tot_in_hi, tot_in_lo, tot_out_hi, tot_out_lo,
        raw_key, raw_value,
        capacity, vmin, vmax, vbalance,
    ) = _LAYOUT.unpack_from(data)  # fmt: skip
    if fmt.temperature_scale is TemperatureScale.APP:
        # (857 * raw - 232000) / 1000: the nearest double to 0.857 * raw - 232.
        t_min = (857 * tlow - 232_000) / 1000
        t_max = (857 * thigh - 232_000) / 1000
        t_cell = (857 * cell_t - 232_000) / 1000
    else:
        t_min, t_max, t_cell = float(tlow - 276), float(thigh - 276), float(cell_t - 276)
    return Frame(
        ((v_hi << 16) | v_lo) / 200,
        None if s1 == SIGN_ABSENT else (-(i1 / 8) if s1 == SIGN_MINUS else i1 / 8),
        None if s2 == SIGN_ABSENT else (-(i2 / 8) if s2 == SIGN_MINUS else i2 / 8),
        None if s3 == SIGN_ABSENT else (-(i3 / 8) if s3 == SIGN_MINUS else i3 / 8),
        vlow / 200,
        vlow_n,
        vhigh / 200,
        vhigh_n,
        t_min,
        tlow_n,
        t_max,
        thigh_n,
        cell_n,
        cells,
        cell_v / 200,
        t_cell,
        STATUS_FLAGS[status],
        (e_in_hi << 16) | e_in_lo,
        (e_st_hi << 16) | e_st_lo,
        (e_out_hi << 16) | e_out_lo,
        soc,
        (tot_in_hi << 16) | tot_in_lo,
        (tot_out_hi << 16) | tot_out_lo,
        raw_key,
        raw_value,
        capacity / 10,
        vmin / 200,
        vmax / 200,
        vbalance / 200,
    )


# ---- encoding --------------------------------------------------------------------------------


def _raw(name: str, value: float, per_unit: int, limit: int) -> int:
    """Round ``value`` x ``per_unit`` to an integer in 0..limit, or raise naming the field."""
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not a finite number")
    raw = round(value * per_unit)
    if not 0 <= raw <= limit:
        raise ValueError(
            f"{name}: {value!r} does not fit the frame (allowed 0..{limit / per_unit:g})"
        )
    return raw


def _int(name: str, value: int, limit: int) -> int:
    if not 0 <= value <= limit:
        raise ValueError(f"{name}: {value!r} does not fit the frame (allowed 0..{limit})")
    return value


def _signed(name: str, value: float | None) -> tuple[int, int]:
    """(sign byte, magnitude) of a sign-magnitude current; None -> ``X``."""
    if value is None:
        return SIGN_ABSENT, 0
    magnitude = _raw(name, abs(value), 8, 0xFFFF)
    # copysign keeps "-0.0" as "-": a frame "- 0.000 A" re-encodes to the same bytes.
    return (SIGN_MINUS if math.copysign(1.0, value) < 0 else SIGN_PLUS), magnitude


def _temp_raw(name: str, value_c: float, scale: TemperatureScale) -> int:
    if not math.isfinite(value_c):
        raise ValueError(f"{name}: {value_c!r} is not a finite number")
    raw = (
        round((value_c + 232.0) / 0.857) if scale is TemperatureScale.APP else round(value_c) + 276
    )
    if not 0 <= raw <= 0xFFFF:
        raise ValueError(f"{name}: {value_c!r} C is outside what the frame can carry")
    return raw


def encode_frame(frame: Frame, fmt: FrameFormat = DEFAULT_FORMAT) -> bytes:
    """The 58 bytes of ``frame``, checksum included; raises ``ValueError`` if a field won't fit."""
    try:
        body = _pack_unchecked(frame, fmt)
    except (struct.error, ValueError, OverflowError, TypeError):
        body = None  # the checked path below names the field that does not fit
    if body is not None:
        return body + bytes((sum(body) & 0xFF,))
    return _encode_checked(frame, fmt)


def _pack_unchecked(frame: Frame, fmt: FrameFormat) -> bytes | None:
    """The fast path: every field rounded and packed; ``struct`` refuses what does not fit.

    Every unsigned field of the layout is a B or H (24-bit values are a B and an H), so
    ``struct.pack`` raises for anything negative or too large, ``round`` for NaN or infinity.
    Returns None for what it cannot vouch for (a NaN current, a negative 24-bit value).
    """
    c1, c2, c3 = frame.current1_a, frame.current2_a, frame.battery_current_a
    signs = []
    magnitudes = []
    for value in (c1, c2, c3):
        if value is None:
            signs.append(SIGN_ABSENT)
            magnitudes.append(0)
        elif value > 0.0:
            signs.append(SIGN_PLUS)
            magnitudes.append(round(value * 8))
        elif value < 0.0:
            signs.append(SIGN_MINUS)
            magnitudes.append(round(-value * 8))
        elif value == 0.0:
            # "+ 0" and "- 0" are both on the wire: the sign of the zero decides, as in _signed.
            signs.append(SIGN_MINUS if math.copysign(1.0, value) < 0 else SIGN_PLUS)
            magnitudes.append(0)
        else:
            return None  # NaN: the checked path names the field
    if fmt.temperature_scale is TemperatureScale.APP:
        t_lo = round((frame.min_temp_c + 232.0) / 0.857)
        t_hi = round((frame.max_temp_c + 232.0) / 0.857)
        t_cell = round((frame.cell_temp_c + 232.0) / 0.857)
    else:
        t_lo = round(frame.min_temp_c) + 276
        t_hi = round(frame.max_temp_c) + 276
        t_cell = round(frame.cell_temp_c) + 276
    pack = round(frame.pack_voltage_v * 200)
    e_in, e_st, e_out = frame.energy_in_today_wh, frame.energy_stored_wh, frame.energy_out_today_wh
    tot_in, tot_out = frame.energy_in_total_kwh, frame.energy_out_total_kwh
    if min(pack, e_in, e_st, e_out, tot_in, tot_out) < 0:
        return None  # a negative 24-bit value would wrap in the shifts below
    return _LAYOUT.pack(
        pack >> 16, pack & 0xFFFF,
        signs[0], magnitudes[0], signs[1], magnitudes[1], signs[2], magnitudes[2],
        round(frame.min_cell_voltage_v * 200), frame.min_cell_index,
        round(frame.max_cell_voltage_v * 200), frame.max_cell_index,
        t_lo, frame.min_temp_index, t_hi, frame.max_temp_index,
        frame.cell_index, frame.cell_count,
        round(frame.cell_voltage_v * 200), t_cell,
        int(frame.status),
        e_in >> 16, e_in & 0xFFFF,
        e_st >> 16, e_st & 0xFFFF,
        e_out >> 16, e_out & 0xFFFF,
        frame.soc_pct,
        tot_in >> 16, tot_in & 0xFFFF,
        tot_out >> 16, tot_out & 0xFFFF,
        frame.raw_key, frame.raw_value,
        round(frame.capacity_kwh * 10), round(frame.vmin_v * 200),
        round(frame.vmax_v * 200), round(frame.vbalance_v * 200),
    )  # fmt: skip


def _encode_checked(frame: Frame, fmt: FrameFormat) -> bytes:
    """``encode_frame`` field by field, naming the first field that does not fit."""
    scale = fmt.temperature_scale
    s1, i1 = _signed("current1_a", frame.current1_a)
    s2, i2 = _signed("current2_a", frame.current2_a)
    s3, i3 = _signed("battery_current_a", frame.battery_current_a)
    pack = _raw("pack_voltage_v", frame.pack_voltage_v, 200, 0xFFFFFF)
    e_in = _int("energy_in_today_wh", frame.energy_in_today_wh, 0xFFFFFF)
    e_st = _int("energy_stored_wh", frame.energy_stored_wh, 0xFFFFFF)
    e_out = _int("energy_out_today_wh", frame.energy_out_today_wh, 0xFFFFFF)
    tot_in = _int("energy_in_total_kwh", frame.energy_in_total_kwh, 0xFFFFFF)
    tot_out = _int("energy_out_total_kwh", frame.energy_out_total_kwh, 0xFFFFFF)
    body = _LAYOUT.pack(
        pack >> 16, pack & 0xFFFF,
        s1, i1, s2, i2, s3, i3,
        _raw("min_cell_voltage_v", frame.min_cell_voltage_v, 200, 0xFFFF),
        _int("min_cell_index", frame.min_cell_index, 0xFF),
        _raw("max_cell_voltage_v", frame.max_cell_voltage_v, 200, 0xFFFF),
        _int("max_cell_index", frame.max_cell_index, 0xFF),
        _temp_raw("min_temp_c", frame.min_temp_c, scale),
        _int("min_temp_index", frame.min_temp_index, 0xFF),
        _temp_raw("max_temp_c", frame.max_temp_c, scale),
        _int("max_temp_index", frame.max_temp_index, 0xFF),
        _int("cell_index", frame.cell_index, 0xFF),
        _int("cell_count", frame.cell_count, 0xFF),
        _raw("cell_voltage_v", frame.cell_voltage_v, 200, 0xFFFF),
        _temp_raw("cell_temp_c", frame.cell_temp_c, scale),
        _int("status", int(frame.status), 0xFF),
        e_in >> 16, e_in & 0xFFFF,
        e_st >> 16, e_st & 0xFFFF,
        e_out >> 16, e_out & 0xFFFF,
        _int("soc_pct", frame.soc_pct, 0xFF),
        tot_in >> 16, tot_in & 0xFFFF,
        tot_out >> 16, tot_out & 0xFFFF,
        _int("raw_key", frame.raw_key, 0xFF),
        _int("raw_value", frame.raw_value, 0xFF),
        _raw("capacity_kwh", frame.capacity_kwh, 10, 0xFFFF),
        _raw("vmin_v", frame.vmin_v, 200, 0xFFFF),
        _raw("vmax_v", frame.vmax_v, 200, 0xFFFF),
        _raw("vbalance_v", frame.vbalance_v, 200, 0xFFFF),
    )  # fmt: skip
    return body + bytes((sum(body) & 0xFF,))
