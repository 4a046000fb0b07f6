r"""A UART reader for the 123\SmartBMS stream: a pseudo-terminal or a raw TCP port (ser2net).

What the official Venus OS driver or an ESP32 bridge does, in a page: 9600 8N1 bytes, 58-byte
frames with no header, the last byte the sum of the other 57. The reader slides over the stream
until a window's checksum holds (../shared/reference/smartbms-uart.md section 1.1, strategy 3)
and prints pack voltage, battery current, SOC and the relays of each frame; it stops after
``--frames`` frames or ``--duration`` seconds.

    python examples/clients/uart_reader.py --port /dev/pts/5        # a twin's pty (uart.path)
    python examples/clients/uart_reader.py --tcp 127.0.0.1:7001     # a twin's uart_tcp_port
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable

import serial

FRAME = 58


def checksum_ok(window: bytes) -> bool:
    """The last byte is the low 8 bits of the sum of the 57 before it."""
    return sum(window[:57]) & 0xFF == window[57] and window[3:4] in (b"+", b"-", b"X")


def signed_current_a(sign: int, magnitude: bytes) -> float | None:
    """A current field: a sign byte (+, -, X = not available) and u16 x 0.125 A."""
    if sign == ord("X"):
        return None
    value = int.from_bytes(magnitude, "big") * 0.125
    return -value if sign == ord("-") else value


def describe(frame: bytes) -> str:
    """Pack voltage (u24 x 5 mV), battery current (offset 9), SOC (40), relays (status 30)."""
    voltage = int.from_bytes(frame[0:3], "big") * 0.005
    current = signed_current_a(frame[9], frame[10:12])
    status = frame[30]
    shown = "-" if current is None else f"{current:+.2f} A"
    return (
        f"{voltage:.2f} V  {shown}  SOC {frame[40]} %  cells {frame[25]}  "
        f"charge {'on' if status & 1 else 'off'}  load {'on' if status & 2 else 'off'}"
    )


def read_frames(read: Callable[[], bytes], frames: int, duration_s: float) -> tuple[int, int]:
    """Decode until ``frames`` frames or ``duration_s``: (frames, bytes skipped)."""
    buffer = bytearray()
    found = skipped = 0
    deadline = time.monotonic() + duration_s
    while found < frames and time.monotonic() < deadline:
        buffer += read()
        while len(buffer) >= FRAME:
            if checksum_ok(bytes(buffer[:FRAME])):
                print(describe(bytes(buffer[:FRAME])), flush=True)
                del buffer[:FRAME]
                found += 1
            else:
                del buffer[0]  # not a frame boundary: slide one byte
                skipped += 1
    return found, skipped


def main(argv: list[str] | None = None) -> int:
    """Read; exit 1 when no frame was decoded."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="a serial port or pseudo-terminal (9600 8N1)")
    where.add_argument("--tcp", metavar="HOST:PORT", help="raw bytes on TCP (ser2net style)")
    parser.add_argument("--frames", type=int, default=3)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args(argv)
    if args.port:
        with serial.Serial(args.port, 9600, timeout=0.5) as port:
            found, skipped = read_frames(lambda: port.read(256), args.frames, args.duration)
    else:
        host, _, number = args.tcp.rpartition(":")
        with socket.create_connection((host, int(number)), timeout=5) as sock:
            sock.settimeout(0.5)

            def receive() -> bytes:
                try:
                    data = sock.recv(256)
                except TimeoutError:
                    return b""
                if not data:
                    raise ConnectionError("the server closed the connection")
                return data

            found, skipped = read_frames(receive, args.frames, args.duration)
    print(f"{found} frames, {skipped} bytes skipped")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
