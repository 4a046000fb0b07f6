"""The charge and load relay algorithm (bms-behaviour.md section 5, the manuals' "Algorithm").

Every cycle, for each relay: if ANY disable condition holds the relay goes OFF; else if ALL
enable conditions hold it goes ON; else it KEEPS its state. The gap between the two columns is
the hysteresis. The tables below are the manuals' tables row for row; "all cells < X" is
evaluated as "the highest cell < X" and "a cell >= X" as "the highest cell >= X", which is
exactly what the min/max fields of the UART frame allow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntFlag, StrEnum

from twin.model.inputs import BmsInputs
from twin.model.settings import BmsSettings, RelayMode


class Relay(StrEnum):
    """The two signal relays of the End / OUT board."""

    CHARGE = "charge"
    DISCHARGE = "discharge"


class Condition(IntFlag):
    """One row of the relay tables.

    A decision reports the disable rows that hold and the enable rows that do not: together
    they say why a relay is off (or why it does not come back on), and exporters publish them
    as a bit field.
    """

    NONE = 0
    # Disable rows.
    CELL_AT_VMAX = 1 << 0
    """A cell voltage >= V-max."""
    ALL_CELLS_AT_VBALANCE = 1 << 1
    """All cell voltages >= V-balance (normal mode: the pack is full)."""
    CELL_AT_VMIN = 1 << 2
    """A cell voltage <= V-min."""
    TEMP_BELOW_TMIN = 1 << 3
    """A cell temperature < T-min."""
    TEMP_ABOVE_TMAX = 1 << 4
    """A cell temperature > T-max."""
    NO_COMMUNICATION = 1 << 5
    """No cell communication (chain error E). Also the unmet enable row "cell communication"."""
    # Enable rows that do not hold.
    CELLS_NOT_BELOW_VBALANCE = 1 << 8
    """Not all cell voltages < V-balance."""
    CELLS_NOT_BELOW_VMAX = 1 << 9
    """Not all cell voltages < V-max."""
    CELLS_NOT_ABOVE_VMIN = 1 << 10
    """Not all cell voltages > V-min."""
    SOC_NOT_BELOW_CHARGE_RESTART = 1 << 11
    """SOC >= charge restart (normal mode)."""
    SOC_BELOW_DISCHARGE_RESTART = 1 << 12
    """SOC < discharge restart (normal mode)."""
    TEMPS_NOT_ABOVE_TMIN = 1 << 13
    """Not all cell temperatures > T-min."""
    TEMPS_NOT_BELOW_TMAX = 1 << 14
    """Not all cell temperatures < T-max."""


_NAMES: dict[int, tuple[str, ...]] = {}


def condition_names(conditions: Condition) -> tuple[str, ...]:
    """The names of the rows in ``conditions`` (memoised: a relay meets a handful of sets)."""
    value = int(conditions)
    found = _NAMES.get(value)
    if found is None:
        found = _NAMES[value] = tuple(
            str(row.name) for row in Condition if row.value and value & row.value
        )
    return found


Predicate = Callable[[BmsInputs, float, BmsSettings], bool]


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a relay table: the condition it names and when it holds."""

    condition: Condition
    holds: Predicate


@dataclass(frozen=True, slots=True)
class RelayTable:
    """The enable and disable columns of one relay in one mode."""

    enable: tuple[Row, ...]
    disable: tuple[Row, ...]


# Rows shared by both modes and both relays. Their order is the manuals' order.
_TEMPS_ABOVE_TMIN = Row(Condition.TEMPS_NOT_ABOVE_TMIN, lambda m, _soc, s: m.min_temp_c > s.tmin_c)
_TEMPS_BELOW_TMAX = Row(Condition.TEMPS_NOT_BELOW_TMAX, lambda m, _soc, s: m.max_temp_c < s.tmax_c)
_COMMUNICATION = Row(Condition.NO_COMMUNICATION, lambda m, _soc, _s: not m.comm_error)
_TEMP_BELOW_TMIN = Row(Condition.TEMP_BELOW_TMIN, lambda m, _soc, s: m.min_temp_c < s.tmin_c)
_TEMP_ABOVE_TMAX = Row(Condition.TEMP_ABOVE_TMAX, lambda m, _soc, s: m.max_temp_c > s.tmax_c)
_NO_COMMUNICATION = Row(Condition.NO_COMMUNICATION, lambda m, _soc, _s: m.comm_error)
_CELL_AT_VMAX = Row(Condition.CELL_AT_VMAX, lambda m, _soc, s: m.max_cell_voltage_v >= s.vmax_v)
_CELL_AT_VMIN = Row(Condition.CELL_AT_VMIN, lambda m, _soc, s: m.min_cell_voltage_v <= s.vmin_v)
_CELLS_ABOVE_VMIN = Row(
    Condition.CELLS_NOT_ABOVE_VMIN, lambda m, _soc, s: m.min_cell_voltage_v > s.vmin_v
)

