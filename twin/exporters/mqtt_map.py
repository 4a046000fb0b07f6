"""What the MQTT exporter publishes, as data: pure, no aiomqtt.

Per pack and for the fleet, under ``<prefix>/<unit>/`` (default ``twin/pack1/``, ``twin/fleet/``):

- ``state``: one retained JSON object of every value, units in the key names
  (``pack_voltage_v``, ``soc_pct``, ...), with ``stale`` and ``data_age_s`` so a consumer sees
  stale data instead of a silent freeze; values not available are ``null``, never 0;
- one retained topic per value (``<prefix>/<unit>/<key>``), and per cell
  (``<prefix>/<unit>/cell/<n>/voltage_v``, ``temp_c``, ``balancing``);
- Home Assistant discovery configs (``homeassistant/<component>/<object id>/config``).

``changed`` decides what to publish again: a value that moved by more than its deadband, or
anything at least every ``refresh_s`` (the exporter's choice).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twin.errors import CommandError
from twin.model.limits import LimitFlag
from twin.protocol.readout import PLANT_FIELDS, ChargeState, FleetReadout, PackReadout

JsonValue = str | int | float | bool | None

#: The unit name of the fleet aggregate in topics (``twin/fleet/state``); no pack may use it.
FLEET_UNIT = "fleet"


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """``[mqtt]``: the broker, the topics and what is published (see example.toml)."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str | None = None
    """None: ``twin-<prefix>`` (two twins on one broker need two prefixes anyway)."""
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None
    """None with TLS: the system's trusted CAs."""
    cert_file: str | None = None
    key_file: str | None = None
    tls_insecure: bool = False
    """Skip the broker's certificate and host name checks (a test broker only)."""
    qos: int = 1
    keepalive_s: int = 30
    timeout_s: float = 10.0
    """How long a connect or an acknowledged publish may take before the link counts as lost."""
    prefix: str = "twin"
    refresh_s: float = 60.0
    """Everything is published again at least this often (besides on change)."""
    cells: bool = True
    """Per-cell topics (voltage, temperature, balancing)."""
    ha_discovery: bool = True
    ha_prefix: str = "homeassistant"
    ha_cells: bool = False
    """Home Assistant sensors for each cell's voltage and temperature (created disabled)."""
    commands: bool = True
    """Settings and counter commands (with the pack's PIN)."""
    emulator_faults: bool = True
    """Fault injection into emulated packs (no PIN: an emulated pack has no hardware)."""
    reconnect_min_s: float = 1.0
    reconnect_max_s: float = 30.0
    protocol: str = "auto"
    """``"5"``, ``"3.1.1"``, or ``"auto"``: MQTT 5, and 3.1.1 with a broker that refuses it.
    Only MQTT 5 tells a command published with the retain flag while the twin is connected
    ("retain as published"); with 3.1.1 such a command is seen as live and carried out."""

    @property
    def status_topic(self) -> str:
        """``online`` / ``offline`` (the last will), retained."""
        return f"{self.prefix}/status"

    def base(self, unit: str) -> str:
        """The topics of one pack or the fleet start with this."""
        return f"{self.prefix}/{unit}"


#: Decimal places of the published values (the rest are published as they are).
ROUNDING: dict[str, int] = {
    "data_age_s": 1,
    "soc_pct": 2,
    "stored_energy_wh": 1,
    "harvested_today_wh": 1,
    "consumed_today_wh": 1,
    "harvested_total_wh": 1,
    "consumed_total_wh": 1,
    "capacity_ah": 1,
    "charge_voltage_limit_v": 3,
    "charge_current_limit_a": 2,
    "discharge_current_limit_a": 2,
    "discharge_voltage_limit_v": 3,
    "pack_voltage_v": 3,
    "battery_current_a": 3,
    "current1_a": 3,
    "current2_a": 3,
    "battery_power_w": 1,
    "cell_spread_v": 3,
    "avg_cell_voltage_v": 4,
    "avg_temp_c": 1,
}

