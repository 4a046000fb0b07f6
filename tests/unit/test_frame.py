"""The frame codec: golden frames of smartbms-uart.md 1.2, scalings, round trips, errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.frames import GOLDEN, GOLDEN_A, GOLDEN_C, GOLDEN_LFP, sample_frame
from twin.model.status import StatusFlag
from twin.protocol.frame import (
    FRAME_LENGTH,
    SIGN_ABSENT,
    FirmwareLayout,
    Frame,
    FrameFormat,
    TemperatureScale,
    checksum,
    decode_frame,
    encode_frame,
    implausibility,
)

DOC = FrameFormat(temperature_scale=TemperatureScale.OFFSET_276)
LEGACY = FrameFormat(layout=FirmwareLayout.LEGACY_CLOCK)


@pytest.mark.parametrize(("name", "expected"), [("C", 0x69), ("A", 0x21), ("LFP", 0x9C)])
def test_golden_checksums(name: str, expected: int) -> None:
    data = GOLDEN[name]
    assert len(data) == FRAME_LENGTH
    assert checksum(data) == expected == data[57]


def test_golden_lfp_decodes_to_the_listed_values() -> None:
    f = decode_frame(GOLDEN_LFP)
    assert f.pack_voltage_v == 53.20
    assert (f.current1_a, f.current2_a, f.battery_current_a) == (12.5, 2.0, 10.5)
    assert (f.min_cell_voltage_v, f.min_cell_index) == (3.310, 7)
    assert (f.max_cell_voltage_v, f.max_cell_index) == (3.340, 12)
    assert (f.min_temp_index, f.max_temp_index) == (3, 9)
    assert (f.cell_index, f.cell_count, f.cell_voltage_v) == (5, 16, 3.325)
    assert f.status == StatusFlag.CHARGE_ALLOWED | StatusFlag.DISCHARGE_ALLOWED
    assert f.allowed_to_charge and f.allowed_to_discharge and not f.comm_error
    assert (f.energy_in_today_wh, f.energy_stored_wh, f.energy_out_today_wh) == (1234, 9000, 850)
    assert f.soc_pct == 63
    assert (f.energy_in_total_kwh, f.energy_out_total_kwh) == (1520, 1490)
    assert (f.raw_key, f.key, f.raw_value) == (0x1F, 6, 0x33)  # key 6: firmware 3.3
    assert (f.capacity_kwh, f.vmin_v, f.vmax_v, f.vbalance_v) == (10.0, 2.90, 3.65, 3.50)
    # "18/22/20 C with the [DOC] formula and 20/23/22 C with the [V] formula"
    assert (round(f.min_temp_c), round(f.max_temp_c), round(f.cell_temp_c)) == (20, 23, 22)
    doc = decode_frame(GOLDEN_LFP, DOC)
    assert (doc.min_temp_c, doc.max_temp_c, doc.cell_temp_c) == (18.0, 22.0, 20.0)


def test_golden_a_is_16_cells_cell_1_and_soh_98() -> None:
    f = decode_frame(GOLDEN_A)
    assert (f.cell_count, f.cell_index) == (16, 1)
    assert (f.key, f.raw_value) == (0, 98)
    assert f.current2_a is None  # sign byte "X": sensor 2 absent
    assert (f.current1_a, f.battery_current_a) == (0.0, 8.0)
    assert f.pack_voltage_v == 335.355
    assert (f.energy_stored_wh, f.soc_pct, f.capacity_kwh) == (4000, 75, 16.0)


def test_golden_c_is_the_vendor_example_in_the_legacy_layout() -> None:
    f = decode_frame(GOLDEN_C, LEGACY)
    assert f.pack_voltage_v == 335.355  # 0x0105FF x 5 mV
    assert (f.current1_a, f.current2_a, f.battery_current_a) == (32.0, 32.0, 32.0)  # 0x0100
    assert f.energy_stored_wh == 61_985  # 0x00F221
    assert f.soc_pct == 50
    assert (f.energy_in_total_kwh, f.energy_out_total_kwh) == (6_553_600, 6_553_600)
    assert (f.raw_key, f.raw_value) == (22, 32)  # device clock 22:32
    assert f.key is None  # below 25: never a key
    assert f.capacity_kwh == 16.0
    assert decode_frame(GOLDEN_C, DOC).min_temp_c == 0.0  # 0x0114 = 0 C in the PDF
    assert decode_frame(GOLDEN_C, DOC).max_temp_c == 20.0  # 0x0128 = 20 C


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("C", LEGACY),
        ("C", FrameFormat()),
        ("A", FrameFormat()),
        ("A", DOC),
        ("LFP", FrameFormat()),
        ("LFP", DOC),
    ],
)
def test_golden_frames_re_encode_to_the_same_bytes(name: str, fmt: FrameFormat) -> None:
    data = GOLDEN[name]
    assert encode_frame(decode_frame(data, fmt), fmt) == data


@pytest.mark.parametrize(
    ("raw", "app_c", "doc_c"),
    [(276, 4.532, 0.0), (294, 19.958, 18.0), (296, 21.672, 20.0), (298, 23.386, 22.0)],
)
def test_both_temperature_formulas(raw: int, app_c: float, doc_c: float) -> None:
    data = bytearray(encode_frame(sample_frame()))
    data[18:20] = raw.to_bytes(2, "big")
    data[57] = checksum(data)
    assert decode_frame(data).min_temp_c == app_c
    assert decode_frame(data, DOC).min_temp_c == doc_c


def test_temperature_encoding_follows_the_scale() -> None:
    # "20 C -> 294 = 0x0126" with the app formula; T + 276 with the PDF's.
    assert encode_frame(sample_frame(min_temp_c=20.0))[18:20] == bytes((0x01, 0x26))
    assert encode_frame(sample_frame(min_temp_c=20.0), DOC)[18:20] == (296).to_bytes(2, "big")
    cold = encode_frame(sample_frame(min_temp_c=-40.0))
    assert decode_frame(cold).min_temp_c == pytest.approx(-40.0, abs=0.86)


def test_currents_are_sign_magnitude() -> None:
    data = encode_frame(sample_frame(current1_a=-3.5, current2_a=None, battery_current_a=-0.125))
    assert data[3:6] == b"-\x00\x1c"
    assert data[6:9] == b"X\x00\x00"
    assert data[9:12] == b"-\x00\x01"
    f = decode_frame(data)
    assert (f.current1_a, f.current2_a, f.battery_current_a) == (-3.5, None, -0.125)


def test_minus_zero_keeps_its_sign_byte() -> None:
    data = bytearray(encode_frame(sample_frame(battery_current_a=0.0)))
    data[9] = ord("-")
    data[57] = checksum(data)
    frame = decode_frame(data)
    assert frame.battery_current_a == 0.0 and math.copysign(1, frame.battery_current_a) < 0
    assert encode_frame(frame) == bytes(data)


def test_encoding_rounds_to_the_wire_resolution() -> None:
    f = decode_frame(encode_frame(sample_frame(pack_voltage_v=53.2012, current1_a=1.06)))
    assert f.pack_voltage_v == 53.2
    assert f.current1_a == 1.0  # 0.125 A steps


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"pack_voltage_v": -1.0}, "pack_voltage_v: -1.0 does not fit the frame"),
        ({"current1_a": 9000.0}, "current1_a: 9000.0 does not fit the frame (allowed 0..8191.88)"),
        ({"cell_count": 256}, "cell_count: 256 does not fit the frame (allowed 0..255)"),
        ({"soc_pct": -1}, "soc_pct: -1 does not fit"),
        ({"min_temp_c": -300.0}, "min_temp_c: -300.0 C is outside"),
        ({"cell_voltage_v": math.nan}, "cell_voltage_v: nan is not a finite number"),
        ({"energy_stored_wh": 1 << 24}, "energy_stored_wh: 16777216 does not fit"),
    ],
)
def test_encoding_refuses_what_does_not_fit(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        encode_frame(sample_frame(**changes))


@pytest.mark.parametrize(
    ("offset", "value", "reason"),
    [
        (3, 0x20, "sign byte of I1 is 0x20"),
        (9, 0x00, "sign byte of I-sum is 0x00"),
        (24, 17, "rotating cell number 17 is above the cell count 16"),
        (14, 40, "lowest-voltage cell number 40"),
        (23, 200, "highest-temperature cell number 200"),
        (40, 101, "SOC 101 % is above 100"),
        (47, 44, "key byte 44 is above 43"),
    ],
)
def test_implausible_fields_are_named(offset: int, value: int, reason: str) -> None:
    data = bytearray(encode_frame(sample_frame()))
    data[offset] = value
    data[57] = checksum(data)
    assert reason in implausibility(data)
    with pytest.raises(ValueError, match="implausible frame: " + reason):
        decode_frame(data)


def test_legacy_layout_checks_the_clock() -> None:
    data = bytearray(encode_frame(sample_frame(raw_key=23, raw_value=59)))
    assert implausibility(data, LEGACY) == ""
    data[48] = 60
    data[57] = checksum(data)
    assert "device clock 23:60" in implausibility(data, LEGACY)


def test_decode_frame_refuses_wrong_length_and_bad_checksum() -> None:
    with pytest.raises(ValueError, match="a frame is 58 bytes, got 57"):
        decode_frame(GOLDEN_LFP[:57])
    bad = GOLDEN_LFP[:57] + bytes((GOLDEN_LFP[57] ^ 1,))
    with pytest.raises(ValueError, match="bad checksum: byte 57 is 0x9D, the sum gives 0x9C"):
        decode_frame(bad)


# ---- round trips -----------------------------------------------------------------------------

FORMATS = st.sampled_from(
    [
        FrameFormat(),
        DOC,
        LEGACY,
        FrameFormat(TemperatureScale.OFFSET_276, FirmwareLayout.LEGACY_CLOCK),
    ]
)


@st.composite
def plausible_bytes(draw: st.DrawFn, fmt: FrameFormat) -> bytes:
    """Any 58 bytes that decode: random fields, then the plausibility rules applied."""
    data = bytearray(draw(st.binary(min_size=57, max_size=57)))
    for offset in (3, 6, 9):
        data[offset] = draw(st.sampled_from(b"+-X"))
        if data[offset] == SIGN_ABSENT:
            data[offset + 1 : offset + 3] = b"\0\0"
    count = data[25]
    for offset in (14, 17, 20, 23, 24):
        data[offset] = draw(st.integers(0, count))
    data[40] = draw(st.integers(0, 100))
    if fmt.layout is FirmwareLayout.KEY_VALUE:
        data[47] = draw(st.integers(0, 43))
    else:
        data[47], data[48] = draw(st.integers(0, 23)), draw(st.integers(0, 59))
    data.append(checksum(data))
    return bytes(data)


@given(st.data(), FORMATS)
def test_decode_then_encode_gives_the_same_bytes(data: st.DataObject, fmt: FrameFormat) -> None:
    raw = data.draw(plausible_bytes(fmt))
    frame = decode_frame(raw, fmt)
    assert encode_frame(frame, fmt) == raw
    assert decode_frame(encode_frame(frame, fmt), fmt) == frame


@given(st.data(), FORMATS)
def test_decode_of_encode_is_exact(data: st.DataObject, fmt: FrameFormat) -> None:
    frame = decode_frame(data.draw(plausible_bytes(fmt)), fmt)
    # The frame as a producer would build it: same values, freshly constructed.
    rebuilt = Frame(**{name: getattr(frame, name) for name in Frame.FIELDS})
    assert decode_frame(encode_frame(rebuilt, fmt), fmt) == rebuilt


volts = st.floats(0.0, 327.0, allow_nan=False)
amps = st.none() | st.floats(-8191.0, 8191.0, allow_nan=False)
temps = st.floats(-40.0, 100.0, allow_nan=False)


@given(
    pack=st.floats(0.0, 80_000.0),
    i1=amps,
    i2=amps,
    cell_v=volts,
    cell_t=temps,
    fmt=FORMATS,
)
def test_physical_values_survive_within_half_a_step(
    pack: float, i1: float | None, i2: float | None, cell_v: float, cell_t: float, fmt: FrameFormat
) -> None:
    frame = sample_frame(
        pack_voltage_v=pack, current1_a=i1, current2_a=i2, cell_voltage_v=cell_v, cell_temp_c=cell_t
    )
    if fmt.layout is FirmwareLayout.LEGACY_CLOCK:
        frame = frame.replace(raw_key=12, raw_value=30)
    back = decode_frame(encode_frame(frame, fmt), fmt)
    assert abs(back.pack_voltage_v - pack) <= 0.0025 + 1e-9
    assert abs(back.cell_voltage_v - cell_v) <= 0.0025 + 1e-9
    for sent, got in ((i1, back.current1_a), (i2, back.current2_a)):
        assert (got is None) == (sent is None)
        if sent is not None and got is not None:
            assert abs(got - sent) <= 0.0625 + 1e-9
    step = 0.857 if fmt.temperature_scale is TemperatureScale.APP else 1.0
    assert abs(back.cell_temp_c - cell_t) <= step / 2 + 1e-9
