r"""The UART tools behind ``twin decode`` and ``twin capture``.

``decode`` prints the frames of a capture file or a raw dump (a table, or JSON lines) and a
summary on stderr. ``capture`` records a serial port to a capture file (format in
``twin.sources.capture`` and docs/uart.md), showing what it decodes as it goes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from twin.errors import SourceError
from twin.model.status import StatusFlag
from twin.protocol.frame import FirmwareLayout, Frame, FrameFormat
from twin.protocol.stream import Event, FrameReceived, Rejected, StreamDecoder
from twin.sources.capture import CaptureReader, CaptureWriter

#: The status letters of the table, in status-byte order.
STATUS_LETTERS = (
    (StatusFlag.CHARGE_ALLOWED, "C"),
    (StatusFlag.DISCHARGE_ALLOWED, "D"),
    (StatusFlag.E, "E"),
    (StatusFlag.VL, "Vl"),
    (StatusFlag.VH, "Vh"),
    (StatusFlag.TL, "Tl"),
    (StatusFlag.TH, "Th"),
    (StatusFlag.SOC_NOT_CALIBRATED, "nc"),
)


#: What each side-channel key carries (smartbms-uart.md section 2.5), for the table.
KEY_NAMES = (
    "SoH %",
    "charge efficiency %",
    "V-low MSB",
    "V-low LSB",
    "V-nominal MSB",
    "V-nominal LSB",
    "firmware major.minor",
    "firmware patch",
    "cycles MSB",
    "cycles LSB",
    "charged kWh MSB",
    "charged kWh",
    "charged kWh LSB",
    "discharged kWh MSB",
    "discharged kWh",
    "discharged kWh LSB",
    "status byte 2",
    "V-full MSB",
    "V-full LSB",
)


def frame_record(frame: Frame, fmt: FrameFormat, time_s: float | None) -> dict[str, Any]:
    """One frame as a JSON-ready dict; keys carry units, ``null`` = not available."""
    status = frame.status
    record: dict[str, Any] = {
        "time_s": time_s,
        "pack_voltage_v": frame.pack_voltage_v,
        "current1_a": frame.current1_a,
        "current2_a": frame.current2_a,
        "battery_current_a": frame.battery_current_a,
        "min_cell_voltage_v": frame.min_cell_voltage_v,
        "min_cell_index": frame.min_cell_index,
        "max_cell_voltage_v": frame.max_cell_voltage_v,
        "max_cell_index": frame.max_cell_index,
        "min_temp_c": frame.min_temp_c,
        "min_temp_index": frame.min_temp_index,
        "max_temp_c": frame.max_temp_c,
        "max_temp_index": frame.max_temp_index,
        "cell_index": frame.cell_index,
        "cell_count": frame.cell_count,
        "cell_voltage_v": frame.cell_voltage_v,
        "cell_temp_c": frame.cell_temp_c,
        "soc_pct": frame.soc_pct,
        "status": int(status),
        "allowed_to_charge": frame.allowed_to_charge,
        "allowed_to_discharge": frame.allowed_to_discharge,
        "comm_error": frame.comm_error,
        "warning_vl": StatusFlag.VL in status,
        "warning_vh": StatusFlag.VH in status,
        "warning_tl": StatusFlag.TL in status,
        "warning_th": StatusFlag.TH in status,
        "soc_not_calibrated": StatusFlag.SOC_NOT_CALIBRATED in status,
        "energy_in_today_wh": frame.energy_in_today_wh,
        "energy_stored_wh": frame.energy_stored_wh,
        "energy_out_today_wh": frame.energy_out_today_wh,
        "energy_in_total_kwh": frame.energy_in_total_kwh,
        "energy_out_total_kwh": frame.energy_out_total_kwh,
        "capacity_kwh": frame.capacity_kwh,
        "vmin_v": frame.vmin_v,
        "vmax_v": frame.vmax_v,
        "vbalance_v": frame.vbalance_v,
    }
    if fmt.layout is FirmwareLayout.KEY_VALUE:
        record["key"] = frame.key
        record["value"] = frame.raw_value if frame.key is not None else None
    else:
        record["device_clock"] = f"{frame.raw_key:02d}:{frame.raw_value:02d}"
    return record


def _signed(value: float | None) -> str:
    return "X" if value is None else f"{value:+.3f}"


def _temp(value_c: float) -> str:
    return f"{value_c:.1f}" if math.isfinite(value_c) else "?"


TABLE_HEADER = (
    f"{'time_s':>10} {'pack_V':>8} {'I1_A':>9} {'I2_A':>9} {'I_A':>9} {'SOC':>4} "
    f"{'min_V (#)':>11} {'max_V (#)':>11} {'Tmin (#)':>10} {'Tmax (#)':>10} "
    f"{'cell':>7} {'cell_V':>6} {'cell_T':>6}  {'status':<14} extra"
)


def frame_row(frame: Frame, fmt: FrameFormat, time_s: float | None) -> str:
    """One frame as a row of the table."""
    letters = "".join(letter for flag, letter in STATUS_LETTERS if flag in frame.status) or "-"
    if fmt.layout is FirmwareLayout.KEY_VALUE:
        key = frame.key
        extra = (
            "-"
            if key is None
            else f"key {key} {KEY_NAMES[key]} = {frame.raw_value} (0x{frame.raw_value:02X})"
        )
    else:
        extra = f"clock {frame.raw_key:02d}:{frame.raw_value:02d}"
    when = "-" if time_s is None else f"{time_s:.3f}"
    return (
        f"{when:>10} {frame.pack_voltage_v:8.3f} {_signed(frame.current1_a):>9} "
        f"{_signed(frame.current2_a):>9} {_signed(frame.battery_current_a):>9} "
        f"{frame.soc_pct:4d} "
        f"{frame.min_cell_voltage_v:6.3f} ({frame.min_cell_index:>2}) "
        f"{frame.max_cell_voltage_v:6.3f} ({frame.max_cell_index:>2}) "
        f"{_temp(frame.min_temp_c):>5} ({frame.min_temp_index:>2}) "
        f"{_temp(frame.max_temp_c):>5} ({frame.max_temp_index:>2}) "
        f"{frame.cell_index:>3}/{frame.cell_count:<3} {frame.cell_voltage_v:6.3f} "
        f"{_temp(frame.cell_temp_c):>6}  {letters:<14} {extra}"
    )


def decode(
    path: str | Path,
    fmt: FrameFormat,
    *,
    jsonl: bool,
    show_rejected: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Print the frames of ``path``; the summary goes to ``err``. Returns the exit code."""
    decoder = StreamDecoder(fmt)
    try:
        reader = CaptureReader(path)
        if not jsonl:
            out.write(TABLE_HEADER + "\n")
        for chunk in reader:
            for event in decoder.feed(chunk.data, chunk.time_s):
                _print_event(event, fmt, jsonl, show_rejected, out, err)
        for event in decoder.end():
            _print_event(event, fmt, jsonl, show_rejected, out, err)
        out.flush()
    except SourceError as exc:
        err.write(f"twin decode: {exc}\n")
        return 1
    except BrokenPipeError:
        # `twin decode f | head`: the reader left. Point stdout at /dev/null so that the
        # interpreter's final flush does not complain, and stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    by_reason = ", ".join(
        f"{reason.value} {count}" for reason, count in decoder.rejected_by_reason.items()
    )
    err.write(
        f"twin decode: {decoder.frames_decoded} frames decoded, "
        f"{decoder.bytes_rejected} bytes rejected" + (f" ({by_reason})" if by_reason else "") + "\n"
    )
    if reader.bad_lines:
        err.write(
            f"twin decode: {len(reader.bad_lines)} unreadable capture lines skipped "
            f"({'; '.join(reader.bad_lines[:3])})\n"
        )
    return 0