#: Keys renamed to the one vocabulary (docs/vocabulary.md): old key -> readout field. The old
#: keys are still published, with the same values, until the next release.
ALIASES: dict[str, str] = {
    "min_cell": "min_cell_index",
    "max_cell": "max_cell_index",
    "min_temp_cell": "min_temp_index",
    "max_temp_cell": "max_temp_index",
}


def _json(key: str, value: object) -> JsonValue:
    """A readout field as JSON: flags as names, enums as names, floats rounded."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, LimitFlag):
        return _flag_names(value)
    if isinstance(value, ChargeState):
        return value.name.lower()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        places = ROUNDING.get(key)
        return value if places is None else round(value, places)
    raise TypeError(f"{key}: {type(value).__name__} is not published")


def _state(readout: object, keys: tuple[str, ...]) -> dict[str, JsonValue]:
    values = {key: _json(key, getattr(readout, key)) for key in keys}
    for old, new in ALIASES.items():
        if new in values:
            values[old] = values[new]
    return values


def pack_state(readout: PackReadout | None) -> dict[str, JsonValue]:
    """The JSON state of one pack.

    Before its first snapshot (``None``) every key is there, as null where nothing is known:
    a consumer (a Home Assistant template) reads the same keys from the first message on, and
    the warning and relays read as a stale pack's (E, both relays off).
    """
    if readout is None:
        values: dict[str, JsonValue] = dict.fromkeys(PACK_KEYS)
        values.update(
            stale=True,
            comm_error=True,
            warning_e=True,
            charge_effective=False,
            discharge_effective=False,
        )
        return values
    return _state(readout, PACK_FIELDS)


def plant_state(readout: PackReadout | None) -> dict[str, float]:
    """``emulator/plant``: the setpoints a controller set in the pack's plant, by name."""
    if readout is None:
        return {}
    values = {name: getattr(readout, field) for name, field in PLANT_FIELDS.items()}
    return {name: value for name, value in values.items() if value is not None}


def fleet_state(readout: FleetReadout) -> dict[str, JsonValue]:
    """The JSON state of the fleet aggregate."""
    return _state(readout, FLEET_FIELDS)


def cell_values(readout: PackReadout | None) -> list[dict[str, JsonValue]]:
    """Per cell: voltage, temperature, balancing (None while stale or never reported)."""
    if readout is None:
        return []
    return [
        {"voltage_v": cell.voltage_v, "temp_c": cell.temp_c, "balancing": cell.balancing}
        for cell in readout.cells
    ]


def _flag_names(flags: LimitFlag) -> str:
    """Alarm names, comma separated ("" when none): readable in any MQTT client."""
    return ",".join(f.name.lower() for f in LimitFlag if f.value and flags & f and f.name)


#: Deadbands of analog values (published again only when they move by more, or on refresh).
DEADBANDS: dict[str, float] = {
    "pack_voltage_v": 0.01,
    "battery_current_a": 0.1,
    "current1_a": 0.1,
    "current2_a": 0.1,
    "battery_power_w": 5.0,
    "soc_pct": 0.1,
    "stored_energy_wh": 10.0,
    "data_age_s": 5.0,
    "min_cell_voltage_v": 0.005,
    "max_cell_voltage_v": 0.005,
    "min_temp_c": 0.5,
    "max_temp_c": 0.5,
    "cell_spread_v": 0.005,
    "avg_cell_voltage_v": 0.005,
    "avg_temp_c": 0.5,
    "voltage_v": 0.005,
    "temp_c": 0.5,
}


def changed(old: JsonValue, new: JsonValue, key: str) -> bool:
    """Whether ``new`` is worth publishing after ``old`` (deadbands for analog values)."""
    if isinstance(old, bool) or isinstance(new, bool) or old is None or new is None:
        return old != new
    if isinstance(old, int | float) and isinstance(new, int | float):
        return abs(new - old) > DEADBANDS.get(key, 0.0)
    return old != new


