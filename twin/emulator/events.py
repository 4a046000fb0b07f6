"""What can happen to an emulated pack: the event kinds of scenarios and live faults, once.

A scenario file's ``[[event]]`` (``twin.config``) and a fault injected into a running emulated
pack (``twin.emulator.faults``, over MQTT) are the same kinds with the same parameters, the
same ranges and the same messages: ``EVENT_KINDS`` declares them, ``check_parameter`` checks one
value, and ``build_action`` turns checked values into the ``Action`` the world applies.

Pure: problems go out as ``ValueError`` naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from twin.emulator.chain import SensorFault
from twin.emulator.plant import PLANT_SETPOINTS
from twin.model.settings import BmsSettings

# ---- the actions ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BreakChain:
    """The link after board ``after_board`` breaks (a connector falls out)."""

    after_board: int


@dataclass(frozen=True, slots=True)
class RepairChain:
    """The broken link is plugged back in."""


@dataclass(frozen=True, slots=True)
class DeadTemperatureSensor:
    """Board ``board``'s temperature sensor fails."""

    board: int
    fault: SensorFault = SensorFault.OPEN


@dataclass(frozen=True, slots=True)
class WeakCell:
    """Cell ``cell`` fades to ``capacity_ah``."""

    cell: int
    capacity_ah: float


@dataclass(frozen=True, slots=True)
class LeakyCell:
    """Cell ``cell`` starts to self-discharge at ``pct_per_month``."""

    cell: int
    pct_per_month: float


@dataclass(frozen=True, slots=True)
class SensorFaultEvent:
    """Current sensor ``sensor`` (1 or 2) changes: offset, drift, gain or wiring direction."""

    sensor: int
    offset_a: float | None = None
    drift_a_per_day: float | None = None
    gain_error: float | None = None
    reversed_wiring: bool | None = None


@dataclass(frozen=True, slots=True)
class WireNoise:
    """From now on each frame is corrupted (one bit flipped) with ``probability``."""

    probability: float


@dataclass(frozen=True, slots=True)
class BypassLoad:
    """A load of ``power_w`` wired around the current sensors (0 removes it)."""

    power_w: float


@dataclass(frozen=True, slots=True)
class ChangeSettings:
    """New BMS settings from the app, e.g. ``(("charge_restart_pct", 95.0),)``.

    ``target`` says whose settings change: the BMS (End board), the twin, or both.
    """

    changes: tuple[tuple[str, float | bool | str], ...]
    target: str = "both"


@dataclass(frozen=True, slots=True)
class SetPlant:
    """A controller sets the plant: ``setpoint`` to ``value`` for ``timeout_s``.

    ``value`` None: back to the profile; ``timeout_s`` None: until changed.
    """

    setpoint: str
    value: float | None = None
    timeout_s: float | None = None


@dataclass(frozen=True, slots=True)
class Calibrate:
    """Zero calibration of the current sensors, whatever current flows at that moment."""


Action = (
    BreakChain
    | RepairChain
    | DeadTemperatureSensor
    | WeakCell
    | LeakyCell
    | SensorFaultEvent
    | WireNoise
    | BypassLoad
    | ChangeSettings
    | SetPlant
    | Calibrate
)


@dataclass(frozen=True, slots=True)
class TimedEvent:
    """``action`` happens ``at_s`` seconds into the run."""

    at_s: float
    action: Action


# ---- the kinds -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventKind:
    """One kind of event: its parameters and whether it can be injected into a live pack."""

    name: str
    required: tuple[str, ...]
    """Parameters it needs."""
    optional: tuple[tuple[str, object], ...]
    """Parameters it may take, with their defaults (None: left out when not given)."""
    description: str
    live: bool = True
    """It can be injected into a running emulated pack (and cleared again)."""
    target: str | None = None
    """The parameter that picks one of several faults of the kind (clear one, or all)."""


#: Every event kind, by the name scenario files and fault topics use.
EVENT_KINDS: dict[str, EventKind] = {
    kind.name: kind
    for kind in (
        EventKind(
            "break-chain",
            ("after_board",),
            (),
            "the link after board after_board breaks: no frame, E after the watchdog",
        ),
        EventKind("repair-chain", (), (), "the broken link is plugged back in", live=False),
        EventKind(
            "dead-temperature-sensor",
            ("board",),
            (("fault", "open"),),
            "board's sensor reads -40 C (open: Tl) or 85 C (shorted: Th)",
            target="board",
        ),
        EventKind(
            "weak-cell",
            ("cell", "capacity_ah"),
            (),
            "cell fades to capacity_ah",
            target="cell",
        ),
        EventKind(
            "leaky-cell",
            ("cell", "pct_per_month"),
            (),
            "cell self-discharges at pct_per_month",
            target="cell",
        ),
        EventKind(
            "sensor-fault",
            ("sensor",),
            (
                ("offset_a", None),
                ("drift_a_per_day", None),
                ("gain_error", None),
                ("reversed", None),
            ),
            "current sensor 1 or 2: offset, drift, gain error or reversed wiring",
            target="sensor",
        ),
        EventKind(
            "wire-noise",
            ("probability",),
            (),
            "each frame gets one bit flipped with this probability (0..1)",
        ),
        EventKind(
            "bypass-load",
            ("power_w",),
            (),
            "a load wired around the current sensors (SOC drifts)",
        ),
        EventKind(
            "settings",
            ("settings",),
            (("target", "both"),),
            "new BMS settings from the app (the BMS's, the twin's or both)",
            live=False,
        ),
        EventKind(
            "plant",
            ("setpoint",),
            (("value", None), ("timeout_s", None)),
            "a controller sets the plant: setpoint (inverter_dc_a, inverter_ac_w, load_w, "
            "solar_limit_pct, mains_charger) to value, for timeout_s; no value: the profile",
            live=False,
        ),
        EventKind(
            "calibrate",
            (),
            (),
            "zero calibration of the current sensors",
            live=False,
        ),
    )
}

