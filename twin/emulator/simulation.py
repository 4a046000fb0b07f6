r"""Scenarios: a pack, its plant and its chain in a closed loop, faster than real time.

The loop goes through the wire, exactly as production does::

    plant --currents--> pack physics --> current sensors and boards --> End board BmsLogic
      ^                                                                   | encode_frame
      |  CHARGE / LOAD relays                                             v
      +------------------------------------------------------------- frame bytes (+ noise)
                                                                          | StreamDecoder
                                                                          v
                                            the twin: FrameAssembler -> its own BmsLogic

so a scenario tests the decoder, the assembly and the twin's logic on the bytes a real
123\SmartBMS would send, and shows where the twin and the BMS it shadows disagree.

Pure: no clock, no files. ``twin.commands.simulate`` adds the progress bar, CSV, plot and summary.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import numpy.typing as npt

from twin.emulator.chain import ChainSpec, EmulatedChain
from twin.emulator.events import (
    Action,
    BreakChain,
    BypassLoad,
    Calibrate,
    ChangeSettings,
    DeadTemperatureSensor,
    LeakyCell,
    RepairChain,
    SensorFaultEvent,
    SetPlant,
    TimedEvent,
    WeakCell,
    WireNoise,
    apply_changes,
)
from twin.emulator.pack import Pack, PackSpec, board_currents_a
from twin.emulator.plant import Plant, PlantSpec
from twin.emulator.sensor import CurrentSensor, SensorErrors, SensorWiring
from twin.model.limits import InverterLimits, LimitSettings
from twin.model.logic import SECONDS_PER_DAY, LogicState, PackState
from twin.model.relays import Condition, RelayDecision
from twin.model.settings import BmsSettings
from twin.model.soc import SocState
from twin.protocol.assembly import AssemblySettings
from twin.protocol.shadow import PackShadow

# ---- the scenario ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ambient:
    """The air temperature: a daily sine between a night low and an afternoon high."""

    mean_c: float = 20.0
    swing_c: float = 8.0
    """Peak to peak."""
    warmest_h: float = 15.0

    def at(self, clock_s: float) -> float:
        """The air temperature at local clock time ``clock_s`` (seconds from midnight)."""
        hour = (clock_s % SECONDS_PER_DAY) / 3600.0
        return self.mean_c + self.swing_c / 2.0 * math.cos(
            2.0 * math.pi * (hour - self.warmest_h) / 24.0
        )


@dataclass(frozen=True, slots=True)
class SensorSetup:
    """The current sensors' imperfections; None = a plausible unit drawn from the seed."""

    errors1: SensorErrors | None = None
    errors2: SensorErrors | None = None
    reversed1: bool = False
    reversed2: bool = False


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a run needs; ``twin.config.load_scenario`` builds one from a TOML file."""

    name: str
    settings: BmsSettings
    duration_s: float
    step_s: float = 1.0
    start_h: float = 0.0
    """The local clock time at the start."""
    limits: LimitSettings = field(default_factory=LimitSettings)
    pack: PackSpec = field(default_factory=PackSpec)
    plant: PlantSpec = field(default_factory=PlantSpec)
    chain: ChainSpec = field(default_factory=ChainSpec)
    sensors: SensorSetup = field(default_factory=SensorSetup)
    ambient: Ambient = field(default_factory=Ambient)
    initial_bms_soc_pct: float | None = None
    """The SOC the BMS believes at the start; None = the pack's true SOC."""
    twin_stale_after_s: float = 10.0
    """The twin's watchdog."""
    record_s: float | None = None
    """Time between recorded rows; None = as often as keeps the run under 20,000 rows."""
    events: tuple[TimedEvent, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not self.duration_s > 0 or not self.step_s > 0:
            raise ValueError("duration_s and step_s must be > 0")
        if self.step_s > 60.0:
            raise ValueError(f"step_s {self.step_s} is too long (allowed up to 60 s)")
        if self.duration_s / self.step_s > 50_000_000:
            raise ValueError("more than 50 million steps: use a longer step_s")
        if self.pack.cell_count != self.settings.cell_count:
            raise ValueError(
                f"the pack has {self.pack.cell_count} cells, the BMS settings say "
                f"{self.settings.cell_count}"
            )
        if not 0.0 <= self.start_h < 24.0:
            raise ValueError(f"start_h {self.start_h} is out of range (0..<24)")
        if self.record_s is not None and not self.record_s > 0:
            raise ValueError("record_s must be > 0")
        if self.twin_stale_after_s <= 0:
            raise ValueError("twin_stale_after_s must be > 0")

    @property
    def steps(self) -> int:
        """The number of physics steps."""
        return math.ceil(self.duration_s / self.step_s - 1e-9)


# ---- results -----------------------------------------------------------------------------

COLUMNS: tuple[str, ...] = (
    "time_s",
    "pack_voltage_v",
    "true_soc_pct",
    "bms_soc_pct",
    "twin_soc_pct",
    "cell_min_v",
    "cell_max_v",
    "cell_spread_mv",
    "charger_a",
    "load_a",
    "bypass_a",
    "battery_a",
    "measured_battery_a",
    "solar_w",
    "demand_w",
    "bms_charge",
    "bms_load",
    "twin_charge",
    "twin_load",
    "twin_comm_error",
    "cell_temp_max_c",
    "board_temp_max_c",
    "ambient_c",
    "balancing_cells",
    "cvl_v",
    "ccl_a",
    "dcl_a",
)
COLUMN = {name: index for index, name in enumerate(COLUMNS)}


@dataclass(frozen=True, slots=True)
class RelayChange:
    """A relay switching, as the BMS or the twin decided it."""

    time_s: float
    who: str
    """``bms`` (the End board) or ``twin``."""
    relay: str
    """``charge`` or ``load``."""
    on: bool
    reason: str
    """The conditions that turned it off (empty when it turned on)."""


@dataclass(frozen=True, slots=True)
class Summary:
    """What a run did, in figures."""

    duration_s: float
    steps: int
    bms_charge_toggles: int
    bms_load_toggles: int
    twin_charge_toggles: int
    twin_load_toggles: int
    divergent_s: float
    """Time the twin's relays disagreed with the BMS's."""
    energy_in_wh: float
    """True energy into the battery through the chargers."""
    energy_out_wh: float
    """True energy out of the battery to the inverter and any bypass load."""
    bms_harvested_wh: float
    bms_consumed_wh: float
    true_soc_start_pct: float
    true_soc_end_pct: float
    bms_soc_end_pct: float
    twin_soc_end_pct: float
    soc_error_pct: float
    """BMS SOC minus true SOC at the end."""
    twin_soc_error_pct: float
    cell_min_v: float
    cell_max_v: float
    max_spread_mv: float
    end_spread_mv: float
    pack_min_v: float
    pack_max_v: float
    cell_temp_max_c: float
    board_temp_max_c: float
    frames_sent: int
    frames_decoded: int
    bytes_rejected: int
    first_comm_error_s: float | None
    full_recalibrations: int
    """Times the BMS set SOC to 100 % (all cells at V-balance)."""
    shadow_divergent_s: float = 0.0
    """Time the twin's shadowing rule flagged a divergence: the relay bits the BMS reported
    in its frames disagreed with the twin's own decision for longer than one message cycle
    (the alarm production raises)."""

    def lines(self) -> list[str]:
        """The summary as text, one figure per line."""
        first_e = "never" if self.first_comm_error_s is None else f"{self.first_comm_error_s:.0f} s"
        return [
            f"duration        {self.duration_s / 3600:.2f} h in {self.steps:,} steps",
            f"relay toggles   BMS charge {self.bms_charge_toggles}, load {self.bms_load_toggles}"
            f"; twin charge {self.twin_charge_toggles}, load {self.twin_load_toggles}"
            f"; disagreeing {self.divergent_s:.0f} s (divergence alarm "
            f"{self.shadow_divergent_s:.0f} s)",
            f"energy          in {self.energy_in_wh / 1000:.2f} kWh, out "
            f"{self.energy_out_wh / 1000:.2f} kWh (BMS counted in "
            f"{self.bms_harvested_wh / 1000:.2f}, out {self.bms_consumed_wh / 1000:.2f})",
            f"SOC             true {self.true_soc_start_pct:.1f} -> {self.true_soc_end_pct:.1f} %"
            f"; BMS {self.bms_soc_end_pct:.1f} % (error {self.soc_error_pct:+.1f})"
            f"; twin {self.twin_soc_end_pct:.1f} % (error {self.twin_soc_error_pct:+.1f})"
            f"; full recalibrations {self.full_recalibrations}",
            f"cells           {self.cell_min_v:.3f} .. {self.cell_max_v:.3f} V, spread max "
            f"{self.max_spread_mv:.0f} mV, at the end {self.end_spread_mv:.0f} mV",
            f"pack            {self.pack_min_v:.2f} .. {self.pack_max_v:.2f} V",
            f"temperatures    cells up to {self.cell_temp_max_c:.1f} C, board sensors up to "
            f"{self.board_temp_max_c:.1f} C",
            f"wire            {self.frames_sent:,} frames sent, {self.frames_decoded:,} decoded, "
            f"{self.bytes_rejected:,} bytes rejected; first E {first_e}",
        ]


@dataclass(frozen=True)
class SimResult:
    """A finished run: the recorded time series, the relay changes and the summary."""

    scenario: Scenario
    data: npt.NDArray[np.float64]
    """One row per recorded time, ``COLUMNS`` in order."""
    changes: tuple[RelayChange, ...]
    summary: Summary
    bms_state: PackState | None
    twin_state: PackState | None

    def column(self, name: str) -> npt.NDArray[np.float64]:
        """One recorded column by name."""
        return self.data[:, COLUMN[name]]


# ---- the run -----------------------------------------------------------------------------


def _reason(decision: RelayDecision) -> str:
    blocking = decision.disabling or decision.blocking
    return "" if blocking is Condition.NONE else str(blocking.name)


class World:
    """The physical side of a scenario: pack, sensors, plant, chain, and the faults on them.

    ``Simulation`` adds the twin at the far end of the wire and runs the whole loop at once;
    ``advance`` steps the world alone, one message cycle at a time, for a real-time source
    (``twin run`` with an emulated pack).
    """

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        s = scenario
        settings = s.settings
        self.pack = Pack(
            s.pack,
            board_currents_a(
                settings.generation, settings.cell_count, settings.sensor.sensor_count
            ),
        )
        self.initial_bms_soc_pct = (
            self.pack.soc_pct if s.initial_bms_soc_pct is None else s.initial_bms_soc_pct
        )
        """What the BMS believes at the start (its SOC is not the pack's true SOC)."""
        self.true_soc_start_pct = self.pack.soc_pct
        self.chain = EmulatedChain(s.chain, settings, s.limits, self.pack, self.initial_bms_soc_pct)
        seed = s.pack.seed
        sensor_settings = settings.sensor
        sensor1 = CurrentSensor(
            sensor_settings,
            s.sensors.errors1 if s.sensors.errors1 is not None else SensorErrors.typical(seed + 11),
            reversed_wiring=s.sensors.reversed1,
        )
        sensor2 = None
        if sensor_settings.sensor_count == 2:
            sensor2 = CurrentSensor(
                sensor_settings,
                s.sensors.errors2
                if s.sensors.errors2 is not None
                else SensorErrors.typical(seed + 12),
                reversed_wiring=s.sensors.reversed2,
            )
        self.wiring = SensorWiring(sensor1, sensor2)
        self.start_s = s.start_h * 3600.0
        """The local clock time at the start (seconds from midnight of the first day)."""
        self.plant = Plant(
            s.plant, settings.cell_count, settings.vbalance_v, self.start_s, s.step_s
        )
        self.noise_probability = 0.0
        self.twin_settings: Callable[[tuple[tuple[str, float | bool | str], ...]], None] | None = (
            None
        )
        """Where a scenario's settings for the twin go in the live service (its shadow)."""
        self._noise_rng = np.random.default_rng(seed + 21)
        self._last_charger_a = self._last_load_a = 0.0
        """The plant's currents of the last step (a calibration bakes them in)."""
        self._steps = 0

    def advance(self) -> bytes | None:
        """One step of ``scenario.step_s`` (use the message period); the bytes on the wire.

        None while the chain is broken. Timed events are the caller's: call ``apply``.
        """
        s = self.scenario
        dt = s.step_s
        k = self._steps
        self._steps += 1
        t = self.start_s + k * dt
        pack = self.pack
        ambient_c = s.ambient.at(t)
        chain = self.chain
        # The inverter obeys what the BMS publishes; in real time that is the End board's own
        # logic (the twin's shadows it, over CAN, with the same numbers).
        state = chain.state
        currents = self.plant.currents(
            k,
            pack.pack_voltage_v,
            pack.ohmic_resistance_ohm,
            chain.charge_allowed,
            chain.discharge_allowed,
            dt,
            None if state is None else state.limits,
            state is not None and not state.inputs.comm_error,
        )
        self._last_charger_a, self._last_load_a = currents.charger_a, currents.load_a
        pack.step(
            currents.battery_a,
            dt,
            s.settings.vbalance_v if s.settings.balancing else None,
            ambient_c,
        )
        self.wiring.advance(dt)
        now = t + dt
        clock_s = now % SECONDS_PER_DAY
        day = s.plant.day_of_year + int(now // SECONDS_PER_DAY)
        reading = self.wiring.read(currents.charger_a, currents.load_a, ambient_c)
        wire = chain.cycle(reading, now, day, (int(clock_s // 3600), int(clock_s % 3600 // 60)))
        noisy = self.noise_probability and self._noise_rng.random() < self.noise_probability
        if wire is not None and noisy:
            wire = _flip_bit(wire, self._noise_rng)
        return wire

    # ---- events ---------------------------------------------------------------------------

    def apply(self, action: Action, now_s: float) -> None:
        """Apply one event's action at ``now_s``."""
        chain, pack = self.chain, self.pack
        if isinstance(action, BreakChain):
            chain.break_link(action.after_board)
        elif isinstance(action, RepairChain):
            chain.repair_link()
        elif isinstance(action, DeadTemperatureSensor):
            chain.kill_temperature_sensor(action.board, action.fault)
        elif isinstance(action, WeakCell):
            pack.fade_capacity(action.cell, action.capacity_ah)
        elif isinstance(action, LeakyCell):
            pack.set_self_discharge(action.cell, action.pct_per_month)
        elif isinstance(action, SensorFaultEvent):
            sensors = self.wiring.sensors
            if not 1 <= action.sensor <= len(sensors):
                raise ValueError(f"no current sensor {action.sensor} (1..{len(sensors)})")
            sensor = sensors[action.sensor - 1]
            errors = sensor.errors
            sensor.errors = replace(
                errors,
                offset_a=errors.offset_a if action.offset_a is None else action.offset_a,
                drift_a_per_day=errors.drift_a_per_day
                if action.drift_a_per_day is None
                else action.drift_a_per_day,
                gain_error=errors.gain_error if action.gain_error is None else action.gain_error,
            )
            if action.reversed_wiring is not None:
                sensor.reversed_wiring = action.reversed_wiring
        elif isinstance(action, WireNoise):
            if not 0.0 <= action.probability <= 1.0:
                raise ValueError(f"noise probability {action.probability} is out of range (0..1)")
            self.noise_probability = action.probability
        elif isinstance(action, BypassLoad):
            if action.power_w < 0:
                raise ValueError("bypass power must be >= 0")
            self.plant.spec = replace(self.plant.spec, bypass_load_w=action.power_w)
        elif isinstance(action, ChangeSettings):
            if action.target in ("both", "bms"):
                chain.update_settings(apply_changes(chain.settings, action.changes))
            if action.target in ("both", "twin"):
                self.change_twin_settings(action.changes)
        elif isinstance(action, SetPlant):
            if action.value is None:
                self.plant.clear_point(action.setpoint)
            else:
                self.plant.set_point(action.setpoint, action.value, now_s, action.timeout_s)
        elif isinstance(action, Calibrate):
            self.wiring.calibrate(self._last_charger_a, self._last_load_a)

    @property
    def plant_time_s(self) -> float:
        """The plant's clock: seconds since the world started (what setpoints expire on)."""
        return self._steps * self.scenario.step_s

    def set_plant(self, name: str, value: float, timeout_s: float | None = None) -> None:
        """A controller's setpoint, from now on; ``ValueError`` names a bad one."""
        self.plant.set_point(name, value, self.plant_time_s, timeout_s)

    def clear_plant(self, name: str) -> bool:
        """Back to the plant's profile for ``name``; False when it was not set."""
        return self.plant.clear_point(name)

    def plant_setpoints(self) -> dict[str, tuple[float, float | None]]:
        """The setpoints in effect: name -> (value, seconds left or None)."""
        now = self.plant_time_s
        return {
            name: (point.value, None if point.until_s is None else max(0.0, point.until_s - now))
            for name, point in self.plant.setpoints.items()
        }

    def change_twin_settings(self, changes: tuple[tuple[str, float | bool | str], ...]) -> None:
        """Settings changed at the twin's end of the wire (``twin_settings``, when set)."""
        if self.twin_settings is None:
            raise ValueError("this world has no twin: change the settings of the BMS")
        self.twin_settings(changes)


class Simulation(World):
    """One closed-loop run of a ``Scenario``; ``run`` drives it to the end."""

    def __init__(self, scenario: Scenario) -> None:
        super().__init__(scenario)
        s = scenario
        settings = s.settings
        fmt = s.chain.frame_format
        # The twin's end of the wire is production's: a PackShadow (decoder, assembler, the
        # twin's BmsLogic and the shadowing rule), fed the End board's bytes.
        self.shadow = PackShadow(
            "scenario",
            settings,
            s.limits,
            fmt=fmt,
            assembly=AssemblySettings(
                frame_period_s=settings.message_period_s,
                stale_after_s=s.twin_stale_after_s,
                layout=fmt.layout,
            ),
            state=LogicState(soc=SocState(soc_pct=self.initial_bms_soc_pct)),
        )
        self.twin_state: PackState | None = None
        self.changes: list[RelayChange] = []

    def change_twin_settings(self, changes: tuple[tuple[str, float | bool | str], ...]) -> None:
        """Settings changed at the twin's end of the wire."""
        self.shadow.update_settings(apply_changes(self.shadow.settings, changes))

    # ---- the loop -------------------------------------------------------------------------

    def run(
        self,
        progress: Callable[[int, int], None] | None = None,
        progress_every: int = 3600,
    ) -> SimResult:
        """Run every step; ``progress(done, total)`` is called every ``progress_every`` steps."""
        s = self.scenario
        settings = s.settings
        steps = s.steps
        dt = s.step_s
        period = settings.message_period_s
        # One frame per step when the step is at least the message cycle (frames in between
        # would carry the same values), else one every period / step steps.
        frame_every = max(1, round(period / dt)) if dt < period else 1
        record_s = s.record_s if s.record_s is not None else max(dt, s.duration_s / 20_000)
        record_every = max(1, round(record_s / dt))
        # Rows as tuples, one array at the end: a numpy row assignment per record costs more.
        rows: list[tuple[float | bool | int, ...]] = []
        temps_of: npt.NDArray[np.float64] | None = None
        hottest_cell = hottest_board = math.nan
        pack, chain, plant, wiring = self.pack, self.chain, self.plant, self.wiring
        shadow = self.shadow
        rejected = shadow.rejected
        ambient = s.ambient
        events = sorted(s.events, key=lambda e: e.at_s)
        next_event = 0
        start_s = self.start_s
        day0 = s.plant.day_of_year
        vbalance = settings.vbalance_v if settings.balancing else None
        energy_in = energy_out = 0.0
        toggles = {"bms_charge": 0, "bms_load": 0, "twin_charge": 0, "twin_load": 0}
        bms_charge = chain.charge_allowed
        bms_load = chain.discharge_allowed
        twin_charge = twin_load = False
        divergent = 0
        shadow_divergent = 0
        first_e: float | None = None
        recalibrations = 0
        was_full = False
        self._last_charger_a = self._last_load_a = 0.0
        resistance = pack.ohmic_resistance_ohm
        twin_state: PackState | None = None
        bms_state: PackState | None = None
        max_spread = 0.0
        # The limits the twin publishes (what a CAN-connected inverter obeys in limits mode).
        published: InverterLimits | None = None
        published_fresh = False
        ambient_c = ambient.at(start_s)
        noise_rng = self._noise_rng
        for k in range(steps):
            t = start_s + k * dt
            run_s = k * dt
            while next_event < len(events) and events[next_event].at_s <= run_s:
                self.apply(events[next_event].action, run_s)
                next_event += 1
            if k % 60 == 0:
                ambient_c = ambient.at(t)
                resistance = pack.ohmic_resistance_ohm
            currents = plant.currents(
                k,
                pack.pack_voltage_v,
                resistance,
                bms_charge,
                bms_load,
                dt,
                published,
                published_fresh,
            )
            charger_a, load_a, bypass_a = currents.charger_a, currents.load_a, currents.bypass_a
            self._last_charger_a, self._last_load_a = charger_a, load_a
            battery_a = charger_a - load_a - bypass_a
            pack.step(battery_a, dt, vbalance, ambient_c)
            wiring.advance(dt)
            v_pack = pack.pack_voltage_v
            energy_in += v_pack * charger_a * dt
            energy_out += v_pack * (load_a + bypass_a) * dt
            now = t + dt
            reading = None
            if (k + 1) % frame_every == 0:
                clock_s = now % SECONDS_PER_DAY
                day = day0 + int(now // SECONDS_PER_DAY)
                reading = wiring.read(charger_a, load_a, ambient_c)
                wire = chain.cycle(
                    reading, now, day, (int(clock_s // 3600), int(clock_s % 3600 // 60))
                )
                bms_state = chain.state
                if (
                    wire is not None
                    and self.noise_probability
                    and noise_rng.random() < self.noise_probability
                ):
                    wire = _flip_bit(wire, noise_rng)
                stepped = shadow.receive(wire, now, day)
                if rejected:
                    rejected.clear()  # counted by the decoder; the runs are not kept
                if stepped is not twin_state:
                    twin_state = stepped
                    if twin_state is not None:
                        published = twin_state.limits
                        published_fresh = not twin_state.inputs.comm_error
                    comm_error = twin_state is not None and twin_state.inputs.comm_error
                    if comm_error and first_e is None:
                        first_e = now - start_s
                if shadow.divergent:
                    shadow_divergent += 1
                # Relay changes, BMS and twin.
                if bms_state is not None:
                    if bms_state.charge.allowed != bms_charge:
                        bms_charge = not bms_charge
                        toggles["bms_charge"] += 1
                        self._log(now - start_s, "bms", "charge", bms_state.charge)
                    if bms_state.discharge.allowed != bms_load:
                        bms_load = not bms_load
                        toggles["bms_load"] += 1
                        self._log(now - start_s, "bms", "load", bms_state.discharge)
                    full_now = chain.logic.state.soc.time_since_full_s == 0.0
                    if full_now and not was_full:
                        recalibrations += 1
                    was_full = full_now
                if twin_state is not None:
                    if twin_state.charge.allowed != twin_charge:
                        twin_charge = not twin_charge
                        toggles["twin_charge"] += 1
                        self._log(now - start_s, "twin", "charge", twin_state.charge)
                    if twin_state.discharge.allowed != twin_load:
                        twin_load = not twin_load
                        toggles["twin_load"] += 1
                        self._log(now - start_s, "twin", "load", twin_state.discharge)
            if twin_charge != bms_charge or twin_load != bms_load:
                divergent += 1
            if (k + 1) % record_every == 0 or k == steps - 1:
                volts = pack.voltage_v
                # argmin/argmax and one index: cheaper than numpy's min/max reductions.
                vmin, vmax = float(volts[volts.argmin()]), float(volts[volts.argmax()])
                spread = (vmax - vmin) * 1000.0
                max_spread = max(max_spread, spread)
                if pack.board_temp_c is not temps_of:
                    # The temperatures change only on the pack's thermal interval.
                    temps_of = pack.board_temp_c
                    hottest_cell = float(pack.cell_temp_c.max())
                    hottest_board = float(temps_of.max())
                rows.append((
                    now - start_s,
                    v_pack,
                    pack.soc_pct,
                    bms_state.soc_pct if bms_state is not None else math.nan,
                    twin_state.soc_pct if twin_state is not None else math.nan,
                    vmin,
                    vmax,
                    spread,
                    charger_a,
                    load_a,
                    bypass_a,
                    battery_a,
                    (reading.battery_current_a or 0.0) if reading is not None else math.nan,
                    currents.solar_w,
                    currents.demand_w,
                    bms_charge,
                    bms_load,
                    twin_charge,
                    twin_load,
                    twin_state is not None and twin_state.inputs.comm_error,
                    hottest_cell,
                    hottest_board,
                    ambient_c,
                    int(np.count_nonzero(pack.balancing)),
                    published.charge_voltage_v if published is not None else math.nan,
                    published.charge_current_a if published is not None else math.nan,
                    published.discharge_current_a if published is not None else math.nan,
                ))  # fmt: skip
            if progress is not None and (k + 1) % progress_every == 0:
                progress(k + 1, steps)
        if progress is not None:
            progress(steps, steps)
        data = np.array(rows, dtype=np.float64).reshape(len(rows), len(COLUMNS))
        row = len(rows)
        self.twin_state = twin_state
        final_bms_soc = (
            bms_state.soc_pct if bms_state is not None else chain.logic.state.soc.soc_pct
        )
        final_twin_soc = twin_state.soc_pct if twin_state is not None else math.nan
        true_end = pack.soc_pct
        energy = chain.logic.state.energy
        column = COLUMN
        summary = Summary(
            duration_s=steps * dt,
            steps=steps,
            bms_charge_toggles=toggles["bms_charge"],
            bms_load_toggles=toggles["bms_load"],
            twin_charge_toggles=toggles["twin_charge"],
            twin_load_toggles=toggles["twin_load"],
            divergent_s=divergent * dt,
            energy_in_wh=energy_in / 3600.0,
            energy_out_wh=energy_out / 3600.0,
            bms_harvested_wh=energy.harvested_total_wh,
            bms_consumed_wh=energy.consumed_total_wh,
            true_soc_start_pct=self.true_soc_start_pct,
            true_soc_end_pct=true_end,
            bms_soc_end_pct=final_bms_soc,
            twin_soc_end_pct=final_twin_soc,
            soc_error_pct=final_bms_soc - true_end,
            twin_soc_error_pct=final_twin_soc - true_end,
            cell_min_v=float(data[:, column["cell_min_v"]].min()) if row else math.nan,
            cell_max_v=float(data[:, column["cell_max_v"]].max()) if row else math.nan,
            max_spread_mv=max_spread,
            end_spread_mv=float(data[-1, column["cell_spread_mv"]]) if row else math.nan,
            pack_min_v=float(data[:, column["pack_voltage_v"]].min()) if row else math.nan,
            pack_max_v=float(data[:, column["pack_voltage_v"]].max()) if row else math.nan,
            cell_temp_max_c=float(data[:, column["cell_temp_max_c"]].max()) if row else math.nan,
            board_temp_max_c=float(data[:, column["board_temp_max_c"]].max()) if row else math.nan,
            frames_sent=chain.frames_sent,
            frames_decoded=shadow.decoder.frames_decoded,
            bytes_rejected=shadow.decoder.bytes_rejected,
            shadow_divergent_s=shadow_divergent * dt * frame_every,
            first_comm_error_s=first_e,
            full_recalibrations=recalibrations,
        )
        return SimResult(
            scenario=s,
            data=data,
            changes=tuple(self.changes),
            summary=summary,
            bms_state=bms_state,
            twin_state=twin_state,
        )

    def _log(self, time_s: float, who: str, relay: str, decision: RelayDecision) -> None:
        if len(self.changes) < 100_000:  # a flapping relay must not eat the memory
            reason = "" if decision.allowed else _reason(decision)
            self.changes.append(RelayChange(time_s, who, relay, decision.allowed, reason))


def _flip_bit(data: bytes, rng: np.random.Generator) -> bytes:
    """``data`` with one random bit flipped (line noise the checksum catches)."""
    out = bytearray(data)
    position = int(rng.integers(len(out)))
    out[position] ^= 1 << int(rng.integers(8))
    return bytes(out)
