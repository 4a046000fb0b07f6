r"""Throughput of the 123\SmartBMS UART codec: encode, decode, the stream decoder, assembly.

Target (issue "The UART codec"): >= 50,000 frames/s for encode and for decode, each on one
core; the real wire carries 16.5 frames/s at most, and the emulated chain runs a 24 h day at
>= 20,000x real time through the codec. Prints figures; asserts nothing.

Run: python bench/bench_codec.py [--frames N]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from twin.model.status import StatusFlag
from twin.protocol.assembly import FrameAssembler
from twin.protocol.frame import Frame, decode_frame, encode_frame
from twin.protocol.stream import FrameReceived, StreamDecoder

TARGET_FRAMES_PER_S = 50_000


def _frames(n: int) -> list[Frame]:
    rng = random.Random(1)
    frames = []
    for k in range(n):
        current = rng.uniform(-150, 150)
        frames.append(
            Frame(
                pack_voltage_v=rng.uniform(48, 56),
                current1_a=max(current, 0.0),
                current2_a=max(-current, 0.0),
                battery_current_a=current,
                min_cell_voltage_v=3.30,
                min_cell_index=3,
                max_cell_voltage_v=3.34,
                max_cell_index=9,
                min_temp_c=18.0,
                min_temp_index=1,
                max_temp_c=24.0,
                max_temp_index=2,
                cell_index=k % 16 + 1,
                cell_count=16,
                cell_voltage_v=rng.uniform(3.3, 3.34),
                cell_temp_c=21.0,
                status=StatusFlag.CHARGE_ALLOWED | StatusFlag.DISCHARGE_ALLOWED,
                energy_in_today_wh=rng.randrange(10_000),
                energy_stored_wh=rng.randrange(14_000),
                energy_out_today_wh=rng.randrange(10_000),
                soc_pct=rng.randrange(101),
                energy_in_total_kwh=1520,
                energy_out_total_kwh=1490,
                raw_key=25 + k % 19,
                raw_value=rng.randrange(256),
                capacity_kwh=14.3,
                vmin_v=2.9,
                vmax_v=3.65,
                vbalance_v=3.4,
            )
        )
    return frames


def _best_rate(n: int, run: Callable[[], object], repeats: int = 5) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return n / best


def _line(what: str, rate: float, target: int | None = None) -> None:
    verdict = ""
    if target is not None:
        verdict = f"  target >= {target:,}: {'met' if rate >= target else 'NOT MET'}"
    print(f"bench_codec: {what:<46} {rate:>12,.0f} frames/s ({1e6 / rate:5.2f} us/frame){verdict}")


def main() -> None:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50_000)
    args = parser.parse_args()
    n = args.frames
    frames = _frames(n)
    wire = [encode_frame(f) for f in frames]
    blob = b"".join(wire)

    target = TARGET_FRAMES_PER_S
    _line("encode_frame", _best_rate(n, lambda: [encode_frame(f) for f in frames]), target)
    decode_rate = _best_rate(n, lambda: [decode_frame(b) for b in wire])
    _line("decode_frame (checksum + plausibility)", decode_rate, target)

    def stream(chunk: int) -> None:
        decoder = StreamDecoder()
        for start in range(0, len(blob), chunk):
            decoder.feed(blob[start : start + chunk])
        assert decoder.frames_decoded == n

    _line("StreamDecoder, 58-byte reads", _best_rate(n, lambda: stream(58)))
    _line("StreamDecoder, 1024-byte reads", _best_rate(n, lambda: stream(1024)))

    # Resynchronisation cost: one byte of noise before every frame.
    noisy = b"".join(b"\x00" + w for w in wire)

    def resync() -> None:
        decoder = StreamDecoder()
        decoder.feed(noisy)
        assert decoder.frames_decoded == n

    _line("StreamDecoder, 1 noise byte per frame", _best_rate(n, resync))

    def assemble() -> None:
        decoder = StreamDecoder()
        assembler = FrameAssembler()
        for k, data in enumerate(wire):
            for event in decoder.feed(data, float(k)):
                if isinstance(event, FrameReceived):
                    assembler.add(event.frame, float(k))
            assembler.inputs(float(k))

    _line("bytes -> StreamDecoder -> FrameAssembler.inputs", _best_rate(n, assemble, 3))


if __name__ == "__main__":
    main()
