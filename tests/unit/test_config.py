"""Configuration: the schema, cross-field rules and one-line error messages."""

from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

import pytest

from twin.config import SourceKind, example_text, load_config, parse_config
from twin.errors import ConfigError
from twin.model.settings import Chemistry, Generation, RelayMode, SensorKind
from twin.protocol.frame import FirmwareLayout, FrameFormat, TemperatureScale

BASE = """
[[pack]]
id = "p1"
cells = 16
chemistry = "LiFePO4"
capacity_wh = 5000
"""


def cfg(extra: str = "", base: str = BASE) -> str:
    return base + extra


def error_of(text: str) -> str:
    """The error of loading ``text`` as ``t.toml`` (the path ``twin run --config`` takes)."""
    with tempfile.TemporaryDirectory() as folder, contextlib.chdir(folder):
        Path("t.toml").write_text(text, encoding="utf-8")
        with pytest.raises(ConfigError) as info:
            load_config("t.toml")
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("t.toml: ")
    return message


def test_the_example_is_valid_and_is_the_embedded_default() -> None:
    config = parse_config(example_text(), "example")
    default = load_config(None)
    assert default.source == "<embedded default>"
    (pack,) = default.packs
    assert pack == config.packs[0]
    s = pack.settings
    assert (s.cell_count, s.generation, s.mode) == (16, Generation.GEN3, RelayMode.NORMAL)
    assert (s.vmin_v, s.vbalance_v, s.vmax_v) == (2.90, 3.40, 3.70)
    assert pack.chemistry is Chemistry.LIFEPO4


@pytest.mark.parametrize(
    ("chemistry", "expected"),
    [
        ("LiFePO4", (2.90, 3.40, 3.70)),
        ("lto", (2.15, 2.60, 2.70)),
        ("NMC", (3.43, 4.00, 4.10)),
        ("li-ion", (3.43, 4.10, 4.15)),
    ],
)
def test_chemistry_presets(chemistry: str, expected: tuple[float, float, float]) -> None:
    text = BASE.replace('"LiFePO4"', f'"{chemistry}"')
    s = parse_config(text, "t").packs[0].settings
    assert (s.vmin_v, s.vbalance_v, s.vmax_v) == expected


def test_explicit_values_override_the_preset() -> None:
    s = parse_config(cfg("vmax_v = 3.65\nvbalance_v = 3.5\n"), "t").packs[0].settings
    assert (s.vmin_v, s.vbalance_v, s.vmax_v) == (2.90, 3.5, 3.65)


def test_gen3_switches_set_vbalance_and_check_the_cell_range() -> None:
    s = parse_config(cfg('switches = "010 10010"\n'), "t").packs[0].settings
    assert s.vbalance_v == pytest.approx(3.6) and s.balancing
    s = parse_config(cfg('switches = "010 00000"\n'), "t").packs[0].settings
    assert not s.balancing and s.vbalance_v == 3.40  # the full level from the preset
    assert "cells: 16 does not match switches 1-3" in error_of(cfg('switches = "011 10000"\n'))


