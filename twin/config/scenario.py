"""Scenario files (``twin simulate``): TOML text -> the emulator's ``Scenario``.

``parse_scenario`` takes the text and the texts of the CSV files it names; ``load_scenario``
reads them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from twin.config.messages import validate
from twin.config.objects import LiveScenario, PackConfig, SourceConfig, SourceKind, TwinConfig
from twin.config.pack import pack_config
from twin.config.run import read_text
from twin.config.schema import InverterOptionsModel, Model, PackModel, Percent, Temperature
from twin.emulator.chain import ChainSpec
from twin.emulator.events import (
    EVENT_KINDS,
    ChangeSettings,
    TimedEvent,
    apply_changes,
    build_action,
    check_parameter,
)
from twin.emulator.pack import CellOverride, PackSpec, Spread
from twin.emulator.plant import (
    ChargerSpec,
    InverterMode,
    InverterSpec,
    LoadSpec,
    PlantSpec,
    SolarSpec,
)
from twin.emulator.sensor import SensorErrors
from twin.emulator.simulation import Ambient, Scenario, SensorSetup
from twin.errors import ConfigError
from twin.model.settings import (
    BmsSettings,
    Chemistry,
)
from twin.protocol.assembly import AssemblySettings
from twin.protocol.frame import FirmwareLayout, FrameFormat, TemperatureScale

# plant around it, the chain and timed events.
# ---------------------------------------------------------------------------------------------

Positive = Annotated[float, Field(gt=0.0)]


class ScenarioHeadModel(Model):
    """``[scenario]``."""

    name: str = Field(default="scenario", min_length=1, max_length=200)
    description: str = ""
    duration_h: float | None = Field(default=None, gt=0.0, le=24.0 * 3660)
    duration_s: float | None = Field(default=None, gt=0.0, le=86_400.0 * 3660)
    step_s: float = Field(default=1.0, gt=0.0, le=60.0)
    start_h: float = Field(default=0.0, ge=0.0, lt=24.0)
    day_of_year: int = Field(default=172, ge=1, le=366)
    record_s: float | None = Field(default=None, gt=0.0, le=86_400.0)
    seed: int = Field(default=0, ge=0, le=2**32 - 1)


class BmsModel(PackModel):
    """``[bms]``: the BMS settings, exactly as one ``[[pack]]`` of the twin's configuration."""

    id: str = Field(default="sim", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")


class CellOverrideModel(Model):
    """``[[pack.cell]]``: one cell that differs from the spread."""

    index: int = Field(ge=1, le=255)
    capacity_ah: float | None = Field(default=None, gt=0.0, le=100_000.0)
    r0_mohm: float | None = Field(default=None, gt=0.0, le=1000.0)
    soc_pct: Percent | None = None
    self_discharge_pct_per_month: float | None = Field(default=None, ge=0.0, le=100.0)


class PhysicalPackModel(Model):
    """``[pack]``: the simulated cells (the BMS sees them only through its boards)."""

    capacity_ah: float = Field(default=280.0, gt=0.0, le=100_000.0)
    spread: Literal["matched", "typical", "bad"] = "typical"
    r0_mohm: float | None = Field(default=None, gt=0.0, le=1000.0)
    tau1_s: float = Field(default=40.0, gt=0.0, le=100_000.0)
    initial_soc_pct: Percent = 50.0
    balance_current_a: float = Field(default=1.0, ge=0.0, le=10.0)
    cell: list[CellOverrideModel] = Field(default_factory=list)


class AmbientModel(Model):
    """``[ambient]``: air temperature, a daily sine."""

    mean_c: Temperature = 20.0
    swing_c: float = Field(default=8.0, ge=0.0, le=60.0)
    warmest_h: float = Field(default=15.0, ge=0.0, lt=24.0)


class SolarModel(Model):
    """``[solar]``: the PV array and the sky (clear-sky sun with seeded clouds)."""

    enabled: bool = True
    peak_kw: float = Field(default=5.0, ge=0.0, le=10_000.0)
    latitude_deg: float = Field(default=52.1, ge=-90.0, le=90.0)
    longitude_deg: float = Field(default=5.1, ge=-180.0, le=180.0)
    utc_offset_h: float = Field(default=2.0, ge=-12.0, le=14.0)
    system_efficiency: float = Field(default=0.85, gt=0.0, le=1.0)
    cloudiness: float = Field(default=0.2, ge=0.0, lt=1.0)
    cloud_attenuation: float = Field(default=0.3, ge=0.0, le=1.0)


class ChargerModel(Model):
    """``[solar_charger]`` / ``[mains_charger]``: a constant-voltage charger."""

    max_current_a: float = Field(default=100.0, ge=0.0, le=10_000.0)
    absorption_v: float | None = Field(default=None, gt=0.0, le=1500.0)
    float_v: float | None = Field(default=None, gt=0.0, le=1500.0)
    absorption_h: float = Field(default=1.0, ge=0.0, le=48.0)
    tail_current_a: float = Field(default=2.0, ge=0.0, le=1000.0)
    from_h: float = Field(default=0.0, ge=0.0, le=24.0)
    to_h: float = Field(default=24.0, ge=0.0, le=24.0)


class LoadModel(Model):
    """``[load]``: the household's AC demand (built-in profile or a CSV)."""

    enabled: bool = True
    annual_kwh: float = Field(default=3500.0, ge=0.0, le=10_000_000.0)
    appliances: bool = True
    csv: str | None = Field(default=None, min_length=1)
    repeat_h: float | None = Field(default=None, gt=0.0, le=24.0 * 366)
    constant_w: float = Field(default=0.0, ge=0.0, le=10_000_000.0)


_INVERTER = InverterSpec()


class InverterModel(InverterOptionsModel):
    """``[inverter]``: the inverter, and in ``limits`` mode what it obeys (docs/testbench.md)."""

    max_power_kw: float = Field(default=_INVERTER.max_power_w / 1000.0, ge=0.0, le=10_000.0)
    efficiency: float = Field(default=_INVERTER.efficiency, gt=0.0, le=1.0)
    idle_w: float = Field(default=_INVERTER.idle_w, ge=0.0, le=10_000.0)
    mode: InverterMode = _INVERTER.mode


class ChainModel(Model):
    """``[chain]``: the boards' measurement quality and the End board's firmware."""

    voltage_error_mv: float = Field(default=3.0, ge=0.0, le=20.0)
    temperature_error_c: float = Field(default=0.7, ge=0.0, le=5.0)
    end_timeout_cycles: int = Field(default=3, ge=1, le=600)
    firmware: str = Field(default="3.3.11", pattern=r"^\d{1,2}\.\d{1,2}\.\d{1,3}$")
    soh_pct: int = Field(default=100, ge=0, le=100)
    charge_cycles: int = Field(default=0, ge=0, le=65_535)
    temperature_scale: TemperatureScale = TemperatureScale.APP
    """How the End board codes temperatures (the twin decodes with the same choice)."""
    layout: FirmwareLayout = FirmwareLayout.KEY_VALUE
    """Bytes 47/48: key-value (firmware >= 3.3.6) or legacy-clock (older firmware)."""


class SensorsModel(Model):
    """``[sensors]``: the current sensors' errors; unset values are drawn from the seed."""

    offset1_a: float | None = Field(default=None, ge=-50.0, le=50.0)
    offset2_a: float | None = Field(default=None, ge=-50.0, le=50.0)
    gain_error1: float | None = Field(default=None, ge=-0.5, le=0.5)
    gain_error2: float | None = Field(default=None, ge=-0.5, le=0.5)
    drift1_a_per_day: float | None = Field(default=None, ge=-50.0, le=50.0)
    drift2_a_per_day: float | None = Field(default=None, ge=-50.0, le=50.0)
    ideal: bool = False
    """No errors at all (unless given above)."""
    reversed1: bool = False
    reversed2: bool = False


class TwinModel(Model):
    """``[twin]``: the twin that decodes the frames."""

    stale_after_s: float = Field(default=10.0, gt=0.0, le=3600.0)


class EventModel(Model):
    """``[[event]]``: something that happens during the run.

    The kinds, their parameters and the parameters' ranges are ``twin.emulator.events``'s,
    shared with the faults injected into a running emulated pack.
    """

    kind: str
    at_h: float | None = Field(default=None, ge=0.0)
    at_s: float | None = Field(default=None, ge=0.0)
    after_board: int | None = None
    board: int | None = None
    fault: str | None = None
    cell: int | None = None
    capacity_ah: float | None = None
    pct_per_month: float | None = None
    sensor: int | None = None
    offset_a: float | None = None
    drift_a_per_day: float | None = None
    gain_error: float | None = None
    reversed: bool | None = None
    probability: float | None = None
    power_w: float | None = None
    settings: dict[str, float | bool | str] | None = None
    target: str | None = None
    setpoint: str | None = None
    value: float | None = None
    timeout_s: float | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in EVENT_KINDS:
            raise ValueError(f"{value!r} is not allowed (allowed: {', '.join(EVENT_KINDS)})")
        return value


class ScenarioModel(Model):
    """A whole scenario file."""

    scenario: ScenarioHeadModel = ScenarioHeadModel()
    bms: BmsModel
    pack: PhysicalPackModel = PhysicalPackModel()
    ambient: AmbientModel = AmbientModel()
    solar: SolarModel = SolarModel()
    solar_charger: ChargerModel = ChargerModel()
    mains_charger: ChargerModel | None = None
    load: LoadModel = LoadModel()
    inverter: InverterModel = InverterModel()
    chain: ChainModel = ChainModel()
    sensors: SensorsModel = SensorsModel()
    twin: TwinModel = TwinModel()
    event: list[EventModel] = Field(default_factory=list)


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file and the CSV file it names (relative to it)."""
    path = Path(path)
    text = read_text(path)
    model = validate(ScenarioModel, text, str(path))
    tables: dict[str, str] = {}
    name = model.load.csv
    if name is not None:
        try:
            tables[name] = _read_table(name, path.parent)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from exc
    return _checked_scenario(model, str(path), path.parent, tables)


def parse_scenario(
    text: str,
    source: str,
    base_dir: Path | None = None,
    tables: Mapping[str, str] | None = None,
) -> Scenario:
    """Validate scenario ``text``; ``source`` names it in error messages.

    ``tables``: the text of each CSV file the scenario names, by the name it gives
    (``load_scenario`` reads them); ``base_dir``: where relative file names start.
    """
    model = validate(ScenarioModel, text, source)
    return _checked_scenario(model, source, base_dir or Path.cwd(), tables or {})


def _checked_scenario(
    model: ScenarioModel, source: str, base_dir: Path, tables: Mapping[str, str]
) -> Scenario:
    try:
        return _scenario(model, base_dir, tables)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _scenario(model: ScenarioModel, base_dir: Path, tables: Mapping[str, str]) -> Scenario:
    head = model.scenario
    if "source" in model.bms.model_fields_set:
        raise ConfigError("bms.source: a scenario's BMS is the emulated chain (remove source)")
    if head.duration_h is not None and head.duration_s is not None:
        raise ConfigError("scenario.duration_s: give duration_h or duration_s, not both")
    duration_s = (
        head.duration_s
        if head.duration_s is not None
        else (head.duration_h if head.duration_h is not None else 24.0) * 3600.0
    )
    bms = pack_config(model.bms, "bms", base_dir)
    settings = bms.settings
    chemistry = bms.chemistry or Chemistry.LIFEPO4
    p = model.pack
    try:
        pack = PackSpec(
            chemistry=chemistry,
            cell_count=settings.cell_count,
            capacity_ah=p.capacity_ah,
            r0_ohm=None if p.r0_mohm is None else p.r0_mohm / 1000.0,
            tau1_s=p.tau1_s,
            spread=Spread(p.spread),
            overrides=tuple(
                CellOverride(
                    index=c.index,
                    capacity_ah=c.capacity_ah,
                    r0_ohm=None if c.r0_mohm is None else c.r0_mohm / 1000.0,
                    soc_pct=c.soc_pct,
                    self_discharge_pct_per_month=c.self_discharge_pct_per_month,
                )
                for c in p.cell
            ),
            initial_soc_pct=p.initial_soc_pct,
            seed=head.seed,
            ambient_c=model.ambient.mean_c,
            balance_current_a=p.balance_current_a,
        )
    except ValueError as exc:
        raise ConfigError(f"pack: {exc}") from exc
    plant = _plant(model, settings, head.day_of_year, head.seed, tables)
    ch = model.chain
    major, minor, patch = (int(x) for x in ch.firmware.split("."))
    try:
        chain = ChainSpec(
            frame_format=FrameFormat(ch.temperature_scale, ch.layout),
            voltage_error_v=ch.voltage_error_mv / 1000.0,
            temperature_error_c=ch.temperature_error_c,
            end_timeout_cycles=ch.end_timeout_cycles,
            firmware=(major, minor, patch),
            soh_pct=ch.soh_pct,
            charge_cycles=ch.charge_cycles,
            seed=head.seed + 5,
        )
    except ValueError as exc:
        raise ConfigError(f"chain.firmware: {exc}") from exc
    sm = model.sensors
    events = tuple(
        _event(event, f"event[{i}]", settings, duration_s) for i, event in enumerate(model.event)
    )
    try:
        return Scenario(
            name=head.name,
            description=head.description,
            settings=settings,
            duration_s=duration_s,
            step_s=head.step_s,
            start_h=head.start_h,
            limits=bms.limits,
            pack=pack,
            plant=plant,
            chain=chain,
            sensors=SensorSetup(
                errors1=_sensor_errors(sm, 1, head.seed),
                errors2=_sensor_errors(sm, 2, head.seed),
                reversed1=sm.reversed1,
                reversed2=sm.reversed2,
            ),
            ambient=Ambient(model.ambient.mean_c, model.ambient.swing_c, model.ambient.warmest_h),
            initial_bms_soc_pct=(
                bms.initial_soc_pct if "initial_soc_pct" in model.bms.model_fields_set else None
            ),
            twin_stale_after_s=model.twin.stale_after_s,
            record_s=head.record_s,
            events=events,
        )
    except ValueError as exc:
        raise ConfigError(f"scenario: {exc}") from exc


def _sensor_errors(model: SensorsModel, n: int, seed: int) -> SensorErrors:
    base = SensorErrors() if model.ideal else SensorErrors.typical(seed + 10 + n)
    offset = getattr(model, f"offset{n}_a")
    gain = getattr(model, f"gain_error{n}")
    drift = getattr(model, f"drift{n}_a_per_day")
    return SensorErrors(
        gain_error=base.gain_error if gain is None else gain,
        offset_a=base.offset_a if offset is None else offset,
        tempco_a_per_k=base.tempco_a_per_k,
        drift_a_per_day=base.drift_a_per_day if drift is None else drift,
    )


def _charger(model: ChargerModel, where: str, settings: BmsSettings) -> ChargerSpec:
    n = settings.cell_count
    absorption = (
        model.absorption_v
        if model.absorption_v is not None
        else round(n * (settings.vbalance_v + 0.05), 2)
    )
    float_v = (
        model.float_v if model.float_v is not None else round(n * (settings.vbalance_v - 0.05), 2)
    )
    if float_v > absorption:
        raise ConfigError(f"{where}.float_v: {float_v} V is above absorption_v {absorption} V")
    return ChargerSpec(
        max_current_a=model.max_current_a,
        absorption_v=absorption,
        float_v=float_v,
        absorption_s=model.absorption_h * 3600.0,
        tail_current_a=model.tail_current_a,
    )


def _plant(
    model: ScenarioModel,
    settings: BmsSettings,
    day_of_year: int,
    seed: int,
    tables: Mapping[str, str],
) -> PlantSpec:
    sm = model.solar
    solar = (
        SolarSpec(
            peak_w=sm.peak_kw * 1000.0,
            latitude_deg=sm.latitude_deg,
            longitude_deg=sm.longitude_deg,
            utc_offset_h=sm.utc_offset_h,
            system_efficiency=sm.system_efficiency,
            cloudiness=sm.cloudiness,
            cloud_attenuation=sm.cloud_attenuation,
        )
        if sm.enabled and sm.peak_kw > 0
        else None
    )
    lm = model.load
    load = None
    if lm.enabled:
        points = _parse_table(lm.csv, tables) if lm.csv is not None else None
        try:
            load = LoadSpec(
                annual_kwh=lm.annual_kwh,
                appliances=lm.appliances,
                points=points,
                repeat_s=None if lm.repeat_h is None else lm.repeat_h * 3600.0,
                constant_w=lm.constant_w,
            )
        except ValueError as exc:
            raise ConfigError(f"load.csv: {exc}") from exc
    im = model.inverter
    mains = model.mains_charger
    return PlantSpec(
        solar=solar,
        solar_charger=_charger(model.solar_charger, "solar_charger", settings),
        load=load,
        inverter=InverterSpec(
            max_power_w=im.max_power_kw * 1000.0,
            **im.model_dump(exclude={"max_power_kw"}),
        ),
        mains_charger=_charger(mains, "mains_charger", settings) if mains else None,
        mains_from_h=mains.from_h if mains else 0.0,
        mains_to_h=mains.to_h if mains else 24.0,
        day_of_year=day_of_year,
        seed=seed,
    )


def _read_table(name: str, base_dir: Path) -> str:
    """The text of the load profile CSV ``name`` (relative to ``base_dir``)."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"load.csv: {name!r}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"load.csv: {name!r}: not UTF-8 text: {exc.reason}") from exc


