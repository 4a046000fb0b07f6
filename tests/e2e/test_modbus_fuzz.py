"""Malformed Modbus traffic and connection churn never hurt the server (nor leak descriptors)."""

from __future__ import annotations

import os
import random
import socket
import struct
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, wait_until, write_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to count fds"),
]


def _open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _malformed(rng: random.Random) -> bytes:
    """One bad frame of a few kinds: garbage, lies in the header, bad PDUs, truncations."""
    kind = rng.randrange(8)
    transaction = rng.randrange(65536)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300))
    if kind == 1:  # a length that disagrees with the bytes
        pdu = struct.pack(">BHH", 3, 0, 10)
        return struct.pack(">HHHB", transaction, 0, rng.choice([0, 1, 2, 255, 65535]), 1) + pdu
    if kind == 2:  # another protocol id
        return struct.pack(">HHHB", transaction, rng.randrange(1, 65536), 6, 1) + struct.pack(
            ">BHH", 3, 0, 1
        )
    if kind == 3:  # unknown or unsupported function codes
        pdu = bytes([rng.choice([0, 7, 8, 17, 20, 21, 24, 43, 99, 0x80, 0xFF])]) + rng.randbytes(4)
        return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, 1) + pdu
    if kind == 4:  # counts out of range
        pdu = struct.pack(
            ">BHH", rng.choice([3, 4]), rng.randrange(65536), rng.choice([0, 126, 2000, 65535])
        )
        return struct.pack(">HHHB", transaction, 0, 6, rng.choice([0, 1, 100, 255])) + pdu
    if kind == 5:  # FC16 whose byte count lies
        pdu = struct.pack(">BHHB", 16, 200, 2, rng.choice([0, 1, 3, 200])) + rng.randbytes(4)
        return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, 1) + pdu
    if kind == 6:  # a frame cut short
        frame = struct.pack(">HHHB", transaction, 0, 6, 1) + struct.pack(">BHH", 3, 100, 4)
        return frame[: rng.randrange(1, len(frame))]
    pdu = struct.pack(">BHHH", 23, 0, 2, 201) + rng.randbytes(rng.randrange(0, 8))  # bad FC23
    return struct.pack(">HHHB", transaction, 0, len(pdu) + 1, 1) + pdu


def test_malformed_frames_and_500_connections_leave_the_server_answering(tmp_path: Path) -> None:
    port = free_port()
    with TwinProcess(write_config(tmp_path, port=port)) as twin:
        twin.wait_for_message("modbus: listening")
        assert twin.process is not None
        pid = twin.process.pid
        with RawModbus(port) as raw:
            assert isinstance(raw.read_holding(1, 0, 2), list)
        baseline = _open_fds(pid)
        rng = random.Random(20261122)
        sent = 0
        for _ in range(60):
            # 60 bad frames back to back on each of 60 connections; read what comes back.
            frames = [_malformed(rng) for _ in range(60)]
            sent += len(frames)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.settimeout(0.1)
                try:
                    sock.sendall(b"".join(frames))
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass  # no answer (a timeout) or a dropped connection: both fine
        assert sent >= 1000
        for n in range(500):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if n % 3 == 0:
                sock.sendall(b"\x00\x01\x00\x00\x00")  # half a header, then gone
            sock.close()
        with RawModbus(port) as raw:
            registers = raw.read_holding(1, 0, 12)
            assert isinstance(registers, list) and registers[0] == 1
        wait_until(
            lambda: _open_fds(pid) <= baseline + 2,
            what=f"descriptors back near {baseline} (now {_open_fds(pid)})",
        )
        assert twin.stop() == 0
