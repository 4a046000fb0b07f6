"""What every exporter publishes: one typed, frozen readout per state, derived once.

``pack_readout`` turns a pack's ``TwinState`` into a ``PackReadout`` and ``fleet_readout`` the
fleet's ``FleetView`` (with the packs' readouts) into a ``FleetReadout``. They are the only
place where the twin's state becomes published values: the Modbus registers, the CAN signals
and the MQTT JSON are renames and encodings of these fields, under the same names
(docs/vocabulary.md), and none of them derives a battery value of its own.

The rules applied here, once for every interface:

- **Stale means "not available".** While the watchdog has fired (or before the first frame)
  every measurement is ``None``, never the last value; the twin's own SOC, counters and
  settings stay (they are the twin's, not the BMS's). The warning E and the communication
  alarm are set.
- **Fail-safe limits.** The current limits are 0 A unless the relay they belong to is
  effectively on (the BMS and the twin allow it, the data is fresh; for the fleet, every pack).
- **Ah from the pack's own nominal voltage** (``BmsSettings.capacity_ah``); the fleet's Ah is
  the sum of its packs'.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from twin.model.limits import LimitFlag
from twin.model.relays import condition_names
from twin.model.status import StatusFlag
from twin.protocol.shadow import FleetView, TwinState

_E = StatusFlag.E
_COMMUNICATION = LimitFlag.COMMUNICATION


class ChargeState(IntEnum):
    """Which way the energy flows (SunSpec 802 ChaSt's values)."""

    DISCHARGING = 3
    CHARGING = 4
    FULL = 5
    HOLDING = 6


#: Below this current (A) the battery is holding: neither charging nor discharging.
HOLDING_BAND_A = 0.5


def charge_state(current_a: float | None, soc_pct: float | None) -> ChargeState | None:
    """The charge state of a battery current (+ = charging) at a SOC; None when unknown."""
    if current_a is None or soc_pct is None:
        return None
    if soc_pct >= 100.0 and current_a >= -HOLDING_BAND_A:
        return ChargeState.FULL
    if current_a > HOLDING_BAND_A:
        return ChargeState.CHARGING
    if current_a < -HOLDING_BAND_A:
        return ChargeState.DISCHARGING
    return ChargeState.HOLDING


@dataclass(frozen=True, slots=True)
class CellReadout:
    """One cell as published: ``None`` while the pack is stale or the cell never reported."""

    index: int
    """1-based."""
    voltage_v: float | None
    temp_c: float | None
    balancing: bool | None
    stale: bool
    """The cell's own data is old, or the whole pack's is."""
    age_s: float | None
    """Time since the cell was last reported."""


@dataclass(frozen=True, slots=True)
class PackReadout:
    """One pack's published values (fields named with their units)."""

    pack_id: str
    sequence: int
    """The state's sequence number (a repeat of a state has the same)."""
    initialized: bool
    """The twin's logic has run on a first frame."""
    stale: bool
    comm_error: bool
    data_age_s: float | None
    frames_received: int
    bytes_rejected: int
    divergent: bool
    # -- relays
    charge_reported: bool | None
    discharge_reported: bool | None
    charge_twin: bool
    discharge_twin: bool
    charge_effective: bool
    discharge_effective: bool
    # -- warnings (the app's lights) and the inverter alarms
    warnings: StatusFlag
    warning_e: bool
    warning_vl: bool
    warning_vh: bool
    warning_tl: bool
    warning_th: bool
    alarms: LimitFlag | None
    """The BMS acted (with the communication alarm while stale); None before the first frame."""
    early_warnings: LimitFlag | None
    # -- the pack's settings
    cell_count: int
    generation: int
    capacity_wh: float
    capacity_ah: float
    nominal_voltage_v: float
    """The pack's nominal voltage: cells x the nominal cell voltage."""
    voltage_rating_v: float
    """The highest pack voltage the settings allow: cells x V-max."""
    current_rating_a: float
    """The largest current the pack's current sensor measures."""
    vmin_v: float
    vmax_v: float
    vbalance_v: float
    tmin_c: float
    tmax_c: float
    charge_restart_pct: float
    discharge_restart_pct: float
    # -- what the BMS reports about itself
    firmware: str | None
    soh_pct: int | None
    charge_cycles: int | None
    # -- the twin's own counts (kept while stale)
    soc_pct: float | None
    soc_calibrated: bool | None
    soc_reported_pct: int | None
    stored_energy_wh: float | None
    harvested_today_wh: float | None
    consumed_today_wh: float | None
    harvested_total_wh: float | None
    consumed_total_wh: float | None
    # -- the inverter limits and requests
    charge_voltage_limit_v: float | None
    charge_current_limit_a: float | None
    discharge_current_limit_a: float | None
    discharge_voltage_limit_v: float | None
    max_charge_power_w: float | None
    """CCL at the nominal voltage."""
    max_discharge_power_w: float | None
    force_charge_request: bool | None
    full_charge_request: bool | None
    # -- measurements (None while stale)
    pack_voltage_v: float | None
    battery_current_a: float | None
    current1_a: float | None
    current2_a: float | None
    battery_power_w: float | None
    charge_state: ChargeState | None
    min_cell_voltage_v: float | None
    min_cell_index: int | None
    max_cell_voltage_v: float | None
    max_cell_index: int | None
    cell_spread_v: float | None
    avg_cell_voltage_v: float | None
    min_temp_c: float | None
    min_temp_index: int | None
    max_temp_c: float | None
    max_temp_index: int | None
    avg_temp_c: float | None
    balancing_cells: int | None
    cells: tuple[CellReadout, ...]
    # -- what a controller set in an emulated pack's plant (None: its own profile; a real
    #    BMS's pack: always None). docs/testbench.md
    plant_inverter_dc_a: float | None = None
    plant_inverter_ac_w: float | None = None
    plant_load_w: float | None = None
    plant_solar_limit_pct: float | None = None
    plant_mains_charger: float | None = None
    # -- why the twin's relay is off: the relay table's rows that hold it off (disable rows
    #    that hold, enable rows that do not), by name; () while the twin has it on.
    charge_blocking: tuple[str, ...] = ()
    discharge_blocking: tuple[str, ...] = ()


def _warning_fields(warnings: StatusFlag) -> tuple[bool, bool, bool, bool, bool]:
    return (
        bool(warnings & StatusFlag.E),
        bool(warnings & StatusFlag.VL),
        bool(warnings & StatusFlag.VH),
        bool(warnings & StatusFlag.TL),
        bool(warnings & StatusFlag.TH),
    )


def _cell_means(cells: list[CellReadout]) -> tuple[float | None, float | None]:
    """The mean cell voltage and temperature of the cells that report one."""
    volts = [c.voltage_v for c in cells if c.voltage_v is not None]
    temps = [c.temp_c for c in cells if c.temp_c is not None]
    return (
        sum(volts) / len(volts) if volts else None,
        sum(temps) / len(temps) if temps else None,
    )


#: The plant setpoints a readout carries: setpoint name (``twin.emulator.plant.PLANT_SETPOINTS``;
#: a test keeps the two equal) -> readout field.
PLANT_FIELDS = {
    "inverter_dc_a": "plant_inverter_dc_a",
    "inverter_ac_w": "plant_inverter_ac_w",
    "load_w": "plant_load_w",
    "solar_limit_pct": "plant_solar_limit_pct",
    "mains_charger": "plant_mains_charger",
}


def pack_readout(state: TwinState, plant: Mapping[str, float] | None = None) -> PackReadout:
    """The published values of one pack's state; ``plant``: the setpoints in effect."""
    settings = state.settings
    logic = state.logic
    stale = state.stale
    fresh = logic is not None and not stale
    inputs = logic.inputs if fresh and logic is not None else None
    warnings = state.warnings
    e, vl, vh, tl, th = _warning_fields(warnings)
    limits = state.limits
    charge_effective = state.effective_charge
    discharge_effective = state.effective_discharge
    nominal_v = settings.vnominal_v * settings.cell_count
    ccl = dcl = None
    if limits is not None:
        ccl = limits.charge_current_a if charge_effective else 0.0
        dcl = limits.discharge_current_a if discharge_effective else 0.0
    cells = tuple(
        CellReadout(
            cell.index,
            cell.voltage_v if not stale else None,
            cell.temp_c if not stale else None,
            cell.balancing if not stale else None,
            cell.stale or stale,
            cell.age_s,
        )
        for cell in state.observation.cells
    )
    current = None if inputs is None else inputs.measured_battery_current_a
    avg_v, avg_t = _cell_means(list(cells))
    info = state.observation.info
    energy = None if logic is None else logic.energy
    return PackReadout(
        pack_id=state.pack_id,
        sequence=state.sequence,
        initialized=logic is not None,
        stale=stale,
        comm_error=state.comm_error,
        data_age_s=state.data_age_s,
        frames_received=state.frames_received,
        bytes_rejected=state.bytes_rejected,
        divergent=state.divergent,
        charge_reported=state.reported_charge,
        discharge_reported=state.reported_discharge,
        charge_twin=state.twin_charge,
        discharge_twin=state.twin_discharge,
        charge_effective=charge_effective,
        discharge_effective=discharge_effective,
        warnings=warnings,
        warning_e=e,
        warning_vl=vl,
        warning_vh=vh,
        warning_tl=tl,
        warning_th=th,
        alarms=None if limits is None else limits.alarms | (_COMMUNICATION if stale else 0),
        early_warnings=None if limits is None else limits.warnings,
        cell_count=settings.cell_count,
        generation=3 if settings.generation.value == "gen3" else 2,
        capacity_wh=settings.capacity_wh,
        capacity_ah=settings.capacity_ah,
        nominal_voltage_v=nominal_v,
        voltage_rating_v=settings.cell_count * settings.vmax_v,
        current_rating_a=settings.sensor.spec.max_a,
        vmin_v=settings.vmin_v,
        vmax_v=settings.vmax_v,
        vbalance_v=settings.vbalance_v,
        tmin_c=settings.tmin_c,
        tmax_c=settings.tmax_c,
        charge_restart_pct=settings.charge_restart_pct,
        discharge_restart_pct=settings.discharge_restart_pct,
        firmware=info.firmware,
        soh_pct=info.soh_pct,
        charge_cycles=info.charge_cycles,
        soc_pct=None if logic is None else logic.soc_pct,
        soc_calibrated=None if logic is None else logic.soc_calibrated,
        soc_reported_pct=state.reported_soc_pct,
        stored_energy_wh=None if logic is None else logic.stored_energy_wh,
        harvested_today_wh=None if energy is None else energy.harvested_today_wh,
        consumed_today_wh=None if energy is None else energy.consumed_today_wh,
        harvested_total_wh=None if energy is None else energy.harvested_total_wh,
        consumed_total_wh=None if energy is None else energy.consumed_total_wh,
        charge_voltage_limit_v=None if limits is None else limits.charge_voltage_v,
        charge_current_limit_a=ccl,
        discharge_current_limit_a=dcl,
        discharge_voltage_limit_v=None if limits is None else limits.discharge_voltage_v,
        max_charge_power_w=None if ccl is None else nominal_v * ccl,
        max_discharge_power_w=None if dcl is None else nominal_v * dcl,
        force_charge_request=None if limits is None else limits.force_charge,
        full_charge_request=None if limits is None else limits.full_charge,
        pack_voltage_v=None if inputs is None else inputs.pack_voltage_v,
        battery_current_a=current,
        current1_a=None if inputs is None else inputs.current1_a,
        current2_a=None if inputs is None else inputs.current2_a,
        battery_power_w=(
            None if inputs is None or current is None else inputs.pack_voltage_v * current
        ),
        charge_state=charge_state(current, None if logic is None else logic.soc_pct),
        min_cell_voltage_v=None if inputs is None else inputs.min_cell_voltage_v,
        min_cell_index=None if inputs is None else inputs.min_cell_index,
        max_cell_voltage_v=None if inputs is None else inputs.max_cell_voltage_v,
        max_cell_index=None if inputs is None else inputs.max_cell_index,
        cell_spread_v=(
            None if inputs is None else inputs.max_cell_voltage_v - inputs.min_cell_voltage_v
        ),
        avg_cell_voltage_v=None if inputs is None else avg_v,
        min_temp_c=None if inputs is None else inputs.min_temp_c,
        min_temp_index=None if inputs is None else inputs.min_temp_index,
        max_temp_c=None if inputs is None else inputs.max_temp_c,
        max_temp_index=None if inputs is None else inputs.max_temp_index,
        avg_temp_c=None if inputs is None else avg_t,
        balancing_cells=None if stale else sum(1 for c in cells if c.balancing),
        cells=cells,
        plant_inverter_dc_a=None if plant is None else plant.get("inverter_dc_a"),
        plant_inverter_ac_w=None if plant is None else plant.get("inverter_ac_w"),
        plant_load_w=None if plant is None else plant.get("load_w"),
        plant_solar_limit_pct=None if plant is None else plant.get("solar_limit_pct"),
        plant_mains_charger=None if plant is None else plant.get("mains_charger"),
        charge_blocking=(
            () if logic is None or state.twin_charge else condition_names(logic.charge.blocking)
        ),
        discharge_blocking=(
            ()
            if logic is None or state.twin_discharge
            else condition_names(logic.discharge.blocking)
        ),
    )


@dataclass(frozen=True, slots=True)
class FleetReadout:
    """The fleet aggregate's published values (the packs are in parallel, relays in series).

    The extreme cells are named by pack and cell: ``min_cell_pack_id`` and ``min_cell_index``.
    """

    pack_ids: tuple[str, ...]
    """Every configured pack, in configuration order."""
    pack_count: int
    initialized: bool
    """At least one pack's logic has run (the aggregate exists)."""
    stale: bool
    """Some pack has no fresh data (its relays count as off)."""
    complete: bool
    """Every configured pack is in the aggregate and none is stale."""
    charge_twin: bool | None
    """Every pack's twin allows charging; None before any pack's logic has run."""
    discharge_twin: bool | None
    charge_effective: bool
    discharge_effective: bool
    warnings: StatusFlag
    warning_e: bool
    warning_vl: bool | None
    warning_vh: bool | None
    warning_tl: bool | None
    warning_th: bool | None
    alarms: LimitFlag | None
    early_warnings: LimitFlag | None
    capacity_wh: float | None
    capacity_ah: float | None
    voltage_rating_v: float
    """The highest pack voltage any pack's settings allow."""
    soc_pct: float | None
    soc_calibrated: bool | None
    stored_energy_wh: float | None
    harvested_today_wh: float | None
    consumed_today_wh: float | None
    harvested_total_wh: float | None
    consumed_total_wh: float | None
    charge_voltage_limit_v: float | None
    charge_current_limit_a: float | None
    discharge_current_limit_a: float | None
    discharge_voltage_limit_v: float | None
    force_charge_request: bool | None
    full_charge_request: bool | None
    pack_voltage_v: float | None
    """The average of the packs (they are in parallel)."""
    battery_current_a: float | None
    current1_a: float | None
    current2_a: float | None
    battery_power_w: float | None
    charge_state: ChargeState | None
    min_cell_voltage_v: float | None
    min_cell_pack_id: str | None
    min_cell_index: int | None
    max_cell_voltage_v: float | None
    max_cell_pack_id: str | None
    max_cell_index: int | None
    cell_spread_v: float | None
    avg_cell_voltage_v: float | None
    min_temp_c: float | None
    min_temp_pack_id: str | None
    min_temp_index: int | None
    max_temp_c: float | None
    max_temp_pack_id: str | None
    max_temp_index: int | None
    avg_temp_c: float | None


def fleet_readout(
    view: FleetView, pack_ids: tuple[str, ...], packs: Mapping[str, PackReadout]
) -> FleetReadout:
    """The published values of the fleet of ``pack_ids`` from its view and the packs' readouts.

    ``packs`` holds the readout of every pack that has a state; the fleet's Ah and averages
    come from them, so each is derived once, per pack.
    """
    fleet = view.state
    stale = view.stale
    safe = stale or not view.complete
    fresh = fleet is not None and not safe
    measured = fleet if fresh else None
    present = [packs[pid] for pid in pack_ids if pid in packs]
    voltage_rating = max((p.voltage_rating_v for p in present), default=0.0)
    cells = [c for p in present for c in p.cells]
    warnings = (fleet.warnings if fleet is not None else StatusFlag.NONE) | (_E if stale else 0)
    e, vl, vh, tl, th = _warning_fields(StatusFlag(warnings))
    limits = None if fleet is None else fleet.limits
    initialized = [p for p in present if p.initialized]
    current = None if measured is None else measured.battery_current_a

    refs = (
        (None, None, None, None)
        if measured is None
        else (
            measured.min_cell_voltage,
            measured.max_cell_voltage,
            measured.min_temp,
            measured.max_temp,
        )
    )
    min_v_ref, max_v_ref, min_t_ref, max_t_ref = refs
    avg_v, avg_t = _cell_means(cells)
    min_v = None if min_v_ref is None else min_v_ref.value
    max_v = None if max_v_ref is None else max_v_ref.value
    return FleetReadout(
        pack_ids=pack_ids,
        pack_count=len(pack_ids),
        initialized=fleet is not None,
        stale=stale,
        complete=view.complete,
        charge_twin=None if fleet is None else fleet.charge_allowed,
        discharge_twin=None if fleet is None else fleet.discharge_allowed,
        charge_effective=view.effective_charge,
        discharge_effective=view.effective_discharge,
        warnings=StatusFlag(warnings),
        warning_e=e,
        warning_vl=None if fleet is None else vl,
        warning_vh=None if fleet is None else vh,
        warning_tl=None if fleet is None else tl,
        warning_th=None if fleet is None else th,
        alarms=None if limits is None else limits.alarms | (_COMMUNICATION if safe else 0),
        early_warnings=None if limits is None else limits.warnings,
        capacity_wh=None if fleet is None else fleet.capacity_wh,
        capacity_ah=sum(p.capacity_ah for p in initialized) if initialized else None,
        voltage_rating_v=voltage_rating,
        soc_pct=None if fleet is None else fleet.soc_pct,
        soc_calibrated=None if fleet is None else fleet.soc_calibrated,
        stored_energy_wh=None if fleet is None else fleet.stored_energy_wh,
        harvested_today_wh=None if fleet is None else fleet.energy.harvested_today_wh,
        consumed_today_wh=None if fleet is None else fleet.energy.consumed_today_wh,
        harvested_total_wh=None if fleet is None else fleet.energy.harvested_total_wh,
        consumed_total_wh=None if fleet is None else fleet.energy.consumed_total_wh,
        charge_voltage_limit_v=None if limits is None else limits.charge_voltage_v,
        charge_current_limit_a=(
            None
            if limits is None
            else 0.0
            if safe or not view.effective_charge
            else limits.charge_current_a
        ),
        discharge_current_limit_a=(
            None
            if limits is None
            else 0.0
            if safe or not view.effective_discharge
            else limits.discharge_current_a
        ),
        discharge_voltage_limit_v=None if limits is None else limits.discharge_voltage_v,
        force_charge_request=None if limits is None else limits.force_charge,
        full_charge_request=None if limits is None else limits.full_charge,
        pack_voltage_v=None if measured is None else measured.pack_voltage_v,
        battery_current_a=current,
        current1_a=None if measured is None else measured.current1_a,
        current2_a=None if measured is None else measured.current2_a,
        battery_power_w=None if measured is None else measured.battery_power_w,
        charge_state=charge_state(current, None if fleet is None else fleet.soc_pct),
        min_cell_voltage_v=min_v,
        min_cell_pack_id=None if min_v_ref is None else min_v_ref.pack_id,
        min_cell_index=None if min_v_ref is None else min_v_ref.cell_index,
        max_cell_voltage_v=max_v,
        max_cell_pack_id=None if max_v_ref is None else max_v_ref.pack_id,
        max_cell_index=None if max_v_ref is None else max_v_ref.cell_index,
        cell_spread_v=None if min_v is None or max_v is None else max_v - min_v,
        avg_cell_voltage_v=None if measured is None else avg_v,
        min_temp_c=None if min_t_ref is None else min_t_ref.value,
        min_temp_pack_id=None if min_t_ref is None else min_t_ref.pack_id,
        min_temp_index=None if min_t_ref is None else min_t_ref.cell_index,
        max_temp_c=None if max_t_ref is None else max_t_ref.value,
        max_temp_pack_id=None if max_t_ref is None else max_t_ref.pack_id,
        max_temp_index=None if max_t_ref is None else max_t_ref.cell_index,
        avg_temp_c=None if measured is None else avg_t,
    )
