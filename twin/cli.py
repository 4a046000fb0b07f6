"""The ``twin`` command line: argument parsing only; the work is in config and app."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from twin import __version__
from twin.config import TwinConfig, example_text, load_config
from twin.errors import ConfigError, OutputError, SourceError, StartupError
from twin.model.values import COMPILED
from twin.protocol.frame import FirmwareLayout, FrameFormat, TemperatureScale

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twin",
        description="A real-time digital twin of the 123\\SmartBMS battery management system.",
    )
    build = "compiled core" if COMPILED else "pure Python"
    parser.add_argument("--version", action="version", version=f"twin {__version__} ({build})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the twin service (default: an emulated 16S pack)")
    run.add_argument("--config", metavar="FILE", help="configuration file (TOML)")
    run.add_argument(
        "--speed",
        type=_positive_float,
        default=1.0,
        metavar="N",
        help="run emulated packs N times faster than real time (default 1)",
    )
    run.add_argument("--quiet", action="store_true", help="no live status line")
    run.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines (default: text)"
    )
    run.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="info",
        help="(default: info)",
    )
    run.add_argument(
        "--state", metavar="FILE", help="state file (default: the config's [store] path)"
    )
    run.add_argument(
        "--scenario",
        metavar="FILE",
        help="play a scenario's pack, plant and timed events live, with the configuration's "
        "exporters, and stop at its end (with --speed N: N times faster)",
    )
    run.add_argument(
        "--hold",
        action="store_true",
        help="with --scenario: keep running after its end (the world goes on, no more events)",
    )

    regmap = commands.add_parser("regmap", help="print the Modbus register map (Markdown or CSV)")
    regmap.add_argument(
        "--format", choices=("md", "csv"), default="md", help="output (default: md)"
    )
    regmap.add_argument(
        "--cells",
        type=_positive_int,
        default=16,
        metavar="N",
        help="cells of the pack the SunSpec and per-cell addresses are shown for (default 16)",
    )

    dbc = commands.add_parser("dbc", help="list the messages and signals of a DBC file")
    dbc.add_argument(
        "file", metavar="FILE", nargs="?", help="a DBC file (default: the shipped ones)"
    )

    monitor = commands.add_parser("can-monitor", help="print live CAN frames, decoded")
    monitor.add_argument("--interface", required=True, help="python-can interface (socketcan, ...)")
    monitor.add_argument("--channel", required=True, help="channel (vcan0, a multicast group, ...)")
    monitor.add_argument("--dbc", metavar="FILE", help="decode with this DBC (default: shipped)")
    monitor.add_argument("--count", type=_positive_int, help="stop after N frames")
    monitor.add_argument("--duration", type=_positive_float, metavar="S", help="stop after S s")

    _inverter_parser(commands)

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", metavar="FILE")

    decode = commands.add_parser(
        "decode", help="print the frames of a capture file or raw dump of the UART"
    )
    decode.add_argument("file", metavar="FILE", help="a `twin capture` file or a raw byte dump")
    decode.add_argument(
        "--format", choices=("table", "jsonl"), default="table", help="output (default: table)"
    )
    decode.add_argument(
        "--rejected", action="store_true", help="also list the rejected bytes on stderr"
    )
    _frame_format_options(decode)

    capture = commands.add_parser(
        "capture", help="record the UART bytes of a serial port, with times, to a file"
    )
    capture.add_argument(
        "--port",
        required=True,
        metavar="P",
        help='device path, pyserial URL, or "auto" (the SmartBMSToUSB cable)',
    )
    capture.add_argument("--out", required=True, metavar="FILE", help="capture file to write")
    capture.add_argument("--baudrate", type=int, default=9600, help="default: 9600")
    capture.add_argument("--usb-serial", metavar="S", help="with --port auto: the cable's serial")
    capture.add_argument(
        "--duration", type=_positive_float, metavar="S", help="stop after S seconds"
    )
    capture.add_argument(
        "--frames", type=_positive_int, metavar="N", help="stop after N decoded frames"
    )
    _frame_format_options(capture)

    simulate = commands.add_parser(
        "simulate",
        help="run a scenario (pack, plant, chain, faults) faster than real time",
        description="Run a scenario file in a closed loop through the UART bytes and write "
        "timeseries.csv, relays.csv, summary.txt/json and plot.png into --out.",
    )
    simulate.add_argument("scenario", metavar="SCENARIO", help="scenario file (TOML)")
    simulate.add_argument("--out", required=True, metavar="DIR", help="output directory")
    simulate.add_argument("--no-progress", action="store_true", help="no progress bar")
    simulate.add_argument(
        "--inverter",
        choices=("relays", "limits"),
        help="what the inverter and chargers obey, over the scenario's [inverter] mode "
        "(run a day both ways to compare)",
    )

    config = commands.add_parser("config", help="configuration helpers")
    config.add_argument(
        "--example", action="store_true", help="print a commented example configuration"
    )
    return parser


#: ``twin inverter --profile``: the profiles of ``twin.exporters.can_map.Profile`` (a test keeps
#: them equal; the exporters are not imported to build the parser).
INVERTER_PROFILES = ("pylon", "victron", "sma", "solark")


def _inverter_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    inverter = commands.add_parser(
        "inverter",
        help="a virtual inverter on a CAN bus: obeys the BMS's limits, checks conformance",
        description="Play the inverter side of a profile: read the BMS frames, send the "
        "inverter's heartbeat frames, decide its current from CVL/CCL/DCL/DVL and report it to "
        "a twin's plant (TwinPlantCommand), and check the profile's frames as they arrive. "
        "Prints a live line each second and a summary; exit code 1 when a violation was seen.",
    )
    inverter.add_argument("--profile", choices=INVERTER_PROFILES, default="pylon")
    inverter.add_argument("--interface", default="virtual", help="python-can interface")
    inverter.add_argument("--channel", default="twin", help="channel (vcan0, a multicast group)")
    inverter.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another python-can bus argument (udp_multicast stays on this host: hop_limit 0 "
        "unless given)",
    )
    inverter.add_argument(
        "--current",
        type=float,
        default=0.0,
        metavar="A",
        help="the current the inverter would take: + charges the battery, - discharges it "
        "(default 0: stand-by); the limits cut it down",
    )
    inverter.add_argument(
        "--taper", type=_positive_float, default=100.0, metavar="A_PER_V",
        help="constant-voltage gain: amperes allowed per volt below CVL / above DVL (100)",
    )  # fmt: skip
    inverter.add_argument(
        "--cvl-only",
        choices=("yes", "no"),
        help="CCL = 0 does not stop charging, only CVL does (default: yes for victron)",
    )
    inverter.add_argument(
        "--bms-timeout", type=_positive_float, default=5.0, metavar="S",
        help="no BMS frame this long: the BMS is silent, the inverter stops (default 5)",
    )  # fmt: skip
    inverter.add_argument(
        "--cycle-tolerance", type=float, default=0.5, metavar="F",
        help="a frame is late after its cycle x (1 + F) + 0.25 s (default 0.5)",
    )  # fmt: skip
    inverter.add_argument(
        "--dlc-policy", choices=("profile", "dbc", "8"), default="profile",
        help="the DLCs expected: the twin's [can] dlc_policy (default: profile)",
    )  # fmt: skip
    inverter.add_argument(
        "--no-plant", action="store_true",
        help="do not report the current to a twin's plant (a real BMS on the bus)",
    )  # fmt: skip
    inverter.add_argument(
        "--pack-index", type=int, default=0, metavar="N",
        help="the twin's pack (0-based) whose plant it is (default 0)",
    )  # fmt: skip
    inverter.add_argument(
        "--native-base-id", type=lambda text: int(text, 0), default=0x700, metavar="ID",
        help="the twin's [can] native_base_id (default 0x700)",
    )  # fmt: skip
    inverter.add_argument(
        "--duration", type=_positive_float, metavar="S", help="stop after S s (default: Ctrl-C)"
    )
    inverter.add_argument("--report", metavar="FILE", help="write the summary as JSON here")
    inverter.add_argument("--quiet", action="store_true", help="no live line, the summary only")


def _bus_option(text: str) -> tuple[str, str | int | float | bool]:
    """``KEY=VALUE`` of ``--option``: a number or true/false when it reads as one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--option {text!r}: not KEY=VALUE")
    if value.lower() in ("true", "false"):
        return key, value.lower() == "true"
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _frame_format_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--temperature-scale",
        choices=[s.value for s in TemperatureScale],
        default=TemperatureScale.APP.value,
        help="app: 0.857 x raw - 232 (default, 123electric's software); "
        "offset276: raw - 276 (the protocol PDF)",
    )
    parser.add_argument(
        "--layout",
        choices=[layout.value for layout in FirmwareLayout],
        default=FirmwareLayout.KEY_VALUE.value,
        help="bytes 47/48: key-value (firmware >= 3.3.6, default) or legacy-clock (hh:mm)",
    )


