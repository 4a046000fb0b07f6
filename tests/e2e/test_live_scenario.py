"""``twin run --scenario``: a scenario's pack, plant and events on the live service."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, wait_until, write_config

pytestmark = pytest.mark.slow

SCENARIOS = Path(__file__).resolve().parents[2] / "examples" / "scenarios"


def _registers(port: int, address: int, count: int) -> list[int]:
    with RawModbus(port) as raw:
        registers = raw.read_holding(1, address, count)
    assert isinstance(registers, list), f"exception {registers}"
    return registers


def _emulated_s(message: str) -> int:
    found = re.search(r"at (\d\d):(\d\d):(\d\d)", message)
    assert found is not None, message
    h, m, s = (int(part) for part in found.groups())
    return 3600 * h + 60 * m + s


def test_a_broken_chain_shows_e_and_the_relays_off_at_the_scenarios_time(
    tmp_path: Path,
) -> None:
    # chain-broken.toml: the chain breaks at 2 h (11:00), the twin's watchdog is 10 s.
    port = free_port()
    config = write_config(tmp_path, port=port)
    with TwinProcess(
        config, "--scenario", str(SCENARIOS / "chain-broken.toml"), speed=60.0
    ) as twin:
        twin.wait_for_message("receiving frames")
        assert _registers(port, 131, 1) == [0]  # no E while the frames come
        assert _registers(port, 11, 1) == [16]  # the scenario's pack, not the config's
        broken = twin.wait_for_message("scenario event BreakChain", timeout_s=180.0)
        assert _emulated_s(str(broken["message"])) == 7200
        stale = twin.wait_for_message("no valid frame for", timeout_s=30.0)
        # E within one message cycle (1 s) of the watchdog's 10 s after the break.
        assert 7210 <= _emulated_s(str(stale["message"])) <= 7211
        wait_until(lambda: _registers(port, 131, 1) == [1], what="E on Modbus")
        assert _registers(port, 124, 2) == [0, 0]  # both effective relays off
        assert twin.stop() == 0


def test_a_scenario_stops_the_service_at_its_end_unless_held(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port=port)
    scenario = str(SCENARIOS / "chain-broken.toml")
    with TwinProcess(config, "--scenario", scenario, speed=3600.0) as twin:
        twin.wait_for_message("scenario ended at 04:00:00", timeout_s=60.0)
        assert twin.process is not None
        assert twin.process.wait(timeout=30) == 0
        twin.wait_for_message("stopped")
    # The service's state file is left alone (the scenario starts from its own state).
    assert not (tmp_path / "state.json").exists()
    with TwinProcess(config, "--scenario", scenario, "--hold", speed=3600.0) as held:
        held.wait_for_message("holding: the world goes on", timeout_s=60.0)
        wait_until(lambda: _registers(port, 131, 1) == [0], what="frames after the end")
        assert held.process is not None and held.process.poll() is None
        assert held.stop() == 0
