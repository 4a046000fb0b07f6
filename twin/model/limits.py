"""The limits an inverter needs: CVL, CCL, DCL, DVL, requests, alarms and warnings.

The algorithm is the synthesis of inverter-can.md section 5.5, with every parameter in
``LimitSettings``:

- CVL = cells x (V-balance + margin); when the highest cell overshoots that per-cell target,
  CVL drops to the pack voltage minus the overshoot (dbus-serialbattery's P-controller with the
  highest cell), never below cells x a floor voltage, so it is never 0.
- CCL / DCL = the user cap x the smallest of: a taper by the highest (charge) or lowest
  (discharge) cell voltage, and a temperature derating over the lowest and highest sensor;
  0 whenever the relay does not allow it.
- Published values follow the targets through a filter: decreases at once; increases only after
  the target has stayed above the published value for ``increase_hold_s``, then ramped, and a
  limit that reached 0 comes back only once the target passes ``resume_threshold_a``, so limits
  do not flap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntFlag
from itertools import pairwise

from twin.model.checks import require_non_negative
from twin.model.inputs import BmsInputs
from twin.model.settings import BmsSettings

Curve = tuple[tuple[float, float], ...]
"""Points (x, fraction 0..1), x ascending; linear in between, flat beyond the ends."""


def interpolate(curve: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear value of ``curve`` at ``x``, flat beyond the first and last point."""
    if x <= curve[0][0]:
        return curve[0][1]
    for (x0, y0), (x1, y1) in pairwise(curve):
        if x <= x1:
            if x1 == x0:
                return y1
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return curve[-1][1]


def check_curve(name: str, curve: Curve) -> None:
    """Raise ValueError unless ``curve`` has points with ascending x and fractions in 0..1."""
    if len(curve) < 2:
        raise ValueError(f"{name} needs at least two points")
    xs = [x for x, _ in curve]
    if xs != sorted(xs):
        raise ValueError(f"{name} points must be in ascending order")
    if any(not 0.0 <= f <= 1.0 for _, f in curve):
        raise ValueError(f"{name} fractions must be in 0..1")


@dataclass(frozen=True, slots=True)
class LimitSettings:
    """Parameters of the limit algorithm (all optional; the defaults suit a home battery)."""

    max_charge_current_a: float = 100.0
    max_discharge_current_a: float = 100.0
    cvl_margin_v: float = 0.05
    """Per cell above V-balance: 16 x (3.40 + 0.05) = 55.2 V for a 16S LiFePO4 pack."""
    cvl_overshoot_gain: float = 1.0
    cvl_floor_cell_v: float | None = None
    """Lowest per-cell CVL; None = the nominal cell voltage."""
    dvl_margin_v: float = 0.10
    """DVL = cells x (V-min + margin): 16 x (2.90 + 0.10) = 48.0 V for 16S LiFePO4."""
    charge_taper: Curve | None = None
    """(highest cell V, fraction); None = derived from V-balance and V-max."""
    discharge_taper: Curve | None = None
    """(lowest cell V, fraction); None = derived from V-min."""
    temperature_derating: bool = True
    temperature_curve: Curve | None = None
    """(cell C, fraction) applied to the lowest and highest sensor; None = from T-min / T-max."""
    current_ramp_a_per_s: float = 5.0
    cvl_ramp_v_per_s: float = 0.01
    increase_hold_s: float = 10.0
    cvl_increase_hold_s: float = 60.0
    resume_threshold_a: float = 2.0
    deadband_a: float = 1.0
    force_charge_on_pct: float = 5.0
    force_charge_off_pct: float = 10.0
    full_charge_interval_days: float = 30.0
    warning_cell_margin_v: float = 0.05
    warning_temp_margin_c: float = 5.0
    imbalance_warning_v: float = 0.10
    overcurrent_margin_pct: float = 10.0
    overcurrent_margin_a: float = 2.0

    def __post_init__(self) -> None:
        require_non_negative(
            self,
            "max_charge_current_a",
            "max_discharge_current_a",
            "cvl_margin_v",
            "cvl_overshoot_gain",
            "dvl_margin_v",
            "current_ramp_a_per_s",
            "cvl_ramp_v_per_s",
            "increase_hold_s",
            "cvl_increase_hold_s",
            "resume_threshold_a",
            "deadband_a",
            "warning_cell_margin_v",
            "warning_temp_margin_c",
            "imbalance_warning_v",
            "overcurrent_margin_pct",
            "overcurrent_margin_a",
        )
        if self.current_ramp_a_per_s == 0 or self.cvl_ramp_v_per_s == 0:
            raise ValueError("ramp rates must be > 0 (a limit that cannot rise never recovers)")
        if self.cvl_floor_cell_v is not None and self.cvl_floor_cell_v <= 0:
            raise ValueError("cvl_floor_cell_v must be > 0 (CVL is never 0)")
        if not 0 <= self.force_charge_on_pct < self.force_charge_off_pct <= 100:
            raise ValueError(
                "force charge thresholds must satisfy 0 <= force_charge_on_pct < "
                "force_charge_off_pct <= 100"
            )
        if self.full_charge_interval_days <= 0:
            raise ValueError("full_charge_interval_days must be > 0")
        for name in ("charge_taper", "discharge_taper", "temperature_curve"):
            curve = getattr(self, name)
            if curve is not None:
                check_curve(name, curve)


