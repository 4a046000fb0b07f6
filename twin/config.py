"""Configuration: one TOML file, validated with pydantic 2 here, turned into frozen core objects.

This is the only module that parses configuration files. Every problem becomes a
``ConfigError`` whose message is one line naming the file, the field (``pack[0].cells``), the
bad value and what is allowed. ``example.toml`` next to this module is both the commented
example (``twin config --example``) and the embedded default that ``twin run`` uses with no
``--config``.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from twin.emulator.chain import ChainSpec, SensorFault
from twin.emulator.simulation import (
    Action,
    Ambient,
    BreakChain,
    BypassLoad,
    Calibrate,
    ChangeSettings,
    DeadTemperatureSensor,
    LeakyCell,
    RepairChain,
    Scenario,
    SensorFaultEvent,
    SensorSetup,
    TimedEvent,
    WeakCell,
    WireNoise,
    apply_changes,
)
from twin.errors import ConfigError
from twin.exporters.can_map import CanSettings, HeartbeatAction, Profile
from twin.exporters.modbus_map import (
    TYPE_SIZE,
    VALUE_KEYS,
    WRITABLE_KEYS,
    CellBlock,
    ModbusSettings,
    NativeMap,
    Register,
    RegisterGroup,
    RegisterMaps,
    RegType,
    SunSpecMap,
    SunSpecModel,
    unit_layout,
)
from twin.exporters.mqtt_map import FLEET_UNIT, MqttSettings
from twin.model.limits import LimitSettings
from twin.model.pack import CellOverride, PackSpec, Spread
from twin.model.plant import ChargerSpec, InverterSpec, LoadSpec, PlantSpec, SolarSpec
from twin.model.sensor import SensorErrors
from twin.model.settings import (
    CAPACITY_WH_RANGE,
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
from twin.protocol.frame import FirmwareLayout, FrameFormat, TemperatureScale

EXAMPLE_RESOURCE = "example.toml"

# ---------------------------------------------------------------------------------------------
# The file schema (pydantic). Field names carry units; bounds are what the hardware allows.
# ---------------------------------------------------------------------------------------------

CellVoltage = Annotated[float, Field(ge=1.5, le=5.0)]
Temperature = Annotated[float, Field(ge=-40.0, le=85.0)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]
CurvePoints = list[tuple[float, Annotated[float, Field(ge=0.0, le=1.0)]]]


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


class CurrentSensorModel(_Model):
    """``[pack.current_sensor]``."""

    sensors: Literal[1, 2] = 2
    loops: Literal[1, 2, 4] | None = None
    type_a: Literal[25, 50, 100, 250, 400, 500, 1000, 2000] | None = None
    blind_spot: bool | None = None


class LimitsModel(_Model):
    """``[pack.limits]``: the inverter limit algorithm (see twin.model.limits)."""

    max_charge_current_a: float = Field(default=100.0, ge=0.0, le=10_000.0)
    max_discharge_current_a: float = Field(default=100.0, ge=0.0, le=10_000.0)
    cvl_margin_v: float = Field(default=0.05, ge=0.0, le=0.5)
    cvl_overshoot_gain: float = Field(default=1.0, ge=0.0, le=100.0)
    cvl_floor_cell_v: float | None = Field(default=None, ge=1.5, le=5.0)
    dvl_margin_v: float = Field(default=0.10, ge=0.0, le=1.0)
    charge_taper: CurvePoints | None = None
    discharge_taper: CurvePoints | None = None
    temperature_derating: bool = True
    temperature_curve: CurvePoints | None = None
    current_ramp_a_per_s: float = Field(default=5.0, gt=0.0, le=10_000.0)
    cvl_ramp_v_per_s: float = Field(default=0.01, gt=0.0, le=100.0)
    increase_hold_s: float = Field(default=10.0, ge=0.0, le=3600.0)
    cvl_increase_hold_s: float = Field(default=60.0, ge=0.0, le=3600.0)
    resume_threshold_a: float = Field(default=2.0, ge=0.0, le=1000.0)
    deadband_a: float = Field(default=1.0, ge=0.0, le=1000.0)
    force_charge_on_pct: Percent = 5.0
    force_charge_off_pct: Percent = 10.0
    full_charge_interval_days: float = Field(default=30.0, gt=0.0, le=3650.0)
    warning_cell_margin_v: float = Field(default=0.05, ge=0.0, le=1.0)
    warning_temp_margin_c: float = Field(default=5.0, ge=0.0, le=50.0)
    imbalance_warning_v: float = Field(default=0.10, ge=0.0, le=3.5)
    overcurrent_margin_pct: float = Field(default=10.0, ge=0.0, le=1000.0)
    overcurrent_margin_a: float = Field(default=2.0, ge=0.0, le=1000.0)


class SourceModel(_Model):
    """``[pack.source]``: where the pack's UART bytes come from, and how to read them."""

    kind: Literal["emulator", "serial", "replay"] = "emulator"
    port: str | None = Field(default=None, min_length=1)
    usb_serial: str | None = Field(default=None, min_length=1)
    baudrate: int | None = Field(default=None, ge=300, le=115_200)
    file: str | None = Field(default=None, min_length=1)
    speed: float | None = Field(default=None, ge=0.0, le=1_000_000.0)
    repeat: bool | None = None
    temperature_scale: TemperatureScale = TemperatureScale.APP
    layout: FirmwareLayout = FirmwareLayout.KEY_VALUE
    stale_after_s: float = Field(default=10.0, gt=0.0, le=3600.0)
    cell_stale_factor: float = Field(default=3.0, ge=1.0, le=100.0)
    capacity_ah: float | None = Field(default=None, gt=0.0, le=100_000.0)
    true_soc_pct: float | None = Field(default=None, ge=0.0, le=100.0)
    spread: Literal["matched", "typical", "bad"] | None = None
    annual_kwh: float | None = Field(default=None, ge=0.0, le=1_000_000.0)
    charger_a: float | None = Field(default=None, ge=0.0, le=10_000.0)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)


