"""``twin run`` and ``twin inverter`` as two processes on a host-local udp_multicast group.

The loop ``twin run`` -> bus -> ``twin inverter`` -> bus (TwinPlantCommand) -> the emulated
plant closes across the two processes; Modbus shows the inverter's current. Each profile
passes the inverter's conformance check, a V-max crossing (CCL 0) stops its charging, and a
BMS that falls silent is reported.
"""

from __future__ import annotations

import json
import queue
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import can
import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TWIN, TwinProcess, free_port, wait_until

pytestmark = pytest.mark.slow

CONFIG = """
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = 16
capacity_wh = {capacity_wh}
pin = "4321"

[pack.source]
kind = "emulator"
capacity_ah = {capacity_ah}
true_soc_pct = {soc}
spread = "bad"
annual_kwh = 0           # no solar: the inverter alone moves the pack
charger_a = 0
seed = 3

[store]
path = "state.json"

[modbus]
port = {port}

[web]
enabled = false        # the dashboard has its own tests

[can]
interface = "udp_multicast"
channel = "{group}"
profile = "{profile}"
"""


def _group() -> str:
    """A multicast group of our own (239.x.y.z, administratively scoped): runs never mix."""
    return f"239.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"


def _config(tmp_path: Path, profile: str, *, small: bool = False) -> tuple[Path, int, str]:
    port, group = free_port(), _group()
    path = tmp_path / "twin.toml"
    # small: 2 Ah cells near full, so the inverter's charge crosses V-max within seconds.
    text = CONFIG.format(
        capacity_wh=102 if small else 5734,
        capacity_ah=2 if small else 100,
        soc=85 if small else 60,
        port=port,
        group=group,
        profile=profile,
    )
    path.write_text(text, encoding="utf-8")
    return path, port, group