def test_gen2_switches_and_hidden_settings() -> None:
    text = """
[[pack]]
id = "old"
generation = "gen2"
chemistry = "LiFePO4"
capacity_wh = 2000
switches = "1010101"
factory_switches = "0100011"
"""
    pack = parse_config(text, "t").packs[0]
    s = pack.settings
    assert s.message_period_s == 0.5
    assert s.vbalance_v == pytest.approx(3.5)
    assert s.mode is RelayMode.CRITICAL
    assert s.sensor.kind is SensorKind.GEN2 and s.sensor.rating_a == 100
    assert s.sensor.blind_spot and s.cell_count == 16
    message = error_of(text.replace('switches = "1010101"', 'switches = "1011101"'))
    assert "switch 4 (auto zero) is ON" in message
    message = error_of(text + "cells = 20\n")
    assert "pack[0].cells: 20 is more than factory switches 4-7" in message
    message = error_of(text + 'mode = "normal"\n')
    assert "pack[0].mode: normal contradicts switches 5" in message


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("tmax_c = 95\n", "pack[0].tmax_c: 95 is out of range (allowed -40..85)"),
        (
            'generation = "gen4"\n',
            "pack[0].generation: 'gen4' is not allowed (allowed: gen3, gen2)",
        ),
        ("mood = 1\n", "pack[0].mood: unknown field (allowed: id, generation, cells"),
        ("pin = 1234\n", 'pack[0].pin: 1234 must be text in quotes ("1234")'),
        ("vbalance_v = 3.45\n", "vbalance_v 3.45 V cannot be set on gen3 option switches"),
        ("vmin_v = 3.5\n", "thresholds must satisfy vmin_v < vbalance_v < vmax_v"),
        ("[pack.current_sensor]\nloops = 3\n", "pack[0].current_sensor.loops: 3 is not allowed"),
        ("[pack.current_sensor]\ntype_a = 100\n", "pack[0].current_sensor.type_a: 100 is a gen2"),
        ("[pack.limits]\ncvl_margin_v = 5\n", "pack[0].limits.cvl_margin_v: 5 is out of range"),
        (
            "[pack.limits]\ncharge_taper = [[3.5, 1.0], [3.4, 0.0]]\n",
            "pack[0].limits: charge_taper points must be in ascending order",
        ),
    ],
)
def test_bad_fields_give_one_line_naming_them(extra: str, expected: str) -> None:
    assert expected in error_of(cfg(extra))


def test_cells_above_255_names_the_range() -> None:
    assert error_of(BASE.replace("cells = 16", "cells = 300")) == (
        "t.toml: pack[0].cells: 300 is out of range (allowed 2..255)"
    )


def test_missing_thresholds_without_chemistry() -> None:
    text = BASE.replace('chemistry = "LiFePO4"\n', "")
    assert "pack[0].vmin_v: missing; give vmin_v or a chemistry" in error_of(text)


def test_duplicate_pack_ids() -> None:
    assert "pack[1].id: 'p1' is used by another pack" in error_of(BASE + BASE)


def test_not_toml_and_unreadable_files(tmp_path: object) -> None:
    assert "invalid TOML" in error_of("[[pack]")
    with pytest.raises(ConfigError, match="cannot read"):
        load_config("/nonexistent/twin.toml")


# ---- [pack.source] ---------------------------------------------------------------------------


def test_the_default_source_is_the_emulator() -> None:
    (pack,) = parse_config(cfg(), "t.toml").packs
    assert pack.source.kind is SourceKind.EMULATOR
    assert pack.source.frame_format == FrameFormat()
    assert pack.source.assembly.stale_after_s == 10.0


def test_a_serial_source_and_its_decoding_choices() -> None:
    text = cfg(
        """
message_period_s = 0.5
[pack.source]
kind = "serial"
usb_serial = "A10KX3ZB"
temperature_scale = "offset276"
layout = "legacy-clock"
stale_after_s = 20
cell_stale_factor = 4
"""
    )
    source = parse_config(text, "t.toml").packs[0].source
    assert (source.kind, source.port, source.usb_serial) == (SourceKind.SERIAL, "auto", "A10KX3ZB")
    assert source.baudrate == 9600
    assert source.frame_format == FrameFormat(
        TemperatureScale.OFFSET_276, FirmwareLayout.LEGACY_CLOCK
    )
    assembly = source.assembly
    assert (assembly.frame_period_s, assembly.stale_after_s) == (0.5, 20.0)
    assert (assembly.cell_stale_factor, assembly.layout) == (4.0, FirmwareLayout.LEGACY_CLOCK)