_DISCHARGE_DISABLE = (_CELL_AT_VMIN, _TEMP_BELOW_TMIN, _TEMP_ABOVE_TMAX, _NO_COMMUNICATION)

#: The manuals' tables: RELAY_TABLES[mode][relay].
RELAY_TABLES: dict[RelayMode, dict[Relay, RelayTable]] = {
    RelayMode.NORMAL: {
        Relay.CHARGE: RelayTable(
            enable=(
                Row(
                    Condition.CELLS_NOT_BELOW_VBALANCE,
                    lambda m, _soc, s: m.max_cell_voltage_v < s.vbalance_v,
                ),
                Row(
                    Condition.SOC_NOT_BELOW_CHARGE_RESTART,
                    lambda _m, soc, s: soc < s.charge_restart_pct,
                ),
                _TEMPS_ABOVE_TMIN,
                _TEMPS_BELOW_TMAX,
                _COMMUNICATION,
            ),
            disable=(
                _CELL_AT_VMAX,
                Row(
                    Condition.ALL_CELLS_AT_VBALANCE,
                    lambda m, _soc, s: m.min_cell_voltage_v >= s.vbalance_v,
                ),
                _TEMP_BELOW_TMIN,
                _TEMP_ABOVE_TMAX,
                _NO_COMMUNICATION,
            ),
        ),
        Relay.DISCHARGE: RelayTable(
            enable=(
                _CELLS_ABOVE_VMIN,
                Row(
                    Condition.SOC_BELOW_DISCHARGE_RESTART,
                    lambda _m, soc, s: soc >= s.discharge_restart_pct,
                ),
                _TEMPS_ABOVE_TMIN,
                _TEMPS_BELOW_TMAX,
                _COMMUNICATION,
            ),
            disable=_DISCHARGE_DISABLE,
        ),
    },
    RelayMode.CRITICAL: {
        Relay.CHARGE: RelayTable(
            enable=(
                Row(
                    Condition.CELLS_NOT_BELOW_VMAX,
                    lambda m, _soc, s: m.max_cell_voltage_v < s.vmax_v,
                ),
                _TEMPS_ABOVE_TMIN,
                _TEMPS_BELOW_TMAX,
                _COMMUNICATION,
            ),
            disable=(_CELL_AT_VMAX, _TEMP_BELOW_TMIN, _TEMP_ABOVE_TMAX, _NO_COMMUNICATION),
        ),
        Relay.DISCHARGE: RelayTable(
            enable=(_CELLS_ABOVE_VMIN, _TEMPS_ABOVE_TMIN, _TEMPS_BELOW_TMAX, _COMMUNICATION),
            disable=_DISCHARGE_DISABLE,
        ),
    },
}


@dataclass(frozen=True, slots=True)
class RelayDecision:
    """The outcome for one relay in one cycle."""

    allowed: bool
    disabling: Condition = Condition.NONE
    """The disable rows that hold (any one forces the relay off)."""
    unmet: Condition = Condition.NONE
    """The enable rows that do not hold (the relay cannot switch on)."""

    @property
    def blocking(self) -> Condition:
        """Everything that keeps the relay from switching on now."""
        return self.disabling | self.unmet


_CONDITIONS: dict[int, Condition] = {}


def _condition(value: int) -> Condition:
    """``Condition(value)``, memoised (the enum's own lookup of a combination is slow)."""
    found = _CONDITIONS.get(value)
    if found is None:
        found = _CONDITIONS[value] = Condition(value)
    return found


def decide_relay(
    table: RelayTable,
    previous: bool,
    inputs: BmsInputs,
    soc_pct: float,
    settings: BmsSettings,
) -> RelayDecision:
    """Apply one relay table: any disable -> off; else all enable -> on; else keep ``previous``."""
    if inputs.comm_error:
        # The measurements of a broken chain are not data: report only the chain error.
        return _COMM_ERROR
    # Plain ints while accumulating: an IntFlag "|" builds a new enum member each time, which is
    # most of the cost of a cycle. One lookup turns each result back into a Condition.
    disabling = 0
    for row in table.disable:
        if row.holds(inputs, soc_pct, settings):
            disabling |= row.condition.value
    unmet = 0
    for row in table.enable:
        if not row.holds(inputs, soc_pct, settings):
            unmet |= row.condition.value
    return _outcome(previous, disabling, unmet)


_COMM_ERROR = RelayDecision(
    allowed=False, disabling=Condition.NO_COMMUNICATION, unmet=Condition.NO_COMMUNICATION
)


