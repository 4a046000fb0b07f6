"""The dashboard's cost: 20 browsers' worth of push connections against none, same twin.

``twin run`` (a subprocess) with a 255-cell emulated pack, the page pushing at 2 Hz, CAN on a
host-local udp_multicast group and Modbus. Each round measures, for ``--seconds``:

- Modbus: one client (another process) reading the 100-register cell block every 20 ms:
  p50 / p99 latency;
- CAN: the intervals of each inverter frame of the Pylon profile (0x351 ... 0x35E, 1 s
  cycle) as received on the group: the jitter p99 (|interval - 1 s|);
- the page: ``--browsers`` WebSocket clients (plain aiohttp clients, in another process)
  taking every push: the update latency (receive time - the time the twin stamped on the
  push) p50 / p99, and pushes per second per browser.

Rounds alternate "no browser" and "browsers" (``--rounds`` each) on the same twin; the
figures printed are the median of the rounds, with their min-max. Targets (issue "The
dashboard"): with the browsers, Modbus p99 and CAN jitter p99 within 10 % of the run without
(or within the machine's own noise: the round-to-round spread is printed), and the page's
update latency p99 <= 500 ms. Asserts nothing: the machines are shared and noisy.

Run: python bench/bench_web.py [--seconds S] [--browsers N] [--rounds N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import random
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TWIN_CONFIG = """
[[pack]]
id = "bench"
chemistry = "LiFePO4"
cells = 255
capacity_wh = 182000

[pack.source]
kind = "emulator"

[store]
path = "state.json"
save_interval_s = 3600

[modbus]
port = {port}

[can]
interface = "udp_multicast"
channel = "{group}"
native = false            # the inverter link alone: its cycle is what is measured

[web]
port = {web_port}
update_hz = 2
max_clients = 100
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ---- Modbus: one polling client in its own process ----------------------------------------


