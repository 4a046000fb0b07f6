"""Assembly over many frames: the cell table, the key/value channel, the comm-loss watchdog."""

from __future__ import annotations

import pytest

from tests.factories import lfp_settings
from tests.frames import frame_stream, sample_frame
from twin.model.logic import BmsLogic
from twin.model.status import StatusFlag
from twin.protocol.assembly import AssemblySettings, FrameAssembler, Status2Flag
from twin.protocol.frame import FirmwareLayout, Frame
from twin.protocol.stream import FrameReceived, StreamDecoder


def cell_frame(index: int, count: int = 4, volts: float = 3.3, **changes: object) -> Frame:
    fields: dict[str, object] = {
        "cell_index": index,
        "cell_count": count,
        "cell_voltage_v": volts,
        "cell_temp_c": 20.0 + index,
        "min_cell_index": 1,
        "max_cell_index": 1,
        "min_temp_index": 1,
        "max_temp_index": 1,
        "raw_key": 0,
        **changes,
    }
    return sample_frame(**fields)


def key_frame(key: int, value: int) -> Frame:
    return sample_frame(raw_key=25 + key, raw_value=value)


def test_the_cell_table_fills_one_cell_per_frame() -> None:
    assembler = FrameAssembler()
    for n, volts in zip(range(1, 4), (3.31, 3.32, 3.33), strict=True):
        assembler.add(cell_frame(n, volts=volts), now_s=float(n))
    seen = assembler.observe(now_s=3.5)
    assert not seen.cells_complete
    assert [c.voltage_v for c in seen.cells] == [3.31, 3.32, 3.33, None]
    assert [c.age_s for c in seen.cells] == [2.5, 1.5, 0.5, None]
    assert [c.stale for c in seen.cells] == [False, False, False, True]
    assembler.add(cell_frame(4, volts=3.34), now_s=4.0)
    seen = assembler.observe(now_s=4.0)
    assert seen.cells_complete
    assert [c.index for c in seen.cells] == [1, 2, 3, 4]
    assert [c.temp_c for c in seen.cells] == [21.0, 22.0, 23.0, 24.0]


def test_a_cell_goes_stale_after_three_rotations() -> None:
    assembler = FrameAssembler(AssemblySettings(frame_period_s=1.0, cell_stale_factor=3.0))
    for n in range(1, 5):
        assembler.add(cell_frame(n), now_s=float(n))
    assert assembler.cell_stale_after_s() == 12.0  # 3 x 4 cells x 1 s
    # Cell 1 is reported at t=1 and then never again (cells 2-4 keep coming).
    t = 5.0
    while t <= 13.0:
        assembler.add(cell_frame(2 + int(t) % 3), now_s=t)
        t += 1.0
    assert not assembler.observe(now_s=13.0).cells[0].stale  # exactly 12 s: still fresh
    seen = assembler.observe(now_s=13.5)
    assert seen.cells[0].stale and seen.cells[0].age_s == 12.5
    assert seen.cells[0].voltage_v == 3.3  # the last value is kept, flagged stale
    assert seen.cells[0].balancing is None  # unknown, not "not balancing"
    assert not any(c.stale for c in seen.cells[1:])
    assert not seen.cells_complete


def test_a_cell_count_change_empties_the_table() -> None:
    assembler = FrameAssembler()
    for n in range(1, 5):
        assembler.add(cell_frame(n), now_s=float(n))
    assembler.add(cell_frame(1, count=5), now_s=5.0)
    seen = assembler.observe(now_s=5.0)
    assert len(seen.cells) == 5
    assert [c.voltage_v is not None for c in seen.cells] == [True, False, False, False, False]


def test_cell_zero_and_comm_error_frames_do_not_touch_the_table() -> None:
    assembler = FrameAssembler()
    assembler.add(cell_frame(0), now_s=1.0)
    assembler.add(cell_frame(2, volts=9.9, status=StatusFlag.E), now_s=2.0)
    assert all(c.voltage_v is None for c in assembler.observe(3.0).cells)


def test_balancing_is_inferred_from_v_balance() -> None:
    assembler = FrameAssembler()
    assembler.add(cell_frame(1, volts=3.55, vbalance_v=3.5), now_s=1.0)
    assembler.add(cell_frame(2, volts=3.45, vbalance_v=3.5), now_s=2.0)
    cells = assembler.observe(2.0).cells
    assert (cells[0].balancing, cells[1].balancing) == (True, False)


KEY_CYCLE = {
    0: 97,  # SoH %
    1: 95,  # charge efficiency %
    2: 0x02,  # V-low 0x0294 x 5 mV = 3.30 V
    3: 0x94,
    4: 0x02,  # V-nominal 0x0280 = 3.20 V
    5: 0x80,
    6: 0x33,  # firmware 3.3
    7: 11,  # .11
    8: 0x01,  # 300 cycles
    9: 0x2C,
    10: 0x00,  # charged 0x001234 = 4660 kWh
    11: 0x12,
    12: 0x34,
    13: 0x00,  # discharged 0x001200 = 4608 kWh
    14: 0x12,
    15: 0x00,
    16: 0x32,  # status 2: early warning, charge relay, load relay
    17: 0x02,  # V-full 0x02A8 = 3.40 V
    18: 0xA8,
}


