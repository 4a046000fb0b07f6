r"""The twin of one pack at the receiving end of the wire: bytes in, ``TwinState`` out.

``PackShadow`` is the production path of ``twin run`` in one sans-I/O object (like the decoder,
it is fed bytes and times and never reads a clock):

    UART bytes --StreamDecoder--> frames --FrameAssembler--> BmsInputs --BmsLogic--> TwinState

With a real 123\SmartBMS the twin shadows it: the status bits the BMS reports, the twin's own
relay decision, and their AND ("effective", what an integrator should act on) are all in the
state, and a disagreement that lasts longer than one message cycle is an alarm
(``LimitFlag.BMS_INTERNAL``). The watchdog: no valid frame for ``stale_after_s`` makes the
logic see a communication error (warning E, both relays off, CCL = DCL = 0) and the state
``stale``; exporters flag every value then, never silently keep the last one.
"""

from __future__ import annotations

from dataclasses import dataclass

from twin.model.energy import EnergyCounters
from twin.model.fleet import FleetState, aggregate_fleet
from twin.model.inputs import BmsInputs
from twin.model.limits import InverterLimits, LimitFlag, LimitSettings
from twin.model.logic import BmsLogic, LogicState, PackState
from twin.model.relays import decide_relays_fast
from twin.model.settings import BmsSettings
from twin.model.soc import SocState
from twin.model.status import StatusFlag
from twin.protocol.assembly import AssemblySettings, FrameAssembler, Observation
from twin.protocol.frame import DEFAULT_FORMAT, FrameFormat
from twin.protocol.stream import FrameReceived, Rejected, StreamDecoder

_BMS_INTERNAL = LimitFlag.BMS_INTERNAL


@dataclass(frozen=True, slots=True)
class TwinState:
    """One pack's twin at one moment: the snapshot every exporter publishes."""

    pack_id: str
    now_s: float
    """On the source's timeline (the emulated clock, or the event loop's for a real port)."""
    sequence: int
    """Counts the snapshots of this pack (an exporter can tell a new one from a repeat)."""
    settings: BmsSettings
    observation: Observation
    """The latest frame, the cell table, the key/value channel and the data age."""
    logic: PackState | None
    """The twin's own logic after its last cycle; None before the first frame."""
    reported_charge: bool | None
    """The BMS's own status bit "allowed to charge"; None before a frame or while stale."""
    reported_discharge: bool | None
    divergent: bool
    """Reported and twin relays have disagreed for longer than one message cycle."""
    stale: bool
    """The watchdog fired: no valid frame for ``stale_after_s`` (or none yet)."""
    bytes_rejected: int
    frames_received: int
    reported_soc_pct: int | None = None
    """The SOC the BMS reports (frame byte 40, whole %); None before a frame or while stale.
    The twin's own Coulomb count is ``logic.soc_pct``."""

    @property
    def twin_charge(self) -> bool:
        """The twin's own decision for the charge relay."""
        return self.logic is not None and self.logic.charge_allowed

    @property
    def twin_discharge(self) -> bool:
        """The twin's own decision for the load relay."""
        return self.logic is not None and self.logic.discharge_allowed

    @property
    def effective_charge(self) -> bool:
        """Charging may go on: the twin and the BMS both allow it, and the data is fresh."""
        return not self.stale and self.twin_charge and self.reported_charge is not False

    @property
    def effective_discharge(self) -> bool:
        """Discharging may go on: the twin and the BMS both allow it, and the data is fresh."""
        return not self.stale and self.twin_discharge and self.reported_discharge is not False

    @property
    def warnings(self) -> StatusFlag:
        """The app's warning lights as every exporter shows them.

        E while stale or before the first frame, else the twin's own warnings.
        """
        if self.logic is None:
            return StatusFlag.E
        return self.logic.warnings | StatusFlag.E if self.stale else self.logic.warnings

    @property
    def data_age_s(self) -> float | None:
        """Time since the last valid frame; None before any."""
        return self.observation.frame_age_s

    @property
    def comm_error(self) -> bool:
        """Warning E: the chain reports an error, or the twin's watchdog fired."""
        return self.stale or self.observation.comm_error

    @property
    def limits(self) -> InverterLimits | None:
        """What an inverter is told, with the divergence alarm; None before the first frame."""
        if self.logic is None:
            return None
        limits = self.logic.limits
        if not self.divergent:
            return limits
        return InverterLimits(
            limits.charge_voltage_v,
            limits.charge_current_a,
            limits.discharge_current_a,
            limits.discharge_voltage_v,
            limits.force_charge,
            limits.full_charge,
            limits.alarms | _BMS_INTERNAL,
            limits.warnings,
        )


