"""Capture files: record UART bytes with their times, and replay them (or a plain raw dump).

The capture format (``twin capture`` writes it, docs/uart.md describes it) is text,
one read per line, so that a capture survives being cut short and can be read with ``less``::

    # twin-capture 1
    # port: /dev/ttyUSB0 baudrate: 9600 started: 2026-11-22T10:00:00+00:00
    0.000000 0029902b00642b00102b0054029607
    0.012480 029c0c012603012a090510029901...

- the first line is exactly ``# twin-capture 1``; other lines starting with ``#`` are comments;
- a data line is the time in seconds since the capture started (monotonic clock, 6 decimals),
  one space, and the bytes of one read in lowercase hex.

Any other file is a **raw dump** (``cat /dev/ttyUSB0 > dump.bin``): bytes with no times. It
replays too; with no times the decoder cannot see the idle gaps and relies on the checksum
search alone.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO

from twin.errors import SourceError
from twin.sources.base import Chunk

log = logging.getLogger(__name__)

MAGIC = "# twin-capture 1"
RAW_CHUNK_BYTES = 4096
FRAME_BYTES = 58


class CaptureWriter:
    """Appends chunks to a capture file; a context manager. Each line is flushed as written."""

    def __init__(self, path: str | Path, *, port: str, baudrate: int) -> None:
        self.path = Path(path)
        try:
            self._file: IO[str] = self.path.open("w", encoding="ascii", newline="\n")
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot write: {exc.strerror or exc}") from exc
        started = datetime.now(UTC).isoformat(timespec="seconds")
        self._file.write(f"{MAGIC}\n# port: {port} baudrate: {baudrate} started: {started}\n")
        self._file.flush()
        self._start_s: float | None = None
        self.chunks_written = 0
        self.bytes_written = 0

    def write(self, chunk: Chunk) -> None:
        """Record one chunk; its time is kept relative to the first chunk's."""
        time_s = chunk.time_s if chunk.time_s is not None else 0.0
        if self._start_s is None:
            self._start_s = time_s
        self._file.write(f"{time_s - self._start_s:.6f} {chunk.data.hex()}\n")
        self._file.flush()
        self.chunks_written += 1
        self.bytes_written += len(chunk.data)

    def close(self) -> None:
        """Flush to disk and close."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> CaptureWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class CaptureReader:
    """Iterates the chunks of a capture file or a raw dump; bad lines are skipped and listed.

    Raises ``SourceError`` when the file cannot be read.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with self.path.open("rb") as file:
                head = file.readline(len(MAGIC) + 2)
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc
        self.is_capture = head.rstrip(b"\r\n") == MAGIC.encode()
        self.bad_lines: list[str] = []
        """``"line N: why"`` for each data line that could not be read (and was skipped)."""

    def __iter__(self) -> Iterator[Chunk]:
        self.bad_lines = []
        try:
            if self.is_capture:
                yield from self._capture_chunks()
            else:
                yield from self._raw_chunks()
        except OSError as exc:
            raise SourceError(f"{self.path}: cannot read: {exc.strerror or exc}") from exc

    def _raw_chunks(self) -> Iterator[Chunk]:
        with self.path.open("rb") as file:
            while data := file.read(RAW_CHUNK_BYTES):
                yield Chunk(data, None)

    def _capture_chunks(self) -> Iterator[Chunk]:
        with self.path.open("r", encoding="ascii", errors="replace", newline=None) as file:
            for number, line in enumerate(file, start=1):
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                time_text, _, hex_text = text.partition(" ")
                try:
                    time_s = float(time_text)
                    data = bytes.fromhex(hex_text)
                except ValueError:
                    # A capture killed mid-write ends in a partial line: skip it, say so.
                    self.bad_lines.append(f"line {number}: not '<seconds> <hex bytes>'")
                    continue
                if not math.isfinite(time_s):
                    # nan / inf: no timeline to place the bytes on (and no JSON number).
                    self.bad_lines.append(f"line {number}: the time {time_text!r} is not finite")
                    continue
                if data:
                    yield Chunk(data, time_s)


class ReplaySource:
    """Replays a capture file or raw dump as a ``ByteSource``.

    Args:
        path: the file.
        speed: 1.0 = the recorded pace, N = N times faster, None = as fast as possible.
        repeat: start again at the end (the times keep increasing), for demos and soak tests.
        raw_frame_period_s: the pace of a raw dump at speed 1 (one frame's worth of bytes per
            period), since a raw dump has no times.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        speed: float | None = None,
        repeat: bool = False,
        raw_frame_period_s: float = 1.0,
    ) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be > 0 or None, got {speed!r}")
        self.reader = CaptureReader(path)
        self.speed = speed
        self.repeat = repeat
        self.raw_frame_period_s = raw_frame_period_s

    @property
    def name(self) -> str:
        """The file name."""
        return str(self.reader.path)

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Yield the file's chunks, paced by their times unless ``speed`` is None."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        offset_s = 0.0  # added to the recorded times on each repetition
        while True:
            last_s = offset_s
            count = 0
            for chunk in self._paced_pieces():
                time_s = None if chunk.time_s is None else chunk.time_s + offset_s
                if self.speed is not None and time_s is not None:
                    delay = started + time_s / self.speed - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                elif count % 64 == 0:
                    await asyncio.sleep(0)  # as fast as possible, but let others run
                count += 1
                if time_s is not None:
                    last_s = time_s
                yield Chunk(chunk.data, time_s if self.reader.is_capture else None)
            if self.reader.bad_lines:
                log.warning(
                    "%s: %d unreadable lines skipped (%s)",
                    self.name,
                    len(self.reader.bad_lines),
                    self.reader.bad_lines[0],
                )
            if not self.repeat or count == 0:
                return
            offset_s = last_s + 1.0

    def _paced_pieces(self) -> Iterator[Chunk]:
        """Capture chunks as recorded; a raw dump in frame-sized pieces at the frame period."""
        if self.reader.is_capture or self.speed is None:
            yield from self.reader
            return
        # The time given here only paces the replay; the chunk handed on carries None.
        time_s = 0.0
        for chunk in self.reader:
            for start in range(0, len(chunk.data), FRAME_BYTES):
                yield Chunk(chunk.data[start : start + FRAME_BYTES], time_s)
                time_s += self.raw_frame_period_s
