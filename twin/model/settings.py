r"""The settings of one 123\SmartBMS, as the BMS itself holds them.

Sources: ``manuals/`` (gen3 and gen2) and ``reference/bms-behaviour.md`` sections 2 and 4. The
values are checked in ``__post_init__`` against what the hardware can really be set to: a
setting the BMS cannot hold raises ``ValueError`` (the config layer turns that into a
``ConfigError`` naming the field).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Generation(StrEnum):
    """The board generation: gen3 (Begin / Between / End) or gen2 (IN / cell / OUT)."""

    GEN3 = "gen3"
    GEN2 = "gen2"


class RelayMode(StrEnum):
    """The relay algorithm: normal (SOC hysteresis) or critical (switch off on errors only)."""

    NORMAL = "normal"
    CRITICAL = "critical"


class Chemistry(StrEnum):
    """Cell chemistries with recommended thresholds in the gen3 manual."""

    LIFEPO4 = "LiFePO4"
    LTO = "LTO"
    NMC = "NMC"
    LI_ION = "Li-ion"


@dataclass(frozen=True, slots=True)
class CellThresholds:
    """Recommended cell thresholds of one chemistry."""

    vmin_v: float
    vbalance_v: float
    vmax_v: float
    vnominal_v: float


#: The gen3 manual's "Recommended threshold values for different cell chemistries". The nominal
#: voltage converts the Wh capacity setting into Ah for Coulomb counting: 3.2 V for LiFePO4 is the
#: manual's own capacity example (4 x 200 Ah x 3.2 V); the others are the usual datasheet values
#: (the same as the official Venus driver's chemistry guess).
CHEMISTRY_THRESHOLDS: dict[Chemistry, CellThresholds] = {
    Chemistry.LIFEPO4: CellThresholds(vmin_v=2.90, vbalance_v=3.40, vmax_v=3.70, vnominal_v=3.2),
    Chemistry.LTO: CellThresholds(vmin_v=2.15, vbalance_v=2.60, vmax_v=2.70, vnominal_v=2.3),
    Chemistry.NMC: CellThresholds(vmin_v=3.43, vbalance_v=4.00, vmax_v=4.10, vnominal_v=3.7),
    Chemistry.LI_ION: CellThresholds(vmin_v=3.43, vbalance_v=4.10, vmax_v=4.15, vnominal_v=3.7),
}

#: Cell voltage range of the boards (bms-behaviour.md section 2).
CELL_VOLTAGE_RANGE_V: dict[Generation, tuple[float, float]] = {
    Generation.GEN3: (1.5, 5.0),
    Generation.GEN2: (2.0, 5.0),
}
#: Temperature range of the boards, both generations.
TEMPERATURE_RANGE_C = (-40.0, 85.0)
#: Cells in one chain, both generations.
CELL_COUNT_RANGE = (2, 255)
#: The battery capacity setting (Wh): what the UART frame carries (bytes 49-50, u16 x 0.1 kWh:
#: 0.1 kWh .. 6,553.5 kWh). The Modbus register (u32 Wh) and the stored energy (u24 Wh, at most
#: the capacity) hold all of it; one bound for the configuration, Modbus, MQTT and the store.
CAPACITY_WH_RANGE = (100.0, 6_553_500.0)

#: Gen2 V-bypass values settable with option switches 2, 6 and 7.
GEN2_VBALANCE_VALUES_V = (3.4, 3.5, 3.6, 3.7, 4.0, 4.1, 4.2, 4.3)
#: Gen3 balance code k (1..31) sets 1.8 V + k x 0.1 V; code 0 is "no balancing".
GEN3_VBALANCE_BASE_V = 1.8
GEN3_VBALANCE_STEP_V = 0.1


def gen3_vbalance_v(code: int) -> float:
    """Balance voltage of gen3 balance code ``code`` (1..31)."""
    if not 1 <= code <= 31:
        raise ValueError(f"gen3 balance code {code} is out of range (allowed 1..31)")
    return round(GEN3_VBALANCE_BASE_V + code * GEN3_VBALANCE_STEP_V, 3)


def gen3_balance_code(vbalance_v: float) -> int | None:
    """The gen3 balance code that sets ``vbalance_v``, or None if no switch setting does."""
    code = round((vbalance_v - GEN3_VBALANCE_BASE_V) / GEN3_VBALANCE_STEP_V)
    if 1 <= code <= 31 and math.isclose(gen3_vbalance_v(code), vbalance_v, abs_tol=1e-6):
        return code
    return None


class SensorKind(StrEnum):
    """The current sensor family."""

    GEN3_DUAL_RANGE = "dual-range"
    GEN2 = "gen2"


#: Gen2 sensor ratings in A (the 400 A type is settable by the hidden switches, not in the spec
#: table; its resolution follows the pattern rating / 200).
GEN2_SENSOR_RATINGS_A = (25, 50, 100, 250, 400, 500, 1000, 2000)
GEN3_LOOPS = (1, 2, 4)


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """Measurement characteristics of one current sensor as wired."""

    low_range_a: float
    """Below this magnitude the fine resolution applies (gen2: single range, = max_a)."""
    low_resolution_a: float
    high_resolution_a: float
    blind_spot_a: float
    """Readings with a magnitude at or below this are reported as 0 A (when enabled)."""
    max_a: float


@dataclass(frozen=True, slots=True)
class CurrentSensorSettings:
    """How the current sensors are fitted."""

    kind: SensorKind = SensorKind.GEN3_DUAL_RANGE
    loops: int = 1
    """Gen3: how many times the cable passes through the sensor (1, 2 or 4)."""
    rating_a: int = 100
    """Gen2: the sensor type in A (25 ... 2000)."""
    sensor_count: int = 2
    """1: one sensor on input 1 measures the battery current; 2: charger in and consumers out."""
    blind_spot: bool = True
    """Gen2 option switch 3 (gen3 always has its blind spot)."""

    def __post_init__(self) -> None:
        if self.sensor_count not in (1, 2):
            raise ValueError(f"sensor count {self.sensor_count} is not 1 or 2")
        if self.kind is SensorKind.GEN3_DUAL_RANGE:
            if self.loops not in GEN3_LOOPS:
                raise ValueError(f"loops {self.loops} is not one of 1, 2, 4")
            if not self.blind_spot:
                raise ValueError("the gen3 dual-range sensor's blind spot cannot be switched off")
        elif self.rating_a not in GEN2_SENSOR_RATINGS_A:
            raise ValueError(
                f"gen2 sensor type {self.rating_a} A is not one of "
                + ", ".join(str(r) for r in GEN2_SENSOR_RATINGS_A)
            )

    @property
    def spec(self) -> SensorSpec:
        """The resolution, blind spot and range of this sensor as wired (manual tables)."""
        if self.kind is SensorKind.GEN3_DUAL_RANGE:
            # 1 loop: < 20 A at 50 mA, above at 1.25 A, blind spot 300 mA, max 500 A; each extra
            # pass through the sensor divides every figure by the number of loops.
            n = self.loops
            return SensorSpec(
                low_range_a=20.0 / n,
                low_resolution_a=0.050 / n,
                high_resolution_a=1.25 / n,
                blind_spot_a=0.300 / n,
                max_a=500.0 / n,
            )
        resolution_a = self.rating_a / 200.0
        return SensorSpec(
            low_range_a=float(self.rating_a),
            low_resolution_a=resolution_a,
            high_resolution_a=resolution_a,
            blind_spot_a=2 * resolution_a if self.blind_spot else 0.0,
            max_a=float(self.rating_a),
        )


@dataclass(frozen=True, slots=True)
class BmsSettings:
    """Every setting of one BMS that its behaviour depends on.

    The voltage thresholds and capacity are also in the UART frame; Tmin, Tmax and the restart
    percentages are not (they live only in the BMS and its app), so a twin shadowing a real BMS
    needs them from its configuration.
    """

    cell_count: int
    vmin_v: float
    vbalance_v: float
    vmax_v: float
    capacity_wh: float
    generation: Generation = Generation.GEN3
    balancing: bool = True
    """False for gen3 balance code 0: the cells never bypass; Vbalance stays the "full" level."""
    vnominal_v: float = 3.2
    tmin_c: float = 0.0
    tmax_c: float = 55.0
    charge_restart_pct: float = 90.0
    discharge_restart_pct: float = 10.0
    mode: RelayMode = RelayMode.NORMAL
    sensor: CurrentSensorSettings = field(default_factory=CurrentSensorSettings)
    solar_peak_w: float = 0.0
    inverter_peak_w: float = 0.0
    message_period_s: float = 1.0
    """The chain's message cycle: 1.0 s, or 0.5 s (gen2 option switch 1 "fast message")."""
    charge_efficiency_pct: float = 100.0
    """Share of the charging current that is counted into SOC (UART key 1)."""
    empty_recalibration_s: float = 60.0
    """Gen3: how long a cell must stay below Vmin, with discharge not allowed, before SOC = 0."""

    def __post_init__(self) -> None:
        lo_n, hi_n = CELL_COUNT_RANGE
        if not lo_n <= self.cell_count <= hi_n:
            raise ValueError(f"cell count {self.cell_count} is out of range ({lo_n}..{hi_n})")
        lo_v, hi_v = CELL_VOLTAGE_RANGE_V[self.generation]
        for name in ("vmin_v", "vbalance_v", "vmax_v", "vnominal_v"):
            value = getattr(self, name)
            if not lo_v <= value <= hi_v:
                raise ValueError(
                    f"{name} {value} V is outside the {self.generation} board range "
                    f"({lo_v}..{hi_v} V)"
                )
        if not self.vmin_v < self.vbalance_v < self.vmax_v:
            raise ValueError(
                f"thresholds must satisfy vmin_v < vbalance_v < vmax_v "
                f"(got {self.vmin_v} / {self.vbalance_v} / {self.vmax_v} V)"
            )
        if self.generation is Generation.GEN3:
            if gen3_balance_code(self.vbalance_v) is None:
                raise ValueError(
                    f"vbalance_v {self.vbalance_v} V cannot be set on gen3 option switches "
                    "(allowed 1.9..4.9 V in 0.1 V steps)"
                )
        else:
            if not any(math.isclose(self.vbalance_v, v) for v in GEN2_VBALANCE_VALUES_V):
                raise ValueError(
                    f"vbalance_v {self.vbalance_v} V cannot be set on gen2 option switches "
                    "(allowed 3.4, 3.5, 3.6, 3.7, 4.0, 4.1, 4.2, 4.3 V)"
                )
            if not self.balancing:
                raise ValueError("gen2 has no 'no balancing' setting")
            if self.sensor.kind is not SensorKind.GEN2:
                raise ValueError("a gen2 BMS uses a gen2 current sensor type")
        if (
            self.generation is Generation.GEN3
            and self.sensor.kind is not SensorKind.GEN3_DUAL_RANGE
        ):
            raise ValueError("a gen3 BMS uses the dual-range current sensor")
        lo_t, hi_t = TEMPERATURE_RANGE_C
        if not lo_t <= self.tmin_c < self.tmax_c <= hi_t:
            raise ValueError(
                f"temperatures must satisfy {lo_t} <= tmin_c < tmax_c <= {hi_t} "
                f"(got {self.tmin_c} / {self.tmax_c} C)"
            )
        for name in ("charge_restart_pct", "discharge_restart_pct"):
            value = getattr(self, name)
            if not 0.0 <= value <= 100.0:
                raise ValueError(f"{name} {value} is out of range (0..100)")
        lo_c, hi_c = CAPACITY_WH_RANGE
        if not lo_c <= self.capacity_wh <= hi_c:
            raise ValueError(
                f"capacity_wh {self.capacity_wh:g} Wh is out of range ({lo_c:.0f}..{hi_c:.0f} Wh, "
                "what the UART frame carries)"
            )
        if not self.discharge_restart_pct < self.charge_restart_pct:
            raise ValueError(
                f"charge_restart_pct {self.charge_restart_pct:g} must be above "
                f"discharge_restart_pct {self.discharge_restart_pct:g}: otherwise a pack that "
                "ran full and then empty keeps both relays off for ever (charging waits for SOC "
                "below the first, the load for SOC at or above the second)"
            )
        if self.message_period_s not in (0.5, 1.0):
            raise ValueError(f"message_period_s {self.message_period_s} is not 0.5 or 1.0")
        if not 50.0 <= self.charge_efficiency_pct <= 100.0:
            raise ValueError(f"charge_efficiency_pct {self.charge_efficiency_pct} not in 50..100")
        if self.empty_recalibration_s < 0:
            raise ValueError("empty_recalibration_s must be >= 0")
        if self.solar_peak_w < 0 or self.inverter_peak_w < 0:
            raise ValueError("peak powers must be >= 0")

    @property
    def capacity_ah(self) -> float:
        """The capacity setting in Ah: Wh / (nominal cell voltage x cells)."""
        return self.capacity_wh / (self.vnominal_v * self.cell_count)

    @property
    def empty_recalibration(self) -> bool:
        """Whether the BMS recalibrates SOC to 0 % when empty (gen3 only; gen2 only on full)."""
        return self.generation is Generation.GEN3


