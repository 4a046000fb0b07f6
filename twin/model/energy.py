"""Energy counters and powers, as on the app's dashboard (bms-behaviour.md section 6).

With two sensors, energy in ("harvested") is what flows into the battery through either line:
sensor 1 positive (the charger / solar line charging) plus sensor 2 negative (a consumer line
feeding back); energy out ("consumed") is the rest. With one sensor, the sign of the battery
current decides. Either way ``in - out`` equals the integral of pack voltage x battery current,
so the counters balance with the battery's own energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from twin.model.checks import require_non_negative
from twin.model.inputs import BmsInputs
from twin.model.values import Value


class EnergyCounters(Value):
    """Harvested and consumed energy, today and in total (Wh)."""

    FIELDS: ClassVar = (
        "harvested_today_wh",
        "consumed_today_wh",
        "harvested_total_wh",
        "consumed_total_wh",
        "day",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        harvested_today_wh: float = 0.0,
        consumed_today_wh: float = 0.0,
        harvested_total_wh: float = 0.0,
        consumed_total_wh: float = 0.0,
        day: int | None = None,
    ) -> None:
        self.harvested_today_wh: Final = harvested_today_wh
        self.consumed_today_wh: Final = consumed_today_wh
        self.harvested_total_wh: Final = harvested_total_wh
        self.consumed_total_wh: Final = consumed_total_wh
        self.day: Final = day
        """The local day (an ordinal, e.g. ``date.toordinal()``) the "today" counters belong to."""
        if (
            min(
                self.harvested_today_wh,
                self.consumed_today_wh,
                self.harvested_total_wh,
                self.consumed_total_wh,
            )
            >= 0
        ):
            return  # the common case, checked cheaply: counters are built every cycle
        require_non_negative(
            self,
            "harvested_today_wh",
            "consumed_today_wh",
            "harvested_total_wh",
            "consumed_total_wh",
        )


@dataclass(frozen=True, slots=True)
class Powers:
    """Instantaneous powers in W; None where the current is not available."""

    battery_w: float | None
    """Pack voltage x battery current (+ = charging)."""
    input_w: float | None
    """Sensor 1, the charger / solar line (+ = into the battery)."""
    output_w: float | None
    """Sensor 2, the consumer line (+ = out of the battery)."""


def measure_powers(inputs: BmsInputs) -> Powers:
    """The powers of one reading."""
    v = inputs.pack_voltage_v
    i_bat = inputs.measured_battery_current_a
    return Powers(
        battery_w=None if i_bat is None else v * i_bat,
        input_w=None if inputs.current1_a is None else v * inputs.current1_a,
        output_w=None if inputs.current2_a is None else v * inputs.current2_a,
    )


def split_power(inputs: BmsInputs, one_sensor: bool) -> tuple[float, float]:
    """(power in, power out) in W, both >= 0, for the energy counters."""
    v = inputs.pack_voltage_v
    if one_sensor or inputs.current2_a is None:
        # One sensor measures the battery current: in and out cannot be told apart.
        i_bat = inputs.measured_battery_current_a or 0.0
        return (v * max(i_bat, 0.0), v * max(-i_bat, 0.0))
    i1 = inputs.current1_a or 0.0
    i2 = inputs.current2_a
    return (v * (max(i1, 0.0) + max(-i2, 0.0)), v * (max(-i1, 0.0) + max(i2, 0.0)))


def roll_over(counters: EnergyCounters, local_day: int) -> EnergyCounters:
    """Start new "today" counters when the local day changed (local midnight passed)."""
    if counters.day == local_day:
        return counters
    if counters.day is None:
        return counters.replace(day=local_day)
    return counters.replace(harvested_today_wh=0.0, consumed_today_wh=0.0, day=local_day)


def add_energy(counters: EnergyCounters, in_wh: float, out_wh: float) -> EnergyCounters:
    """Counters with ``in_wh`` harvested and ``out_wh`` consumed added."""
    # A positional constructor, not dataclasses.replace: this runs every cycle.
    return EnergyCounters(
        counters.harvested_today_wh + in_wh,
        counters.consumed_today_wh + out_wh,
        counters.harvested_total_wh + in_wh,
        counters.consumed_total_wh + out_wh,
        counters.day,
    )


def clear_totals(counters: EnergyCounters) -> EnergyCounters:
    """The app's "clear energy counters": the stored in/out totals go to zero."""
    return counters.replace(harvested_total_wh=0.0, consumed_total_wh=0.0)
