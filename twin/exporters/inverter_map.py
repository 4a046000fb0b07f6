"""The inverter's side of a profile, for ``twin inverter``: what it hears, decides, checks, sends.

Pure (cantools only decodes and encodes); ``inverter_link`` owns the bus and the clock.

- **What it hears** (``BmsHeard``): the newest limits, measurements, enables and
  communication alarm of the BMS frames of a profile, decoded with its DBC.
- **What it decides** (``decide``): its battery current, as a CAN-connected (DVCC) inverter
  does (docs/testbench.md): it would take ``current_a`` (+ charges the battery, - discharges
  it), charges at most CCL and holds CVL (constant voltage: the current falls as the pack
  nears CVL, ``taper_a_per_v``), discharges at most DCL and stops at DVL, obeys the enables of
  0x35C, and stands still (0 A) while the BMS is silent or before it has spoken. With
  ``cvl_only`` (a Victron GX, ../shared/reference/inverter-can.md section 1.8 item 2) CCL = 0
  does not stop charging; only a CVL at the pack voltage does.
- **What it checks** (``Conformance``), as it listens: the frame set and DLC of the profile,
  each frame's cycle (not faster than the profile allows, not later than its cycle plus the
  tolerance), the value ranges of the DBC, CVL never 0, DVL below CVL, no negative limit, and
  a BMS that falls silent. Each finding is a ``Violation``.
- **What it sends** (``heartbeat_frames``): the inverter's own frames of the profile (section
  1.6): Pylon-family 0x305 (8 zero bytes), Victron GX 0x305 / 0x306 / 0x307 ("...VIC"), SMA
  Sunny Island 0x305 (V, I negative while charging, T, SOC), 0x306 (status, charge voltage
  set-point) and 0x307 (relays).
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from cantools.database.can import Database, Message

from twin.exporters.can_map import Profile, ResolvedProfile

#: The inverter's frames (it sends them; the BMS never does).
HEARTBEAT_PERIOD_S = 1.0
#: Victron GX's 0x307 (section 1.6): the bytes a GX sends, "...VIC".
VICTRON_307 = bytes.fromhex("1234567856494300")
#: SMA Sunny Island's charging procedure "external BMS" and operating state "operating".
SMA_EXTERNAL_BMS = 10
SMA_OPERATING = 1
#: Findings kept in full (counts go on beyond): a broken BMS must not fill the memory.
VIOLATIONS_KEPT = 200
#: Intervals kept per frame for the summary's statistics.
INTERVALS_KEPT = 600
#: Late by this much beyond ``cycle x (1 + tolerance)`` before a frame counts as late: the
#: receive times of two processes on a shared machine jitter by some tens of ms.
LATE_SLACK_S = 0.25
#: Faster than the profile's inhibit time by more than this counts as too fast.
FAST_SLACK_S = 0.02


@dataclass(frozen=True, slots=True)
class InverterSettings:
    """What the virtual inverter wants and how it judges the BMS."""

    profile: Profile = Profile.PYLON
    current_a: float = 0.0
    """The current it would take from the battery's side: + charges, - discharges."""
    taper_a_per_v: float = 100.0
    """Constant-voltage gain: the charge current allowed per volt below CVL (and the
    discharge current per volt above DVL)."""
    cvl_only: bool | None = None
    """CCL = 0 does not stop charging (a Victron GX); None = the profile's inverter."""
    bms_timeout_s: float = 5.0
    """No frame from the BMS this long: the BMS is silent (fail-safe: 0 A)."""
    cycle_tolerance: float = 0.5
    """A frame is late after ``cycle x (1 + tolerance)`` (+ 0.25 s of receive jitter)."""

    def __post_init__(self) -> None:
        if not self.taper_a_per_v > 0:
            raise ValueError("taper_a_per_v must be > 0")
        if not self.bms_timeout_s > 0:
            raise ValueError("bms_timeout_s must be > 0")
        if not self.cycle_tolerance >= 0:
            raise ValueError("cycle_tolerance must be >= 0")

    @property
    def ignores_ccl(self) -> bool:
        """Whether CCL = 0 leaves charging on (only CVL stops it)."""
        if self.cvl_only is not None:
            return self.cvl_only
        return self.profile is Profile.VICTRON


