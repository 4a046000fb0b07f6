"""Logging for ``twin run``: text or JSON lines, and floods of one line cut short.

The service's only handler writes to stderr; ``RepeatFilter`` on it keeps a flood of one event
(thousands of closed connections, a store that fails every second) to a few lines.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import TextIO


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message (and the exception)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        entry = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class RepeatFilter(logging.Filter):
    """At most ``burst`` lines of one kind per ``window_s``; the rest are counted, not written.

    A kind is the logger, the level and the message template (before its arguments), so that
    a flood of one event from many peers (2,000 connections closed, a store that fails every
    second) stays a few lines. The next line of a kind after its window says how many of its
    kind were left out.
    """

    def __init__(self, burst: int = 20, window_s: float = 10.0) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._kinds: dict[tuple[str, int, str], list[float]] = {}
        """Kind -> [window start, lines in it, lines left out]."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether the record is written (it may gain a note of what was left out)."""
        key = (record.name, record.levelno, str(record.msg))
        now = record.created
        entry = self._kinds.get(key)
        if entry is None or now - entry[0] >= self.window_s:
            left_out = 0 if entry is None else int(entry[2])
            if len(self._kinds) > 10_000:
                self._kinds.clear()  # bounded: templates are few, but never trust that
            self._kinds[key] = [now, 1.0, 0.0]
            if left_out:
                record.msg = f"{record.msg} (+{left_out} like it left out)"
            return True
        if entry[1] < self.burst:
            entry[1] += 1
            return True
        entry[2] += 1
        return False


def configure_logging(fmt: str, level: str, stream: TextIO = sys.stderr) -> None:
    """Log to ``stream`` as text or JSON lines; pymodbus only from warnings up; floods cut."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RepeatFilter())
    if fmt == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # pymodbus logs every request at debug level, and switches hex dumps on after an error.
    logging.getLogger("pymodbus").setLevel(logging.WARNING)
