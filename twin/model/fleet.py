"""The fleet aggregate: several packs in parallel, one complete BMS each.

The manuals wire the relays of all packs in series: the system may charge only if every pack
allows it (likewise discharge). Currents, powers and energies add up; SOC is weighted by
capacity; the extreme cells are found across packs and named by (pack, cell).

Limits: parallel packs share the bus voltage, so CVL is the lowest pack CVL and DVL the highest
pack DVL. Current splits between parallel packs roughly in proportion to capacity, so the fleet
may carry ``CCL_i x total capacity / capacity_i`` before pack i reaches its own limit; the fleet
CCL / DCL is the smallest of those, and 0 when any pack forbids it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from twin.model.energy import EnergyCounters
from twin.model.limits import InverterLimits, LimitFlag
from twin.model.logic import PackState
from twin.model.status import StatusFlag


@dataclass(frozen=True, slots=True)
class CellRef:
    """An extreme value and where it is: (pack id, 1-based cell index)."""

    pack_id: str
    cell_index: int
    value: float


@dataclass(frozen=True, slots=True)
class FleetState:
    """The aggregate of all packs at one moment."""

    pack_ids: tuple[str, ...]
    charge_allowed: bool
    discharge_allowed: bool
    comm_error: bool
    warnings: StatusFlag
    pack_voltage_v: float
    """The average of the packs (they are in parallel)."""
    battery_current_a: float | None
    current1_a: float | None
    current2_a: float | None
    battery_power_w: float | None
    soc_pct: float
    soc_calibrated: bool
    stored_energy_wh: float
    capacity_wh: float
    energy: EnergyCounters
    min_cell_voltage: CellRef
    max_cell_voltage: CellRef
    min_temp: CellRef
    max_temp: CellRef
    limits: InverterLimits


def _sum_optional(values: list[float | None]) -> float | None:
    """Sum of the values that are known; None when none is."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _extreme(
    packs: Mapping[str, PackState],
    pick: Callable[[PackState], tuple[float, int]],
    lowest: bool,
) -> CellRef:
    refs = []
    for pack_id, state in packs.items():
        value, index = pick(state)
        refs.append(CellRef(pack_id, index, value))
    return min(refs, key=lambda r: r.value) if lowest else max(refs, key=lambda r: r.value)


def aggregate_fleet(packs: Mapping[str, PackState]) -> FleetState:
    """Aggregate the latest state of every pack (``pack id -> PackState``)."""
    if not packs:
        raise ValueError("a fleet needs at least one pack")
    states = list(packs.values())
    capacity_wh = sum(p.capacity_wh for p in states)
    charge_allowed = all(p.charge_allowed for p in states)
    discharge_allowed = all(p.discharge_allowed for p in states)

    def current_limit(value: Callable[[PackState], float], allowed: bool) -> float:
        if not allowed:
            return 0.0
        return min(value(p) * capacity_wh / p.capacity_wh for p in states)

    warnings = StatusFlag.NONE
    alarms = LimitFlag.NONE
    limit_warnings = LimitFlag.NONE
    for p in states:
        warnings |= p.warnings
        alarms |= p.limits.alarms
        limit_warnings |= p.limits.warnings
    limits = InverterLimits(
        charge_voltage_v=min(p.limits.charge_voltage_v for p in states),
        charge_current_a=current_limit(lambda p: p.limits.charge_current_a, charge_allowed),
        discharge_current_a=current_limit(
            lambda p: p.limits.discharge_current_a, discharge_allowed
        ),
        discharge_voltage_v=max(p.limits.discharge_voltage_v for p in states),
        force_charge=any(p.limits.force_charge for p in states),
        full_charge=any(p.limits.full_charge for p in states),
        alarms=alarms,
        warnings=limit_warnings,
    )
    energy = EnergyCounters(
        harvested_today_wh=sum(p.energy.harvested_today_wh for p in states),
        consumed_today_wh=sum(p.energy.consumed_today_wh for p in states),
        harvested_total_wh=sum(p.energy.harvested_total_wh for p in states),
        consumed_total_wh=sum(p.energy.consumed_total_wh for p in states),
    )
    return FleetState(
        pack_ids=tuple(packs),
        charge_allowed=charge_allowed,
        discharge_allowed=discharge_allowed,
        comm_error=any(p.inputs.comm_error for p in states),
        warnings=warnings,
        pack_voltage_v=sum(p.inputs.pack_voltage_v for p in states) / len(states),
        battery_current_a=_sum_optional([p.inputs.measured_battery_current_a for p in states]),
        current1_a=_sum_optional([p.inputs.current1_a for p in states]),
        current2_a=_sum_optional([p.inputs.current2_a for p in states]),
        battery_power_w=_sum_optional([p.powers.battery_w for p in states]),
        soc_pct=sum(p.soc_pct * p.capacity_wh for p in states) / capacity_wh,
        soc_calibrated=all(p.soc_calibrated for p in states),
        stored_energy_wh=sum(p.stored_energy_wh for p in states),
        capacity_wh=capacity_wh,
        energy=energy,
        min_cell_voltage=_extreme(
            packs, lambda p: (p.inputs.min_cell_voltage_v, p.inputs.min_cell_index), True
        ),
        max_cell_voltage=_extreme(
            packs, lambda p: (p.inputs.max_cell_voltage_v, p.inputs.max_cell_index), False
        ),
        min_temp=_extreme(packs, lambda p: (p.inputs.min_temp_c, p.inputs.min_temp_index), True),
        max_temp=_extreme(packs, lambda p: (p.inputs.max_temp_c, p.inputs.max_temp_index), False),
        limits=limits,
    )
