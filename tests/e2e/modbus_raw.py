"""A raw-socket Modbus TCP client for tests: exact frames in, exact answers out."""

from __future__ import annotations

import socket
import struct


class RawModbus:
    """One TCP connection; ``request`` sends a PDU to a unit and returns the response PDU."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout_s: float = 5.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout_s)
        self.transaction = 0

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()

    def __enter__(self) -> RawModbus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send_raw(self, data: bytes) -> None:
        """Bytes as they are (malformed frames)."""
        self.sock.sendall(data)

    def request(self, unit: int, pdu: bytes) -> bytes:
        """One request; the response's PDU (function code first)."""
        self.transaction = (self.transaction + 1) & 0xFFFF
        header = struct.pack(">HHHB", self.transaction, 0, len(pdu) + 1, unit)
        self.sock.sendall(header + pdu)
        head = self._read(7)
        transaction, protocol, length, answered_unit = struct.unpack(">HHHB", head)
        assert transaction == self.transaction and protocol == 0 and answered_unit == unit
        return self._read(length - 1)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def read_holding(self, unit: int, address: int, count: int) -> list[int] | int:
        """FC3: the registers, or the exception code."""
        return _registers_or_code(self.request(unit, struct.pack(">BHH", 3, address, count)))

    def read_input(self, unit: int, address: int, count: int) -> list[int] | int:
        """FC4: the registers, or the exception code."""
        return _registers_or_code(self.request(unit, struct.pack(">BHH", 4, address, count)))

    def write_single(self, unit: int, address: int, value: int) -> int | None:
        """FC6: None when accepted, else the exception code."""
        return _code(self.request(unit, struct.pack(">BHH", 6, address, value)))

    def write_multiple(self, unit: int, address: int, values: list[int]) -> int | None:
        """FC16: None when accepted, else the exception code."""
        body = struct.pack(
            f">BHHB{len(values)}H", 16, address, len(values), 2 * len(values), *values
        )
        return _code(self.request(unit, body))


def exception_of(pdu: bytes) -> tuple[int, int] | None:
    """(function code with the error bit, exception code) of an exception response."""
    if pdu[0] & 0x80:
        return pdu[0], pdu[1]
    return None


def _code(pdu: bytes) -> int | None:
    exc = exception_of(pdu)
    return None if exc is None else exc[1]


def _registers_or_code(pdu: bytes) -> list[int] | int:
    exc = exception_of(pdu)
    if exc is not None:
        return exc[1]
    count = pdu[1] // 2
    return list(struct.unpack(f">{count}H", pdu[2 : 2 + 2 * count]))