class PackModel(_Model):
    """One ``[[pack]]``: one BMS and its settings."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    generation: Generation = Generation.GEN3
    cells: int | None = Field(default=None, ge=2, le=255)
    chemistry: Chemistry | None = None
    vmin_v: CellVoltage | None = None
    vbalance_v: CellVoltage | None = None
    vmax_v: CellVoltage | None = None
    vnominal_v: CellVoltage | None = None
    switches: str | None = None
    factory_switches: str | None = None
    tmin_c: Temperature = 0.0
    tmax_c: Temperature = 55.0
    charge_restart_pct: Percent = 90.0
    discharge_restart_pct: Percent = 10.0
    capacity_wh: float = Field(ge=CAPACITY_WH_RANGE[0], le=CAPACITY_WH_RANGE[1])
    mode: RelayMode | None = None
    message_period_s: float | None = None
    solar_peak_kw: float = Field(default=0.0, ge=0.0, le=100_000.0)
    inverter_peak_kw: float = Field(default=0.0, ge=0.0, le=100_000.0)
    pin: str = Field(default="1234", pattern=r"^[0-9]{4,8}$")

    @field_validator("pin")
    @classmethod
    def _pin_without_leading_zero(cls, value: str) -> str:
        if value.startswith("0"):
            raise ValueError(
                f"{value!r} starts with 0: the Modbus PIN register carries the PIN as a number "
                "(0 locks), so a leading 0 would be lost; choose a PIN that starts with 1-9"
            )
        return value

    charge_efficiency_pct: float = Field(default=100.0, ge=50.0, le=100.0)
    empty_recalibration_s: float = Field(default=60.0, ge=0.0, le=86_400.0)
    initial_soc_pct: Percent = 50.0
    current_sensor: CurrentSensorModel = CurrentSensorModel()
    limits: LimitsModel = LimitsModel()
    source: SourceModel = SourceModel()

    @field_validator("message_period_s")
    @classmethod
    def _message_period(cls, value: float | None) -> float | None:
        if value is not None and value not in (0.5, 1.0):
            raise ValueError("the message cycle is 0.5 or 1.0 s")
        return value

    @field_validator("chemistry", mode="before")
    @classmethod
    def _chemistry_any_case(cls, value: Any) -> Any:
        if isinstance(value, str):
            for chemistry in Chemistry:
                if chemistry.value.lower() == value.strip().lower():
                    return chemistry
        return value


class StoreModel(_Model):
    """``[store]``: where the twin keeps SOC, counters and written settings across restarts."""

    path: str | None = Field(default=None, min_length=1)
    save_interval_s: float = Field(default=30.0, ge=1.0, le=86_400.0)


#: A host name (RFC 1123 labels); an all-numeric dotted name must be a real IPv4 address.
_HOST_NAME = re.compile(
    r"^(?=.{1,253}\.?$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$"
)


def _check_host(value: str) -> str:
    """``value`` if it is an IP address or a host name; ``ValueError`` names it otherwise."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        numeric = all(label.isdigit() for label in value.rstrip(".").split("."))
        if numeric or not _HOST_NAME.match(value):
            raise ValueError(f"{value!r} is not an IP address or a host name") from None
    return value


Host = Annotated[str, Field(min_length=1, max_length=253), AfterValidator(_check_host)]


class ModbusModel(_Model):
    """``[modbus]``: the Modbus TCP server."""

    enabled: bool = True
    host: Host = "127.0.0.1"
    port: int = Field(default=5020, ge=1, le=65535)
    fleet_unit_id: int | None = Field(default=100, ge=1, le=247)
    unit_ids: dict[str, Annotated[int, Field(ge=1, le=247)]] = Field(default_factory=dict)
    ctrl_hb_timeout_s: float | None = Field(default=None, gt=0.0, le=86_400.0)
    max_connections: int = Field(default=100, ge=1, le=1000)
    idle_timeout_s: float | None = Field(default=120.0, gt=0.0, le=86_400.0)