def _frame_format(args: argparse.Namespace) -> FrameFormat:
    return FrameFormat(TemperatureScale(args.temperature_scale), FirmwareLayout(args.layout))


def _summary(config: TwinConfig) -> str:
    packs = []
    for pack in config.packs:
        s = pack.settings
        what = pack.chemistry.value if pack.chemistry else "custom"
        source = pack.source
        where = {"serial": f" {source.port}", "replay": f" {source.file}"}.get(
            source.kind.value, ""
        )
        packs.append(
            f"{pack.pack_id} ({s.generation.value}, {s.cell_count} cells {what}, "
            f"{s.vmin_v:.2f}/{s.vbalance_v:.2f}/{s.vmax_v:.2f} V, {s.mode.value} mode, "
            f"source {source.kind.value}{where})"
        )
    n = len(config.packs)
    services = []
    if config.modbus is not None:
        services.append(f"modbus {config.modbus.host}:{config.modbus.port}")
    if config.can is not None:
        services.append(
            f"can {config.can.interface}:{config.can.channel} ({config.can.profile.value})"
        )
    if config.mqtt is not None:
        mqtt = config.mqtt
        tls = " tls" if mqtt.tls else ""
        services.append(f"mqtt {mqtt.host}:{mqtt.port}{tls} prefix {mqtt.prefix!r}")
    return (
        f"{config.source}: OK, {n} pack{'s' if n != 1 else ''}: "
        + "; ".join(packs)
        + f"; exporters: {', '.join(services) or 'none'}"
    )


