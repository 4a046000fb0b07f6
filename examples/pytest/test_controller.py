"""Testing a battery controller against a virtual 123\\SmartBMS: start here.

The ``twin`` fixture comes with the package (``pip install twin``: the pytest plugin
``twin.testing``). It starts a twin for each test, on this host only: an emulated 16-cell
LiFePO4 pack, Modbus TCP on a free port, CAN on a host-local udp_multicast group, the pack's
UART on a pseudo-terminal. The test drives the controller (examples/clients/controller.py, in
your project your own code) against it through the real interfaces, changes the battery's world
(faults, plant) through the handle, and reads back what the BMS twin concluded.

    pytest examples/pytest
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from controller import Controller

from twin.testing import RunningTwin, TwinFactory


@pytest.fixture
def controller(twin: RunningTwin) -> Iterator[Controller]:
    """The controller under test, pointed at the twin's Modbus server."""
    address = twin.modbus_address
    assert address is not None
    host, port = address
    controller = Controller(host, port, floor_pct=30.0, discharge_a=40.0, charge_a=20.0)
    yield controller
    controller.close()


def test_the_controller_reads_what_the_bms_twin_says(
    twin: RunningTwin, controller: Controller
) -> None:
    reading = controller.read()
    readout = twin.readout()
    assert readout is not None
    assert reading.soc_pct == pytest.approx(readout.soc_pct, abs=0.5)
    assert reading.dcl_a == pytest.approx(readout.discharge_current_limit_a, abs=0.1)
    assert reading.discharge_ok == readout.discharge_effective


def test_the_controller_discharges_the_battery_within_dcl(
    twin: RunningTwin, controller: Controller
) -> None:
    reading, current = controller.step()
    assert reading.soc_pct > 30.0  # the emulated pack starts half full
    assert current == -40.0
    # The emulated inverter takes the setpoint: 40 A flow out through sensor 2.
    twin.wait_for(lambda r: abs((r.current2_a or 0.0) - 40.0) < 1.0, what="40 A out")


def test_the_controller_charges_below_its_floor(twin: RunningTwin, controller: Controller) -> None:
    controller.floor_pct = 99.0
    _, current = controller.step()
    assert current == 20.0
    twin.wait_for(lambda r: abs((r.current2_a or 0.0) + 20.0) < 1.0, what="20 A in")


def test_the_controller_stands_still_when_the_bms_loses_its_chain(
    twin: RunningTwin, controller: Controller
) -> None:
    controller.step()
    twin.inject_fault("break-chain")
    # The BMS twin's watchdog sees the silence: E on, the relays off (fail-safe).
    twin.wait_for(lambda r: r.warning_e and not r.discharge_effective, what="E and load off")
    reading, current = controller.step()
    assert reading.comm_error
    assert current == 0.0
    twin.clear_fault("break-chain")
    twin.wait_for(lambda r: not r.warning_e, what="E off again")


def test_the_inverter_link_carries_the_same_limits_on_can(twin: RunningTwin) -> None:
    # A CAN-connected inverter would read these: 0x351 with CVL, CCL, DCL, DVL.
    bus = twin.can_bus()
    try:
        frame = None
        deadline = time.monotonic() + 5.0  # 0x351 comes once a second
        while frame is None and time.monotonic() < deadline:
            message = bus.recv(timeout=0.5)
            if message is not None and message.arbitration_id == 0x351:
                frame = message
        assert frame is not None, "no 0x351 on the twin's CAN channel"
        dcl_a = int.from_bytes(frame.data[4:6], "little", signed=True) / 10.0
        readout = twin.readout()
        assert readout is not None
        assert dcl_a == pytest.approx(readout.discharge_current_limit_a, abs=0.1)
    finally:
        bus.shutdown()


def test_a_scenario_plays_on_the_live_interfaces(twin_factory: TwinFactory) -> None:
    # A scenario of examples/scenarios/, 600 times faster: from 09:00 the chain breaks at
    # 11:00 (12 s from the start) and is repaired at 12:00; the scenario ends at 13:00.
    scenario = Path(__file__).resolve().parents[1] / "scenarios" / "chain-broken.toml"
    live = twin_factory(scenario=scenario, speed=600.0)
    live.wait_for(lambda r: r.warning_e, timeout_s=60.0, what="E from the broken chain")
    live.wait_for(lambda r: not r.warning_e, timeout_s=60.0, what="the chain repaired")
    live.wait_stopped(timeout_s=60.0)