#: The settings a remote client may change (Modbus, MQTT), after the PIN: the ones the app lets
#: a user edit that the frame does not carry from the boards' switches. Name -> (unit, what).
WRITABLE_SETTINGS: dict[str, tuple[str, str]] = {
    "vmin_v": ("V", "cell V-min: warning Vl, load relay off"),
    "vmax_v": ("V", "cell V-max: warning Vh, charge relay off"),
    "tmin_c": ("C", "T-min: warning Tl, both relays off"),
    "tmax_c": ("C", "T-max: warning Th, both relays off"),
    "charge_restart_pct": ("%", "charge relay on again below this SOC"),
    "discharge_restart_pct": ("%", "load relay on again at or above this SOC"),
    "capacity_wh": ("Wh", "battery capacity"),
}


def with_settings(settings: BmsSettings, values: dict[str, float]) -> BmsSettings:
    """``settings`` with writable settings changed, validated together.

    Raises ``KeyError`` for a setting that is not writable and ``ValueError`` (naming the
    problem) for a value the BMS cannot hold, e.g. V-max below V-balance.
    """
    for name, value in values.items():
        if name not in WRITABLE_SETTINGS:
            raise KeyError(f"{name} is not a writable setting")
        if not math.isfinite(value):
            raise ValueError(f"{name} {value!r} is not a finite number")

    def pick(name: str) -> float:
        return float(values[name]) if name in values else float(getattr(settings, name))

    return replace(
        settings,
        vmin_v=pick("vmin_v"),
        vmax_v=pick("vmax_v"),
        tmin_c=pick("tmin_c"),
        tmax_c=pick("tmax_c"),
        charge_restart_pct=pick("charge_restart_pct"),
        discharge_restart_pct=pick("discharge_restart_pct"),
        capacity_wh=pick("capacity_wh"),
    )


