"""docs/register-map.md is the map's own rendering, and ``twin regmap`` prints it."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path

from twin.config import load_register_maps
from twin.regmap import render_csv, render_markdown

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


def test_twin_regmap_prints_markdown_and_csv(tmp_path: Path) -> None:
    # Outside the source tree: the installed twin (editable or a compiled wheel) is the one run.
    command = [sys.executable, "-m", "twin", "regmap"]
    md = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=60, cwd=tmp_path
    )
    assert md.stdout.startswith("# Modbus register map")
    out = subprocess.run(
        [*command, "--format", "csv", "--cells", "2"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert out.stdout.splitlines()[0].startswith("map,address,modicon,name")
    bad = subprocess.run(
        [*command, "--cells", "300"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert bad.returncode == 2