def _parse_table(name: str, tables: Mapping[str, str]) -> tuple[tuple[float, float], ...]:
    """A load profile CSV: a header naming ``time_s`` or ``hour``, and ``power_w``."""
    if name not in tables:
        raise ConfigError(
            f"load.csv: {name!r}: its text was not given (load_scenario reads the file; "
            "parse_scenario takes the texts in tables)"
        )
    lines = tables[name].splitlines()
    rows = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not rows:
        raise ConfigError(f"load.csv: {name!r} is empty")
    header = [h.strip().lower() for h in rows[0].split(",")]
    if "power_w" not in header or not ({"time_s", "hour"} & set(header)):
        raise ConfigError(
            f"load.csv: {name!r}: the header must name power_w and time_s or hour (got {rows[0]!r})"
        )
    time_col = header.index("time_s") if "time_s" in header else header.index("hour")
    scale = 1.0 if header[time_col] == "time_s" else 3600.0
    power_col = header.index("power_w")
    points: list[tuple[float, float]] = []
    for number, row in enumerate(rows[1:], start=2):
        cells = row.split(",")
        try:
            t, w = float(cells[time_col]) * scale, float(cells[power_col])
        except (ValueError, IndexError):
            raise ConfigError(
                f"load.csv: {name!r} line {number}: not two numbers: {row!r}"
            ) from None
        if not (math.isfinite(t) and math.isfinite(w)):
            raise ConfigError(f"load.csv: {name!r} line {number}: not a finite number: {row!r}")
        points.append((t, w))
    return tuple(points)