#: Any board's cell voltages (both generations together).
_ANY_CELL_V = (
    min(lo for lo, _ in CELL_VOLTAGE_RANGE_V.values()),
    max(hi for _, hi in CELL_VOLTAGE_RANGE_V.values()),
)
#: The bounds of each writable setting that every BMS shares.
_WRITABLE_BOUNDS: dict[str, tuple[float, float]] = {
    "vmin_v": _ANY_CELL_V,
    "vmax_v": _ANY_CELL_V,
    "tmin_c": TEMPERATURE_RANGE_C,
    "tmax_c": TEMPERATURE_RANGE_C,
    "charge_restart_pct": (0.0, 100.0),
    "discharge_restart_pct": (0.0, 100.0),
    "capacity_wh": CAPACITY_WH_RANGE,
}


def writable_value_problem(name: str, value: float) -> str | None:
    """What is wrong with ``value`` for writable setting ``name`` on any BMS (None: nothing).

    The bounds every BMS shares (the board ranges of both generations, the frame's capacity);
    ``with_settings`` checks the rest against the pack's own settings.
    """
    if name not in WRITABLE_SETTINGS:
        return f"{name} is not a writable setting"
    if not math.isfinite(value):
        return f"{name} {value!r} is not a finite number"
    lo, hi = _WRITABLE_BOUNDS[name]
    if not lo <= value <= hi:
        return f"{name} {value:g} is out of range ({lo:g}..{hi:g})"
    return None


def writable_values(settings: BmsSettings) -> dict[str, float]:
    """The writable settings' present values."""
    return {name: float(getattr(settings, name)) for name in WRITABLE_SETTINGS}