class PackShadow:
    """Decoder, assembler and the twin's ``BmsLogic`` of one pack; ``feed`` and ``tick`` it."""

    def __init__(
        self,
        pack_id: str,
        settings: BmsSettings,
        limits: LimitSettings | None = None,
        *,
        fmt: FrameFormat = DEFAULT_FORMAT,
        assembly: AssemblySettings | None = None,
        state: LogicState | None = None,
        follow_reported_soc: bool = False,
    ) -> None:
        self.pack_id = pack_id
        self.follow_reported_soc = follow_reported_soc
        """Shadowing a real BMS: the relay restart rules use the SOC it reports, not the twin's
        own count (which drifts from the BMS's by a few tenths and would keep a relay off
        for hours that the BMS has switched on); a disagreement that the frame's whole-percent
        SOC can explain is not a divergence."""
        self.decoder = StreamDecoder(fmt)
        self.assembler = FrameAssembler(
            assembly
            if assembly is not None
            else AssemblySettings(frame_period_s=settings.message_period_s, layout=fmt.layout)
        )
        self.logic = BmsLogic(settings, limits, state)
        self.state: TwinState | None = None
        self.rejected: list[Rejected] = []
        """Rejected runs since the caller last cleared the list (for logs and counters)."""
        self._sequence = 0
        self._pack_state: PackState | None = None
        self._reported: tuple[bool, bool] | None = None
        self._reported_soc: int | None = None
        self._diverging_since_s: float | None = None
        self.divergent = False
        """Reported and twin relays have disagreed for longer than one message cycle."""
        self._stale = True
        self._stale_stepped_s: float | None = None

    @property
    def settings(self) -> BmsSettings:
        """The settings the twin's logic runs with."""
        return self.logic.settings

    def update_settings(self, settings: BmsSettings) -> None:
        """New settings from the next cycle on (a validated remote write)."""
        self.logic.update_settings(settings)

    def memory(self) -> tuple[SocState, EnergyCounters]:
        """What must survive a restart: the SOC state and the energy counters."""
        state = self.logic.state
        return state.soc, state.energy

    def feed(self, data: bytes, now_s: float, local_day: int) -> TwinState | None:
        """Bytes received at ``now_s``; a new state when they completed at least one frame."""
        if not self._decode(data, now_s):
            return None
        self._step(now_s, local_day)
        return self.snapshot(now_s)

    def tick(self, now_s: float, local_day: int) -> TwinState | None:
        """The watchdog at ``now_s``: a new (stale) state once per second while no frame comes."""
        if not self.assembler.comm_lost(now_s):
            return None
        last = self._stale_stepped_s
        if last is not None and now_s - last < 1.0:
            return None
        self._stale_stepped_s = now_s
        self._step(now_s, local_day)
        return self.snapshot(now_s)

    def receive(self, data: bytes | None, now_s: float, local_day: int) -> PackState | None:
        """The closed loop's receiving end: ``feed`` and ``tick`` without the snapshot.

        ``Simulation`` calls it once per message cycle with the cycle's bytes (None when the
        End board sent nothing): the logic runs on a new frame, and on every call while the
        link is lost; the shadowing rule (reported relays, divergence) runs as in
        production. Building the frozen ``TwinState`` (the cell table's snapshot included)
        is left to ``snapshot``, when one is wanted: the loop needs only the logic's state.
        """
        if data is not None and self._decode(data, now_s):
            self._step(now_s, local_day, False)  # a frame just arrived: the link is up
        elif self.assembler.comm_lost(now_s):
            self._step(now_s, local_day, True)
        return self._pack_state

    def _decode(self, data: bytes, now_s: float) -> bool:
        got_frame = False
        for event in self.decoder.feed(data, now_s):
            if isinstance(event, FrameReceived):
                self.assembler.add(event.frame, now_s)
                got_frame = True
            else:
                self.rejected.append(event)
        return got_frame

    def _step(self, now_s: float, local_day: int, stale: bool | None = None) -> None:
        """One cycle of the twin's logic and of the shadowing rule at ``now_s``.

        ``stale``: whether the link is lost, when the caller knows (the closed loop's hot path
        saves asking the assembler again).
        """
        assembler = self.assembler
        if stale is None:
            stale = assembler.comm_lost(now_s)
        inputs = assembler.inputs(now_s)
        latest = None if stale else assembler.latest_frame
        relay_soc = None
        if latest is None:
            reported_soc = None
            reported = None
        else:
            reported_soc = latest.soc_pct
            reported = (latest.allowed_to_charge, latest.allowed_to_discharge)
            if self.follow_reported_soc:
                relay_soc = self._relay_soc(reported_soc, reported, inputs)
        pack_state = self._pack_state
        if inputs is not None:
            pack_state = self._pack_state = self.logic.step(inputs, now_s, local_day, relay_soc)
        if reported is not None and (
            (reported[0], reported[1]) != (False, False)
            if pack_state is None
            else reported[0] != pack_state.charge_allowed
            or reported[1] != pack_state.discharge_allowed
        ):
            since = self._diverging_since_s
            if since is None:
                self._diverging_since_s = since = now_s
            self.divergent = now_s - since > assembler.settings.frame_period_s
        else:
            self._diverging_since_s = None
            self.divergent = False
        self._stale = stale
        self._reported = reported
        self._reported_soc = reported_soc

    def snapshot(self, now_s: float) -> TwinState:
        """The frozen state after the last cycle, its cell table observed at ``now_s``."""
        reported = self._reported
        self._sequence += 1
        state = TwinState(
            pack_id=self.pack_id,
            now_s=now_s,
            sequence=self._sequence,
            settings=self.logic.settings,
            observation=self.assembler.observe(now_s),
            logic=self._pack_state,
            reported_charge=None if reported is None else reported[0],
            reported_discharge=None if reported is None else reported[1],
            divergent=self.divergent,
            stale=self._stale,
            bytes_rejected=self.decoder.bytes_rejected,
            frames_received=self.assembler.frames_received,
            reported_soc_pct=self._reported_soc,
        )
        self.state = state
        return state

    def _relay_soc(
        self, reported_soc: int, reported: tuple[bool, bool], inputs: BmsInputs | None
    ) -> float:
        """The SOC the twin's restart rules use when shadowing a real BMS.

        The BMS's own: the frame's whole percent, or, when the BMS's relays are what the rules
        give for another SOC the report rounds from (a BMS at 9.6 % reports 10 % and keeps its
        load off at a 10 % restart), that one. The twin then decides as the BMS did, and a
        disagreement left over is one of the logic (a cell, a temperature), not of rounding.
        """
        soc_pct = float(reported_soc)
        if inputs is None:
            return soc_pct
        state, settings = self.logic.state, self.logic.settings
        for candidate in (soc_pct, soc_pct - 0.5, soc_pct + 0.499):
            soc = min(100.0, max(0.0, candidate))
            decisions = decide_relays_fast(
                state.charge_allowed, state.discharge_allowed, inputs, soc, settings
            )
            if (decisions.charge.allowed, decisions.discharge.allowed) == reported:
                return soc
        return soc_pct


@dataclass(frozen=True, slots=True)
class FleetView:
    """The fleet aggregate of the packs' newest states, and whether every pack is in it."""

    state: FleetState | None
    """The aggregate of the packs that have a logic state; None before any has."""
    complete: bool
    """Every configured pack is in the aggregate and none is stale."""
    effective_charge: bool
    """Every pack's effective charge relay is on (the packs' relays are wired in series)."""
    effective_discharge: bool
    stale: bool
    """Some pack has no fresh data (its relays count as off)."""


def fleet_view(states: dict[str, TwinState], pack_ids: tuple[str, ...]) -> FleetView:
    """The fleet of ``pack_ids`` from the newest states (a pack without one counts as off)."""
    logic = {pid: s.logic for pid, s in states.items() if s.logic is not None}
    fleet = aggregate_fleet(logic) if logic else None
    every = [states.get(pid) for pid in pack_ids]
    stale = any(s is None or s.stale for s in every)
    return FleetView(
        state=fleet,
        complete=len(logic) == len(pack_ids) and not stale,
        effective_charge=all(s is not None and s.effective_charge for s in every),
        effective_discharge=all(s is not None and s.effective_discharge for s in every),
        stale=stale,
    )
