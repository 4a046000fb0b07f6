"""Builders for test inputs."""

from __future__ import annotations

from collections.abc import Mapping

from twin.model.inputs import BmsInputs
from twin.model.limits import LimitFlag
from twin.model.settings import BmsSettings, RelayMode
from twin.model.status import StatusFlag
from twin.protocol.readout import FleetReadout, PackReadout, fleet_readout, pack_readout
from twin.protocol.shadow import TwinState, fleet_view

LFP = {"vmin_v": 2.90, "vbalance_v": 3.40, "vmax_v": 3.70}


def lfp_settings(**changes: object) -> BmsSettings:
    """A 16S LiFePO4 gen3 pack: Vmin 2.90, Vbalance 3.40, Vmax 3.70, T 0..55 C, 90 / 10 %."""
    values: dict[str, object] = {
        "cell_count": 16,
        **LFP,
        "capacity_wh": 16 * 3.2 * 100.0,  # 100 Ah at the nominal voltage
        "tmin_c": 0.0,
        "tmax_c": 55.0,
        "charge_restart_pct": 90.0,
        "discharge_restart_pct": 10.0,
        "mode": RelayMode.NORMAL,
    }
    values.update(changes)
    return BmsSettings(**values)  # type: ignore[arg-type]


def reading(
    *,
    vmin: float = 3.30,
    vmax: float = 3.32,
    tmin: float = 25.0,
    tmax: float = 26.0,
    current_a: float | None = 0.0,
    current1_a: float | None = None,
    current2_a: float | None = None,
    pack_v: float | None = None,
    cells: int = 16,
    comm_error: bool = False,
) -> BmsInputs:
    """A reading with the given extremes; I1 / I2 default to a battery current on sensor 1."""
    if current1_a is None and current2_a is None and current_a is not None:
        current1_a, current2_a = (current_a, 0.0) if current_a >= 0 else (0.0, -current_a)
    battery = None
    if current1_a is not None or current2_a is not None:
        battery = (current1_a or 0.0) - (current2_a or 0.0)
    return BmsInputs(
        pack_voltage_v=pack_v if pack_v is not None else cells * (vmin + vmax) / 2,
        current1_a=current1_a,
        current2_a=current2_a,
        battery_current_a=battery,
        min_cell_voltage_v=vmin,
        min_cell_index=1,
        max_cell_voltage_v=vmax,
        max_cell_index=2,
        min_temp_c=tmin,
        min_temp_index=3,
        max_temp_c=tmax,
        max_temp_index=4,
        cell_count=cells,
        comm_error=comm_error,
    )


def readouts(
    states: Mapping[str, TwinState], pack_ids: tuple[str, ...] | None = None
) -> tuple[dict[str, PackReadout], FleetReadout]:
    """The readouts the hub would publish for ``states`` (every pack configured by default)."""
    ids = pack_ids if pack_ids is not None else tuple(states)
    packs = {pid: pack_readout(state) for pid, state in states.items()}
    return packs, fleet_readout(fleet_view(dict(states), ids), ids, packs)


def fleet_sample(**changes: object) -> FleetReadout:
    """A fresh one-pack fleet readout (pack1, 16S LiFePO4 280 Ah at 52.28 V, 60 %)."""
    values: dict[str, object] = {
        "pack_ids": ("pack1",),
        "pack_count": 1,
        "initialized": True,
        "stale": False,
        "complete": True,
        "charge_twin": True,
        "discharge_twin": True,
        "charge_effective": True,
        "discharge_effective": True,
        "warnings": StatusFlag.NONE,
        "warning_e": False,
        "warning_vl": False,
        "warning_vh": False,
        "warning_tl": False,
        "warning_th": False,
        "alarms": LimitFlag.NONE,
        "early_warnings": LimitFlag.NONE,
        "capacity_wh": 280.0 * 51.2,
        "capacity_ah": 280.0,
        "voltage_rating_v": 16 * 3.65,
        "soc_pct": 60.0,
        "soc_calibrated": True,
        "stored_energy_wh": 0.6 * 280.0 * 51.2,
        "harvested_today_wh": 0.0,
        "consumed_today_wh": 0.0,
        "harvested_total_wh": 1_520_000.0,
        "consumed_total_wh": 1_490_000.0,
        "charge_voltage_limit_v": 55.2,
        "charge_current_limit_a": 50.0,
        "discharge_current_limit_a": 80.0,
        "discharge_voltage_limit_v": 48.0,
        "force_charge_request": False,
        "full_charge_request": False,
        "pack_voltage_v": 52.28,
        "battery_current_a": 0.4,
        "current1_a": 0.4,
        "current2_a": 0.0,
        "battery_power_w": 52.28 * 0.4,
        "charge_state": None,
        "min_cell_voltage_v": 3.31,
        "min_cell_pack_id": "pack1",
        "min_cell_index": 7,
        "max_cell_voltage_v": 3.34,
        "max_cell_pack_id": "pack1",
        "max_cell_index": 12,
        "cell_spread_v": 0.03,
        "avg_cell_voltage_v": 3.325,
        "min_temp_c": 19.0,
        "min_temp_pack_id": "pack1",
        "min_temp_index": 3,
        "max_temp_c": 23.0,
        "max_temp_pack_id": "pack1",
        "max_temp_index": 9,
        "avg_temp_c": 22.0,
    }
    values.update(changes)
    return FleetReadout(**values)  # type: ignore[arg-type]
