r"""``BmsLogic``: the charge/load enable logic of one 123\SmartBMS, pure and deterministic.

One ``step(inputs, now_s, local_day)`` per received frame (or per emulated message cycle):

1. integrate the battery current since the previous step into SOC and the energy counters
   (trapezoid rule; not across a gap longer than ``max_integration_gap_s``, nor across a
   communication error: a broken chain carries no current readings);
2. full recalibration;
3. the relay tables, with the SOC of this cycle;
4. the empty recalibration (gen3), which depends on the discharge relay;
5. warnings, inverter limits, requests.

The same class runs inside the emulated End board and inside the twin. It never reads a clock:
``now_s`` is any monotonic time in seconds, ``local_day`` the local calendar day as an ordinal.
"""

from __future__ import annotations

from typing import ClassVar, Final

from twin.model.energy import (
    EnergyCounters,
    Powers,
    add_energy,
    clear_totals,
    measure_powers,
    roll_over,
    split_power,
)
from twin.model.inputs import BmsInputs
from twin.model.limits import (
    Curves,
    InverterLimits,
    LimitFlag,
    LimitSettings,
    LimitState,
    current_targets_a,
    cvl_target_v,
    early_warnings,
    update_force_charge,
    with_limits,
)
from twin.model.relays import RelayDecision, decide_relays_fast
from twin.model.settings import BmsSettings
from twin.model.soc import SocState, count_charge, is_full, recalibrate_full, track_empty
from twin.model.status import STATUS_FLAGS, StatusFlag
from twin.model.values import Value

SECONDS_PER_DAY = 86_400.0


class LogicState(Value):
    """Everything ``BmsLogic`` remembers between cycles.

    ``soc`` and ``energy`` are what a restart must restore; the rest rebuilds itself within a
    few cycles. ``None`` for ``soc``, ``energy`` or ``limits`` means a fresh one.
    """

    FIELDS: ClassVar = (
        "soc",
        "energy",
        "charge_allowed",
        "discharge_allowed",
        "limits",
        "last_now_s",
        "last_inputs",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        soc: SocState | None = None,
        energy: EnergyCounters | None = None,
        charge_allowed: bool = False,
        discharge_allowed: bool = False,
        limits: LimitState | None = None,
        last_now_s: float | None = None,
        last_inputs: BmsInputs | None = None,
    ) -> None:
        self.soc: Final = soc if soc is not None else SocState()
        self.energy: Final = energy if energy is not None else EnergyCounters()
        self.charge_allowed: Final = charge_allowed
        self.discharge_allowed: Final = discharge_allowed
        self.limits: Final = limits if limits is not None else LimitState()
        self.last_now_s: Final = last_now_s
        self.last_inputs: Final = last_inputs


class PackState(Value):
    """The logic's view of one pack after one cycle: a frozen snapshot for exporters."""

    FIELDS: ClassVar = (
        "now_s",
        "inputs",
        "charge",
        "discharge",
        "warnings",
        "soc_pct",
        "soc_calibrated",
        "stored_energy_wh",
        "capacity_wh",
        "energy",
        "limits",
    )
    __slots__ = FIELDS

    def __init__(
        self,
        now_s: float,
        inputs: BmsInputs,
        charge: RelayDecision,
        discharge: RelayDecision,
        warnings: StatusFlag,
        soc_pct: float,
        soc_calibrated: bool,
        stored_energy_wh: float,
        capacity_wh: float,
        energy: EnergyCounters,
        limits: InverterLimits,
    ) -> None:
        self.now_s: Final = now_s
        self.inputs: Final = inputs
        self.charge: Final = charge
        self.discharge: Final = discharge
        self.warnings: Final = warnings
        """E, Vl, Vh, Tl, Th (the app's warning lights)."""
        self.soc_pct: Final = soc_pct
        self.soc_calibrated: Final = soc_calibrated
        self.stored_energy_wh: Final = stored_energy_wh
        self.capacity_wh: Final = capacity_wh
        self.energy: Final = energy
        self.limits: Final = limits

    @property
    def powers(self) -> Powers:
        """The instantaneous powers of this cycle's reading."""
        return measure_powers(self.inputs)

    @property
    def charge_allowed(self) -> bool:
        """The charge relay is ON."""
        return self.charge.allowed

    @property
    def discharge_allowed(self) -> bool:
        """The discharge (load) relay is ON."""
        return self.discharge.allowed

    @property
    def status(self) -> StatusFlag:
        """UART status byte 1 as the BMS would send it."""
        flags = int(self.warnings)
        if self.charge.allowed:
            flags |= _CHARGE_ALLOWED
        if self.discharge.allowed:
            flags |= _DISCHARGE_ALLOWED
        if not self.soc_calibrated:
            flags |= _NOT_CALIBRATED
        return STATUS_FLAGS[flags]


