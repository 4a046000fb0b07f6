r"""Current sensors as the 123\SmartBMS reads them: ranges, rounding, blind spot, offset, zero.

The pipeline of one reading (cell-model.md section 3.2), in the units the Hall element sees
(the cable passes it ``loops`` times, so it sees ``loops x I``):

1. ``seen = loops x I x (1 + gain error) + offset(T, age)``; a reversed sensor flips ``I``;
2. clip at the maximum; choose the fine range below the range switch, else the coarse one;
3. round (not truncate) to the range's step;
4. subtract the stored zero, which calibration took from step 3 (so whatever current flowed
   while calibrating is baked in, as on the real board);
5. divide by ``loops``; a magnitude at or below the blind spot reads 0 A.

Gen2 sensor types are the same pipeline with a single range (``CurrentSensorSettings.spec``).
Pure: time comes in through ``advance``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

import numpy as np

from twin.model.settings import CurrentSensorSettings, SensorKind
from twin.model.values import Value


@dataclass(frozen=True, slots=True)
class SensorErrors:
    """The imperfections of one sensor unit (in amps as the Hall element sees them)."""

    gain_error: float = 0.0
    """Relative: 0.01 reads 1 % high."""
    offset_a: float = 0.0
    """Offset at 25 C when new."""
    tempco_a_per_k: float = 0.0
    """Offset change per kelvin away from 25 C."""
    drift_a_per_day: float = 0.0
    """Slow offset drift (a fault when large)."""

    @classmethod
    def typical(cls, seed: int) -> SensorErrors:
        """A plausible unit (estimates of cell-model.md 3.3): +-0.5 % gain, +-60 mA offset."""
        gain, offset, tempco, drift = np.random.default_rng(seed).uniform(-1.0, 1.0, 4)
        return cls(
            gain_error=0.005 * float(gain),
            offset_a=0.06 * float(offset),
            tempco_a_per_k=0.004 * float(tempco),
            drift_a_per_day=0.002 * float(drift),
        )


class CurrentSensor:
    """One current sensor as fitted (gen3 dual range with its loops, or a gen2 type)."""

    def __init__(
        self,
        settings: CurrentSensorSettings,
        errors: SensorErrors | None = None,
        *,
        reversed_wiring: bool = False,
    ) -> None:
        self.settings = settings
        self.errors = errors if errors is not None else SensorErrors()
        self.reversed_wiring = reversed_wiring
        """The cable passes the sensor the wrong way round: every reading has the wrong sign."""
        self.loops = settings.loops if settings.kind is SensorKind.GEN3_DUAL_RANGE else 1
        spec = settings.spec
        n = self.loops
        self._switch_a = spec.low_range_a * n
        self._fine_step_a = spec.low_resolution_a * n
        self._coarse_step_a = spec.high_resolution_a * n
        self._max_a = spec.max_a * n
        self.blind_spot_a = spec.blind_spot_a
        self.zero_a = 0.0
        """The stored zero, in the Hall element's amps (set by ``calibrate``)."""
        self.age_s = 0.0
        """Time since the unit was new, for the offset drift."""

    def advance(self, dt_s: float) -> None:
        """Let ``dt_s`` pass (the offset drifts)."""
        self.age_s += dt_s

    def raw_a(self, true_a: float, temp_c: float = 25.0) -> float:
        """Steps 1-3: the rounded reading of the Hall element before zero and blind spot."""
        e = self.errors
        current = -true_a if self.reversed_wiring else true_a
        seen = (
            self.loops * current * (1.0 + e.gain_error)
            + e.offset_a
            + e.tempco_a_per_k * (temp_c - 25.0)
            + e.drift_a_per_day * self.age_s / 86_400.0
        )
        limit = self._max_a
        if seen > limit:
            seen = limit
        elif seen < -limit:
            seen = -limit
        step = self._fine_step_a if abs(seen) < self._switch_a else self._coarse_step_a
        return round(seen / step) * step

    def read(self, true_a: float, temp_c: float = 25.0) -> float:
        """What the BMS reports for ``true_a`` flowing through the sensor."""
        reading = (self.raw_a(true_a, temp_c) - self.zero_a) / self.loops
        # "At or below" the blind spot; the margin absorbs the rounding of the step arithmetic
        # (6 x 0.05 A is 0.30000000000000004 A).
        if abs(reading) <= self.blind_spot_a + 1e-9:
            return 0.0
        return reading

    def calibrate(self, true_a: float, temp_c: float = 25.0) -> None:
        """Zero calibration (gen3 button / gen2 auto zero) while ``true_a`` flows.

        It should be 0 A; any current that flows is stored as the zero and is from then on
        subtracted from every reading.
        """
        self.zero_a = self.raw_a(true_a, temp_c)


class CurrentReading(Value):
    """The three currents of a UART frame; None where the sensor is absent ("X")."""

    FIELDS: ClassVar = ("current1_a", "current2_a", "battery_current_a")
    __slots__ = FIELDS

    def __init__(
        self,
        current1_a: float | None,
        current2_a: float | None,
        battery_current_a: float | None,
    ) -> None:
        self.current1_a: Final = current1_a
        self.current2_a: Final = current2_a
        self.battery_current_a: Final = battery_current_a


class SensorWiring:
    r"""How the currents of the plant reach the sensors (bms-behaviour.md section 2).

    Two sensors: sensor 1 on the charger / solar line, sensor 2 on the consumers' line, battery
    = I1 - I2. One sensor: on input 1, in the battery cable (charger minus consumers); input 2
    reads "X". A load wired around the sensors is simply not in ``load_a`` while it still
    drains the pack: that is the fault.
    """

    def __init__(self, sensor1: CurrentSensor, sensor2: CurrentSensor | None = None) -> None:
        if (sensor2 is None) != (sensor1.settings.sensor_count == 1):
            raise ValueError("give sensor2 exactly when the settings say two sensors")
        self.sensor1 = sensor1
        self.sensor2 = sensor2

    @property
    def sensors(self) -> tuple[CurrentSensor, ...]:
        """The fitted sensors, sensor 1 first."""
        return (self.sensor1,) if self.sensor2 is None else (self.sensor1, self.sensor2)

    def read(self, charger_a: float, load_a: float, temp_c: float = 25.0) -> CurrentReading:
        """The readings for ``charger_a`` in and ``load_a`` out (both >= 0 normally)."""
        if self.sensor2 is None:
            battery = self.sensor1.read(charger_a - load_a, temp_c)
            return CurrentReading(battery, None, battery)
        i1 = self.sensor1.read(charger_a, temp_c)
        i2 = self.sensor2.read(load_a, temp_c)
        return CurrentReading(i1, i2, i1 - i2)

    def calibrate(self, charger_a: float, load_a: float, temp_c: float = 25.0) -> None:
        """Zero calibration of every sensor while these currents flow."""
        if self.sensor2 is None:
            self.sensor1.calibrate(charger_a - load_a, temp_c)
        else:
            self.sensor1.calibrate(charger_a, temp_c)
            self.sensor2.calibrate(load_a, temp_c)

    def advance(self, dt_s: float) -> None:
        """Let time pass for every sensor."""
        for sensor in self.sensors:
            sensor.advance(dt_s)
