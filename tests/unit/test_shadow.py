"""PackShadow: bytes in, TwinState out; effective relays, divergence alarm and the watchdog."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from tests.factories import lfp_settings
from tests.frames import sample_frame
from twin.app import build_runtime
from twin.config import PackConfig, parse_config
from twin.model.limits import LimitFlag
from twin.model.logic import LogicState
from twin.model.soc import SocState
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


# ---- shadowing a real BMS: its SOC drives the restart rules ---------------------------------


def _after_empty(follow: bool) -> PackShadow:
    """A twin whose own count says 9.98 % with the load relay off (after an empty pack)."""
    state = LogicState(soc=SocState(soc_pct=9.98), charge_allowed=True, discharge_allowed=False)
    return PackShadow(
        "pack1",
        lfp_settings(vbalance_v=3.5, vmax_v=3.65, discharge_restart_pct=10.0),
        state=state,
        follow_reported_soc=follow,
    )


def test_the_twin_restarts_the_load_with_the_bms_at_the_soc_it_reports() -> None:
    # The BMS, at its SOC of 10 %, switches the load on; the twin's own count says 9.98 %.
    shadow = _after_empty(follow=True)
    states = [
        shadow.feed(_wire(soc_pct=10, battery_current_a=0.0), float(n), DAY) for n in range(5)
    ]
    last = states[-1]
    assert last is not None and last.logic is not None
    assert last.twin_discharge and last.effective_discharge
    assert not any(s is not None and s.divergent for s in states)
    assert last.reported_soc_pct == 10
    assert last.logic.soc_pct == pytest.approx(9.98, abs=0.01)  # its own count, still shown
    assert last.limits is not None and not last.limits.alarms & LimitFlag.BMS_INTERNAL


def test_without_following_the_own_count_keeps_the_load_off_and_diverges() -> None:
    # What the twin did before (and still does for its own emulated chain).
    shadow = _after_empty(follow=False)
    states = [
        shadow.feed(_wire(soc_pct=10, battery_current_a=0.0), float(n), DAY) for n in range(5)
    ]
    last = states[-1]
    assert last is not None and not last.twin_discharge and last.divergent


def test_a_difference_the_whole_percent_soc_explains_is_no_divergence() -> None:
    # The BMS is at 9.6 % (it reports 10 %) and keeps its load off: the twin, deciding with
    # 10 %, would switch it on, but 9.6 % is a SOC the report allows.
    shadow = _after_empty(follow=True)
    only_charge = StatusFlag.CHARGE_ALLOWED
    states = [
        shadow.feed(_wire(only_charge, soc_pct=10, battery_current_a=0.0), float(n), DAY)
        for n in range(5)
    ]
    assert not any(s is not None and s.divergent for s in states)
    assert states[-1] is not None and not states[-1].effective_discharge


def test_a_true_disagreement_is_still_a_divergence_when_following() -> None:
    # A cell below V-min: no SOC makes the load relay allowed, yet the BMS reports it on.
    shadow = _after_empty(follow=True)
    states = [
        shadow.feed(_wire(soc_pct=50, min_cell_voltage_v=2.8, battery_current_a=0.0), n, DAY)
        for n in range(5)
    ]
    assert states[-1] is not None and states[-1].divergent


def test_the_service_follows_the_soc_of_a_real_bms_only() -> None:
    base = '[[pack]]\nid = "p"\ncells = 16\nchemistry = "LiFePO4"\ncapacity_wh = 14336\n'
    serial = parse_config(base + '[pack.source]\nkind = "serial"\nport = "/dev/null"\n', "t")
    emulated = parse_config(base, "t")

    async def follows(config_pack: PackConfig) -> bool:
        runtime = build_runtime(config_pack, None, speed=1.0, now=dt.datetime.now())
        return runtime.shadow.follow_reported_soc

    assert asyncio.run(follows(serial.packs[0])) is True
    assert asyncio.run(follows(emulated.packs[0])) is False