class CanModel(_Model):
    """``[can]``: the CAN exporter (the inverter link and the native twin frames)."""

    enabled: bool = True
    interface: str = Field(default="virtual", min_length=1)
    channel: str = Field(default="twin", min_length=1)
    bitrate: int | None = Field(default=500_000, ge=10_000, le=1_000_000)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)
    profile: Profile = Profile.PYLON
    manufacturer: str | None = Field(default=None, min_length=1, max_length=8)
    cycle_s: float | None = Field(default=None, ge=0.1, le=60.0)
    dlc: Literal["profile", "dbc", "8"] = "profile"
    native: bool = True
    native_base_id: int = Field(default=0x700, ge=0, le=0x7FA)
    cells_per_cycle: int = Field(default=16, ge=1, le=255)
    heartbeat_timeout_s: float | None = Field(default=None, gt=0.0, le=3600.0)
    heartbeat_action: HeartbeatAction = HeartbeatAction.LOG
    silent_until_inverter: bool = False

    @field_validator("options", mode="before")
    @classmethod
    def _finite_options(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name, option in value.items():
                if isinstance(option, float) and not math.isfinite(option):
                    raise ValueError(f"{name} = {option!r} is not a finite number")
        return value

    @field_validator("manufacturer")
    @classmethod
    def _ascii(cls, value: str | None) -> str | None:
        if value is not None and not value.isascii():
            raise ValueError("must be ASCII (8 characters at most)")
        return value


#: An MQTT topic level: no wildcards, no empty level, no leading or trailing "/".
_TOPIC = r"^[^#+/\s]+(/[^#+/\s]+)*$"


class MqttModel(_Model):
    """``[mqtt]``: the MQTT exporter (present = enabled, unless ``enabled = false``)."""

    enabled: bool = True
    host: Host = "127.0.0.1"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = Field(default=None, min_length=1, max_length=128)
    username: str | None = Field(default=None, min_length=1)
    password: str | None = None
    tls: bool = False
    ca_file: str | None = Field(default=None, min_length=1)
    cert_file: str | None = Field(default=None, min_length=1)
    key_file: str | None = Field(default=None, min_length=1)
    tls_insecure: bool = False
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    timeout_s: float = Field(default=10.0, gt=0.0, le=300.0)
    prefix: str = Field(default="twin", pattern=_TOPIC, max_length=128)
    refresh_s: float = Field(default=60.0, ge=1.0, le=86_400.0)
    cells: bool = True
    ha_discovery: bool = True
    ha_prefix: str = Field(default="homeassistant", pattern=_TOPIC, max_length=128)
    ha_cells: bool = False
    commands: bool = True
    emulator_faults: bool = True
    reconnect_min_s: float = Field(default=1.0, gt=0.0, le=3600.0)
    reconnect_max_s: float = Field(default=30.0, gt=0.0, le=3600.0)
    protocol: Literal["auto", "5", "3.1.1"] = "auto"


class ConfigModel(_Model):
    """The whole file."""

    pack: list[PackModel] = Field(min_length=1, max_length=64)
    store: StoreModel = Field(default_factory=StoreModel)
    modbus: ModbusModel = Field(default_factory=ModbusModel)
    can: CanModel = Field(default_factory=CanModel)
    mqtt: MqttModel | None = None


# ---------------------------------------------------------------------------------------------
# The core's view: frozen dataclasses.
# ---------------------------------------------------------------------------------------------


class SourceKind(Enum):
    """Where a pack's UART bytes come from."""

    EMULATOR = "emulator"
    SERIAL = "serial"
    REPLAY = "replay"


@dataclass(frozen=True, slots=True)
class SourceConfig:
    """A pack's byte source and the decoding of its frames."""

    kind: SourceKind = SourceKind.EMULATOR
    port: str = "auto"
    """serial: a device path, a pyserial URL, or ``auto`` (the SmartBMSToUSB cable)."""
    usb_serial: str | None = None
    baudrate: int = 9600
    file: Path | None = None
    """replay: a capture file or raw dump (relative paths are relative to the config file)."""
    speed: float | None = 1.0
    """replay: 1 = the recorded pace, N = N x faster, None = as fast as possible."""
    repeat: bool = False
    frame_format: FrameFormat = field(default_factory=FrameFormat)
    assembly: AssemblySettings = field(default_factory=AssemblySettings)
    world: Scenario | None = None
    """emulator: the emulated pack and its plant (the clock is set when the service starts)."""


@dataclass(frozen=True, slots=True)
class PackConfig:
    """One pack, ready for the core."""

    pack_id: str
    settings: BmsSettings
    limits: LimitSettings
    pin: str
    initial_soc_pct: float
    chemistry: Chemistry | None = None
    source: SourceConfig = SourceConfig()


def default_state_path() -> Path:
    """``$XDG_STATE_HOME/twin/state.json`` (``~/.local/state/twin/state.json``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "twin" / "state.json"


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The state file and how often it is written (and at every clean stop)."""

    path: Path = field(default_factory=default_state_path)
    save_interval_s: float = 30.0


@dataclass(frozen=True, slots=True)
class TwinConfig:
    """The whole configuration."""

    packs: tuple[PackConfig, ...]
    source: str
    """Where it came from: a path, or ``<embedded default>``."""
    store: StoreConfig = field(default_factory=StoreConfig)
    modbus: ModbusSettings | None = field(default_factory=ModbusSettings)
    """None: no Modbus server."""
    can: CanSettings | None = field(default_factory=CanSettings)
    """None: no CAN exporter."""
    mqtt: MqttSettings | None = None
    """None: no MQTT exporter (the default: it needs a broker)."""


# ---------------------------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------------------------


def example_text() -> str:
    """The commented example configuration (also the embedded default)."""
    return resources.files("twin").joinpath(EXAMPLE_RESOURCE).read_text(encoding="utf-8")


def load_config(path: str | Path | None = None) -> TwinConfig:
    """Load and validate ``path``, or the embedded default when None."""
    if path is None:
        return parse_config(example_text(), "<embedded default>", Path.cwd())
    path = Path(path)
    return parse_config(_read_text(path), str(path), path.parent)


def _read_text(path: Path) -> str:
    """The text of a configuration or scenario file, or a one-line ``ConfigError``."""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc.reason}") from exc


def _serial_cable(source: SourceModel) -> str | None:
    """What names the cable of a serial source (None: not a serial source)."""
    if source.kind != "serial":
        return None
    port = source.port or "auto"
    if port != "auto":
        return f"port {port!r}"
    if source.usb_serial is not None:
        return f"the cable with usb_serial {source.usb_serial!r}"
    return "port 'auto' without usb_serial"


_M = typing.TypeVar("_M", bound=BaseModel)


