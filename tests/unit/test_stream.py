"""The stream decoder, tested the h11 way: whole, byte by byte, with garbage, with noise."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.frames import GOLDEN_A, GOLDEN_C, GOLDEN_LFP, frame_stream, sample_frame
from twin.protocol.frame import (
    DEFAULT_FORMAT,
    FirmwareLayout,
    FrameFormat,
    checksum,
    decode_frame,
    encode_frame,
    implausibility,
)
from twin.protocol.stream import (
    MAX_REJECTED_RUN,
    Event,
    FrameReceived,
    Rejected,
    RejectReason,
    StreamDecoder,
)

LEGACY = FrameFormat(layout=FirmwareLayout.LEGACY_CLOCK)
GARBAGE = b"\x00\xff\x13 hello \x2b\x2d\x58 noise\x55\xaa" * 3


def run(
    chunks: list[bytes], fmt: FrameFormat = DEFAULT_FORMAT, times: list[float] | None = None
) -> list[Event]:
    decoder = StreamDecoder(fmt)
    events: list[Event] = []
    for n, chunk in enumerate(chunks):
        events += decoder.feed(chunk, None if times is None else times[n])
    events += decoder.end()
    # The counters agree with the events.
    frames = [e for e in events if isinstance(e, FrameReceived)]
    assert decoder.frames_decoded == len(frames)
    assert decoder.bytes_rejected == sum(e.byte_count for e in events if isinstance(e, Rejected))
    return events


def frames_of(events: list[Event]) -> list[bytes]:
    return [e.raw for e in events if isinstance(e, FrameReceived)]


def rejected_bytes(events: list[Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, Rejected))


def one_byte_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(GOLDEN_LFP, FrameFormat()), (GOLDEN_A, FrameFormat()), (GOLDEN_C, LEGACY)],
    ids=["LFP", "A", "C"],
)
@pytest.mark.parametrize("garbage", [False, True], ids=["clean", "garbage around"])
def test_whole_or_byte_by_byte_gives_the_same_events(
    data: bytes, fmt: FrameFormat, garbage: bool
) -> None:
    stream = GARBAGE + data + GARBAGE if garbage else data
    whole = run([stream], fmt)
    assert frames_of(whole) == [data]
    assert next(e for e in whole if isinstance(e, FrameReceived)).frame == decode_frame(data, fmt)
    assert run(one_byte_at_a_time(stream), fmt) == whole
    if garbage:
        # Every byte is accounted for: the frame, or rejected garbage, in stream order.
        assert rejected_bytes(whole) == GARBAGE + GARBAGE
        assert [type(e) for e in whole][:2] == [Rejected, FrameReceived]
        assert all(isinstance(e, Rejected) for e in whole[2:])
        assert whole[-1].reason is RejectReason.TRUNCATED  # type: ignore[union-attr]


@given(
    st.lists(st.binary(max_size=200), max_size=20),
    st.lists(st.floats(-1e6, 1e6) | st.none(), max_size=20),
    st.sampled_from([FrameFormat(), LEGACY]),
)
def test_random_bytes_never_raise(
    chunks: list[bytes], times: list[float | None], fmt: FrameFormat
) -> None:
    decoder = StreamDecoder(fmt)
    events: list[Event] = []
    for n, chunk in enumerate(chunks):
        events += decoder.feed(chunk, times[n] if n < len(times) else None)
    events += decoder.end()
    total = sum(map(len, chunks))
    # Nothing is lost and nothing is invented: frames + rejected bytes = all bytes.
    assert 58 * decoder.frames_decoded + decoder.bytes_rejected == total
    for event in events:
        if isinstance(event, FrameReceived):
            assert not implausibility(event.raw, fmt)


@given(st.data())
def test_noise_between_frames_loses_no_frame(data: st.DataObject) -> None:
    frames = frame_stream(40)
    stream = bytearray()
    for frame in frames:
        stream += data.draw(st.binary(max_size=70))
        stream += frame
    stream += data.draw(st.binary(max_size=70))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30)))
    chunks = [bytes(stream[a:b]) for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    assert frames_of(run(chunks)) == frames


def test_noise_injected_into_a_stream_recovers_every_intact_frame() -> None:
    rng = random.Random(2026)
    frames = frame_stream(2000)
    stream = bytearray()
    intact = []
    for frame in frames:
        roll = rng.random()
        if roll < 0.1:  # a burst of noise between frames
            stream += rng.randbytes(rng.randint(1, 120))
        if roll > 0.95:  # a flipped bit inside the frame: it must be lost, and only it
            broken = bytearray(frame)
            broken[rng.randrange(58)] ^= 1 << rng.randrange(8)
            stream += broken
            continue
        if 0.90 < roll <= 0.95:  # a dropped byte
            cut = rng.randrange(58)
            stream += frame[:cut] + frame[cut + 1 :]
            continue
        stream += frame
        intact.append(frame)
    chunks = []
    pos = 0
    while pos < len(stream):
        size = rng.choice((1, 7, 58, 64, 500))
        chunks.append(bytes(stream[pos : pos + size]))
        pos += size
    got = frames_of(run(chunks))
    assert got == intact
    assert len(intact) > 1700


def test_a_misaligned_window_with_a_good_checksum_is_rejected_as_implausible() -> None:
    frame = encode_frame(sample_frame())
    # Build 58 bytes that pass the checksum but are the tail of one frame and the head of the
    # next one: exactly what a misaligned reader sees.
    window = bytearray(frame[20:] + frame[:20])
    window[57] = checksum(window)
    assert implausibility(window)
    events = run([bytes(window) + frame])
    assert frames_of(events) == [frame]
    first = events[0]
    assert isinstance(first, Rejected) and first.reason is RejectReason.IMPLAUSIBLE
    assert "sign byte" in first.detail


def test_bad_checksum_is_reported_with_the_sums() -> None:
    bad = bytearray(GOLDEN_LFP)
    bad[57] ^= 0xFF
    events = run([bytes(bad) + GOLDEN_LFP])
    assert frames_of(events) == [GOLDEN_LFP]
    first = events[0]
    assert isinstance(first, Rejected) and first.reason is RejectReason.BAD_CHECKSUM
    assert first.detail == "byte 57 is 0x63, the sum of bytes 0..56 gives 0x9C"
    assert first.data == bytes(bad)


def test_an_idle_gap_ends_a_partial_frame_at_once() -> None:
    decoder = StreamDecoder(idle_gap_s=0.3)
    assert decoder.feed(GOLDEN_LFP[:30], now_s=10.0) == []
    # The BMS went quiet mid-frame; the next burst is a whole new frame.
    events = decoder.feed(GOLDEN_A, now_s=11.0)
    assert [type(e) for e in events] == [Rejected, FrameReceived]
    gap = events[0]
    assert isinstance(gap, Rejected) and gap.reason is RejectReason.GAP
    assert gap.data == GOLDEN_LFP[:30]
    assert gap.detail == "30 bytes, then 1.000 s of silence"
    assert events[1].raw == GOLDEN_A  # type: ignore[union-attr]


def test_bytes_within_a_burst_are_not_a_gap() -> None:
    decoder = StreamDecoder(idle_gap_s=0.3)
    events = decoder.feed(GOLDEN_LFP[:30], 5.00)
    events += decoder.feed(GOLDEN_LFP[30:], 5.03)
    assert frames_of(events) == [GOLDEN_LFP]


def test_without_gap_detection_a_split_frame_is_found_by_the_checksum_search() -> None:
    decoder = StreamDecoder(idle_gap_s=None)
    events = decoder.feed(GOLDEN_LFP[:30], 1.0) + decoder.feed(GOLDEN_A, 9.0)
    assert frames_of(events) == [GOLDEN_A]
    assert rejected_bytes(events) == GOLDEN_LFP[:30]


def test_a_long_run_of_noise_is_reported_in_bounded_pieces() -> None:
    noise = bytes(range(256)) * 20  # no sign bytes at the right places: never a frame
    events = run([noise + GOLDEN_LFP])
    pieces = [e for e in events if isinstance(e, Rejected)]
    assert all(p.byte_count <= MAX_REJECTED_RUN for p in pieces)
    assert rejected_bytes(events) == noise
    assert frames_of(events) == [GOLDEN_LFP]


def test_the_decoder_can_be_reused_after_end() -> None:
    decoder = StreamDecoder()
    decoder.feed(GOLDEN_LFP[:10])
    assert [e.reason for e in decoder.end() if isinstance(e, Rejected)] == [RejectReason.TRUNCATED]
    assert frames_of(decoder.feed(GOLDEN_LFP)) == [GOLDEN_LFP]
    assert decoder.buffered == 0


def test_events_carry_the_time_of_the_chunk_that_completed_them() -> None:
    decoder = StreamDecoder()
    assert decoder.feed(GOLDEN_LFP[:40], 7.00) == []
    (event,) = decoder.feed(GOLDEN_LFP[40:], 7.05)
    assert isinstance(event, FrameReceived) and event.time_s == 7.05


def test_idle_gap_must_be_positive() -> None:
    with pytest.raises(ValueError, match="idle_gap_s must be > 0"):
        StreamDecoder(idle_gap_s=0)
