"""The pytest plugin (``twin.testing``) as an integrator's suite gets it: by its entry point."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from twin.errors import ConfigError
from twin.testing import RunningTwin, TwinFactory

pytestmark = pytest.mark.slow


def test_the_plugin_is_loaded_by_its_entry_point(pytestconfig: pytest.Config) -> None:
    plugin = pytestconfig.pluginmanager.get_plugin("twin")
    assert plugin is not None
    assert plugin.__name__ == "twin.testing"


def test_a_factory_twin_takes_the_defaults_given_and_serves_its_uart(
    twin_factory: TwinFactory,
) -> None:
    twin = twin_factory(cells=8, inverter="limits", pin="4321")
    readout = twin.readout()
    assert readout is not None
    assert readout.cell_count == 8
    assert twin.pin == "4321"
    pty = twin.uart_pty
    assert pty is not None
    assert Path(pty).exists()
    address = twin.uart_tcp_address
    assert address is not None
    assert address[0] == "127.0.0.1"
    with socket.create_connection(address, timeout=5) as sock:
        sock.settimeout(5)
        received = b""
        deadline = time.monotonic() + 5
        while len(received) < 58 and time.monotonic() < deadline:
            received += sock.recv(256)
    assert len(received) >= 58  # a frame's worth of the stream
    interface, channel = twin.can_channel or ("", "")
    assert interface == "udp_multicast"
    assert channel.startswith("239.")


def test_the_handle_sets_the_plant_and_the_readout_shows_it(twin: RunningTwin) -> None:
    twin.set_plant("inverter_dc_a", -25.0, timeout_s=30)
    readout = twin.wait_for(lambda r: r.plant_inverter_dc_a == -25.0, what="the setpoint")
    assert readout.plant_inverter_dc_a == -25.0
    twin.wait_for(lambda r: abs((r.current2_a or 0.0) - 25.0) < 1.0, what="25 A out")
    twin.clear_plant()
    twin.wait_for(lambda r: r.plant_inverter_dc_a is None, what="back to the profile")
    with pytest.raises(ValueError, match="grid_w"):
        twin.set_plant("grid_w", 1.0)


def test_a_stopped_twin_says_so_and_a_bad_config_is_a_config_error(
    twin_factory: TwinFactory,
) -> None:
    twin = twin_factory()
    twin.stop()
    assert not twin.running
    with pytest.raises(RuntimeError, match="stopped"):
        twin.readout()
    with pytest.raises(ConfigError, match="cells"):
        twin_factory(config='[[pack]]\nid = "p"\ncells = 300\ncapacity_wh = 5000\n')