def charge_taper(settings: BmsSettings, limits: LimitSettings) -> Curve:
    """The charge current fraction by highest cell voltage."""
    if limits.charge_taper is not None:
        return limits.charge_taper
    vb, vmax = settings.vbalance_v, settings.vmax_v
    # Full current up to just below V-balance, a quarter at V-balance (where the board starts
    # bypassing 1 A), about the balancing current half way to V-max, nothing at V-max.
    return ((vb - 0.05, 1.0), (vb, 0.25), (vb + (vmax - vb) / 2, 0.02), (vmax, 0.0))


def discharge_taper(settings: BmsSettings, limits: LimitSettings) -> Curve:
    """The discharge current fraction by lowest cell voltage."""
    if limits.discharge_taper is not None:
        return limits.discharge_taper
    vmin = settings.vmin_v
    return ((vmin, 0.0), (vmin + 0.1, 0.05), (vmin + 0.2, 0.25), (vmin + 0.3, 1.0))


def temperature_curve(settings: BmsSettings, limits: LimitSettings) -> Curve:
    """The current fraction by cell temperature.

    The default is dbus-serialbattery's charge table (0/25/50/100 % at 0/2/5/10 C, 100/50/25/0 %
    at 40/45/50/55 C) anchored at T-min and T-max, compressed when they are less than 25 C apart.
    """
    if limits.temperature_curve is not None:
        return limits.temperature_curve
    lo, hi = settings.tmin_c, settings.tmax_c
    s = min(1.0, (hi - lo) / 25.0)
    return (
        (lo, 0.0),
        (lo + 2 * s, 0.25),
        (lo + 5 * s, 0.5),
        (lo + 10 * s, 1.0),
        (hi - 15 * s, 1.0),
        (hi - 10 * s, 0.5),
        (hi - 5 * s, 0.25),
        (hi, 0.0),
    )


@dataclass(frozen=True, slots=True)
class Ramp:
    """A published limit and the time its target first rose above it."""

    value: float
    rising_since_s: float | None = None


def follow(
    ramp: Ramp | None,
    target: float,
    now_s: float,
    dt_s: float,
    *,
    rate_per_s: float,
    hold_s: float,
    deadband: float,
    resume_threshold: float,
) -> Ramp:
    """Move a published limit towards ``target``: down at once, up held, ramped and gated."""
    # An unchanged limit returns the same (immutable) object: nothing is built per cycle.
    if ramp is None:
        return Ramp(target)
    if target <= ramp.value:
        return ramp if target == ramp.value and ramp.rising_since_s is None else Ramp(target)
    if (ramp.value <= 0.0 and target < resume_threshold) or target - ramp.value < deadband:
        return ramp if ramp.rising_since_s is None else Ramp(ramp.value)
    since = now_s if ramp.rising_since_s is None else ramp.rising_since_s
    if now_s - since < hold_s:
        return Ramp(ramp.value, since)
    return Ramp(min(target, ramp.value + rate_per_s * dt_s), since)