def modbus_poller(port: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    request = struct.pack(">HHHBBHH", 1, 0, 6, 1, 3, 1000, 100)
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            started = time.perf_counter()
            sock.sendall(request)
            answer = b""
            while len(answer) < 9 + 200:
                chunk = sock.recv(4096)
                if not chunk:
                    raise SystemExit("the twin closed the Modbus connection")
                answer += chunk
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    out.put(latencies)


# ---- the page: N WebSocket clients in one process ----------------------------------------


def browsers(web_port: int, count: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    import aiohttp

    async def one(session: aiohttp.ClientSession, lags: list[float], counts: list[int]) -> None:
        async with session.ws_connect(f"http://127.0.0.1:{web_port}/ws", max_msg_size=0) as ws:
            stop = time.monotonic() + seconds
            received = 0
            while time.monotonic() < stop:
                try:
                    message = await ws.receive(timeout=max(0.1, stop - time.monotonic()))
                except TimeoutError:
                    break
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                now = time.time()
                # The stamp leads the document: read it without parsing 30-70 kB per push
                # (twenty parses per push would load the machine the twin runs on).
                head = message.data[:64]  # '{"time":1796330000.123,...'
                stamped = float(head[head.index(":") + 1 : head.index(",")])
                if received:  # the first is the greeting, built before the client was ready
                    lags.append(now - stamped)
                received += 1
            counts.append(received)

    async def run() -> tuple[list[float], list[int]]:
        lags: list[float] = []
        counts: list[int] = []
        async with aiohttp.ClientSession() as session:
            await asyncio.gather(*(one(session, lags, counts) for _ in range(count)))
        return lags, counts

    out.put(asyncio.run(run()))


# ---- CAN: the intervals of 0x351 on the group ---------------------------------------------


class CanWatch:
    """The receive times of each inverter frame on the group, from a thread."""

    def __init__(self, group: str) -> None:
        import can

        self.bus = can.Bus(interface="udp_multicast", channel=group, hop_limit=0)  # host-local
        self.stamps: dict[int, list[float]] = {}
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            message = self.bus.recv(0.2)
            if message is not None and 0x351 <= message.arbitration_id <= 0x35E:
                self.stamps.setdefault(message.arbitration_id, []).append(message.timestamp)

    def jitter_since(self, start: float) -> list[float]:
        """|interval - 1 s| of each frame since ``start``."""
        jitter: list[float] = []
        for times in list(self.stamps.values()):
            stamps = [s for s in times if s >= start]
            jitter += [abs(b - a - 1.0) for a, b in itertools.pairwise(stamps)]
        return jitter

    def close(self) -> None:
        """Stop listening."""
        self.running = False
        self.thread.join(2)
        self.bus.shutdown()


def one_round(
    port: int, web_port: int, can_watch: CanWatch, count: int, seconds: float
) -> dict[str, float]:
    queue: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    started = time.time()
    poller = multiprocessing.Process(target=modbus_poller, args=(port, seconds, queue))
    pages = None
    if count:
        pages = multiprocessing.Process(target=browsers, args=(web_port, count, seconds, queue))
        pages.start()
    poller.start()
    results = [queue.get(timeout=seconds + 60) for _ in range(2 if pages else 1)]
    poller.join()
    if pages:
        pages.join()
    latencies = next(r for r in results if isinstance(r, list))
    figures = {
        "modbus_p50_ms": percentile(latencies, 0.50) * 1000,
        "modbus_p99_ms": percentile(latencies, 0.99) * 1000,
        "can_jitter_p99_ms": percentile(can_watch.jitter_since(started), 0.99) * 1000,
    }
    page = next((r for r in results if isinstance(r, tuple)), None)
    if page is not None:
        lags, counts = page
        figures["page_p50_ms"] = percentile(lags, 0.50) * 1000
        figures["page_p99_ms"] = percentile(lags, 0.99) * 1000
        figures["pushes_per_s"] = statistics.mean(counts) / seconds
    return figures


def show(name: str, rounds: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in rounds if key in r]
    return (
        f"{statistics.median(values):8.2f} ({min(values):.2f}-{max(values):.2f})"
        if values
        else "       -"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--browsers", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    port, web_port = free_port(), free_port()
    group = f"239.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"
    with tempfile.TemporaryDirectory() as directory:
        config = Path(directory) / "twin.toml"
        config.write_text(
            TWIN_CONFIG.format(port=port, web_port=web_port, group=group), encoding="utf-8"
        )
        twin = subprocess.Popen(
            [sys.executable, "-m", "twin", "run", "--config", str(config), "--quiet"],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        can_watch = CanWatch(group)
        try:
            wait_for_port(port)
            wait_for_port(web_port)
            time.sleep(3.0)  # the first frames, the CAN schedule started
            without: list[dict[str, float]] = []
            with_pages: list[dict[str, float]] = []
            for _ in range(args.rounds):
                without.append(one_round(port, web_port, can_watch, 0, args.seconds))
                with_pages.append(one_round(port, web_port, can_watch, args.browsers, args.seconds))
        finally:
            can_watch.close()
            twin.send_signal(signal.SIGTERM)
            twin.wait(timeout=30)
    print(
        f"twin run, 255 cells, page at 2 Hz; {args.rounds} alternated rounds of "
        f"{args.seconds:g} s; median (min-max)"
    )
    print(f"{'':24} {'no browser':>24} {f'{args.browsers} browsers':>24}")
    for key, label in (
        ("modbus_p50_ms", "Modbus p50 (ms)"),
        ("modbus_p99_ms", "Modbus p99 (ms)"),
        ("can_jitter_p99_ms", "CAN jitter p99 (ms)"),
        ("page_p50_ms", "page latency p50 (ms)"),
        ("page_p99_ms", "page latency p99 (ms)"),
        ("pushes_per_s", "pushes/s per browser"),
    ):
        print(f"{label:24} {show(label, without, key):>24} {show(label, with_pages, key):>24}")
    base = statistics.median(r["modbus_p99_ms"] for r in without)
    loaded = statistics.median(r["modbus_p99_ms"] for r in with_pages)
    print(f"Modbus p99 with / without browsers: {loaded / base:.2f}x (target <= 1.10)")
    base_j = statistics.median(r["can_jitter_p99_ms"] for r in without)
    loaded_j = statistics.median(r["can_jitter_p99_ms"] for r in with_pages)
    print(f"CAN jitter p99 with / without: {loaded_j:.2f} / {base_j:.2f} ms")
    page = statistics.median(r["page_p99_ms"] for r in with_pages)
    print(f"page update latency p99: {page:.0f} ms (target <= 500)")


if __name__ == "__main__":
    main()