@dataclass(slots=True)
class BmsHeard:
    """The newest of what the BMS said (None: not said yet, or said "not available")."""

    cvl_v: float | None = None
    ccl_a: float | None = None
    dcl_a: float | None = None
    dvl_v: float | None = None
    voltage_v: float | None = None
    current_a: float | None = None
    temp_c: float | None = None
    soc_pct: float | None = None
    charge_enable: bool | None = None
    discharge_enable: bool | None = None
    communication_alarm: bool = False
    """The BMS reports its own data lost (0x359 internal communication, 0x35A general
    alarm, 0x372 modules offline)."""
    last_frame_s: float | None = None
    silent: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """The inverter's battery current (+ charges) and why it is what it is."""

    current_a: float
    reason: str


def decide(settings: InverterSettings, heard: BmsHeard) -> Decision:
    """The current the inverter takes, from what it heard (see the module's docstring)."""
    if heard.silent:
        return Decision(0.0, "BMS silent: fail-safe")
    if heard.cvl_v is None or heard.ccl_a is None or heard.dcl_a is None:
        return Decision(0.0, "waiting for the BMS's limits")
    want = settings.current_a
    if want > 0:
        if heard.ccl_a == 0.0 and not settings.ignores_ccl:
            return Decision(0.0, "CCL 0")
        if heard.charge_enable is False:
            return Decision(0.0, "charge disabled by the BMS")
        allowed, reason = want, "as wanted"
        if not settings.ignores_ccl and heard.ccl_a < allowed:
            allowed, reason = heard.ccl_a, "CCL"
        if heard.voltage_v is not None:
            headroom = max(0.0, heard.cvl_v - heard.voltage_v) * settings.taper_a_per_v
            if headroom < allowed:
                allowed, reason = headroom, "holding CVL"
        return Decision(round(max(0.0, allowed), 1), reason)
    if want < 0:
        if heard.dcl_a == 0.0:
            return Decision(0.0, "DCL 0")
        if heard.discharge_enable is False:
            return Decision(0.0, "discharge disabled by the BMS")
        allowed, reason = -want, "as wanted"
        if heard.dcl_a < allowed:
            allowed, reason = heard.dcl_a, "DCL"
        if heard.voltage_v is not None and heard.dvl_v is not None:
            headroom = max(0.0, heard.voltage_v - heard.dvl_v) * settings.taper_a_per_v
            if headroom < allowed:
                allowed, reason = headroom, "at DVL"
        return Decision(-round(max(0.0, allowed), 1), reason)
    return Decision(0.0, "stand-by")


@dataclass(frozen=True, slots=True)
class Violation:
    """One conformance finding."""

    time_s: float
    """Seconds since the inverter started listening."""
    kind: str
    """``dlc``, ``too-fast``, ``late``, ``range``, ``limits``, ``frame-set``, ``decode``,
    ``silent``."""
    frame_id: int | None
    detail: str


@dataclass(slots=True)
class FrameStats:
    """What was seen of one frame id."""

    count: int = 0
    last_s: float | None = None
    lengths: set[int] = field(default_factory=set)
    intervals_s: deque[float] = field(default_factory=lambda: deque(maxlen=INTERVALS_KEPT))
    late: bool = False
    """Reported late and not seen since (one finding per gap)."""

    def summary(self) -> dict[str, object]:
        """For the report."""
        intervals = list(self.intervals_s)
        return {
            "count": self.count,
            "dlc": sorted(self.lengths),
            "median_interval_s": round(statistics.median(intervals), 3) if intervals else None,
            "min_interval_s": round(min(intervals), 3) if intervals else None,
            "max_interval_s": round(max(intervals), 3) if intervals else None,
        }


