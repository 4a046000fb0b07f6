"""Faults an operator injects into a running emulated pack from outside, and clears again.

``twin run`` with an emulated chain lets an integrator break the chain, kill a temperature
sensor or drift a current sensor while a PLC or an inverter is connected, and watch it react
(MQTT ``<prefix>/<pack>/emulator/fault/<name>``). The faults are the scenario file's event kinds
(``docs/emulator.md``) with the same parameters; ``clear`` puts back what the pack had before.

Pure: parameters come in as a mapping (decoded JSON), problems go out as ``ValueError`` naming
the parameter; the caller passes the emulated time.
"""

from __future__ import annotations

from collections.abc import Mapping

from twin.emulator.events import (
    EVENT_KINDS,
    SENSOR_CHANGES,
    BypassLoad,
    EventKind,
    build_action,
    check_integer,
    check_parameter,
)
from twin.emulator.simulation import World

Params = Mapping[str, object]

#: The faults, by name: the event kinds that can be injected into a live pack.
FAULTS: dict[str, EventKind] = {name: kind for name, kind in EVENT_KINDS.items() if kind.live}


class FaultPanel:
    """The faults injected into one ``World`` and what it had before them."""

    def __init__(self, world: World) -> None:
        self.world = world
        pack = world.pack
        self._capacity_ah = pack.capacity_ah.copy()
        self._self_discharge = pack.self_discharge_pct_per_month.copy()
        self._sensors = [(s.errors, s.reversed_wiring) for s in world.wiring.sensors]
        self._bypass_w = world.plant.spec.bypass_load_w
        self._active: dict[str, dict[str, object]] = {}

    def active(self) -> dict[str, dict[str, object]]:
        """The faults in effect now, with their parameters (after the defaults)."""
        return {name: dict(params) for name, params in sorted(self._active.items())}

    def inject(self, name: str, params: Params, now_s: float) -> dict[str, object]:
        """Inject fault ``name``; returns its parameters. ``ValueError`` names a bad one."""
        kind = _kind(name)
        values = _parameters(kind, params, self.world)
        self.world.apply(build_action(kind.name, values), now_s)
        key = _key(kind.name, values)
        self._active[key] = values
        return values

    def clear(self, name: str, params: Params) -> list[str]:
        """Clear fault ``name`` (a ``board``/``cell``/``sensor`` picks one; else all of them).

        Returns the keys of the faults cleared (possibly none: clearing twice is harmless).
        """
        kind = _kind(name)
        target_name = kind.target
        unknown = sorted(set(params) - {target_name})
        if unknown:
            raise ValueError(f"{unknown[0]}: not a parameter of clearing {kind.name}")
        target = None
        if target_name is not None and params.get(target_name) is not None:
            target = check_integer(target_name, params[target_name], 1, self._upper(target_name))
        cleared = [
            key
            for key, values in self._active.items()
            if key.split("#")[0] == kind.name
            and (target is None or target_name is None or values.get(target_name) == target)
        ]
        world, chain, pack = self.world, self.world.chain, self.world.pack
        for key in cleared:
            values = self._active.pop(key)
            if kind.name == "break-chain":
                chain.repair_link()
            elif kind.name == "dead-temperature-sensor":
                chain.revive_temperature_sensor(_as_int(values["board"]))
            elif kind.name == "wire-noise":
                world.noise_probability = 0.0
            elif kind.name == "bypass-load":
                world.apply(BypassLoad(self._bypass_w), 0.0)
            elif kind.name == "sensor-fault":
                index = _as_int(values["sensor"]) - 1
                errors, reversed_wiring = self._sensors[index]
                sensor = world.wiring.sensors[index]
                sensor.errors, sensor.reversed_wiring = errors, reversed_wiring
            elif kind.name == "weak-cell":
                cell = _as_int(values["cell"])
                pack.fade_capacity(cell, float(self._capacity_ah[cell - 1]))
            elif kind.name == "leaky-cell":
                cell = _as_int(values["cell"])
                pack.set_self_discharge(cell, float(self._self_discharge[cell - 1]))
        return cleared

    def _upper(self, name: str) -> int:
        if name == "sensor":
            return len(self.world.wiring.sensors)
        return self.world.pack.cell_count


def _kind(name: str) -> EventKind:
    kind = FAULTS.get(name.replace("_", "-"))
    if kind is None:
        raise ValueError(f"no fault {name!r} (one of {', '.join(FAULTS)})")
    return kind


def _key(name: str, values: Mapping[str, object]) -> str:
    """One entry per board, cell or sensor; one for the faults of the whole pack."""
    for target in ("board", "cell", "sensor"):
        if target in values:
            return f"{name}#{values[target]}"
    return name


#: Live defaults where a scenario event would need the parameter: the first board or sensor.
_LIVE_DEFAULTS = {"after_board": 1, "board": 1, "sensor": 1}


def _parameters(kind: EventKind, params: Params, world: World) -> dict[str, object]:
    """The parameters with their defaults, checked against the pack's size and ranges."""
    defaults: dict[str, object] = {name: _LIVE_DEFAULTS.get(name) for name in kind.required}
    defaults.update(kind.optional)
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise ValueError(
            f"{unknown[0]}: not a parameter of {kind.name} (it takes {', '.join(defaults)})"
        )
    cells, sensors = world.pack.cell_count, len(world.wiring.sensors)
    values: dict[str, object] = {}
    for name, default in defaults.items():
        value = params.get(name, default)
        if value is None:
            if name in kind.required:
                raise ValueError(f"{name}: missing ({kind.name} needs it)")
            continue
        values[name] = check_parameter(name, value, cells, sensors)
    if kind.name == "sensor-fault" and not any(k in values for k in SENSOR_CHANGES):
        raise ValueError(f"sensor-fault: give at least one of {', '.join(SENSOR_CHANGES)}")
    return values


def _as_int(value: object) -> int:
    assert isinstance(value, int)
    return value
