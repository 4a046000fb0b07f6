"""Property tests of the BMS logic (hypothesis)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.factories import lfp_settings, reading
from twin.model.inputs import BmsInputs
from twin.model.logic import BmsLogic, LogicState
from twin.model.relays import decide_relays, decide_relays_fast
from twin.model.settings import RelayMode
from twin.model.soc import SocState

cell_v = st.floats(1.5, 5.0, allow_nan=False)
temp_c = st.floats(-40.0, 85.0, allow_nan=False)
current = st.one_of(st.none(), st.floats(-8191.875, 8191.875, allow_nan=False))


@st.composite
def readings(draw: st.DrawFn, comm_error: bool | None = None) -> BmsInputs:
    lo, hi = sorted((draw(cell_v), draw(cell_v)))
    tlo, thi = sorted((draw(temp_c), draw(temp_c)))
    return reading(
        vmin=lo,
        vmax=hi,
        tmin=tlo,
        tmax=thi,
        current_a=None,
        current1_a=draw(current),
        current2_a=draw(current),
        pack_v=draw(st.floats(0.0, 83_886.0)),
        comm_error=draw(st.booleans()) if comm_error is None else comm_error,
    )


steps = st.lists(
    st.tuples(readings(), st.floats(0.0, 30.0), st.integers(0, 3)), min_size=1, max_size=40
)


def _logic(mode: RelayMode, soc: float) -> BmsLogic:
    return BmsLogic(lfp_settings(mode=mode), state=LogicState(soc=SocState(soc)))


@given(steps, st.sampled_from(list(RelayMode)), st.floats(0.0, 100.0))
def test_soc_stays_in_range_and_limits_stay_sane(
    sequence: list[tuple[BmsInputs, float, int]], mode: RelayMode, soc0: float
) -> None:
    bms = _logic(mode, soc0)
    t = 0.0
    for inputs, dt, day in sequence:
        t += dt
        state = bms.step(inputs, t, day)
        assert 0.0 <= state.soc_pct <= 100.0
        assert 0.0 <= state.stored_energy_wh <= state.capacity_wh
        limits = state.limits
        assert limits.charge_current_a >= 0.0
        assert limits.discharge_current_a >= 0.0
        assert limits.charge_voltage_v > 0.0
        assert limits.discharge_voltage_v > 0.0
        assert state.energy.harvested_total_wh >= 0.0 and state.energy.consumed_total_wh >= 0.0


@given(steps, readings(comm_error=True), st.sampled_from(list(RelayMode)), st.floats(0, 100))
def test_comm_error_opens_both_relays_whatever_came_before(
    sequence: list[tuple[BmsInputs, float, int]],
    broken: BmsInputs,
    mode: RelayMode,
    soc0: float,
) -> None:
    bms = _logic(mode, soc0)
    t = 0.0
    for inputs, dt, day in sequence:
        t += dt
        bms.step(inputs, t, day)
    state = bms.step(broken, t + 1.0, 0)
    assert not state.charge_allowed and not state.discharge_allowed
    assert state.limits.charge_current_a == 0.0 and state.limits.discharge_current_a == 0.0
    assert state.warnings.name == "E"


@given(
    # Intervals inside the 10 s integration gap (its edge is a float comparison).
    st.lists(st.tuples(readings(comm_error=False), st.floats(0.001, 9.0)), min_size=2, max_size=40)
)
def test_energy_in_minus_out_matches_the_battery_energy(
    sequence: list[tuple[BmsInputs, float]],
) -> None:
    bms = _logic(RelayMode.NORMAL, 50.0)
    t = 0.0
    expected_wh = 0.0
    previous = None
    for inputs, dt in sequence:
        t += dt
        state = bms.step(inputs, t, 1)
        if previous is not None:
            p0 = previous.pack_voltage_v * (previous.measured_battery_current_a or 0.0)
            p1 = inputs.pack_voltage_v * (inputs.measured_battery_current_a or 0.0)
            expected_wh += (p0 + p1) / 2 * dt / 3600
        previous = inputs
    net_wh = state.energy.harvested_total_wh - state.energy.consumed_total_wh
    scale = max(1.0, state.energy.harvested_total_wh + state.energy.consumed_total_wh)
    assert abs(net_wh - expected_wh) <= 1e-9 * scale
    assert state.energy.harvested_today_wh <= state.energy.harvested_total_wh


@given(
    readings(),
    st.booleans(),
    st.booleans(),
    st.floats(0.0, 100.0),
    st.sampled_from(list(RelayMode)),
    st.sampled_from([1.0, 10.5, 90.0, 100.0]),
)
def test_the_fast_relay_decision_is_the_tables_decision(
    inputs: BmsInputs,
    previous_charge: bool,
    previous_discharge: bool,
    soc_pct: float,
    mode: RelayMode,
    restart_pct: float,
) -> None:
    # The discharge restart stays below the charge restart (the settings refuse the rest).
    discharge_pct = min(10.0, restart_pct - 1.0)
    settings = lfp_settings(
        mode=mode, charge_restart_pct=restart_pct, discharge_restart_pct=discharge_pct
    )
    # Exact threshold values as well: the comparisons must be the tables' own (< vs <=).
    for reading_ in (
        inputs,
        inputs.replace(min_cell_voltage_v=2.90, max_cell_voltage_v=3.40),
        inputs.replace(min_cell_voltage_v=3.40, max_cell_voltage_v=3.70),
        inputs.replace(min_temp_c=0.0, max_temp_c=55.0),
    ):
        for soc in (soc_pct, restart_pct, discharge_pct):
            assert decide_relays_fast(
                previous_charge, previous_discharge, reading_, soc, settings
            ) == decide_relays(previous_charge, previous_discharge, reading_, soc, settings)
