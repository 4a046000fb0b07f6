r"""The serial port source: a real 123\SmartBMS through the official USB cable or any UART.

9600 bit/s, 8N1 (smartbms-uart.md section 1). ``port`` is a device path (``/dev/ttyUSB0``,
a pseudo-terminal), a pyserial URL (``socket://host:port``, ``rfc2217://...`` for a serial
server), or ``"auto"``: the official "123\SmartBMS to USB" cable, found by its USB product
string ``SmartBMSToUSB`` (and by ``usb_serial`` when several are plugged in).

The source survives the device disappearing (USB unplugged, pty closed, server gone): it logs
once, retries with a capped exponential backoff, and carries on when the device comes back.
Only this module imports pyserial.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

import serial
import serial_asyncio_fast
from serial.tools import list_ports

from twin.errors import SourceError
from twin.retry import Backoff
from twin.sources.base import Chunk

log = logging.getLogger(__name__)

AUTO = "auto"
USB_PRODUCT = "SmartBMSToUSB"
"""The USB product string (udev ID_MODEL) of the official cable."""
BAUDRATE = 9600
READ_SIZE = 1024


class PortInfo(Protocol):
    """The attributes of ``serial.tools.list_ports`` entries that auto-detection reads."""

    device: str
    product: str | None
    description: str
    serial_number: str | None


@dataclass(frozen=True, slots=True)
class FoundPort:
    """A port that looks like the official cable."""

    device: str
    serial_number: str | None


def find_cables(ports: Iterable[PortInfo], usb_serial: str | None = None) -> list[FoundPort]:
    r"""The ports whose USB product is the 123\SmartBMS cable (and whose serial matches)."""
    found = []
    for port in ports:
        product = port.product or ""
        if USB_PRODUCT.lower() not in (product + " " + (port.description or "")).lower():
            continue
        if usb_serial is not None and port.serial_number != usb_serial:
            continue
        found.append(FoundPort(port.device, port.serial_number))
    return sorted(found, key=lambda p: p.device)


def resolve_port(
    port: str, usb_serial: str | None = None, ports: Iterable[PortInfo] | None = None
) -> str:
    """The device to open: ``port`` itself, or for ``"auto"`` the one cable plugged in.

    ``ports`` defaults to the system's serial ports. Raises ``SourceError`` when no cable, or
    several and no ``usb_serial`` to choose, is found.
    """
    if port != AUTO:
        return port
    cables = find_cables(list_ports.comports() if ports is None else ports, usb_serial)
    wanted = f"{USB_PRODUCT} cable" + (f" with serial {usb_serial}" if usb_serial else "")
    if not cables:
        raise SourceError(f"port auto: no {wanted} is plugged in")
    if len(cables) > 1:
        listed = ", ".join(f"{c.device} (serial {c.serial_number})" for c in cables)
        raise SourceError(f"port auto: several {USB_PRODUCT} cables: {listed}; set usb_serial")
    return cables[0].device


class SerialSource:
    r"""Yields the bytes of a serial port, reconnecting for ever.

    Args:
        port: a device path, a pyserial URL, or ``"auto"``.
        baudrate: 9600 for the 123\SmartBMS.
        usb_serial: with ``"auto"``, the USB serial number of the cable to use.
        retry_min_s / retry_max_s: the reconnect backoff doubles from min to max.
    """

    def __init__(
        self,
        port: str = AUTO,
        *,
        baudrate: int = BAUDRATE,
        usb_serial: str | None = None,
        retry_min_s: float = 0.5,
        retry_max_s: float = 10.0,
    ) -> None:
        if not 0 < retry_min_s <= retry_max_s:
            raise ValueError("need 0 < retry_min_s <= retry_max_s")
        self.port = port
        self.baudrate = baudrate
        self.usb_serial = usb_serial
        self.retry_min_s = retry_min_s
        self.retry_max_s = retry_max_s
        self.device: str | None = None
        """The device currently open, None while disconnected."""
        self.connects = 0
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        """The port as configured, and the device it resolved to."""
        if self.port == AUTO and self.device:
            return f"auto ({self.device})"
        return self.port

    @property
    def connected(self) -> bool:
        """True while the port is open."""
        return self.device is not None

    async def chunks(self) -> AsyncIterator[Chunk]:
        """Yield chunks as reads return them, stamped with the event loop's clock."""
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.retry_min_s, self.retry_max_s)
        while True:
            try:
                device, reader, writer = await self._open()
            except SourceError as exc:
                self._problem(str(exc))
                await backoff.wait()
                continue
            self.device = device
            self.connects += 1
            self.last_error = None
            backoff.reset()
            log.info("serial: %s open at %d 8N1", device, self.baudrate)
            try:
                while data := await reader.read(READ_SIZE):
                    yield Chunk(data, loop.time())
                self._problem(f"{device}: end of stream (device gone)")
            except OSError as exc:  # serial.SerialException is an OSError
                self._problem(f"{device}: {exc}")
            finally:
                self.device = None
                writer.close()
            await backoff.wait()

    async def _open(self) -> tuple[str, asyncio.StreamReader, asyncio.StreamWriter]:
        """The port, open; ``SourceError`` (pyserial's exceptions mapped at this edge)."""
        try:
            device = await asyncio.to_thread(resolve_port, self.port, self.usb_serial)
            reader, writer = await serial_asyncio_fast.open_serial_connection(
                url=device,
                baudrate=self.baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
            )
        except SourceError as exc:
            raise SourceError(f"cannot open {self.port}: {exc}") from exc
        except (OSError, ValueError) as exc:  # serial.SerialException is an OSError
            raise SourceError(f"cannot open {self.port}: {exc}") from exc
        return device, reader, writer

    def _problem(self, message: str) -> None:
        # Log a problem once, not once per retry: a cable left unplugged must not flood logs.
        if message != self.last_error:
            log.warning("serial: %s; retrying", message)
        self.last_error = message
