"""Configuration: TOML text -> validated (pydantic 2), frozen core objects.

The only package that parses configuration files. Every problem becomes a ``ConfigError``
whose message is one line naming the file, the field (``pack[0].cells``), the bad value and
what is allowed. Parse functions take text and never touch the disk; only the ``load_*``
functions read files (as cantools' ``load_file`` reads and hands the text to ``load_string``).

- ``run``: the run configuration (``twin run``); ``example.toml`` next to the package is both
  the commented example (``twin config --example``) and the embedded default;
- ``pack``: one pack's settings (shared by the run configuration and scenarios);
- ``scenario``: scenario files (``twin simulate``);
- ``register_maps``: the Modbus register maps;
- ``schema``: the run configuration's pydantic models; ``messages``: the one-line errors;
  ``objects``: the frozen configuration the twin runs with.
"""

from twin.config.objects import (
    PackConfig,
    SourceConfig,
    SourceKind,
    StoreConfig,
    TwinConfig,
    default_state_path,
)
from twin.config.register_maps import load_register_maps, parse_register_maps
from twin.config.run import example_text, load_config, parse_config
from twin.config.scenario import EventModel, live_config, load_scenario, parse_scenario

__all__ = [
    "EventModel",
    "PackConfig",
    "SourceConfig",
    "SourceKind",
    "StoreConfig",
    "TwinConfig",
    "default_state_path",
    "example_text",
    "live_config",
    "load_config",
    "load_register_maps",
    "load_scenario",
    "parse_config",
    "parse_register_maps",
    "parse_scenario",
]