class Inverter:
    """``twin inverter`` in a subprocess; its live lines are collected as they come."""

    def __init__(self, group: str, report: Path, *args: str) -> None:
        self.report_path = report
        self.process = subprocess.Popen(
            [
                *TWIN,
                "inverter",
                "--interface",
                "udp_multicast",
                "--channel",
                group,
                "--report",
                str(report),
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            # Not the checkout: ``python -m`` puts the working directory first on sys.path, and
            # the compiled build's suite must run the installed twin, not the source tree.
            cwd=report.parent,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._queue.put(line.rstrip("\n"))

    def _collect(self) -> None:
        while True:
            try:
                self.lines.append(self._queue.get_nowait())
            except queue.Empty:
                return

    def last_line(self) -> str:
        """The newest live line ("" before one)."""
        self._collect()
        return self.lines[-1] if self.lines else ""

    def saw(self, text: str) -> bool:
        """Whether a line so far contains ``text``."""
        self._collect()
        return any(text in line for line in self.lines)

    def finish(self, timeout_s: float = 60.0) -> tuple[int, dict[str, object]]:
        """Wait for its end (its --duration): the exit code and the JSON report."""
        code = self.process.wait(timeout=timeout_s)
        self._collect()
        return code, json.loads(self.report_path.read_text(encoding="utf-8"))

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def _signed(registers: list[int]) -> int:
    value = (registers[0] << 16) | registers[1]
    return value - (1 << 32) if value >= 1 << 31 else value


def _read(port: int, address: int, count: int = 2) -> list[int]:
    with RawModbus(port) as raw:
        registers = raw.read_holding(1, address, count)
    assert isinstance(registers, list), f"exception {registers}"
    return registers


def _current2_a(port: int) -> float:
    """Sensor 2 (the inverter's path), + = out of the battery."""
    return _signed(_read(port, 106)) / 100.0


def _ccl_a(port: int) -> float:
    return _signed(_read(port, 162)) / 100.0


def _plant_inverter_a(port: int) -> float | None:
    """Register 240 (int16 x 10): the inverter_dc_a setpoint in effect (None: none)."""
    raw = _read(port, 240, 1)[0]
    if raw == 0x8000:  # "not available": no setpoint
        return None
    return (raw - 0x10000 if raw >= 0x8000 else raw) / 10.0


def _native_plant_frame(group: str) -> tuple[float, int]:
    """TwinPlantSetpoints of pack 1 (0x706): (InverterDc in A, SetMask)."""
    bus = can.Bus(interface="udp_multicast", channel=group, hop_limit=0)  # host-local
    try:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            message = bus.recv(timeout=0.5)
            if message is not None and message.arbitration_id == 0x706:
                data = bytes(message.data)
                return int.from_bytes(data[0:2], "little", signed=True) / 10.0, data[7]
    finally:
        bus.shutdown()
    raise AssertionError("no TwinPlantSetpoints frame within 5 s")


@pytest.fixture
def running() -> Iterator[list[Inverter]]:
    """Inverter processes a test starts, killed if the test leaves one running."""
    started: list[Inverter] = []
    yield started
    for inverter in started:
        inverter.kill()


def test_the_inverter_s_current_closes_the_loop_through_the_twin_s_plant(
    tmp_path: Path, running: list[Inverter]
) -> None:
    config, port, group = _config(tmp_path, "pylon")
    with TwinProcess(config) as twin:
        twin.wait_for_message("pack1: receiving frames")
        inverter = Inverter(group, tmp_path / "report.json", "--current", "-30", "--duration", "12")
        running.append(inverter)
        # The inverter hears the limits and decides to discharge 30 A ...
        wait_until(lambda: "inverter -30.0 A" in inverter.last_line(), what="its decision")
        # ... which the twin's plant takes over CAN and Modbus shows as the pack's current.
        wait_until(
            lambda: abs(_current2_a(port) - 30.0) < 1.0,
            timeout_s=2.0,
            what="30 A out through sensor 2 within 2 s",
        )
        assert _plant_inverter_a(port) == -30.0
        twin.wait_for_message("plant inverter_dc_a = -30 for 5 s")
        # The twin's native frames show what the controller (here the inverter) set.
        assert _native_plant_frame(group) == (-30.0, 0b00001)
        code, report = inverter.finish()
        assert code == 0, "\n".join(inverter.lines)
        assert report["violation_counts"] == {}
        # At its end the inverter hands the plant back to the profile.
        twin.wait_for_message("plant inverter_dc_a back to the profile")
        assert twin.stop() == 0


def test_a_v_max_crossing_stops_the_charge_and_a_silent_bms_is_reported(
    tmp_path: Path, running: list[Inverter]
) -> None:
    config, port, group = _config(tmp_path, "pylon", small=True)
    twin = TwinProcess(config)
    with twin:
        twin.wait_for_message("pack1: receiving frames")
        inverter = Inverter(
            group,
            tmp_path / "report.json",
            *("--current", "20", "--bms-timeout", "3", "--duration", "90"),
        )
        running.append(inverter)
        wait_until(lambda: abs(_current2_a(port) + 20.0) < 1.0, what="20 A into the battery")
        # The charge crosses V-max: the BMS's CCL drops to 0, and the inverter stops.
        wait_until(lambda: _ccl_a(port) == 0.0, timeout_s=60.0, what="CCL 0 (V-max crossed)")
        wait_until(lambda: "inverter +0.0 A (CCL 0)" in inverter.last_line(), what="a stop on CCL")
        wait_until(lambda: _plant_inverter_a(port) == 0.0, what="0 A in the plant")
        wait_until(lambda: abs(_current2_a(port)) < 1.0, what="no more charge on Modbus")
        assert twin.stop() == 0
    # The BMS falls silent: the inverter reports it and stands still.
    wait_until(lambda: inverter.saw("BMS SILENT"), what="the silence reported")
    assert "inverter +0.0 A (BMS silent: fail-safe)" in inverter.last_line()
    inverter.process.send_signal(2)  # Ctrl-C: the summary is written
    code, report = inverter.finish()
    assert code == 1
    assert report["silences"] == 1
    counts = report["violation_counts"]
    assert isinstance(counts, dict)
    assert counts == {"silent": 1}, report["violations"]


@pytest.mark.parametrize("profile", ["pylon", "victron", "sma", "solark"])
def test_every_profile_passes_the_inverter_s_conformance_check(
    tmp_path: Path, running: list[Inverter], profile: str
) -> None:
    config, port, group = _config(tmp_path, profile)
    with TwinProcess(config) as twin:
        twin.wait_for_message("pack1: receiving frames")
        inverter = Inverter(
            group,
            tmp_path / "report.json",
            *("--profile", profile, "--current", "10", "--duration", "8", "--quiet"),
        )
        running.append(inverter)
        code, report = inverter.finish()
        assert code == 0, "\n".join(inverter.lines)
        assert report["violation_counts"] == {}
        frames = report["frames"]
        assert isinstance(frames, dict)
        for frame_id, stats in frames.items():
            assert stats["count"] >= 5, (frame_id, stats)
            assert stats["dlc"] == [stats["expected_dlc"]]
        # What the inverter heard is what Modbus says.
        heard = report["heard"]
        assert isinstance(heard, dict)
        cvl = _read(port, 160)
        assert heard["cvl_v"] == pytest.approx(((cvl[0] << 16) | cvl[1]) / 1000.0, abs=0.1)
        assert heard["ccl_a"] == pytest.approx(_ccl_a(port), abs=0.1)
        assert twin.stop() == 0