# ---- Home Assistant discovery ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entity:
    """One Home Assistant entity over a key of the state JSON."""

    key: str
    name: str
    component: str = "sensor"
    device_class: str | None = None
    unit: str | None = None
    state_class: str | None = None
    pack_only: bool = False


def _sensor(
    key: str, name: str, device_class: str, unit: str, *, total: bool = False, pack: bool = False
) -> Entity:
    state_class = "total_increasing" if total else "measurement"
    return Entity(key, name, "sensor", device_class, unit, state_class, pack)


def _flag(key: str, name: str, device_class: str, *, pack: bool = False) -> Entity:
    return Entity(key, name, "binary_sensor", device_class, pack_only=pack)


ENTITIES: tuple[Entity, ...] = (
    _sensor("pack_voltage_v", "Voltage", "voltage", "V"),
    _sensor("battery_current_a", "Current", "current", "A"),
    _sensor("battery_power_w", "Power", "power", "W"),
    _sensor("soc_pct", "State of charge", "battery", "%"),
    _sensor("stored_energy_wh", "Stored energy", "energy_storage", "Wh"),
    _sensor("harvested_total_wh", "Energy in", "energy", "Wh", total=True),
    _sensor("consumed_total_wh", "Energy out", "energy", "Wh", total=True),
    _sensor("min_cell_voltage_v", "Lowest cell", "voltage", "V", pack=True),
    _sensor("max_cell_voltage_v", "Highest cell", "voltage", "V", pack=True),
    _sensor("min_temp_c", "Lowest temperature", "temperature", "°C", pack=True),
    _sensor("max_temp_c", "Highest temperature", "temperature", "°C", pack=True),
    _sensor("charge_current_limit_a", "Charge current limit", "current", "A"),
    _sensor("discharge_current_limit_a", "Discharge current limit", "current", "A"),
    _sensor("charge_voltage_limit_v", "Charge voltage limit", "voltage", "V"),
    _flag("charge_effective", "Charge allowed", "power"),
    _flag("discharge_effective", "Discharge allowed", "power"),
    _flag("warning_e", "Communication error", "problem", pack=True),
    _flag("warning_vl", "Cell voltage low", "problem", pack=True),
    _flag("warning_vh", "Cell voltage high", "problem", pack=True),
    _flag("warning_tl", "Temperature low", "cold", pack=True),
    _flag("warning_th", "Temperature high", "heat", pack=True),
    _flag("stale", "Data stale", "problem"),
)


def discovery_configs(
    unit: str,
    base_topic: str,
    availability_topic: str,
    *,
    ha_prefix: str = "homeassistant",
    fleet: bool = False,
    cells: int = 0,
    version: str = "",
) -> dict[str, dict[str, Any]]:
    """Home Assistant discovery: topic -> config for each entity of one unit (pack or fleet)."""
    node = object_prefix(base_topic)
    device = {
        "identifiers": [node],
        "name": f"123SmartBMS twin {unit}",
        "manufacturer": "twin",
        "model": "fleet aggregate" if fleet else "123\\SmartBMS digital twin",
        "sw_version": version,
    }
    configs: dict[str, dict[str, Any]] = {}
    for entity in ENTITIES:
        if fleet and entity.pack_only:
            continue
        object_id = f"{node}_{entity.key}"
        config: dict[str, Any] = {
            "name": entity.name,
            "unique_id": object_id,
            "default_entity_id": f"{entity.component}.{object_id}",
            "state_topic": f"{base_topic}/state",
            "value_template": _template(entity),
            "availability_topic": availability_topic,
            "device": device,
        }
        if entity.component == "binary_sensor":
            config["payload_on"] = "ON"
            config["payload_off"] = "OFF"
        if entity.device_class:
            config["device_class"] = entity.device_class
        if entity.unit:
            config["unit_of_measurement"] = entity.unit
        if entity.state_class:
            config["state_class"] = entity.state_class
        configs[f"{ha_prefix}/{entity.component}/{object_id}/config"] = config
    for n in range(1, cells + 1):
        for key, what, device_class, unit in (
            ("voltage_v", "voltage", "voltage", "V"),
            ("temp_c", "temperature", "temperature", "°C"),
        ):
            object_id = f"{node}_cell_{n}_{what}"
            configs[f"{ha_prefix}/sensor/{object_id}/config"] = {
                "name": f"Cell {n} {what}",
                "unique_id": object_id,
                "default_entity_id": f"sensor.{object_id}",
                "state_topic": f"{base_topic}/cell/{n}/{key}",
                "value_template": "{{ value_json }}",  # null -> "None" -> unknown
                "availability_topic": availability_topic,
                "device_class": device_class,
                "unit_of_measurement": unit,
                "state_class": "measurement",
                "device": device,
                "enabled_by_default": False,
            }
    return configs


