"""``twin dbc`` and ``twin can-monitor``: the CAN tools.

python-can and cantools stay in ``twin.exporters.canbus``; this module only hands it what the
command line gives.
"""

from __future__ import annotations

import contextlib
import sys
from typing import TextIO

from twin.exporters.canbus import describe_dbc, monitor


def dbc(path: str | None, out: TextIO = sys.stdout) -> int:
    """List the messages and signals of a DBC file (the shipped ones by default)."""
    out.write(describe_dbc(path))
    return 0


def can_monitor(
    interface: str,
    channel: str,
    dbc_path: str | None,
    count: int | None,
    duration_s: float | None,
    out: TextIO = sys.stdout,
) -> int:
    """Print the frames of a bus decoded until Ctrl-C, ``count`` frames or ``duration_s``."""
    with contextlib.suppress(KeyboardInterrupt):
        monitor(interface, channel, dbc_path, out, count=count, duration_s=duration_s)
    return 0