def _event(model: EventModel, where: str, settings: BmsSettings, duration_s: float) -> TimedEvent:
    if (model.at_h is None) == (model.at_s is None):
        raise ConfigError(f"{where}: give the time as at_h or at_s (exactly one)")
    at_s = model.at_s if model.at_s is not None else (model.at_h or 0.0) * 3600.0
    if at_s > duration_s:
        raise ConfigError(f"{where}: at {at_s:g} s is after the end of the run ({duration_s:g} s)")
    kind = EVENT_KINDS[model.kind]
    needed = kind.required
    for name in needed:
        if getattr(model, name) is None:
            raise ConfigError(
                f"{where}.{name}: missing (a {kind.name!r} event needs {', '.join(needed)})"
            )
    usable = {"kind", "at_h", "at_s", *needed, *(name for name, _ in kind.optional)}
    for name in sorted(model.model_fields_set - usable):
        raise ConfigError(f"{where}.{name}: not used by a {kind.name!r} event")
    values: dict[str, object] = {}
    for name in (*needed, *(name for name, _ in kind.optional)):
        value = getattr(model, name)
        if value is None:
            continue
        try:
            values[name] = check_parameter(
                name, value, settings.cell_count, settings.sensor.sensor_count
            )
        except ValueError as exc:
            raise ConfigError(f"{where}.{exc}") from exc
    action = build_action(kind.name, values)
    if isinstance(action, ChangeSettings):
        try:
            apply_changes(settings, action.changes)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}.settings: {exc}") from exc
    return TimedEvent(at_s, action)


def live_config(config: TwinConfig, scenario: Scenario, *, hold: bool = False) -> TwinConfig:
    """``config`` with its packs replaced by the scenario's one, played live.

    ``twin run --scenario``: the scenario's pack, plant, clock and timed events, with the
    configuration's exporters. The pack takes the id and PIN of the configuration's first pack.
    """
    first = config.packs[0]
    settings = scenario.settings
    source = SourceConfig(
        kind=SourceKind.EMULATOR,
        frame_format=scenario.chain.frame_format,
        world=scenario,
        served=first.source.served,
        assembly=AssemblySettings(
            frame_period_s=settings.message_period_s,
            stale_after_s=scenario.twin_stale_after_s,
            layout=scenario.chain.frame_format.layout,
        ),
        live=LiveScenario(hold=hold),
    )
    pack = PackConfig(
        pack_id=first.pack_id,
        settings=settings,
        limits=scenario.limits,
        pin=first.pin,
        initial_soc_pct=(
            scenario.initial_bms_soc_pct
            if scenario.initial_bms_soc_pct is not None
            else first.initial_soc_pct
        ),
        source=source,
    )
    return dataclasses.replace(config, packs=(pack,))
