r"""UART frames for tests: the worked examples of smartbms-uart.md 1.2 and a frame builder."""

from __future__ import annotations

from twin.model.status import StatusFlag
from twin.protocol.frame import Frame, encode_frame


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace("|", " "))


#: [C]'s test packet (legacy layout: bytes 47/48 are hours/minutes 22:32); checksum 0x69.
GOLDEN_C = _hex(
    "01 05 FF 2B 01 00 2B 01 00 2B 01 00 02 30 32 02 30 32 01 14 32 01 28 32 32 FF 02 30 01 28 03"
    "00 00 64 00 F2 21 00 00 64 32 64 00 00 64 00 00 16 20 00 A0 15 FF 15 FF 15 FF 69"
)
#: [A]'s test frame: 16 cells, cell 1, key 0 = SoH 98; checksum 0x21.
GOLDEN_A = _hex(
    "01 05 FF 2B 00 00 58 00 00 2B 00 40 02 72 01 02 80 10 01 28 01 01 28 10 01 10 02 70 01 28 03"
    "00 00 00 00 0F A0 00 00 00 4B 00 00 00 00 00 00 19 62 00 A0 00 00 00 00 00 00 21"
)
#: The illustrative 16S LFP frame; checksum 0x9C.
GOLDEN_LFP = _hex(
    "00 29 90 | 2B 00 64 | 2B 00 10 | 2B 00 54 | 02 96 07 | 02 9C 0C | 01 26 03 | 01 2A 09 |"
    "05 10 | 02 99 | 01 28 | 03 | 00 04 D2 | 00 23 28 | 00 03 52 | 3F | 00 05 F0 | 00 05 D2 |"
    "1F 33 | 00 64 | 02 44 | 02 DA | 02 BC | 9C"
)
GOLDEN = {"C": GOLDEN_C, "A": GOLDEN_A, "LFP": GOLDEN_LFP}


def sample_frame(**changes: object) -> Frame:
    """A realistic 16S LiFePO4 frame (the illustrative one, 20 C cells); override any field."""
    frame = Frame(
        pack_voltage_v=53.2,
        current1_a=12.5,
        current2_a=2.0,
        battery_current_a=10.5,
        min_cell_voltage_v=3.31,
        min_cell_index=7,
        max_cell_voltage_v=3.34,
        max_cell_index=12,
        min_temp_c=19.958,
        min_temp_index=3,
        max_temp_c=23.386,
        max_temp_index=9,
        cell_index=5,
        cell_count=16,
        cell_voltage_v=3.325,
        cell_temp_c=21.672,
        status=StatusFlag.CHARGE_ALLOWED | StatusFlag.DISCHARGE_ALLOWED,
        energy_in_today_wh=1234,
        energy_stored_wh=9000,
        energy_out_today_wh=850,
        soc_pct=63,
        energy_in_total_kwh=1520,
        energy_out_total_kwh=1490,
        raw_key=31,
        raw_value=0x33,
        capacity_kwh=10.0,
        vmin_v=2.9,
        vmax_v=3.65,
        vbalance_v=3.5,
    )
    return frame.replace(**changes)


def frame_stream(count: int, cells: int = 16) -> list[bytes]:
    """``count`` consecutive frames as an End board sends them: rotating cell and key."""
    frames = []
    for n in range(count):
        frames.append(
            encode_frame(
                sample_frame(
                    cell_index=n % cells + 1,
                    cell_count=cells,
                    cell_voltage_v=3.30 + 0.005 * (n % cells),
                    min_cell_index=min(7, cells),
                    max_cell_index=min(12, cells),
                    min_temp_index=min(3, cells),
                    max_temp_index=min(9, cells),
                    raw_key=25 + n % 19,
                    raw_value=n % 256,
                    soc_pct=50 + n % 50,
                    pack_voltage_v=53.0 + 0.005 * n,
                )
            )
        )
    return frames