class Conformance:
    """Checks the BMS side of a profile as the frames arrive; ``tick`` for what is missing."""

    def __init__(
        self,
        profile: ResolvedProfile,
        family: Database,
        settings: InverterSettings,
        start_s: float,
    ) -> None:
        self.profile = profile
        self.settings = settings
        self.start_s = start_s
        self.heard = BmsHeard()
        self.frames: dict[int, FrameStats] = {}
        self.violations: list[Violation] = []
        self.counts: dict[str, int] = {}
        self.foreign: set[int] = set()
        self.silences = 0
        self._first_bms_s: float | None = None
        # Frames of the family the BMS sends, outside this profile: a wrong frame set.
        self._family_ids = frozenset(
            m.frame_id for m in family.messages if "BMS" in m.senders
        ) - frozenset(profile.messages)

    @property
    def violation_count(self) -> int:
        """Every finding so far (beyond those kept in full)."""
        return sum(self.counts.values())

    def _violate(self, now_s: float, kind: str, frame_id: int | None, detail: str) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if len(self.violations) < VIOLATIONS_KEPT:
            self.violations.append(
                Violation(round(now_s - self.start_s, 3), kind, frame_id, detail)
            )

    # ---- each frame -------------------------------------------------------------------

    def frame(self, now_s: float, frame_id: int, data: bytes, extended: bool = False) -> None:
        """A frame received at ``now_s``."""
        if extended:
            return  # not of an 11-bit profile (another node's traffic)
        message = self.profile.messages.get(frame_id)
        if message is None:
            if frame_id in self._family_ids:
                self._bms_spoke(now_s)
                if frame_id not in self.foreign:
                    self.foreign.add(frame_id)
                    self._violate(
                        now_s,
                        "frame-set",
                        frame_id,
                        f"not a frame of the {self.profile.profile.value} profile",
                    )
            return
        self._bms_spoke(now_s)
        stats = self.frames.setdefault(frame_id, FrameStats())
        stats.count += 1
        stats.lengths.add(len(data))
        stats.late = False
        if stats.last_s is not None:
            interval = now_s - stats.last_s
            stats.intervals_s.append(interval)
            self._check_cycle(now_s, frame_id, interval)
        stats.last_s = now_s
        expected = self.profile.lengths[frame_id]
        if len(data) != expected:
            self._violate(now_s, "dlc", frame_id, f"{len(data)} bytes, the profile has {expected}")
        self._check_values(now_s, frame_id, message, data)

    def _bms_spoke(self, now_s: float) -> None:
        if self._first_bms_s is None or self.heard.silent:
            # Each frame is timed again from here: a silence is one finding, not one per frame.
            self._first_bms_s = now_s
            for stats in self.frames.values():
                stats.last_s = None
                stats.late = False
        self.heard.last_frame_s = now_s
        self.heard.silent = False

    def _check_cycle(self, now_s: float, frame_id: int, interval_s: float) -> None:
        cycle = self.profile.cycles_s[frame_id]
        floor = self.profile.spec.min_period_s
        fastest = floor - FAST_SLACK_S if floor else cycle / 4
        if interval_s < fastest:
            rule = f"the profile's {floor * 1000:.0f} ms inhibit time" if floor else "its cycle"
            self._violate(
                now_s,
                "too-fast",
                frame_id,
                f"{interval_s * 1000:.0f} ms after the last one ({rule}, cycle {cycle:g} s)",
            )

    def _check_values(self, now_s: float, frame_id: int, message: Message, data: bytes) -> None:
        try:
            scaled = message.decode(data, decode_choices=False, scaling=True, allow_truncated=True)
            raw = message.decode(data, decode_choices=False, scaling=False, allow_truncated=True)
        except Exception as exc:  # cantools raises several kinds for a frame it cannot read
            self._violate(now_s, "decode", frame_id, str(exc))
            return
        assert isinstance(scaled, dict)
        assert isinstance(raw, dict)
        values: dict[str, float | None] = {}
        for signal in message.signals:
            scaled_value, raw_value = scaled.get(signal.name), raw.get(signal.name)
            if not isinstance(scaled_value, int | float) or not isinstance(raw_value, int | float):
                continue  # beyond a shortened frame (no choices are decoded)
            value = float(scaled_value)
            invalid = _invalid(signal.length, signal.is_signed)
            if self.profile.spec.sma_invalid and int(raw_value) == invalid:
                values[signal.name] = None  # "invalid": the inverter keeps its default
                continue
            values[signal.name] = value
            lo, hi = signal.minimum, signal.maximum
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                self._violate(
                    now_s, "range", frame_id, f"{signal.name} = {value:g} outside {lo:g}..{hi:g}"
                )
        self._hear(now_s, frame_id, values)

    def _hear(self, now_s: float, frame_id: int, values: Mapping[str, float | None]) -> None:
        heard = self.heard
        if frame_id == 0x351:
            heard.cvl_v = values.get("ChargeVoltageLimit")
            heard.ccl_a = values.get("ChargeCurrentLimit")
            heard.dcl_a = values.get("DischargeCurrentLimit")
            heard.dvl_v = values.get("DischargeVoltageLimit")
            self._check_limits(now_s, heard)
        elif frame_id == 0x355:
            heard.soc_pct = values.get("StateOfCharge")
        elif frame_id == 0x356:
            heard.voltage_v = values.get("BatteryVoltage")
            heard.current_a = values.get("BatteryCurrent")
            heard.temp_c = values.get("BatteryTemperature")
        elif frame_id == 0x359:
            heard.communication_alarm = bool(values.get("WarnInternalCommunication"))
        elif frame_id == 0x35A:
            heard.communication_alarm = values.get("AlarmGeneral") == 1.0
        elif frame_id == 0x35C:
            charge, discharge = values.get("ChargeEnable"), values.get("DischargeEnable")
            heard.charge_enable = None if charge is None else bool(charge)
            heard.discharge_enable = None if discharge is None else bool(discharge)

    def _check_limits(self, now_s: float, heard: BmsHeard) -> None:
        if heard.cvl_v == 0.0:
            self._violate(now_s, "limits", 0x351, "CVL 0 (a Victron GX takes it as over-voltage)")
        for name, value in (("CCL", heard.ccl_a), ("DCL", heard.dcl_a)):
            if value is not None and value < 0:
                self._violate(now_s, "limits", 0x351, f"{name} {value:g} A is negative")
        cvl, dvl = heard.cvl_v, heard.dvl_v
        if cvl and dvl and dvl >= cvl:
            self._violate(now_s, "limits", 0x351, f"DVL {dvl:g} V is not below CVL {cvl:g} V")

    # ---- what is missing --------------------------------------------------------------

    def tick(self, now_s: float) -> None:
        """Look for late frames and a silent BMS at ``now_s``."""
        heard = self.heard
        timeout = self.settings.bms_timeout_s
        last = heard.last_frame_s if heard.last_frame_s is not None else self.start_s
        if not heard.silent and now_s - last > timeout:
            heard.silent = True
            self.silences += 1
            self._retract_late_since(last)
            when = "since the start" if heard.last_frame_s is None else f"for {timeout:g} s"
            self._violate(now_s, "silent", None, f"no frame from the BMS {when}: fail-safe (0 A)")
        if heard.silent or self._first_bms_s is None:
            return  # one finding for a silent BMS, not one per frame
        withheld = self.profile.spec.withheld_when_stale if heard.communication_alarm else ()
        for frame_id, cycle in self.profile.cycles_s.items():
            stats = self.frames.setdefault(frame_id, FrameStats())
            if stats.late or frame_id in withheld:
                continue
            since = stats.last_s if stats.last_s is not None else self._first_bms_s
            allowed = cycle * (1.0 + self.settings.cycle_tolerance) + LATE_SLACK_S
            if now_s - since > allowed:
                stats.late = True
                detail = (
                    f"not received within {allowed:.2f} s of the BMS's first frame"
                    if stats.last_s is None
                    else f"none for {allowed:.2f} s (cycle {cycle:g} s)"
                )
                self._violate(now_s, "late", frame_id, detail)

    def _retract_late_since(self, gap_start_s: float) -> None:
        """Drop the late frames of a gap that turned out to be a silent BMS (one finding)."""
        since = round(gap_start_s - self.start_s, 3)
        kept = [v for v in self.violations if not (v.kind == "late" and v.time_s >= since)]
        dropped = len(self.violations) - len(kept)
        if dropped:
            self.violations = kept
            self.counts["late"] -= dropped
            if not self.counts["late"]:
                del self.counts["late"]

    def report(self) -> dict[str, object]:
        """The findings and the frame statistics, for the summary and ``--report``."""
        return {
            "profile": self.profile.profile.value,
            "frames": {
                f"{frame_id:#05x}": {
                    "expected_dlc": self.profile.lengths[frame_id],
                    "cycle_s": self.profile.cycles_s[frame_id],
                    **self.frames.get(frame_id, FrameStats()).summary(),
                }
                for frame_id in self.profile.messages
            },
            "violation_counts": dict(sorted(self.counts.items())),
            "violations": [
                {"time_s": v.time_s, "kind": v.kind, "frame_id": v.frame_id, "detail": v.detail}
                for v in self.violations
            ],
            "silences": self.silences,
        }


