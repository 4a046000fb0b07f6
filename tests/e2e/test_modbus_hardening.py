"""The Modbus server against clients that misbehave, over raw sockets to ``twin run``.

Each case was a hole in pymodbus 3.16's server as the twin used it (black-box testing): a
masked write past the PIN, a bad header that wedged the connection, pipelined requests lost,
idle sockets that used up the process's descriptors, a port in use retried for ever.
"""

from __future__ import annotations

import errno
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.modbus_raw import RawModbus, exception_of
from tests.e2e.service import TwinProcess, free_port, run_twin, wait_until, write_config

pytestmark = pytest.mark.slow

PACK = 1


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TwinProcess, int, Path]]:
    directory = tmp_path_factory.mktemp("hardening")
    port = free_port()
    # As on many hosts: 1,024 descriptors (the 2,000 idle connections below used them up).
    with TwinProcess(write_config(directory, port=port), nofile=1024) as process:
        process.wait_for_message("modbus: listening")
        wait_until(lambda: _read(port, 201, 1) != [0xFFFF], what="the first frame")
        yield process, port, directory
        assert process.stop() == 0


def _read(port: int, address: int, count: int) -> list[int]:
    with RawModbus(port) as raw:
        registers = raw.read_holding(PACK, address, count)
    assert isinstance(registers, list), f"exception {registers}"
    return registers


def test_a_mask_write_without_the_pin_changes_nothing_and_counts(
    twin: tuple[TwinProcess, int, Path],
) -> None:
    _, port, _ = twin
    with RawModbus(port) as raw:
        before = raw.read_holding(PACK, 201, 1)
        wrong = raw.read_holding(PACK, 224, 1)
        assert isinstance(wrong, list)
        # FC22 on V-max: AND 0, OR 3650 would write 3650.
        answer = raw.request(PACK, struct.pack(">BHHH", 22, 201, 0x0000, 3650))
        assert exception_of(answer) == (0x80 | 22, 0x01)
        assert raw.read_holding(PACK, 201, 1) == before  # not even for a moment
        assert raw.read_holding(PACK, 224, 1) == [wrong[0] + 1]  # a wrong attempt
        assert raw.read_holding(PACK, 222, 1) == [0]  # still locked


def test_a_bad_header_closes_the_connection_and_a_fresh_one_is_answered(
    twin: tuple[TwinProcess, int, Path],
) -> None:
    process, port, _ = twin
    for bad in (
        struct.pack(">HHHB", 1, 7, 6, PACK) + struct.pack(">BHH", 3, 201, 1),  # protocol id 7
        struct.pack(">HHHB", 1, 0, 0xFFFF, PACK) + b"\x03\x00",  # length 65535
        struct.pack(">HHHB", 1, 0, 1, PACK) + b"\x03",  # length 1: no function code
    ):
        with RawModbus(port, timeout_s=5.0) as raw:
            raw.send_raw(bad)
            # The very next valid request on the same connection: closed, never left hanging.
            with pytest.raises((ConnectionError, OSError)):
                raw.read_holding(PACK, 201, 1)
        assert _read(port, 201, 1)[0] != 0xFFFF
    process.wait_for_message("not a Modbus TCP header")


def test_pipelined_requests_in_one_segment_are_all_answered_in_order(
    twin: tuple[TwinProcess, int, Path],
) -> None:
    _, port, _ = twin
    requests = b"".join(
        struct.pack(">HHHB", tid, 0, 6, PACK) + struct.pack(">BHH", 3, 200 + tid % 8, 1)
        for tid in range(1, 101)
    )
    with RawModbus(port) as raw:
        raw.send_raw(requests)  # 1,200 bytes at once: over pymodbus's 516-byte buffer
        for tid in range(1, 101):
            head = raw._read(7)
            answered_tid, protocol, length, unit = struct.unpack(">HHHB", head)
            assert (answered_tid, protocol, unit) == (tid, 0, PACK)
            pdu = raw._read(length - 1)
            assert pdu[0] == 3 and pdu[1] == 2
        # ... and a partial request completed later is answered too.
        frame = struct.pack(">HHHB", 500, 0, 6, PACK) + struct.pack(">BHH", 3, 201, 1)
        raw.send_raw(frame[:5])
        time.sleep(0.05)  # two TCP segments on purpose, not a wait for a condition
        raw.send_raw(frame[5:])
        assert struct.unpack(">H", raw._read(9)[:2]) == (500,)
        assert len(raw._read(2)) == 2


def test_2000_idle_connections_do_not_lock_a_new_client_out(
    twin: tuple[TwinProcess, int, Path],
) -> None:
    process, port, directory = twin
    state = directory / "state.json"
    lines_before = len(process.logs)
    idle: list[socket.socket] = []
    try:
        for _ in range(2000):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30.0)
            sock.setblocking(False)
            idle.append(sock)
        # The server has taken them all in once it has closed all but the 100 it keeps open
        # (the cap, each new one closes the one quiet the longest).
        wait_until(
            lambda: sum(_closed_by_server(sock) for sock in idle) >= len(idle) - 100,
            timeout_s=60.0,
            what="the idle connections taken in",
        )
        start = time.monotonic()
        with RawModbus(port, timeout_s=1.0) as raw:  # answered within 1 s, or it fails
            registers = raw.read_holding(PACK, 201, 1)
        assert isinstance(registers, list) and registers[0] != 0xFFFF, time.monotonic() - start
        # The store still has descriptors: the state file is written again.
        saved_at = state.stat().st_mtime_ns
        wait_until(lambda: state.stat().st_mtime_ns != saved_at, what="a save under load")
    finally:
        for sock in idle:
            sock.close()
    process.wait_for_message("connections at most")
    # 2,000 evictions are a few lines, not a flood (the repeat filter).
    evictions = [e for e in process.logs[lines_before:] if "closed:" in str(e.get("message"))]
    assert 1 <= len(evictions) <= 100, len(evictions)
    assert not [e for e in process.logs if "cannot be written" in str(e.get("message"))]


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False  # open, nothing to read
    except OSError as exc:
        return exc.errno != errno.ENOTCONN  # not connected yet; else reset: closed


def test_an_idle_connection_is_closed_after_the_timeout(tmp_path: Path) -> None:
    port = free_port()
    extra = "idle_timeout_s = 1\n"
    config = write_config(tmp_path, port=port)
    config.write_text(config.read_text().replace(f"port = {port}\n", f"port = {port}\n{extra}"))
    with TwinProcess(config) as process:
        process.wait_for_message("modbus: listening")
        with RawModbus(port) as raw:
            assert isinstance(raw.read_holding(PACK, 0, 1), list | int)
            raw.sock.settimeout(10.0)
            assert raw.sock.recv(1) == b""  # closed by the twin, not by us
        process.wait_for_message("idle for more than 1 s")
        assert process.stop() == 0


def test_a_port_in_use_at_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, port=port)
        result = run_twin("run", "--config", str(config), "--quiet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"twin run: modbus: cannot listen on 127.0.0.1:{port}"), last
    assert not (tmp_path / "state.json").exists()  # nothing started, nothing saved
