"""One ``[[pack]]`` of the configuration (or a scenario's ``[bms]``) -> ``PackConfig``.

The board switches, the chemistry presets and the core's frozen settings.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path
from typing import Any

from twin.config.objects import PackConfig, ServedUartSettings, SourceConfig, SourceKind
from twin.config.schema import CurvePoints, PackModel, SourceModel
from twin.emulator.chain import ChainSpec
from twin.emulator.pack import PackSpec, Spread
from twin.emulator.plant import (
    ChargerSpec,
    InverterMode,
    InverterSpec,
    LoadSpec,
    PlantSpec,
    SolarSpec,
)
from twin.emulator.simulation import (
    Scenario,
)
from twin.errors import ConfigError
from twin.model.limits import LimitSettings
from twin.model.settings import (
    CHEMISTRY_THRESHOLDS,
    BmsSettings,
    Chemistry,
    CurrentSensorSettings,
    Generation,
    RelayMode,
    SensorKind,
)
from twin.model.switches import (
    decode_gen2_factory_switches,
    decode_gen2_switches,
    decode_gen3_switches,
)
from twin.protocol.assembly import AssemblySettings
from twin.protocol.frame import FrameFormat

# From the file schema to the core (cross-field rules: switches, presets, generations).
# ---------------------------------------------------------------------------------------------


#: The limit settings given as curves of points (tuples in the core).
_CURVES = ("charge_taper", "discharge_taper", "temperature_curve")
#: The ``BmsSettings`` fields a ``[[pack]]`` names that come from more than the field itself
#: (the board switches, the chemistry presets, the generation's sensor).
_DERIVED = {"generation", "vmin_v", "vbalance_v", "vmax_v", "vnominal_v", "mode"}
_DERIVED |= {"message_period_s", "sensor", "cell_count", "balancing"}
#: The ``BmsSettings`` fields a ``[[pack]]`` gives as they are (same name, same unit).
_BMS_AS_GIVEN = (
    set(PackModel.model_fields) & {f.name for f in dataclasses.fields(BmsSettings)}
) - _DERIVED


def pack_config(pack: PackModel, where: str, base_dir: Path) -> PackConfig:
    """A pack's configuration; ``where`` names it in messages (``pack[0]``)."""
    gen = pack.generation
    preset = CHEMISTRY_THRESHOLDS[pack.chemistry] if pack.chemistry else None
    cells = pack.cells
    vbalance_v = pack.vbalance_v
    balancing = True
    mode = pack.mode
    period_s = pack.message_period_s
    sensor = pack.current_sensor
    blind_spot = sensor.blind_spot
    rating_a: int | None = sensor.type_a

    def conflict(field: str, given: object, switch_value: object, switch_name: str) -> ConfigError:
        return ConfigError(
            f"{where}.{field}: {given} contradicts switches {switch_name} of "
            f"{pack.switches!r} ({switch_value}); give one or make them agree"
        )

    if gen is Generation.GEN3:
        if pack.factory_switches is not None:
            raise ConfigError(
                f"{where}.factory_switches: gen3 has no hidden factory settings (gen2 only)"
            )
        if sensor.type_a is not None:
            raise ConfigError(
                f"{where}.current_sensor.type_a: {sensor.type_a} is a gen2 sensor type; gen3 "
                "uses the dual-range sensor (set loops = 1, 2 or 4)"
            )
        if sensor.blind_spot is False:
            raise ConfigError(
                f"{where}.current_sensor.blind_spot: false is a gen2 switch; the gen3 sensor "
                "always has its blind spot"
            )
        if pack.switches is not None:
            sw = _decode(decode_gen3_switches, pack.switches, f"{where}.switches")
            if cells is None:
                raise ConfigError(
                    f"{where}.cells: missing; switches 1-3 give only the range "
                    f"{sw.min_cells}-{sw.max_cells}"
                )
            if not sw.min_cells <= cells <= sw.max_cells:
                raise ConfigError(
                    f"{where}.cells: {cells} does not match switches 1-3 of "
                    f"{pack.switches!r} ({sw.min_cells}-{sw.max_cells} cells)"
                )
            if sw.vbalance_v is None:
                balancing = False
            elif vbalance_v is not None and not math.isclose(vbalance_v, sw.vbalance_v):
                raise conflict("vbalance_v", f"{vbalance_v} V", f"{sw.vbalance_v} V", "4-8")
            else:
                vbalance_v = sw.vbalance_v
    else:
        if sensor.loops is not None:
            raise ConfigError(
                f"{where}.current_sensor.loops: gen2 sensors have no loops setting "
                "(set type_a instead)"
            )
        if pack.switches is not None:
            sw2 = _decode(decode_gen2_switches, pack.switches, f"{where}.switches")
            if sw2.auto_zero:
                raise ConfigError(
                    f"{where}.switches: switch 4 (auto zero) is ON in {pack.switches!r}; zero "
                    "calibration is an action, not a setting: set it OFF"
                )
            if vbalance_v is not None and not math.isclose(vbalance_v, sw2.vbalance_v):
                raise conflict("vbalance_v", f"{vbalance_v} V", f"{sw2.vbalance_v} V", "2/6/7")
            vbalance_v = sw2.vbalance_v
            if mode is not None and mode is not sw2.mode:
                raise conflict("mode", mode.value, sw2.mode.value, "5")
            mode = sw2.mode
            if period_s is not None and period_s != sw2.message_period_s:
                raise conflict("message_period_s", period_s, sw2.message_period_s, "1")
            period_s = sw2.message_period_s
            if blind_spot is not None and blind_spot is not sw2.blind_spot:
                raise conflict("current_sensor.blind_spot", blind_spot, sw2.blind_spot, "3")
            blind_spot = sw2.blind_spot
        if pack.factory_switches is not None:
            factory = _decode(
                decode_gen2_factory_switches, pack.factory_switches, f"{where}.factory_switches"
            )
            if rating_a is not None and rating_a != factory.sensor_rating_a:
                raise ConfigError(
                    f"{where}.current_sensor.type_a: {rating_a} A contradicts factory switches "
                    f"1-3 of {pack.factory_switches!r} ({factory.sensor_rating_a} A)"
                )
            rating_a = factory.sensor_rating_a
            if cells is None:
                cells = factory.cell_setting
            elif cells > factory.cell_setting:
                raise ConfigError(
                    f"{where}.cells: {cells} is more than factory switches 4-7 of "
                    f"{pack.factory_switches!r} allow ({factory.cell_setting} cells)"
                )
    if cells is None:
        raise ConfigError(f"{where}.cells: missing (allowed 2..255)")

    def threshold(name: str, given: float | None) -> float:
        if given is not None:
            return given
        if preset is None:
            raise ConfigError(
                f"{where}.{name}: missing; give {name} or a chemistry "
                f"({', '.join(c.value for c in Chemistry)})"
            )
        value: float = getattr(preset, name)
        return value

    vmin_v = threshold("vmin_v", pack.vmin_v)
    vbalance_v = threshold("vbalance_v", vbalance_v)
    vmax_v = threshold("vmax_v", pack.vmax_v)
    vnominal_v = (
        pack.vnominal_v if pack.vnominal_v is not None else (preset.vnominal_v if preset else 3.2)
    )
    try:
        sensor_settings = CurrentSensorSettings(
            kind=SensorKind.GEN3_DUAL_RANGE if gen is Generation.GEN3 else SensorKind.GEN2,
            loops=sensor.loops or 1,
            rating_a=rating_a or 100,
            sensor_count=sensor.sensors,
            blind_spot=True if blind_spot is None else blind_spot,
        )
        settings = BmsSettings(
            generation=gen,
            cell_count=cells,
            vmin_v=vmin_v,
            vbalance_v=vbalance_v,
            vmax_v=vmax_v,
            vnominal_v=vnominal_v,
            balancing=balancing,
            **pack.model_dump(include=_BMS_AS_GIVEN),
            mode=mode or RelayMode.NORMAL,
            sensor=sensor_settings,
            solar_peak_w=pack.solar_peak_kw * 1000.0,
            inverter_peak_w=pack.inverter_peak_kw * 1000.0,
            message_period_s=period_s or 1.0,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    lm = pack.limits
    try:
        values: dict[str, Any] = lm.model_dump()
        values.update((name, _curve(getattr(lm, name))) for name in _CURVES)
        limits = LimitSettings(**values)
    except ValueError as exc:
        raise ConfigError(f"{where}.limits: {exc}") from exc
    return PackConfig(
        pack_id=pack.id,
        settings=settings,
        limits=limits,
        pin=pack.pin,
        initial_soc_pct=pack.initial_soc_pct,
        chemistry=pack.chemistry,
        source=_source_config(
            pack.source, settings, limits, pack.chemistry, f"{where}.source", base_dir
        ),
    )


#: The fields of [pack.source] that only some kinds use.
_SOURCE_FIELDS_OF_KIND = {
    "port": SourceKind.SERIAL,
    "usb_serial": SourceKind.SERIAL,
    "baudrate": SourceKind.SERIAL,
    "file": SourceKind.REPLAY,
    "speed": SourceKind.REPLAY,
    "repeat": SourceKind.REPLAY,
    "capacity_ah": SourceKind.EMULATOR,
    "true_soc_pct": SourceKind.EMULATOR,
    "spread": SourceKind.EMULATOR,
    "annual_kwh": SourceKind.EMULATOR,
    "charger_a": SourceKind.EMULATOR,
    "seed": SourceKind.EMULATOR,
    "inverter": SourceKind.EMULATOR,
    "inverter_options": SourceKind.EMULATOR,
    "uart_pty": SourceKind.EMULATOR,
    "uart_pty_file": SourceKind.EMULATOR,
    "uart_tcp_port": SourceKind.EMULATOR,
    "uart_tcp_host": SourceKind.EMULATOR,
}

#: The usable share of the cells that the example's capacity setting assumes (80 %): the
#: emulated cells are the capacity setting / this, unless ``capacity_ah`` says otherwise.
EMULATED_USABLE_SHARE = 0.8


def _source_config(
    source: SourceModel,
    settings: BmsSettings,
    limits: LimitSettings,
    chemistry: Chemistry | None,
    where: str,
    base_dir: Path,
) -> SourceConfig:
    kind = SourceKind(source.kind)
    for name, owner in _SOURCE_FIELDS_OF_KIND.items():
        if getattr(source, name) is not None and kind is not owner:
            raise ConfigError(
                f"{where}.{name}: only for kind = {owner.value!r} (this source is {kind.value!r})"
            )
    if source.usb_serial is not None and (source.port or "auto") != "auto":
        raise ConfigError(f"{where}.usb_serial: only with port = 'auto' (port is {source.port!r})")
    file = None
    if kind is SourceKind.REPLAY:
        if source.file is None:
            raise ConfigError(f"{where}.file: missing; a replay needs a capture file or raw dump")
        file = Path(source.file).expanduser()
        if not file.is_absolute():
            file = base_dir / file
    frame_format = FrameFormat(source.temperature_scale, source.layout)
    world = None
    if kind is SourceKind.EMULATOR:
        world = _emulated_world(source, settings, limits, chemistry, frame_format, where)
    return SourceConfig(
        kind=kind,
        port=source.port or "auto",
        usb_serial=source.usb_serial,
        baudrate=source.baudrate or 9600,
        file=file,
        speed=None if source.speed == 0 else (source.speed or 1.0),
        repeat=bool(source.repeat),
        frame_format=frame_format,
        world=world,
        served=ServedUartSettings(
            pty=bool(source.uart_pty) or source.uart_pty_file is not None,
            pty_file=_relative(source.uart_pty_file, base_dir),
            tcp_host=source.uart_tcp_host or "127.0.0.1",
            tcp_port=source.uart_tcp_port,
        ),
        assembly=AssemblySettings(
            frame_period_s=settings.message_period_s,
            cell_stale_factor=source.cell_stale_factor,
            stale_after_s=source.stale_after_s,
            layout=source.layout,
        ),
    )


def _emulated_world(
    source: SourceModel,
    settings: BmsSettings,
    limits: LimitSettings,
    chemistry: Chemistry | None,
    frame_format: FrameFormat,
    where: str,
) -> Scenario:
    """The world an emulated pack lives in for ``twin run``: its cells, a sunny household.

    The clock (start time, day of year) is set when the service starts.
    """
    seed = source.seed or 0
    capacity_ah = source.capacity_ah or settings.capacity_ah / EMULATED_USABLE_SHARE
    try:
        pack = PackSpec(
            chemistry=chemistry or Chemistry.LIFEPO4,
            cell_count=settings.cell_count,
            capacity_ah=capacity_ah,
            spread=Spread(source.spread or "typical"),
            initial_soc_pct=60.0 if source.true_soc_pct is None else source.true_soc_pct,
            seed=seed,
        )
        n, vb = settings.cell_count, settings.vbalance_v
        mains = None
        if source.charger_a:
            # A mains charger on the CHARGE relay, day and night: absorption just above
            # V-balance (the boards top-balance), float just below.
            mains = ChargerSpec(
                max_current_a=source.charger_a,
                absorption_v=round(n * (vb + 0.05), 2),
                float_v=round(n * (vb - 0.05), 2),
            )
        plant = PlantSpec(
            solar=SolarSpec(peak_w=settings.solar_peak_w) if settings.solar_peak_w > 0 else None,
            load=LoadSpec(annual_kwh=3500.0 if source.annual_kwh is None else source.annual_kwh),
            inverter=InverterSpec(
                max_power_w=settings.inverter_peak_w,
                mode=InverterMode(source.inverter or "relays"),
                **(source.inverter_options.model_dump() if source.inverter_options else {}),
            ),
            mains_charger=mains,
            seed=seed,
        )
        return Scenario(
            name="twin run",
            settings=settings,
            duration_s=86_400.0,  # unused: the service steps the world until it stops
            step_s=settings.message_period_s,
            limits=limits,
            pack=pack,
            plant=plant,
            chain=ChainSpec(frame_format=frame_format, seed=seed + 5),
            twin_stale_after_s=1.0,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: the emulated pack: {exc}") from exc


_T = typing.TypeVar("_T")


def _decode(decoder: typing.Callable[[str], _T], text: str, where: str) -> _T:
    try:
        return decoder(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _curve(points: CurvePoints | None) -> tuple[tuple[float, float], ...] | None:
    return None if points is None else tuple((float(x), float(f)) for x, f in points)


# ---------------------------------------------------------------------------------------------


def _relative(name: str | None, base_dir: Path) -> Path | None:
    """``name`` as a path, relative to ``base_dir`` unless absolute (None stays None)."""
    if name is None:
        return None
    path = Path(name).expanduser()
    return path if path.is_absolute() else base_dir / path
