"""A pytest plugin for integrators' own CI: a running twin as a fixture.

Installed with the package (entry point ``pytest11``: ``twin``), it gives every test suite two
fixtures:

- ``twin``: a running twin with the defaults below, stopped after the test;
- ``twin_factory``: ``twin_factory(config=None, scenario=None, speed=1.0, ...)`` starts one
  (several in one test if need be), each stopped after the test.

The default twin is the embedded default's pack (an emulated 16-cell LiFePO4 pack) with every
interface on, on this host only: Modbus TCP and the dashboard on free ports of 127.0.0.1, CAN
on a host-local python-can ``udp_multicast`` group of its own (hop limit 0: no frame leaves the
machine), its UART stream on a pseudo-terminal and a TCP port, and MQTT when a broker is
given. A
configuration (TOML text or a file) replaces the defaults as it is; a scenario is played live
as ``twin run --scenario`` does (``speed`` times faster).

The service runs in a background thread of the test process with its own event loop, so the
handle (``RunningTwin``) calls the same ports the exporters use: ``inject_fault``,
``set_plant``, the newest ``readout()``; what the device under test sees goes through the real
interfaces. See examples/pytest/test_my_controller.py for a complete example test.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from twin.app import Service
    from twin.config import TwinConfig
    from twin.exporters.canbus import Bus
    from twin.protocol.readout import PackReadout

T = TypeVar("T")

#: How long a twin may take to start (build, bind, first state of every pack).
START_TIMEOUT_S = 30.0

DEFAULT_CONFIG = """\
[[pack]]
id = "{pack_id}"
chemistry = "LiFePO4"
cells = {cells}
capacity_wh = {capacity_wh}
pin = "{pin}"

[pack.source]
kind = "emulator"
inverter = "{inverter}"
uart_pty_file = "{directory}/uart.path"
uart_tcp_port = 0

[store]
path = "{directory}/state.json"

[modbus]
host = "127.0.0.1"
port = {modbus_port}

[can]
interface = "udp_multicast"
channel = "{group}"
profile = "{profile}"

