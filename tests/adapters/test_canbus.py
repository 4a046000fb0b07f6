"""The CAN exporter on python-can's virtual bus (in-process), and on vcan0 where it exists."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import can
import pytest
import pytest_asyncio

from tests.factories import lfp_settings
from tests.frames import sample_frame
from tests.ports import PackPort
from tests.waiting import until
from twin.app import StateHub
from twin.exporters.can_map import CanSettings, HeartbeatAction, Profile
from twin.exporters.canbus import CanExporter, describe_dbc, load_dbc, open_bus
from twin.protocol.frame import encode_frame
from twin.protocol.shadow import PackShadow

pytestmark = pytest.mark.asyncio

INVERTER = load_dbc("inverter.dbc")


def _hub() -> tuple[StateHub, PackShadow]:
    hub = StateHub(("pack1",))
    shadow = PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))
    shadow.feed(encode_frame(sample_frame()), 0.0, 740_000)
    state = shadow.feed(encode_frame(sample_frame()), 1.0, 740_000)
    assert state is not None
    hub.publish(state)
    return hub, shadow


async def _start(
    settings: CanSettings, *, opens: bool = True
) -> tuple[CanExporter, asyncio.Task[None]]:
    hub, _ = _hub()
    exporter = CanExporter(hub, settings, {"pack1": 0})
    task = asyncio.create_task(exporter.run())
    if opens:
        await until(lambda: exporter.open, "the bus open")
    return exporter, task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


class _Listener:
    """A bus of the test's own on the channel, read in a thread until a condition holds."""

    def __init__(self, interface: str, channel: str) -> None:
        self.bus = can.Bus(interface=interface, channel=channel)
        self.messages: list[can.Message] = []

    async def until(
        self, check: Callable[[list[can.Message]], bool], what: str, timeout_s: float = 10.0
    ) -> list[can.Message]:
        """Collect frames until ``check(frames)``; fail after ``timeout_s``."""

        def collect() -> bool:
            deadline = time.monotonic() + timeout_s
            while not check(self.messages):
                if time.monotonic() > deadline:
                    return False
                message = self.bus.recv(0.05)
                if message is not None:
                    self.messages.append(message)
            return True

        if not await asyncio.to_thread(collect):
            raise AssertionError(f"{what} not seen within {timeout_s} s")
        return self.messages

    def close(self) -> None:
        self.bus.shutdown()


def _ids(messages: list[can.Message]) -> set[int]:
    return {m.arbitration_id for m in messages}


@pytest_asyncio.fixture
async def channel() -> AsyncIterator[str]:
    yield f"twin-test-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture
async def listener(channel: str) -> AsyncIterator[_Listener]:
    bus = _Listener("virtual", channel)
    yield bus
    bus.close()


async def test_each_frame_keeps_its_cycle_without_drift(channel: str, listener: _Listener) -> None:
    cycle = 0.25
    exporter, task = await _start(
        CanSettings(interface="virtual", channel=channel, cycle_s=cycle, native=False)
    )
    try:
        await until(lambda: len(exporter.inverter_slots(0x351)) >= 12, "12 sends of 0x351")
        inverter_ids = {0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E}
        await listener.until(lambda m: inverter_ids <= _ids(m), "every frame of the profile")
    finally:
        await _stop(task)
    # The exporter's own schedule: each send takes the next slot of a fixed grid, so the due
    # times step by whole cycles (a late loop skips slots, never shifts the grid): no drift,
    # whatever the machine's load did to the wall clock.
    slots = exporter.inverter_slots(0x351)
    steps = [(b - a) / cycle for a, b in itertools.pairwise(slots)]
    assert all(step >= 1 - 1e-6 and abs(step - round(step)) < 1e-6 for step in steps), steps
    assert _ids(listener.messages) == inverter_ids
    assert exporter.send_errors == 0


async def test_native_frames_carry_each_pack_and_rotate_the_cells(
    channel: str, listener: _Listener
) -> None:
    _, task = await _start(
        CanSettings(interface="virtual", channel=channel, native_base_id=0x600, cells_per_cycle=4)
    )
    try:
        messages = await listener.until(
            lambda m: (
                {0x600, 0x601, 0x602, 0x603, 0x604, 0x605} <= _ids(m)
                and {x.data[0] for x in m if x.arbitration_id == 0x605} == set(range(1, 17))
            ),
            "every native frame and all 16 cells",
        )
    finally:
        await _stop(task)
    twin = load_dbc("twin.dbc")
    summary = twin.get_message_by_name("TwinPackSummary")
    decoded = summary.decode(bytes(next(m.data for m in messages if m.arbitration_id == 0x600)))
    assert isinstance(decoded, dict) and decoded["PackVoltage"] == pytest.approx(53.2, abs=0.02)


