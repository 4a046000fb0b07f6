"""The serial source against pseudo-terminals: decoding, and a device that goes and comes back."""

from __future__ import annotations

import asyncio
import os
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.frames import frame_stream
from twin.errors import SourceError
from twin.protocol.stream import FrameReceived, StreamDecoder
from twin.sources.serial import SerialSource, find_cables, resolve_port

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs pseudo-terminals")

DEADLINE_S = 10.0


@dataclass
class Pty:
    master: int
    slave: int
    path: str
    closed: bool = False

    def close(self) -> None:
        # Once only: a descriptor number closed twice may by then belong to another file.
        if not self.closed:
            self.closed = True
            os.close(self.master)
            os.close(self.slave)


def open_pty() -> Pty:
    master, slave = os.openpty()
    tty.setraw(slave)
    return Pty(master, slave, os.ttyname(slave))


@pytest.fixture
def pty() -> Iterator[Pty]:
    pair = open_pty()
    yield pair
    pair.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` with a deadline (never a fixed sleep to synchronise)."""
    async with asyncio.timeout(DEADLINE_S):
        while not condition():
            await asyncio.sleep(0.01)
    assert condition(), what


class Reader:
    """Runs a source into a decoder in the background and keeps the frames."""

    def __init__(self, source: SerialSource) -> None:
        self.source = source
        self.decoder = StreamDecoder()
        self.frames: list[bytes] = []
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for chunk in self.source.chunks():
            for event in self.decoder.feed(chunk.data, chunk.time_s):
                if isinstance(event, FrameReceived):
                    self.frames.append(event.raw)

    async def stop(self) -> None:
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self.task


@pytest.mark.asyncio
async def test_frames_written_to_a_pty_are_decoded_by_the_serial_source(pty: Pty) -> None:
    reader = Reader(SerialSource(pty.path, retry_min_s=0.05, retry_max_s=0.2))
    await until(lambda: reader.source.connected, "the port opened")
    frames = frame_stream(5)
    for frame in frames:
        os.write(pty.master, frame)
    await until(lambda: len(reader.frames) == len(frames), "five frames")
    assert reader.frames == frames
    assert reader.decoder.bytes_rejected == 0
    await reader.stop()


@pytest.mark.asyncio
async def test_the_source_survives_the_device_going_away_and_coming_back(tmp_path: Path) -> None:
    # A stable name for a device that changes underneath, as udev's by-id links are.
    link = tmp_path / "ttyBMS"
    first = open_pty()
    link.symlink_to(first.path)
    reader = Reader(SerialSource(str(link), retry_min_s=0.05, retry_max_s=0.2))
    frames = frame_stream(4)
    try:
        await until(lambda: reader.source.connected, "the port opened")
        os.write(first.master, frames[0])
        await until(lambda: len(reader.frames) == 1, "a frame before the unplug")
        first.close()  # unplugged
        await until(lambda: not reader.source.connected, "the loss was noticed")
        assert reader.source.last_error is not None
        second = open_pty()  # plugged in again, maybe under another name
        link.unlink()
        link.symlink_to(second.path)
        try:
            await until(lambda: reader.source.connects == 2, "reconnected")
            for frame in frames[1:]:
                os.write(second.master, frame)
            await until(lambda: len(reader.frames) == 4, "frames after the replug")
        finally:
            second.close()
    finally:
        await reader.stop()
        first.close()
    assert reader.frames == frames


@pytest.mark.asyncio
async def test_a_missing_device_is_retried_not_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "ttyNOPE"
    reader = Reader(SerialSource(str(missing), retry_min_s=0.05, retry_max_s=0.1))
    await until(lambda: reader.source.last_error is not None, "the failure was recorded")
    assert "ttyNOPE" in (reader.source.last_error or "")
    assert not reader.task.done()
    pair = open_pty()
    try:
        missing.symlink_to(pair.path)
        await until(lambda: reader.source.connected, "opened once it appeared")
    finally:
        await reader.stop()
        pair.close()


@dataclass
class FakePort:
    device: str
    product: str | None
    description: str = "n/a"
    serial_number: str | None = None


PORTS = [
    FakePort("/dev/ttyUSB1", "FT232R USB UART", serial_number="A1"),
    FakePort("/dev/ttyUSB3", "SmartBMSToUSB", serial_number="B2"),
    FakePort("/dev/ttyACM0", None, description="SmartBMSToUSB - SmartBMSToUSB", serial_number="C3"),
]


def test_auto_finds_the_official_cable_by_its_product_string() -> None:
    found = find_cables(PORTS)
    assert [(f.device, f.serial_number) for f in found] == [
        ("/dev/ttyACM0", "C3"),
        ("/dev/ttyUSB3", "B2"),
    ]
    assert [f.device for f in find_cables(PORTS, usb_serial="B2")] == ["/dev/ttyUSB3"]
    assert find_cables(PORTS[:1]) == []


def test_resolve_port() -> None:
    assert resolve_port("/dev/ttyS0") == "/dev/ttyS0"
    assert resolve_port("auto", usb_serial="C3", ports=PORTS) == "/dev/ttyACM0"
    with pytest.raises(SourceError, match=r"several SmartBMSToUSB cables: .*set usb_serial"):
        resolve_port("auto", ports=PORTS)
    with pytest.raises(SourceError, match="no SmartBMSToUSB cable is plugged in"):
        resolve_port("auto", ports=PORTS[:1])
