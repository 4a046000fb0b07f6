"""``twin decode`` and ``twin capture`` as an integrator runs them: subprocesses, files, a pty."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tty
from pathlib import Path

import pytest

from tests.frames import GOLDEN_A, GOLDEN_LFP, frame_stream
from twin.sources.base import Chunk
from twin.sources.capture import MAGIC, CaptureWriter

TWIN = [sys.executable, "-m", "twin"]
REQUIRED_KEYS = {
    "pack_voltage_v",
    "current1_a",
    "current2_a",
    "battery_current_a",
    "min_cell_voltage_v",
    "min_cell_index",
    "max_cell_voltage_v",
    "max_cell_index",
    "min_temp_c",
    "max_temp_c",
    "cell_index",
    "cell_count",
    "cell_voltage_v",
    "cell_temp_c",
    "soc_pct",
    "allowed_to_charge",
    "allowed_to_discharge",
    "comm_error",
    "vmin_v",
    "vmax_v",
    "vbalance_v",
    "capacity_kwh",
}


def twin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TWIN, *args], capture_output=True, text=True, timeout=60, check=False)


def test_decode_jsonl_of_a_raw_dump(tmp_path: Path) -> None:
    dump = tmp_path / "dump.bin"
    dump.write_bytes(b"\x01\x02junk" + GOLDEN_LFP + GOLDEN_A + GOLDEN_LFP[:20])
    result = twin("decode", str(dump), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2
    for record in records:
        assert record.keys() >= REQUIRED_KEYS
    lfp, a = records
    assert lfp["pack_voltage_v"] == 53.2
    assert (lfp["current1_a"], lfp["current2_a"], lfp["battery_current_a"]) == (12.5, 2.0, 10.5)
    assert (lfp["min_cell_voltage_v"], lfp["min_cell_index"]) == (3.31, 7)
    assert (lfp["max_cell_voltage_v"], lfp["max_cell_index"]) == (3.34, 12)
    assert (lfp["cell_index"], lfp["cell_count"], lfp["cell_voltage_v"]) == (5, 16, 3.325)
    assert lfp["soc_pct"] == 63
    assert lfp["allowed_to_charge"] is True and lfp["comm_error"] is False
    assert (lfp["vmin_v"], lfp["vmax_v"], lfp["vbalance_v"], lfp["capacity_kwh"]) == (
        2.9,
        3.65,
        3.5,
        10.0,
    )
    assert (lfp["key"], lfp["value"]) == (6, 0x33)
    assert a["current2_a"] is None  # sign byte "X"
    assert "2 frames decoded, 26 bytes rejected" in result.stderr


def test_decode_jsonl_refuses_records_whose_time_is_not_finite(tmp_path: Path) -> None:
    # `twin decode --format jsonl` crashed on a capture whose times were nan.
    path = tmp_path / "odd.cap"
    lines = [
        f"0.000000 {GOLDEN_LFP.hex()}",
        f"nan {GOLDEN_A.hex()}",
        f"inf {GOLDEN_A.hex()}",
        f"1.000000 {GOLDEN_A.hex()}",
    ]
    path.write_text("\n".join([MAGIC, *lines]) + "\n", encoding="ascii")
    result = twin("decode", str(path), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]  # valid JSON, each
    assert len(records) == 2
    assert "line 3: the time 'nan' is not finite" in result.stderr
    assert "2 unreadable capture lines skipped" in result.stderr


def test_decode_table_of_a_capture_with_both_scales(tmp_path: Path) -> None:
    path = tmp_path / "bms.cap"
    with CaptureWriter(path, port="/dev/ttyUSB0", baudrate=9600) as writer:
        writer.write(Chunk(GOLDEN_LFP, 10.0))
        writer.write(Chunk(GOLDEN_LFP[:30], 11.0))  # cut short by a silence
        writer.write(Chunk(GOLDEN_LFP, 12.0))
    result = twin("decode", str(path), "--rejected")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert "pack_V" in header and "status" in header
    assert len(rows) == 2
    assert rows[0].split()[:3] == ["0.000", "53.200", "+12.500"]
    assert "CD" in rows[0] and "key 6 firmware major.minor = 51 (0x33)" in rows[0]
    assert " 20.0 ( 3)" in rows[0]  # Tmin with the app formula
    assert "rejected 30 bytes at 2.000 s: incomplete frame before an idle gap" in result.stderr
    assert "2 frames decoded, 30 bytes rejected" in result.stderr
    doc = twin("decode", str(path), "--temperature-scale", "offset276")
    assert " 18.0 ( 3)" in doc.stdout.splitlines()[1]


def test_decode_of_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    result = twin("decode", str(tmp_path / "nope.cap"))
    assert result.returncode == 1
    assert "nope.cap: cannot read" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")
def test_capture_records_a_port_and_decode_reads_it_back(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    out = tmp_path / "bms.cap"
    process = subprocess.Popen(
        [*TWIN, "capture", "--port", os.ttyname(slave), "--out", str(out), "--frames", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    frames = frame_stream(200)
    try:
        # The port is opened (and its input flushed) some time after start: keep sending
        # frames, like a BMS, until the capture has its three and exits. Poll, with a deadline.
        deadline = time.monotonic() + 30
        sent = 0
        while process.poll() is None:
            assert time.monotonic() < deadline, "twin capture did not finish"
            os.write(master, frames[sent % len(frames)])
            sent += 1
            time.sleep(0.05)  # paces the fake BMS; not a synchronisation
        _, stderr = process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
        os.close(slave)
    assert process.returncode == 0, stderr
    assert "3 frames decoded" in stderr
    assert out.read_text().startswith("# twin-capture 1\n")
    result = twin("decode", str(out), "--format", "jsonl")
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) >= 3
    assert {r["cell_count"] for r in records} == {16}
