"""CAN against ``twin run`` as a subprocess: udp_multicast, seen from this test's process."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import can
import cantools
import pytest
from cantools.database.can import Database

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, wait_until

pytestmark = pytest.mark.slow

CONFIG = """
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = 8
capacity_wh = 5734
vbalance_v = 3.4
vmax_v = 3.7
pin = "4321"

[pack.source]
kind = "emulator"
capacity_ah = 2          # small cells and a strong charger: the top of the curve in seconds
true_soc_pct = 80
spread = "bad"
charger_a = 20
seed = 2

[store]
path = "state.json"

[modbus]
port = {port}

[web]
enabled = false        # the dashboard has its own tests

[can]
interface = "udp_multicast"
channel = "{group}"
profile = "pylon"
"""


def _inverter_db() -> Database:
    database = cantools.database.load_file(
        Path(str(resources.files("twin.dbc") / "inverter.dbc")), strict=True
    )
    assert isinstance(database, Database)
    return database


@pytest.fixture
def twin(tmp_path: Path) -> Iterator[tuple[TwinProcess, int, can.BusABC]]:
    port = free_port()
    # A group of our own (239.x.y.z, administratively scoped): runs in parallel never mix.
    group = f"239.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    config = tmp_path / "twin.toml"
    config.write_text(CONFIG.format(port=port, group=group), encoding="utf-8")
    listener = can.Bus(interface="udp_multicast", channel=group, hop_limit=0)  # host-local
    try:
        with TwinProcess(config) as process:
            process.wait_for_message("can: udp_multicast")
            process.wait_for_message("pack1: receiving frames")
            yield process, port, listener
            assert process.stop() == 0
    finally:
        listener.shutdown()


def _next(listener: can.BusABC, frame_id: int, timeout_s: float = 5.0) -> can.Message:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        message = listener.recv(0.5)
        if message is not None and message.arbitration_id == frame_id:
            return message
    raise AssertionError(f"no {frame_id:#05x} within {timeout_s} s")


def _decode(database: Database, message: can.Message) -> dict[str, float]:
    decoded = database.decode_message(
        message.arbitration_id, bytes(message.data), decode_choices=False, allow_truncated=True
    )
    assert isinstance(decoded, dict)
    return {name: float(v) for name, v in decoded.items() if isinstance(v, int | float)}


def test_the_inverter_frames_agree_with_the_modbus_values(
    twin: tuple[TwinProcess, int, can.BusABC],
) -> None:
    _, port, listener = twin
    database = _inverter_db()
    with RawModbus(port) as raw:
        limits = _decode(database, _next(listener, 0x351))
        state = _decode(database, _next(listener, 0x355))
        measured = _decode(database, _next(listener, 0x356))
        cvl = raw.read_holding(1, 160, 2)
        soc = raw.read_holding(1, 110, 1)
        voltage = raw.read_holding(1, 100, 2)
    assert isinstance(cvl, list) and isinstance(soc, list) and isinstance(voltage, list)
    assert limits["ChargeVoltageLimit"] == pytest.approx(((cvl[0] << 16) | cvl[1]) / 1000, abs=0.1)
    assert state["StateOfCharge"] == pytest.approx(soc[0] / 10, abs=1.0)
    pack_v = ((voltage[0] << 16) | voltage[1]) / 1000
    assert measured["BatteryVoltage"] == pytest.approx(pack_v, abs=0.2)
    assert limits["DischargeCurrentLimit"] > 0


def test_a_vmax_crossing_shows_ccl_0_on_can_within_one_cycle(
    twin: tuple[TwinProcess, int, can.BusABC],
) -> None:
    _, port, listener = twin
    database = _inverter_db()
    with RawModbus(port) as raw:

        def charging_above_vbalance() -> bool:
            highest = raw.read_holding(1, 152, 1)
            effective = raw.read_holding(1, 124, 1)
            return isinstance(highest, list) and highest[0] > 3430 and effective == [1]

        # The charger pushes the leading cell past V-balance while the others follow.
        wait_until(charging_above_vbalance, timeout_s=60, what="a cell above V-balance, charging")
        assert _decode(database, _next(listener, 0x351))["ChargeCurrentLimit"] > 0
        cells = raw.read_holding(1, 152, 1)
        assert isinstance(cells, list)
        highest = cells[0]
        # V-max just below the highest cell (still above V-balance 3.4 V): a crossing.
        new_vmax = max(3410, highest - 20)
        assert raw.write_multiple(1, 220, [0, 4321]) is None
        assert raw.write_single(1, 201, new_vmax) is None
        wait_until(lambda: raw.read_holding(1, 133, 1) == [1], what="warning Vh")
        listener_frames = 0
        while True:
            frame = _decode(database, _next(listener, 0x351))
            listener_frames += 1
            if frame["ChargeCurrentLimit"] == 0.0:
                break
            assert listener_frames < 2, "CCL still not 0 one CAN cycle after Vh"
        assert raw.read_holding(1, 124, 1) == [0]  # the effective charge relay is off too