def test_a_replay_file_is_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "bms.cap").write_text("# twin-capture 1\n")
    path = tmp_path / "twin.toml"
    path.write_text(cfg('[pack.source]\nkind = "replay"\nfile = "bms.cap"\nspeed = 0\n'))
    source = load_config(path).packs[0].source
    assert source.file == tmp_path / "bms.cap"
    assert source.speed is None  # 0 = as fast as possible


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('kind = "serial"\nfile = "x.cap"', "pack[0].source.file: only for kind = 'replay'"),
        ('port = "/dev/ttyUSB0"', "pack[0].source.port: only for kind = 'serial'"),
        (
            'kind = "serial"\nport = "/dev/ttyUSB0"\nusb_serial = "A1"',
            "pack[0].source.usb_serial: only with port = 'auto'",
        ),
        ('kind = "replay"', "pack[0].source.file: missing"),
        ('kind = "serial"\nuart_tcp_port = 7000', "pack[0].source.uart_tcp_port: only for kind"),
        ("uart_tcp_port = 70000", "pack[0].source.uart_tcp_port: 70000 is out of range"),
        ('uart_tcp_host = "not a host!"', "pack[0].source.uart_tcp_host:"),
        ('kind = "replay"\nfile = "nope.cap"', "pack[0].source.file: 'nope.cap': no such file"),
        ('kind = "usb"', "pack[0].source.kind: 'usb' is not allowed"),
        ('temperature_scale = "kelvin"', "pack[0].source.temperature_scale: 'kelvin'"),
        ("stale_after_s = 0", "pack[0].source.stale_after_s: 0 is out of range"),
    ],
)
def test_bad_source_fields(section: str, expected: str) -> None:
    assert expected in error_of(cfg("[pack.source]\n" + section + "\n"))


def test_the_examples_service_options_parse_when_uncommented() -> None:
    text = example_text()
    for line in (
        "capacity_ah = 280",
        "true_soc_pct = 60",
        'spread = "typical"',
        "annual_kwh = 3500",
        "seed = 0",
        'path = "state.json"',
        "save_interval_s = 30",
        "ctrl_hb_timeout_s = 10",
        "unit_ids = { pack1 = 1 }",
        "inverter_options = { hold_limits_s = 60 }",
    ):
        assert f"# {line}" in text
        text = text.replace(f"# {line}", line, 1)
    config = parse_config(text, "example", Path("/srv/twin"))
    assert config.store.path == Path("/srv/twin/state.json")
    assert config.modbus is not None and config.modbus.pack_unit_ids == (("pack1", 1),)
    world = config.packs[0].source.world
    assert world is not None and world.pack.capacity_ah == 280
    inverter = world.plant.inverter
    assert inverter is not None
    assert inverter.hold_limits_s == 60.0
    assert inverter.cvl_only is False  # an option not given keeps its default


@pytest.mark.parametrize(
    ("modbus", "expected"),
    [
        ("unit_ids = { nope = 3 }", "modbus.unit_ids: 'nope' is not a pack id"),
        ("fleet_unit_id = 1", "modbus.fleet_unit_id: 1 is the unit id of pack1"),
        ("port = 70000", "modbus.port"),
        ("unit_ids = { pack1 = 0 }", "modbus.unit_ids"),
    ],
)
def test_bad_modbus_settings_name_the_field(modbus: str, expected: str) -> None:
    text = example_text().replace("# enabled = true", modbus, 1)  # inside [modbus]
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse_config(text, "t")


def test_the_emulator_options_belong_to_the_emulator() -> None:
    text = example_text().replace('kind = "emulator"', 'kind = "serial"\ncapacity_ah = 100')
    with pytest.raises(ConfigError, match="capacity_ah: only for kind = 'emulator'"):
        parse_config(text, "t")


def test_mqtt_is_off_without_its_section_and_on_with_it() -> None:
    assert parse_config(cfg(), "t").mqtt is None
    assert parse_config(cfg("[mqtt]\nenabled = false\n"), "t").mqtt is None
    mqtt = parse_config(cfg('[mqtt]\nhost = "broker"\nprefix = "site1/bms"\nqos = 2\n'), "t").mqtt
    assert mqtt is not None
    assert (mqtt.host, mqtt.port, mqtt.prefix, mqtt.qos) == ("broker", 1883, "site1/bms", 2)
    assert mqtt.status_topic == "site1/bms/status" and mqtt.base("p1") == "site1/bms/p1"