def _validate(schema: type[_M], text: str, source: str) -> _M:
    """Parse TOML ``text`` and validate it against ``schema``; errors are one line."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(f"{source}: {_describe(errors[0], schema)}{more}") from exc


def parse_config(text: str, source: str, base_dir: Path | None = None) -> TwinConfig:
    """Validate configuration ``text``; ``source`` names it in error messages.

    Relative file names in it (a replay file) are relative to ``base_dir`` (default: the
    current directory).
    """
    model = _validate(ConfigModel, text, source)
    packs: list[PackConfig] = []
    seen: set[str] = set()
    cables: dict[str, str] = {}
    for index, pack in enumerate(model.pack):
        where = f"pack[{index}]"
        if pack.id in seen:
            raise ConfigError(f"{source}: {where}.id: {pack.id!r} is used by another pack")
        seen.add(pack.id)
        cable = _serial_cable(pack.source)
        if cable is not None:
            if cable in cables:
                raise ConfigError(
                    f"{source}: {where}.source: {cable} is already the source of pack "
                    f"{cables[cable]!r} (one serial port feeds one pack)"
                )
            cables[cable] = pack.id
        try:
            packs.append(_pack_config(pack, where, base_dir or Path.cwd()))
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    store_path = default_state_path()
    if model.store.path is not None:
        store_path = Path(model.store.path).expanduser()
        if not store_path.is_absolute():
            store_path = (base_dir or Path.cwd()) / store_path
    return TwinConfig(
        packs=tuple(packs),
        source=source,
        store=StoreConfig(store_path, model.store.save_interval_s),
        modbus=_modbus(model.modbus, [p.pack_id for p in packs], source),
        can=_can(model.can, len(packs), source),
        mqtt=_mqtt(model.mqtt, [p.pack_id for p in packs], source, base_dir or Path.cwd()),
    )


def _mqtt(
    model: MqttModel | None, pack_ids: list[str], source: str, base_dir: Path
) -> MqttSettings | None:
    if model is None or not model.enabled:
        return None
    if FLEET_UNIT in pack_ids:
        raise ConfigError(
            f"{source}: pack id {FLEET_UNIT!r}: MQTT publishes the fleet aggregate under that "
            "name; give the pack another id"
        )
    if model.reconnect_max_s < model.reconnect_min_s:
        raise ConfigError(
            f"{source}: mqtt.reconnect_max_s: {model.reconnect_max_s:g} is below "
            f"reconnect_min_s ({model.reconnect_min_s:g})"
        )
    if model.password is not None and model.username is None:
        raise ConfigError(f"{source}: mqtt.password: given without a username")
    files: dict[str, str | None] = {}
    for name in ("ca_file", "cert_file", "key_file"):
        value = getattr(model, name)
        if value is not None and not model.tls:
            raise ConfigError(f"{source}: mqtt.{name}: given, but tls is false")
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_absolute():
                path = base_dir / path
            if not path.is_file():
                raise ConfigError(f"{source}: mqtt.{name}: {path} is not a readable file")
            value = str(path)
        files[name] = value
    if files["key_file"] is not None and files["cert_file"] is None:
        raise ConfigError(f"{source}: mqtt.key_file: given without cert_file")
    return MqttSettings(
        host=model.host,
        port=model.port,
        client_id=model.client_id,
        username=model.username,
        password=model.password,
        tls=model.tls,
        ca_file=files["ca_file"],
        cert_file=files["cert_file"],
        key_file=files["key_file"],
        tls_insecure=model.tls_insecure,
        qos=model.qos,
        keepalive_s=model.keepalive_s,
        timeout_s=model.timeout_s,
        prefix=model.prefix,
        refresh_s=model.refresh_s,
        cells=model.cells,
        ha_discovery=model.ha_discovery,
        ha_prefix=model.ha_prefix,
        ha_cells=model.ha_cells,
        commands=model.commands,
        emulator_faults=model.emulator_faults,
        reconnect_min_s=model.reconnect_min_s,
        reconnect_max_s=model.reconnect_max_s,
        protocol=model.protocol,
    )


def _can(model: CanModel, packs: int, source: str) -> CanSettings | None:
    if not model.enabled:
        return None
    last = model.native_base_id + 0x10 * (packs - 1) + 5
    if model.native and last > 0x7FF:
        raise ConfigError(
            f"{source}: can.native_base_id: {model.native_base_id:#x} + 0x10 x {packs - 1} packs "
            "passes the last 11-bit id 0x7ff"
        )
    if model.native and model.native_base_id <= 0x382 and last >= 0x305:
        raise ConfigError(
            f"{source}: can.native_base_id: {model.native_base_id:#x} overlaps the inverter "
            "frames (0x305-0x382)"
        )
    return CanSettings(
        interface=model.interface,
        channel=model.channel,
        bitrate=model.bitrate,
        bus_options=tuple(sorted(model.options.items())),
        profile=model.profile,
        manufacturer=model.manufacturer,
        cycle_s=model.cycle_s,
        dlc_policy=model.dlc,
        native=model.native,
        native_base_id=model.native_base_id,
        cells_per_cycle=model.cells_per_cycle,
        heartbeat_timeout_s=model.heartbeat_timeout_s,
        heartbeat_action=model.heartbeat_action,
        silent_until_inverter=model.silent_until_inverter,
    )


def _modbus(model: ModbusModel, pack_ids: list[str], source: str) -> ModbusSettings | None:
    """Unit ids: as given in [modbus] unit_ids, else pack i (1-based) = unit i."""
    if not model.enabled:
        return None
    unknown = sorted(set(model.unit_ids) - set(pack_ids))
    if unknown:
        raise ConfigError(f"{source}: modbus.unit_ids: {unknown[0]!r} is not a pack id")
    ids = [model.unit_ids.get(pid, i + 1) for i, pid in enumerate(pack_ids)]
    taken: dict[int, str] = {}
    for pid, uid in zip(pack_ids, ids, strict=True):
        if uid in taken:
            raise ConfigError(
                f"{source}: modbus.unit_ids: {pid} and {taken[uid]} both have unit id {uid}"
            )
        taken[uid] = pid
    if model.fleet_unit_id is not None and model.fleet_unit_id in taken:
        raise ConfigError(
            f"{source}: modbus.fleet_unit_id: {model.fleet_unit_id} is the unit id of "
            f"{taken[model.fleet_unit_id]}"
        )
    return ModbusSettings(
        host=model.host,
        port=model.port,
        pack_unit_ids=tuple(zip(pack_ids, ids, strict=True)),
        fleet_unit_id=model.fleet_unit_id,
        ctrl_hb_timeout_s=model.ctrl_hb_timeout_s,
        max_connections=model.max_connections,
        idle_timeout_s=model.idle_timeout_s,
    )


# ---------------------------------------------------------------------------------------------
# From the file schema to the core (cross-field rules: switches, presets, generations).
# ---------------------------------------------------------------------------------------------


def _pack_config(pack: PackModel, where: str, base_dir: Path) -> PackConfig:
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
            tmin_c=pack.tmin_c,
            tmax_c=pack.tmax_c,
            charge_restart_pct=pack.charge_restart_pct,
            discharge_restart_pct=pack.discharge_restart_pct,
            capacity_wh=pack.capacity_wh,
            mode=mode or RelayMode.NORMAL,
            sensor=sensor_settings,
            solar_peak_w=pack.solar_peak_kw * 1000.0,
            inverter_peak_w=pack.inverter_peak_kw * 1000.0,
            message_period_s=period_s or 1.0,
            charge_efficiency_pct=pack.charge_efficiency_pct,
            empty_recalibration_s=pack.empty_recalibration_s,
        )
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from exc
    lm = pack.limits
    try:
        limits = LimitSettings(
            max_charge_current_a=lm.max_charge_current_a,
            max_discharge_current_a=lm.max_discharge_current_a,
            cvl_margin_v=lm.cvl_margin_v,
            cvl_overshoot_gain=lm.cvl_overshoot_gain,
            cvl_floor_cell_v=lm.cvl_floor_cell_v,
            dvl_margin_v=lm.dvl_margin_v,
            charge_taper=_curve(lm.charge_taper),
            discharge_taper=_curve(lm.discharge_taper),
            temperature_derating=lm.temperature_derating,
            temperature_curve=_curve(lm.temperature_curve),
            current_ramp_a_per_s=lm.current_ramp_a_per_s,
            cvl_ramp_v_per_s=lm.cvl_ramp_v_per_s,
            increase_hold_s=lm.increase_hold_s,
            cvl_increase_hold_s=lm.cvl_increase_hold_s,
            resume_threshold_a=lm.resume_threshold_a,
            deadband_a=lm.deadband_a,
            force_charge_on_pct=lm.force_charge_on_pct,
            force_charge_off_pct=lm.force_charge_off_pct,
            full_charge_interval_days=lm.full_charge_interval_days,
            warning_cell_margin_v=lm.warning_cell_margin_v,
            warning_temp_margin_c=lm.warning_temp_margin_c,
            imbalance_warning_v=lm.imbalance_warning_v,
            overcurrent_margin_pct=lm.overcurrent_margin_pct,
            overcurrent_margin_a=lm.overcurrent_margin_a,
        )
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
        if not file.is_file():
            raise ConfigError(f"{where}.file: {source.file!r}: no such file ({file})")
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
            inverter=InverterSpec(max_power_w=settings.inverter_peak_w),
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
# One line per pydantic error: field, bad value, allowed range.
# ---------------------------------------------------------------------------------------------


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _field_info(loc: tuple[int | str, ...], root: type[BaseModel]) -> Any:
    """The pydantic FieldInfo at ``loc`` in ``root``, or None."""
    model: type[BaseModel] | None = root
    info = None
    for part in loc:
        if isinstance(part, int):
            continue
        if model is None or part not in model.model_fields:
            return None
        info = model.model_fields[part]
        model = _inner_model(info.annotation)
    return info


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _bounds_text(lo: str | None, hi: str | None) -> str:
    if hi is None:
        return f"more than {lo[1:]}" if lo and lo.startswith(">") else f"at least {lo}"
    if lo is None:
        return f"less than {hi[1:]}" if hi.startswith("<") else f"at most {hi}"
    return f"{lo}..{hi}"


def _allowed(
    loc: tuple[int | str, ...], root: type[BaseModel], ctx: dict[str, Any] | None = None
) -> str | None:
    """The allowed range or values of the field at ``loc`` (or from the error's ``ctx``)."""
    lo = hi = None
    info = _field_info(loc, root)
    constraints: list[Any] = list(info.metadata) if info is not None else []
    for meta in constraints:
        if isinstance(meta, annotated_types.Ge):
            lo = _num(meta.ge)
        elif isinstance(meta, annotated_types.Gt):
            lo = f">{_num(meta.gt)}"
        elif isinstance(meta, annotated_types.Le):
            hi = _num(meta.le)
        elif isinstance(meta, annotated_types.Lt):
            hi = f"<{_num(meta.lt)}"
    if lo is None and hi is None and ctx:
        # A value nested below the field (a curve point): the error carries its own bound.
        lo = _num(ctx["ge"]) if "ge" in ctx else (f">{_num(ctx['gt'])}" if "gt" in ctx else None)
        hi = _num(ctx["le"]) if "le" in ctx else (f"<{_num(ctx['lt'])}" if "lt" in ctx else None)
    if lo is not None or hi is not None:
        return _bounds_text(lo, hi)
    if info is None:
        return None
    choices = _choices(info.annotation)
    return ", ".join(choices) if choices else None


def _num(value: Any) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:g}"
    return str(value)