_E, _VL, _VH = StatusFlag.E.value, StatusFlag.VL.value, StatusFlag.VH.value
_TL, _TH = StatusFlag.TL.value, StatusFlag.TH.value
_CHARGE_ALLOWED = StatusFlag.CHARGE_ALLOWED.value
_DISCHARGE_ALLOWED = StatusFlag.DISCHARGE_ALLOWED.value
_NOT_CALIBRATED = StatusFlag.SOC_NOT_CALIBRATED.value


def bms_warnings(inputs: BmsInputs, settings: BmsSettings) -> StatusFlag:
    """The warnings E / Vh / Vl / Th / Tl of one reading.

    The comparisons are those of the relay tables' disable column (a cell >= V-max raises Vh
    exactly when it switches the charge relay off). With a communication error only E is set:
    the other readings are not data.
    """
    if inputs.comm_error:
        return StatusFlag.E
    flags = 0
    if inputs.max_cell_voltage_v >= settings.vmax_v:
        flags |= _VH
    if inputs.min_cell_voltage_v <= settings.vmin_v:
        flags |= _VL
    if inputs.max_temp_c > settings.tmax_c:
        flags |= _TH
    if inputs.min_temp_c < settings.tmin_c:
        flags |= _TL
    return STATUS_FLAGS[flags]


_WARNING_TO_ALARM = {
    StatusFlag.E: LimitFlag.COMMUNICATION,
    StatusFlag.VH: LimitFlag.CELL_OVER_VOLTAGE,
    StatusFlag.VL: LimitFlag.CELL_UNDER_VOLTAGE,
    StatusFlag.TH: LimitFlag.OVER_TEMPERATURE,
    StatusFlag.TL: LimitFlag.UNDER_TEMPERATURE,
}


def _alarms(warnings: int) -> LimitFlag:
    alarms = 0
    for warning, alarm in _WARNING_TO_ALARM.items():
        if warnings & warning.value:
            alarms |= alarm.value
    return LimitFlag(alarms)


#: The alarm set of every warning combination (the status byte's bits 2-6), precomputed.
_ALARMS: tuple[LimitFlag, ...] = tuple(_alarms(value) for value in range(256))


def alarms_from(warnings: StatusFlag) -> LimitFlag:
    """The inverter alarm set of the BMS warnings (the BMS has acted on each of them)."""
    return _ALARMS[warnings]


def _average_current_a(previous: BmsInputs, current: BmsInputs) -> float | None:
    a = previous.measured_battery_current_a
    b = current.measured_battery_current_a
    if a is None:
        return b
    if b is None:
        return a
    return (a + b) / 2.0


