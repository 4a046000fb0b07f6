r"""An emulated pack's UART, served to real UART readers: a pseudo-terminal and a TCP port.

Software that reads a 123\SmartBMS's own serial stream (the official Venus OS driver, a Solar
Assistant bridge, an ESP32 behind ser2net, an integrator's own code) opens the emulated chain
as it opens the real cable: the pseudo-terminal's path where it would open ``/dev/ttyUSB0``,
or the TCP port where ser2net would serve the real port. The bytes are exactly the ones the
twin's own decoder reads (injected wire noise and a broken chain included), paced as a
9600-baud line delivers them (10 bits a byte; ``speed`` times faster for a faster-than-real-time
emulation).

A reader that does not keep up loses bytes, as on a real UART: the pseudo-terminal's writes
are non-blocking (bytes that do not fit are dropped and counted), and a TCP client whose
unsent bytes pass ``MAX_CLIENT_BACKLOG`` is closed. Neither ever slows the twin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tty
from pathlib import Path

from twin.errors import StartupError

log = logging.getLogger(__name__)

#: A TCP client that has not taken this many bytes is closed (about 4 s of frames at 1 Hz).
MAX_CLIENT_BACKLOG = 256
#: The kernel's send buffer of a TCP client (the stream is 960 bytes a second).
SEND_BUFFER_BYTES = 4096
#: TCP clients at once; a new one over the cap is closed at once.
MAX_CLIENTS = 16
#: Bytes a second on a 9600-baud 8N1 line (10 bits a byte).
LINE_BYTES_PER_S = 960.0
#: The pacing tick: bytes are written at most this often.
TICK_S = 0.01


class ServedUart:
    """The pseudo-terminal and TCP outlets of one emulated pack; ``write`` the wire's bytes."""

    def __init__(
        self,
        name: str,
        *,
        pty: bool = False,
        pty_file: Path | None = None,
        tcp_host: str = "127.0.0.1",
        tcp_port: int | None = None,
        speed: float = 1.0,
    ) -> None:
        """The outlets of pack ``name``.

        ``pty``: serve on a pseudo-terminal (its path also written to ``pty_file``);
        ``tcp_port``: serve raw bytes on it (0: any free port); ``speed``: the pacing's.
        """
        self.pty = pty or pty_file is not None
        self.pty_file = pty_file
        self.tcp_host = tcp_host
        self.tcp_port = tcp_port
        self.name = name
        self.rate_bytes_per_s = LINE_BYTES_PER_S * speed
        self.pty_path: str | None = None
        self.tcp_address: tuple[str, int] | None = None
        self.bytes_served = 0
        self.bytes_dropped = 0
        self._master: int | None = None
        self._slave: int | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._queue = bytearray()
        self._pending = asyncio.Event()

    @property
    def clients(self) -> int:
        """TCP clients connected now."""
        return len(self._clients)

    async def start(self) -> None:
        """Open the pseudo-terminal and listen; ``StartupError`` when the port cannot be had."""
        if self.pty:
            master, slave = os.openpty()
            tty.setraw(slave)  # bytes pass unchanged: no echo, no newline translation
            os.set_blocking(master, False)
            self._master, self._slave = master, slave
            self.pty_path = os.ttyname(slave)
            # What a reader writes to its end is read and dropped, so it never blocks.
            asyncio.get_running_loop().add_reader(master, self._discard_input)
            if self.pty_file is not None:
                try:
                    self.pty_file.write_text(self.pty_path + "\n", encoding="utf-8")
                except OSError as exc:
                    await self.close()
                    raise StartupError(
                        f"{self.name}: cannot write the UART's path to {self.pty_file}: "
                        f"{exc.strerror or exc}"
                    ) from exc
        if self.tcp_port is not None:
            try:
                self._server = await asyncio.start_server(self._serve, self.tcp_host, self.tcp_port)
            except OSError as exc:
                await self.close()
                raise StartupError(
                    f"{self.name}: cannot serve the UART on {self.tcp_host}:{self.tcp_port}: "
                    f"{exc.strerror or exc}"
                ) from exc
            host, port = self._server.sockets[0].getsockname()[:2]
            self.tcp_address = (str(host), int(port))
        where = [p for p in (self.pty_path, self._tcp_text()) if p]
        log.info("%s: UART served on %s", self.name, " and ".join(where))

    def _tcp_text(self) -> str | None:
        if self.tcp_address is None:
            return None
        host, port = self.tcp_address
        return f"{host}:{port}"

    def write(self, data: bytes) -> None:
        """Bytes the End board sent; they go out at the line's pace (``run``)."""
        if self._master is None and self._server is None:
            return
        if len(self._queue) > max(4096.0, self.rate_bytes_per_s):
            # The pacing fell far behind (a stalled loop): drop the oldest, as a UART overruns.
            self.bytes_dropped += len(self._queue)
            self._queue.clear()
        self._queue += data
        self._pending.set()

    async def run(self) -> None:
        """Pace the queued bytes out to every reader, for ever."""
        loop = asyncio.get_running_loop()
        budget = 0.0
        last = loop.time()
        while True:
            if not self._queue:
                self._pending.clear()
                await self._pending.wait()
                last = loop.time()
                budget = 1.0  # the first byte of a frame goes at once
            await asyncio.sleep(TICK_S)
            now = loop.time()
            budget += (now - last) * self.rate_bytes_per_s
            last = now
            count = min(len(self._queue), int(budget))
            if count <= 0:
                continue
            budget -= count
            chunk = bytes(self._queue[:count])
            del self._queue[:count]
            self._send(chunk)

    def _send(self, chunk: bytes) -> None:
        master = self._master
        if master is not None:
            try:
                written = os.write(master, chunk)
            except BlockingIOError:
                written = 0
            except OSError:
                written = 0  # no reader has the terminal open: the line is idle
            self.bytes_dropped += len(chunk) - written
        for writer in list(self._clients):
            if writer.transport.get_write_buffer_size() > MAX_CLIENT_BACKLOG:
                log.warning("%s: a UART client does not read: closing it", self.name)
                self._drop(writer)
                continue
            writer.write(chunk)
        self.bytes_served += len(chunk)

    def _discard_input(self) -> None:
        master = self._master
        if master is None:
            return
        with contextlib.suppress(OSError):
            os.read(master, 4096)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._clients) >= MAX_CLIENTS:
            log.warning("%s: %d UART clients already: refusing one", self.name, MAX_CLIENTS)
            writer.close()
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            # A few seconds of the stream in the kernel at most: a reader that stalls is seen
            # (and closed) in seconds, not after megabytes of loopback buffer.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        self._clients.add(writer)
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while await reader.read(4096):  # a reader's writes are read and dropped
                pass
        except OSError:
            pass
        finally:
            self._drop(writer)
            if task is not None:
                self._handlers.discard(task)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._clients.discard(writer)
        writer.close()

    async def close(self) -> None:
        """Close the terminal, the port and every client."""
        if self._master is not None:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = None
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        for writer in list(self._clients):
            self._drop(writer)
        if self._handlers:
            # Each handler sees its connection closed and ends by itself.
            await asyncio.wait(self._handlers, timeout=2.0)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