def _print_event(
    event: Event, fmt: FrameFormat, jsonl: bool, show_rejected: bool, out: TextIO, err: TextIO
) -> None:
    if isinstance(event, FrameReceived):
        if jsonl:
            record = frame_record(event.frame, fmt, event.time_s)
            out.write(json.dumps(record, allow_nan=False) + "\n")
        else:
            out.write(frame_row(event.frame, fmt, event.time_s) + "\n")
    elif show_rejected:
        err.write(_rejected_line(event))


def _rejected_line(event: Rejected) -> str:
    when = "" if event.time_s is None else f" at {event.time_s:.3f} s"
    detail = f": {event.detail}" if event.detail else ""
    return f"rejected {event.byte_count} bytes{when}: {event.reason.value}{detail}\n"


async def capture(
    port: str,
    out_path: str | Path,
    *,
    fmt: FrameFormat,
    baudrate: int = 9600,
    usb_serial: str | None = None,
    duration_s: float | None = None,
    frames: int | None = None,
    err: TextIO = sys.stderr,
) -> int:
    """Record ``port`` to ``out_path`` until Ctrl-C, ``duration_s`` or ``frames`` frames."""
    from twin.sources.serial import SerialSource  # pyserial only when capturing

    source = SerialSource(port, baudrate=baudrate, usb_serial=usb_serial)
    decoder = StreamDecoder(fmt)
    with CaptureWriter(out_path, port=port, baudrate=baudrate) as writer:
        err.write(f"twin capture: recording {port} to {out_path} (Ctrl-C stops)\n")
        try:
            async with asyncio.timeout(duration_s):
                async for chunk in source.chunks():
                    writer.write(chunk)
                    decoder.feed(chunk.data, chunk.time_s)
                    if err.isatty():
                        err.write(
                            f"\r{writer.bytes_written} bytes, {decoder.frames_decoded} frames, "
                            f"{decoder.bytes_rejected} bytes rejected "
                        )
                    if frames is not None and decoder.frames_decoded >= frames:
                        break
        except TimeoutError:
            pass  # --duration reached
        finally:
            if err.isatty():
                err.write("\n")
            err.write(
                f"twin capture: {writer.bytes_written} bytes in {writer.chunks_written} reads "
                f"written to {out_path}; {decoder.frames_decoded} frames decoded, "
                f"{decoder.bytes_rejected} bytes rejected\n"
            )
    return 0
