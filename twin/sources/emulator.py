"""An emulated pack as a byte source: its End board's frames, paced in real time or N x faster.

The world (``twin.emulator.World``: cells, sensors, plant, chain) advances one message cycle
per frame; the bytes go to the twin exactly as a serial port would deliver them, stamped with
the emulated clock (seconds since the source started, times ``speed``). When the pacing falls
behind (a busy machine, a very high speed) the source catches up without sleeping but yields
to the event loop every cycle, so the exporters keep answering.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from twin.emulator.simulation import World
from twin.sources.base import Chunk

#: Behind by more than this many cycles, the pacing restarts from now instead of racing to
#: catch up (after the machine was suspended, say).
MAX_CATCH_UP_CYCLES = 100


class EmulatorSource:
    """The End board's UART output of an emulated pack."""

    def __init__(self, world: World, *, name: str = "emulator", speed: float = 1.0) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.world = world
        self.speed = speed
        self._name = name
        self._started: float | None = None
        self._emulated_at_start_s = 0.0
        self.cycles = 0

    @property
    def name(self) -> str:
        """``emulator:<pack id>``."""
        return self._name

    @property
    def period_s(self) -> float:
        """The emulated message cycle."""
        return self.world.scenario.step_s

    def now_s(self) -> float:
        """The emulated clock: seconds of emulated time since the source started."""
        if self._started is None:
            return 0.0
        loop = asyncio.get_running_loop()
        return self._emulated_at_start_s + (loop.time() - self._started) * self.speed

    async def chunks(self) -> AsyncIterator[Chunk]:
        """One chunk per message cycle (none while the emulated chain is broken), forever."""
        loop = asyncio.get_running_loop()
        period = self.period_s
        self._started = loop.time()
        self._emulated_at_start_s = self.cycles * period
        first = self.cycles
        while True:
            self.cycles += 1
            emulated_s = self.cycles * period
            due = self._started + (emulated_s - first * period) / self.speed
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif -delay * self.speed > MAX_CATCH_UP_CYCLES * period:
                # Far behind: the emulated clock jumps; the twin's watchdog sees the gap.
                self._started = loop.time()
                self._emulated_at_start_s = emulated_s
                first = self.cycles
            else:
                await asyncio.sleep(0)
            wire = self.world.advance()
            if wire is not None:
                yield Chunk(wire, emulated_s)
