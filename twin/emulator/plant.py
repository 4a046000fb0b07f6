"""The plant around the pack: solar charger, household load, mains charger and inverter.

Everything here is pure and seeded (cell-model.md section 4, the "clouds recipe"):

- **Sun**: the NOAA solar-position equations and the Haurwitz clear-sky model
  (GHI = 1098 cos z exp(-0.059 / cos z)), which need no data file and no network.
- **Clouds**: a two-state Markov chain (clear / cloud) with exponential dwell times, a cloud
  passing at ``cloud_attenuation`` of clear sky, a short edge enhancement when the sun comes out,
  and a low-pass of a few seconds (a large array averages out fast fluctuations).
- **Household**: a built-in daily shape (our own estimate of a European home: a night base, a
  morning and a larger evening peak) scaled to an annual consumption, plus seeded appliance events
  (kettle, microwave, washing machine, oven) that exercise the sensor's 20 A range switch; or a
  profile given as (time, power) points (a CSV read by the scenario loader).
- **Chargers**: an MPPT solar charger and an optional mains charger, both constant-voltage
  chargers (bulk, absorption, float) that regulate on the pack voltage; an inverter that turns the
  household's AC demand into DC current. Charger and inverter are enabled by the End board's
  CHARGE and LOAD relays, as when their remote-on inputs are wired to the relay contacts.

Profiles are computed once for the whole run on the step grid (``Plant.prepare``); the per-step
work is a few float operations.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import ClassVar, Final

import numpy as np

from twin.emulator.pack import FloatArray
from twin.model.limits import InverterLimits
from twin.model.logic import SECONDS_PER_DAY
from twin.model.values import Value

# ---- sun -----------------------------------------------------------------------------------


def solar_zenith_cos(
    day_of_year: FloatArray | float,
    solar_time_h: FloatArray | float,
    latitude_deg: float,
) -> FloatArray:
    """cos(zenith) of the sun (NOAA low-precision equations); <= 0 at night."""
    gamma = 2.0 * np.pi / 365.0 * (np.asarray(day_of_year) - 1.0 + (solar_time_h - 12.0) / 24.0)
    decl = (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
    hour_angle = np.radians(15.0 * (np.asarray(solar_time_h) - 12.0))
    lat = math.radians(latitude_deg)
    return np.asarray(
        math.sin(lat) * np.sin(decl) + math.cos(lat) * np.cos(decl) * np.cos(hour_angle),
        dtype=np.float64,
    )


def equation_of_time_min(day_of_year: FloatArray | float) -> FloatArray:
    """How far solar time runs ahead of mean time, in minutes (NOAA)."""
    gamma = 2.0 * np.pi / 365.0 * (np.asarray(day_of_year) - 1.0)
    return np.asarray(
        229.18
        * (
            0.000075
            + 0.001868 * np.cos(gamma)
            - 0.032077 * np.sin(gamma)
            - 0.014615 * np.cos(2 * gamma)
            - 0.040849 * np.sin(2 * gamma)
        ),
        dtype=np.float64,
    )


def clear_sky_ghi_w_m2(cos_zenith: FloatArray) -> FloatArray:
    """Haurwitz clear-sky global horizontal irradiance; 0 with the sun below the horizon."""
    cz = np.clip(cos_zenith, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ghi = 1098.0 * cz * np.exp(-0.059 / cz)
    return np.where(cz > 0.01, ghi, 0.0)


@dataclass(frozen=True, slots=True)
class SolarSpec:
    """A PV array and the sky above it."""

    peak_w: float = 5000.0
    """Array size (Wp at 1000 W/m2)."""
    latitude_deg: float = 52.1
    longitude_deg: float = 5.1
    utc_offset_h: float = 2.0
    """Local clock time minus UTC (2 = central European summer time)."""
    system_efficiency: float = 0.85
    """Wiring, temperature and MPPT losses, PVWatts style."""
    cloudiness: float = 0.2
    """Share of the daytime spent under a cloud (0 = a clear-sky day)."""
    cloud_attenuation: float = 0.3
    """Irradiance under a cloud, as a fraction of clear sky."""
    mean_clear_s: float = 600.0
    """Mean time between clouds when ``cloudiness`` is 0.5 (scaled for other values)."""
    mean_cloud_s: float = 180.0
    edge_enhancement: float = 1.25
    """Irradiance right after a cloud leaves the sun, as a fraction of clear sky."""
    edge_s: float = 30.0
    smoothing_s: float = 5.0

    def __post_init__(self) -> None:
        if self.peak_w < 0:
            raise ValueError("peak_w must be >= 0")
        if not -90.0 <= self.latitude_deg <= 90.0:
            raise ValueError(f"latitude_deg {self.latitude_deg} is out of range (-90..90)")
        if not -180.0 <= self.longitude_deg <= 180.0:
            raise ValueError(f"longitude_deg {self.longitude_deg} is out of range (-180..180)")
        if not 0.0 <= self.cloudiness < 1.0:
            raise ValueError(f"cloudiness {self.cloudiness} is out of range (0..<1)")
        for name in ("system_efficiency", "cloud_attenuation"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} {getattr(self, name)} is out of range (0..1)")
        for name in ("mean_clear_s", "mean_cloud_s", "smoothing_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")


def cloud_factor(times_s: FloatArray, spec: SolarSpec, seed: int) -> FloatArray:
    """The seeded cloud layer: the fraction of clear-sky irradiance at each of ``times_s``."""
    n = len(times_s)
    if n == 0 or spec.cloudiness <= 0.0:
        return np.ones(n)
    rng = np.random.default_rng(seed)
    # Dwell times: clouds last mean_cloud_s; the clear gaps are sized so that the share of time
    # under a cloud is ``cloudiness``.
    mean_cloud = spec.mean_cloud_s
    mean_clear = mean_cloud * (1.0 - spec.cloudiness) / spec.cloudiness
    start, end = float(times_s[0]), float(times_s[-1]) + 1.0
    edges = [start]
    states = [bool(rng.random() < spec.cloudiness)]
    t = start
    while t < end:
        t += float(rng.exponential(mean_cloud if states[-1] else mean_clear))
        edges.append(t)
        states.append(not states[-1])
    edge_array = np.asarray(edges)
    segment = np.searchsorted(edge_array, times_s, side="right") - 1
    cloudy = np.asarray(states)[segment]
    factor = np.where(cloudy, spec.cloud_attenuation, 1.0)
    # Edge enhancement: just after a cloud leaves, the cloud's bright edge lifts the irradiance.
    since_edge = times_s - edge_array[segment]
    came_out = ~cloudy & (segment > 0)
    factor = np.where(came_out & (since_edge < spec.edge_s), spec.edge_enhancement, factor)
    # A first-order low-pass over the sample grid (the array's size smooths the shadow's edge).
    if len(times_s) > 1:
        dt = float(times_s[1] - times_s[0])
        alpha = 1.0 - math.exp(-dt / spec.smoothing_s)
        if alpha < 1.0:
            out = np.empty(n)
            level = float(factor[0])
            for i, value in enumerate(factor.tolist()):
                level += alpha * (value - level)
                out[i] = level
            factor = out
    return np.asarray(factor, dtype=np.float64)


def solar_power_w(times_s: FloatArray, day_of_year: int, spec: SolarSpec, seed: int) -> FloatArray:
    """DC power the array offers at ``times_s`` (local clock seconds from midnight of day 1)."""
    day = day_of_year + np.floor(times_s / SECONDS_PER_DAY)
    clock_h = (times_s % SECONDS_PER_DAY) / 3600.0
    solar_h = (
        clock_h - spec.utc_offset_h + spec.longitude_deg / 15.0 + equation_of_time_min(day) / 60.0
    )
    ghi = clear_sky_ghi_w_m2(solar_zenith_cos(day, solar_h, spec.latitude_deg))
    ghi = ghi * cloud_factor(times_s, spec, seed)
    return np.asarray(spec.peak_w * ghi / 1000.0 * spec.system_efficiency, dtype=np.float64)


# ---- household -----------------------------------------------------------------------------

#: Our estimate of a European household's day, hour by hour (0 = midnight), as a multiple of the
#: mean power: a night base of fridge and standby, a morning peak, a flat day and the evening
#: peak of cooking and lighting. The appliance events below come on top.
HOUSEHOLD_SHAPE: tuple[float, ...] = (
    0.55, 0.50, 0.48, 0.47, 0.47, 0.50, 0.70, 1.05, 1.10, 0.95, 0.90, 0.95,
    1.05, 0.95, 0.85, 0.85, 0.95, 1.20, 1.55, 1.60, 1.45, 1.30, 1.05, 0.75,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Appliance:
    """An appliance that runs now and then: ``per_day`` runs at random times in its hours."""

    name: str
    power_w: float
    duration_s: float
    per_day: float
    from_h: float = 6.0
    to_h: float = 23.0


APPLIANCES: tuple[Appliance, ...] = (
    Appliance("kettle", 2000.0, 180.0, 3.0, 6.5, 22.0),
    Appliance("microwave", 1100.0, 240.0, 1.5, 11.0, 20.0),
    Appliance("washing machine", 2000.0, 1200.0, 0.5, 8.0, 18.0),
    Appliance("oven", 2400.0, 2400.0, 0.4, 17.0, 19.5),
)


#: The appliances' mean power over a day (W).
APPLIANCES_MEAN_W = sum(a.power_w * a.duration_s * a.per_day for a in APPLIANCES) / SECONDS_PER_DAY


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """The household's AC demand."""

    annual_kwh: float = 3500.0
    """Sets the mean of the built-in daily shape (3500 kWh/a is a mean of 400 W)."""
    appliances: bool = True
    points: tuple[tuple[float, float], ...] | None = None
    """A profile instead of the built-in one: (time s, power W), held until the next point."""
    repeat_s: float | None = None
    """The profile's period (e.g. 86400 for one day), None = held after its last point."""
    constant_w: float = 0.0
    """A constant load on top (e.g. a standby consumer on the inverter)."""

    def __post_init__(self) -> None:
        if self.annual_kwh < 0 or self.constant_w < 0:
            raise ValueError("annual_kwh and constant_w must be >= 0")
        if self.points is not None:
            if not self.points:
                raise ValueError("a load profile needs at least one point")
            times = [t for t, _ in self.points]
            if any(b <= a for a, b in itertools.pairwise(times)):
                raise ValueError("load profile times must increase")
            if any(p < 0 for _, p in self.points):
                raise ValueError("load profile powers must be >= 0")
        if self.repeat_s is not None and not self.repeat_s > 0:
            raise ValueError("repeat_s must be > 0")


