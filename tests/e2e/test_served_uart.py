"""The emulated UART, served: a reader written from the UART reference alone opens it.

The reader below knows only ../shared/reference/smartbms-uart.md (58-byte frames, the checksum,
big-endian fields): it uses none of the twin's code. It reads the pseudo-terminal with pyserial
and the TCP port with a plain socket, and what it decodes must be what the twin's Modbus
registers hold; wire noise injected over MQTT must reach it as rejected bytes.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import serial

from tests.e2e.modbus_raw import RawModbus
from tests.e2e.service import TwinProcess, free_port, mqtt_config, wait_until
from tests.mqtt_broker import Broker, Watcher

pytestmark = pytest.mark.slow

FRAME = 58


@dataclass
class Reader:
    """A UART reader from the reference: a sliding checksum search over the byte stream."""

    buffer: bytearray = field(default_factory=bytearray)
    frames: list[bytes] = field(default_factory=list)
    rejected: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def feed(self, data: bytes) -> None:
        with self.lock:
            self.buffer += data
            while len(self.buffer) >= FRAME:
                if sum(self.buffer[: FRAME - 1]) & 0xFF == self.buffer[FRAME - 1]:
                    self.frames.append(bytes(self.buffer[:FRAME]))
                    del self.buffer[:FRAME]
                else:
                    del self.buffer[0]
                    self.rejected += 1

    def latest(self) -> bytes | None:
        with self.lock:
            return self.frames[-1] if self.frames else None

    def count(self) -> int:
        with self.lock:
            return len(self.frames)


def pack_voltage_v(frame: bytes) -> float:
    """Offset 0, 3 bytes, big-endian, x 0.005 V."""
    return int.from_bytes(frame[0:3], "big") * 0.005


def cell_count(frame: bytes) -> int:
    """Offset 25."""
    return frame[25]


def vmax_v(frame: bytes) -> float:
    """Offset 53, 2 bytes, x 0.005 V."""
    return int.from_bytes(frame[53:55], "big") * 0.005


def _pump(read: object, reader: Reader, stop: threading.Event) -> None:
    assert callable(read)
    while not stop.is_set():
        try:
            data = read()
        except OSError:
            return
        if data:
            reader.feed(data)


def _registers(port: int, address: int, count: int) -> list[int]:
    with RawModbus(port) as raw:
        registers = raw.read_holding(1, address, count)
    assert isinstance(registers, list), f"exception {registers}"
    return registers


def test_a_reference_reader_decodes_the_served_uart_on_a_pty_and_tcp(
    tmp_path: Path, broker: Broker
) -> None:
    tcp_port = free_port()
    config, modbus_port, prefix = mqtt_config(tmp_path, broker.port)
    text = config.read_text(encoding="utf-8").replace(
        'kind = "emulator"',
        f'kind = "emulator"\nuart_pty_file = "uart.path"\nuart_tcp_port = {tcp_port}',
    )
    config.write_text(text, encoding="utf-8")
    with TwinProcess(config) as twin:
        twin.wait_for_message("UART served on")
        pty_path = (tmp_path / "uart.path").read_text(encoding="utf-8").strip()
        assert pty_path.startswith("/dev/")
        stop = threading.Event()
        on_pty, on_tcp = Reader(), Reader()
        port = serial.Serial(pty_path, 9600, timeout=0.2)
        sock = socket.create_connection(("127.0.0.1", tcp_port), timeout=5)
        sock.settimeout(0.2)

        def read_tcp() -> bytes:
            try:
                return sock.recv(4096) or b""
            except TimeoutError:
                return b""

        threads = [
            threading.Thread(target=_pump, args=(lambda: port.read(256), on_pty, stop)),
            threading.Thread(target=_pump, args=(read_tcp, on_tcp, stop)),
        ]
        for thread in threads:
            thread.start()
        watcher = Watcher(broker, f"{prefix}/#")
        try:
            wait_until(lambda: on_pty.count() >= 3 and on_tcp.count() >= 3, what="frames")
            for reader in (on_pty, on_tcp):
                frame = reader.latest()
                assert frame is not None
                assert cell_count(frame) == _registers(modbus_port, 11, 1)[0] == 8
                assert round(vmax_v(frame) * 1000) == _registers(modbus_port, 201, 1)[0]
                high, low = _registers(modbus_port, 100, 2)
                # One frame apart at most: the pack's voltage moves millivolts a second.
                assert abs(pack_voltage_v(frame) - ((high << 16) | low) / 1000.0) < 0.05
            assert on_pty.rejected == 0 and on_tcp.rejected == 0
            # Wire noise injected over MQTT reaches these readers as it reaches the twin.
            watcher.publish(f"{prefix}/pack1/emulator/fault/wire-noise", {"probability": 1.0})
            wait_until(
                lambda: (watcher.json(f"{prefix}/pack1/result") or {}).get("ok") is True,
                what="the fault accepted",
            )
            wait_until(
                lambda: on_pty.rejected > 2 * FRAME and on_tcp.rejected > 2 * FRAME,
                what="rejected bytes at both readers",
            )
            before = on_tcp.count()
            wait_until(
                lambda: on_tcp.rejected > 6 * FRAME, what="every frame corrupted for a while"
            )
            assert on_tcp.count() <= before + 1  # a frame at most was in flight
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=5)
            port.close()
            sock.close()
            watcher.close()
        assert twin.stop() == 0