def test_the_examples_mqtt_section_parses_when_uncommented(tmp_path: Path) -> None:
    text = example_text()
    head = text.index("# [mqtt]")
    section = text[head:].replace("# ", "", 1)
    # Every option as documented, with TLS files that exist.
    for name in ("ca.crt", "twin.crt", "twin.key"):
        (tmp_path / name).write_text("x")
    lines = [line.removeprefix("# ") for line in section.splitlines()]
    section = "\n".join(lines).replace("tls = false", "tls = true")
    config = parse_config(text[:head] + section, "example", tmp_path)
    mqtt = config.mqtt
    assert mqtt is not None and mqtt.tls and mqtt.username == "twin"
    assert mqtt.ca_file == str(tmp_path / "ca.crt")


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ('prefix = "twin/#"', "mqtt.prefix"),
        ('prefix = "/twin"', "mqtt.prefix"),
        ('ha_prefix = ""', "mqtt.ha_prefix"),
        ("qos = 3", "mqtt.qos"),
        ("port = 0", "mqtt.port"),
        ("reconnect_min_s = 10\nreconnect_max_s = 5", "mqtt.reconnect_max_s: 5 is below"),
        ('password = "x"', "mqtt.password: given without a username"),
        ('ca_file = "ca.crt"', "mqtt.ca_file: given, but tls is false"),
        ('tls = true\nca_file = "nope.crt"', "mqtt.ca_file:"),
        ("hots = 1", "mqtt.hots"),
    ],
)
def test_bad_mqtt_settings_name_the_field(mqtt: str, expected: str) -> None:
    assert expected in error_of(cfg("[mqtt]\n" + mqtt + "\n"))


def test_a_pack_cannot_be_called_fleet_with_mqtt() -> None:
    base = BASE.replace('id = "p1"', 'id = "fleet"')
    assert "'fleet': MQTT publishes the fleet aggregate" in error_of(cfg("[mqtt]\n", base))
    assert parse_config(cfg("", base), "t").mqtt is None  # without MQTT the name is free


# ---- holes found by black-box testing: each one line, never accepted ----------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[modbus]\nhost = "999.1.1.1"\n',
            "modbus.host: '999.1.1.1' is not an IP address or a host name",
        ),
        ('[mqtt]\nhost = "bad host!"\n', "mqtt.host: 'bad host!' is not an IP address"),
        (
            "[pack.limits]\ncharge_taper = [[3.4, nan], [3.5, 0.0]]\n",
            "pack[0].limits.charge_taper[0][1]: nan is not a finite number",
        ),
        ("[can]\noptions = { hop_limit = nan }\n", "can.options: hop_limit = nan is not a finite"),
        ("capacity_wh = 1e8\n", "pack[0].capacity_wh: 100000000.0 is out of range"),
        (
            "charge_restart_pct = 5\ndischarge_restart_pct = 20\n",
            "charge_restart_pct 5 must be above discharge_restart_pct 20",
        ),
    ],
)
def test_black_box_holes_are_one_line_errors(extra: str, expected: str) -> None:
    text = BASE.replace("capacity_wh = 5000\n", "") if "capacity_wh" in extra else BASE
    assert expected in error_of(cfg(extra, text))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "broker.lan", "my-host"])
def test_good_hosts_are_accepted(host: str) -> None:
    assert parse_config(cfg(f'[modbus]\nhost = "{host}"\n'), "t").modbus is not None


def test_two_packs_on_one_serial_port_are_refused() -> None:
    serial = '[pack.source]\nkind = "serial"\nport = "/dev/ttyUSB0"\n'
    text = BASE + serial + BASE.replace('"p1"', '"p2"') + serial
    assert "pack[1].source: port '/dev/ttyUSB0' is already the source of pack 'p1'" in error_of(
        text
    )
    auto = '[pack.source]\nkind = "serial"\n'
    assert "port 'auto' without usb_serial" in error_of(
        BASE + auto + BASE.replace('"p1"', '"p2"') + auto
    )
    told_apart = [
        f'[pack.source]\nkind = "serial"\nusb_serial = "{serial_no}"\n' for serial_no in "AB"
    ]
    text = BASE + told_apart[0] + BASE.replace('"p1"', '"p2"') + told_apart[1]
    assert len(parse_config(text, "t").packs) == 2


