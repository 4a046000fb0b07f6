"""``twin inverter``'s bus (python-can): a virtual inverter that listens, decides and answers.

The pure side (``inverter_map``) hears the BMS frames, decides the inverter's current and
checks conformance; this module owns the bus and the clock. Each loop turn drains what the
bus has received (so a turn that ran late never takes queued frames for late ones), looks for
late frames and a silent BMS, decides, and sends once a second the inverter's heartbeat frames
and, to a twin, its current as a ``TwinPlantCommand`` (``inverter_dc_a`` with a timeout, so a
twin whose inverter process dies falls back to its own profile). A changed decision is sent at
once. At the end the plant setpoint is cleared.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import can

from twin.errors import BusError
from twin.exporters.can_map import (
    PLANT_COMMAND_OFFSET,
    CanSettings,
    encode_plant_command,
    resolve_profile,
)
from twin.exporters.canbus import bus_arguments, load_dbc
from twin.exporters.inverter_map import (
    HEARTBEAT_PERIOD_S,
    Conformance,
    Decision,
    InverterSettings,
    decide,
    heartbeat_frames,
)

log = logging.getLogger(__name__)

#: The longest a loop turn waits for a frame (the clock checks run at least this often).
TURN_S = 0.05
#: A receive time this far from the wall clock is not on the wall clock's timeline (some
#: interfaces stamp with a monotonic clock): the frame is timed on arrival instead.
TIMESTAMP_TRUST_S = 5.0


@dataclass(frozen=True, slots=True)
class LinkSettings:
    """The bus the virtual inverter is on, and how it reports to a twin's plant."""

    interface: str = "virtual"
    channel: str = "twin"
    bus_options: tuple[tuple[str, str | int | float | bool], ...] = ()
    dlc_policy: str = "profile"
    """The twin's ``[can] dlc_policy``: which DLCs the profile's frames should have."""
    plant: bool = True
    """Report the inverter's current to the twin's plant (``TwinPlantCommand``)."""
    native_base_id: int = 0x700
    pack_index: int = 0
    """The twin's pack whose plant the inverter is (0-based, as the native frames)."""
    report_timeout_s: float = 5.0
    """The plant setpoint's timeout: the twin's profile takes over this long after the
    inverter's last report."""

    @property
    def plant_id(self) -> int:
        """The ``TwinPlantCommand`` identifier of the pack."""
        return self.native_base_id + 0x10 * self.pack_index + PLANT_COMMAND_OFFSET


@dataclass(frozen=True, slots=True)
class InverterRun:
    """What a run of the virtual inverter saw and did."""

    report: dict[str, object]
    """``Conformance.report()`` with the decision and the frames sent."""
    violation_count: int


