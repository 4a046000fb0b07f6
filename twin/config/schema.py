"""The run configuration's file schema (pydantic).

Field names carry units, bounds are what the hardware allows, and each default is declared
once (the core's, where the core has one).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from twin.emulator.plant import InverterSpec
from twin.exporters.can_map import HeartbeatAction, Profile
from twin.model.limits import LimitSettings
from twin.model.settings import (
    CAPACITY_WH_RANGE,
    BmsSettings,
    Chemistry,
    Generation,
    RelayMode,
)
from twin.protocol.frame import FirmwareLayout, TemperatureScale

# ---------------------------------------------------------------------------------------------
# The file schema (pydantic). Field names carry units; bounds are what the hardware allows.
# ---------------------------------------------------------------------------------------------

CellVoltage = Annotated[float, Field(ge=1.5, le=5.0)]
Temperature = Annotated[float, Field(ge=-40.0, le=85.0)]
Percent = Annotated[float, Field(ge=0.0, le=100.0)]
CurvePoints = list[tuple[float, Annotated[float, Field(ge=0.0, le=1.0)]]]


#: The core's defaults: the schema takes them, never a second copy.
_LIMITS = LimitSettings()
_BMS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(BmsSettings)}


class Model(BaseModel):
    """The base of every schema model: unknown fields, NaN and infinities are refused."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, str_strip_whitespace=True, allow_inf_nan=False
    )


class CurrentSensorModel(Model):
    """``[pack.current_sensor]``."""

    sensors: Literal[1, 2] = 2
    loops: Literal[1, 2, 4] | None = None
    type_a: Literal[25, 50, 100, 250, 400, 500, 1000, 2000] | None = None
    blind_spot: bool | None = None


class LimitsModel(Model):
    """``[pack.limits]``: the inverter limit algorithm (see twin.model.limits).

    Each field is a ``LimitSettings`` field of the same name, with its bounds here and its
    default there (``LimitSettings(**model_dump())``: no copy line per field).
    """

    max_charge_current_a: float = Field(default=_LIMITS.max_charge_current_a, ge=0.0, le=10_000.0)
    max_discharge_current_a: float = Field(
        default=_LIMITS.max_discharge_current_a, ge=0.0, le=10_000.0
    )
    cvl_margin_v: float = Field(default=_LIMITS.cvl_margin_v, ge=0.0, le=0.5)
    cvl_overshoot_gain: float = Field(default=_LIMITS.cvl_overshoot_gain, ge=0.0, le=100.0)
    cvl_floor_cell_v: float | None = Field(default=_LIMITS.cvl_floor_cell_v, ge=1.5, le=5.0)
    dvl_margin_v: float = Field(default=_LIMITS.dvl_margin_v, ge=0.0, le=1.0)
    charge_taper: CurvePoints | None = None
    discharge_taper: CurvePoints | None = None
    temperature_derating: bool = _LIMITS.temperature_derating
    temperature_curve: CurvePoints | None = None
    current_ramp_a_per_s: float = Field(default=_LIMITS.current_ramp_a_per_s, gt=0.0, le=10_000.0)
    cvl_ramp_v_per_s: float = Field(default=_LIMITS.cvl_ramp_v_per_s, gt=0.0, le=100.0)
    increase_hold_s: float = Field(default=_LIMITS.increase_hold_s, ge=0.0, le=3600.0)
    cvl_increase_hold_s: float = Field(default=_LIMITS.cvl_increase_hold_s, ge=0.0, le=3600.0)
    resume_threshold_a: float = Field(default=_LIMITS.resume_threshold_a, ge=0.0, le=1000.0)
    deadband_a: float = Field(default=_LIMITS.deadband_a, ge=0.0, le=1000.0)
    force_charge_on_pct: Percent = _LIMITS.force_charge_on_pct
    force_charge_off_pct: Percent = _LIMITS.force_charge_off_pct
    full_charge_interval_days: float = Field(
        default=_LIMITS.full_charge_interval_days, gt=0.0, le=3650.0
    )
    warning_cell_margin_v: float = Field(default=_LIMITS.warning_cell_margin_v, ge=0.0, le=1.0)
    warning_temp_margin_c: float = Field(default=_LIMITS.warning_temp_margin_c, ge=0.0, le=50.0)
    imbalance_warning_v: float = Field(default=_LIMITS.imbalance_warning_v, ge=0.0, le=3.5)
    overcurrent_margin_pct: float = Field(default=_LIMITS.overcurrent_margin_pct, ge=0.0, le=1000.0)
    overcurrent_margin_a: float = Field(default=_LIMITS.overcurrent_margin_a, ge=0.0, le=1000.0)


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


