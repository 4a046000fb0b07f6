"""An emulated pack as a byte source: its End board's frames, paced in real time or N x faster.

The world (``twin.emulator.World``: cells, sensors, plant, chain) advances one message cycle
per frame; the bytes go to the twin exactly as a serial port would deliver them, stamped with
the emulated clock (seconds since the source started, times ``speed``). When the pacing falls
behind (a busy machine, a very high speed) the source catches up without sleeping but yields
to the event loop every cycle, so the exporters keep answering.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

from twin.emulator.events import TimedEvent
from twin.emulator.simulation import World
from twin.sources.base import Chunk
from twin.sources.served import ServedUart

log = logging.getLogger(__name__)

#: Behind by more than this many cycles, the pacing restarts from now instead of racing to
#: catch up (after the machine was suspended, say).
MAX_CATCH_UP_CYCLES = 100


class EmulatorSource:
    """The End board's UART output of an emulated pack."""

    def __init__(
        self,
        world: World,
        *,
        name: str = "emulator",
        speed: float = 1.0,
        served: ServedUart | None = None,
        events: Sequence[TimedEvent] = (),
        duration_s: float | None = None,
        hold: bool = False,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self.world = world
        self.served = served
        """Where the same bytes also go: a pseudo-terminal and a TCP port for UART readers."""
        self.events = sorted(events, key=lambda event: event.at_s)
        """A scenario's timed events, applied when the emulated clock reaches them."""
        self.duration_s = duration_s
        """A scenario's length: at its end the source ends (unless ``hold``)."""
        self.hold = hold
        self.ended = False
        """The scenario has reached its end."""
        self._next_event = 0
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
            if self._play(emulated_s - period):
                return
            wire = self.world.advance()
            if wire is not None:
                if self.served is not None:
                    self.served.write(wire)
                yield Chunk(wire, emulated_s)

    def _play(self, run_s: float) -> bool:
        """The scenario's events due at ``run_s``; True when the scenario ends the source."""
        events = self.events
        while self._next_event < len(events) and events[self._next_event].at_s <= run_s:
            event = events[self._next_event]
            self._next_event += 1
            try:
                self.world.apply(event.action, run_s)
            except ValueError as exc:
                log.error("%s: scenario event at %s refused: %s", self.name, _clock(run_s), exc)
                continue
            log.info(
                "%s: scenario event %s at %s (%.0f s)",
                self.name,
                type(event.action).__name__,
                _clock(run_s),
                run_s,
            )
        if self.duration_s is None or self.ended or run_s < self.duration_s:
            return False
        self.ended = True
        log.info(
            "%s: scenario ended at %s (%.0f s)%s",
            self.name,
            _clock(run_s),
            run_s,
            "; holding: the world goes on" if self.hold else "",
        )
        return not self.hold


def _clock(run_s: float) -> str:
    """Emulated seconds since the scenario's start as ``hh:mm:ss``."""
    whole = int(run_s)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