class BmsLogic:
    """The BMS logic of one pack; ``step`` advances it by one cycle.

    The object holds a frozen ``LogicState`` that each call replaces, so a snapshot of
    ``state`` can be persisted and handed to a new ``BmsLogic`` to resume.
    """

    def __init__(
        self,
        settings: BmsSettings,
        limits: LimitSettings | None = None,
        state: LogicState | None = None,
        *,
        max_integration_gap_s: float = 10.0,
    ) -> None:
        if max_integration_gap_s <= 0:
            raise ValueError("max_integration_gap_s must be > 0")
        self.settings = settings
        self.limit_settings = limits if limits is not None else LimitSettings()
        self.state = state if state is not None else LogicState()
        self.max_integration_gap_s = max_integration_gap_s
        self._derive()

    def update_settings(self, settings: BmsSettings) -> None:
        """Use new settings from the next cycle on (e.g. a validated Modbus write)."""
        self.settings = settings
        self._derive()

    def _derive(self) -> None:
        """What depends on the settings only: computed once, not every cycle."""
        settings, limits = self.settings, self.limit_settings
        self._curves = Curves.of(settings, limits)
        self._limits: InverterLimits | None = None
        self._split: tuple[BmsInputs, tuple[float, float]] | None = None
        self._dvl_v = settings.cell_count * (settings.vmin_v + limits.dvl_margin_v)

    def clear_counters(self) -> None:
        """The app's "clear energy counters": totals to zero (today's counters stay)."""
        self.state = self.state.replace(energy=clear_totals(self.state.energy))

    def step(
        self,
        inputs: BmsInputs,
        now_s: float,
        local_day: int,
        relay_soc_pct: float | None = None,
    ) -> PackState:
        """Advance one cycle with ``inputs`` measured at ``now_s``; returns the new snapshot.

        ``relay_soc_pct``: the SOC the relay restart rules use instead of the twin's own count
        (a twin shadowing a real BMS follows the SOC the BMS reports, so that both restart
        the relays at the same moment); the twin's count goes on and is reported as its SOC.
        """
        # Positional constructors instead of dataclasses.replace throughout: a closed-loop
        # simulation runs this twice per simulated second (End board and twin), and replace()
        # alone used to cost more than the relay tables.
        settings, limit_settings, state = self.settings, self.limit_settings, self.state
        dt_s = 0.0 if state.last_now_s is None else max(0.0, now_s - state.last_now_s)

        # 1. Coulomb counting and energy, over the interval since the previous reading.
        soc = state.soc
        soc_pct = soc.soc_pct
        energy = roll_over(state.energy, local_day)
        previous = state.last_inputs
        if (
            previous is not None
            and not previous.comm_error
            and not inputs.comm_error
            and 0.0 < dt_s <= self.max_integration_gap_s
        ):
            current_a = _average_current_a(previous, inputs)
            if current_a is not None:
                soc_pct = count_charge(soc_pct, current_a, dt_s, settings)
            one_sensor = settings.sensor.sensor_count == 1
            # The previous reading's split was computed last cycle: reuse it.
            cached = self._split
            if cached is not None and cached[0] is previous:
                in0, out0 = cached[1]
            else:
                in0, out0 = split_power(previous, one_sensor)
            in1, out1 = split_power(inputs, one_sensor)
            self._split = (inputs, (in1, out1))
            hours = dt_s / 3600.0
            energy = add_energy(energy, (in0 + in1) / 2 * hours, (out0 + out1) / 2 * hours)
        since_full_s = soc.time_since_full_s
        if since_full_s is not None:
            since_full_s += dt_s
        if soc_pct != soc.soc_pct or since_full_s != soc.time_since_full_s:
            soc = SocState(soc_pct, soc.calibrated, since_full_s, soc.below_vmin_since_s)

        # 2. Full recalibration.
        if is_full(inputs, settings):
            soc = recalibrate_full(soc)

        # 3. Relays.
        decisions = decide_relays_fast(
            state.charge_allowed,
            state.discharge_allowed,
            inputs,
            soc.soc_pct if relay_soc_pct is None else relay_soc_pct,
            settings,
        )
        charge_allowed = decisions.charge.allowed
        discharge_allowed = decisions.discharge.allowed

        # 4. Empty recalibration (gen3).
        soc = track_empty(soc, inputs, discharge_allowed, now_s, settings)

        # 5. Warnings and limits.
        warnings = bms_warnings(inputs, settings)
        ccl_a, dcl_a = current_targets_a(
            inputs, charge_allowed, discharge_allowed, settings, limit_settings, self._curves
        )
        limit_state, (cvl_v, ccl_pub_a, dcl_pub_a) = with_limits(
            state.limits,
            cvl_target_v(inputs, settings, limit_settings),
            ccl_a,
            dcl_a,
            now_s,
            dt_s,
            limit_settings,
        )
        force_charge = update_force_charge(
            state.limits.force_charge,
            soc.soc_pct,
            int(warnings) & _VL != 0,  # int(): an IntFlag "&" builds a new flag (slow)
            limit_settings,
        )
        if force_charge != limit_state.force_charge:
            limit_state = LimitState(
                limit_state.cvl, limit_state.ccl, limit_state.dcl, force_charge
            )
        published = (ccl_pub_a, dcl_pub_a)
        full_charge = (
            soc.time_since_full_s is None
            or soc.time_since_full_s >= limit_settings.full_charge_interval_days * SECONDS_PER_DAY
        )
        alarms = _ALARMS[warnings]
        early = early_warnings(inputs, published, settings, limit_settings)
        limits = self._limits
        # Limits change rarely between cycles: keep the same object while they are equal.
        if not (
            limits is not None
            and limits.charge_voltage_v == cvl_v
            and limits.charge_current_a == ccl_pub_a
            and limits.discharge_current_a == dcl_pub_a
            and limits.force_charge == force_charge
            and limits.full_charge == full_charge
            and limits.alarms is alarms
            and limits.warnings is early
            and limits.discharge_voltage_v == self._dvl_v
        ):
            limits = InverterLimits(
                cvl_v,
                ccl_pub_a,
                dcl_pub_a,
                self._dvl_v,
                force_charge,
                full_charge,
                alarms,
                early,
            )
            self._limits = limits

        # A clock that jumped back re-anchors here: one interval is lost, none is doubled.
        self.state = LogicState(
            soc, energy, charge_allowed, discharge_allowed, limit_state, now_s, inputs
        )
        return PackState(
            now_s,
            inputs,
            decisions.charge,
            decisions.discharge,
            warnings,
            soc.soc_pct,
            soc.calibrated,
            soc.soc_pct / 100.0 * settings.capacity_wh,
            settings.capacity_wh,
            energy,
            limits,
        )