async def test_silent_until_the_inverter_speaks(channel: str, listener: _Listener) -> None:
    exporter, task = await _start(
        CanSettings(interface="virtual", channel=channel, native=False, silent_until_inverter=True)
    )
    try:
        # Twenty turns of its send loop without a word (the loop runs: it is waiting).
        await until(lambda: exporter.transmit_cycles >= 20, "twenty turns of the send loop")
        assert exporter.frames_sent == 0 and listener.messages == []
        listener.bus.send(can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False))
        await listener.until(lambda m: 0x351 in _ids(m), "0x351 once the inverter spoke")
    finally:
        await _stop(task)
    assert exporter.inverter_seen_at is not None


@pytest.mark.parametrize(
    ("action", "ccl_zero", "alarm"),
    [
        (HeartbeatAction.LOG, False, False),
        (HeartbeatAction.ALARM, False, True),
        (HeartbeatAction.FAIL_SAFE, True, True),
    ],
)
async def test_a_silent_inverter_triggers_the_heartbeat_action(
    channel: str, listener: _Listener, action: HeartbeatAction, ccl_zero: bool, alarm: bool
) -> None:
    exporter, task = await _start(
        CanSettings(
            interface="virtual",
            channel=channel,
            native=False,
            profile=Profile.VICTRON,
            heartbeat_timeout_s=0.3,
            heartbeat_action=action,
        )
    )
    try:
        await until(lambda: exporter.heartbeat_lost, "the heartbeat lost")
        mark = len(listener.messages)

        def after_the_loss(messages: list[can.Message]) -> bool:
            # Two of each: the first may have been sent before the loss and read after it.
            ids = [m.arbitration_id for m in messages[mark:]]
            return ids.count(0x351) >= 2 and ids.count(0x35A) >= 2

        messages = (await listener.until(after_the_loss, "0x351 and 0x35A after the loss"))[mark:]
    finally:
        await _stop(task)
    last = {m.arbitration_id: bytes(m.data) for m in messages}
    limits = INVERTER.decode_message(0x351, last[0x351])
    pairs = INVERTER.decode_message(0x35A, last[0x35A], decode_choices=False)
    assert isinstance(limits, dict) and isinstance(pairs, dict)
    assert (limits["ChargeCurrentLimit"] == 0.0) is ccl_zero
    assert (pairs["AlarmGeneral"] == 1) is alarm


async def test_a_bus_that_cannot_be_opened_is_retried_without_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter, task = await _start(
        CanSettings(interface="no-such-interface", channel="x", retry_s=0.05), opens=False
    )
    try:
        await until(
            lambda: caplog.text.count("cannot open no-such-interface:x") >= 2, "two retries"
        )
        assert not exporter.open and not task.done()
    finally:
        await _stop(task)


async def test_twin_dbc_lists_messages_and_signals() -> None:
    text = describe_dbc()
    assert "inverter.dbc:" in text and "twin.dbc:" in text
    assert "0x351 BatteryLimits (8 bytes, from BMS, every 1000 ms)" in text
    assert "ChargeVoltageLimit: bits 0+16 unsigned, x0.1 V" in text


VCAN = "vcan0"


@pytest.mark.skipif(
    not os.path.exists(f"/sys/class/net/{VCAN}"),
    reason=f"no {VCAN} on this host (ip link add dev {VCAN} type vcan; ip link set up {VCAN})",
)
async def test_the_same_frames_on_socketcan_vcan0() -> None:
    listener = _Listener("socketcan", VCAN)
    try:
        _, task = await _start(CanSettings(interface="socketcan", channel=VCAN, native=False))
        try:
            messages = await listener.until(lambda m: 0x351 in _ids(m), "0x351 on vcan0")
        finally:
            await _stop(task)
    finally:
        listener.close()
    limits = INVERTER.decode_message(
        0x351, bytes(next(m.data for m in messages if m.arbitration_id == 0x351))
    )
    assert isinstance(limits, dict)
    cvl = limits["ChargeVoltageLimit"]
    assert isinstance(cvl, float) and cvl > 0


