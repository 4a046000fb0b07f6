"""``twin run`` end to end: start, stop cleanly, persistence across kill -9, bad state files."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, run_twin, wait_until, write_config

pytestmark = pytest.mark.slow


def _saved(path: Path) -> dict[str, object]:
    data = json.loads(path.read_text(encoding="utf-8"))
    pack = data["packs"]["pack1"]
    assert isinstance(pack, dict)
    return pack


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_service_cleanly_and_saves_the_state(
    tmp_path: Path, signum: signal.Signals
) -> None:
    config = write_config(tmp_path, save_interval_s=3600)
    state = tmp_path / "state.json"
    with TwinProcess(config, speed=20) as twin:
        twin.wait_for_message("pack1: 8 cells, source emulator:pack1")
        twin.wait_for_message("pack1: receiving frames from emulator:pack1")
        assert not state.exists()  # the interval is an hour: only the stop writes it
        assert twin.stop(signum) == 0
    twin.wait_for_message("stopped; state saved")
    pack = _saved(state)
    energy = pack["energy"]
    assert isinstance(energy, dict) and energy["day"] is not None  # the logic ran


def test_kill_9_loses_at_most_one_save_interval(tmp_path: Path) -> None:
    config = write_config(tmp_path, save_interval_s=1)
    state = tmp_path / "state.json"
    with TwinProcess(config, speed=50) as twin:
        wait_until(state.exists, what="the first save")
        first = _saved(state)
        wait_until(lambda: _saved(state) != first, what="a second save")
        assert twin.process is not None
        twin.process.kill()  # SIGKILL: no final save
        twin.process.wait(timeout=10)
    before = _saved(state)
    with TwinProcess(config, speed=50) as again:
        again.wait_for_message("restored pack1")
        wait_until(lambda: _saved(state) != before, what="a save after the restart")
        after = _saved(state)
        assert again.stop() == 0
    energy_before, energy_after = before["energy"], after["energy"]
    assert isinstance(energy_before, dict) and isinstance(energy_after, dict)
    # The counters continue from the saved values (not from zero) ...
    assert energy_after["consumed_total_wh"] >= energy_before["consumed_total_wh"]
    # ... within what ~one interval at 50x (50 emulated seconds) can add.
    assert energy_after["consumed_total_wh"] - energy_before["consumed_total_wh"] < 200
    soc_before, soc_after = before["soc_pct"], after["soc_pct"]
    assert isinstance(soc_before, float) and isinstance(soc_after, float)
    assert abs(soc_after - soc_before) < 2.0


def test_a_truncated_state_file_does_not_stop_the_start(tmp_path: Path) -> None:
    config = write_config(tmp_path, save_interval_s=1)
    state = tmp_path / "state.json"
    state.write_text('{"format": 1, "saved_at": "2026-01-01T00:00:00Z", "packs": {"pa', "utf-8")
    with TwinProcess(config, speed=20) as twin:
        entry = twin.wait_for_message("is corrupt")
        assert entry["level"] == "warning"
        twin.wait_for_message("pack1: 8 cells")
        wait_until(state.exists, what="a fresh state file")
        assert twin.stop() == 0
    kept = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(kept) == 1 and kept[0].read_text(encoding="utf-8").endswith('"pa')
    assert _saved(state)["soc_pct"] is not None


def test_a_config_error_exits_2_and_starts_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path).read_text(encoding="utf-8").replace("cells = 8", "cells = 300")
    path = tmp_path / "bad.toml"
    path.write_text(config, encoding="utf-8")
    done = run_twin("run", "--config", str(path), "--quiet")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cells" in lines[0] and "300" in lines[0]
    assert not (tmp_path / "state.json").exists()


def test_an_impossible_capacity_is_refused_everywhere_and_never_sticks(tmp_path: Path) -> None:
    # The UART frame holds at most 6,553.5 kWh: a larger capacity used to be accepted over
    # Modbus, saved, and then broke the emulated pack on every retry, even after a restart.
    port = free_port()
    config = write_config(tmp_path, save_interval_s=1, port=port)
    state = tmp_path / "state.json"
    with TwinProcess(config) as twin:
        twin.wait_for_message("receiving frames")
        with RawModbus(port) as raw:
            assert raw.write_multiple(1, 220, [0, 4321]) is None  # the PIN
            assert raw.write_multiple(1, 206, [0xFFFF, 0xFFFE]) == 3  # 4.3 GWh: refused
            assert raw.write_multiple(1, 206, [0x0063, 0xFFFF]) == 3  # 6,553,599 Wh: refused
            assert raw.write_multiple(1, 206, [0x0063, 0xFF9C]) is None  # 6,553,500 Wh: the top
            assert raw.read_holding(1, 206, 2) == [0x0063, 0xFF9C]
        twin.wait_for_log(lambda e: "capacity_wh" in str(e.get("message")))
        assert twin.stop() == 0
    # A state file holding an impossible capacity (written by an older twin, or by hand).
    saved = json.loads(state.read_text(encoding="utf-8"))
    saved["packs"]["pack1"]["settings"]["capacity_wh"] = 1e300
    state.write_text(json.dumps(saved), encoding="utf-8")
    with TwinProcess(config) as twin:
        entry = twin.wait_for_message("impossible setting")
        assert entry["level"] == "warning" and "capacity_wh" in entry["message"]
        twin.wait_for_message("receiving frames")
        with RawModbus(port) as raw:
            registers = raw.read_holding(1, 206, 2)
            assert registers == [0, 5734]  # the configuration's capacity
            assert raw.read_holding(1, 131, 1) == [0]  # no E: frames flow
        assert twin.stop() == 0
    kept = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(kept) == 1 and "1e+300" in kept[0].read_text(encoding="utf-8")


def test_a_failed_final_save_is_the_last_word_not_state_saved(tmp_path: Path) -> None:
    config = write_config(tmp_path, save_interval_s=1)
    (tmp_path / "blocker").write_text("a file where the state's directory should be")
    config.write_text(
        config.read_text().replace('path = "state.json"', 'path = "blocker/state.json"')
    )
    with TwinProcess(config) as twin:
        twin.wait_for_message("cannot be written")
        assert twin.stop() == 0
    last = twin.logs[-1]
    assert last["level"] == "error" and "could NOT be saved" in last["message"], last
    assert not any("state saved" in str(e.get("message")) for e in twin.logs)
