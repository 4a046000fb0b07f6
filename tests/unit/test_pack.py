"""Pack physics: OCV tables, the 1RC cell, spreads, balancing, board heat, self-consumption."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from twin.emulator.pack import (
    OCV_TABLES,
    CellOverride,
    Pack,
    PackSpec,
    Spread,
    board_currents_a,
    ocv_v,
)
from twin.model.settings import Chemistry, Generation


def quiet_pack(**changes: object) -> Pack:
    """A matched pack with no self-discharge, so that only what a test does moves it."""
    fields: dict[str, object] = {"spread": Spread.MATCHED, "seed": 1, **changes}
    pack = Pack(PackSpec(**fields))  # type: ignore[arg-type]
    for i in range(1, pack.cell_count + 1):
        pack.set_self_discharge(i, 0.0)
    return pack


@pytest.mark.parametrize("chemistry", list(Chemistry))
def test_ocv_curves_are_strictly_increasing(chemistry: Chemistry) -> None:
    xs, ys = OCV_TABLES[chemistry]
    assert len(xs) == len(ys)
    assert all(b > a for a, b in itertools.pairwise(xs))
    assert all(b > a for a, b in itertools.pairwise(ys))
    fine = ocv_v(chemistry, np.linspace(-0.03, 1.03, 2001))
    assert np.all(np.diff(fine) > 0)


@pytest.mark.parametrize(
    ("chemistry", "vmin", "vbalance", "vmax"),
    [
        (Chemistry.LIFEPO4, 2.90, 3.40, 3.70),
        (Chemistry.LTO, 2.15, 2.60, 2.70),
        (Chemistry.NMC, 3.43, 4.00, 4.10),
        (Chemistry.LI_ION, 3.43, 4.10, 4.15),
    ],
)
def test_the_manual_thresholds_are_reachable(
    chemistry: Chemistry, vmin: float, vbalance: float, vmax: float
) -> None:
    """Every preset threshold lies inside the curve (the tails make V-max reachable)."""
    low, high = ocv_v(chemistry, np.array([-0.03, 1.03]))
    assert low < vmin < vbalance < vmax < high


def test_a_rested_cell_converges_to_its_ocv() -> None:
    pack = quiet_pack(cell_count=4, capacity_ah=100.0)
    for _ in range(600):
        pack.step(100.0, 1.0, vbalance_v=None)  # 1C charge for 10 min
    loaded = pack.voltage_v - ocv_v(Chemistry.LIFEPO4, pack.soc)
    assert np.all(loaded > 0.005)  # R0 x I + v1: the terminal voltage sits above the OCV
    for _ in range(400):  # 10 x tau at rest
        pack.step(0.0, 1.0, vbalance_v=None)
    rested = pack.voltage_v - ocv_v(Chemistry.LIFEPO4, pack.soc)
    assert np.all(np.abs(rested) < 1e-4)


def test_coulomb_counting_of_the_cells_is_exact_without_losses() -> None:
    pack = quiet_pack(cell_count=4, capacity_ah=50.0, initial_soc_pct=50.0)
    before = pack.soc.copy()
    for _ in range(1800):
        pack.step(-25.0, 1.0, vbalance_v=None)  # 12.5 Ah out of 50 Ah
    assert pack.soc - before == pytest.approx(-12.5 / pack.capacity_ah, abs=1e-9)


def test_a_large_step_is_stable() -> None:
    pack = quiet_pack(cell_count=4)
    for _ in range(20):
        pack.step(50.0, 600.0, vbalance_v=3.40)  # 10-minute steps
    assert np.all(np.isfinite(pack.voltage_v))
    assert np.all(np.abs(pack.board_temp_c - 25.0) < 40.0)


def test_balancing_removes_charge_only_above_vbalance() -> None:
    overrides = (CellOverride(1, soc_pct=99.9), CellOverride(2, soc_pct=99.9))
    pack = quiet_pack(cell_count=4, capacity_ah=10.0, initial_soc_pct=80.0, overrides=overrides)
    pack.step(0.0, 1.0, vbalance_v=3.40)  # OCV of the two full cells is above 3.40 V
    before = pack.soc.copy()
    for _ in range(120):
        pack.step(0.0, 1.0, vbalance_v=3.40)
    assert list(pack.balancing) == [True, True, False, False]
    assert np.all(pack.balance_current_a[:2] > 0.9)
    drained_ah = (before - pack.soc) * pack.capacity_ah
    assert drained_ah[:2] == pytest.approx([120 / 3600 * 1.0] * 2, rel=0.05)  # ~1 A for 2 min
    assert drained_ah[2:] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_balancing_stops_with_hysteresis_and_when_switched_off() -> None:
    pack = quiet_pack(cell_count=2, capacity_ah=2.0, initial_soc_pct=99.5)
    pack.step(0.0, 1.0, vbalance_v=3.40)
    assert pack.balancing.all()
    seen_between = False
    for _ in range(10_000):
        before = pack.voltage_v.copy()  # what the boards compare with V-balance
        pack.step(0.0, 1.0, vbalance_v=3.40)
        seen_between |= bool(np.any((before < 3.40) & pack.balancing))
        if not pack.balancing.any():
            break
    assert not pack.balancing.any()
    # It kept bleeding just below V-balance, and stopped only below V-balance - 10 mV.
    assert seen_between
    assert np.all(before < 3.40 - 0.010)
    pack.step(0.0, 1.0, vbalance_v=None)
    assert not pack.balancing.any()


def test_a_balancing_board_reads_much_hotter_than_its_cell() -> None:
    overrides = (CellOverride(1, soc_pct=99.9),)
    pack = quiet_pack(cell_count=4, capacity_ah=280.0, initial_soc_pct=60.0, overrides=overrides)
    for _ in range(600):  # 10 minutes, cell 1 above V-balance
        pack.step(0.0, 1.0, vbalance_v=3.40)
    assert pack.balancing[0]
    rise = pack.board_temp_c[0] - pack.cell_temp_c[0]
    assert rise > 8.0  # "much higher than the real cell temperature"
    assert pack.cell_temp_c[0] - 25.0 < 1.0  # the cell itself barely warms
    assert np.all(np.abs(pack.board_temp_c[1:] - 25.0) < 0.5)  # the others stay put


def test_cold_cells_have_a_higher_resistance() -> None:
    warm = quiet_pack(cell_count=2, ambient_c=25.0)
    cold = quiet_pack(cell_count=2, ambient_c=0.0)
    for pack in (warm, cold):
        pack.step(-100.0, 1.0, vbalance_v=None)
    drop_warm = ocv_v(Chemistry.LIFEPO4, warm.soc) - warm.voltage_v
    drop_cold = ocv_v(Chemistry.LIFEPO4, cold.soc) - cold.voltage_v
    assert drop_cold / drop_warm == pytest.approx(2.1, rel=0.1)  # Arrhenius, 20 kJ/mol


def test_joule_heat_warms_the_cells_slowly() -> None:
    pack = quiet_pack(cell_count=2, capacity_ah=100.0)
    for _ in range(3600):
        pack.step(-100.0 if pack.soc.min() > 0.1 else 0.0, 1.0, vbalance_v=None)
    assert 25.0 < pack.cell_temp_c.mean() < 35.0


def test_self_consumption_drains_the_begin_and_end_cells_faster() -> None:
    currents = board_currents_a(Generation.GEN3, 16, sensor_count=2)
    assert currents[0] == 0.0016 and currents[1:-1] == (0.0010,) * 14 and currents[-1] == 0.0016
    pack = Pack(PackSpec(cell_count=16, spread=Spread.MATCHED, seed=3), currents)
    for i in range(1, 17):
        pack.set_self_discharge(i, 0.0)
    start = pack.soc.copy()
    for _ in range(30):
        pack.step(0.0, 86_400.0, vbalance_v=3.40)  # a month at rest, one step a day
    lost_mah = (start - pack.soc) * pack.capacity_ah * 1000
    assert lost_mah[0] == pytest.approx(1.6 * 720, rel=1e-6)
    assert lost_mah[5] == pytest.approx(1.0 * 720, rel=1e-6)
    assert lost_mah[-1] > lost_mah[5]


def test_gen2_boards_and_the_phone() -> None:
    assert board_currents_a(Generation.GEN2, 4, sensor_count=1) == (0.002, 0.001, 0.001, 0.002)
    assert board_currents_a(Generation.GEN3, 3, phone_connected=True)[-1] == 0.011


def test_a_leaky_cell_falls_behind() -> None:
    pack = quiet_pack(cell_count=4, capacity_ah=100.0)
    pack.set_self_discharge(3, 10.0)  # 10 %/month at 25 C
    start = pack.soc.copy()
    for _ in range(30):
        pack.step(0.0, 86_400.0, vbalance_v=None)
    lost = start - pack.soc
    assert lost[2] == pytest.approx(0.10, rel=0.02)
    assert np.all(lost[[0, 1, 3]] < 1e-9)


def test_spread_presets_are_seeded_and_ordered() -> None:
    def spread_of(preset: Spread, seed: int) -> float:
        pack = Pack(PackSpec(cell_count=200, spread=preset, seed=seed))
        return float(np.std(pack.capacity_ah) / np.mean(pack.capacity_ah))

    assert spread_of(Spread.TYPICAL, 5) == spread_of(Spread.TYPICAL, 5)
    assert spread_of(Spread.MATCHED, 5) < spread_of(Spread.TYPICAL, 5) < spread_of(Spread.BAD, 5)
    bad = Pack(PackSpec(cell_count=16, spread=Spread.BAD, seed=9))
    assert np.min(bad.capacity_ah) == pytest.approx(0.9 * 280.0)
    assert np.max(bad.self_discharge_pct_per_month) == 8.0


def test_overrides_and_a_weak_cell() -> None:
    spec = PackSpec(cell_count=4, overrides=(CellOverride(2, capacity_ah=200.0, soc_pct=30.0),))
    pack = Pack(spec)
    assert pack.capacity_ah[1] == 200.0 and pack.soc[1] == 0.30
    pack.fade_capacity(4, 100.0)
    assert pack.capacity_ah[3] == 100.0
    for _ in range(3600):
        pack.step(20.0, 1.0, vbalance_v=None)
    assert (pack.soc[3] - pack.soc[0]) > 0.1  # the weak cell fills much faster


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"cell_count": 1}, "cell_count 1 is out of range"),
        ({"capacity_ah": 0.0}, "capacity_ah must be > 0"),
        ({"initial_soc_pct": 120.0}, "initial_soc_pct 120.0 is out of range"),
        ({"overrides": (CellOverride(17),)}, "override for cell 17: no such cell"),
    ],
)
def test_bad_specs_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PackSpec(**changes)  # type: ignore[arg-type]


def test_faults_name_the_cell() -> None:
    pack = Pack(PackSpec(cell_count=4))
    with pytest.raises(ValueError, match="no cell 5"):
        pack.fade_capacity(5, 10.0)
    with pytest.raises(ValueError, match="dt_s must be > 0"):
        pack.step(0.0, 0.0, vbalance_v=None)