class LimitFlag(IntFlag):
    """Alarm and warning conditions for inverters.

    One set used twice: as alarms (the BMS acted) and as warnings (early). Exporters map it to
    0x359 bits, 0x35A pairs and Modbus registers.
    """

    NONE = 0
    CELL_OVER_VOLTAGE = 1 << 0
    CELL_UNDER_VOLTAGE = 1 << 1
    OVER_TEMPERATURE = 1 << 2
    UNDER_TEMPERATURE = 1 << 3
    COMMUNICATION = 1 << 4
    CHARGE_OVER_CURRENT = 1 << 5
    DISCHARGE_OVER_CURRENT = 1 << 6
    CELL_IMBALANCE = 1 << 7
    BMS_INTERNAL = 1 << 8
    """Set by the service, e.g. when the twin's relay decision and a real BMS's diverge."""


_CELL_OVER_VOLTAGE = LimitFlag.CELL_OVER_VOLTAGE.value
_CELL_UNDER_VOLTAGE = LimitFlag.CELL_UNDER_VOLTAGE.value
_OVER_TEMPERATURE = LimitFlag.OVER_TEMPERATURE.value
_UNDER_TEMPERATURE = LimitFlag.UNDER_TEMPERATURE.value
_CELL_IMBALANCE = LimitFlag.CELL_IMBALANCE.value
_CHARGE_OVER_CURRENT = LimitFlag.CHARGE_OVER_CURRENT.value
_DISCHARGE_OVER_CURRENT = LimitFlag.DISCHARGE_OVER_CURRENT.value
_LIMIT_FLAGS: dict[int, LimitFlag] = {}


def limit_flag(value: int) -> LimitFlag:
    """``LimitFlag(value)``, memoised (the enum's own lookup of a combination is slow)."""
    found = _LIMIT_FLAGS.get(value)
    if found is None:
        found = _LIMIT_FLAGS[value] = LimitFlag(value)
    return found


@dataclass(frozen=True, slots=True)
class InverterLimits:
    """What an inverter is told, all magnitudes >= 0 and CVL / DVL > 0."""

    charge_voltage_v: float
    charge_current_a: float
    discharge_current_a: float
    discharge_voltage_v: float
    force_charge: bool
    """Pylon "request force charge": SOC is low, or a cell is at or below V-min."""
    full_charge: bool
    """Pylon "request full charge": no full recalibration for ``full_charge_interval_days``."""
    alarms: LimitFlag
    warnings: LimitFlag

    def __post_init__(self) -> None:
        if self.charge_voltage_v <= 0 or self.discharge_voltage_v <= 0:
            raise ValueError("CVL and DVL must be > 0")
        if self.charge_current_a < 0 or self.discharge_current_a < 0:
            raise ValueError("CCL and DCL must not be negative")


@dataclass(frozen=True, slots=True)
class LimitState:
    """What the limit filters remember between cycles."""

    cvl: Ramp | None = None
    ccl: Ramp | None = None
    dcl: Ramp | None = None
    force_charge: bool = False


def cvl_target_v(inputs: BmsInputs, settings: BmsSettings, limits: LimitSettings) -> float:
    """The charge voltage limit before filtering: never 0."""
    n = settings.cell_count
    target_cell_v = settings.vbalance_v + limits.cvl_margin_v
    nominal_v = n * target_cell_v
    floor_cell_v = (
        settings.vnominal_v if limits.cvl_floor_cell_v is None else limits.cvl_floor_cell_v
    )
    floor_v = n * min(floor_cell_v, target_cell_v)
    if inputs.comm_error:
        return nominal_v
    overshoot_v = inputs.max_cell_voltage_v - target_cell_v
    if overshoot_v <= 0:
        return nominal_v
    lowered_v = inputs.pack_voltage_v - limits.cvl_overshoot_gain * overshoot_v
    return max(floor_v, min(nominal_v, lowered_v))


@dataclass(frozen=True, slots=True)
class Curves:
    """The three curves of one (settings, limits) pair, built once instead of every cycle."""

    charge_taper: Curve
    discharge_taper: Curve
    temperature: Curve

    @classmethod
    def of(cls, settings: BmsSettings, limits: LimitSettings) -> Curves:
        """The curves that ``settings`` and ``limits`` define."""
        return cls(
            charge_taper(settings, limits),
            discharge_taper(settings, limits),
            temperature_curve(settings, limits),
        )


