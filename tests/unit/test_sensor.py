"""Current sensors: ranges, rounding, blind spot, errors, zero calibration, wiring."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.factories import lfp_settings
from twin.emulator.pack import Pack, PackSpec, Spread
from twin.emulator.sensor import CurrentSensor, SensorErrors, SensorWiring
from twin.model.inputs import BmsInputs
from twin.model.logic import BmsLogic
from twin.model.settings import CurrentSensorSettings, SensorKind


def gen3(loops: int = 1, sensors: int = 2) -> CurrentSensorSettings:
    return CurrentSensorSettings(loops=loops, sensor_count=sensors)


def gen2(rating_a: int = 100, blind_spot: bool = True) -> CurrentSensorSettings:
    return CurrentSensorSettings(kind=SensorKind.GEN2, rating_a=rating_a, blind_spot=blind_spot)


@pytest.mark.parametrize(
    ("loops", "true_a", "expected_a"),
    [
        (1, 1.23, 1.25),  # fine range: 50 mA steps, rounded (not truncated)
        (1, 1.224, 1.20),
        (1, 19.97, 19.95),
        (1, 26.0, 26.25),  # coarse range above 20 A: 1.25 A steps
        (1, -26.0, -26.25),
        (1, 600.0, 500.0),  # clipped at the maximum
        (2, 1.23, 1.225),  # 25 mA steps
        (4, 1.23, 1.225),  # 12.5 mA steps
        (4, 6.0, 5.9375),  # coarse above 5 A: 312.5 mA steps
        (4, 6.2, 6.25),
        (4, 200.0, 125.0),
    ],
)
def test_gen3_ranges_and_rounding(loops: int, true_a: float, expected_a: float) -> None:
    assert CurrentSensor(gen3(loops)).read(true_a) == pytest.approx(expected_a)


@pytest.mark.parametrize(
    ("loops", "true_a", "counted"),
    [(1, 0.25, False), (1, 0.30, False), (1, 0.35, True), (2, 0.25, True), (4, 0.25, True)],
)
def test_the_blind_spot_hides_small_currents(loops: int, true_a: float, counted: bool) -> None:
    reading = CurrentSensor(gen3(loops)).read(-true_a)
    assert (reading != 0.0) is counted
    if counted:
        assert reading == pytest.approx(-true_a, abs=0.05 / loops)


@pytest.mark.parametrize(
    ("rating", "true_a", "expected"),
    [(100, 1.3, 1.5), (100, 1.2, 0.0), (25, 0.35, 0.375), (25, 0.3, 0.0)],
)
def test_gen2_types(rating: int, true_a: float, expected: float) -> None:
    assert CurrentSensor(gen2(rating)).read(true_a) == pytest.approx(expected)


def test_gen2_blind_spot_can_be_switched_off() -> None:
    assert CurrentSensor(gen2(100, blind_spot=False)).read(0.6) == 0.5


def test_gain_error_offset_and_drift() -> None:
    errors = SensorErrors(gain_error=0.01, offset_a=0.2, drift_a_per_day=0.1)
    sensor = CurrentSensor(gen3(1), errors)
    assert sensor.read(10.0) == pytest.approx(10.3)  # 10.1 + 0.2
    assert sensor.read(0.0) == 0.0  # the offset hides in the blind spot ...
    sensor.advance(2 * 86_400)  # ... until the drift pushes it out: 0.2 + 0.2 = 0.4 A
    assert sensor.read(0.0) == pytest.approx(0.4)
    assert CurrentSensor(gen3(4), errors).read(0.0) == 0.0  # 4 loops: 0.05 A of real current


def test_temperature_moves_the_offset() -> None:
    sensor = CurrentSensor(gen3(1), SensorErrors(tempco_a_per_k=0.02))
    assert sensor.read(5.0, temp_c=25.0) == pytest.approx(5.0)
    assert sensor.read(5.0, temp_c=45.0) == pytest.approx(5.4)


def test_zero_calibration_bakes_in_what_flows() -> None:
    sensor = CurrentSensor(gen3(1), SensorErrors(offset_a=0.2))
    sensor.calibrate(0.0)  # done right: the offset is gone
    assert sensor.read(1.0) == pytest.approx(1.0)
    sensor.calibrate(2.0)  # done while a 2 A load ran
    assert sensor.read(2.0) == 0.0
    assert sensor.read(0.0) == pytest.approx(-2.0)
    assert sensor.read(10.0) == pytest.approx(8.0)


def test_typical_errors_are_seeded_and_small() -> None:
    assert SensorErrors.typical(7) == SensorErrors.typical(7) != SensorErrors.typical(8)
    errors = SensorErrors.typical(7)
    assert abs(errors.gain_error) <= 0.005 and abs(errors.offset_a) <= 0.06


def test_a_reversed_sensor_reads_the_wrong_sign() -> None:
    assert CurrentSensor(gen3(1), reversed_wiring=True).read(12.0) == -12.0


@given(st.floats(-499.0, 499.0), st.sampled_from([1, 2, 4]))
def test_a_perfect_sensor_is_within_half_a_step(true_a: float, loops: int) -> None:
    sensor = CurrentSensor(gen3(loops))
    spec = sensor.settings.spec
    reading = sensor.read(true_a)
    if abs(true_a) > spec.max_a:
        return
    step = spec.low_resolution_a if abs(true_a) * loops < 20.0 else spec.high_resolution_a
    if reading == 0.0:
        assert abs(true_a) <= spec.blind_spot_a + step / 2
    else:
        assert abs(reading - true_a) <= step / 2 + 1e-9


def test_two_sensors_and_one() -> None:
    two = SensorWiring(CurrentSensor(gen3(1)), CurrentSensor(gen3(1)))
    reading = two.read(charger_a=31.0, load_a=12.0)  # 31 A is coarse: 1.25 A steps
    assert (reading.current1_a, reading.current2_a, reading.battery_current_a) == (
        31.25,
        12.0,
        19.25,
    )
    one = SensorWiring(CurrentSensor(gen3(1, sensors=1)))
    reading = one.read(charger_a=30.0, load_a=12.0)
    assert (reading.current1_a, reading.current2_a, reading.battery_current_a) == (18.0, None, 18.0)
    with pytest.raises(ValueError, match="exactly when the settings say two sensors"):
        SensorWiring(CurrentSensor(gen3(1, sensors=1)), CurrentSensor(gen3(1)))


def _standby_run(loops: int, hours: float) -> tuple[float, float]:
    """(true SOC lost, BMS SOC lost) in % over ``hours`` of a 0.25 A standby load."""
    settings = lfp_settings(capacity_wh=16 * 3.2 * 280.0, sensor=gen3(loops))
    pack = Pack(PackSpec(cell_count=16, capacity_ah=280.0, spread=Spread.MATCHED, seed=2))
    for i in range(1, 17):
        pack.set_self_discharge(i, 0.0)
    wiring = SensorWiring(CurrentSensor(settings.sensor), CurrentSensor(settings.sensor))
    logic = BmsLogic(settings)
    true_start = pack.soc_pct
    bms_start = None
    dt_s = 10.0
    for k in range(int(hours * 3600 / dt_s)):
        pack.step(-0.25, dt_s, vbalance_v=3.40)
        reading = wiring.read(charger_a=0.0, load_a=0.25)
        v = pack.voltage_v
        state = logic.step(
            BmsInputs(
                pack_voltage_v=pack.pack_voltage_v,
                current1_a=reading.current1_a,
                current2_a=reading.current2_a,
                battery_current_a=reading.battery_current_a,
                min_cell_voltage_v=float(v.min()),
                min_cell_index=int(v.argmin()) + 1,
                max_cell_voltage_v=float(v.max()),
                max_cell_index=int(v.argmax()) + 1,
                min_temp_c=25.0,
                min_temp_index=1,
                max_temp_c=25.0,
                max_temp_index=1,
                cell_count=16,
            ),
            now_s=k * dt_s,
            local_day=0,
        )
        if bms_start is None:
            bms_start = state.soc_pct
    assert bms_start is not None
    return true_start - pack.soc_pct, bms_start - state.soc_pct


def test_a_standby_load_in_the_blind_spot_drains_the_pack_unnoticed() -> None:
    true_lost, bms_lost = _standby_run(loops=1, hours=24.0)
    assert true_lost == pytest.approx(6.0 / 280 * 100, rel=0.02)  # 6 Ah/day = 2.1 %
    assert bms_lost == 0.0


def test_with_four_loops_the_standby_load_is_counted() -> None:
    true_lost, bms_lost = _standby_run(loops=4, hours=24.0)
    assert bms_lost == pytest.approx(true_lost, rel=0.06)