def _choices(annotation: Any) -> list[str]:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return [str(a) for a in typing.get_args(annotation)]
    if origin in (typing.Union, types.UnionType):
        out: list[str] = []
        for arg in typing.get_args(annotation):
            out.extend(_choices(arg))
        return out
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(m.value) for m in annotation]
    return []


def _describe(error: Any, root: type[BaseModel] = ConfigModel) -> str:
    loc = tuple(error["loc"])
    # Drop pydantic's inner markers (tuple positions, union branches) from the location text.
    field_loc = tuple(p for p in loc if not (isinstance(p, str) and not re.match(r"^\w+$", p)))
    where = _location(field_loc) or "file"
    kind = error["type"]
    given = error.get("input")
    allowed = _allowed(field_loc, root, error.get("ctx"))
    if kind == "extra_forbidden":
        parent = _field_info(field_loc[:-1], root) if len(field_loc) > 1 else None
        model = _inner_model(parent.annotation) if parent is not None else root
        names = ", ".join(model.model_fields) if model is not None else ""
        return f"{where}: unknown field (allowed: {names})"
    if kind == "missing":
        return f"{where}: missing (required)"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{where}: {given!r} is out of range (allowed {allowed})"
    if kind in ("literal_error", "enum"):
        return f"{where}: {given!r} is not allowed (allowed: {allowed})"
    if kind == "string_pattern_mismatch":
        return f"{where}: {given!r} does not match {error['ctx']['pattern']}"
    if kind == "value_error" and "error" in error.get("ctx", {}):
        return f"{where}: {error['ctx']['error']}"
    if kind == "finite_number":
        return f"{where}: {given!r} is not a finite number"
    if kind == "too_long" and isinstance(given, list | dict | str):
        most = error.get("ctx", {}).get("max_length")
        return f"{where}: {len(given)} given, at most {most} allowed"
    if kind == "too_short" and isinstance(given, list | dict | str):
        least = error.get("ctx", {}).get("min_length")
        return f"{where}: {len(given)} given, at least {least} needed"
    if kind == "string_type" and isinstance(given, int | float):
        return f'{where}: {given!r} must be text in quotes ("{given}")'
    hint = f" (allowed {allowed})" if allowed else ""
    return f"{where}: {given!r}: {error['msg']}{hint}"


