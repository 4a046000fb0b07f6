"""Builders for test inputs."""

from __future__ import annotations

from twin.model.inputs import BmsInputs
from twin.model.settings import BmsSettings, RelayMode

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
