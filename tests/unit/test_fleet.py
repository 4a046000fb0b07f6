"""The fleet aggregate of parallel packs."""

from __future__ import annotations

import pytest

from tests.factories import lfp_settings, reading
from twin.model.fleet import CellRef, aggregate_fleet
from twin.model.limits import LimitFlag, LimitSettings
from twin.model.logic import BmsLogic, LogicState, PackState
from twin.model.soc import SocState


def pack(soc: float, capacity_wh: float, **r: object) -> PackState:
    bms = BmsLogic(
        lfp_settings(capacity_wh=capacity_wh),
        LimitSettings(max_charge_current_a=100.0, max_discharge_current_a=100.0),
        LogicState(soc=SocState(soc)),
    )
    return bms.step(reading(**r), 0.0, 1)  # type: ignore[arg-type]


def test_relays_in_series_sums_and_capacity_weighted_soc() -> None:
    a = pack(80.0, 10_000.0, current1_a=20.0, current2_a=5.0, vmin=3.30, vmax=3.33)
    b = pack(20.0, 5_000.0, current1_a=10.0, current2_a=2.0, vmin=3.28, vmax=3.35, tmax=30.0)
    fleet = aggregate_fleet({"a": a, "b": b})
    assert fleet.soc_pct == pytest.approx((80 * 10_000 + 20 * 5_000) / 15_000)
    assert fleet.capacity_wh == 15_000.0
    assert fleet.stored_energy_wh == pytest.approx(8_000 + 1_000)
    assert fleet.battery_current_a == pytest.approx(23.0)
    assert fleet.current1_a == pytest.approx(30.0)
    assert fleet.min_cell_voltage == CellRef("b", 1, 3.28)
    assert fleet.max_cell_voltage == CellRef("b", 2, 3.35)
    assert fleet.max_temp == CellRef("b", 4, 30.0)
    assert fleet.charge_allowed and fleet.discharge_allowed
    # CCL: 100 A per pack; pack b carries a third of the fleet current, so the fleet may carry
    # 300 A before b reaches its 100 A, and a reaches its limit at 150 A: the fleet CCL is 150.
    assert fleet.limits.charge_current_a == pytest.approx(150.0)
    assert fleet.limits.charge_voltage_v == pytest.approx(55.2)


def test_one_pack_forbidding_stops_the_fleet() -> None:
    ok = pack(50.0, 10_000.0)
    low = pack(50.0, 10_000.0, vmin=2.85)  # load relay off
    fleet = aggregate_fleet({"ok": ok, "low": low})
    assert fleet.charge_allowed and not fleet.discharge_allowed
    assert fleet.limits.discharge_current_a == 0.0
    assert LimitFlag.CELL_UNDER_VOLTAGE in fleet.limits.alarms
    assert fleet.min_cell_voltage.pack_id == "low"


def test_a_pack_with_comm_error_opens_both_fleet_relays() -> None:
    fleet = aggregate_fleet({"a": pack(50.0, 1000.0), "b": pack(50.0, 1000.0, comm_error=True)})
    assert fleet.comm_error
    assert not fleet.charge_allowed and not fleet.discharge_allowed
    assert fleet.limits.charge_current_a == 0.0 == fleet.limits.discharge_current_a


def test_empty_fleet_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one pack"):
        aggregate_fleet({})