# ---------------------------------------------------------------------------------------------
# Scenario files (``twin simulate``): the BMS as in a [[pack]], plus the physical pack, the
# plant around it, the chain and timed events.
# ---------------------------------------------------------------------------------------------

Positive = Annotated[float, Field(gt=0.0)]


class ScenarioHeadModel(_Model):
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


class CellOverrideModel(_Model):
    """``[[pack.cell]]``: one cell that differs from the spread."""

    index: int = Field(ge=1, le=255)
    capacity_ah: float | None = Field(default=None, gt=0.0, le=100_000.0)
    r0_mohm: float | None = Field(default=None, gt=0.0, le=1000.0)
    soc_pct: Percent | None = None
    self_discharge_pct_per_month: float | None = Field(default=None, ge=0.0, le=100.0)


class PhysicalPackModel(_Model):
    """``[pack]``: the simulated cells (the BMS sees them only through its boards)."""

    capacity_ah: float = Field(default=280.0, gt=0.0, le=100_000.0)
    spread: Literal["matched", "typical", "bad"] = "typical"
    r0_mohm: float | None = Field(default=None, gt=0.0, le=1000.0)
    tau1_s: float = Field(default=40.0, gt=0.0, le=100_000.0)
    initial_soc_pct: Percent = 50.0
    balance_current_a: float = Field(default=1.0, ge=0.0, le=10.0)
    cell: list[CellOverrideModel] = []


class AmbientModel(_Model):
    """``[ambient]``: air temperature, a daily sine."""

    mean_c: Temperature = 20.0
    swing_c: float = Field(default=8.0, ge=0.0, le=60.0)
    warmest_h: float = Field(default=15.0, ge=0.0, lt=24.0)


class SolarModel(_Model):
    """``[solar]``: the PV array and the sky (clear-sky sun with seeded clouds)."""

    enabled: bool = True
    peak_kw: float = Field(default=5.0, ge=0.0, le=10_000.0)
    latitude_deg: float = Field(default=52.1, ge=-90.0, le=90.0)
    longitude_deg: float = Field(default=5.1, ge=-180.0, le=180.0)
    utc_offset_h: float = Field(default=2.0, ge=-12.0, le=14.0)
    system_efficiency: float = Field(default=0.85, gt=0.0, le=1.0)
    cloudiness: float = Field(default=0.2, ge=0.0, lt=1.0)
    cloud_attenuation: float = Field(default=0.3, ge=0.0, le=1.0)


class ChargerModel(_Model):
    """``[solar_charger]`` / ``[mains_charger]``: a constant-voltage charger."""

    max_current_a: float = Field(default=100.0, ge=0.0, le=10_000.0)
    absorption_v: float | None = Field(default=None, gt=0.0, le=1500.0)
    float_v: float | None = Field(default=None, gt=0.0, le=1500.0)
    absorption_h: float = Field(default=1.0, ge=0.0, le=48.0)
    tail_current_a: float = Field(default=2.0, ge=0.0, le=1000.0)
    from_h: float = Field(default=0.0, ge=0.0, le=24.0)
    to_h: float = Field(default=24.0, ge=0.0, le=24.0)


class LoadModel(_Model):
    """``[load]``: the household's AC demand (built-in profile or a CSV)."""

    enabled: bool = True
    annual_kwh: float = Field(default=3500.0, ge=0.0, le=10_000_000.0)
    appliances: bool = True
    csv: str | None = Field(default=None, min_length=1)
    repeat_h: float | None = Field(default=None, gt=0.0, le=24.0 * 366)
    constant_w: float = Field(default=0.0, ge=0.0, le=10_000_000.0)


class InverterModel(_Model):
    """``[inverter]``."""

    max_power_kw: float = Field(default=5.0, ge=0.0, le=10_000.0)
    efficiency: float = Field(default=0.94, gt=0.0, le=1.0)
    idle_w: float = Field(default=20.0, ge=0.0, le=10_000.0)


class ChainModel(_Model):
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


class SensorsModel(_Model):
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


class TwinModel(_Model):
    """``[twin]``: the twin that decodes the frames."""

    stale_after_s: float = Field(default=10.0, gt=0.0, le=3600.0)


