"""``twin simulate``: run a scenario faster than real time and write what it did.

The closed loop itself is pure (``twin.emulator``); this module is its edge: the progress bar,
and the files in ``--out``:

- ``timeseries.csv``: one row per recorded time, the columns of ``twin.emulator.COLUMNS``;
- ``relays.csv``: every relay change of the BMS and of the twin, with the reason;
- ``summary.txt`` / ``summary.json``: the figures (also printed);
- ``plot.png``: pack voltage, true vs BMS vs twin SOC, cells, currents, relays, temperatures
  (needs matplotlib: ``pip install 'twin[plot]'``; without it the rest is still written);
- ``report.html``: the summary, the plot and the relay changes with their reasons in one
  self-contained page (for a report).
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import json
import math
import time
from pathlib import Path
from typing import TextIO

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from twin.config import load_scenario
from twin.emulator import COLUMNS, Scenario, SimResult, Simulation
from twin.emulator.plant import InverterMode
from twin.errors import OutputError

#: Columns written as integers (flags and counts).
_INTEGER_COLUMNS = {
    "bms_charge",
    "bms_load",
    "twin_charge",
    "twin_load",
    "twin_comm_error",
    "balancing_cells",
}


def run_scenario(
    scenario: Scenario, *, show_progress: bool = True, console_file: TextIO | None = None
) -> tuple[SimResult, float]:
    """Run ``scenario``; returns the result and the wall time in seconds."""
    simulation = Simulation(scenario)
    started = time.perf_counter()
    if not show_progress:
        result = simulation.run()
        return result, time.perf_counter() - started
    from rich.console import Console

    console = Console(file=console_file, stderr=console_file is None)
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f} %"),
        TextColumn("{task.fields[simulated]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task(scenario.name, total=scenario.steps, simulated="")
        step_s = scenario.step_s

        def report(done: int, total: int) -> None:
            progress.update(task, completed=done, simulated=f"{done * step_s / 3600:.1f} h")

        result = simulation.run(report, progress_every=max(1, scenario.steps // 200))
    return result, time.perf_counter() - started


def write_outputs(result: SimResult, out: Path, wall_s: float) -> list[Path]:
    """Write the CSVs, the summary and (with matplotlib) the plot; returns the files."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        written = [_write_timeseries(result, out / "timeseries.csv")]
        written.append(_write_changes(result, out / "relays.csv"))
        written += _write_summary(result, out, wall_s)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write: {exc.strerror or exc}") from exc
    plot = out / "plot.png"
    if write_plot(result, plot):
        written.append(plot)
    report = out / "report.html"
    try:
        report.write_text(
            report_html(result, wall_s, plot if plot in written else None), encoding="utf-8"
        )
    except OSError as exc:
        raise OutputError(f"{report}: cannot write: {exc.strerror or exc}") from exc
    written.append(report)
    return written