_INVERTER = InverterSpec()


class InverterOptionsModel(Model):
    """The known behaviours of real inverters, as options of the emulated one (docs/testbench.md).

    ``[pack.source] inverter_options`` for ``twin run``; part of a scenario's ``[inverter]``.
    """

    voltage_offset_v: float = Field(default=_INVERTER.voltage_offset_v, ge=-5.0, le=5.0)
    cvl_only: bool = _INVERTER.cvl_only
    hold_limits_s: float = Field(default=_INVERTER.hold_limits_s, ge=0.0, le=86_400.0)
    overvoltage_discharge_a: float = Field(
        default=_INVERTER.overvoltage_discharge_a, ge=0.0, le=10_000.0
    )


class SourceModel(Model):
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
    inverter: Literal["relays", "limits"] | None = None
    """Emulator: what the emulated inverter and chargers obey (docs/testbench.md)."""
    inverter_options: InverterOptionsModel | None = None
    """Emulator: the known inverter behaviours of a ``limits`` inverter (docs/testbench.md)."""
    uart_pty: bool | None = None
    """Emulator: serve the UART stream on a pseudo-terminal too."""
    uart_pty_file: str | None = Field(default=None, min_length=1)
    """Emulator: write the pseudo-terminal's path to this file."""
    uart_tcp_port: int | None = Field(default=None, ge=0, le=65_535)
    """Emulator: serve the UART stream's raw bytes on this TCP port (0: any free one)."""
    uart_tcp_host: Host | None = None


class PackModel(Model):
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
    tmin_c: Temperature = _BMS["tmin_c"]
    tmax_c: Temperature = _BMS["tmax_c"]
    charge_restart_pct: Percent = _BMS["charge_restart_pct"]
    discharge_restart_pct: Percent = _BMS["discharge_restart_pct"]
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

    charge_efficiency_pct: float = Field(default=_BMS["charge_efficiency_pct"], ge=50.0, le=100.0)
    empty_recalibration_s: float = Field(default=_BMS["empty_recalibration_s"], ge=0.0, le=86_400.0)
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


class StoreModel(Model):
    """``[store]``: where the twin keeps SOC, counters and written settings across restarts."""

    path: str | None = Field(default=None, min_length=1)
    save_interval_s: float = Field(default=30.0, ge=1.0, le=86_400.0)


class ModbusModel(Model):
    """``[modbus]``: the Modbus TCP server."""

    enabled: bool = True
    host: Host = "127.0.0.1"
    port: int = Field(default=5020, ge=1, le=65535)
    fleet_unit_id: int | None = Field(default=100, ge=1, le=247)
    unit_ids: dict[str, Annotated[int, Field(ge=1, le=247)]] = Field(default_factory=dict)
    ctrl_hb_timeout_s: float | None = Field(default=None, gt=0.0, le=86_400.0)
    max_connections: int = Field(default=100, ge=1, le=1000)
    idle_timeout_s: float | None = Field(default=120.0, gt=0.0, le=86_400.0)


class CanModel(Model):
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


class MqttModel(Model):
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


class WebModel(Model):
    """``[web]``: the dashboard (a live web page of the twin)."""

    enabled: bool = True
    host: Host = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    update_hz: float = Field(default=2.0, gt=0.0, le=20.0)
    max_clients: int = Field(default=20, ge=1, le=1000)


class ConfigModel(Model):
    """The whole file."""

    pack: list[PackModel] = Field(min_length=1, max_length=64)
    store: StoreModel = Field(default_factory=StoreModel)
    modbus: ModbusModel = Field(default_factory=ModbusModel)
    can: CanModel = Field(default_factory=CanModel)
    mqtt: MqttModel | None = None
    web: WebModel = Field(default_factory=WebModel)


# ---------------------------------------------------------------------------------------------
# The core's view: frozen dataclasses.