class EventModel(_Model):
    """``[[event]]``: something that happens during the run."""

    kind: Literal[
        "break-chain",
        "repair-chain",
        "dead-temperature-sensor",
        "weak-cell",
        "leaky-cell",
        "sensor-fault",
        "wire-noise",
        "bypass-load",
        "settings",
        "calibrate",
    ]
    at_h: float | None = Field(default=None, ge=0.0)
    at_s: float | None = Field(default=None, ge=0.0)
    after_board: int | None = Field(default=None, ge=1, le=254)
    board: int | None = Field(default=None, ge=1, le=255)
    fault: Literal["open", "shorted"] = "open"
    cell: int | None = Field(default=None, ge=1, le=255)
    capacity_ah: float | None = Field(default=None, gt=0.0, le=100_000.0)
    pct_per_month: float | None = Field(default=None, ge=0.0, le=100.0)
    sensor: Literal[1, 2] | None = None
    offset_a: float | None = Field(default=None, ge=-50.0, le=50.0)
    drift_a_per_day: float | None = Field(default=None, ge=-50.0, le=50.0)
    gain_error: float | None = Field(default=None, ge=-0.5, le=0.5)
    reversed: bool | None = None
    probability: float | None = Field(default=None, ge=0.0, le=1.0)
    power_w: float | None = Field(default=None, ge=0.0, le=1_000_000.0)
    settings: dict[str, float | bool | str] | None = None
    target: Literal["both", "bms", "twin"] = "both"


class ScenarioModel(_Model):
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
    event: list[EventModel] = []


#: The fields each event kind needs (besides ``kind`` and the time).
_EVENT_FIELDS: dict[str, tuple[str, ...]] = {
    "break-chain": ("after_board",),
    "repair-chain": (),
    "dead-temperature-sensor": ("board",),
    "weak-cell": ("cell", "capacity_ah"),
    "leaky-cell": ("cell", "pct_per_month"),
    "sensor-fault": ("sensor",),
    "wire-noise": ("probability",),
    "bypass-load": ("power_w",),
    "settings": ("settings",),
    "calibrate": (),
}
_EVENT_OPTIONAL: dict[str, tuple[str, ...]] = {
    "dead-temperature-sensor": ("fault",),
    "sensor-fault": ("offset_a", "drift_a_per_day", "gain_error", "reversed"),
    "settings": ("target",),
}


def load_scenario(path: str | Path) -> Scenario:
    """Load and validate a scenario file; raises ``ConfigError`` naming the problem."""
    path = Path(path)
    return parse_scenario(_read_text(path), str(path), path.parent)


def parse_scenario(text: str, source: str, base_dir: Path | None = None) -> Scenario:
    """Validate scenario ``text``; ``source`` names it in error messages."""
    model = _validate(ScenarioModel, text, source)
    try:
        return _scenario(model, base_dir or Path.cwd())
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from exc


def _scenario(model: ScenarioModel, base_dir: Path) -> Scenario:
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
    bms = _pack_config(model.bms, "bms", base_dir)
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
    plant = _plant(model, settings, head.day_of_year, head.seed, base_dir)
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
    model: ScenarioModel, settings: BmsSettings, day_of_year: int, seed: int, base_dir: Path
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
        points = _load_csv(lm.csv, base_dir) if lm.csv is not None else None
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
        inverter=InverterSpec(im.max_power_kw * 1000.0, im.efficiency, im.idle_w),
        mains_charger=_charger(mains, "mains_charger", settings) if mains else None,
        mains_from_h=mains.from_h if mains else 0.0,
        mains_to_h=mains.to_h if mains else 24.0,
        day_of_year=day_of_year,
        seed=seed,
    )


def _load_csv(name: str, base_dir: Path) -> tuple[tuple[float, float], ...]:
    """A load profile CSV: a header naming ``time_s`` or ``hour``, and ``power_w``."""
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"load.csv: {name!r}: cannot read: {exc.strerror or exc}") from exc
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
    kind = model.kind
    needed = _EVENT_FIELDS[kind]
    for name in needed:
        if getattr(model, name) is None:
            raise ConfigError(
                f"{where}.{name}: missing (a {kind!r} event needs {', '.join(needed)})"
            )
    usable = {"kind", "at_h", "at_s", *needed, *_EVENT_OPTIONAL.get(kind, ())}
    for name in model.model_fields_set - usable:
        raise ConfigError(f"{where}.{name}: not used by a {kind!r} event")
    n = settings.cell_count
    for name in ("cell", "board"):
        value = getattr(model, name)
        if value is not None and value > n:
            raise ConfigError(f"{where}.{name}: {value} is out of range (allowed 1..{n})")
    if model.after_board is not None and model.after_board >= n:
        raise ConfigError(
            f"{where}.after_board: {model.after_board} is out of range (allowed 1..{n - 1})"
        )
    if model.sensor == 2 and settings.sensor.sensor_count == 1:
        raise ConfigError(f"{where}.sensor: 2, but the BMS has one current sensor")
    action: Action
    if kind == "break-chain":
        action = BreakChain(model.after_board or 1)
    elif kind == "repair-chain":
        action = RepairChain()
    elif kind == "dead-temperature-sensor":
        action = DeadTemperatureSensor(model.board or 1, SensorFault(model.fault))
    elif kind == "weak-cell":
        action = WeakCell(model.cell or 1, model.capacity_ah or 1.0)
    elif kind == "leaky-cell":
        action = LeakyCell(model.cell or 1, model.pct_per_month or 0.0)
    elif kind == "sensor-fault":
        action = SensorFaultEvent(
            model.sensor or 1,
            offset_a=model.offset_a,
            drift_a_per_day=model.drift_a_per_day,
            gain_error=model.gain_error,
            reversed_wiring=model.reversed,
        )
    elif kind == "wire-noise":
        action = WireNoise(model.probability or 0.0)
    elif kind == "bypass-load":
        action = BypassLoad(model.power_w or 0.0)
    elif kind == "settings":
        changes = tuple(sorted((model.settings or {}).items()))
        try:
            apply_changes(settings, changes)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{where}.settings: {exc}") from exc
        action = ChangeSettings(changes, model.target)
    else:
        action = Calibrate()
    return TimedEvent(at_s, action)


