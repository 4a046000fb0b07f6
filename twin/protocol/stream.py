r"""A sans-I/O stream decoder for the 123\SmartBMS UART: feed bytes, get frames or rejections.

The frame has no header and no length byte, so the decoder finds frames by sliding a 58-byte
window over the stream until the checksum matches and the fields are plausible
(smartbms-uart.md section 1.1, strategy 3, with the plausibility checks a misaligned window
needs). Bytes that cannot start a frame are reported, grouped into one ``Rejected`` event per
contiguous run, with the reason of the first window that failed.

When the caller passes receive times, an idle gap longer than ``idle_gap_s`` between two
chunks ends whatever partial frame is buffered (the BMS sends each frame as one burst, then
stays silent): those bytes are rejected at once as ``GAP`` rather than being glued to the next
frame. Feeding the same bytes whole or one at a time gives the same events.

``feed`` never raises on any byte content.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, Final

from twin.model.values import Value
from twin.protocol.frame import (
    CHECKSUM_OFFSET,
    DEFAULT_FORMAT,
    FRAME_LENGTH,
    Frame,
    FrameFormat,
    implausibility,
    unpack_frame,
)

MAX_REJECTED_RUN = 1024
"""A run of junk longer than this is reported in pieces, so that noise never piles up."""


class RejectReason(Enum):
    """Why bytes were not a frame."""

    BAD_CHECKSUM = "bad checksum"
    IMPLAUSIBLE = "implausible field"
    GAP = "incomplete frame before an idle gap"
    TRUNCATED = "incomplete frame at the end of the stream"


class FrameReceived(Value):
    """A decoded frame, its 58 bytes, and when the chunk that completed it arrived."""

    FIELDS: ClassVar = ("frame", "raw", "time_s")
    __slots__ = FIELDS

    def __init__(
        self,
        frame: Frame,
        raw: bytes,
        time_s: float | None,
    ) -> None:
        self.frame: Final = frame
        self.raw: Final = raw
        self.time_s: Final = time_s


@dataclass(frozen=True, slots=True)
class Rejected:
    """Bytes that are not part of any frame."""

    reason: RejectReason
    detail: str
    data: bytes
    time_s: float | None

    @property
    def byte_count(self) -> int:
        """How many bytes were rejected."""
        return len(self.data)


Event = FrameReceived | Rejected


class StreamDecoder:
    """Turns a byte stream into ``FrameReceived`` and ``Rejected`` events.

    Args:
        fmt: temperature scaling and firmware layout of bytes 47/48.
        idle_gap_s: a pause between chunks longer than this ends a partial frame; None turns
            gap detection off (also when ``feed`` gets no times).
    """

    def __init__(
        self, fmt: FrameFormat = DEFAULT_FORMAT, *, idle_gap_s: float | None = 0.3
    ) -> None:
        if idle_gap_s is not None and not idle_gap_s > 0:
            raise ValueError(f"idle_gap_s must be > 0, got {idle_gap_s!r}")
        self.fmt = fmt
        self.idle_gap_s = idle_gap_s
        self.frames_decoded = 0
        self.bytes_rejected = 0
        self.rejected_by_reason: Counter[RejectReason] = Counter()
        self._buffer = bytearray()
        self._junk = bytearray()
        self._junk_reason = RejectReason.BAD_CHECKSUM
        self._junk_detail = ""
        self._last_s: float | None = None

    @property
    def buffered(self) -> int:
        """Bytes held that may still become (part of) a frame."""
        return len(self._buffer) + len(self._junk)

    def feed(self, data: bytes | bytearray | memoryview, now_s: float | None = None) -> list[Event]:
        """Add ``data`` received at ``now_s``; returns the events it completed."""
        events: list[Event] = []
        if now_s is not None:
            last, gap = self._last_s, self.idle_gap_s
            if last is not None and gap is not None and now_s - last > gap:
                self._flush_junk(events, now_s)
                if self._buffer:
                    self._reject(
                        events,
                        RejectReason.GAP,
                        f"{len(self._buffer)} bytes, then {now_s - last:.3f} s of silence",
                        bytes(self._buffer),
                        now_s,
                    )
                    self._buffer.clear()
            self._last_s = now_s
        if (
            len(data) == FRAME_LENGTH
            and not self._buffer
            and not self._junk
            and sum(data[:CHECKSUM_OFFSET]) & 0xFF == data[CHECKSUM_OFFSET]
        ):
            # One whole frame arriving on its own (a frame per read, as an emulator or a
            # well-timed serial read delivers it): decode it without the sliding buffer.
            window = bytes(data)
            if not implausibility(window, self.fmt):
                events.append(FrameReceived(unpack_frame(window, self.fmt), window, now_s))
                self.frames_decoded += 1
                return events
        self._buffer += data
        self._scan(events, now_s)
        return events

    def end(self, now_s: float | None = None) -> list[Event]:
        """The stream has ended: reject whatever is left; the decoder can be reused."""
        events: list[Event] = []
        self._flush_junk(events, now_s)
        if self._buffer:
            self._reject(
                events,
                RejectReason.TRUNCATED,
                f"{len(self._buffer)} of {FRAME_LENGTH} bytes",
                bytes(self._buffer),
                now_s,
            )
            self._buffer.clear()
        self._last_s = None
        return events

    # ---- internals -----------------------------------------------------------------------

    def _scan(self, events: list[Event], now_s: float | None) -> None:
        buf = self._buffer
        end = len(buf) - FRAME_LENGTH
        pos = 0
        running: int | None = None  # sum of buf[pos : pos + 57] while sliding over junk
        fmt = self.fmt
        while pos <= end:
            if running is None:
                running = sum(buf[pos : pos + CHECKSUM_OFFSET])
            if running & 0xFF == buf[pos + CHECKSUM_OFFSET]:
                window = bytes(buf[pos : pos + FRAME_LENGTH])
                why = implausibility(window, fmt)
                if not why:
                    self._flush_junk(events, now_s)
                    events.append(FrameReceived(unpack_frame(window, fmt), window, now_s))
                    self.frames_decoded += 1
                    pos += FRAME_LENGTH
                    running = None
                    continue
                reason, detail = RejectReason.IMPLAUSIBLE, why
            else:
                reason = RejectReason.BAD_CHECKSUM
                detail = "" if self._junk else self._checksum_detail(buf, pos, running)
            if not self._junk:
                self._junk_reason, self._junk_detail = reason, detail
            self._junk.append(buf[pos])
            if len(self._junk) >= MAX_REJECTED_RUN:
                self._flush_junk(events, now_s)
            # Slide by one byte: the window loses buf[pos] and gains buf[pos + 57].
            running += buf[pos + CHECKSUM_OFFSET] - buf[pos]
            pos += 1
        del buf[:pos]

    @staticmethod
    def _checksum_detail(buf: bytearray, pos: int, running: int) -> str:
        return (
            f"byte 57 is 0x{buf[pos + CHECKSUM_OFFSET]:02X}, the sum of bytes 0..56 gives "
            f"0x{running & 0xFF:02X}"
        )

    def _flush_junk(self, events: list[Event], now_s: float | None) -> None:
        if self._junk:
            self._reject(events, self._junk_reason, self._junk_detail, bytes(self._junk), now_s)
            self._junk.clear()

    def _reject(
        self,
        events: list[Event],
        reason: RejectReason,
        detail: str,
        data: bytes,
        now_s: float | None,
    ) -> None:
        events.append(Rejected(reason, detail, data, now_s))
        self.bytes_rejected += len(data)
        self.rejected_by_reason[reason] += len(data)
