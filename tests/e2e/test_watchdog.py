"""The watchdog end to end: the frames stop, Modbus shows E and the effective relays off."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, wait_until
from tests.frames import frame_stream
from twin.sources.base import Chunk
from twin.sources.capture import CaptureWriter

pytestmark = pytest.mark.slow

STALE_AFTER_S = 2.0

CONFIG = """
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = 16
vbalance_v = 3.5
vmax_v = 3.65
capacity_wh = 10000

[pack.source]
kind = "replay"
file = "bms.cap"
speed = 1
stale_after_s = {stale}

[store]
path = "state.json"

[modbus]
port = {port}

[web]
enabled = false        # the dashboard has its own tests
"""


def test_a_silent_source_reads_e_and_relays_off_within_stale_after_plus_one_second(
    tmp_path: Path,
) -> None:
    with CaptureWriter(tmp_path / "bms.cap", port="test", baudrate=9600) as capture:
        for n, frame in enumerate(frame_stream(8)):
            capture.write(Chunk(frame, float(n)))
    port = free_port()
    config = tmp_path / "twin.toml"
    config.write_text(CONFIG.format(stale=STALE_AFTER_S, port=port), encoding="utf-8")
    with TwinProcess(config) as twin:
        twin.wait_for_message("modbus: listening")
        with RawModbus(port) as raw:

            def effective() -> list[int]:
                registers = raw.read_holding(1, 124, 2)
                assert isinstance(registers, list)
                return registers

            wait_until(lambda: effective() == [1, 1], what="both effective relays on")
            assert raw.read_holding(1, 140, 1) == [0]  # frames arriving
            # The capture ends after 8 frames: the source goes silent.
            wait_until(lambda: effective() == [0, 0], timeout_s=20, what="relays off")
            warnings = raw.read_holding(1, 130, 6)
            comm = raw.read_holding(1, 140, 2)
            assert isinstance(warnings, list) and isinstance(comm, list)
            assert warnings[0] & 1 and warnings[1] == 1  # E, as a bit and as its own register
            assert comm[0] == 1  # stale
            # The watchdog fired within stale_after_s + 1 s of the last valid frame.
            assert comm[1] / 10.0 <= STALE_AFTER_S + 1.0
            assert raw.read_holding(1, 100, 2) == [0xFFFF, 0xFFFF]  # no stale value kept
        twin.wait_for_message("pack1: no valid frame for")
        assert twin.stop() == 0