def household_power_w(times_s: FloatArray, spec: LoadSpec, seed: int) -> FloatArray:
    """The AC demand at ``times_s`` (local clock seconds from midnight)."""
    if spec.points is not None:
        t = np.asarray([p[0] for p in spec.points])
        w = np.asarray([p[1] for p in spec.points])
        at = times_s % spec.repeat_s if spec.repeat_s is not None else times_s
        index = np.clip(np.searchsorted(t, at, side="right") - 1, 0, len(t) - 1)
        return np.asarray(w[index] + spec.constant_w, dtype=np.float64)
    mean_w = spec.annual_kwh * 1000.0 / 8760.0
    if spec.appliances:
        # The appliances are part of the annual consumption: the base shape carries the rest.
        mean_w = max(0.0, mean_w - APPLIANCES_MEAN_W)
    hour = (times_s % SECONDS_PER_DAY) / 3600.0
    # Interpolated between the hour centres (periodic over the day), so the demand has no steps
    # at the full hour.
    centres = np.arange(24) + 0.5
    shape = np.asarray(HOUSEHOLD_SHAPE) / (sum(HOUSEHOLD_SHAPE) / 24.0)
    power = mean_w * np.interp(hour, centres, shape, period=24.0)
    if spec.appliances and len(times_s):
        rng = np.random.default_rng(seed)
        first_day = int(times_s[0] // SECONDS_PER_DAY)
        last_day = int(times_s[-1] // SECONDS_PER_DAY)
        for day in range(first_day, last_day + 1):
            for appliance in APPLIANCES:
                for _ in range(int(rng.poisson(appliance.per_day))):
                    start = day * SECONDS_PER_DAY + 3600.0 * float(
                        rng.uniform(appliance.from_h, appliance.to_h)
                    )
                    on = (times_s >= start) & (times_s < start + appliance.duration_s)
                    power = power + np.where(on, appliance.power_w, 0.0)
    return np.asarray(power + spec.constant_w, dtype=np.float64)


# ---- chargers and inverter -----------------------------------------------------------------


class ChargePhase(Enum):
    """The phase of a constant-voltage charger."""

    OFF = "off"
    BULK = "bulk"
    ABSORPTION = "absorption"
    FLOAT = "float"


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    """A constant-voltage charger (MPPT or mains) with bulk, absorption and float."""

    max_current_a: float
    absorption_v: float
    float_v: float
    absorption_s: float = 3600.0
    """Longest time in absorption before float."""
    tail_current_a: float = 2.0
    """Absorption ends early when the current falls below this."""
    rebulk_v: float | None = None
    """In float, below this the charger starts a new bulk; None = float - 0.2 V per 4 cells."""

    def __post_init__(self) -> None:
        if self.max_current_a < 0:
            raise ValueError("max_current_a must be >= 0")
        if not 0 < self.float_v <= self.absorption_v:
            raise ValueError("voltages must satisfy 0 < float_v <= absorption_v")


class Charger:
    """A constant-voltage charger's state; ``current_a`` is its output for the next step."""

    def __init__(self, spec: ChargerSpec, cell_count: int) -> None:
        self.spec = spec
        self.phase = ChargePhase.OFF
        self.current_a = 0.0
        self._absorption_s = 0.0
        self._rebulk_v = (
            spec.rebulk_v if spec.rebulk_v is not None else spec.float_v - 0.05 * cell_count
        )

    def step(
        self,
        available_a: float,
        pack_voltage_v: float,
        resistance_ohm: float,
        enabled: bool,
        dt_s: float,
        max_v: float = math.inf,
        max_a: float = math.inf,
    ) -> float:
        """The current for the next ``dt_s``: at most ``available_a``, regulated on the voltage.

        The regulation solves the pack's ohmic response (``resistance_ohm``) for the target
        voltage each step: a deadbeat controller for R0, slightly under-correcting for the RC
        part, so it settles without overshoot for any step. ``max_v`` and ``max_a`` cap the
        target voltage and the current (an inverter obeying the BMS's CVL and CCL).
        """
        spec = self.spec
        if not enabled:
            self.phase = ChargePhase.OFF
            self.current_a = 0.0
            return 0.0
        if self.phase is ChargePhase.OFF:
            self.phase = ChargePhase.BULK
        if available_a <= 0.0:
            # Night (or no source): the next morning starts with a new bulk phase, as MPPT
            # chargers do.
            self.phase = ChargePhase.BULK
            self.current_a = 0.0
            return 0.0
        target_v = min(
            spec.float_v if self.phase is ChargePhase.FLOAT else spec.absorption_v, max_v
        )
        limit_a = min(available_a, spec.max_current_a, max_a)
        wanted = self.current_a + (target_v - pack_voltage_v) / resistance_ohm
        current = max(0.0, min(limit_a, wanted))
        if self.phase is ChargePhase.BULK and current < limit_a and wanted < limit_a:
            self.phase = ChargePhase.ABSORPTION
            self._absorption_s = 0.0
        elif self.phase is ChargePhase.ABSORPTION:
            self._absorption_s += dt_s
            regulating = wanted < limit_a
            if self._absorption_s >= spec.absorption_s or (
                regulating and current < spec.tail_current_a
            ):
                self.phase = ChargePhase.FLOAT
        elif (
            self.phase is ChargePhase.FLOAT
            and pack_voltage_v < self._rebulk_v
            and (wanted >= limit_a)
        ):
            self.phase = ChargePhase.BULK
        self.current_a = current
        return current


class InverterMode(StrEnum):
    """What the inverter and the chargers obey."""

    RELAYS = "relays"
    """The BMS's relays alone (a relay-wired system: the chargers follow their own settings)."""
    LIMITS = "limits"
    """The relays and the published CVL / CCL / DCL / DVL, as a CAN-connected (DVCC) inverter:
    charging at most CCL and never above CVL (constant voltage at CVL, the current tapering),
    discharging at most DCL, stopping at DVL."""


@dataclass(frozen=True, slots=True)
class InverterSpec:
    """An inverter on the pack that serves the household's AC demand.

    In ``limits`` mode it also governs the chargers (an ESS: the MPPT and the mains charger
    are told the BMS's limits by the inverter). Known behaviours of real inverters are
    options (../shared/reference/inverter-can.md sections 1.8 and 5, docs/testbench.md).
    """

    max_power_w: float = 5000.0
    efficiency: float = 0.94
    idle_w: float = 20.0
    """Own consumption while on."""
    mode: InverterMode = InverterMode.RELAYS
    voltage_offset_v: float = 0.0
    """The inverter reads the pack voltage this much high (+) or low (-): it holds CVL and DVL
    on its own reading (a cable drop or a shunt offset)."""
    cvl_only: bool = False
    """Victron (1.8 item 2): CCL = 0 does not stop charging; only a CVL at the pack voltage
    does (the twin's victron profile sends that)."""
    hold_limits_s: float = 0.0
    """When the BMS falls silent (stale data), keep the last limits this long before
    stopping (0: the fail-safe limits are obeyed at once)."""
    overvoltage_discharge_a: float = 0.0
    """SMA Sunny Island (1.8 item 6): with the pack above CVL it discharges, into the grid,
    at this current, ignoring DCL (0: not this behaviour)."""

    def __post_init__(self) -> None:
        if self.max_power_w < 0 or self.idle_w < 0:
            raise ValueError("max_power_w and idle_w must be >= 0")
        if not 0.0 < self.efficiency <= 1.0:
            raise ValueError(f"efficiency {self.efficiency} is out of range (>0..1)")
        if not -5.0 <= self.voltage_offset_v <= 5.0:
            raise ValueError(f"voltage_offset_v {self.voltage_offset_v} is out of range (-5..5)")
        if self.hold_limits_s < 0 or self.overvoltage_discharge_a < 0:
            raise ValueError("hold_limits_s and overvoltage_discharge_a must be >= 0")

    def dc_current_a(self, ac_w: float, pack_voltage_v: float) -> float:
        """The DC current drawn for ``ac_w`` of AC demand (limited to the inverter's power)."""
        ac = min(ac_w, self.max_power_w)
        return (ac / self.efficiency + self.idle_w) / max(pack_voltage_v, 1.0)


@dataclass(frozen=True, slots=True)
class PlantSpec:
    """Everything around the pack. None switches a part off."""

    solar: SolarSpec | None = field(default_factory=SolarSpec)
    solar_charger: ChargerSpec | None = None
    """None = sized from the pack: 100 A, absorption and float from V-balance."""
    load: LoadSpec | None = field(default_factory=LoadSpec)
    inverter: InverterSpec = field(default_factory=InverterSpec)
    mains_charger: ChargerSpec | None = None
    mains_from_h: float = 0.0
    """The mains charger runs between these local hours (e.g. cheap night tariff)."""
    mains_to_h: float = 24.0
    bypass_load_w: float = 0.0
    """A load wired around the current sensors (a wiring fault): drains the pack unseen, and
    is not switched by the LOAD relay."""
    day_of_year: int = 172
    """The first day (172 = 21 June)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.day_of_year <= 366:
            raise ValueError(f"day_of_year {self.day_of_year} is out of range (1..366)")
        if self.bypass_load_w < 0:
            raise ValueError("bypass_load_w must be >= 0")
        if not 0.0 <= self.mains_from_h <= 24.0 or not 0.0 <= self.mains_to_h <= 24.0:
            raise ValueError("mains hours must be in 0..24")


#: What a controller under test may set in the emulated plant: name -> (unit, low, high, what).
#: Each setpoint holds until it is cleared or its timeout ends; then the plant's own profile
#: takes over again (a safe remote setpoint).
PLANT_SETPOINTS: dict[str, tuple[str, float, float, str]] = {
    "inverter_dc_a": (
        "A",
        -10_000.0,
        10_000.0,
        "the inverter's DC current: + charges the battery from AC, - discharges it into AC",
    ),
    "inverter_ac_w": (
        "W",
        -1_000_000.0,
        1_000_000.0,
        "the inverter's AC power: + charges the battery from AC, - feeds AC from it",
    ),
    "load_w": ("W", 0.0, 1_000_000.0, "the household's AC demand, instead of its profile"),
    "solar_limit_pct": (
        "%",
        0.0,
        100.0,
        "the share of the array's power the solar charger may take (curtailment)",
    ),
    "mains_charger": ("", 0.0, 1.0, "the mains charger on (1) or off (0), instead of its hours"),
}
#: The two inverter setpoints say the same thing two ways: setting one clears the other.
_INVERTER_SETPOINTS = ("inverter_dc_a", "inverter_ac_w")


@dataclass(frozen=True, slots=True)
class Setpoint:
    """A value a controller set, and when it expires (plant seconds; None: when cleared)."""

    value: float
    until_s: float | None = None


class PlantCurrents(Value):
    """One step's currents.

    All >= 0, but ``load_a``, which is negative while the inverter charges the battery from AC
    (a controller's setpoint).
    """

    FIELDS: ClassVar = ("charger_a", "load_a", "bypass_a", "solar_w", "demand_w")
    __slots__ = FIELDS

    def __init__(
        self,
        charger_a: float,
        load_a: float,
        bypass_a: float,
        solar_w: float,
        demand_w: float,
    ) -> None:
        self.charger_a: Final = charger_a
        """Into the battery through sensor 1 (solar plus mains)."""
        self.load_a: Final = load_a
        """Out of the battery through sensor 2 (the inverter)."""
        self.bypass_a: Final = bypass_a
        """Out of the battery around the sensors."""
        self.solar_w: Final = solar_w
        """What the array offered (before the charger's limits)."""
        self.demand_w: Final = demand_w
        """The household's AC demand (served by the grid while the inverter is off)."""

    @property
    def battery_a(self) -> float:
        """The true battery current, + = charging."""
        return self.charger_a - self.load_a - self.bypass_a


class Plant:
    """The plant for one run: profiles on the step grid, chargers with their state.

    The solar and household profiles are computed one local day at a time (a year at 1 s
    steps would otherwise hold tens of millions of values). Each day has its own seed, derived
    from the plant's, so a run is reproducible; the cloud layer restarts at midnight, when the
    sun is down.
    """

    def __init__(
        self,
        spec: PlantSpec,
        cell_count: int,
        vbalance_v: float,
        start_s: float,
        step_s: float,
    ) -> None:
        """``start_s``: the local clock time of step 0 (seconds from midnight of the first day)."""
        if not step_s > 0:
            raise ValueError("step_s must be > 0")
        self.spec = spec
        self.start_s = start_s
        self.step_s = step_s
        charger = spec.solar_charger or ChargerSpec(
            max_current_a=100.0,
            absorption_v=round(cell_count * (vbalance_v + 0.05), 2),
            float_v=round(cell_count * (vbalance_v - 0.05), 2),
        )
        self.solar_charger = Charger(charger, cell_count)
        self.mains_charger = (
            Charger(spec.mains_charger, cell_count) if spec.mains_charger is not None else None
        )
        self.setpoints: dict[str, Setpoint] = {}
        """What controllers set (``set_point``), by name of ``PLANT_SETPOINTS``."""
        self.expired: list[str] = []
        """Setpoints whose timeout ended, for the caller to report (it clears the list)."""
        self.obeyed: InverterLimits | None = None
        """The limits the inverter obeyed in the last step (``limits`` mode; else None)."""
        self._held: InverterLimits | None = None
        self._silent_s = 0.0
        self._first = self._end = 0
        self._solar_w: list[float] = []
        self._demand_w: list[float] = []
        self._mains_on: list[bool] = []

    def set_point(
        self, name: str, value: float, now_s: float, timeout_s: float | None = None
    ) -> None:
        """A controller's setpoint from ``now_s`` (plant seconds) on.

        With ``timeout_s`` it expires then and the profile takes over again; ``ValueError``
        names a bad one.
        """
        if name not in PLANT_SETPOINTS:
            raise ValueError(f"{name}: not a plant setpoint (one of {', '.join(PLANT_SETPOINTS)})")
        _, low, high, _ = PLANT_SETPOINTS[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{name}: {value!r} is not a number")
        if not (math.isfinite(value) and low <= value <= high):
            raise ValueError(f"{name}: {value:g} is out of range (allowed {low:g}..{high:g})")
        if name == "mains_charger":
            if self.mains_charger is None:
                raise ValueError("mains_charger: this plant has no mains charger")
            if value not in (0.0, 1.0):
                raise ValueError(f"mains_charger: {value:g} is not 0 (off) or 1 (on)")
        if timeout_s is not None and not (math.isfinite(timeout_s) and timeout_s > 0):
            raise ValueError(f"timeout_s: {timeout_s!r} must be > 0")
        if name in _INVERTER_SETPOINTS:
            for other in _INVERTER_SETPOINTS:
                self.setpoints.pop(other, None)
        self.setpoints[name] = Setpoint(
            float(value), None if timeout_s is None else now_s + timeout_s
        )

    def clear_point(self, name: str) -> bool:
        """Back to the profile for ``name``; False when it was not set."""
        if name not in PLANT_SETPOINTS:
            raise ValueError(f"{name}: not a plant setpoint (one of {', '.join(PLANT_SETPOINTS)})")
        return self.setpoints.pop(name, None) is not None

    def _expire(self, now_s: float) -> None:
        for name, point in list(self.setpoints.items()):
            if point.until_s is not None and now_s >= point.until_s:
                del self.setpoints[name]
                self.expired.append(name)

    def _inverter_dc_a(self, pack_voltage_v: float) -> float | None:
        """The inverter's DC current a controller set (+ charging), or None (the profile)."""
        points = self.setpoints
        if "inverter_dc_a" in points:
            return points["inverter_dc_a"].value
        if "inverter_ac_w" in points:
            ac_w = points["inverter_ac_w"].value
            efficiency = self.spec.inverter.efficiency
            dc_w = ac_w * efficiency if ac_w > 0 else ac_w / efficiency
            return dc_w / max(pack_voltage_v, 1.0)
        return None

    def _profiles(self, k: int) -> tuple[float, float, float, bool]:
        """The profiles at step ``k`` with the controllers' setpoints applied.

        (solar W offered, W the solar charger may take, household W, mains charger on).
        """
        solar_w, demand_w = self.profile(k)
        usable_w = solar_w
        mains = self._mains_on[k - self._first]
        points = self.setpoints
        if points:
            self._expire(k * self.step_s)
            if "solar_limit_pct" in points:
                usable_w = solar_w * points["solar_limit_pct"].value / 100.0
            if "load_w" in points:
                demand_w = points["load_w"].value
            if "mains_charger" in points:
                mains = points["mains_charger"].value == 1.0
        return solar_w, usable_w, demand_w, mains

    def _load_day(self, k: int) -> None:
        """Compute the profiles of the local day that step ``k`` falls in."""
        spec, start, step = self.spec, self.start_s, self.step_s
        day = int((start + k * step) // SECONDS_PER_DAY)
        first = max(0, math.ceil((day * SECONDS_PER_DAY - start) / step - 1e-9))
        end = max(first + 1, math.ceil(((day + 1) * SECONDS_PER_DAY - start) / step - 1e-9))
        times = start + step * np.arange(first, end, dtype=np.float64)
        seed = spec.seed + 7919 * day
        n = end - first
        solar = spec.solar
        self._solar_w = (
            solar_power_w(times, spec.day_of_year, solar, seed).tolist()
            if solar is not None
            else [0.0] * n
        )
        self._demand_w = (
            household_power_w(times, spec.load, seed + 1).tolist()
            if spec.load is not None
            else [0.0] * n
        )
        hours = (times % SECONDS_PER_DAY) / 3600.0
        lo, hi = spec.mains_from_h, spec.mains_to_h
        mains_on = (hours >= lo) & (hours < hi) if lo <= hi else (hours >= lo) | (hours < hi)
        self._mains_on = mains_on.tolist()
        self._first, self._end = first, end

    def profile(self, k: int) -> tuple[float, float]:
        """(solar W offered, household W wanted) at step ``k``."""
        if not self._first <= k < self._end:
            self._load_day(k)
        i = k - self._first
        return self._solar_w[i], self._demand_w[i]

    def currents(
        self,
        k: int,
        pack_voltage_v: float,
        resistance_ohm: float,
        charge_enabled: bool,
        load_enabled: bool,
        dt_s: float,
        limits: InverterLimits | None = None,
        limits_fresh: bool = True,
    ) -> PlantCurrents:
        """The currents of step ``k`` given the pack's last voltage and the relays.

        ``limits``: what the BMS publishes (obeyed in ``limits`` mode; ignored in ``relays``
        mode); ``limits_fresh``: False while the BMS is silent (its data stale), for the
        inverter's hold time.
        """
        inverter = self.spec.inverter
        if inverter.mode is InverterMode.LIMITS:
            return self._obeying(
                k,
                pack_voltage_v,
                resistance_ohm,
                charge_enabled,
                load_enabled,
                dt_s,
                self._obey(limits, limits_fresh, dt_s),
            )
        v = max(pack_voltage_v, 1.0)
        solar_w, usable_w, demand_w, mains_on = self._profiles(k)
        charger_a = self._chargers_a(
            usable_w / v, pack_voltage_v, resistance_ohm, charge_enabled, mains_on, dt_s
        )
        setpoint_a = self._inverter_dc_a(v)
        if setpoint_a is None:
            load_a = inverter.dc_current_a(demand_w, v) if load_enabled else 0.0
        elif setpoint_a > 0:
            # Charging from AC follows the CHARGE relay, discharging the LOAD relay.
            load_a = -setpoint_a if charge_enabled else 0.0
        else:
            load_a = -setpoint_a if load_enabled else 0.0
        bypass_a = self.spec.bypass_load_w / v
        return PlantCurrents(charger_a, load_a, bypass_a, solar_w, demand_w)

    def _chargers_a(
        self,
        solar_a: float,
        pack_voltage_v: float,
        resistance_ohm: float,
        charge_enabled: bool,
        mains_on: bool,
        dt_s: float,
        max_v: float = math.inf,
        max_a: float = math.inf,
    ) -> float:
        """The solar and mains chargers' current together, at most ``max_a``, up to ``max_v``."""
        solar = self.solar_charger
        solar_previous_a = solar.current_a
        charger_a = solar.step(
            solar_a, pack_voltage_v, resistance_ohm, charge_enabled, dt_s, max_v, max_a
        )
        mains = self.mains_charger
        if mains is not None:
            # Both chargers regulate on the same voltage: the mains charger sees the voltage
            # the solar charger's new current will give, so the two do not both correct.
            solar_change_a = charger_a - solar_previous_a
            charger_a += mains.step(
                math.inf,
                pack_voltage_v + solar_change_a * resistance_ohm,
                resistance_ohm,
                charge_enabled and mains_on,
                dt_s,
                max_v,
                max(0.0, max_a - charger_a),
            )
        return charger_a

    def _obey(
        self, limits: InverterLimits | None, fresh: bool, dt_s: float
    ) -> InverterLimits | None:
        """The limits the inverter acts on.

        The newest while the BMS speaks; while it is silent, the last ones for the hold time,
        then what the BMS's fail-safe frames say (or nothing before any).
        """
        if fresh and limits is not None:
            self._held, self._silent_s = limits, 0.0
        else:
            self._silent_s += dt_s
            if self._held is not None and self._silent_s <= self.spec.inverter.hold_limits_s:
                limits = self._held
        self.obeyed = limits
        return limits

    def _obeying(
        self,
        k: int,
        pack_voltage_v: float,
        resistance_ohm: float,
        charge_enabled: bool,
        load_enabled: bool,
        dt_s: float,
        limits: InverterLimits | None,
    ) -> PlantCurrents:
        """The currents of a DVCC inverter system obeying ``limits`` (None: it waits)."""
        inverter = self.spec.inverter
        v = max(pack_voltage_v, 1.0)
        solar_w, usable_w, demand_w, mains_on = self._profiles(k)
        offset = inverter.voltage_offset_v
        reading_v = pack_voltage_v + offset
        if limits is None:
            cap_v, cap_a, dcl_a, dvl_v, cvl_v = 0.0, 0.0, 0.0, math.inf, math.inf
        else:
            cvl_v = limits.charge_voltage_v
            # It holds CVL on its own reading: the true voltage it aims at is CVL - offset.
            cap_v = cvl_v - offset
            cap_a = math.inf if inverter.cvl_only else limits.charge_current_a
            dcl_a, dvl_v = limits.discharge_current_a, limits.discharge_voltage_v
        charger_a = self._chargers_a(
            usable_w / v,
            pack_voltage_v,
            resistance_ohm,
            charge_enabled,
            mains_on,
            dt_s,
            cap_v,
            cap_a,
        )
        load_a = 0.0
        setpoint_a = self._inverter_dc_a(v)
        if setpoint_a is None:
            if load_enabled and reading_v > dvl_v:
                load_a = min(inverter.dc_current_a(demand_w, v), dcl_a)
        elif setpoint_a > 0:
            # Charging from AC: what CCL leaves after the chargers, never above CVL.
            if charge_enabled and reading_v < cvl_v:
                load_a = -min(setpoint_a, max(0.0, cap_a - charger_a))
        elif load_enabled and reading_v > dvl_v:
            load_a = min(-setpoint_a, dcl_a)
        if load_enabled and inverter.overvoltage_discharge_a and reading_v > cvl_v:
            # Above CVL the Sunny Island pushes the excess into the grid, whatever DCL says.
            load_a += inverter.overvoltage_discharge_a
        bypass_a = self.spec.bypass_load_w / v
        return PlantCurrents(charger_a, load_a, bypass_a, solar_w, demand_w)
