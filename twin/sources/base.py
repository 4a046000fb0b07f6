"""What every byte source yields: ``Chunk`` (bytes and when they arrived) via ``ByteSource``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Chunk:
    """Bytes as one read returned them.

    ``time_s`` is on the source's own timeline: the event loop's monotonic clock for a live
    port, the recorded time for a capture replay, None when nothing tells (a raw dump read as
    fast as possible). The stream decoder uses it to see the idle gaps between frames.
    """

    data: bytes
    time_s: float | None


class ByteSource(Protocol):
    """A stream of UART bytes from a serial port, a capture file or the emulator."""

    @property
    def name(self) -> str:
        """A short human name for logs and status (``/dev/ttyUSB0``, ``capture.txt``)."""
        ...

    def chunks(self) -> AsyncIterator[Chunk]:
        """Yield chunks until the source ends (a capture) or forever (a port, the emulator)."""
        ...
