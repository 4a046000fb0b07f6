"""The fault panel: faults injected into a running emulated pack from outside, and cleared."""

from __future__ import annotations

import pytest

from twin.emulator import Scenario
from twin.emulator.chain import SensorFault
from twin.emulator.faults import FAULTS, FaultPanel
from twin.emulator.pack import PackSpec, Spread
from twin.emulator.simulation import World
from twin.model.settings import BmsSettings

SETTINGS = BmsSettings(cell_count=8, vmin_v=2.9, vbalance_v=3.4, vmax_v=3.7, capacity_wh=7168)


def _world() -> World:
    return World(
        Scenario(
            name="faults",
            settings=SETTINGS,
            duration_s=60.0,
            pack=PackSpec(cell_count=8, spread=Spread.MATCHED, initial_soc_pct=50.0),
        )
    )


def _reversed(world: World) -> bool:
    return world.wiring.sensors[0].reversed_wiring


def _frames(world: World, steps: int) -> int:
    return sum(world.advance() is not None for _ in range(steps))


def test_a_broken_chain_sends_nothing_until_it_is_cleared() -> None:
    world = _world()
    panel = FaultPanel(world)
    assert _frames(world, 4) == 4
    assert panel.inject("break-chain", {"after_board": 3}, 4.0) == {"after_board": 3}
    assert panel.active() == {"break-chain": {"after_board": 3}}
    assert _frames(world, 4) == 0
    assert panel.clear("break-chain", {}) == ["break-chain"]
    assert panel.active() == {}
    assert _frames(world, 4) == 4
    assert panel.clear("break-chain", {}) == []  # clearing twice is harmless


def test_a_dead_temperature_sensor_reads_the_end_of_the_range_until_replaced() -> None:
    world = _world()
    panel = FaultPanel(world)
    panel.inject("dead-temperature-sensor", {"board": 2, "fault": "shorted"}, 0.0)
    panel.inject("dead_temperature_sensor", {"board": 5}, 0.0)  # _ or -, default open
    assert world.chain.dead_sensors == {2: SensorFault.SHORTED, 5: SensorFault.OPEN}
    assert sorted(panel.active()) == ["dead-temperature-sensor#2", "dead-temperature-sensor#5"]
    assert panel.clear("dead-temperature-sensor", {"board": 2}) == ["dead-temperature-sensor#2"]
    assert world.chain.dead_sensors == {5: SensorFault.OPEN}
    panel.clear("dead-temperature-sensor", {})
    assert world.chain.dead_sensors == {}


def test_clearing_puts_back_what_the_pack_had_before() -> None:
    world = _world()
    panel = FaultPanel(world)
    sensor = world.wiring.sensors[0]
    errors, capacity, leak = (
        sensor.errors,
        world.pack.capacity_ah[2],
        world.pack.self_discharge_pct_per_month[2],
    )
    panel.inject("sensor-fault", {"offset_a": 2.5, "reversed": True}, 0.0)
    panel.inject("weak-cell", {"cell": 3, "capacity_ah": 100.0}, 0.0)
    panel.inject("leaky-cell", {"cell": 3, "pct_per_month": 20.0}, 0.0)
    panel.inject("wire-noise", {"probability": 0.5}, 0.0)
    panel.inject("bypass-load", {"power_w": 300}, 0.0)
    assert sensor.errors.offset_a == 2.5 and _reversed(world)
    assert world.pack.capacity_ah[2] == 100.0 and world.pack.self_discharge_pct_per_month[2] == 20.0
    assert world.noise_probability == 0.5 and world.plant.spec.bypass_load_w == 300.0
    for name in ("sensor-fault", "weak-cell", "leaky-cell", "wire-noise", "bypass-load"):
        assert panel.clear(name, {})
    assert sensor.errors == errors and not _reversed(world)
    assert world.pack.capacity_ah[2] == capacity
    assert world.pack.self_discharge_pct_per_month[2] == leak
    assert world.noise_probability == 0.0 and world.plant.spec.bypass_load_w == 0.0
    assert panel.active() == {}


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("melt-down", {}, "no fault 'melt-down'"),
        ("break-chain", {"after_board": 8}, r"after_board: 8 is out of range \(allowed 1..7\)"),
        ("break-chain", {"after_board": "3"}, "after_board: '3' is not a whole number"),
        ("break-chain", {"board": 3}, "board: not a parameter of break-chain"),
        ("dead-temperature-sensor", {"fault": "melted"}, "fault: 'melted' is not"),
        ("wire-noise", {}, "probability: missing"),
        ("wire-noise", {"probability": 1.5}, r"probability: 1.5 is out of range \(allowed 0..1\)"),
        ("wire-noise", {"probability": True}, "probability: True is not a number"),
        (
            "sensor-fault",
            {"sensor": 3, "offset_a": 1},
            r"sensor: 3 is out of range \(allowed 1..2\)",
        ),
        ("sensor-fault", {"sensor": 1}, "give at least one of offset_a"),
        ("sensor-fault", {"reversed": "yes"}, "reversed: 'yes' is not true or false"),
        ("weak-cell", {"cell": 9, "capacity_ah": 1}, r"cell: 9 is out of range \(allowed 1..8\)"),
    ],
)
def test_bad_faults_are_refused_with_the_parameter_named(
    name: str, params: dict[str, object], message: str
) -> None:
    world = _world()
    panel = FaultPanel(world)
    with pytest.raises(ValueError, match=message):
        panel.inject(name, params, 0.0)
    assert panel.active() == {}
    assert world.chain.broken_after is None


def test_clearing_takes_only_the_parameter_that_picks_one() -> None:
    panel = FaultPanel(_world())
    with pytest.raises(ValueError, match="after_board: not a parameter of clearing"):
        panel.clear("break-chain", {"after_board": 2})
    with pytest.raises(ValueError, match=r"board: 9 is out of range"):
        panel.clear("dead-temperature-sensor", {"board": 9})


def test_every_fault_is_a_scenario_event_kind() -> None:
    # The same names as [[event]] kind in a scenario file (docs/emulator.md).
    from twin.emulator.events import EVENT_KINDS

    assert set(FAULTS) <= set(EVENT_KINDS)