def report_html(result: SimResult, wall_s: float, plot: Path | None) -> str:
    """One self-contained HTML page for a report: the summary, the plot, the relay changes.

    The plot is embedded (a data URI), so the file can be mailed or attached alone; every
    text is escaped.
    """
    title = html.escape(result.scenario.name)
    image = ""
    if plot is not None:
        data = base64.b64encode(plot.read_bytes()).decode("ascii")
        image = f'<img alt="plot of the run" src="data:image/png;base64,{data}">'
    summary = "\n".join(html.escape(line) for line in summary_text(result, wall_s))
    rows = "\n".join(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>".format(
            html.escape(_clock(change.time_s)),
            html.escape(change.who),
            html.escape(change.relay),
            "on" if change.on else "off",
            html.escape(change.reason or ""),
        )
        for change in result.changes
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>twin simulate: {title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d232b; }}
pre {{ background: #f5f6f8; padding: 1em; overflow-x: auto; }}
img {{ max-width: 100%; }}
table {{ border-collapse: collapse; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .2em .8em; text-align: left; }}
</style>
</head>
<body>
<h1>{title}</h1>
<h2>Summary</h2>
<pre>{summary}</pre>
{image}
<h2>Relay changes</h2>
<table>
<thead><tr><th>time (from the start)</th><th>who</th><th>relay</th><th></th><th>reason</th>
</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _clock(time_s: float) -> str:
    """Seconds from the start as ``[Nd ]hh:mm:ss``."""
    days, rest = divmod(int(time_s), 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def _write_timeseries(result: SimResult, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        integer = [name in _INTEGER_COLUMNS for name in COLUMNS]
        for row in result.data.tolist():
            writer.writerow(
                [
                    ("" if math.isnan(v) else int(v))
                    if is_int
                    else ("" if math.isnan(v) else f"{v:.6g}")
                    for v, is_int in zip(row, integer, strict=True)
                ]
            )
    return path


def _write_changes(result: SimResult, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("time_s", "who", "relay", "on", "reason"))
        for change in result.changes:
            writer.writerow(
                (f"{change.time_s:g}", change.who, change.relay, int(change.on), change.reason)
            )
    return path


def summary_text(result: SimResult, wall_s: float) -> list[str]:
    """The summary lines, with the speed of the run."""
    summary = result.summary
    factor = summary.duration_s / wall_s if wall_s > 0 else math.inf
    return [
        f"scenario        {result.scenario.name}",
        *summary.lines(),
        f"speed           {wall_s:.2f} s wall time, {factor:,.0f}x real time",
    ]


def _write_summary(result: SimResult, out: Path, wall_s: float) -> list[Path]:
    text = out / "summary.txt"
    text.write_text("\n".join(summary_text(result, wall_s)) + "\n", encoding="utf-8")
    figures = dataclasses.asdict(result.summary)
    figures["scenario"] = result.scenario.name
    figures["wall_time_s"] = wall_s
    figures = {
        k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in figures.items()
    }
    js = out / "summary.json"
    js.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return [text, js]


def write_plot(result: SimResult, path: Path) -> bool:
    """Draw the run into ``path``; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    hours = result.column("time_s") / 3600.0
    fig, axes = plt.subplots(6, 1, figsize=(12, 15), sharex=True)
    fig.suptitle(result.scenario.name)
    ax = axes[0]
    ax.plot(hours, result.column("pack_voltage_v"), color="tab:blue")
    ax.set_ylabel("pack V")
    ax = axes[1]
    ax.plot(hours, result.column("true_soc_pct"), label="true", color="black")
    ax.plot(hours, result.column("bms_soc_pct"), label="BMS", color="tab:orange")
    ax.plot(hours, result.column("twin_soc_pct"), label="twin", color="tab:green", ls="--")
    ax.set_ylabel("SOC %")
    ax.legend(loc="best")
    ax = axes[2]
    ax.plot(hours, result.column("cell_min_v"), label="min", color="tab:red")
    ax.plot(hours, result.column("cell_max_v"), label="max", color="tab:purple")
    settings = result.scenario.settings
    for level, name in (
        (settings.vmin_v, "V-min"),
        (settings.vbalance_v, "V-balance"),
        (settings.vmax_v, "V-max"),
    ):
        ax.axhline(level, color="grey", lw=0.6, ls=":")
        ax.annotate(name, (hours[0] if len(hours) else 0, level), fontsize=7, color="grey")
    ax.set_ylabel("cell V")
    twin_ax = ax.twinx()
    twin_ax.plot(hours, result.column("cell_spread_mv"), color="tab:gray", lw=0.7)
    twin_ax.set_ylabel("spread mV")
    ax.legend(loc="upper left")
    ax = axes[3]
    ax.plot(hours, result.column("charger_a"), label="charger", color="tab:orange")
    ax.plot(hours, -result.column("load_a"), label="inverter", color="tab:blue")
    ax.plot(hours, result.column("battery_a"), label="battery (true)", color="black", lw=0.7)
    ax.plot(
        hours, result.column("measured_battery_a"), label="battery (BMS)", color="tab:green", lw=0.5
    )
    ax.set_ylabel("A")
    ax.legend(loc="best", fontsize=8)
    ax = axes[4]
    ax.step(hours, result.column("bms_charge") + 2.2, where="post", label="BMS charge")
    ax.step(hours, result.column("twin_charge") + 1.1, where="post", label="twin charge", ls="--")
    ax.step(hours, result.column("bms_load") - 1.1, where="post", label="BMS load")
    ax.step(hours, result.column("twin_load") - 2.2, where="post", label="twin load", ls="--")
    ax.step(
        hours, result.column("twin_comm_error") * 0.9, where="post", label="twin E", color="red"
    )
    ax.set_yticks([])
    ax.set_ylabel("relays")
    ax.legend(loc="upper left", fontsize=7, ncol=5)
    ax = axes[5]
    ax.plot(hours, result.column("ambient_c"), label="air", color="tab:cyan")
    ax.plot(hours, result.column("cell_temp_max_c"), label="hottest cell", color="tab:orange")
    ax.plot(hours, result.column("board_temp_max_c"), label="hottest board sensor", color="tab:red")
    ax.axhline(settings.tmax_c, color="grey", lw=0.6, ls=":")
    ax.set_ylabel("C")
    ax.set_xlabel("hours")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def simulate(
    scenario_file: str, out: str, *, progress: bool = True, inverter_mode: str | None = None
) -> int:
    """``twin simulate``: load, run, write, print the summary. Returns the exit code.

    ``inverter_mode``: ``relays`` or ``limits`` instead of the scenario's own.
    """
    scenario = load_scenario(scenario_file)
    if inverter_mode is not None:
        scenario = with_inverter_mode(scenario, InverterMode(inverter_mode))
    result, wall_s = run_scenario(scenario, show_progress=progress)
    written = write_outputs(result, Path(out), wall_s)
    print("\n".join(summary_text(result, wall_s)))
    if not any(p.suffix == ".png" for p in written):
        print("plot: skipped (matplotlib is not installed: pip install 'twin[plot]')")
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def with_inverter_mode(scenario: Scenario, mode: InverterMode) -> Scenario:
    """``scenario`` with its inverter in ``mode`` (the rest of the day unchanged)."""
    plant = scenario.plant
    inverter = dataclasses.replace(plant.inverter, mode=mode)
    return dataclasses.replace(scenario, plant=dataclasses.replace(plant, inverter=inverter))
