"""Byte sources: serial port, capture replay, in-process pipe. Every source yields ``Chunk``.

Import the concrete sources from their modules (``twin.sources.serial`` is the only module that
imports pyserial, and importing this package does not pull it in).
"""

from twin.sources.base import ByteSource, Chunk

__all__ = ["ByteSource", "Chunk"]
