"""Decoding of the option switches (bms-behaviour.md section 3, the manuals' switch tables).

Switches are given as a string with one character per switch, switch 1 first: ``1`` = ON,
``0`` = OFF; spaces, ``_`` and ``-`` may separate them (``"010 10000"``). Every function raises
``ValueError`` with a one-line reason for a string that is not a valid setting.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.model.settings import GEN2_SENSOR_RATINGS_A, RelayMode, gen3_vbalance_v

#: Gen3 switches 1-3 (switch 1 most significant): the cell-count range.
GEN3_CELL_RANGES: tuple[tuple[int, int], ...] = (
    (2, 4),
    (5, 8),
    (9, 16),
    (17, 25),
    (26, 40),
    (41, 80),
    (81, 150),
    (151, 255),
)
#: Gen2 switches 2, 6, 7 (switch 2 most significant): V-bypass.
GEN2_VBYPASS_V: tuple[float, ...] = (3.4, 3.5, 3.6, 3.7, 4.0, 4.1, 4.2, 4.3)
#: Gen2 hidden setting, switches 4-7 (switch 4 most significant): number of cells.
GEN2_FACTORY_CELLS: tuple[int, ...] = (
    4, 8, 12, 16, 20, 24, 28, 32, 48, 64, 80, 96, 128, 156, 204, 255,
)  # fmt: skip


def parse_switches(text: str, count: int) -> tuple[bool, ...]:
    """Parse ``text`` into ``count`` switch states, switch 1 first."""
    digits = [c for c in text if c not in " _-"]
    if len(digits) != count or any(c not in "01" for c in digits):
        raise ValueError(f"switches {text!r} must be {count} digits 0/1 (switch 1 first, 1 = ON)")
    return tuple(c == "1" for c in digits)


def _code(bits: tuple[bool, ...]) -> int:
    """Binary value of ``bits``, the first one most significant."""
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value


@dataclass(frozen=True, slots=True)
class Gen3Switches:
    """What the 8 option switches of a gen3 Begin Board set."""

    min_cells: int
    max_cells: int
    balance_code: int
    """0 = no balancing; k = 1.8 V + k x 0.1 V."""

    @property
    def balancing(self) -> bool:
        """Whether the switches enable balancing at all."""
        return self.balance_code != 0

    @property
    def vbalance_v(self) -> float | None:
        """The balance voltage, or None for "no balancing"."""
        return gen3_vbalance_v(self.balance_code) if self.balance_code else None


def decode_gen3_switches(text: str) -> Gen3Switches:
    """Decode gen3 Begin Board switches 1-8."""
    bits = parse_switches(text, 8)
    lo, hi = GEN3_CELL_RANGES[_code(bits[0:3])]
    return Gen3Switches(min_cells=lo, max_cells=hi, balance_code=_code(bits[3:8]))


@dataclass(frozen=True, slots=True)
class Gen2Switches:
    """What option switches 1-7 of a gen2 IN board set in normal use."""

    message_period_s: float
    vbalance_v: float
    blind_spot: bool
    auto_zero: bool
    mode: RelayMode


def decode_gen2_switches(text: str) -> Gen2Switches:
    """Decode gen2 IN board switches 1-7 (switch 8 stores the hidden settings: never in use)."""
    bits = parse_switches(text, 7)
    s1, s2, s3, s4, s5, s6, s7 = bits
    return Gen2Switches(
        message_period_s=0.5 if s1 else 1.0,
        vbalance_v=GEN2_VBYPASS_V[_code((s2, s6, s7))],
        blind_spot=s3,
        auto_zero=s4,
        mode=RelayMode.CRITICAL if s5 else RelayMode.NORMAL,
    )


@dataclass(frozen=True, slots=True)
class Gen2FactorySettings:
    """The hidden gen2 settings stored by setting switches 1-7 and toggling switch 8."""

    sensor_rating_a: int
    cell_setting: int
    """The listed cell count; a pack not in the list uses the next higher value."""

    @property
    def needs_firmware_1_4(self) -> bool:
        """The 1000 A and 2000 A sensor types need IN board firmware 1.4 or higher."""
        return self.sensor_rating_a >= 1000


def decode_gen2_factory_switches(text: str) -> Gen2FactorySettings:
    """Decode the gen2 hidden factory settings from switches 1-7."""
    bits = parse_switches(text, 7)
    return Gen2FactorySettings(
        sensor_rating_a=GEN2_SENSOR_RATINGS_A[_code(bits[0:3])],
        cell_setting=GEN2_FACTORY_CELLS[_code(bits[3:7])],
    )


def gen2_factory_cells_for(cell_count: int) -> int:
    """The hidden cell setting a gen2 pack of ``cell_count`` cells should use (next higher)."""
    for value in GEN2_FACTORY_CELLS:
        if value >= cell_count:
            return value
    raise ValueError(f"{cell_count} cells is more than gen2 supports (255)")