def _inverter(args: argparse.Namespace) -> int:
    from twin.commands.inverter import inverter, settings_of
    from twin.errors import BusError

    try:
        settings, link = settings_of(
            profile=args.profile,
            current_a=args.current,
            taper_a_per_v=args.taper,
            cvl_only=None if args.cvl_only is None else args.cvl_only == "yes",
            bms_timeout_s=args.bms_timeout,
            cycle_tolerance=args.cycle_tolerance,
            interface=args.interface,
            channel=args.channel,
            bus_options=tuple(_bus_option(text) for text in args.option),
            dlc_policy=args.dlc_policy,
            plant=not args.no_plant,
            native_base_id=args.native_base_id,
            pack_index=args.pack_index,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    try:
        return inverter(settings, link, args.duration, args.report, quiet=args.quiet)
    except BusError as exc:
        print(f"twin inverter: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OutputError as exc:
        print(f"twin inverter: {exc}", file=sys.stderr)
        return EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            print(_summary(load_config(args.file)))
            return EXIT_OK
        if args.command == "decode":
            from twin.commands import uart

            return uart.decode(
                args.file,
                _frame_format(args),
                jsonl=args.format == "jsonl",
                show_rejected=args.rejected,
            )
        if args.command == "capture":
            from twin.commands import uart

            try:
                return asyncio.run(
                    uart.capture(
                        args.port,
                        args.out,
                        fmt=_frame_format(args),
                        baudrate=args.baudrate,
                        usb_serial=args.usb_serial,
                        duration_s=args.duration,
                        frames=args.frames,
                    )
                )
            except KeyboardInterrupt:
                return EXIT_OK  # Ctrl-C is how a capture normally ends; the file is complete
            except SourceError as exc:
                print(f"twin capture: {exc}", file=sys.stderr)
                return EXIT_FAILURE
        if args.command == "simulate":
            from twin.commands.simulate import simulate

            try:
                return simulate(
                    args.scenario,
                    args.out,
                    progress=not args.no_progress,
                    inverter_mode=args.inverter,
                )
            except OutputError as exc:
                print(f"twin simulate: {exc}", file=sys.stderr)
                return EXIT_FAILURE
        if args.command in ("dbc", "can-monitor"):
            from twin.commands import can as cantool

            try:
                if args.command == "dbc":
                    return cantool.dbc(args.file)
                return cantool.can_monitor(
                    args.interface, args.channel, args.dbc, args.count, args.duration
                )
            except (OSError, ValueError, ImportError) as exc:
                print(f"twin {args.command}: {exc}", file=sys.stderr)
                return EXIT_FAILURE
        if args.command == "inverter":
            return _inverter(args)
        if args.command == "regmap":
            from twin.commands.regmap import render_csv, render_markdown
            from twin.config import load_register_maps

            if args.cells > 255:
                print("twin regmap: --cells is at most 255", file=sys.stderr)
                return EXIT_CONFIG
            maps = load_register_maps()
            render = render_markdown if args.format == "md" else render_csv
            sys.stdout.write(render(maps, args.cells))
            return EXIT_OK
        if args.command == "config":
            if not args.example:
                _parser().parse_args(["config", "--help"])
            sys.stdout.write(example_text())
            return EXIT_OK
        if args.command == "run":
            from twin.app import RunOptions, serve
            from twin.logs import configure_logging

            config = load_config(args.config)
            if args.hold and args.scenario is None:
                raise ConfigError("--hold: only with --scenario")
            if args.scenario is not None:
                from twin.config import live_config, load_scenario

                config = live_config(config, load_scenario(args.scenario), hold=args.hold)
            configure_logging(args.log_format, args.log_level)
            options = RunOptions(
                speed=args.speed,
                quiet=args.quiet,
                state_path=args.state,
                persist=args.scenario is None or args.state is not None,
            )
            try:
                return asyncio.run(serve(config, options))
            except KeyboardInterrupt:  # a second Ctrl-C while stopping
                return EXIT_FAILURE
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"twin run: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse requires one
