"""The Modbus exporter in-process: CtrlHb watchdog, AlmRst, the fleet unit, a busy port."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from pymodbus.client import AsyncModbusTcpClient

from tests.factories import lfp_settings
from tests.frames import sample_frame
from tests.ports import PackPort
from tests.waiting import until
from twin.app import StateHub
from twin.config import load_register_maps
from twin.exporters.modbus import ModbusExporter
from twin.exporters.modbus_map import ModbusSettings
from twin.protocol.frame import encode_frame
from twin.protocol.shadow import PackShadow

pytestmark = pytest.mark.asyncio

MAPS = load_register_maps()
EVT1 = 40070 + 26


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _serve(
    ctrl_hb_timeout_s: float | None = None, port: int | None = None, *, listens: bool = True
) -> tuple[ModbusExporter, asyncio.Task[None], int]:
    settings = lfp_settings(vbalance_v=3.5, vmax_v=3.65)
    hub = StateHub(("pack1",))
    shadow = PackShadow("pack1", settings)
    state = shadow.feed(encode_frame(sample_frame()), 0.0, 740_000)
    assert state is not None
    hub.publish(state)
    port = port if port is not None else _free_port()
    exporter = ModbusExporter(
        hub,
        PackPort(settings),
        MAPS,
        ModbusSettings(
            port=port,
            pack_unit_ids=(("pack1", 1),),
            ctrl_hb_timeout_s=ctrl_hb_timeout_s,
            retry_s=0.2,
        ),
        {"pack1": 16},
    )
    task = asyncio.create_task(exporter.run())
    if listens:
        await until(lambda: exporter.listening, "listening")
    return exporter, task, port


@pytest_asyncio.fixture
async def client() -> AsyncIterator[tuple[AsyncModbusTcpClient, ModbusExporter]]:
    exporter, task, port = await _serve(ctrl_hb_timeout_s=0.3)
    modbus = AsyncModbusTcpClient("127.0.0.1", port=port)
    await modbus.connect()
    yield modbus, exporter
    modbus.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _listening(exporter: ModbusExporter) -> bool:
    return exporter.listening


async def _evt1(modbus: AsyncModbusTcpClient) -> int:
    response = await modbus.read_holding_registers(EVT1, count=2, device_id=1)
    assert not response.isError()
    high, low = response.registers
    return (high << 16) | low


async def test_a_controller_that_stops_writing_ctrlhb_raises_evt1_bit_0(
    client: tuple[AsyncModbusTcpClient, ModbusExporter],
) -> None:
    modbus, _ = client
    assert not await _evt1(modbus) & 1  # never written: not watched yet
    response = await modbus.write_register(40070 + 19, 7, device_id=1)
    assert not response.isError()
    read = await modbus.read_holding_registers(40070 + 19, count=1, device_id=1)
    assert read.registers == [7]
    assert not await _evt1(modbus) & 1

    # The timeout is 0.3 s; the tick looks every 0.1 s.
    async def alarmed() -> bool:
        return bool(await _evt1(modbus) & 1)

    async def cleared() -> bool:
        return not await alarmed()

    await until(alarmed, "Evt1 bit 0")
    await modbus.write_register(40070 + 19, 8, device_id=1)
    await until(cleared, "Evt1 bit 0 cleared")


async def test_almrst_takes_0_or_1_only(
    client: tuple[AsyncModbusTcpClient, ModbusExporter],
) -> None:
    modbus, exporter = client
    assert not (await modbus.write_register(40070 + 20, 1, device_id=1)).isError()
    refused = await modbus.write_register(40070 + 20, 2, device_id=1)
    assert refused.isError() and refused.exception_code == 3
    assert exporter.refused_writes == 1


async def test_clear_counters_takes_the_pin_first_and_1_only(
    client: tuple[AsyncModbusTcpClient, ModbusExporter],
) -> None:
    modbus, exporter = client
    port = exporter.settings_port
    assert isinstance(port, PackPort)
    locked = await modbus.write_register(178, 1, device_id=1)
    assert locked.isError() and locked.exception_code == 3 and port.cleared == 0
    unlock = await modbus.write_registers(220, [0, 4321], device_id=1)
    assert not unlock.isError()
    assert (await modbus.write_register(178, 2, device_id=1)).exception_code == 3
    assert not (await modbus.write_register(178, 0, device_id=1)).isError()
    assert port.cleared == 0  # 0 does nothing
    assert not (await modbus.write_register(178, 1, device_id=1)).isError()
    assert port.cleared == 1
    assert (await modbus.read_holding_registers(178, count=1, device_id=1)).registers == [0]
    fleet = await modbus.write_register(178, 1, device_id=100)
    assert fleet.isError() and fleet.exception_code == 3


async def test_a_busy_port_is_retried_without_stopping_anything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    with caplog.at_level(logging.ERROR, logger="twin.exporters.modbus"):
        exporter, task, _ = await _serve(port=port, listens=False)
        await until(lambda: "cannot listen" in caplog.text, "the bind error logged")
        assert not _listening(exporter)
        blocker.close()
        await until(lambda: _listening(exporter), "listening once the port is free")
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_the_connection_cap_leaves_the_store_its_descriptors() -> None:
    # Under a hard limit of 300 open files, 100 connections and the reserve do not fit: the cap
    # shrinks (with a warning) rather than let connections take the state file's descriptors.
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, (200, 300));"
        "from twin.exporters.modbus_tcp import ensure_descriptors, DESCRIPTOR_RESERVE;"
        "print(ensure_descriptors(100), resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["44", "300"]  # raised to the hard limit, then 300 - 256
    assert "at most 44 connections instead of 100" in result.stderr


async def test_the_plant_block_of_a_real_bms_pack_answers_illegal_address(
    client: tuple[AsyncModbusTcpClient, ModbusExporter],
) -> None:
    # The port's pack is a real BMS (not emulated): there is no plant to set.
    modbus, _ = client
    refused = await modbus.write_register(240, 100, device_id=1)
    assert refused.isError() and refused.exception_code == 2
    timeout = await modbus.write_register(247, 30, device_id=1)
    assert timeout.isError() and timeout.exception_code == 2
    fleet = await modbus.write_register(240, 100, device_id=100)
    assert fleet.isError() and fleet.exception_code in (2, 3)  # the fleet has no plant
    # Reading the block: no setpoint in effect, not available.
    block = await modbus.read_holding_registers(240, count=9, device_id=1)
    assert not block.isError()
    assert block.registers == [0x8000, 0x8000, 0, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 0, 0]