[web]
port = {web_port}
{mqtt}"""

MQTT_SECTION = """
[mqtt]
host = "{host}"
port = {port}
prefix = "{prefix}"
"""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def multicast_group() -> str:
    """A udp_multicast group of its own (239.x.y.z: administratively scoped, never routed)."""
    return f"239.{random.randrange(1, 255)}.{random.randrange(1, 255)}.{random.randrange(1, 255)}"


class RunningTwin:
    """A twin running in a background thread: its addresses and a handle on its emulated world.

    Every method is safe to call from the test's thread (it runs on the twin's loop).
    """

    def __init__(self, config: TwinConfig, service: Service, loop: asyncio.AbstractEventLoop):
        self.config = config
        self._service = service
        self._loop = loop
        self._thread: threading.Thread | None = None
        self._done: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.pack_id = config.packs[0].pack_id
        """The (first) pack's id: the default of every method's ``pack_id``."""
        self.pin = config.packs[0].pin

    # ---- where the device under test connects ---------------------------------------

    @property
    def modbus_address(self) -> tuple[str, int] | None:
        """(host, port) of the Modbus TCP server (unit 1 = the first pack, 100 = the fleet)."""
        modbus = self.config.modbus
        return None if modbus is None else (modbus.host, modbus.port)

    @property
    def web_url(self) -> str | None:
        """The dashboard's address (``http://127.0.0.1:<port>/``)."""
        web = self.config.web
        return None if web is None else f"http://{web.host}:{web.port}/"

    @property
    def can_channel(self) -> tuple[str, str] | None:
        """(python-can interface, channel) of the CAN exporter."""
        settings = self.config.can
        return None if settings is None else (settings.interface, settings.channel)

    def can_bus(self) -> Bus:
        """A python-can bus on the twin's channel, host-local as the twin's (close it)."""
        from twin.exporters.canbus import open_bus

        settings = self.config.can
        if settings is None:
            raise RuntimeError("this twin has no [can] section")
        return open_bus(settings)

    @property
    def mqtt_prefix(self) -> str | None:
        """The MQTT topic prefix (None without MQTT)."""
        return None if self.config.mqtt is None else self.config.mqtt.prefix

    @property
    def uart_pty(self) -> str | None:
        """The path of the pseudo-terminal serving the pack's UART stream (9600 8N1, raw)."""
        served = self._call(lambda: self._runtime(self.pack_id).served)
        return None if served is None else getattr(served, "pty_path", None)

    @property
    def uart_tcp_address(self) -> tuple[str, int] | None:
        """(host, port) serving the pack's raw UART bytes on TCP, as ser2net does."""
        served = self._call(lambda: self._runtime(self.pack_id).served)
        return None if served is None else getattr(served, "tcp_address", None)

    # ---- what the test does to the emulated world -----------------------------------

    def inject_fault(
        self, name: str, pack_id: str | None = None, **params: object
    ) -> dict[str, object]:
        """Inject a live fault (docs/emulator.md); returns its parameters with defaults."""
        pack = pack_id or self.pack_id
        return self._call(lambda: self._service.inject_fault(pack, name, params))

    def clear_fault(self, name: str, pack_id: str | None = None, **params: object) -> list[str]:
        """Clear a fault (``"all"`` clears every one); returns what was cleared."""
        pack = pack_id or self.pack_id
        return self._call(lambda: self._service.clear_fault(pack, name, params))

    def set_plant(
        self, name: str, value: float, timeout_s: float | None = None, pack_id: str | None = None
    ) -> None:
        """A plant setpoint (docs/testbench.md: ``inverter_dc_a``, ``load_w``, ...)."""
        pack = pack_id or self.pack_id
        self._call(lambda: self._service.set_plant(pack, name, value, timeout_s))

    def clear_plant(self, name: str | None = None, pack_id: str | None = None) -> None:
        """A setpoint (None: every one) back to the plant's own profile."""
        from twin.emulator.plant import PLANT_SETPOINTS

        pack = pack_id or self.pack_id
        names = list(PLANT_SETPOINTS) if name is None else [name]

        def clear() -> None:
            for each in names:
                self._service.clear_plant(pack, each)

        self._call(clear)

    # ---- what the test reads --------------------------------------------------------

    def readout(self, pack_id: str | None = None) -> PackReadout | None:
        """The twin's newest readout of the pack (what every exporter publishes)."""
        pack = pack_id or self.pack_id
        return self._call(lambda: self._service.hub.pack(pack))

    def wait_for(
        self,
        check: Callable[[PackReadout], bool],
        timeout_s: float = 20.0,
        what: str = "condition",
        pack_id: str | None = None,
    ) -> PackReadout:
        """Poll the pack's readout until ``check`` holds; ``AssertionError`` after the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            readout = self.readout(pack_id)
            if readout is not None and check(readout):
                return readout
            if time.monotonic() > deadline:
                raise AssertionError(f"twin: {what} not reached within {timeout_s:g} s")
            time.sleep(0.05)

    @property
    def running(self) -> bool:
        """False once the service has stopped (a scenario's end, ``stop``)."""
        return not self._done.done()

    def wait_stopped(self, timeout_s: float = 60.0) -> None:
        """Wait for the service to stop by itself (a scenario played to its end)."""
        self._done.result(timeout=timeout_s)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the service (as SIGTERM does) and wait for it; an error it ended with is raised."""
        if not self._done.done():
            self._loop.call_soon_threadsafe(self._service.stopping.set)
        self._done.result(timeout=timeout_s)
        if self._thread is not None:
            self._thread.join(timeout_s)

    # ---- plumbing ---------------------------------------------------------------------

    def _runtime(self, pack_id: str) -> Any:
        for pack in self._service.packs:
            if pack.pack_id == pack_id:
                return pack
        raise ValueError(f"no pack {pack_id!r}")

    def _call(self, function: Callable[[], T], timeout_s: float = 10.0) -> T:
        """Run ``function`` on the twin's loop and return what it returns (or raise)."""
        if self._done.done():
            self._done.result()  # raises what the service ended with
            raise RuntimeError("the twin has stopped")

        async def run() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout_s)


