"""The README's first command: ``twin run`` with no configuration at all."""

from __future__ import annotations

import json
import signal
import socket
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, wait_until

pytestmark = pytest.mark.slow

DEFAULT_PORT = 5020
WEB_PORT = 8080


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(
    _port_taken(DEFAULT_PORT) or _port_taken(WEB_PORT),
    reason="something else listens on 127.0.0.1:5020 or 8080",
)
def test_twin_run_without_a_config_serves_the_emulated_16s_pack_on_5020(tmp_path: Path) -> None:
    # The state file goes to $XDG_STATE_HOME/twin/state.json: keep it in the test's folder.
    with TwinProcess(None, cwd=tmp_path, env={"XDG_STATE_HOME": str(tmp_path)}) as twin:
        entry = twin.wait_for_log(
            lambda e: (
                "modbus: listening" in str(e.get("message"))
                or "modbus: cannot listen" in str(e.get("message"))
            )
        )
        if "cannot listen" in entry["message"]:
            pytest.skip("127.0.0.1:5020 was taken by another process after collection")
        assert "listening on 127.0.0.1:5020" in entry["message"]
        twin.wait_for_message("can: virtual:twin open, profile pylon")
        twin.wait_for_message("web: the dashboard is on http://127.0.0.1:8080/")
        with urllib.request.urlopen(f"http://127.0.0.1:{WEB_PORT}/", timeout=10) as page:
            assert b"<title>twin" in page.read()
        with RawModbus(DEFAULT_PORT) as raw:
            wait_until(lambda: raw.read_holding(1, 140, 1) == [0], what="frames arriving")
            identity = raw.read_holding(1, 0, 12)
            assert isinstance(identity, list) and identity[11] == 16  # 16 cells
            voltage = raw.read_holding(1, 100, 2)
            assert isinstance(voltage, list)
            assert 16 * 2.9 < ((voltage[0] << 16) | voltage[1]) / 1000.0 < 16 * 3.7
        assert twin.stop(signal.SIGINT) == 0
    state = json.loads((tmp_path / "twin" / "state.json").read_text(encoding="utf-8"))
    assert "pack1" in state["packs"]