def test_65_packs_say_at_most_64_in_one_line() -> None:
    text = "".join(BASE.replace('"p1"', f'"p{i}"') for i in range(65))
    assert error_of(text) == "t.toml: pack: 65 given, at most 64 allowed"


@pytest.mark.parametrize("pin", ["0000", "0123"])
def test_a_pin_with_a_leading_zero_is_refused(pin: str) -> None:
    # The Modbus PIN register carries a number: "0123" would unlock with 123, "0000" never.
    message = error_of(cfg(f'pin = "{pin}"\n'))
    assert f"pack[0].pin: '{pin}' starts with 0" in message


def test_the_modbus_connection_limits() -> None:
    config = parse_config(cfg("[modbus]\nmax_connections = 8\nidle_timeout_s = 30\n"), "t")
    assert config.modbus is not None
    assert (config.modbus.max_connections, config.modbus.idle_timeout_s) == (8, 30.0)
    assert "modbus.max_connections: 0 is out of range" in error_of(
        cfg("[modbus]\nmax_connections = 0\n")
    )


def test_each_setting_has_one_default_and_no_copy_line() -> None:
    # The schema takes the core's defaults; the core objects are filled from model_dump().
    import dataclasses

    from twin.config.pack import _BMS_AS_GIVEN
    from twin.config.schema import LimitsModel, PackModel
    from twin.model.limits import LimitSettings
    from twin.model.settings import BmsSettings

    core = LimitSettings()
    assert set(LimitsModel.model_fields) == {f.name for f in dataclasses.fields(LimitSettings)}
    for name, info in LimitsModel.model_fields.items():
        assert info.default == getattr(core, name), name
    bms = {f.name: f.default for f in dataclasses.fields(BmsSettings)}
    for name in _BMS_AS_GIVEN:
        default = PackModel.model_fields[name].default
        assert bms[name] is dataclasses.MISSING or default == bms[name], name
    (pack,) = load_config(None).packs
    assert pack.limits == dataclasses.replace(
        core,
        max_charge_current_a=pack.limits.max_charge_current_a,
        max_discharge_current_a=pack.limits.max_discharge_current_a,
    )


def test_the_served_uart_of_an_emulated_pack(tmp_path: Path) -> None:
    text = cfg('[pack.source]\nuart_pty_file = "uart.path"\nuart_tcp_port = 7001\n')
    (pack,) = parse_config(text, "t.toml", tmp_path).packs
    served = pack.source.served
    assert served.enabled and served.pty and served.pty_file == tmp_path / "uart.path"
    assert (served.tcp_host, served.tcp_port) == ("127.0.0.1", 7001)
    (plain,) = parse_config(cfg(), "t.toml").packs
    assert not plain.source.served.enabled


def test_a_pack_id_with_markup_is_refused() -> None:
    # The id reaches the page, topics and logs: letters, digits, - and _ only.
    text = example_text().replace('id = "pack1"', 'id = "<script>alert(1)</script>"', 1)
    with pytest.raises(ConfigError, match=r"pack\[0\]\.id"):
        parse_config(text, "t")


def test_the_dashboard_is_on_by_default_and_off_with_enabled_false() -> None:
    config = parse_config(example_text(), "t")
    assert config.web is not None
    assert (config.web.host, config.web.port, config.web.update_hz) == ("127.0.0.1", 8080, 2.0)
    section = "[web]"
    off = parse_config(example_text().replace(section, section + "\nenabled = false", 1), "t")
    assert off.web is None
    with pytest.raises(ConfigError, match=r"web\.update_hz"):
        parse_config(example_text().replace(section, section + "\nupdate_hz = 50", 1), "t")
