"""The served UART: paced, never slowed by a reader, refusing a port in use."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from pathlib import Path

import pytest

from tests.frames import frame_stream
from tests.waiting import until
from twin.errors import StartupError
from twin.sources.served import MAX_CLIENT_BACKLOG, ServedUart

pytestmark = pytest.mark.asyncio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_the_bytes_reach_a_tcp_client_and_the_pty_unchanged_at_the_line_pace(
    tmp_path: Path,
) -> None:
    served = ServedUart("pack1", pty_file=tmp_path / "path", tcp_port=0)
    await served.start()
    runner = asyncio.create_task(served.run())
    try:
        assert served.pty_path is not None and served.tcp_address is not None
        assert (tmp_path / "path").read_text(encoding="utf-8").strip() == served.pty_path
        reader, writer = await asyncio.open_connection(*served.tcp_address)
        slave = os.open(served.pty_path, os.O_RDONLY | os.O_NONBLOCK)
        await until(lambda: served.clients == 1, "the client accepted")
        wire = b"".join(frame_stream(2))
        loop = asyncio.get_running_loop()
        started = loop.time()
        served.write(wire)
        got = await asyncio.wait_for(reader.readexactly(len(wire)), 10)
        elapsed = loop.time() - started
        assert got == wire
        # 116 bytes at 960 bytes a second: about 0.12 s, not at once.
        assert elapsed > 0.5 * len(wire) / 960.0
        from_pty = b""

        def read_pty() -> bool:
            nonlocal from_pty
            with contextlib.suppress(BlockingIOError):
                from_pty += os.read(slave, 4096)
            return len(from_pty) >= len(wire)

        await until(read_pty, "the bytes on the pty")
        assert from_pty == wire  # raw: no echo, no newline translation
        os.close(slave)
        writer.close()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await served.close()


async def test_a_reader_that_does_not_read_never_blocks_the_twin() -> None:
    served = ServedUart("pack1", pty=True, tcp_port=0, speed=1000.0)
    await served.start()
    runner = asyncio.create_task(served.run())
    try:
        assert served.tcp_address is not None
        sock = socket.create_connection(served.tcp_address)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        await until(lambda: served.clients == 1, "the client accepted")
        # Nobody reads the pty, and the TCP client reads nothing: the writes go on, the
        # terminal drops what does not fit and the client is closed once far behind.
        frame = frame_stream(1)[0]
        for _ in range(4000):
            served.write(frame)
            await asyncio.sleep(0)
        await until(lambda: served.clients == 0, "the slow client closed", timeout_s=20.0)
        assert served.bytes_dropped > 0
        assert served.bytes_served > MAX_CLIENT_BACKLOG
        sock.close()
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)
        await served.close()


async def test_a_port_in_use_is_a_startup_error_naming_it() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        served = ServedUart("pack1", pty=True, tcp_port=port)
        with pytest.raises(StartupError, match=f"pack1: cannot serve the UART on 127.0.0.1:{port}"):
            await served.start()
        assert served.pty_path is not None  # opened, then closed again with the failure
