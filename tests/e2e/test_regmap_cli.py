"""``twin regmap`` prints the register map, run as the installed command in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


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
