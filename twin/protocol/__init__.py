r"""Sans-I/O codecs: the 123\SmartBMS UART frame (encode, decode, resynchronise, assemble).

Pure code: no I/O, no clock, no asyncio. Time comes in as an argument; line noise goes out as
``Rejected`` events, never as exceptions.
"""

from twin.protocol.assembly import (
    AssemblySettings,
    BmsInfo,
    CellView,
    FrameAssembler,
    Observation,
    Status2Flag,
)
from twin.protocol.frame import (
    FRAME_LENGTH,
    FirmwareLayout,
    Frame,
    FrameFormat,
    TemperatureScale,
    decode_frame,
    encode_frame,
)
from twin.protocol.stream import Event, FrameReceived, Rejected, RejectReason, StreamDecoder

__all__ = [
    "FRAME_LENGTH",
    "AssemblySettings",
    "BmsInfo",
    "CellView",
    "Event",
    "FirmwareLayout",
    "Frame",
    "FrameAssembler",
    "FrameFormat",
    "FrameReceived",
    "Observation",
    "RejectReason",
    "Rejected",
    "Status2Flag",
    "StreamDecoder",
    "TemperatureScale",
    "decode_frame",
    "encode_frame",
]
