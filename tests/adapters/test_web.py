"""The dashboard's server in-process (aiohttp's client): pushes, writes, refusals, slow browsers."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from tests.factories import lfp_settings
from tests.frames import sample_frame
from tests.ports import PackPort
from tests.waiting import until
from twin.app import StateHub
from twin.errors import StartupError
from twin.exporters.web import WebExporter
from twin.exporters.web_map import WebSettings
from twin.protocol.frame import encode_frame
from twin.protocol.shadow import PackShadow

pytestmark = pytest.mark.asyncio


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Served:
    def __init__(self, exporter: WebExporter, hub: StateHub, port: PackPort, url: str) -> None:
        self.exporter = exporter
        self.hub = hub
        self.port = port
        self.url = url


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    settings = lfp_settings()
    hub = StateHub(("pack1",))
    shadow = PackShadow("pack1", settings)
    state = shadow.feed(encode_frame(sample_frame()), 0.0, 740_000)
    assert state is not None
    hub.publish(state)
    port = PackPort(settings)
    web_port = _free_port()
    exporter = WebExporter(
        hub,
        port,
        WebSettings(port=web_port, update_hz=10.0, max_clients=3),
        ["pack1"],
        lambda: {"modbus": "modbus 127.0.0.1:5020 0 clients"},
        version="test",
    )
    await exporter.start()
    task = asyncio.create_task(exporter.run())
    try:
        yield Served(exporter, hub, port, f"http://127.0.0.1:{web_port}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_the_state_is_the_readout_and_a_new_state_is_pushed(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{served.url}/api/state") as response:
            assert response.status == 200
            assert response.headers["X-Frame-Options"] == "DENY"
            assert "script-src 'self'" in response.headers["Content-Security-Policy"]
            state = await response.json()
        pack = state["packs"][0]
        assert pack["pack_id"] == "pack1"
        assert pack["pack_voltage_v"] == pytest.approx(53.2, abs=0.01)  # the sample frame
        assert pack["cells"][4]["voltage_v"] == pytest.approx(3.325)
        assert pack["cells"][4]["state"] == "normal"
        assert state["exporters"] == {"modbus": "modbus 127.0.0.1:5020 0 clients"}
        async with session.ws_connect(f"{served.url}/ws") as ws:
            first = json.loads(await ws.receive_str(timeout=5))
            assert "trend" in first  # the whole hour with the first message
            assert first["packs"][0]["soc_pct"] is not None
            # A write through another path shows at once (the push after a write).
            async with session.post(
                f"{served.url}/api/packs/pack1/settings",
                json={"pin": "4321", "values": {"vmax_v": 3.6}},
            ) as response:
                assert response.status == 200
                assert (await response.json())["message"] == "written: vmax_v = 3.6"
            served.hub.republish("pack1", served.port.current)

            async def vmax() -> float:
                while True:
                    message = json.loads(await ws.receive_str(timeout=5))
                    if message["packs"][0]["vmax_v"] == 3.6:
                        return 3.6

            assert await asyncio.wait_for(vmax(), 5) == 3.6


async def test_writes_are_refused_with_the_reason(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        cases = [
            ("/api/packs/pack9/clear-counters", {"pin": "4321"}, 404, "no pack 'pack9'"),
            ("/api/packs/pack1/clear-counters", {}, 400, '"pin": the pack\'s PIN is needed'),
            ("/api/packs/pack1/clear-counters", {"pin": "1"}, 403, "wrong PIN"),
            ("/api/packs/pack1/settings", {"pin": "4321", "values": {"vmax_v": "x"}}, 400,
             "vmax_v: 'x' is not a number"),
            ("/api/packs/pack1/settings", {"pin": "4321", "values": {"vmax_v": 9.0}}, 400,
             "vmax_v"),
            ("/api/packs/pack1/faults/break-chain", {"params": {}}, 409,
             "pack1 is not an emulated pack: it has no faults"),
            ("/api/packs/pack1/plant/load_w", {"value": 1}, 409,
             "pack1 is not an emulated pack: its plant is real"),
        ]  # fmt: skip
        for path, body, status, error in cases:
            async with session.post(served.url + path, json=body) as response:
                answer = await response.json()
                assert response.status == status, (path, answer)
                assert answer["ok"] is False
                assert error in answer["error"]
        async with session.post(
            f"{served.url}/api/packs/pack1/clear-counters",
            data="not json",
            headers={"Content-Type": "application/json"},
        ) as response:
            assert response.status == 400
    assert served.port.cleared == 0
    assert served.exporter.writes_refused == 8
    assert served.port.guard.wrong_total == 1  # the shared guard counted the wrong PIN


async def test_a_cross_origin_or_form_write_is_refused(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{served.url}/api/packs/pack1/clear-counters",
            json={"pin": "4321"},
            headers={"Origin": "http://evil.example"},
        ) as response:
            assert response.status == 403
        async with session.post(
            f"{served.url}/api/packs/pack1/clear-counters",
            data={"pin": "4321"},  # a form, as a cross-site page could send without asking
        ) as response:
            assert response.status == 403
        async with session.post(
            f"{served.url}/api/packs/pack1/clear-counters",
            json={"pin": "4321"},
            headers={"Origin": served.url},  # the page itself
        ) as response:
            assert response.status == 200
        # Another site's page cannot read the pushes either (no cross-site WebSocket).
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(f"{served.url}/ws", origin="http://evil.example")
        async with session.ws_connect(f"{served.url}/ws", origin=served.url) as ws:
            assert json.loads(await ws.receive_str(timeout=5))["packs"]
    assert served.port.cleared == 1


async def test_too_many_browsers_and_a_browser_that_stops_reading(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{served.url}/ws") for _ in range(3)]
        await until(lambda: len(served.exporter.clients) == 3, "three browsers")
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await session.ws_connect(f"{served.url}/ws")  # the fourth: refused (503)
        # Two browsers never read: the third still gets every push it waits for (each browser
        # has its own queue of one; nobody waits for the slowest).
        reader = sockets[0]
        got = 0
        for _ in range(5):
            await reader.receive_str(timeout=5)
            got += 1
        assert got == 5
        for ws in sockets:
            await ws.close()
        await until(lambda: not served.exporter.clients, "the browsers gone")


async def test_a_port_in_use_is_a_startup_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        exporter = WebExporter(
            StateHub(("pack1",)),
            PackPort(lfp_settings()),
            WebSettings(port=port),
            ["pack1"],
            dict,
            version="test",
        )
        with pytest.raises(StartupError, match=rf"web: cannot listen on 127.0.0.1:{port}"):
            await exporter.start()
