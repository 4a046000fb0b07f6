"""``twin inverter``: a virtual inverter and conformance checker on a python-can bus.

The bus and the decisions are ``twin.exporters.inverter_link`` / ``inverter_map``; this module
prints the live line and the summary and writes the JSON report.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

from twin.errors import OutputError
from twin.exporters.can_map import Profile
from twin.exporters.inverter_link import LinkSettings, run_inverter
from twin.exporters.inverter_map import InverterSettings

#: Violations printed in full in the summary (the report file has up to 200).
SHOWN = 20


def settings_of(
    *,
    profile: str,
    current_a: float,
    taper_a_per_v: float,
    cvl_only: bool | None,
    bms_timeout_s: float,
    cycle_tolerance: float,
    interface: str,
    channel: str,
    bus_options: tuple[tuple[str, str | int | float | bool], ...],
    dlc_policy: str,
    plant: bool,
    native_base_id: int,
    pack_index: int,
) -> tuple[InverterSettings, LinkSettings]:
    """The virtual inverter's settings from the command line; ``ValueError`` names a bad one."""
    try:
        chosen = Profile(profile)
    except ValueError:
        names = ", ".join(p.value for p in Profile)
        raise ValueError(f"--profile {profile!r} is not one of {names}") from None
    settings = InverterSettings(
        profile=chosen,
        current_a=current_a,
        taper_a_per_v=taper_a_per_v,
        cvl_only=cvl_only,
        bms_timeout_s=bms_timeout_s,
        cycle_tolerance=cycle_tolerance,
    )
    if dlc_policy not in ("profile", "dbc", "8"):
        raise ValueError(f"--dlc-policy {dlc_policy!r} is not profile, dbc or 8")
    link = LinkSettings(
        interface=interface,
        channel=channel,
        bus_options=bus_options,
        dlc_policy=dlc_policy,
        plant=plant,
        native_base_id=native_base_id,
        pack_index=pack_index,
    )
    if pack_index < 0 or native_base_id < 0 or link.plant_id > 0x7FF:
        raise ValueError(
            f"--native-base-id {native_base_id:#x} --pack-index {pack_index}: the plant "
            f"command id {link.plant_id:#x} is not an 11-bit id"
        )
    return settings, link


def inverter(
    settings: InverterSettings,
    link: LinkSettings,
    duration_s: float | None,
    report_path: str | None,
    quiet: bool = False,
    out: TextIO = sys.stdout,
) -> int:
    """Run until ``duration_s`` or Ctrl-C; exit 0 with no violation, 1 with any."""

    def live(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    try:
        run = run_inverter(settings, link, None if quiet else live, duration_s)
    except KeyboardInterrupt:
        # A Ctrl-C outside the wait for frames (rare): no report to give.
        out.write("twin inverter: stopped\n")
        return 0
    out.write(summary_text(run.report))
    if report_path is not None:
        path = Path(report_path)
        try:
            path.write_text(json.dumps(run.report, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from exc
    return 0 if run.violation_count == 0 else 1


def summary_text(report: dict[str, object]) -> str:
    """The end-of-run summary: frames seen against the profile, the findings, the verdict."""
    lines = [f"profile {report['profile']}: {report['duration_s']} s"]
    frames = report["frames"]
    assert isinstance(frames, dict)
    lines.append("  frame  seen  dlc (expected)  cycle   median / max interval")
    for frame_id, stats in frames.items():
        median = stats["median_interval_s"]
        longest = stats["max_interval_s"]
        timing = "-" if median is None else f"{median:.3f} / {longest:.3f} s"
        dlc = ",".join(str(n) for n in stats["dlc"]) or "-"
        lines.append(
            f"  {frame_id}  {stats['count']:5d}  {dlc:>3} ({stats['expected_dlc']})"
            f"         {stats['cycle_s']:g} s   {timing}"
        )
    counts = report["violation_counts"]
    violations = report["violations"]
    assert isinstance(counts, dict)
    assert isinstance(violations, list)
    total = sum(counts.values())
    lines.append(
        f"inverter: {report['current_a']:+.1f} A ({report['reason']}), "
        f"{report['frames_sent']} frames sent"
    )
    if total == 0:
        lines.append("conformance: no violation")
    else:
        kinds = ", ".join(f"{kind} {n}" for kind, n in counts.items())
        lines.append(f"conformance: {total} violations ({kinds})")
        for v in violations[:SHOWN]:
            frame = f" {v['frame_id']:#05x}" if v["frame_id"] is not None else ""
            lines.append(f"  {v['time_s']:8.2f} s  {v['kind']}{frame}: {v['detail']}")
        if total > SHOWN:
            lines.append(f"  ... {total - SHOWN} more (--report FILE keeps up to 200)")
    return "\n".join(lines) + "\n"
