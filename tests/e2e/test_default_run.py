"""The README's first command: ``twin run`` with no configuration at all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import wait_until

pytestmark = pytest.mark.slow

DEFAULT_PORT = 5020


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(_port_taken(DEFAULT_PORT), reason="something else listens on 127.0.0.1:5020")
def test_twin_run_without_a_config_serves_the_emulated_16s_pack_on_5020(tmp_path: Path) -> None:
    # The state file goes to $XDG_STATE_HOME/twin/state.json: keep it in the test's folder.
    env = dict(os.environ, XDG_STATE_HOME=str(tmp_path), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "twin", "run"],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: _port_taken(DEFAULT_PORT), what="Modbus on 127.0.0.1:5020")
        with RawModbus(DEFAULT_PORT) as raw:
            wait_until(lambda: raw.read_holding(1, 140, 1) == [0], what="frames arriving")
            identity = raw.read_holding(1, 0, 12)
            assert isinstance(identity, list) and identity[11] == 16  # 16 cells
            voltage = raw.read_holding(1, 100, 2)
            assert isinstance(voltage, list)
            assert 16 * 2.9 < ((voltage[0] << 16) | voltage[1]) / 1000.0 < 16 * 3.7
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert process.stderr is not None
    log = process.stderr.read()
    assert "modbus: listening on 127.0.0.1:5020" in log
    state = json.loads((tmp_path / "twin" / "state.json").read_text(encoding="utf-8"))
    assert "pack1" in state["packs"]
