"""The work behind ``twin``'s subcommands other than ``run`` (argument parsing is ``twin.cli``).

- ``uart``: ``twin decode`` and ``twin capture`` (frames off a port or a capture file);
- ``simulate``: ``twin simulate`` (a scenario faster than real time: progress, CSV, plots);
- ``regmap``: ``twin regmap`` (the Modbus register maps as Markdown or CSV);
- ``can``: ``twin can-monitor`` and ``twin dbc`` (reaching python-can and cantools only through
  ``twin.exporters.canbus``).

Each is imported when its subcommand runs, so ``twin run`` loads none of them.
"""
