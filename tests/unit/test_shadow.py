"""PackShadow: bytes in, TwinState out; effective relays, divergence alarm and the watchdog."""

from __future__ import annotations

from tests.factories import lfp_settings
from tests.frames import sample_frame
from twin.model.limits import LimitFlag
from twin.model.status import StatusFlag
from twin.protocol.frame import encode_frame
from twin.protocol.shadow import PackShadow

DAY = 740_000
BOTH = StatusFlag.CHARGE_ALLOWED | StatusFlag.DISCHARGE_ALLOWED


def _shadow() -> PackShadow:
    # The sample frame's thresholds: V-min 2.9, V-balance 3.5, V-max 3.65.
    return PackShadow("pack1", lfp_settings(vbalance_v=3.5, vmax_v=3.65))


def _wire(status: StatusFlag = BOTH, **changes: object) -> bytes:
    return encode_frame(sample_frame(status=status, **changes))


def test_no_state_before_a_frame_and_one_per_chunk_with_frames() -> None:
    shadow = _shadow()
    assert shadow.feed(_wire()[:30], 0.0, DAY) is None
    state = shadow.feed(_wire()[30:], 0.1, DAY)
    assert state is not None and state.sequence == 1 and not state.stale
    assert state.reported_charge is True and state.reported_discharge is True
    assert state.frames_received == 1 and state.pack_id == "pack1"


def test_effective_is_the_and_of_the_bms_and_the_twin() -> None:
    shadow = _shadow()
    state = None
    for n in range(3):
        state = shadow.feed(_wire(StatusFlag.DISCHARGE_ALLOWED), float(n), DAY)
    assert state is not None
    assert state.twin_charge and state.reported_charge is False
    assert not state.effective_charge
    assert state.effective_discharge


def test_a_divergence_longer_than_one_cycle_is_an_alarm() -> None:
    shadow = _shadow()
    states = [shadow.feed(_wire(StatusFlag.DISCHARGE_ALLOWED), float(n), DAY) for n in range(4)]
    flags = [s.divergent for s in states if s is not None]
    # The first disagreeing frame and the one a cycle later are tolerated; then it is an alarm.
    assert flags == [False, False, True, True]
    last = states[-1]
    assert last is not None and last.limits is not None
    assert last.limits.alarms & LimitFlag.BMS_INTERNAL
    agreeing = shadow.feed(_wire(), 4.0, DAY)
    assert agreeing is not None and not agreeing.divergent


def test_the_watchdog_opens_both_relays_and_flags_the_state() -> None:
    shadow = _shadow()
    assert shadow.feed(_wire(), 0.0, DAY) is not None
    assert shadow.tick(5.0, DAY) is None  # within stale_after_s (10 s)
    state = shadow.tick(10.0, DAY)
    assert state is not None and state.stale and state.comm_error
    assert not state.effective_charge and not state.effective_discharge
    assert not state.twin_charge and not state.twin_discharge
    assert state.reported_charge is None
    assert state.logic is not None and state.logic.warnings & StatusFlag.E
    limits = state.limits
    assert limits is not None
    assert limits.charge_current_a == 0.0 and limits.discharge_current_a == 0.0
    assert limits.alarms & LimitFlag.COMMUNICATION
    assert shadow.tick(10.5, DAY) is None  # one stale state per second
    assert shadow.tick(11.0, DAY) is not None
    fresh = shadow.feed(_wire(), 12.0, DAY)
    assert fresh is not None and not fresh.stale


def test_stale_before_any_frame_has_no_logic() -> None:
    state = _shadow().tick(0.0, DAY)
    assert state is not None and state.stale and state.logic is None and state.limits is None
    assert not state.effective_charge


def test_rejected_bytes_are_counted_and_kept_for_the_log() -> None:
    shadow = _shadow()
    state = shadow.feed(b"\x00garbage" + _wire(), 0.0, DAY)
    assert state is not None and state.bytes_rejected > 0
    assert shadow.rejected