@dataclass(frozen=True, slots=True)
class RelayDecisions:
    """Both relays' decisions for one cycle."""

    charge: RelayDecision
    discharge: RelayDecision


def decide_relays(
    previous_charge: bool,
    previous_discharge: bool,
    inputs: BmsInputs,
    soc_pct: float,
    settings: BmsSettings,
) -> RelayDecisions:
    """Decide both relays with the tables of ``settings.mode``."""
    tables = RELAY_TABLES[settings.mode]
    return RelayDecisions(
        charge=decide_relay(tables[Relay.CHARGE], previous_charge, inputs, soc_pct, settings),
        discharge=decide_relay(
            tables[Relay.DISCHARGE], previous_discharge, inputs, soc_pct, settings
        ),
    )


# ---- the same decision, evaluated fast ---------------------------------------------------
#
# ``BmsLogic`` runs once per frame, and a closed-loop simulation runs two of them per simulated
# second: evaluating the tables row by row (a lambda call per row, an enum per result) was a
# fifth of a cycle. ``decide_relays_fast`` computes each comparison once and the masks with
# plain ints; tests/unit/test_relays.py checks it against ``decide_relays`` (the tables) on
# arbitrary inputs, so the tables above stay the single statement of the algorithm.

_V = {c.name: c.value for c in Condition}
_DECISIONS: dict[tuple[bool, int, int], RelayDecision] = {}


def _decision(allowed: bool, disabling: int, unmet: int) -> RelayDecision:
    """The (memoised, immutable) decision object for these values."""
    key = (allowed, disabling, unmet)
    found = _DECISIONS.get(key)
    if found is None:
        found = _DECISIONS[key] = RelayDecision(allowed, _condition(disabling), _condition(unmet))
    return found


def _outcome(previous: bool, disabling: int, unmet: int) -> RelayDecision:
    """The rule of the tables: any disable row -> off; else all enable rows -> on; else keep."""
    allowed = False if disabling else (True if not unmet else previous)
    return _decision(allowed, disabling, unmet)


def decide_relays_fast(
    previous_charge: bool,
    previous_discharge: bool,
    inputs: BmsInputs,
    soc_pct: float,
    settings: BmsSettings,
) -> RelayDecisions:
    """``decide_relays``, with each comparison made once (same result, tested)."""
    if inputs.comm_error:
        return _BOTH_COMM_ERROR
    v = _V
    lo_v, hi_v = inputs.min_cell_voltage_v, inputs.max_cell_voltage_v
    lo_t, hi_t = inputs.min_temp_c, inputs.max_temp_c
    # Rows shared by both relays.
    common_off = 0
    if lo_t < settings.tmin_c:
        common_off |= v["TEMP_BELOW_TMIN"]
    if hi_t > settings.tmax_c:
        common_off |= v["TEMP_ABOVE_TMAX"]
    common_unmet = 0
    if not lo_t > settings.tmin_c:
        common_unmet |= v["TEMPS_NOT_ABOVE_TMIN"]
    if not hi_t < settings.tmax_c:
        common_unmet |= v["TEMPS_NOT_BELOW_TMAX"]
    # Charge.
    charge_off = common_off
    charge_unmet = common_unmet
    if hi_v >= settings.vmax_v:
        charge_off |= v["CELL_AT_VMAX"]
    if settings.mode is RelayMode.NORMAL:
        if lo_v >= settings.vbalance_v:
            charge_off |= v["ALL_CELLS_AT_VBALANCE"]
        if not hi_v < settings.vbalance_v:
            charge_unmet |= v["CELLS_NOT_BELOW_VBALANCE"]
        if not soc_pct < settings.charge_restart_pct:
            charge_unmet |= v["SOC_NOT_BELOW_CHARGE_RESTART"]
    elif not hi_v < settings.vmax_v:
        charge_unmet |= v["CELLS_NOT_BELOW_VMAX"]
    # Discharge.
    discharge_off = common_off
    discharge_unmet = common_unmet
    if lo_v <= settings.vmin_v:
        discharge_off |= v["CELL_AT_VMIN"]
    if not lo_v > settings.vmin_v:
        discharge_unmet |= v["CELLS_NOT_ABOVE_VMIN"]
    if settings.mode is RelayMode.NORMAL and not soc_pct >= settings.discharge_restart_pct:
        discharge_unmet |= v["SOC_BELOW_DISCHARGE_RESTART"]
    return RelayDecisions(
        _outcome(previous_charge, charge_off, charge_unmet),
        _outcome(previous_discharge, discharge_off, discharge_unmet),
    )


_BOTH_COMM_ERROR = RelayDecisions(_COMM_ERROR, _COMM_ERROR)
