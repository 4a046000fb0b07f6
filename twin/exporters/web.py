"""The dashboard (aiohttp): a live web page of the twin, served on 127.0.0.1:8080 by default.

- ``GET /`` the page, ``/static/*`` its script and style (shipped in the wheel, no build
  step, nothing from a CDN); ``GET /api/state`` one snapshot as JSON; ``GET /ws`` a
  WebSocket that pushes the state at most ``update_hz`` times a second.
- ``POST /api/packs/{pack}/settings`` ``{"pin", "values"}``, ``.../clear-counters``
  ``{"pin"}``, ``.../faults/{name}`` ``{"params"}`` or ``{"clear": true}``, and
  ``.../plant/{name}`` ``{"value", "timeout_s"}`` or ``{"clear": true}``: through the same
  ports as Modbus and MQTT (the pack's ``PinGuard`` and its lockout are shared).

Safe by default: it binds 127.0.0.1; a state-changing request must be JSON and come from the
page's own origin (a cross-origin request is refused: no CSRF); the page builds its DOM from
text, never from markup (a pack id or a string from the BMS cannot inject a script), under a
Content-Security-Policy that allows only its own scripts. Each browser has a queue of one
message: a slow browser gets the newest state when it is ready and never slows the twin; one
that does not take a message for ``SEND_TIMEOUT_S`` is closed.

Every log record of the twin at INFO or above (relay changes with their reasons, warnings,
the watchdog, writes, faults, divergence) goes to the page's event log.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from twin.errors import CommandError, StartupError
from twin.exporters.ports import CommandPort, StateFeed
from twin.exporters.web_map import (
    JsonValue,
    Trend,
    WebSettings,
    page_state,
)
from twin.model.pin import PinResult
from twin.model.settings import WRITABLE_SETTINGS

log = logging.getLogger(__name__)

#: A browser that has not taken a message for this long is closed.
SEND_TIMEOUT_S = 10.0
#: Events kept for the page's log (and sent with every push).
EVENTS_KEPT = 200
EVENTS_SENT = 100
#: A request body larger than this is refused (a settings write is a few hundred bytes).
MAX_BODY_BYTES = 16 * 1024
STATIC = {"app.js": "text/javascript", "style.css": "text/css"}
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


class _EventLog(logging.Handler):
    """The twin's log records (INFO and above) for the page, numbered."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.events: collections.deque[dict[str, JsonValue]] = collections.deque(maxlen=EVENTS_KEPT)
        self.sequence = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("aiohttp"):
            return
        try:
            message = record.getMessage()
        except Exception:  # a bad log call must not break the page
            return
        self.sequence += 1
        self.events.append(
            {
                "n": self.sequence,
                "t": round(record.created, 3),
                "level": record.levelname.lower(),
                "message": message,
            }
        )