def current_targets_a(
    inputs: BmsInputs,
    charge_allowed: bool,
    discharge_allowed: bool,
    settings: BmsSettings,
    limits: LimitSettings,
    curves: Curves | None = None,
) -> tuple[float, float]:
    """(CCL, DCL) before filtering; ``curves`` (from the same settings) saves rebuilding them."""
    if inputs.comm_error:
        return (0.0, 0.0)
    if curves is None:
        curves = Curves.of(settings, limits)
    t_fraction = 1.0
    if limits.temperature_derating:
        curve = curves.temperature
        t_fraction = min(
            interpolate(curve, inputs.min_temp_c), interpolate(curve, inputs.max_temp_c)
        )
    ccl = 0.0
    if charge_allowed:
        v_fraction = interpolate(curves.charge_taper, inputs.max_cell_voltage_v)
        ccl = limits.max_charge_current_a * min(v_fraction, t_fraction)
    dcl = 0.0
    if discharge_allowed:
        v_fraction = interpolate(curves.discharge_taper, inputs.min_cell_voltage_v)
        dcl = limits.max_discharge_current_a * min(v_fraction, t_fraction)
    return (ccl, dcl)


def early_warnings(
    inputs: BmsInputs,
    published: tuple[float, float],
    settings: BmsSettings,
    limits: LimitSettings,
) -> LimitFlag:
    """Warnings raised before the BMS acts: thresholds close, imbalance, over-current."""
    if inputs.comm_error:
        return LimitFlag.COMMUNICATION
    # Plain ints while accumulating (an IntFlag "|" is slow), one memoised conversion at the end.
    flags = 0
    if inputs.max_cell_voltage_v >= settings.vmax_v - limits.warning_cell_margin_v:
        flags |= _CELL_OVER_VOLTAGE
    if inputs.min_cell_voltage_v <= settings.vmin_v + limits.warning_cell_margin_v:
        flags |= _CELL_UNDER_VOLTAGE
    if inputs.max_temp_c >= settings.tmax_c - limits.warning_temp_margin_c:
        flags |= _OVER_TEMPERATURE
    if inputs.min_temp_c <= settings.tmin_c + limits.warning_temp_margin_c:
        flags |= _UNDER_TEMPERATURE
    if inputs.max_cell_voltage_v - inputs.min_cell_voltage_v >= limits.imbalance_warning_v:
        flags |= _CELL_IMBALANCE
    current_a = inputs.measured_battery_current_a
    if current_a is not None:
        ccl, dcl = published
        margin = 1.0 + limits.overcurrent_margin_pct / 100.0
        if current_a > ccl * margin + limits.overcurrent_margin_a:
            flags |= _CHARGE_OVER_CURRENT
        if -current_a > dcl * margin + limits.overcurrent_margin_a:
            flags |= _DISCHARGE_OVER_CURRENT
    return limit_flag(flags)


def update_force_charge(
    previous: bool, soc_pct: float, cell_at_vmin: bool, limits: LimitSettings
) -> bool:
    """The force-charge request with hysteresis: on at low SOC (or a cell at V-min), off above."""
    if cell_at_vmin or soc_pct <= limits.force_charge_on_pct:
        return True
    if soc_pct >= limits.force_charge_off_pct:
        return False
    return previous


def with_limits(
    state: LimitState,
    cvl_v: float,
    ccl_a: float,
    dcl_a: float,
    now_s: float,
    dt_s: float,
    limits: LimitSettings,
) -> tuple[LimitState, tuple[float, float, float]]:
    """The limit state after one cycle with the given targets.

    Returns the new state and the published (CVL, CCL, DCL).
    """
    cvl = follow(
        state.cvl,
        cvl_v,
        now_s,
        dt_s,
        rate_per_s=limits.cvl_ramp_v_per_s,
        hold_s=limits.cvl_increase_hold_s,
        deadband=0.0,
        resume_threshold=0.0,
    )
    rate, hold = limits.current_ramp_a_per_s, limits.increase_hold_s
    deadband, resume = limits.deadband_a, limits.resume_threshold_a
    ccl = follow(
        state.ccl,
        ccl_a,
        now_s,
        dt_s,
        rate_per_s=rate,
        hold_s=hold,
        deadband=deadband,
        resume_threshold=resume,
    )
    dcl = follow(
        state.dcl,
        dcl_a,
        now_s,
        dt_s,
        rate_per_s=rate,
        hold_s=hold,
        deadband=deadband,
        resume_threshold=resume,
    )
    if cvl is state.cvl and ccl is state.ccl and dcl is state.dcl:
        return state, (cvl.value, ccl.value, dcl.value)
    return LimitState(cvl, ccl, dcl, state.force_charge), (cvl.value, ccl.value, dcl.value)