def object_prefix(base_topic: str) -> str:
    """Home Assistant ids of a unit: its base topic, ``twin/pack1`` -> ``twin_pack1``.

    Two twins on one broker use two prefixes, so their entities never share an id.
    """
    return "".join(c if c.isalnum() else "_" for c in base_topic)


def _template(entity: Entity) -> str:
    key = entity.key
    if entity.component == "binary_sensor":
        return f"{{{{ 'ON' if value_json.{key} else 'OFF' }}}}"
    # JSON null renders as "None", the payload Home Assistant's MQTT sensor takes for
    # "unknown": not available shows as unknown, never as a fake 0 (nor as an error, which
    # the string "unknown" would be for a numeric sensor).
    return f"{{{{ value_json.{key} }}}}"


# ---- commands ----------------------------------------------------------------------------

#: The largest command payload read (anything longer is refused unread).
MAX_COMMAND_BYTES = 4096


@dataclass(frozen=True, slots=True)
class Command:
    """A command found on ``<prefix>/<unit>/...``.

    ``kind`` is ``set`` (``name`` a setting, or empty with ``values``), ``cmd`` (``name`` e.g.
    ``clear_counters``), ``fault`` (``name`` an emulator fault) or ``plant`` (``name`` a plant
    setpoint of an emulated pack).
    """

    unit: str
    kind: str
    name: str
    payload: dict[str, Any]
    problem: str | None = None
    """Why the payload cannot be read (not JSON, not an object, too long); None: it can."""

    @property
    def label(self) -> str:
        """The command as the result names it (``set/vmax_v``)."""
        path = {
            "set": "set",
            "cmd": "cmd",
            "fault": "emulator/fault",
            "plant": "emulator/plant",
        }[self.kind]
        return f"{path}/{self.name}" if self.name else path

    @property
    def request_id(self) -> JsonValue:
        """The caller's ``id``, echoed in the result (None when none was given)."""
        value = self.payload.get("id")
        return value if isinstance(value, str | int | float | bool) else None


def command_subscriptions(settings: MqttSettings) -> list[str]:
    """The topic filters the commands arrive on."""
    prefix = settings.prefix
    topics: list[str] = []
    if settings.commands:
        topics += [f"{prefix}/+/set", f"{prefix}/+/set/+", f"{prefix}/+/cmd/+"]
    if settings.emulator_faults:
        topics.append(f"{prefix}/+/emulator/fault/+")
        topics.append(f"{prefix}/+/emulator/plant/+")
    return topics


def parse_command(settings: MqttSettings, topic: str, payload: bytes) -> Command | None:
    """The command on ``topic`` (None: not a command topic).

    A payload that is not a JSON object gives a command with its ``problem`` set, so that the
    refusal still goes to the unit's result topic.
    """
    head = settings.prefix + "/"
    if not topic.startswith(head):
        return None
    parts = topic[len(head) :].split("/")
    if len(parts) == 2 and parts[1] == "set":
        unit, kind, name = parts[0], "set", ""
    elif len(parts) == 3 and parts[1] in ("set", "cmd"):
        unit, kind, name = parts[0], parts[1], parts[2]
    elif len(parts) == 4 and parts[1:3] == ["emulator", "fault"]:
        unit, kind, name = parts[0], "fault", parts[3]
    elif len(parts) == 4 and parts[1:3] == ["emulator", "plant"]:
        unit, kind, name = parts[0], "plant", parts[3]
    else:
        return None
    if len(payload) > MAX_COMMAND_BYTES:
        return Command(unit, kind, name, {}, f"the payload is over {MAX_COMMAND_BYTES} bytes")
    text = payload.decode("utf-8", errors="replace").strip()
    data: Any = {}
    if text:
        try:
            data = json.loads(text)
        except ValueError as exc:
            return Command(unit, kind, name, {}, f"the payload is not JSON ({exc})")
        except RecursionError:
            return Command(unit, kind, name, {}, "the payload's JSON is nested too deeply")
    if not isinstance(data, dict):
        return Command(unit, kind, name, {}, "the payload is not a JSON object")
    return Command(unit, kind, name, data)


