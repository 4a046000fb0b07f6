"""The backoff of every retry loop: a delay that doubles after each failure, up to a ceiling.

The sources (a serial port, the service's source restart), the exporters (MQTT, CAN, Modbus)
and the exporters' supervisor all retry with one ``Backoff``: ``wait()`` after a failure,
``reset()`` after a success. Sources and exporters may import it (tests/unit/test_architecture).
"""

from __future__ import annotations

import asyncio


class Backoff:
    """``min_s``, then twice as long after each failure, at most ``max_s``; ``reset`` on success."""

    def __init__(self, min_s: float, max_s: float, *, factor: float = 2.0) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"need 0 < min_s <= max_s (got {min_s:g}, {max_s:g})")
        if factor < 1.0:
            raise ValueError(f"factor {factor:g} must be >= 1")
        self.min_s = min_s
        self.max_s = max_s
        self.factor = factor
        self._delay_s = min_s

    @property
    def delay_s(self) -> float:
        """The wait the next failure gets."""
        return self._delay_s

    def next_s(self) -> float:
        """The wait after a failure now; the one after it grows."""
        delay = self._delay_s
        self._delay_s = min(delay * self.factor, self.max_s)
        return delay

    def reset(self) -> None:
        """A success: the next failure waits ``min_s`` again."""
        self._delay_s = self.min_s

    async def wait(self) -> float:
        """Sleep the wait after a failure; returns how long it was."""
        delay = self.next_s()
        await asyncio.sleep(delay)
        return delay
