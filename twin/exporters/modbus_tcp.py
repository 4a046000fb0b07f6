"""pymodbus 3.16's TCP server, made to hold against real and hostile clients.

The second half of the Modbus adapter (``modbus.py`` is the first: the map, the device action,
writes). pymodbus's own server has four traits that a twin on a plant network cannot keep,
each seen in black-box tests against 3.16:

- **A bad MBAP header wedges the connection.** Its socket framer returns "need more data" for a
  header whose protocol id is not 0, and the bytes stay in the buffer for good: every later
  request on that connection went unanswered. Here a header that is not Modbus TCP (protocol
  id 0, length 2..254) closes the connection: its framing cannot be trusted any more, and the
  client's reconnect gets a clean stream.
- **Pipelined requests are lost.** It decodes one frame per read and clears its receive buffer
  whenever it sends, so requests that arrived in one TCP segment got one answer. Here every
  complete frame of a read is queued and answered in order, and a partial frame is kept across
  an answer. A client that keeps more than ``MAX_PENDING`` requests in flight is read no more
  until they are answered (TCP backpressure), so memory stays bounded.
- **No connection cap and no idle timeout.** 1,100 idle sockets exhausted the process's file
  descriptors (the state file could not be saved, new clients were locked out). Here at most
  ``max_connections`` are open: a new client closes the one that has been quiet longest, so a
  real client always gets in; and a connection idle for ``idle_timeout_s`` is closed.
- **Open connections get lost from its books.** It keys them by ``id()``, which a closed
  connection hands on to a new one; the old one's clean-up then removed the new one, which
  stayed open for good. Each connection here has a number of its own.
- **Noise.** Each refused or evicted connection is logged through the service's logger, whose
  handler collapses repeated lines (``twin.logs.RepeatFilter``).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ModbusIOException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler
from pymodbus.simulator import SimDevice

log = logging.getLogger("twin.exporters.modbus")

#: The MBAP header: transaction id, protocol id, length, unit id.
MBAP_BYTES = 7
#: The length field counts the unit id and the PDU (at most 253 bytes): 2..254.
LENGTH_RANGE = (2, 254)
#: Requests queued on one connection before it is read no more (until they are answered).
MAX_PENDING = 64
#: One read may bring many pipelined frames (pymodbus drops a buffer over 516 bytes).
MAX_READ_BYTES = 1 << 18

_CONNECTION_NUMBERS = itertools.count(1)


#: Descriptors the rest of the twin may need besides the Modbus connections (the state file,
#: a serial port, CAN and MQTT sockets, a burst of accepted sockets not yet closed).
DESCRIPTOR_RESERVE = 256


def ensure_descriptors(max_connections: int) -> int:
    """Raise the open-file limit to fit ``max_connections`` and the reserve, if allowed.

    Returns the connections that fit (``max_connections``, or fewer under a hard limit, with a
    warning): the cap must never let the connections take the descriptors the store needs.
    """
    try:
        import resource  # POSIX only
    except ImportError:  # pragma: no cover - not on Linux
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = max_connections + DESCRIPTOR_RESERVE
    if soft == resource.RLIM_INFINITY or soft >= need:
        return max_connections
    target = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    fits = max(1, min(max_connections, soft - DESCRIPTOR_RESERVE))
    if fits < max_connections:
        log.warning(
            "modbus: %d open files allowed: at most %d connections instead of %d",
            soft,
            fits,
            max_connections,
        )
    return fits


class Connection(ServerRequestHandler):
    """One client: every frame of a read answered in order; a bad header closes it."""

    def __init__(self, owner: HardenedTcpServer) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            owner, owner.trace_packet, owner.trace_pdu, owner.trace_connect
        )
        self.owner = owner
        # pymodbus keys its open connections by ``id(self)``; a closed connection's id is
        # reused by a later one, and the closed one's clean-up then removed the new one from
        # the server's books (never evicted, never timed out: the descriptors leaked).
        self.unique_id = f"twin-{next(_CONNECTION_NUMBERS)}"
        self.max_buffer_size = MAX_READ_BYTES
        self.last_active_s = time.monotonic()
        self.peer = "?"
        self._pending: collections.deque[ModbusPDU] = collections.deque()
        self._worker: asyncio.Task[None] | None = None
        self._paused = False
        self._dropped = False

    def callback_connected(self) -> None:
        """A client connected: make room for it under the cap."""
        super().callback_connected()
        peer = self.transport.get_extra_info("peername") if self.transport else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = f"{peer[0]}:{peer[1]}"
        self.owner.admit(self)

    def callback_data(self, data: bytes, addr: tuple[Any, ...] | None = None) -> int:
        """Take every complete frame of ``data``; returns the bytes used (a partial frame stays)."""
        self.last_active_s = time.monotonic()
        used = 0
        while len(data) - used >= MBAP_BYTES + 1:
            protocol = int.from_bytes(data[used + 2 : used + 4], "big")
            length = int.from_bytes(data[used + 4 : used + 6], "big")
            if protocol != 0 or not LENGTH_RANGE[0] <= length <= LENGTH_RANGE[1]:
                self.drop(f"not a Modbus TCP header (protocol id {protocol}, length {length})")
                return len(data)
            end = used + 6 + length
            if len(data) < end:
                break
            self._pending.append(self._decode(data[used:end]))
            used = end
        if self._pending and (self._worker is None or self._worker.done()):
            self._worker = asyncio.ensure_future(self._answer_pending())
        if len(self._pending) >= MAX_PENDING and not self._paused:
            self._paused = self._reading(False)
        return used

    def _decode(self, frame: bytes) -> ModbusPDU:
        """The request in one complete frame, or the exception response pymodbus would send."""
        try:
            _, pdu = self.framer.handleFrame(frame, 0, 0)
        except ModbusIOException as exc:
            return ExceptionResponse(
                0 if exc.fcode is None else exc.fcode,
                exception_code=ExcCodes.ILLEGAL_FUNCTION,
                device_id=exc.dev_id,
                transaction=exc.transaction_id,
            )
        assert pdu is not None, "a complete frame decodes to a PDU or raises"
        return pdu

    async def _answer_pending(self) -> None:
        """Answer the queued requests one by one, in the order they came."""
        while self._pending and not self._dropped:
            pdu = self._pending.popleft()
            if isinstance(pdu, ExceptionResponse):
                self.server_send(pdu, None)  # type: ignore[no-untyped-call]
            else:
                self.last_pdu, self.last_addr = pdu, None
                await self.handle_request()  # type: ignore[no-untyped-call]
            if self._paused and len(self._pending) < MAX_PENDING // 2:
                self._paused = not self._reading(True)

    def _reading(self, on: bool) -> bool:
        """Resume (``on``) or pause reading this client; True if the transport did it."""
        transport = self.transport
        if not isinstance(transport, asyncio.ReadTransport) or transport.is_closing():
            return False
        if on:
            transport.resume_reading()
        else:
            transport.pause_reading()
        return True

    def callback_disconnected(self, exc: Exception | None) -> None:
        """The client went away: its queued requests go unanswered."""
        self._pending.clear()
        super().callback_disconnected(exc)

    def send(self, data: bytes, addr: tuple[Any, ...] | None = None) -> None:
        """Send an answer, keeping a partial next request (pymodbus clears the buffer)."""
        if self._dropped or not self.transport:
            return
        kept = self.recv_buffer
        super().send(data, addr)
        self.recv_buffer = kept

    def drop(self, why: str) -> None:
        """Close this connection and say why (once)."""
        if self._dropped:
            return
        self._dropped = True
        self._pending.clear()
        log.warning("modbus: connection from %s closed: %s", self.peer, why)
        if not self.is_closing:
            # pymodbus's own close skips the disconnect callback (the client count).
            self.callback_disconnected(None)
            self.close()


class HardenedTcpServer(ModbusTcpServer):
    """pymodbus's TCP server with whole-buffer framing, a connection cap and an idle timeout."""

    def __init__(
        self,
        devices: list[SimDevice],
        *,
        address: tuple[str, int],
        max_connections: int,
        idle_timeout_s: float | None,
        trace_connect: Callable[[bool], None],
    ) -> None:
        super().__init__(devices, address=address, trace_connect=trace_connect)
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.evicted = 0
        """Connections closed to make room for a new one."""
        self.timed_out = 0
        """Connections closed for being idle."""

    def callback_new_connection(self) -> Connection:
        """A connection's protocol object (pymodbus calls this for each accepted socket)."""
        return Connection(self)

    def connections(self) -> list[Connection]:
        """The open client connections."""
        return [c for c in self.active_connections.values() if isinstance(c, Connection)]

    def admit(self, new: Connection) -> None:
        """Make room for ``new``: over the cap, the connection quiet the longest is closed."""
        # Only connected ones: pymodbus books a connection before asyncio has given it its
        # socket, and closing one then would leave that socket open for good.
        others = [
            c for c in self.connections() if c is not new and c.transport and not c.is_closing
        ]
        while others and len(others) + 1 > self.max_connections:
            oldest = min(others, key=lambda c: c.last_active_s)
            others.remove(oldest)
            self.evicted += 1
            oldest.drop(f"{self.max_connections} connections at most: quiet the longest")

    def sweep(self, now_s: float) -> None:
        """Close the connections idle for longer than ``idle_timeout_s``."""
        if self.idle_timeout_s is None:
            return
        for connection in self.connections():
            if connection.transport and now_s - connection.last_active_s > self.idle_timeout_s:
                self.timed_out += 1
                connection.drop(f"idle for more than {self.idle_timeout_s:g} s")
