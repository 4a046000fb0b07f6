"""An in-process byte pipe: the emulated chain writes UART bytes, the twin reads them.

It is the same path as a real port (bytes in, decoder, assembler), minus the operating system,
so that an emulated pack exercises exactly what runs in production. Writing waits when the
reader is ``maxsize`` chunks behind (back-pressure instead of unbounded memory or lost bytes).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from twin.errors import PipeClosedError
from twin.sources.base import Chunk


class BytePipe:
    """A bounded asyncio pipe of ``Chunk``; one writer, one reader."""

    def __init__(self, name: str = "emulator", *, maxsize: int = 256) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._name = name
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue(maxsize)
        self._closed = False
        self.bytes_written = 0

    @property
    def name(self) -> str:
        """The pipe's name, e.g. the pack it emulates."""
        return self._name

    @property
    def closed(self) -> bool:
        """True after ``close``."""
        return self._closed

    async def write(self, data: bytes, time_s: float | None = None) -> None:
        """Send ``data`` stamped ``time_s``; waits while the reader is far behind."""
        if self._closed:
            raise PipeClosedError(f"pipe {self._name} is closed")
        if data:
            await self._queue.put(Chunk(bytes(data), time_s))
            self.bytes_written += len(data)

    async def close(self) -> None:
        """End the stream: the reader sees the chunks already written, then stops."""
        if not self._closed:
            self._closed = True
            await self._queue.put(None)

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Yield chunks until the pipe is closed."""
        while (chunk := await self._queue.get()) is not None:
            yield chunk
