"""Modbus against ``twin run`` as a subprocess: pysunspec2, pymodbus, raw exception codes, PIN."""

from __future__ import annotations

import asyncio
import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from pymodbus.client import AsyncModbusTcpClient
from sunspec2.modbus.client import SunSpecModbusClientDeviceTCP

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, wait_until, write_config

pytestmark = pytest.mark.slow

PACK, FLEET, UNKNOWN = 1, 100, 7
DEFAULT_PORT = 5020


def _port_taken(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TwinProcess, int, Path]]:
    directory = tmp_path_factory.mktemp("modbus")
    # The default port, as an integrator's client would scan it; another when 5020 is taken.
    port = DEFAULT_PORT if not _port_taken(DEFAULT_PORT) else free_port()
    config = write_config(directory, port=port)
    with TwinProcess(config) as process:
        process.wait_for_message("modbus: listening")
        process.wait_for_message("pack1: receiving frames")
        yield process, port, directory
        assert process.stop() == 0


def _scan(port: int) -> tuple[list[int], float, dict[str, object]]:
    device = SunSpecModbusClientDeviceTCP(slave_id=PACK, ipaddr="127.0.0.1", ipport=port, timeout=5)
    try:
        device.scan()
        models = sorted(k for k in device.models if isinstance(k, int))
        battery = device.models[802][0]
        module = device.models[805][0]
        soc = battery.SoC.cvalue
        cells = [cell.CellV.cvalue for cell in module.groups["lithium-ion-module-cell"]]
        return models, soc, {"V": battery.V.cvalue, "cells": cells, "NCell": module.NCell.value}
    finally:
        device.close()


def test_pysunspec2_finds_models_1_802_805_and_its_soc_is_the_native_soc(
    twin: tuple[TwinProcess, int, Path],
) -> None:
    _, port, _ = twin
    # pysunspec2 has its own blocking client (not pymodbus): in a thread, as an async test would.
    models, soc, extra = asyncio.run(asyncio.to_thread(_scan, port))
    assert models == [1, 802, 805]
    with RawModbus(port) as raw:
        native = raw.read_holding(PACK, 110, 1)
    assert isinstance(native, list)
    assert soc == pytest.approx(native[0] / 10.0, abs=0.15)
    assert extra["NCell"] == 8
    cells = extra["cells"]
    assert isinstance(cells, list) and len(cells) == 8
    assert all(c is None or 2.5 < c < 3.7 for c in cells)


def test_the_pymodbus_client_reads_the_native_map(twin: tuple[TwinProcess, int, Path]) -> None:
    _, port, _ = twin

    async def read() -> tuple[list[int], list[int], list[int]]:
        client = AsyncModbusTcpClient("127.0.0.1", port=port)
        await client.connect()
        try:
            identity = await client.read_holding_registers(0, count=12, device_id=PACK)
            measured = await client.read_input_registers(100, count=16, device_id=PACK)
            fleet = await client.read_holding_registers(0, count=2, device_id=FLEET)
            for response in (identity, measured, fleet):
                assert not response.isError(), response
            return list(identity.registers), list(measured.registers), list(fleet.registers)
        finally:
            client.close()

    identity, measured, fleet = asyncio.run(read())
    assert identity[0] == 1 and identity[1] == 1  # map version, a pack
    assert bytes(b for r in identity[2:5] for b in r.to_bytes(2, "big")).rstrip(b"\0") == b"pack1"
    assert identity[11] == 8  # cells
    pack_v = (measured[0] << 16 | measured[1]) / 1000.0
    assert 8 * 2.5 < pack_v < 8 * 3.7
    assert fleet == [1, 2]


def test_exception_codes_over_raw_sockets(twin: tuple[TwinProcess, int, Path]) -> None:
    _, port, _ = twin
    with RawModbus(port) as raw:
        # 01: coils and discrete inputs.
        assert raw.request(PACK, struct.pack(">BHH", 1, 0, 8)) == bytes([0x81, 0x01])
        assert raw.request(PACK, struct.pack(">BHH", 2, 0, 8)) == bytes([0x82, 0x01])
        # 02: an unmapped address; a write to a read-only register.
        assert raw.read_holding(PACK, 5000, 1) == 2
        assert raw.read_holding(PACK, 39999, 2) == 2
        assert raw.write_single(PACK, 110, 123) == 2
        # 03: a bad value (a setting while locked; a 32-bit register half written).
        assert raw.write_single(PACK, 201, 3650) == 3
        assert raw.write_single(PACK, 207, 1) == 3
        # 0B: a unit id the twin does not serve.
        assert raw.read_holding(UNKNOWN, 100, 1) == 0x0B
        # FC4 mirrors FC3.
        assert raw.read_input(PACK, 0, 12) == raw.read_holding(PACK, 0, 12)
        # The connection is still good after all of them.
        assert isinstance(raw.read_holding(PACK, 146, 1), list)


def test_the_heartbeat_counts_seconds(twin: tuple[TwinProcess, int, Path]) -> None:
    _, port, _ = twin
    with RawModbus(port) as raw:
        first = raw.read_holding(PACK, 146, 1)
        assert isinstance(first, list)
        wait_until(lambda: raw.read_holding(PACK, 146, 1) != first, timeout_s=5, what="a new beat")
        sunspec_hb = raw.read_holding(PACK, 40070 + 18, 1)
        assert isinstance(sunspec_hb, list) and sunspec_hb[0] != 0xFFFF


def test_settings_need_the_pin_and_are_persisted(twin: tuple[TwinProcess, int, Path]) -> None:
    process, port, directory = twin
    with RawModbus(port) as raw:
        assert raw.write_single(PACK, 201, 3650) == 3  # locked
        assert raw.write_multiple(PACK, 220, [0, 4321]) is None  # the PIN
        assert raw.read_holding(PACK, 222, 1) == [1]  # unlocked
        assert raw.write_single(PACK, 201, 3650) is None
        assert raw.read_holding(PACK, 201, 1) == [3650]
        assert raw.write_single(PACK, 201, 3300) == 3  # below V-balance: refused
        assert raw.read_holding(PACK, 201, 1) == [3650]
        assert raw.write_multiple(PACK, 204, [85, 15]) is None
        assert raw.read_holding(PACK, 204, 2) == [85, 15]
    state = directory / "state.json"

    def saved() -> dict[str, float]:
        try:
            pack = json.loads(state.read_text(encoding="utf-8"))["packs"]["pack1"]
        except (OSError, ValueError, KeyError):
            return {}
        settings: dict[str, float] = pack["settings"]
        return settings

    wait_until(lambda: saved().get("charge_restart_pct") == 85.0, what="the settings saved")
    assert saved()["vmax_v"] == pytest.approx(3.65)
    process.wait_for_message("settings {'charge_restart_pct': 85.0, 'discharge_restart_pct': 15.0}")


def test_five_wrong_pins_lock_writes_out(twin: tuple[TwinProcess, int, Path]) -> None:
    _, port, _ = twin
    with RawModbus(port) as raw:
        for _ in range(5):
            assert raw.write_multiple(PACK, 220, [0, 1111]) == 3
        assert raw.read_holding(PACK, 222, 1) == [2]  # locked out
        assert raw.write_multiple(PACK, 220, [0, 4321]) == 3  # even the right PIN
        assert raw.write_single(PACK, 204, 80) == 3
        remaining = raw.read_holding(PACK, 223, 1)
        assert isinstance(remaining, list) and 240 < remaining[0] <= 300
        wrong = raw.read_holding(PACK, 224, 1)
        assert isinstance(wrong, list) and wrong[0] >= 5