# ---------------------------------------------------------------------------------------------
# The Modbus register maps (register_maps/*.toml).
# ---------------------------------------------------------------------------------------------


class _RegisterModel(_Model):
    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    type: RegType
    address: int | None = Field(default=None, ge=0, le=65535)
    offset: int | None = Field(default=None, ge=0, le=255)
    size: int | None = Field(default=None, ge=1, le=125)
    scale: float = Field(default=1.0, gt=0.0)
    unit: str = ""
    access: Literal["R", "RW"] = "R"
    value: str | None = None
    description: str = ""
    label: str = ""
    sf: str | None = None
    sf_value: int | None = Field(default=None, ge=-10, le=10)


class _GroupModel(_Model):
    title: str
    registers: list[_RegisterModel]


class _CellsModel(_Model):
    title: str
    address: int = Field(ge=0, le=65535)
    stride: int = Field(ge=1, le=64)
    count: int = Field(ge=1, le=255)
    registers: list[_RegisterModel]


class _MapHeadModel(_Model):
    name: str
    title: str
    version: int = 1
    base: int | None = Field(default=None, ge=0, le=65535)


class _NativeFileModel(_Model):
    map: _MapHeadModel
    group: list[_GroupModel]
    cells: _CellsModel


class _SunSpecGroupModel(_Model):
    name: str
    count: Literal["cell_count"]
    points: list[_RegisterModel]


class _SunSpecModelModel(_Model):
    id: int = Field(ge=1, le=65534)
    name: str
    pack_only: bool = False
    points: list[_RegisterModel]
    group: _SunSpecGroupModel | None = None


class _SunSpecFileModel(_Model):
    map: _MapHeadModel
    model: list[_SunSpecModelModel]


def _register(model: _RegisterModel, where: str, *, in_block: bool = False) -> Register:
    size = model.size if model.size is not None else TYPE_SIZE.get(model.type)
    if size is None:
        raise ConfigError(f"{where}.size: missing (a {model.type.value} needs its size)")
    if model.type in TYPE_SIZE and size != TYPE_SIZE[model.type]:
        raise ConfigError(f"{where}.size: {size} does not fit type {model.type.value}")
    # Native registers name their address, per-cell ones their offset in the block; SunSpec
    # points have neither (their place follows from the chain).
    position = model.offset if in_block else model.address
    if model.value is not None and model.value not in VALUE_KEYS:
        raise ConfigError(f"{where}.value: {model.value!r} is not a value the twin knows")
    writable = model.access == "RW"
    if writable and model.value not in WRITABLE_KEYS:
        raise ConfigError(f"{where}.access: {model.value!r} cannot be written")
    return Register(
        name=model.name,
        type=model.type,
        size=size,
        address=position or 0,
        scale=model.scale,
        unit=model.unit,
        writable=writable,
        value=model.value,
        description=model.description or model.label,
        sf=model.sf,
        sf_value=model.sf_value,
    )


def load_register_maps() -> RegisterMaps:
    """The maps shipped in ``twin.register_maps``, validated (a ConfigError names the fault)."""
    files = resources.files("twin.register_maps")
    native_text = files.joinpath("native.toml").read_text(encoding="utf-8")
    sunspec_text = files.joinpath("sunspec.toml").read_text(encoding="utf-8")
    return parse_register_maps(native_text, sunspec_text)


def parse_register_maps(native_text: str, sunspec_text: str) -> RegisterMaps:
    """Both maps from their TOML texts."""
    native = _validate(_NativeFileModel, native_text, "register_maps/native.toml")
    sunspec = _validate(_SunSpecFileModel, sunspec_text, "register_maps/sunspec.toml")
    groups = tuple(
        RegisterGroup(
            g.title,
            tuple(
                _register(r, f"register_maps/native.toml: group[{i}].registers[{j}]")
                for j, r in enumerate(g.registers)
            ),
        )
        for i, g in enumerate(native.group)
    )
    for i, g in enumerate(native.group):
        for j, r in enumerate(g.registers):
            if r.address is None:
                raise ConfigError(
                    f"register_maps/native.toml: group[{i}].registers[{j}].address: missing"
                )
    c = native.cells
    cell_regs = tuple(
        _register(r, f"register_maps/native.toml: cells.registers[{j}]", in_block=True)
        for j, r in enumerate(c.registers)
    )
    if sum(r.size for r in cell_regs) > c.stride:
        raise ConfigError("register_maps/native.toml: cells: the registers exceed the stride")
    native_map = NativeMap(
        native.map.title,
        native.map.version,
        groups,
        CellBlock(c.title, c.address, c.stride, c.count, cell_regs),
    )
    models = []
    for i, m in enumerate(sunspec.model):
        where = f"register_maps/sunspec.toml: model[{i}]"
        points = tuple(_register(p, f"{where}.points[{j}]") for j, p in enumerate(m.points))
        group = (
            tuple(_register(p, f"{where}.group.points[{j}]") for j, p in enumerate(m.group.points))
            if m.group is not None
            else ()
        )
        names = {p.name for p in points if p.type is RegType.SUNSSF}
        for p in (*points, *group):
            if p.sf is not None and p.sf not in names:
                raise ConfigError(f"{where}: {p.name}.sf names no scale factor point {p.sf!r}")
        models.append(
            SunSpecModel(m.id, m.name, points, group, m.group.name if m.group else "", m.pack_only)
        )
    base = sunspec.map.base if sunspec.map.base is not None else 40000
    maps = RegisterMaps(native_map, SunSpecMap(sunspec.map.title, base, tuple(models)))
    try:
        unit_layout(maps, native_map.cells.count, fleet=False)
    except ValueError as exc:
        raise ConfigError(f"register_maps: {exc}") from exc
    return maps
