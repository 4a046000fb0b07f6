"""The CAN exporter on python-can's virtual bus (in-process), and on vcan0 where it exists."""

from __future__ import annotations

import asyncio
import os
import random
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import can
import pytest
import pytest_asyncio

from tests.factories import lfp_settings
from tests.frames import sample_frame
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


async def _start(settings: CanSettings) -> tuple[CanExporter, asyncio.Task[None]]:
    hub, _ = _hub()
    exporter = CanExporter(hub, settings, {"pack1": 0})
    task = asyncio.create_task(exporter.run())
    for _ in range(200):
        if exporter.open:
            break
        await asyncio.sleep(0.01)
    return exporter, task


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _collect(bus: can.BusABC, seconds: float) -> list[can.Message]:
    messages = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        message = bus.recv(0.05)
        if message is not None:
            messages.append(message)
    return messages


@pytest_asyncio.fixture
async def channel() -> AsyncIterator[str]:
    yield f"twin-test-{uuid.uuid4().hex[:8]}"


async def _listen(channel: str, seconds: float) -> list[can.Message]:
    bus = can.Bus(interface="virtual", channel=channel)
    try:
        return await asyncio.to_thread(_collect, bus, seconds)
    finally:
        bus.shutdown()


async def test_each_frame_keeps_its_cycle_without_drift(channel: str) -> None:
    listening = asyncio.create_task(_listen(channel, 3.2))
    await asyncio.sleep(0.05)
    exporter, task = await _start(
        CanSettings(interface="virtual", channel=channel, cycle_s=0.25, native=False)
    )
    messages = await listening
    await _stop(task)
    times = [m.timestamp for m in messages if m.arbitration_id == 0x351]
    assert len(times) >= 11  # ~3 s at 0.25 s
    # Due times step by whole cycles: the mean period is the cycle, whatever the jitter.
    mean = (times[-1] - times[0]) / (len(times) - 1)
    assert mean == pytest.approx(0.25, rel=0.05)
    assert {m.arbitration_id for m in messages} == {0x351, 0x355, 0x356, 0x359, 0x35C, 0x35E}
    assert exporter.send_errors == 0


async def test_native_frames_carry_each_pack_and_rotate_the_cells(channel: str) -> None:
    listening = asyncio.create_task(_listen(channel, 1.3))
    await asyncio.sleep(0.05)
    _, task = await _start(
        CanSettings(interface="virtual", channel=channel, native_base_id=0x600, cells_per_cycle=4)
    )
    messages = await listening
    await _stop(task)
    ids = {m.arbitration_id for m in messages}
    assert {0x600, 0x601, 0x602, 0x603, 0x604, 0x605} <= ids
    twin = load_dbc("twin.dbc")
    cells = {m.data[0] for m in messages if m.arbitration_id == 0x605}
    assert cells == set(range(1, 17))  # 16 cells, 4 per 100 ms: all of them within a second
    summary = twin.get_message_by_name("TwinPackSummary")
    decoded = summary.decode(bytes(next(m.data for m in messages if m.arbitration_id == 0x600)))
    assert isinstance(decoded, dict) and decoded["PackVoltage"] == pytest.approx(53.2, abs=0.02)


async def test_silent_until_the_inverter_speaks(channel: str) -> None:
    inverter = can.Bus(interface="virtual", channel=channel)
    try:
        exporter, task = await _start(
            CanSettings(
                interface="virtual", channel=channel, native=False, silent_until_inverter=True
            )
        )
        quiet = await asyncio.to_thread(_collect, inverter, 0.5)
        assert quiet == [] and exporter.frames_sent == 0
        inverter.send(can.Message(arbitration_id=0x305, data=bytes(8), is_extended_id=False))
        spoken = await asyncio.to_thread(_collect, inverter, 1.2)
        await _stop(task)
    finally:
        inverter.shutdown()
    assert 0x351 in {m.arbitration_id for m in spoken}
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
    channel: str, action: HeartbeatAction, ccl_zero: bool, alarm: bool
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
    for _ in range(100):
        if exporter.heartbeat_lost:
            break
        await asyncio.sleep(0.02)
    assert exporter.heartbeat_lost
    messages = await _listen(channel, 1.2)
    await _stop(task)
    limits = INVERTER.decode_message(
        0x351, bytes(next(m.data for m in messages if m.arbitration_id == 0x351))
    )
    pairs = INVERTER.decode_message(
        0x35A,
        bytes(next(m.data for m in messages if m.arbitration_id == 0x35A)),
        decode_choices=False,
    )
    assert isinstance(limits, dict) and isinstance(pairs, dict)
    assert (limits["ChargeCurrentLimit"] == 0.0) is ccl_zero
    assert (pairs["AlarmGeneral"] == 1) is alarm


async def test_a_bus_that_cannot_be_opened_is_retried_without_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    exporter, task = await _start(
        CanSettings(interface="no-such-interface", channel="x", retry_s=0.05)
    )
    await asyncio.sleep(0.2)
    assert not exporter.open and not task.done()
    assert "cannot open no-such-interface:x" in caplog.text
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
    listener = can.Bus(interface="socketcan", channel=VCAN)
    try:
        _, task = await _start(CanSettings(interface="socketcan", channel=VCAN, native=False))
        messages = await asyncio.to_thread(_collect, listener, 1.5)
        await _stop(task)
    finally:
        listener.shutdown()
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
