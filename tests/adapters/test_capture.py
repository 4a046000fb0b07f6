"""Capture files, replay (capture and raw dump) and the in-process byte pipe."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from tests.frames import GOLDEN_LFP, frame_stream
from twin.errors import PipeClosedError, SourceError
from twin.protocol.stream import FrameReceived, RejectReason, StreamDecoder
from twin.sources.base import Chunk
from twin.sources.capture import MAGIC, CaptureReader, CaptureWriter, ReplaySource
from twin.sources.pipe import BytePipe


def write_capture(path: Path, chunks: list[Chunk]) -> None:
    with CaptureWriter(path, port="/dev/ttyTEST", baudrate=9600) as writer:
        for chunk in chunks:
            writer.write(chunk)


def split_reads(frames: list[bytes], start_s: float = 100.0) -> list[Chunk]:
    """Frames as a USB serial adapter delivers them: 2-3 reads per frame, 1 s apart."""
    chunks = []
    for n, frame in enumerate(frames):
        t = start_s + n
        chunks += [Chunk(frame[:20], t), Chunk(frame[20:45], t + 0.02), Chunk(frame[45:], t + 0.04)]
    return chunks


def test_a_capture_file_keeps_bytes_and_relative_times(tmp_path: Path) -> None:
    path = tmp_path / "bms.cap"
    chunks = split_reads(frame_stream(3))
    write_capture(path, chunks)
    lines = path.read_text().splitlines()
    assert lines[0] == MAGIC
    assert lines[1].startswith("# port: /dev/ttyTEST baudrate: 9600 started: ")
    assert lines[2] == "0.000000 " + chunks[0].data.hex()
    reader = CaptureReader(path)
    assert reader.is_capture
    back = list(reader)
    assert [c.data for c in back] == [c.data for c in chunks]
    assert [c.time_s for c in back] == pytest.approx([c.time_s - 100.0 for c in chunks])  # type: ignore[operator]


def test_a_capture_cut_short_reads_up_to_the_damage(tmp_path: Path) -> None:
    path = tmp_path / "cut.cap"
    write_capture(path, split_reads(frame_stream(2)))
    text = path.read_text()
    path.write_text(text[: len(text) - 8])  # killed mid-line: an odd number of hex digits
    reader = CaptureReader(path)
    chunks = list(reader)
    assert len(chunks) == 5
    assert reader.bad_lines == ["line 8: not '<seconds> <hex bytes>'"]


def test_anything_else_is_a_raw_dump(tmp_path: Path) -> None:
    path = tmp_path / "dump.bin"
    data = b"".join(frame_stream(100))
    path.write_bytes(data)
    reader = CaptureReader(path)
    assert not reader.is_capture
    chunks = list(reader)
    assert b"".join(c.data for c in chunks) == data
    assert all(c.time_s is None for c in chunks)


def test_an_unreadable_file_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        CaptureReader(tmp_path / "missing.cap")


async def replay(source: ReplaySource, limit: int | None = None) -> list[Chunk]:
    got = []
    async with asyncio.timeout(30):
        async for chunk in source.chunks():
            got.append(chunk)
            if limit is not None and len(got) >= limit:
                break
    return got


def decode_chunks(chunks: list[Chunk]) -> tuple[list[bytes], StreamDecoder]:
    decoder = StreamDecoder()
    frames = []
    for chunk in chunks:
        frames += [
            e.raw for e in decoder.feed(chunk.data, chunk.time_s) if isinstance(e, FrameReceived)
        ]
    decoder.end()
    return frames, decoder


@pytest.mark.asyncio
@pytest.mark.parametrize("speed", [None, 1000.0], ids=["as fast as possible", "paced"])
async def test_replaying_a_capture_decodes_every_frame(tmp_path: Path, speed: float | None) -> None:
    path = tmp_path / "bms.cap"
    frames = frame_stream(5)
    write_capture(path, split_reads(frames))
    chunks = await replay(ReplaySource(path, speed=speed))
    assert [c.time_s for c in chunks][:3] == pytest.approx([0.0, 0.02, 0.04])
    got, decoder = decode_chunks(chunks)
    assert got == frames
    assert decoder.bytes_rejected == 0


@pytest.mark.asyncio
async def test_replaying_keeps_the_gaps_that_end_a_partial_frame(tmp_path: Path) -> None:
    path = tmp_path / "gap.cap"
    frames = frame_stream(2)
    write_capture(path, [Chunk(frames[0][:30], 0.0), Chunk(frames[1], 1.0)])
    got, decoder = decode_chunks(await replay(ReplaySource(path)))
    assert got == [frames[1]]
    assert decoder.rejected_by_reason == {RejectReason.GAP: 30}


@pytest.mark.asyncio
@pytest.mark.parametrize("speed", [None, 1000.0], ids=["as fast as possible", "paced"])
async def test_a_raw_dump_replays_too(tmp_path: Path, speed: float | None) -> None:
    path = tmp_path / "dump.bin"
    frames = frame_stream(30)
    path.write_bytes(b"\x00garbage" + b"".join(frames))
    chunks = await replay(ReplaySource(path, speed=speed, raw_frame_period_s=1.0))
    assert all(c.time_s is None for c in chunks)  # no times: no gaps invented
    got, decoder = decode_chunks(chunks)
    assert got == frames
    assert decoder.bytes_rejected == 8


@pytest.mark.asyncio
async def test_repeat_replays_with_increasing_times(tmp_path: Path) -> None:
    path = tmp_path / "bms.cap"
    write_capture(path, split_reads(frame_stream(2)))  # 6 chunks over 1.04 s
    chunks = await replay(ReplaySource(path, repeat=True), limit=15)
    times = [c.time_s for c in chunks]
    assert all(a is not None and b is not None and a < b for a, b in itertools.pairwise(times))
    got, _ = decode_chunks(chunks)
    assert len(got) == 5


@pytest.mark.asyncio
async def test_the_pipe_delivers_in_order_then_ends() -> None:
    pipe = BytePipe("pack1", maxsize=2)
    frames = frame_stream(10)

    async def produce() -> None:
        for n, frame in enumerate(frames):
            await pipe.write(frame, float(n))  # waits whenever the reader is 2 behind
        await pipe.close()

    async with asyncio.timeout(10), asyncio.TaskGroup() as group:
        group.create_task(produce())
        chunks = [chunk async for chunk in pipe.chunks()]
    assert [c.data for c in chunks] == frames
    assert [c.time_s for c in chunks] == [float(n) for n in range(10)]
    assert pipe.bytes_written == 580 and pipe.closed
    with pytest.raises(PipeClosedError):
        await pipe.write(GOLDEN_LFP)