def start_twin(
    config: TwinConfig, *, speed: float = 1.0, state_path: str | None = None
) -> RunningTwin:
    """Start ``config`` in a background thread; returns once every pack's logic has run.

    ``RuntimeError`` (with the service's error) when it cannot start.
    """
    from twin.app import RunOptions, Service

    options = RunOptions(
        speed=speed, quiet=True, state_path=state_path, persist=True, freeze_gc=False
    )
    ready: concurrent.futures.Future[RunningTwin] = concurrent.futures.Future()
    holder: dict[str, RunningTwin] = {}

    def main() -> None:
        async def body() -> None:
            service = Service(config, options)
            handle = RunningTwin(config, service, asyncio.get_running_loop())
            holder["twin"] = handle
            ready.set_result(handle)
            await service.run()

        try:
            asyncio.run(body())
        except BaseException as exc:
            handle = holder.get("twin")
            if handle is None:
                ready.set_exception(exc)
            else:
                handle._done.set_exception(exc)
            return
        holder["twin"]._done.set_result(None)

    thread = threading.Thread(target=main, name="twin", daemon=True)
    thread.start()
    handle = ready.result(timeout=START_TIMEOUT_S)
    handle._thread = thread
    deadline = time.monotonic() + START_TIMEOUT_S
    pack_ids = [pack.pack_id for pack in config.packs]
    while not all(_published(handle, pack_id) for pack_id in pack_ids):
        if handle._done.done():
            error = handle._done.exception()
            raise RuntimeError(f"twin did not start: {error}") from error
        if time.monotonic() > deadline:
            handle.stop()
            raise RuntimeError(f"twin: no state from every pack within {START_TIMEOUT_S:g} s")
        time.sleep(0.05)
    return handle


def _published(handle: RunningTwin, pack_id: str) -> bool:
    """Whether the pack's logic has run on fresh data (what an exporter would serve)."""
    with contextlib.suppress(ValueError):
        readout = handle.readout(pack_id)
        return readout is not None and readout.initialized and not readout.stale
    return False


def default_config_text(
    directory: Path,
    *,
    pack_id: str = "pack1",
    cells: int = 16,
    capacity_wh: float = 5120.0,
    pin: str = "1234",
    inverter: str = "relays",
    profile: str = "pylon",
    mqtt: tuple[str, int] | None = None,
) -> str:
    """The fixture's default configuration: free ports, a group of its own, files in ``directory``.

    ``mqtt`` = (host, port) of a broker turns MQTT on.
    """
    mqtt_text = ""
    if mqtt is not None:
        prefix = f"twin-test-{random.randrange(16**6):06x}"
        mqtt_text = MQTT_SECTION.format(host=mqtt[0], port=mqtt[1], prefix=prefix)
    return DEFAULT_CONFIG.format(
        pack_id=pack_id,
        cells=cells,
        capacity_wh=capacity_wh,
        pin=pin,
        inverter=inverter,
        directory=directory.as_posix(),
        modbus_port=free_port(),
        web_port=free_port(),
        group=multicast_group(),
        profile=profile,
        mqtt=mqtt_text,
    )


class TwinFactory:
    """``twin_factory(...)``: starts twins for a test and stops them after it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[RunningTwin] = []

    def __call__(
        self,
        config: str | Path | None = None,
        *,
        scenario: str | Path | None = None,
        speed: float = 1.0,
        hold: bool = False,
        mqtt: tuple[str, int] | None = None,
        **defaults: Any,
    ) -> RunningTwin:
        """A running twin.

        ``config``: TOML text or a file (None: the default of this module, with ``defaults``
        such as ``cells=8``, ``inverter="limits"``, ``profile="victron"`` and ``mqtt`` =
        (host, port) of a broker). ``scenario``: a scenario file played live, ``speed``
        times faster (``hold``: go on after its end).
        """
        from twin.config import live_config, load_config, load_scenario, parse_config

        directory = self.directory / f"twin{len(self.started)}"
        directory.mkdir(parents=True, exist_ok=True)
        if config is None:
            text = default_config_text(directory, mqtt=mqtt, **defaults)
            loaded = parse_config(text, source=str(directory / "twin.toml"))
        elif isinstance(config, Path):
            loaded = load_config(str(config))
        else:
            loaded = parse_config(config, source="<twin_factory config>")
        if scenario is not None:
            loaded = live_config(loaded, load_scenario(str(scenario)), hold=hold)
        twin = start_twin(loaded, speed=speed, state_path=str(directory / "state.json"))
        self.started.append(twin)
        return twin

    def stop_all(self) -> None:
        """Stop every twin started (the fixture's teardown)."""
        errors: list[BaseException] = []
        for twin in self.started:
            try:
                twin.stop()
            except BaseException as exc:  # every twin is stopped before one error is raised
                errors.append(exc)
        if errors:
            raise errors[0]


@pytest.fixture
def twin_factory(tmp_path: Path) -> Iterator[TwinFactory]:
    """Start twins with ``twin_factory(config=..., scenario=..., speed=...)``; all stopped after."""
    factory = TwinFactory(tmp_path)
    try:
        yield factory
    finally:
        factory.stop_all()


@pytest.fixture
def twin(twin_factory: TwinFactory) -> RunningTwin:
    """A running default twin: an emulated 16S LiFePO4 pack, Modbus, CAN (host-local), UART."""
    return twin_factory()
