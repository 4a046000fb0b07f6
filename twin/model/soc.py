"""State of charge: Coulomb counting and the full / empty recalibrations (bms-behaviour.md 6)."""

from __future__ import annotations

from typing import ClassVar, Final

from twin.model.inputs import BmsInputs
from twin.model.settings import BmsSettings, RelayMode
from twin.model.values import Value

SOC_MIN_PCT = 0.0
SOC_MAX_PCT = 100.0


def clamp_soc(soc_pct: float) -> float:
    """SOC limited to 0..100 %."""
    return min(SOC_MAX_PCT, max(SOC_MIN_PCT, soc_pct))


class SocState(Value):
    """What the BMS remembers about its state of charge."""

    FIELDS: ClassVar = ("soc_pct", "calibrated", "time_since_full_s", "below_vmin_since_s")
    __slots__ = FIELDS

    def __init__(
        self,
        soc_pct: float = 50.0,
        calibrated: bool = False,
        time_since_full_s: float | None = None,
        below_vmin_since_s: float | None = None,
    ) -> None:
        self.soc_pct: Final = soc_pct
        self.calibrated: Final = calibrated
        """False until the first full recalibration (the app's red exclamation mark, bit 7)."""
        self.time_since_full_s: Final = time_since_full_s
        """Time counted since the last full recalibration; None if there never was one."""
        self.below_vmin_since_s: Final = below_vmin_since_s
        """When the empty-recalibration condition began to hold (gen3), or None."""
        if not SOC_MIN_PCT <= self.soc_pct <= SOC_MAX_PCT:
            raise ValueError(f"soc_pct {self.soc_pct} is out of range (0..100)")


def count_charge(soc_pct: float, current_a: float, dt_s: float, settings: BmsSettings) -> float:
    """SOC after ``current_a`` (+ = charging) flowed for ``dt_s`` seconds; clamped to 0..100.

    Charge going in is counted at the charge efficiency; the capacity setting in Wh is turned
    into Ah with the nominal cell voltage.
    """
    charge_ah = current_a * dt_s / 3600.0
    if charge_ah > 0:
        charge_ah *= settings.charge_efficiency_pct / 100.0
    return clamp_soc(soc_pct + 100.0 * charge_ah / settings.capacity_ah)


def is_full(inputs: BmsInputs, settings: BmsSettings) -> bool:
    """The full-recalibration condition.

    Normal mode: all cell voltages >= V-balance. Critical mode: pack voltage >= V-balance x
    number of cells (the average cell >= V-balance).
    """
    if inputs.comm_error:
        return False
    if settings.mode is RelayMode.NORMAL:
        return inputs.min_cell_voltage_v >= settings.vbalance_v
    return inputs.pack_voltage_v >= settings.vbalance_v * settings.cell_count


def recalibrate_full(state: SocState) -> SocState:
    """SOC = 100 %, calibrated, and the "time since full" clock restarted."""
    return SocState(SOC_MAX_PCT, True, 0.0, state.below_vmin_since_s)


def track_empty(
    state: SocState,
    inputs: BmsInputs,
    discharge_allowed: bool,
    now_s: float,
    settings: BmsSettings,
) -> SocState:
    """The empty recalibration (gen3).

    A cell below V-min for a longer time while discharging is not allowed sets SOC = 0 %. It
    does not clear the "not calibrated" flag: only a full recalibration does.
    """
    holds = (
        settings.empty_recalibration
        and not inputs.comm_error
        and not discharge_allowed
        and inputs.min_cell_voltage_v < settings.vmin_v
    )
    # Positional constructors rather than dataclasses.replace: this runs every cycle, twice per
    # step in a closed-loop simulation, and replace() costs several times more.
    if not holds:
        if state.below_vmin_since_s is None:
            return state
        return SocState(state.soc_pct, state.calibrated, state.time_since_full_s, None)
    since = now_s if state.below_vmin_since_s is None else state.below_vmin_since_s
    if since == state.below_vmin_since_s and now_s - since < settings.empty_recalibration_s:
        return state
    soc_pct = SOC_MIN_PCT if now_s - since >= settings.empty_recalibration_s else state.soc_pct
    return SocState(soc_pct, state.calibrated, state.time_since_full_s, since)
