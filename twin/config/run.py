"""The run configuration: TOML text -> validated, frozen ``TwinConfig``.

``parse_config`` takes text and touches no file; ``load_config`` reads the file and checks the
files it names (a replay capture, TLS certificates) exist.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from twin.config.messages import validate
from twin.config.objects import (
    PackConfig,
    StoreConfig,
    TwinConfig,
    default_state_path,
)
from twin.config.pack import pack_config
from twin.config.schema import (
    CanModel,
    ConfigModel,
    ModbusModel,
    MqttModel,
    SourceModel,
    WebModel,
)
from twin.errors import ConfigError
from twin.exporters.can_map import CanSettings
from twin.exporters.modbus_map import (
    ModbusSettings,
)
from twin.exporters.mqtt_map import FLEET_UNIT, MqttSettings
from twin.exporters.web_map import WebSettings

# ---------------------------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------------------------


def example_text() -> str:
    """The commented example configuration (also the embedded default)."""
    return resources.files("twin").joinpath("example.toml").read_text(encoding="utf-8")


def load_config(path: str | Path | None = None) -> TwinConfig:
    """Load and validate ``path``, or the embedded default when None.

    Besides the text, the files the configuration names must be there: a replay's capture
    and the MQTT TLS files (``check_files``).
    """
    if path is None:
        config = parse_config(example_text(), "<embedded default>", Path.cwd())
    else:
        path = Path(path)
        config = parse_config(read_text(path), str(path), path.parent)
    check_files(config)
    return config


def check_files(config: TwinConfig) -> None:
    """``ConfigError`` for the first file the configuration names that is not a file."""
    for i, pack in enumerate(config.packs):
        file = pack.source.file
        if file is not None and not file.is_file():
            raise ConfigError(
                f"{config.source}: pack[{i}].source.file: {file.name!r}: no such file ({file})"
            )
    mqtt = config.mqtt
    if mqtt is not None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(mqtt, name)
            if value is not None and not Path(value).is_file():
                raise ConfigError(f"{config.source}: mqtt.{name}: {value} is not a readable file")


def read_text(path: Path) -> str:
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


def parse_config(text: str, source: str, base_dir: Path | None = None) -> TwinConfig:
    """Validate configuration ``text``; ``source`` names it in error messages.

    Relative file names in it (a replay file) are relative to ``base_dir`` (default: the
    current directory).
    """
    model = validate(ConfigModel, text, source)
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
            packs.append(pack_config(pack, where, base_dir or Path.cwd()))
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
        web=_web(model.web),
    )


def _web(model: WebModel) -> WebSettings | None:
    """The dashboard's server (None: ``enabled = false``)."""
    if not model.enabled:
        return None
    return WebSettings(
        host=model.host,
        port=model.port,
        update_hz=model.update_hz,
        max_clients=model.max_clients,
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
