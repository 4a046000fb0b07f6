"""What the dashboard page shows, from the readout: pure (no server, no clock).

The page (``twin/web/``) draws what ``page_state`` gives it: per pack its readout as JSON (the
field names of docs/vocabulary.md), each cell's state for its colour, and the fleet. The
trend of the last hour is kept here (``Trend``: one sample per ``TREND_STEP_S``), so a browser
that connects late still draws the whole hour. Nothing here computes a battery value: the
readout already holds every one, stale ones as None.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twin.protocol.readout import CellReadout, FleetReadout, PackReadout

JsonValue = Any
#: One trend sample every this many seconds; an hour of them is kept.
TREND_STEP_S = 5.0
TREND_SPAN_S = 3600.0


@dataclass(frozen=True, slots=True)
class WebSettings:
    """``[web]``: the dashboard's server."""

    host: str = "127.0.0.1"
    port: int = 8080
    update_hz: float = 2.0
    """Pushes to each browser at most this often (intermediate states are dropped)."""
    max_clients: int = 20
    """Browsers (WebSocket connections) at once; one more is refused."""

    def __post_init__(self) -> None:
        if not 0 < self.update_hz <= 20:
            raise ValueError(f"update_hz {self.update_hz} is out of range (>0..20)")
        if not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is out of range")
        if self.max_clients < 1:
            raise ValueError("max_clients must be >= 1")


class CellState(enum.StrEnum):
    """A cell's colour on the page."""

    STALE = "stale"
    LOW = "low"
    """At or below V-min."""
    HIGH = "high"
    """At or above V-max."""
    BALANCING = "balancing"
    NORMAL = "normal"


def cell_state(cell: CellReadout, vmin_v: float, vmax_v: float) -> CellState:
    """The state a cell bar is coloured by (the warnings' own thresholds: at or beyond)."""
    if cell.stale or cell.voltage_v is None:
        return CellState.STALE
    if cell.voltage_v <= vmin_v:
        return CellState.LOW
    if cell.voltage_v >= vmax_v:
        return CellState.HIGH
    if cell.balancing:
        return CellState.BALANCING
    return CellState.NORMAL


def _json(value: object) -> JsonValue:
    """A readout value as JSON: flags as their number, enums by name, NaN as null."""
    if isinstance(value, enum.Flag):
        return int(value.value)
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def pack_json(readout: PackReadout) -> dict[str, JsonValue]:
    """One pack for the page: every readout field, and the cells with their state."""
    values: dict[str, JsonValue] = {
        field.name: _json(getattr(readout, field.name))
        for field in dataclasses.fields(readout)
        if field.name != "cells"
    }
    values["cells"] = [
        {
            "index": cell.index,
            "voltage_v": cell.voltage_v,
            "temp_c": cell.temp_c,
            "balancing": cell.balancing,
            "stale": cell.stale,
            "state": cell_state(cell, readout.vmin_v, readout.vmax_v).value,
        }
        for cell in readout.cells
    ]
    return values


_LAST: dict[str, tuple[PackReadout, dict[str, JsonValue]]] = {}


def _pack_json_cached(readout: PackReadout) -> dict[str, JsonValue]:
    """``pack_json`` once per readout: a push without a new state reuses it."""
    last = _LAST.get(readout.pack_id)
    if last is not None and last[0] is readout:
        return last[1]
    values = pack_json(readout)
    _LAST[readout.pack_id] = (readout, values)
    return values


def fleet_json(readout: FleetReadout) -> dict[str, JsonValue]:
    """The fleet aggregate for the page: every readout field."""
    return {
        field.name: _json(getattr(readout, field.name)) for field in dataclasses.fields(readout)
    }


def page_state(
    packs: Mapping[str, PackReadout],
    pack_ids: tuple[str, ...],
    fleet: FleetReadout,
    extra: Mapping[str, JsonValue],
) -> dict[str, JsonValue]:
    """Everything one push carries.

    The packs (in configuration order), the fleet, and ``extra`` (the exporters' status, the
    emulated packs' faults and plant).
    """
    # ``extra`` first: its small fields (the time stamp) lead the document.
    return {
        **extra,
        "packs": [_pack_json_cached(packs[p]) for p in pack_ids if p in packs],
        "pack_ids": list(pack_ids),
        "fleet": fleet_json(fleet),
    }


#: The quantities of the trend, by readout field.
TREND_FIELDS = (
    "pack_voltage_v",
    "battery_current_a",
    "soc_pct",
    "min_cell_voltage_v",
    "max_cell_voltage_v",
)


class Trend:
    """The last hour of a pack, one sample per ``TREND_STEP_S`` (None while stale)."""

    def __init__(self, step_s: float = TREND_STEP_S, span_s: float = TREND_SPAN_S) -> None:
        self.step_s = step_s
        self.samples: deque[list[float | None]] = deque(maxlen=int(span_s / step_s))
        self._next_s: float | None = None

    def add(self, now_s: float, readout: PackReadout) -> bool:
        """Sample ``readout`` if a step has passed; True when it did."""
        if self._next_s is not None and now_s < self._next_s:
            return False
        self._next_s = now_s + self.step_s
        self.samples.append([round(now_s, 1), *(getattr(readout, name) for name in TREND_FIELDS)])
        return True

    def json(self) -> dict[str, JsonValue]:
        """The samples as columns: ``t`` (seconds, the page's clock offset) and each field."""
        columns: dict[str, JsonValue] = {"t": [s[0] for s in self.samples]}
        for i, name in enumerate(TREND_FIELDS, start=1):
            columns[name] = [s[i] for s in self.samples]
        return columns