def test_a_full_key_cycle_gives_every_value() -> None:
    assembler = FrameAssembler()
    for key, value in KEY_CYCLE.items():
        assembler.add(key_frame(key, value), now_s=float(key))
    info = assembler.observe(now_s=19.0).info
    assert info.soh_pct == 97
    assert info.charge_efficiency_pct == 95
    assert info.vlow_v == 3.30
    assert info.vnominal_v == 3.20
    assert info.firmware == "3.3.11"
    assert info.charge_cycles == 300
    assert info.charged_kwh == 0x1234
    assert info.discharged_kwh == 0x1200
    assert info.status2 == (
        Status2Flag.EARLY_WARNING | Status2Flag.CHARGE_RELAY | Status2Flag.LOAD_RELAY
    )
    assert info.vfull_v == 3.40
    assert info.device_clock is None


def test_key_values_expire_after_60_s_and_need_every_part() -> None:
    assembler = FrameAssembler()
    for key, value in KEY_CYCLE.items():
        assembler.add(key_frame(key, value), now_s=float(key))
    # Only the LSB of the charge cycles is refreshed later: the MSB (t=8) expires at 68.
    assembler.add(key_frame(9, 0x2D), now_s=60.0)
    assert assembler.observe(now_s=68.0).info.charge_cycles == 0x012D
    later = assembler.observe(now_s=68.5).info
    assert later.charge_cycles is None
    assert later.soh_pct is None  # t=0, 68.5 s ago
    assert later.vfull_v == 3.40  # t=17-18: still fresh
    assert later.firmware is None  # key 6 at t=6 expired; the patch alone is not a version


def test_firmware_without_patch_and_unavailable_soh() -> None:
    assembler = FrameAssembler()
    assembler.add(key_frame(6, 0x33), now_s=0.0)
    assembler.add(key_frame(0, 255), now_s=1.0)  # 255 = not available (BLE app; Venus drops)
    info = assembler.observe(now_s=2.0).info
    assert info.firmware == "3.3"
    assert info.soh_pct is None


def test_the_legacy_layout_reports_the_device_clock() -> None:
    assembler = FrameAssembler(AssemblySettings(layout=FirmwareLayout.LEGACY_CLOCK))
    assembler.add(sample_frame(raw_key=22, raw_value=32), now_s=0.0)
    info = assembler.observe(now_s=0.0).info
    assert info.device_clock == (22, 32)
    assert info.soh_pct is None


def test_the_watchdog_reports_a_comm_loss() -> None:
    assembler = FrameAssembler(AssemblySettings(stale_after_s=10.0))
    assert assembler.comm_lost(0.0)  # nothing yet: in error until the first frame
    assert assembler.inputs(0.0) is None
    assert assembler.observe(0.0).comm_error
    assembler.add(sample_frame(), now_s=100.0)
    assert not assembler.comm_lost(109.9)
    assert assembler.comm_lost(110.0)
    seen = assembler.observe(110.0)
    assert seen.comm_lost and seen.comm_error and seen.frame_age_s == 10.0
    inputs = assembler.inputs(110.0)
    assert inputs is not None and inputs.comm_error


def test_the_bms_comm_error_bit_is_an_error_too() -> None:
    assembler = FrameAssembler()
    assembler.add(sample_frame(status=StatusFlag.E), now_s=0.0)
    seen = assembler.observe(0.0)
    assert not seen.comm_lost and seen.comm_error
    inputs = assembler.inputs(0.0)
    assert inputs is not None and inputs.comm_error


def test_inputs_carry_the_frame_fields() -> None:
    assembler = FrameAssembler()
    frame = sample_frame(current2_a=None)
    assembler.add(frame, now_s=0.0)
    inputs = assembler.inputs(0.5)
    assert inputs is not None
    assert inputs.pack_voltage_v == frame.pack_voltage_v
    assert (inputs.current1_a, inputs.current2_a) == (12.5, None)
    assert inputs.battery_current_a == 10.5
    assert (inputs.min_cell_voltage_v, inputs.min_cell_index) == (3.31, 7)
    assert (inputs.max_temp_c, inputs.max_temp_index) == (frame.max_temp_c, 9)
    assert (inputs.cell_index, inputs.cell_voltage_v) == (5, 3.325)
    assert not inputs.comm_error


@pytest.mark.parametrize("name", ["frame_period_s", "stale_after_s", "key_freshness_s"])
def test_settings_must_be_positive(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be > 0"):
        AssemblySettings(**{name: 0.0})  # type: ignore[arg-type]


def test_bytes_to_logic_and_a_silent_line_opens_both_relays() -> None:
    """The chain end to end: encoded frames -> decoder -> assembler -> the twin's BmsLogic."""
    decoder = StreamDecoder()
    assembler = FrameAssembler(AssemblySettings(stale_after_s=10.0))
    logic = BmsLogic(lfp_settings())
    state = None
    for n, data in enumerate(frame_stream(20)):
        for event in decoder.feed(data, now_s=float(n)):
            assert isinstance(event, FrameReceived)
            assembler.add(event.frame, now_s=float(n))
        inputs = assembler.inputs(float(n))
        assert inputs is not None
        state = logic.step(inputs, now_s=float(n), local_day=0)
    assert state is not None and state.charge_allowed and state.discharge_allowed
    assert assembler.observe(19.0).cells_complete
    # The line goes quiet: after 10 s the watchdog's E reaches the logic.
    inputs = assembler.inputs(29.0)
    assert inputs is not None
    state = logic.step(inputs, now_s=29.0, local_day=0)
    assert not state.charge_allowed and not state.discharge_allowed
    assert StatusFlag.E in state.status