class _FlakyBus(can.BusABC):
    """A bus whose first ``failures`` sends fail (a full TX queue, a bus-off controller)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[can.Message] = []
        super().__init__(channel="flaky")

    def send(self, msg: can.Message, timeout: float | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise can.CanOperationError("transmit buffer full")
        self.sent.append(msg)

    def _recv_internal(self, timeout: float | None) -> tuple[None, bool]:
        return None, False


async def test_failed_sends_are_counted_and_the_next_cycle_sends_again() -> None:
    hub, _ = _hub()
    exporter = CanExporter(hub, CanSettings(native=False), {"pack1": 0})
    bus = _FlakyBus(failures=3)
    frames = exporter.compose(time.monotonic())
    exporter.send(bus, frames)
    assert exporter.send_errors == 3 and exporter.frames_sent == len(frames) - 3
    exporter.send(bus, frames)  # the next cycle: all go
    assert exporter.frames_sent == 2 * len(frames) - 3


async def test_a_bus_that_keeps_failing_is_given_up_for_a_reopen() -> None:
    hub, _ = _hub()
    exporter = CanExporter(hub, CanSettings(native=False), {"pack1": 0})
    bus = _FlakyBus(failures=1000)
    frames = exporter.compose(time.monotonic()) * 4
    with pytest.raises(Exception, match="sends in a row failed"):
        exporter.send(bus, frames)
    assert exporter.send_errors == 20


def _sent_packets_off_loopback() -> int:
    """Packets sent through every interface but loopback since boot (/proc/net/dev)."""
    total = 0
    with open("/proc/net/dev", encoding="ascii") as dev:
        for line in dev.readlines()[2:]:
            name, counters = line.split(":", 1)
            if name.strip() != "lo":
                total += int(counters.split()[9])  # transmit packets
    return total


@pytest.mark.skipif(not Path("/proc/net/dev").exists(), reason="needs Linux's /proc/net/dev")
async def test_udp_multicast_frames_never_leave_the_host() -> None:
    # python-can's default hop limit (1) sent each frame out of eth0 (200 frames, 202 packets).
    group = f"239.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    settings = CanSettings(interface="udp_multicast", channel=group)
    listener = can.Bus(interface="udp_multicast", channel=group, hop_limit=0)
    bus = open_bus(settings)
    try:
        before = _sent_packets_off_loopback()
        for n in range(200):
            bus.send(can.Message(arbitration_id=0x351, data=n.to_bytes(2, "big")))
        received = 0
        deadline = time.monotonic() + 10.0
        while received < 200 and time.monotonic() < deadline:
            if listener.recv(timeout=0.5) is not None:
                received += 1
        after = _sent_packets_off_loopback()
    finally:
        bus.shutdown()
        listener.shutdown()
    assert received == 200  # delivered on this host ...
    # ... and not one of them out of it (the margin is for the host's own unrelated traffic).
    assert after - before < 20, f"{after - before} packets left the host"


class _EmulatedPort(PackPort):
    """An emulated pack's port that records the plant commands it receives."""

    def __init__(self) -> None:
        super().__init__(lfp_settings())
        self.plant: dict[str, tuple[float, float | None]] = {}

    def emulated(self, pack_id: str) -> bool:
        return True

    def set_plant(self, pack_id: str, name: str, value: float, timeout_s: float | None) -> None:
        if name == "mains_charger":
            raise ValueError("mains_charger: this plant has no mains charger")
        self.plant[name] = (value, timeout_s)

    def clear_plant(self, pack_id: str, name: str) -> bool:
        return self.plant.pop(name, None) is not None

    def plant_setpoints(self, pack_id: str) -> dict[str, float]:
        return {name: value for name, (value, _) in self.plant.items()}


async def test_a_plant_command_frame_sets_the_emulated_plant() -> None:
    twin = load_dbc("twin.dbc")
    command = twin.get_message_by_name("TwinPlantCommand")
    channel = f"plant{time.monotonic_ns()}"
    hub, _ = _hub()
    port = _EmulatedPort()
    exporter = CanExporter(
        hub, CanSettings(channel=channel, native_base_id=0x700), {"pack1": 0}, port
    )
    task = asyncio.create_task(exporter.run())
    sender = can.Bus(interface="virtual", channel=channel)
    try:
        await until(lambda: exporter.open, "the bus open")

        def send(**values: float) -> None:
            fields: dict[str, float] = {"Setpoint": 0, "Value": 0, "TimeoutS": 0, "Clear": 0}
            data = command.encode(fields | values)
            sender.send(can.Message(arbitration_id=0x708, data=data, is_extended_id=False))

        send(Setpoint=1, Value=-42.5, TimeoutS=30)
        await until(lambda: "inverter_dc_a" in port.plant, "the setpoint taken")
        assert port.plant["inverter_dc_a"] == (-42.5, 30.0)
        send(Setpoint=3, Value=1200)
        await until(lambda: "load_w" in port.plant, "the load taken")
        assert port.plant["load_w"] == (1200.0, None)
        send(Setpoint=1, Clear=1)
        await until(lambda: "inverter_dc_a" not in port.plant, "the setpoint cleared")
        # Refused, counted and logged; never a crash: a bad code, a short frame, a bad value.
        send(Setpoint=5, Value=1)
        sender.send(
            can.Message(arbitration_id=0x708, data=b"\x09" + bytes(7), is_extended_id=False)
        )
        sender.send(can.Message(arbitration_id=0x708, data=b"\x01\x02", is_extended_id=False))
        await until(lambda: exporter.commands_refused == 3, "three refusals")
        send(Setpoint=0)
        await until(lambda: port.plant == {}, "every setpoint cleared")
        assert exporter.open
    finally:
        sender.shutdown()
        await _stop(task)
