"""docs/register-map.md is the map's own rendering, and ``twin regmap`` prints it."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from twin.commands.regmap import render_csv, render_markdown
from twin.config import load_register_maps

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_register_map_document_is_up_to_date() -> None:
    committed = (ROOT / "docs" / "register-map.md").read_text(encoding="utf-8")
    assert committed == render_markdown(load_register_maps()), (
        "docs/register-map.md is out of date: run `twin regmap --format md > docs/register-map.md`"
    )


def test_the_csv_has_one_row_per_register_with_absolute_addresses() -> None:
    rows = list(csv.DictReader(io.StringIO(render_csv(load_register_maps(), cells=4))))
    by_name = {(row["map"], row["name"]): row for row in rows}
    soc = by_name["native", "soc"]
    assert soc["address"] == "110" and soc["modicon"] == "40111"
    assert by_name["native", "cell_voltage_4"]["address"] == str(1000 + 4 * 3)
    assert by_name["sunspec:802", "SoC"]["address"] == str(40070 + 11)
    assert ("sunspec:805", "CellV_4") in by_name
    addresses = [int(row["address"]) for row in rows]
    assert addresses == sorted(addresses)  # in address order, no overlaps below
    ends = [int(row["address"]) + int(row["size"]) for row in rows]
    assert all(end <= nxt for end, nxt in zip(ends, addresses[1:], strict=False))
