"""``twin can-monitor`` decodes live frames; ``twin dbc`` lists a DBC's messages."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.e2e.service import TwinProcess, free_port

pytestmark = pytest.mark.slow

TWIN = [sys.executable, "-m", "twin"]


def test_can_monitor_decodes_the_frames_of_a_running_twin(tmp_path: Path) -> None:
    group = f"239.{uuid.uuid4().int % 250 + 1}.{uuid.uuid4().int % 250 + 1}.9"
    config = tmp_path / "twin.toml"
    config.write_text(
        f"""
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = 8
capacity_wh = 5734

[store]
path = "state.json"

[modbus]
port = {free_port()}

[web]
enabled = false        # the dashboard has its own tests

[can]
interface = "udp_multicast"
channel = "{group}"
profile = "victron"
""",
        encoding="utf-8",
    )
    with TwinProcess(config) as twin:
        twin.wait_for_message("pack1: receiving frames")
        done = subprocess.run(
            [*TWIN, "can-monitor", "--interface", "udp_multicast", "--channel", group,
             "--duration", "3"],
            capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
        )  # fmt: skip
        assert twin.stop() == 0
    lines = done.stdout.splitlines()
    assert any("BatteryLimits: ChargeVoltageLimit=" in line and " V" in line for line in lines)
    assert any("0x373" in line and "CellExtremes" in line for line in lines)  # a Victron frame
    assert any("TwinPackSummary: PackVoltage=" in line for line in lines)


def test_twin_dbc_lists_a_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [*TWIN, "dbc"], capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path
    )
    assert "0x35e Manufacturer (8 bytes, from BMS, every 1000 ms)" in done.stdout
    missing = subprocess.run(
        [*TWIN, "dbc", str(tmp_path / "none.dbc")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "none.dbc" in missing.stderr
