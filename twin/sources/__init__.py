"""Byte sources: serial port, emulator, capture replay. Every source yields bytes."""
