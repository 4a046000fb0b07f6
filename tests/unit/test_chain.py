"""The emulated chain: the End board's frame, key/value channel, faults."""

from __future__ import annotations

import pytest

from twin.emulator.chain import ChainSpec, EmulatedChain, SensorFault
from twin.emulator.pack import Pack, PackSpec, Spread
from twin.emulator.sensor import CurrentReading
from twin.model.limits import LimitSettings
from twin.model.settings import BmsSettings
from twin.model.status import StatusFlag
from twin.protocol.assembly import AssemblySettings, FrameAssembler, Status2Flag
from twin.protocol.frame import FirmwareLayout, FrameFormat, decode_frame

SETTINGS = BmsSettings(cell_count=16, vmin_v=2.9, vbalance_v=3.4, vmax_v=3.7, capacity_wh=14336)
READING = CurrentReading(12.5, 2.5, 10.0)


def _chain(fmt: FrameFormat | None = None, **spec: object) -> EmulatedChain:
    pack = Pack(PackSpec(cell_count=16, spread=Spread.TYPICAL, initial_soc_pct=60.0, seed=2))
    chain_spec = ChainSpec(frame_format=fmt or FrameFormat(), **spec)  # type: ignore[arg-type]
    return EmulatedChain(chain_spec, SETTINGS, LimitSettings(), pack, 60.0)


def _relays(chain: EmulatedChain) -> tuple[bool, bool]:
    return chain.charge_allowed, chain.discharge_allowed


def _run(chain: EmulatedChain, cycles: int, start_s: float = 1.0) -> list[bytes | None]:
    return [chain.cycle(READING, start_s + k, 1, (10, 30)) for k in range(cycles)]


def test_frames_decode_and_agree_with_the_pack_and_the_logic() -> None:
    chain = _chain()
    frames = [decode_frame(b) for b in _run(chain, 3) if b is not None]
    frame = frames[-1]
    pack = chain.pack
    assert frame.cell_count == 16
    assert frame.pack_voltage_v == pytest.approx(pack.pack_voltage_v, abs=16 * 0.02)
    assert frame.min_cell_voltage_v == pytest.approx(pack.voltage_v.min(), abs=0.021)
    assert frame.max_cell_voltage_v == pytest.approx(pack.voltage_v.max(), abs=0.021)
    assert (frame.current1_a, frame.current2_a, frame.battery_current_a) == (12.5, 2.5, 10.0)
    assert chain.state is not None
    assert frame.status == chain.state.status
    assert frame.allowed_to_charge and frame.allowed_to_discharge
    assert frame.soc_pct == round(chain.state.soc_pct)
    assert (frame.vmin_v, frame.vbalance_v, frame.vmax_v) == (2.9, 3.4, 3.7)
    assert frame.capacity_kwh == pytest.approx(14.3)


def test_the_cell_slot_rotates_over_every_cell() -> None:
    chain = _chain()
    cells = [decode_frame(b).cell_index for b in _run(chain, 34) if b is not None]
    assert cells == [*range(1, 17), *range(1, 17), 1, 2]


def test_the_key_value_channel_tells_the_settings_and_firmware() -> None:
    chain = _chain(firmware=(3, 3, 11), soh_pct=97, charge_cycles=300)
    assembler = FrameAssembler(AssemblySettings())
    for k, data in enumerate(_run(chain, 20)):
        assert data is not None
        assembler.add(decode_frame(data), 1.0 + k)
    info = assembler.observe(21.0).info
    assert info.firmware == "3.3.11"
    assert info.soh_pct == 97
    assert info.charge_cycles == 300
    assert info.charge_efficiency_pct == 100
    assert info.vnominal_v == pytest.approx(3.2)
    assert info.vlow_v == pytest.approx(3.0)
    assert info.vfull_v == pytest.approx(3.4)
    assert info.status2 is not None
    assert Status2Flag.CHARGE_RELAY in info.status2 and Status2Flag.LOAD_RELAY in info.status2


def test_the_legacy_layout_sends_the_device_clock() -> None:
    chain = _chain(FrameFormat(layout=FirmwareLayout.LEGACY_CLOCK))
    data = _run(chain, 1)[0]
    assert data is not None
    frame = decode_frame(data, FrameFormat(layout=FirmwareLayout.LEGACY_CLOCK))
    assert (frame.raw_key, frame.raw_value) == (10, 30)


def test_a_broken_link_stops_the_frames_and_opens_both_relays() -> None:
    chain = _chain(end_timeout_cycles=3)
    _run(chain, 5)
    assert _relays(chain) == (True, True)
    chain.break_link(7)
    silent = _run(chain, 3, start_s=10.0)
    assert silent == [None, None, None]
    assert _relays(chain) == (False, False)
    assert chain.state is not None and StatusFlag.E in chain.state.warnings
    chain.repair_link()
    back = _run(chain, 1, start_s=20.0)[0]
    assert back is not None
    assert _relays(chain) == (True, True)
    with pytest.raises(ValueError, match="no link after board 16"):
        chain.break_link(16)


@pytest.mark.parametrize(
    ("fault", "flag", "reported"),
    [(SensorFault.OPEN, StatusFlag.TL, -40.0), (SensorFault.SHORTED, StatusFlag.TH, 85.0)],
)
def test_a_dead_temperature_sensor_opens_both_relays(
    fault: SensorFault, flag: StatusFlag, reported: float
) -> None:
    chain = _chain()
    _run(chain, 2)
    chain.kill_temperature_sensor(5, fault)
    data = _run(chain, 1, start_s=5.0)[0]
    assert data is not None
    frame = decode_frame(data)
    extreme = frame.min_temp_c if fault is SensorFault.OPEN else frame.max_temp_c
    assert extreme == pytest.approx(reported, abs=0.9)
    assert (frame.min_temp_index if fault is SensorFault.OPEN else frame.max_temp_index) == 5
    assert flag in frame.status
    assert not frame.allowed_to_charge and not frame.allowed_to_discharge
