"""The one error tree of twin.

::

    TwinError
    ├── ConfigError(TwinError, ValueError)   bad config, register map or DBC: at start-up, exit 2
    ├── StartupError(TwinError)              a port the config names cannot be had: exit 2
    ├── SourceError(TwinError)               serial / emulator failure (wraps OSError ``from exc``)
    │   └── StaleDataError(SourceError, TimeoutError)   no valid frame within the watchdog
    ├── ExporterError(TwinError)             an adapter failed; it retries with backoff by itself
    └── OutputError(TwinError)               a result file (twin simulate --out) cannot be written

The pure core (``twin.model``, ``twin.protocol``) does not import this module: it raises plain
``ValueError`` for broken invariants and returns problems on the wire as values (a ``Rejected``
event, an alarm flag). The edges (``twin.config``, the adapters) turn those into this tree.
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


class StaleDataError(SourceError, TimeoutError):
    """No valid frame arrived within the watchdog time."""


class ExporterError(TwinError):
    """An exporter (Modbus, CAN, MQTT) failed; it retries with backoff by itself."""


class OutputError(TwinError):
    """A result file or directory cannot be written (``twin simulate --out``)."""
