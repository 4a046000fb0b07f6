"""The one error tree of twin.

::

    TwinError
    ├── ConfigError(TwinError, ValueError)   bad config, register map or DBC: at start-up, exit 2
    ├── StartupError(TwinError)              a port the config names cannot be had: exit 2
    ├── SourceError(TwinError)               a byte source failed (serial port, capture file)
    │   └── PipeClosedError(SourceError)     the emulated chain's pipe was closed
    ├── ExporterError(TwinError)             an adapter failed; it retries with backoff by itself
    │   ├── BusError(ExporterError)          the CAN bus cannot be opened or sent on
    │   ├── BrokerError(ExporterError)       the MQTT broker cannot be reached or was lost
    │   │   └── BrokerRefusedError(BrokerError)   the broker refused the connection
    │   ├── WriteError(ExporterError, ValueError)   a Modbus write refused (the client sees 0x03)
    │   └── CommandError(ExporterError, ValueError) an MQTT command or a dashboard write refused
    ├── StoreError(TwinError)                the state file cannot be written (retried)
    └── OutputError(TwinError)               a result file (twin simulate --out) cannot be written

Staleness is not an exception: no frame within the watchdog is a value (``TwinState.stale``,
warning E, the communication alarm), published like any other.

The pure core (``twin.model``, ``twin.protocol``, ``twin.emulator``) does not import this
module: it raises plain ``ValueError`` for broken invariants and returns problems on the wire
as values (a ``Rejected`` event, an alarm flag). The edges map what they meet into this tree,
each at its edge, like python-can's ``error_check`` and httpx's exception mapping: the CAN
adapter turns python-can's ``CanError`` and ``OSError`` into ``BusError``, the MQTT adapter
aiomqtt's ``MqttError`` (and the socket's errors) into ``BrokerError``, the serial source
pyserial's ``SerialException`` into ``SourceError``, the store ``OSError`` into ``StoreError``,
``twin.config`` pydantic's ``ValidationError`` into ``ConfigError``. The library's exception
stays attached as ``__cause__``.
"""

from __future__ import annotations


class TwinError(Exception):
    """Base class of every error twin raises on purpose."""


class ConfigError(TwinError, ValueError):
    """A configuration file, register map or DBC file is invalid.

    The message is a single line that names the field, the bad value and what is allowed; the
    command line prints it and exits with code 2 before anything is started.
    """


class StartupError(TwinError):
    """Something the configuration names cannot be had at start (a Modbus port in use).

    Like a ``ConfigError``: one line, exit code 2, nothing left running. Later, the same
    failure (the address lost while running) is retried by the exporter instead.
    """


class SourceError(TwinError):
    """A byte source (serial port, emulator, capture file) failed."""


class PipeClosedError(SourceError):
    """A write to the emulated chain's byte pipe after it was closed."""


class ExporterError(TwinError):
    """An exporter (Modbus, CAN, MQTT) failed; it retries with backoff by itself."""


class BusError(ExporterError):
    """The CAN bus cannot be opened, or too many sends in a row failed (it is reopened)."""


class BrokerError(ExporterError):
    """The MQTT broker cannot be reached, or the link to it was lost (it reconnects)."""


class BrokerRefusedError(BrokerError):
    """The MQTT broker answered the connect with a refusal (a reason code)."""


class WriteError(ExporterError, ValueError):
    """A Modbus write that cannot be taken: the message says why (logged); the client sees 0x03."""


class CommandError(ExporterError, ValueError):
    """A command that cannot be carried out.

    An MQTT command (the message goes to the result topic) or a dashboard write (answered with
    ``status``, an HTTP status code).
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class StoreError(TwinError):
    """The state file cannot be written (the twin keeps running and retries next interval)."""


class OutputError(TwinError):
    """A result file or directory cannot be written (``twin simulate --out``)."""