def _invalid(length: int, signed: bool) -> int:
    """The SMA "invalid" raw value of a field (section 1.1): 0x8000 signed, all ones else."""
    return -(1 << (length - 1)) if signed else (1 << length) - 1


def heartbeat_frames(
    profile: Profile, database: Database, heard: BmsHeard, current_a: float
) -> list[tuple[int, bytes]]:
    """The inverter's own frames of ``profile`` (section 1.6), each sent once a second."""
    if profile is Profile.SMA:
        return [
            _encode(
                database,
                "InverterHeartbeat",
                {
                    "InverterBatteryVoltage": heard.voltage_v,
                    # The Sunny Island's view: negative while charging.
                    "InverterBatteryCurrent": -current_a,
                    "InverterBatteryTemperature": heard.temp_c,
                    "InverterStateOfCharge": heard.soc_pct,
                },
            ),
            _encode(
                database,
                "InverterStatus",
                {
                    "InverterStateOfHealth": 100.0,
                    "ChargingProcedure": float(SMA_EXTERNAL_BMS),
                    "OperatingState": float(SMA_OPERATING),
                    "ActiveError": 0.0,
                    "ChargeVoltageSetpoint": heard.cvl_v,
                },
            ),
            _encode(database, "InverterRelays", {"RelayState": 0.0, "InverterData": 0.0}),
        ]
    if profile is Profile.VICTRON:
        return [(0x305, bytes(8)), (0x306, bytes(8)), (0x307, VICTRON_307)]
    return [(0x305, bytes(8))]  # Pylon, Sol-Ark: 8 zero bytes


def _encode(database: Database, name: str, values: Mapping[str, float | None]) -> tuple[int, bytes]:
    """An inverter frame; a value not known (or out of the field) is SMA's "invalid"."""
    message = database.get_message_by_name(name)
    known: dict[str, float] = {}
    invalid: list[str] = []
    for signal in message.signals:
        value = values.get(signal.name)
        lo = signal.minimum if signal.minimum is not None else float("-inf")
        hi = signal.maximum if signal.maximum is not None else float("inf")
        if value is None or not lo <= value <= hi:
            invalid.append(signal.name)
            known[signal.name] = max(lo, 0.0)
        else:
            known[signal.name] = value
    data = message.encode(known, strict=True)
    number = int.from_bytes(data, "little")
    for signal in message.signals:
        if signal.name in invalid:
            mask = (1 << signal.length) - 1
            number &= ~(mask << signal.start)
            number |= (_invalid(signal.length, signal.is_signed) & mask) << signal.start
    return message.frame_id, number.to_bytes(len(data), "little")