class _Client:
    """One browser: a queue of one (the newest message) and the task that sends it."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.pending: bytes | None = None
        self.ready = asyncio.Event()
        self.dropped = 0

    def offer(self, text: bytes) -> None:
        if self.pending is not None:
            self.dropped += 1  # the browser has not taken the last one: only the newest counts
        self.pending = text
        self.ready.set()

    async def send_loop(self) -> None:
        while not self.ws.closed:
            await self.ready.wait()
            self.ready.clear()
            text, self.pending = self.pending, None
            if text is None:
                continue
            async with asyncio.timeout(SEND_TIMEOUT_S):
                # The same UTF-8 bytes for every browser: encoded once per push.
                await self.ws.send_frame(text, WSMsgType.TEXT)


class WebExporter:
    """The dashboard's server: ``start`` binds (``StartupError``), ``run`` pushes to browsers."""

    def __init__(
        self,
        feed: StateFeed,
        port: CommandPort,
        settings: WebSettings,
        pack_ids: Sequence[str],
        statuses: Callable[[], Mapping[str, str]],
        version: str,
    ) -> None:
        self.feed = feed
        self.port = port
        self.settings = settings
        self.pack_ids = tuple(pack_ids)
        self.statuses = statuses
        """The exporters' status lines, by name (the service's composition root gives them)."""
        self.version = version
        self.clients: set[_Client] = set()
        self.pushes = 0
        self.writes_refused = 0
        self.trends = {pack_id: Trend() for pack_id in self.pack_ids}
        self.events = _EventLog()
        self._runner: web.AppRunner | None = None
        self._static = Path(str(resources.files("twin") / "web"))

    def status(self) -> str:
        """For the status line."""
        s = self.settings
        return f"web http://{s.host}:{s.port} {len(self.clients)} browsers"

    # ---- the server -----------------------------------------------------------------

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard])
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_get("/api/state", self._state)
        app.router.add_get("/ws", self._websocket)
        app.router.add_post("/api/packs/{pack}/settings", self._settings)
        app.router.add_post("/api/packs/{pack}/clear-counters", self._clear_counters)
        app.router.add_post("/api/packs/{pack}/faults/{name}", self._fault)
        app.router.add_post("/api/packs/{pack}/plant/{name}", self._plant)
        return app

    async def start(self) -> None:
        """Bind the port: a port in use is a ``StartupError`` (exit code 2, nothing started)."""
        runner = web.AppRunner(self._app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.host, self.settings.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or exc
            raise StartupError(
                f"web: cannot listen on {self.settings.host}:{self.settings.port} ({reason}); "
                "is another twin or web server running there? ([web] port, or enabled = false)"
            ) from exc
        self._runner = runner
        logging.getLogger("twin").addHandler(self.events)
        log.info("web: the dashboard is on http://%s:%d/", self.settings.host, self.settings.port)

    async def close(self) -> None:
        """Close every browser and the server."""
        logging.getLogger("twin").removeHandler(self.events)
        for client in list(self.clients):
            with contextlib.suppress(Exception):
                await client.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self) -> None:
        """Push the state to the browsers at most ``update_hz`` times a second."""
        if self._runner is None:
            await self.start()
        try:
            seen = 0
            period = 1.0 / self.settings.update_hz
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(1.0):  # at least once a second: the data's age
                        seen = await self.feed.wait(seen)
                started = time.monotonic()
                self._push()
                await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))
        finally:
            await self.close()

    def _push(self) -> None:
        text = _encode(self.snapshot(trend=self._sample_trends()))
        self.pushes += 1
        for client in self.clients:
            client.offer(text)

    def _sample_trends(self) -> bool:
        now = time.time()
        sampled = False
        for pack_id, trend in self.trends.items():
            readout = self.feed.pack(pack_id)
            if readout is not None:
                sampled = trend.add(now, readout) or sampled
        return sampled

    def snapshot(self, *, trend: bool) -> dict[str, JsonValue]:
        """The page's state now (with the trend of the last hour when ``trend``)."""
        emulated: dict[str, JsonValue] = {}
        for pack_id in self.pack_ids:
            if self.port.emulated(pack_id):
                emulated[pack_id] = {
                    "faults": self.port.active_faults(pack_id),
                    "plant": self.port.plant_setpoints(pack_id),
                }
        extra: dict[str, JsonValue] = {
            "time": round(time.time(), 3),  # when it was built (a client measures its delay)
            "version": self.version,
            "update_hz": self.settings.update_hz,
            "exporters": dict(self.statuses()),
            "emulated": emulated,
            "fault_kinds": self.port.fault_kinds(),
            "writable": WRITABLE_SETTINGS,
            "events": list(self.events.events)[-EVENTS_SENT:],
        }
        if trend:
            extra["trend"] = {pack_id: t.json() for pack_id, t in self.trends.items()}
        return page_state(self.feed.packs(), self.pack_ids, self.feed.fleet, extra)

    # ---- requests ---------------------------------------------------------------------

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Any]
    ) -> web.StreamResponse:
        """Same-origin JSON for every write (no CSRF); the security headers on every answer."""
        if request.method not in ("GET", "HEAD"):
            refusal = self._cross_origin(request)
            if refusal is not None:
                self.writes_refused += 1
                log.warning("web: %s %s refused: %s", request.method, request.path, refusal)
                return _answer(403, ok=False, error=refusal)
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            response = exc
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @staticmethod
    def _cross_origin(request: web.Request) -> str | None:
        """Why a state-changing request is refused (None: it is the page's own)."""
        if request.content_type != "application/json":
            return "a write must be JSON (Content-Type: application/json)"
        origin = request.headers.get("Origin")
        if origin is None:
            # Browsers send Origin with every POST; a request without one is not a page's.
            if request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
                return "cross-site request"
            return None
        if origin != f"{request.scheme}://{request.host}":
            return f"cross-origin request from {origin}"
        return None

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(self._static / "index.html", headers={"Content-Type": "text/html"})

    async def _static_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        kind = STATIC.get(name)
        if kind is None:
            raise web.HTTPNotFound()
        return web.FileResponse(self._static / name, headers={"Content-Type": kind})

    async def _state(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.snapshot(trend=True))

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin")
        if origin is not None and origin != f"{request.scheme}://{request.host}":
            # Another site's page may not read the twin through the visitor's browser.
            log.warning("web: WebSocket from %s refused (another origin)", origin)
            return _answer(403, ok=False, error=f"cross-origin WebSocket from {origin}")
        if len(self.clients) >= self.settings.max_clients:
            return _answer(503, ok=False, error="too many browsers")
        # No per-message deflate: compressing every push for every browser costs the event
        # loop (and so Modbus and CAN) far more than the bytes cost on a local link.
        ws = web.WebSocketResponse(heartbeat=20.0, max_msg_size=4096, compress=False)
        await ws.prepare(request)
        client = _Client(ws)
        self.clients.add(client)
        client.offer(_encode(self.snapshot(trend=True)))
        sender = asyncio.create_task(client.send_loop())
        try:
            async for message in ws:  # the page only listens; this notices its close
                if message.type is WSMsgType.ERROR:
                    break
        finally:
            self.clients.discard(client)
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)
            await ws.close()
        return ws

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise CommandError(f"not JSON ({exc})", 400) from exc
        if not isinstance(body, dict):
            raise CommandError("the body must be a JSON object", 400)
        return body

    def _pack(self, request: web.Request) -> str:
        pack_id = request.match_info["pack"]
        if pack_id not in self.pack_ids:
            raise CommandError(f"no pack {pack_id!r}", 404)
        return pack_id

    def _check_pin(self, pack_id: str, body: Mapping[str, Any]) -> None:
        pin = body.get("pin")
        if not isinstance(pin, str | int) or isinstance(pin, bool):
            raise CommandError('"pin": the pack\'s PIN is needed', 400)
        guard = self.port.pin_guard(pack_id)
        now = time.monotonic()
        result = guard.authorize(guard.matches(str(pin)), now)
        if result is PinResult.LOCKED_OUT:
            raise CommandError(
                f"locked out after too many wrong PINs ({guard.remaining_s(now):.0f} s left)", 403
            )
        if result is PinResult.WRONG:
            raise CommandError("wrong PIN", 403)

    async def _write(
        self, request: web.Request, action: Callable[[str, dict[str, Any]], str]
    ) -> web.StreamResponse:
        """Run a write; refused ones answer 4xx with the reason, and are logged."""
        try:
            pack_id = self._pack(request)
            body = await self._body(request)
            message = action(pack_id, body)
        except CommandError as exc:
            self.writes_refused += 1
            log.warning("web: %s refused: %s", request.path, str(exc))
            return _answer(exc.status, ok=False, error=str(exc))
        except ValueError as exc:
            self.writes_refused += 1
            log.warning("web: %s refused: %s", request.path, exc)
            return _answer(400, ok=False, error=str(exc))
        log.info("web: %s: %s", pack_id, message)
        self._push()  # every browser sees the write at once
        return _answer(200, ok=True, message=message)

    async def _settings(self, request: web.Request) -> web.StreamResponse:
        def write(pack_id: str, body: dict[str, Any]) -> str:
            values = body.get("values")
            if not isinstance(values, dict) or not values:
                raise CommandError('"values": an object of settings to write', 400)
            numbers: dict[str, float] = {}
            for name, value in values.items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise CommandError(f"{name}: {value!r} is not a number", 400)
                numbers[str(name)] = float(value)
            self._check_pin(pack_id, body)
            self.port.apply_settings(pack_id, numbers)
            return "written: " + ", ".join(f"{k} = {v:g}" for k, v in numbers.items())

        return await self._write(request, write)

    async def _clear_counters(self, request: web.Request) -> web.StreamResponse:
        def clear(pack_id: str, body: dict[str, Any]) -> str:
            self._check_pin(pack_id, body)
            self.port.clear_counters(pack_id)
            return "energy totals cleared"

        return await self._write(request, clear)

    async def _fault(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]

        def fault(pack_id: str, body: dict[str, Any]) -> str:
            if not self.port.emulated(pack_id):
                raise CommandError(f"{pack_id} is not an emulated pack: it has no faults", 409)
            params = body.get("params", {})
            if not isinstance(params, dict):
                raise CommandError('"params": an object', 400)
            if body.get("clear") is True:
                cleared = self.port.clear_fault(pack_id, name, params)
                return f"cleared {', '.join(cleared)}" if cleared else "nothing to clear"
            values = self.port.inject_fault(pack_id, name, params)
            return f"fault {name} injected {values}"

        return await self._write(request, fault)

    async def _plant(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]

        def plant(pack_id: str, body: dict[str, Any]) -> str:
            if not self.port.emulated(pack_id):
                raise CommandError(f"{pack_id} is not an emulated pack: its plant is real", 409)
            if body.get("clear") is True:
                cleared = self.port.clear_plant(pack_id, name)
                return f"plant {name}: back to the profile" if cleared else f"{name} was not set"
            value, timeout = body.get("value"), body.get("timeout_s")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise CommandError('"value": a number', 400)
            if timeout is not None and (
                isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
            ):
                raise CommandError('"timeout_s": a number of seconds > 0', 400)
            timeout_s = None if timeout is None else float(timeout)
            self.port.set_plant(pack_id, name, float(value), timeout_s)
            return f"plant {name} = {value:g}"

        return await self._write(request, plant)


def _encode(document: Mapping[str, JsonValue]) -> bytes:
    """A push: compact JSON, UTF-8."""
    return json.dumps(document, separators=(",", ":")).encode()


def _answer(status: int, **body: JsonValue) -> web.Response:
    return web.json_response(body, status=status)
