"""Every row of both relay tables (bms-behaviour.md section 5, the manuals' "Algorithm" pages).

The rows are transcribed here from the manuals, independently of twin.model.relays. Settings:
Vmin 2.90, Vbalance 3.40, Vmax 3.70, Tmin 0, Tmax 55, charge restart 90 %, discharge restart
10 %. Baseline: cells 3.30..3.32 V, 25..26 C, SOC 50 %: every enable row holds, no disable row.

For each row we check the relay from both previous states:
- a disable row that holds -> OFF from ON and from OFF;
- an enable row that does not hold (and no disable row holds) -> the relay KEEPS its state;
- an enable row whose negation is itself a disable row ("all > V-min" / "a cell <= V-min") has
  no keep zone: breaking it switches the relay OFF.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.factories import lfp_settings, reading
from twin.model.logic import BmsLogic, LogicState, PackState
from twin.model.relays import Condition, decide_relays
from twin.model.settings import RelayMode
from twin.model.soc import SocState


@dataclass(frozen=True)
class Case:
    mode: RelayMode
    relay: str  # "charge" or "discharge"
    row: str
    kind: str  # "enable" (the row is broken) or "disable" (the row holds)
    changes: dict[str, object] = field(default_factory=dict)
    soc_pct: float = 50.0
    expect: Condition = Condition.NONE
    keep: bool = False  # True: the relay keeps its state; False: it goes OFF


N, C = RelayMode.NORMAL, RelayMode.CRITICAL

# fmt: off
CASES = [
    # ---- Normal mode, charge relay ----------------------------------------------------------
    Case(N, "charge", "E1 all cell voltages < V-balance", "enable",
         {"vmax": 3.45}, expect=Condition.CELLS_NOT_BELOW_VBALANCE, keep=True),
    Case(N, "charge", "E2 SOC < charge restart", "enable",
         soc_pct=90.0, expect=Condition.SOC_NOT_BELOW_CHARGE_RESTART, keep=True),
    Case(N, "charge", "E3 cell temperature > T-min", "enable",
         {"tmin": 0.0}, expect=Condition.TEMPS_NOT_ABOVE_TMIN, keep=True),
    Case(N, "charge", "E4 cell temperature < T-max", "enable",
         {"tmax": 55.0}, expect=Condition.TEMPS_NOT_BELOW_TMAX, keep=True),
    Case(N, "charge", "D1 cell voltage >= V-max", "disable",
         {"vmax": 3.70}, expect=Condition.CELL_AT_VMAX),
    Case(N, "charge", "D2 all cell voltages >= V-balance", "disable",
         {"vmin": 3.40, "vmax": 3.45}, expect=Condition.ALL_CELLS_AT_VBALANCE),
    Case(N, "charge", "D3 cell temperature < T-min", "disable",
         {"tmin": -0.5}, expect=Condition.TEMP_BELOW_TMIN),
    Case(N, "charge", "D4 cell temperature > T-max", "disable",
         {"tmax": 55.5}, expect=Condition.TEMP_ABOVE_TMAX),
    Case(N, "charge", "D5 no cell communication (E5 broken)", "disable",
         {"comm_error": True}, expect=Condition.NO_COMMUNICATION),
    # ---- Normal mode, discharge (load) relay ------------------------------------------------
    Case(N, "discharge", "E1 all cell voltages > V-min (complement of D1)", "enable",
         {"vmin": 2.90}, expect=Condition.CELLS_NOT_ABOVE_VMIN),
    Case(N, "discharge", "E2 SOC >= discharge restart", "enable",
         soc_pct=9.9, expect=Condition.SOC_BELOW_DISCHARGE_RESTART, keep=True),
    Case(N, "discharge", "E3 cell temperature > T-min", "enable",
         {"tmin": 0.0}, expect=Condition.TEMPS_NOT_ABOVE_TMIN, keep=True),
    Case(N, "discharge", "E4 cell temperature < T-max", "enable",
         {"tmax": 55.0}, expect=Condition.TEMPS_NOT_BELOW_TMAX, keep=True),
    Case(N, "discharge", "D1 cell voltage <= V-min", "disable",
         {"vmin": 2.85}, expect=Condition.CELL_AT_VMIN),
    Case(N, "discharge", "D2 cell temperature < T-min", "disable",
         {"tmin": -0.5}, expect=Condition.TEMP_BELOW_TMIN),
    Case(N, "discharge", "D3 cell temperature > T-max", "disable",
         {"tmax": 55.5}, expect=Condition.TEMP_ABOVE_TMAX),
    Case(N, "discharge", "D4 no cell communication (E5 broken)", "disable",
         {"comm_error": True}, expect=Condition.NO_COMMUNICATION),
    # ---- Critical mode, charge relay --------------------------------------------------------
    Case(C, "charge", "E1 all cell voltages < V-max (complement of D1)", "enable",
         {"vmax": 3.70}, expect=Condition.CELLS_NOT_BELOW_VMAX),
    Case(C, "charge", "E2 cell temperature > T-min", "enable",
         {"tmin": 0.0}, expect=Condition.TEMPS_NOT_ABOVE_TMIN, keep=True),
    Case(C, "charge", "E3 cell temperature < T-max", "enable",
         {"tmax": 55.0}, expect=Condition.TEMPS_NOT_BELOW_TMAX, keep=True),
    Case(C, "charge", "D1 cell voltage >= V-max", "disable",
         {"vmax": 3.75}, expect=Condition.CELL_AT_VMAX),
    Case(C, "charge", "D2 cell temperature < T-min", "disable",
         {"tmin": -0.5}, expect=Condition.TEMP_BELOW_TMIN),
    Case(C, "charge", "D3 cell temperature > T-max", "disable",
         {"tmax": 55.5}, expect=Condition.TEMP_ABOVE_TMAX),
    Case(C, "charge", "D4 no cell communication (E4 broken)", "disable",
         {"comm_error": True}, expect=Condition.NO_COMMUNICATION),
    # ---- Critical mode, discharge (load) relay ----------------------------------------------
    Case(C, "discharge", "E1 all cell voltages > V-min (complement of D1)", "enable",
         {"vmin": 2.90}, expect=Condition.CELLS_NOT_ABOVE_VMIN),
    Case(C, "discharge", "E2 cell temperature > T-min", "enable",
         {"tmin": 0.0}, expect=Condition.TEMPS_NOT_ABOVE_TMIN, keep=True),
    Case(C, "discharge", "E3 cell temperature < T-max", "enable",
         {"tmax": 55.0}, expect=Condition.TEMPS_NOT_BELOW_TMAX, keep=True),
    Case(C, "discharge", "D1 cell voltage <= V-min", "disable",
         {"vmin": 2.50}, expect=Condition.CELL_AT_VMIN),
    Case(C, "discharge", "D2 cell temperature < T-min", "disable",
         {"tmin": -0.5}, expect=Condition.TEMP_BELOW_TMIN),
    Case(C, "discharge", "D3 cell temperature > T-max", "disable",
         {"tmax": 55.5}, expect=Condition.TEMP_ABOVE_TMAX),
    Case(C, "discharge", "D4 no cell communication (E4 broken)", "disable",
         {"comm_error": True}, expect=Condition.NO_COMMUNICATION),
]
# fmt: on


def _decide(case: Case, previous: bool) -> tuple[bool, Condition]:
    settings = lfp_settings(mode=case.mode)
    inputs = reading(**case.changes)  # type: ignore[arg-type]
    decisions = decide_relays(previous, previous, inputs, case.soc_pct, settings)
    decision = decisions.charge if case.relay == "charge" else decisions.discharge
    return decision.allowed, decision.blocking


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.mode}-{c.relay}-{c.row}")
@pytest.mark.parametrize("previous", [False, True], ids=["from-off", "from-on"])
def test_relay_table_row(case: Case, previous: bool) -> None:
    allowed, blocking = _decide(case, previous)
    expected = previous if case.keep else False
    assert allowed is expected
    assert case.expect in blocking


@pytest.mark.parametrize("mode", [N, C])
@pytest.mark.parametrize("relay", ["charge", "discharge"])
@pytest.mark.parametrize("previous", [False, True])
def test_all_enable_rows_switch_on(mode: RelayMode, relay: str, previous: bool) -> None:
    allowed, blocking = _decide(Case(mode, relay, "all enable", "enable"), previous)
    assert allowed is True
    assert blocking == Condition.NONE


def test_every_row_of_the_manual_is_covered() -> None:
    # Normal: charge 5 enable + 5 disable, discharge 5 + 4; critical: charge 4 + 4, discharge
    # 4 + 4. The communication enable row is exercised by its disable twin (D5 / D4).
    counts: dict[tuple[RelayMode, str, str], int] = {}
    for case in CASES:
        key = (case.mode, case.relay, case.kind)
        counts[key] = counts.get(key, 0) + 1
    assert counts == {
        (N, "charge", "enable"): 4,
        (N, "charge", "disable"): 5,
        (N, "discharge", "enable"): 4,
        (N, "discharge", "disable"): 4,
        (C, "charge", "enable"): 3,
        (C, "charge", "disable"): 4,
        (C, "discharge", "enable"): 3,
        (C, "discharge", "disable"): 4,
    }


@pytest.mark.parametrize("mode", [N, C])
def test_critical_mode_ignores_soc_and_full(mode: RelayMode) -> None:
    settings = lfp_settings(mode=mode)
    full = reading(vmin=3.42, vmax=3.45)
    d = decide_relays(True, False, full, 100.0, settings)
    empty_soc = decide_relays(False, False, reading(), 0.0, settings)
    if mode is C:
        assert d.charge.allowed and d.discharge.allowed
        assert empty_soc.discharge.allowed and empty_soc.charge.allowed
    else:
        assert not d.charge.allowed  # all cells >= V-balance: full
        assert not empty_soc.discharge.allowed  # SOC below discharge restart: stays off


# ---- Hysteresis sequences through BmsLogic --------------------------------------------------

CAPACITY_AH = 100.0  # lfp_settings(): 16 x 3.2 V x 100 Ah


class Run:
    """Drive a BmsLogic through time with a fixed reading per phase."""

    def __init__(self, mode: RelayMode, soc_pct: float = 50.0) -> None:
        self.logic = BmsLogic(lfp_settings(mode=mode), state=LogicState(soc=SocState(soc_pct)))
        self.t = 0.0
        self.state = self.logic.step(reading(), self.t, 1)

    def hold(self, seconds: float, **changes: object) -> PackState:
        end = self.t + seconds
        while self.t < end:
            self.t += 1.0
            self.state = self.logic.step(reading(**changes), self.t, 1)  # type: ignore[arg-type]
        return self.state

    def until(
        self, predicate: Callable[[PackState], bool], limit_s: float = 100_000, **changes: object
    ) -> PackState:
        start = self.t
        while not predicate(self.state):
            assert self.t - start < limit_s, "condition never reached"
            self.hold(1.0, **changes)
        return self.state


def test_normal_mode_charge_hysteresis() -> None:
    run = Run(N)
    s = run.state
    assert s.charge_allowed  # SOC 50 < 90 and all cells < V-balance
    # Charging until all cells reach V-balance: full recalibration and charge off.
    s = run.hold(5, current_a=50.0, vmin=3.40, vmax=3.44)
    assert s.soc_pct == 100.0 and s.soc_calibrated
    assert not s.charge_allowed
    assert Condition.ALL_CELLS_AT_VBALANCE in s.charge.disabling
    # Cells settle below V-balance: the charge relay stays off while SOC >= charge restart.
    s = run.hold(60, current_a=-20.0)
    assert not s.charge_allowed
    assert s.charge.unmet == Condition.SOC_NOT_BELOW_CHARGE_RESTART
    # Discharge on until SOC < 90 %: then (and only then) charging is allowed again.
    s = run.until(lambda s: s.soc_pct < 90.0, current_a=-20.0)
    assert s.charge_allowed
    # ... but not while a cell is still at or above V-balance, even below the restart SOC.
    run2 = Run(N, soc_pct=80.0)
    s = run2.state
    s = run2.hold(3, vmin=3.40, vmax=3.42)  # full -> off, SOC 100
    s = run2.hold(1, vmin=3.30, vmax=3.32)
    assert not s.charge_allowed


def test_normal_mode_discharge_hysteresis() -> None:
    run = Run(N, soc_pct=20.0)
    s = run.state
    assert s.discharge_allowed
    # A cell reaches V-min: the load relay opens.
    s = run.hold(2, current_a=-50.0, vmin=2.90, vmax=3.00)
    assert not s.discharge_allowed
    # After the empty-recalibration time below V-min (gen3), SOC is 0 %.
    s = run.hold(70, current_a=0.0, vmin=2.85, vmax=3.00)
    assert s.soc_pct == 0.0
    # Cells recover above V-min, SOC still below the discharge restart: stays off.
    s = run.hold(10, current_a=0.0, vmin=3.10, vmax=3.15)
    assert not s.discharge_allowed
    assert s.discharge.unmet == Condition.SOC_BELOW_DISCHARGE_RESTART
    # Charging until SOC >= 10 %: the load relay closes again.
    s = run.until(lambda s: s.discharge_allowed, current_a=50.0, vmin=3.20, vmax=3.25)
    assert s.soc_pct == pytest.approx(10.0, abs=50.0 / 3600 / CAPACITY_AH * 100 * 1.5)


def test_critical_mode_hysteresis_ignores_soc() -> None:
    run = Run(C, soc_pct=95.0)
    s = run.state
    assert s.charge_allowed and s.discharge_allowed
    s = run.hold(5, current_a=20.0, vmin=3.42, vmax=3.50)  # full: critical keeps charging
    assert s.charge_allowed and s.soc_pct == 100.0
    s = run.hold(2, current_a=20.0, vmin=3.45, vmax=3.70)  # a cell at V-max: off
    assert not s.charge_allowed
    s = run.hold(2, current_a=0.0, vmin=3.35, vmax=3.60)  # below V-max again: on, SOC irrelevant
    assert s.charge_allowed and s.soc_pct == 100.0
    s = run.hold(2, current_a=-20.0, vmin=2.90, vmax=3.00)
    assert not s.discharge_allowed
    s = run.hold(2, current_a=0.0, vmin=2.95, vmax=3.00)  # above V-min: on at once
    assert s.discharge_allowed


@pytest.mark.parametrize(
    ("soc_pct", "charge_on", "discharge_on"),
    [
        (10.0, True, True),  # SOC >= discharge restart: the load relay may switch on at 10 %
        (9.999, True, False),
        (89.999, True, True),  # SOC < charge restart: charging may switch on below 90 %
        (90.0, False, True),
    ],
)
def test_restart_boundaries_are_the_manuals_comparisons(
    soc_pct: float, charge_on: bool, discharge_on: bool
) -> None:
    d = decide_relays(False, False, reading(), soc_pct, lfp_settings())
    assert (d.charge.allowed, d.discharge.allowed) == (charge_on, discharge_on)