def command_pin(command: Command) -> str:
    """The PIN in a command's payload (a string or a number of digits)."""
    pin = command.payload.get("pin")
    if isinstance(pin, bool) or pin is None:
        raise CommandError(f'{command.label}: no "pin" in the payload')
    if isinstance(pin, int) and pin >= 0:
        return str(pin)
    if isinstance(pin, str) and pin.isdigit():
        return pin
    raise CommandError(f"{command.label}: the pin is not a number of digits")


def setting_values(command: Command, writable: Mapping[str, object]) -> dict[str, float]:
    """The settings a ``set`` command writes.

    ``{"value": v}`` on ``set/<name>``, or ``{"values": {name: v, ...}}`` on ``set`` (changed
    together and validated together: a pair that is only valid as a pair).
    """
    if command.name:
        if command.name not in writable:
            raise CommandError(
                f"{command.name}: not a writable setting (one of {', '.join(writable)})"
            )
        if "value" not in command.payload:
            raise CommandError(f'{command.label}: no "value" in the payload')
        raw: dict[str, object] = {command.name: command.payload["value"]}
    else:
        values = command.payload.get("values")
        if not isinstance(values, dict) or not values:
            raise CommandError('set: "values" is not an object of settings')
        raw = dict(values)
    result: dict[str, float] = {}
    for name, value in raw.items():
        if name not in writable:
            raise CommandError(f"{name}: not a writable setting (one of {', '.join(writable)})")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError(f"{name}: {value!r} is not a number")
        result[name] = float(value)
    return result


def result_payload(command: Command, *, ok: bool, message: str, **extra: Any) -> str:
    """What the result topic says about a command."""
    body: dict[str, Any] = {"command": command.label, "ok": ok}
    if command.request_id is not None:
        body["id"] = command.request_id
    body["error" if not ok else "message"] = message
    body.update(extra)
    return json.dumps(body, separators=(",", ":"))


def value_payload(value: JsonValue) -> str:
    """A per-value topic's payload: the JSON value (``null`` when not available)."""
    return json.dumps(value)


def unit_of_state_topic(settings: MqttSettings, topic: str) -> str | None:
    """``<prefix>/<unit>/state`` -> ``unit`` (None for any other topic)."""
    head = settings.prefix + "/"
    if not topic.startswith(head) or not topic.endswith("/state"):
        return None
    unit = topic[len(head) : -len("/state")]
    return unit if unit and "/" not in unit else None


def unit_topics(settings: MqttSettings, unit: str, cells: int) -> list[str]:
    """Every retained topic the twin publishes for a unit (to clear it when it is removed)."""
    base = settings.base(unit)
    keys = set(PACK_KEYS) | set(FLEET_KEYS)
    topics = [
        f"{base}/state",
        f"{base}/settings",
        f"{base}/emulator/faults",
        f"{base}/emulator/plant",
    ]
    topics += [f"{base}/{key}" for key in sorted(keys)]
    for n in range(1, cells + 1):
        topics += [f"{base}/cell/{n}/{name}" for name in CELL_KEYS]
    return topics


#: The per-cell topics of a cell.
CELL_KEYS = ("voltage_v", "temp_c", "balancing")