def run_inverter(
    settings: InverterSettings,
    link: LinkSettings,
    live: Callable[[str], None] | None = None,
    duration_s: float | None = None,
) -> InverterRun:
    """Play the inverter until ``duration_s`` or Ctrl-C; ``live`` gets a line a second.

    Ctrl-C is taken while the loop waits for frames (where it spends its time): the run ends
    with its report.

    ``BusError`` when the bus cannot be opened.
    """
    can_settings = CanSettings(
        interface=link.interface,
        channel=link.channel,
        profile=settings.profile,
        dlc_policy=link.dlc_policy,
    )
    family = load_dbc("inverter.dbc")
    profile = resolve_profile(can_settings, family, load_dbc("inverter_solark.dbc"))
    twin_db = load_dbc("twin.dbc")
    arguments: dict[str, Any] = bus_arguments(link.interface, dict(link.bus_options))
    try:
        bus = can.Bus(interface=link.interface, channel=link.channel, **arguments)
    except (can.CanError, OSError, ValueError, ImportError) as exc:
        raise BusError(f"cannot open {link.interface}:{link.channel} ({exc})") from exc
    log.info("inverter: %s:%s open, profile %s", link.interface, link.channel, profile.profile)
    start = time.time()
    checker = Conformance(profile, family, settings, start)
    sender = _Sender(bus)
    decision = Decision(0.0, "waiting for the BMS's limits")
    next_beat = start
    next_line = start + 1.0
    deadline = None if duration_s is None else start + duration_s
    try:
        while deadline is None or time.time() < deadline:
            try:
                _drain(bus, checker, first_wait_s=TURN_S)
            except KeyboardInterrupt:
                break  # Ctrl-C ends a run; the report follows
            now = time.time()
            checker.tick(now)
            new = decide(settings, checker.heard)
            changed = new.current_a != decision.current_a
            if new != decision:
                log.info("inverter: %+.1f A (%s)", new.current_a, new.reason)
            decision = new
            if now >= next_beat or (changed and link.plant):
                if now >= next_beat:
                    sender.send_all(
                        heartbeat_frames(
                            settings.profile, family, checker.heard, decision.current_a
                        )
                    )
                    next_beat += HEARTBEAT_PERIOD_S * (int((now - next_beat) // 1.0) + 1)
                if link.plant:
                    data = encode_plant_command(
                        twin_db, "inverter_dc_a", decision.current_a, link.report_timeout_s
                    )
                    sender.send(link.plant_id, data)
            if live is not None and now >= next_line:
                next_line += 1.0 * (int((now - next_line) // 1.0) + 1)
                live(_live_line(now - start, checker, decision))
    finally:
        if link.plant:
            # Hand the plant back to its own profile (the timeout would, later).
            sender.send(link.plant_id, encode_plant_command(twin_db, "inverter_dc_a", None, None))
        bus.shutdown()
    report = checker.report()
    report["duration_s"] = round(time.time() - start, 2)
    report["current_a"] = decision.current_a
    report["reason"] = decision.reason
    report["frames_sent"] = sender.sent
    report["send_errors"] = sender.errors
    heard = checker.heard
    report["heard"] = {
        "cvl_v": heard.cvl_v,
        "ccl_a": heard.ccl_a,
        "dcl_a": heard.dcl_a,
        "dvl_v": heard.dvl_v,
        "voltage_v": heard.voltage_v,
        "current_a": heard.current_a,
        "soc_pct": heard.soc_pct,
        "silent": heard.silent,
    }
    return InverterRun(report, checker.violation_count)


def _drain(bus: can.BusABC, checker: Conformance, first_wait_s: float) -> None:
    """Hand every received frame to the checker (waiting ``first_wait_s`` for the first)."""
    wait = first_wait_s
    while True:
        message = bus.recv(wait)
        if message is None:
            return
        wait = 0.0
        if message.is_error_frame or message.is_remote_frame:
            continue
        arrived = time.time()
        stamp = message.timestamp
        at = stamp if stamp and abs(stamp - arrived) < TIMESTAMP_TRUST_S else arrived
        checker.frame(at, message.arbitration_id, bytes(message.data), message.is_extended_id)


class _Sender:
    """Sends frames, counting them and the failures (a failed send is logged once a run)."""

    def __init__(self, bus: can.BusABC) -> None:
        self.bus = bus
        self.sent = 0
        self.errors = 0

    def send_all(self, frames: list[tuple[int, bytes]]) -> None:
        for frame_id, data in frames:
            self.send(frame_id, data)

    def send(self, frame_id: int, data: bytes) -> None:
        message = can.Message(arbitration_id=frame_id, data=data, is_extended_id=False)
        try:
            self.bus.send(message, timeout=0.05)
        except (can.CanError, OSError) as exc:
            self.errors += 1
            if self.errors == 1:
                log.warning("inverter: send %#05x failed: %s", frame_id, exc)
            return
        self.sent += 1


def _live_line(elapsed_s: float, checker: Conformance, decision: Decision) -> str:
    heard = checker.heard

    def show(value: float | None, unit: str, digits: int = 1) -> str:
        return "-" if value is None else f"{value:.{digits}f} {unit}"

    frames = sum(stats.count for stats in checker.frames.values())
    state = "BMS SILENT" if heard.silent else f"{frames} frames"
    return (
        f"{elapsed_s:7.1f} s  CVL {show(heard.cvl_v, 'V')}  CCL {show(heard.ccl_a, 'A')}  "
        f"DCL {show(heard.dcl_a, 'A')}  DVL {show(heard.dvl_v, 'V')} | "
        f"{show(heard.voltage_v, 'V', 2)}  SOC {show(heard.soc_pct, '%', 0)} | "
        f"inverter {decision.current_a:+.1f} A ({decision.reason}) | {state}, "
        f"{checker.violation_count} violations"
    )
