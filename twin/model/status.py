"""The warnings of the BMS and its status byte (UART status byte 1, bms-behaviour.md section 7)."""

from __future__ import annotations

from enum import IntFlag


class StatusFlag(IntFlag):
    """Status byte 1 of the UART frame, bit for bit; the warnings E/Vl/Vh/Tl/Th are bits 2-6."""

    NONE = 0
    CHARGE_ALLOWED = 0x01
    DISCHARGE_ALLOWED = 0x02
    E = 0x04
    """Cell communication error (the chain is broken, or the twin's watchdog fired)."""
    VL = 0x08
    """A cell at or below V-min."""
    VH = 0x10
    """A cell at or above V-max."""
    TL = 0x20
    """A cell temperature below T-min."""
    TH = 0x40
    """A cell temperature above T-max."""
    SOC_NOT_CALIBRATED = 0x80

    @classmethod
    def warnings_mask(cls) -> StatusFlag:
        """The five warning bits E, Vl, Vh, Tl, Th."""
        return cls.E | cls.VL | cls.VH | cls.TL | cls.TH


#: Every value of the status byte as a ``StatusFlag``. Code that runs every frame computes with
#: plain ints and converts through this table: the enum's own constructor and its "|" are slow.
STATUS_FLAGS: tuple[StatusFlag, ...] = tuple(StatusFlag(value) for value in range(256))
