"""The example clients of examples/clients/ against ``twin run``: each runs and ends by itself.

One twin with every interface on (Modbus, CAN on a host-local udp_multicast group, MQTT to
the test broker, the UART on a pseudo-terminal and TCP); each example runs as a user would run
it, in its own process, with the twin's addresses on its command line.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.service import TwinProcess, free_port, wait_until
from tests.mqtt_broker import Broker

pytestmark = pytest.mark.slow

CLIENTS = Path(__file__).resolve().parents[2] / "examples" / "clients"

CONFIG = """
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = 16
capacity_wh = 5120
pin = "4321"

[pack.source]
kind = "emulator"
true_soc_pct = 60
uart_pty_file = "uart.path"
uart_tcp_port = {uart_port}

[store]
path = "state.json"

[modbus]
port = {port}

[web]
enabled = false        # the dashboard has its own tests

[can]
interface = "udp_multicast"
channel = "{group}"

[mqtt]
host = "127.0.0.1"
port = {broker_port}
prefix = "{prefix}"
"""


class Running:
    """The twin's addresses, for the examples' command lines."""

    def __init__(self, directory: Path, port: int, uart_port: int, group: str, prefix: str):
        self.directory = directory
        self.port = port
        self.uart_port = uart_port
        self.group = group
        self.prefix = prefix


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Running, Broker]]:
    directory = tmp_path_factory.mktemp("examples")
    broker = Broker(directory)
    broker.start()
    group = f"239.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    prefix = f"ex{random.randrange(16**6):06x}"
    port, uart_port = free_port(), free_port()
    config = directory / "twin.toml"
    config.write_text(
        CONFIG.format(
            port=port, uart_port=uart_port, group=group, broker_port=broker.port, prefix=prefix
        ),
        encoding="utf-8",
    )
    try:
        with TwinProcess(config) as twin:
            twin.wait_for_message("pack1: receiving frames")
            twin.wait_for_message("mqtt: connected")
            wait_until(lambda: (directory / "uart.path").exists(), what="the pty's path file")
            yield Running(directory, port, uart_port, group, prefix), broker
            assert twin.stop() == 0
    finally:
        broker.stop()


def _example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python examples/clients/NAME ARGS``, to its end (each bounds its own run)."""
    return subprocess.run(
        [sys.executable, str(CLIENTS / name), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


def test_the_modbus_poller_reads_the_pack(running: tuple[Running, Broker]) -> None:
    twin, _ = running
    lines = _ok(
        _example("modbus_poller.py", "--port", str(twin.port), "--polls", "2", "--period", "0.2")
    )
    assert len(lines) == 2
    assert "SOC " in lines[0] and "relays C1 D1" in lines[0] and "CVL 5" in lines[0]


def test_the_can_listener_decodes_the_inverter_and_native_frames(
    running: tuple[Running, Broker],
) -> None:
    twin, _ = running
    result = _example(
        "can_listener.py", "--interface", "udp_multicast", "--channel", twin.group,
        "--count", "20", "--duration", "15",
    )  # fmt: skip
    lines = _ok(result)
    text = "\n".join(lines)
    assert "BatteryLimits: ChargeVoltageLimit=" in text
    assert "TwinPackSummary: PackVoltage=" in text
    assert lines[-1].startswith("20 frames printed")


def test_the_mqtt_subscriber_prints_the_state(running: tuple[Running, Broker]) -> None:
    twin, broker = running
    result = _example(
        "mqtt_subscriber.py", "--port", str(broker.port), "--prefix", twin.prefix,
        "--count", "2",
    )  # fmt: skip
    lines = _ok(result)
    assert "status: online" in lines
    assert sum("SOC" in line and "stale False" in line for line in lines) == 2


def test_the_uart_reader_decodes_the_pty_and_the_tcp_port(
    running: tuple[Running, Broker],
) -> None:
    twin, _ = running
    pty = (twin.directory / "uart.path").read_text(encoding="utf-8").strip()
    for where in (("--port", pty), ("--tcp", f"127.0.0.1:{twin.uart_port}")):
        lines = _ok(_example("uart_reader.py", *where, "--frames", "2"))
        assert sum("cells 16" in line for line in lines) == 2, lines
        assert lines[-1].startswith("2 frames")


def test_the_controller_closes_the_loop(running: tuple[Running, Broker]) -> None:
    twin, _ = running
    lines = _ok(
        _example("controller.py", "--port", str(twin.port), "--steps", "2", "--period", "0.2")
    )
    assert len(lines) == 2
    assert all(line.endswith("-> inverter -40.0 A") for line in lines), lines
