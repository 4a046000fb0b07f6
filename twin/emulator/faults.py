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
from dataclasses import dataclass

from twin.emulator.chain import SensorFault
from twin.emulator.simulation import (
    Action,
    BreakChain,
    BypassLoad,
    DeadTemperatureSensor,
    LeakyCell,
    SensorFaultEvent,
    WeakCell,
    WireNoise,
    World,
)

Params = Mapping[str, object]


@dataclass(frozen=True, slots=True)
class FaultKind:
    """One fault: its parameters (name -> default; None = required) and what it does."""

    name: str
    params: tuple[tuple[str, object], ...]
    description: str


#: The faults, by name (the scenario file's event kinds).
FAULTS: dict[str, FaultKind] = {
    kind.name: kind
    for kind in (
        FaultKind(
            "break-chain",
            (("after_board", 1),),
            "the link after board after_board breaks: no frame, E after the watchdog",
        ),
        FaultKind(
            "dead-temperature-sensor",
            (("board", 1), ("fault", "open")),
            "board's sensor reads -40 C (open: Tl) or 85 C (shorted: Th)",
        ),
        FaultKind(
            "wire-noise",
            (("probability", None),),
            "each frame gets one bit flipped with this probability (0..1)",
        ),
        FaultKind(
            "bypass-load",
            (("power_w", None),),
            "a load wired around the current sensors (SOC drifts)",
        ),
        FaultKind(
            "sensor-fault",
            (
                ("sensor", 1),
                ("offset_a", None),
                ("drift_a_per_day", None),
                ("gain_error", None),
                ("reversed", None),
            ),
            "current sensor 1 or 2: offset, drift, gain error or reversed wiring",
        ),
        FaultKind(
            "weak-cell",
            (("cell", None), ("capacity_ah", None)),
            "cell fades to capacity_ah",
        ),
        FaultKind(
            "leaky-cell",
            (("cell", None), ("pct_per_month", None)),
            "cell self-discharges at pct_per_month",
        ),
    )
}

#: The parameter that picks one of several faults of a kind (clear one, or all without it).
_TARGETS = {
    "dead-temperature-sensor": "board",
    "sensor-fault": "sensor",
    "weak-cell": "cell",
    "leaky-cell": "cell",
}

#: Optional parameters of ``sensor-fault`` (at least one of them is given).
_SENSOR_CHANGES = ("offset_a", "drift_a_per_day", "gain_error", "reversed")


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
        self.world.apply(_action(kind.name, values), now_s)
        key = _key(kind.name, values)
        self._active[key] = values
        return values

    def clear(self, name: str, params: Params) -> list[str]:
        """Clear fault ``name`` (a ``board``/``cell``/``sensor`` picks one; else all of them).

        Returns the keys of the faults cleared (possibly none: clearing twice is harmless).
        """
        kind = _kind(name)
        target_name = _TARGETS.get(kind.name)
        unknown = sorted(set(params) - {target_name})
        if unknown:
            raise ValueError(f"{unknown[0]}: not a parameter of clearing {kind.name}")
        target = None
        if target_name is not None and params.get(target_name) is not None:
            target = _integer(target_name, params[target_name], 1, self._upper(target_name))
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


def _kind(name: str) -> FaultKind:
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


def _parameters(kind: FaultKind, params: Params, world: World) -> dict[str, object]:
    """The parameters with their defaults, checked against the pack's size and ranges."""
    allowed = dict(kind.params)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"{unknown[0]}: not a parameter of {kind.name} (it takes {', '.join(allowed)})"
        )
    cells = world.pack.cell_count
    values: dict[str, object] = {}
    for name, default in kind.params:
        value = params.get(name, default)
        if value is None:
            if kind.name == "sensor-fault":
                continue
            raise ValueError(f"{name}: missing ({kind.name} needs it)")
        values[name] = _checked(name, value, cells, len(world.wiring.sensors))
    if kind.name == "sensor-fault" and not any(k in values for k in _SENSOR_CHANGES):
        raise ValueError(f"sensor-fault: give at least one of {', '.join(_SENSOR_CHANGES)}")
    return values


def _checked(name: str, value: object, cells: int, sensors: int) -> object:
    """One parameter, checked (the same ranges as a scenario file's events)."""
    if name == "after_board":
        return _integer(name, value, 1, cells - 1)
    if name in ("board", "cell"):
        return _integer(name, value, 1, cells)
    if name == "sensor":
        return _integer(name, value, 1, sensors)
    if name == "fault":
        if value not in ("open", "shorted"):
            raise ValueError(f"fault: {value!r} is not 'open' or 'shorted'")
        return value
    if name == "reversed":
        if not isinstance(value, bool):
            raise ValueError(f"reversed: {value!r} is not true or false")
        return value
    low, high = {
        "probability": (0.0, 1.0),
        "power_w": (0.0, 1_000_000.0),
        "offset_a": (-50.0, 50.0),
        "drift_a_per_day": (-50.0, 50.0),
        "gain_error": (-0.5, 0.5),
        "capacity_ah": (0.001, 100_000.0),
        "pct_per_month": (0.0, 100.0),
    }[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: {value!r} is not a number")
    if not low <= float(value) <= high:
        raise ValueError(f"{name}: {value} is out of range ({low:g}..{high:g})")
    return float(value)


def _integer(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: {value!r} is not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range ({low}..{high})")
    return value


def _as_int(value: object) -> int:
    assert isinstance(value, int)
    return value


def _float_or_none(values: Mapping[str, object], name: str) -> float | None:
    value = values.get(name)
    return float(value) if isinstance(value, int | float) else None


def _action(name: str, values: Mapping[str, object]) -> Action:
    """The scenario event that injects the fault."""
    if name == "break-chain":
        return BreakChain(_as_int(values["after_board"]))
    if name == "dead-temperature-sensor":
        return DeadTemperatureSensor(_as_int(values["board"]), SensorFault(values["fault"]))
    if name == "wire-noise":
        return WireNoise(_float_or_none(values, "probability") or 0.0)
    if name == "bypass-load":
        return BypassLoad(_float_or_none(values, "power_w") or 0.0)
    if name == "sensor-fault":
        reversed_wiring = values.get("reversed")
        return SensorFaultEvent(
            _as_int(values["sensor"]),
            offset_a=_float_or_none(values, "offset_a"),
            drift_a_per_day=_float_or_none(values, "drift_a_per_day"),
            gain_error=_float_or_none(values, "gain_error"),
            reversed_wiring=reversed_wiring if isinstance(reversed_wiring, bool) else None,
        )
    if name == "weak-cell":
        return WeakCell(_as_int(values["cell"]), _float_or_none(values, "capacity_ah") or 1.0)
    return LeakyCell(_as_int(values["cell"]), _float_or_none(values, "pct_per_month") or 0.0)