#: The readout fields of a pack's state JSON (the JSON key is the field's name).
PACK_FIELDS = (
    "stale", "comm_error", "data_age_s", "frames_received", "bytes_rejected", "divergent",
    "charge_reported", "discharge_reported", "charge_twin", "discharge_twin",
    "charge_effective", "discharge_effective",
    "warning_e", "warning_vl", "warning_vh", "warning_tl", "warning_th",
    "cell_count", "capacity_wh", "capacity_ah",
    "soc_pct", "soc_calibrated", "soc_reported_pct", "stored_energy_wh",
    "harvested_today_wh", "consumed_today_wh", "harvested_total_wh", "consumed_total_wh",
    "alarms", "early_warnings", "charge_voltage_limit_v", "charge_current_limit_a",
    "discharge_current_limit_a", "discharge_voltage_limit_v",
    "pack_voltage_v", "battery_current_a", "current1_a", "current2_a", "battery_power_w",
    "charge_state", "min_cell_voltage_v", "min_cell_index", "max_cell_voltage_v",
    "max_cell_index", "cell_spread_v", "avg_cell_voltage_v", "min_temp_c", "min_temp_index",
    "max_temp_c", "max_temp_index", "avg_temp_c", "balancing_cells",
)  # fmt: skip
#: The readout fields of the fleet's state JSON.
FLEET_FIELDS = (
    "stale", "complete", "pack_count", "charge_twin", "discharge_twin", "charge_effective",
    "discharge_effective", "warning_e", "warning_vl", "warning_vh", "warning_tl",
    "warning_th", "soc_pct", "soc_calibrated", "stored_energy_wh", "capacity_wh",
    "capacity_ah", "harvested_today_wh", "consumed_today_wh", "harvested_total_wh",
    "consumed_total_wh", "alarms", "early_warnings", "charge_voltage_limit_v",
    "charge_current_limit_a", "discharge_current_limit_a", "discharge_voltage_limit_v",
    "pack_voltage_v", "battery_current_a", "current1_a", "current2_a", "battery_power_w",
    "charge_state", "min_cell_voltage_v", "min_cell_pack_id", "min_cell_index",
    "max_cell_voltage_v", "max_cell_pack_id", "max_cell_index", "cell_spread_v",
    "avg_cell_voltage_v", "min_temp_c", "min_temp_pack_id", "min_temp_index", "max_temp_c",
    "max_temp_pack_id", "max_temp_index", "avg_temp_c",
)  # fmt: skip
#: Every key of a pack's state: the fields, then the aliases.
PACK_KEYS = PACK_FIELDS + tuple(old for old, new in ALIASES.items() if new in PACK_FIELDS)
#: Every key of the fleet's state.
FLEET_KEYS = FLEET_FIELDS + tuple(old for old, new in ALIASES.items() if new in FLEET_FIELDS)


def plant_values(command: Command) -> tuple[float | None, float | None]:
    """(value, timeout_s) of a ``plant`` command; value None: ``{"clear": true}``.

    ``{"value": v}`` or ``{"value": v, "timeout_s": t}`` sets the setpoint (for ``t`` seconds
    of the plant's time), ``{"clear": true}`` hands it back to the plant's profile.
    """
    payload = command.payload
    unknown = sorted(set(payload) - {"value", "timeout_s", "clear", "id"})
    if unknown:
        raise CommandError(f"{command.label}: {unknown[0]} is not value, timeout_s or clear")
    clear = payload.get("clear", False)
    if not isinstance(clear, bool):
        raise CommandError(f'"clear": {clear!r} is not true or false')
    if clear:
        if "value" in payload:
            raise CommandError(f"{command.label}: give value or clear, not both")
        return None, None
    if "value" not in payload:
        raise CommandError(f'{command.label}: no "value" in the payload (or "clear": true)')
    value, timeout = payload["value"], payload.get("timeout_s")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"{command.label}: value {value!r} is not a number")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise CommandError(f"{command.label}: timeout_s {timeout!r} is not a number")
    return float(value), None if timeout is None else float(timeout)