#: The optional parameters of ``sensor-fault``: at least one of them is given.
SENSOR_CHANGES = ("offset_a", "drift_a_per_day", "gain_error", "reversed")

#: The range of each numeric parameter.
PARAMETER_RANGES: dict[str, tuple[float, float]] = {
    "probability": (0.0, 1.0),
    "power_w": (0.0, 1_000_000.0),
    "offset_a": (-50.0, 50.0),
    "drift_a_per_day": (-50.0, 50.0),
    "gain_error": (-0.5, 0.5),
    "capacity_ah": (0.001, 100_000.0),
    "pct_per_month": (0.0, 100.0),
}


def check_parameter(name: str, value: object, cells: int, sensors: int) -> object:
    """One parameter of a pack with ``cells`` cells and ``sensors`` current sensors, checked.

    Returns the value as the action takes it; ``ValueError`` says what is wrong with it.
    """
    if name == "after_board":
        return check_integer(name, value, 1, cells - 1)
    if name in ("board", "cell"):
        return check_integer(name, value, 1, cells)
    if name == "sensor":
        if value == 2 and sensors == 1 and not isinstance(value, bool):
            raise ValueError("sensor: 2, but the BMS has one current sensor")
        return check_integer(name, value, 1, sensors)
    if name == "fault":
        if value not in ("open", "shorted"):
            raise ValueError(f"fault: {value!r} is not 'open' or 'shorted'")
        return value
    if name == "reversed":
        if not isinstance(value, bool):
            raise ValueError(f"reversed: {value!r} is not true or false")
        return value
    if name == "target":
        if value not in ("both", "bms", "twin"):
            raise ValueError(f"target: {value!r} is not 'both', 'bms' or 'twin'")
        return value
    if name == "setpoint":
        if value not in PLANT_SETPOINTS:
            raise ValueError(
                f"setpoint: {value!r} is not a plant setpoint (one of {', '.join(PLANT_SETPOINTS)})"
            )
        return value
    if name == "value":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"value: {value!r} is not a number")
        return float(value)
    if name == "timeout_s":
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"timeout_s: {value!r} must be a number > 0")
        return float(value)
    if name == "settings":
        if not isinstance(value, Mapping):
            raise ValueError("settings: not a table of settings")
        return tuple(sorted(value.items()))
    low, high = PARAMETER_RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name}: {value!r} is not a number")
    if not low <= float(value) <= high:
        raise ValueError(f"{name}: {value} is out of range (allowed {low:g}..{high:g})")
    return float(value)


def check_integer(name: str, value: object, low: int, high: int) -> int:
    """A whole number in ``low..high``; ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: {value!r} is not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{name}: {value} is out of range (allowed {low}..{high})")
    return value


def _int(values: Mapping[str, object], name: str) -> int:
    value = values[name]
    assert isinstance(value, int)
    return value


def _float(values: Mapping[str, object], name: str) -> float | None:
    value = values.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def build_action(kind: str, values: Mapping[str, object]) -> Action:
    """The action of event ``kind`` with its checked parameters."""
    if kind == "break-chain":
        return BreakChain(_int(values, "after_board"))
    if kind == "repair-chain":
        return RepairChain()
    if kind == "dead-temperature-sensor":
        return DeadTemperatureSensor(
            _int(values, "board"), SensorFault(str(values.get("fault", "open")))
        )
    if kind == "weak-cell":
        return WeakCell(_int(values, "cell"), _float(values, "capacity_ah") or 1.0)
    if kind == "leaky-cell":
        return LeakyCell(_int(values, "cell"), _float(values, "pct_per_month") or 0.0)
    if kind == "sensor-fault":
        reversed_wiring = values.get("reversed")
        return SensorFaultEvent(
            _int(values, "sensor"),
            offset_a=_float(values, "offset_a"),
            drift_a_per_day=_float(values, "drift_a_per_day"),
            gain_error=_float(values, "gain_error"),
            reversed_wiring=reversed_wiring if isinstance(reversed_wiring, bool) else None,
        )
    if kind == "wire-noise":
        return WireNoise(_float(values, "probability") or 0.0)
    if kind == "bypass-load":
        return BypassLoad(_float(values, "power_w") or 0.0)
    if kind == "settings":
        changes = values["settings"]
        assert isinstance(changes, tuple)
        return ChangeSettings(changes, str(values.get("target", "both")))
    if kind == "plant":
        return SetPlant(
            str(values["setpoint"]), _float(values, "value"), _float(values, "timeout_s")
        )
    if kind == "calibrate":
        return Calibrate()
    raise ValueError(f"no event kind {kind!r} (one of {', '.join(EVENT_KINDS)})")


def apply_changes(
    settings: BmsSettings, changes: tuple[tuple[str, float | bool | str], ...]
) -> BmsSettings:
    """``settings`` with ``changes`` applied; ``ValueError`` names an unknown or bad field."""
    allowed = {
        "vmin_v",
        "vbalance_v",
        "vmax_v",
        "tmin_c",
        "tmax_c",
        "charge_restart_pct",
        "discharge_restart_pct",
        "capacity_wh",
        "charge_efficiency_pct",
        "empty_recalibration_s",
    }
    values: dict[str, object] = {}
    for name, value in changes:
        if name not in allowed:
            raise ValueError(
                f"setting {name!r} cannot change during a run "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        values[name] = value
    return replace(settings, **values)  # type: ignore[arg-type]
