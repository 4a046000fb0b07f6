"""``twin simulate`` as an integrator runs it, and the scenario file's error messages."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from twin.config import load_scenario, parse_scenario
from twin.emulator import Simulation
from twin.emulator.events import BreakChain, ChangeSettings, SetPlant
from twin.errors import ConfigError

TWIN = [sys.executable, "-m", "twin"]

SMALL = """
[scenario]
name = "tiny"
duration_s = 600
step_s = 1.0
start_h = 12.0

[bms]
chemistry = "LiFePO4"
cells = 8
capacity_wh = 7168

[pack]
capacity_ah = 280
initial_soc_pct = 50

[load]
csv = "load.csv"

[[event]]
at_s = 300
kind = "break-chain"
after_board = 3

[[event]]
at_s = 400
kind = "settings"
settings = { charge_restart_pct = 95 }
"""


def test_simulate_writes_the_series_the_relay_log_the_summary_and_the_plot(
    tmp_path: Path,
) -> None:
    (tmp_path / "load.csv").write_text("hour,power_w\n0,300\n12,800\n", encoding="utf-8")
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SMALL, encoding="utf-8")
    out = tmp_path / "out"
    done = subprocess.run(
        [*TWIN, "simulate", str(scenario), "--out", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "relay toggles" in done.stdout and "x real time" in done.stdout
    rows = list(csv.DictReader((out / "timeseries.csv").open(encoding="utf-8")))
    assert rows and float(rows[-1]["time_s"]) == 600.0
    assert {"true_soc_pct", "bms_soc_pct", "twin_soc_pct", "bms_charge"} <= set(rows[0])
    # The CSV load (800 W from noon) reached the inverter: 800 / 0.94 + 20 W at about 26 V.
    assert float(rows[10]["demand_w"]) == 800.0
    assert float(rows[10]["load_a"]) > 25.0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["first_comm_error_s"] is not None
    assert 300.0 < summary["first_comm_error_s"] <= 311.0
    relays = (out / "relays.csv").read_text(encoding="utf-8")
    assert "NO_COMMUNICATION" in relays
    assert (out / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "summary.txt").read_text(encoding="utf-8").startswith("scenario")
    # The report: one self-contained page (the plot inside), the reasons of the relay changes.
    report = (out / "report.html").read_text(encoding="utf-8")
    assert report.startswith("<!doctype html>")
    assert 'src="data:image/png;base64,iVBORw0KGgo' in report
    assert "NO_COMMUNICATION" in report and "relay toggles" in report
    assert "http" not in report.replace("<!doctype html>", "")  # nothing loaded from elsewhere


def test_a_bad_scenario_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    (tmp_path / "load.csv").write_text("hour,power_w\n0,300\n", encoding="utf-8")
    scenario = tmp_path / "bad.toml"
    scenario.write_text(SMALL.replace("after_board = 3", "after_board = 8"), encoding="utf-8")
    done = subprocess.run(
        [*TWIN, "simulate", str(scenario), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "event[0].after_board: 8 is out of range (allowed 1..7)" in lines[0]
    assert not (tmp_path / "out").exists()  # nothing started


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('kind = "break-chain"', 'kind = "explode"'), "event[0].kind: 'explode' is not allowed"),
        (("at_s = 300", "at_s = 900"), "event[0]: at 900 s is after the end of the run"),
        (("after_board = 3", "board = 3"), "event[0].after_board: missing"),
        (("charge_restart_pct = 95", "vbalance_v = 3.45"), "event[1].settings: vbalance_v 3.45"),
        (("charge_restart_pct = 95", "cells = 9"), "event[1].settings: setting 'cells'"),
        (("capacity_ah = 280", "capacity_ah = -1"), "pack.capacity_ah: -1 is out of range"),
        (("[load]", "[lode]"), "lode: unknown field (allowed: scenario, bms"),
        (('csv = "load.csv"', 'csv = "missing.csv"'), "load.csv: 'missing.csv': cannot read"),
    ],
)
def test_scenario_errors_name_the_field(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    (tmp_path / "load.csv").write_text("hour,power_w\n0,300\n", encoding="utf-8")
    text = SMALL.replace(*change)
    (tmp_path / "s.toml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_scenario(tmp_path / "s.toml")
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_parse_scenario_takes_the_csv_as_text_and_reads_no_file() -> None:
    # No file on disk: the CSV's text comes in with the scenario's (load_scenario reads both).
    scenario = parse_scenario(SMALL, "s.toml", tables={"load.csv": "hour,power_w\n0,300\n"})
    assert scenario.duration_s == 600.0
    with pytest.raises(ConfigError, match=r"load\.csv: 'load\.csv': its text was not given"):
        parse_scenario(SMALL, "s.toml")


def test_a_scenario_file_becomes_timed_events(tmp_path: Path) -> None:
    (tmp_path / "load.csv").write_text("hour,power_w\n0,300\n", encoding="utf-8")
    (tmp_path / "s.toml").write_text(SMALL, encoding="utf-8")
    scenario = load_scenario(tmp_path / "s.toml")
    assert scenario.settings.cell_count == 8
    assert scenario.duration_s == 600.0
    assert [e.at_s for e in scenario.events] == [300.0, 400.0]
    assert scenario.events[0].action == BreakChain(3)
    assert scenario.events[1].action == ChangeSettings((("charge_restart_pct", 95),))
    assert scenario.plant.load is not None and scenario.plant.load.points == ((0.0, 300.0),)


def test_a_gen2_pack_with_legacy_firmware_runs(tmp_path: Path) -> None:
    text = """
[scenario]
duration_s = 120
start_h = 12

[bms]
generation = "gen2"
cells = 8
switches = "0010001"       # 1 s messages, blind spot on, normal mode, V-bypass 3.5 V
chemistry = "LiFePO4"
capacity_wh = 5120
current_sensor = { sensors = 1, type_a = 250 }

[pack]
capacity_ah = 200

[chain]
layout = "legacy-clock"
temperature_scale = "offset276"
"""
    scenario = parse_scenario(text, "gen2.toml", tmp_path)
    assert scenario.settings.vbalance_v == 3.5
    result = Simulation(scenario).run()
    assert result.summary.frames_decoded == 120
    assert result.twin_state is not None
    assert result.twin_state.inputs.current2_a is None  # one sensor: input 2 reads "X"
    assert result.summary.divergent_s == 0.0


def test_a_plant_event_in_a_scenario_file(tmp_path: Path) -> None:
    tables = {"load.csv": "hour,power_w\n0,300\n"}
    plant = '\n[[event]]\nat_s = 100\nkind = "plant"\nsetpoint = "inverter_dc_a"\nvalue = -20\n'
    scenario = parse_scenario(SMALL + plant + "timeout_s = 60\n", "s.toml", tables=tables)
    assert SetPlant("inverter_dc_a", -20.0, 60.0) in [e.action for e in scenario.events]
    bad = SMALL + plant.replace("inverter_dc_a", "grid_w")
    with pytest.raises(ConfigError, match=r"event\[2\]\.setpoint: 'grid_w' is not a plant"):
        parse_scenario(bad, "s.toml", tables=tables)
