"""Option-switch decoding against every row of the manuals' switch tables.

The rows are transcribed from ../shared/manuals (switch 1 first, 1 = ON). Where the PDF-to-text
conversion kept a table's layout (gen3 cells and balance, gen2 hidden settings), a second test
parses the manual text itself and checks the transcription against it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from twin.model.settings import RelayMode
from twin.model.switches import (
    decode_gen2_factory_switches,
    decode_gen2_switches,
    decode_gen3_switches,
    gen2_factory_cells_for,
    parse_switches,
)

MANUALS = Path(__file__).resolve().parents[3] / "shared" / "manuals"

# fmt: off
# Gen3 Begin Board, switches 1-3: number of cells.
GEN3_CELLS = [
    ("000", 2, 4),
    ("001", 5, 8),
    ("010", 9, 16),
    ("011", 17, 25),
    ("100", 26, 40),
    ("101", 41, 80),
    ("110", 81, 150),
    ("111", 151, 255),
]
# Gen3 switches 4-8: balance voltage (None = no balancing), all 32 rows.
GEN3_BALANCE = [
    ("00000", None), ("00001", 1.9), ("00010", 2.0), ("00011", 2.1), ("00100", 2.2),
    ("00101", 2.3), ("00110", 2.4), ("00111", 2.5), ("01000", 2.6), ("01001", 2.7),
    ("01010", 2.8), ("01011", 2.9), ("01100", 3.0), ("01101", 3.1), ("01110", 3.2),
    ("01111", 3.3), ("10000", 3.4), ("10001", 3.5), ("10010", 3.6), ("10011", 3.7),
    ("10100", 3.8), ("10101", 3.9), ("10110", 4.0), ("10111", 4.1), ("11000", 4.2),
    ("11001", 4.3), ("11010", 4.4), ("11011", 4.5), ("11100", 4.6), ("11101", 4.7),
    ("11110", 4.8), ("11111", 4.9),
]
# Gen2 IN board switches 2, 6, 7: V-bypass.
GEN2_VBYPASS = [
    ("000", 3.4), ("001", 3.5), ("010", 3.6), ("011", 3.7),
    ("100", 4.0), ("101", 4.1), ("110", 4.2), ("111", 4.3),
]
# Gen2 hidden settings, switches 1-3: current sensor (A).
GEN2_SENSOR = [
    ("000", 25), ("001", 50), ("010", 100), ("011", 250),
    ("100", 400), ("101", 500), ("110", 1000), ("111", 2000),
]
# Gen2 hidden settings, switches 4-7: number of cells.
GEN2_CELLS = [
    ("0000", 4), ("0001", 8), ("0010", 12), ("0011", 16), ("0100", 20), ("0101", 24),
    ("0110", 28), ("0111", 32), ("1000", 48), ("1001", 64), ("1010", 80), ("1011", 96),
    ("1100", 128), ("1101", 156), ("1110", 204), ("1111", 255),
]
# fmt: on


@pytest.mark.parametrize(("bits", "lo", "hi"), GEN3_CELLS)
@pytest.mark.parametrize("balance", ["00000", "10000", "11111"])
def test_gen3_cell_range_rows(bits: str, lo: int, hi: int, balance: str) -> None:
    decoded = decode_gen3_switches(bits + balance)
    assert (decoded.min_cells, decoded.max_cells) == (lo, hi)


@pytest.mark.parametrize(("bits", "vbalance"), GEN3_BALANCE)
@pytest.mark.parametrize("cells", ["000", "010", "111"])
def test_gen3_balance_rows(bits: str, vbalance: float | None, cells: str) -> None:
    decoded = decode_gen3_switches(cells + bits)
    if vbalance is None:
        assert decoded.vbalance_v is None and not decoded.balancing
    else:
        assert decoded.vbalance_v == pytest.approx(vbalance, abs=1e-9)
        assert decoded.balancing


def test_gen3_marked_codes() -> None:
    assert decode_gen3_switches("010 01000").vbalance_v == pytest.approx(2.6)  # LTO
    assert decode_gen3_switches("010 10000").vbalance_v == pytest.approx(3.4)  # LiFePO4
    assert decode_gen3_switches("010 10110").vbalance_v == pytest.approx(4.0)  # NMC


@pytest.mark.parametrize(("bits", "vbypass"), GEN2_VBYPASS)
def test_gen2_vbypass_rows(bits: str, vbypass: float) -> None:
    s2, s6, s7 = bits[0], bits[1], bits[2]
    decoded = decode_gen2_switches(f"0{s2}100{s6}{s7}")  # switches 1..7
    assert decoded.vbalance_v == pytest.approx(vbypass)


@pytest.mark.parametrize(
    ("switch", "field", "off", "on"),
    [
        (1, "message_period_s", 1.0, 0.5),
        (3, "blind_spot", False, True),
        (4, "auto_zero", False, True),
        (5, "mode", RelayMode.NORMAL, RelayMode.CRITICAL),
    ],
)
def test_gen2_single_switch_rows(switch: int, field: str, off: object, on: object) -> None:
    bits = ["0"] * 7
    assert getattr(decode_gen2_switches("".join(bits)), field) == off
    bits[switch - 1] = "1"
    decoded = decode_gen2_switches("".join(bits))
    assert getattr(decoded, field) == on
    # The other functions keep their OFF meaning.
    assert decoded.vbalance_v == pytest.approx(3.4)


@pytest.mark.parametrize(("bits", "rating"), GEN2_SENSOR)
def test_gen2_hidden_sensor_rows(bits: str, rating: int) -> None:
    factory = decode_gen2_factory_switches(bits + "0011")
    assert factory.sensor_rating_a == rating
    assert factory.needs_firmware_1_4 is (rating >= 1000)


@pytest.mark.parametrize(("bits", "cells"), GEN2_CELLS)
def test_gen2_hidden_cell_rows(bits: str, cells: int) -> None:
    assert decode_gen2_factory_switches("010" + bits).cell_setting == cells


def test_gen2_next_higher_cell_setting() -> None:
    assert gen2_factory_cells_for(16) == 16
    assert gen2_factory_cells_for(15) == 16
    assert gen2_factory_cells_for(150) == 156
    assert gen2_factory_cells_for(2) == 4
    with pytest.raises(ValueError, match="255"):
        gen2_factory_cells_for(256)


@pytest.mark.parametrize(
    ("text", "count"),
    [("0101000", 8), ("010100001", 8), ("01010002", 8), ("ON OFF", 2), ("", 7), ("0101000", 6)],
)
def test_malformed_switch_strings_are_rejected(text: str, count: int) -> None:
    with pytest.raises(ValueError, match="digits 0/1"):
        parse_switches(text, count)


def test_separators_are_accepted() -> None:
    assert parse_switches("010_10-000", 8) == parse_switches("01010000", 8)


# ---- the transcription above, checked against the manuals' own text ------------------------


def _manual(name: str) -> str:
    path = MANUALS / name
    if not path.exists():
        pytest.skip(f"{path} is not present (shared/ is not next to this checkout)")
    return path.read_text(encoding="utf-8")


def _bits(words: list[str]) -> str:
    return "".join("1" if w == "ON" else "0" for w in words)


def test_gen3_tables_match_the_manual_text() -> None:
    text = _manual("smartbms-gen3-manual.txt")
    cells = re.findall(r"^((?:ON|OFF) (?:ON|OFF) (?:ON|OFF))\s+(\d+)-(\d+) cells", text, re.M)
    assert [(_bits(b.split()), int(lo), int(hi)) for b, lo, hi in cells] == GEN3_CELLS
    balance = re.findall(r"^\s+((?:(?:ON|OFF) ){4}(?:ON|OFF)) (No balancing|\d\.\dV)", text, re.M)
    parsed = [
        (_bits(b.split()), None if v == "No balancing" else float(v[:-1])) for b, v in balance
    ]
    assert parsed == GEN3_BALANCE


def test_gen2_hidden_tables_match_the_manual_text() -> None:
    text = _manual("smartbms-gen2-manual.txt")
    sensor = re.findall(r"^\s+((?:(?:ON|OFF) ){2}(?:ON|OFF))\s+(\d+) Amp", text, re.M)
    assert [(_bits(b.split()), int(a)) for b, a in sensor] == GEN2_SENSOR
    cells = re.findall(r"^\s+((?:(?:ON|OFF) ){3}(?:ON|OFF)) (\d+) Cells", text, re.M)
    assert [(_bits(b.split()), int(n)) for b, n in cells] == GEN2_CELLS


def test_gen2_vbypass_values_match_the_manual_text() -> None:
    # The switch columns of this table were garbled by the conversion; its values and their
    # order (000 .. 111 of switches 2/6/7) survive.
    text = _manual("smartbms-gen2-manual.txt")
    values = [float(v.replace(",", ".")) for v in re.findall(r"V-Bypass (\d,\d) Volt", text)]
    assert values == [v for _, v in GEN2_VBYPASS]
