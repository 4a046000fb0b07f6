"""The ``twin`` command line: argument parsing only; the work is in config and app."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from twin import __version__
from twin.config import TwinConfig, example_text, load_config
from twin.errors import ConfigError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twin",
        description="A real-time digital twin of the 123\\SmartBMS battery management system.",
    )
    parser.add_argument("--version", action="version", version=f"twin {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser("run", help="run the twin service (default: an emulated 16S pack)")
    run.add_argument("--config", metavar="FILE", help="configuration file (TOML)")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("file", metavar="FILE")

    config = commands.add_parser("config", help="configuration helpers")
    config.add_argument(
        "--example", action="store_true", help="print a commented example configuration"
    )
    return parser


def _summary(config: TwinConfig) -> str:
    packs = []
    for pack in config.packs:
        s = pack.settings
        what = pack.chemistry.value if pack.chemistry else "custom"
        packs.append(
            f"{pack.pack_id} ({s.generation.value}, {s.cell_count} cells {what}, "
            f"{s.vmin_v:.2f}/{s.vbalance_v:.2f}/{s.vmax_v:.2f} V, {s.mode.value} mode)"
        )
    n = len(config.packs)
    return f"{config.source}: OK, {n} pack{'s' if n != 1 else ''}: " + "; ".join(packs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "check-config":
            print(_summary(load_config(args.file)))
            return EXIT_OK
        if args.command == "config":
            if not args.example:
                _parser().parse_args(["config", "--help"])
            sys.stdout.write(example_text())
            return EXIT_OK
        if args.command == "run":
            config = load_config(args.config)
            print(_summary(config), file=sys.stderr)
            print(
                "twin run: the real-time service is not available yet in this version "
                "(the configuration above is valid).",
                file=sys.stderr,
            )
            return EXIT_FAILURE
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    raise AssertionError(f"unhandled command {args.command!r}")  # argparse requires one
