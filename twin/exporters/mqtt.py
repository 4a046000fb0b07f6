"""The MQTT exporter: state, availability, commands and Home Assistant discovery (aiomqtt).

The only module that imports aiomqtt. What is published is data in ``mqtt_map``; this module
keeps a broker connection alive and moves that data:

- at each connect: the discovery configs, the whole state of every pack and the fleet
  (retained), then ``<prefix>/status`` = ``online`` (retained; the broker publishes the last
  will ``offline`` when the twin dies, and the twin publishes it itself when it stops);
- then on change (deadbands) and everything again every ``refresh_s``;
- commands: ``set``, ``cmd/clear_counters`` (both with the pack's PIN, through the same
  ``PinGuard`` as Modbus) and ``emulator/fault/<name>``, each answered on ``<unit>/result``;
- retained topics of packs no longer configured (their state and discovery configs, found
  when the broker hands its retained messages over) are cleared with empty retained payloads.

A broker that is down or goes away never stops the twin: the exporter retries with a capped
exponential backoff and publishes everything again once it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Coroutine, Mapping
from typing import Any

import aiomqtt
from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from twin.errors import BrokerError, BrokerRefusedError, CommandError
from twin.exporters.mqtt_map import (
    CELL_KEYS,
    FLEET_UNIT,
    Command,
    JsonValue,
    MqttSettings,
    cell_values,
    changed,
    command_pin,
    command_subscriptions,
    discovery_configs,
    fleet_state,
    object_prefix,
    pack_state,
    parse_command,
    plant_state,
    plant_values,
    result_payload,
    setting_values,
    unit_of_state_topic,
    unit_topics,
    value_payload,
)
from twin.exporters.ports import CommandPort, StateFeed
from twin.model.pin import PinResult
from twin.model.settings import WRITABLE_SETTINGS, writable_values
from twin.retry import Backoff

log = logging.getLogger("twin.mqtt")

#: "No snapshot seen yet" (None is a pack that has none).
_NOTHING = object()

#: Errors that mean "the link to the broker is gone": reconnect.
_LINK_ERRORS = (aiomqtt.MqttError, OSError, ssl.SSLError)


class MqttExporter:
    """Publishes every pack and the fleet to an MQTT broker and carries out commands."""

    def __init__(
        self,
        feed: StateFeed,
        port: CommandPort,
        settings: MqttSettings,
        cell_counts: Mapping[str, int],
        *,
        version: str = "",
    ) -> None:
        self.feed = feed
        self.port = port
        self.settings = settings
        self.units = (*feed.pack_ids, FLEET_UNIT)
        self.connected = False
        self.connections = 0
        """Successful connects since start (1 + reconnects)."""
        self.published = 0
        self.commands = 0
        self.retry_in_s: float | None = None
        self._last: dict[str, JsonValue] = {}
        """Per-value topic -> the value last published (deadbands compare against it)."""
        self._last_text: dict[str, str] = {}
        """JSON topics (settings, faults) -> the payload last published."""
        self._seen: dict[str, object] = {}
        """Per unit, the snapshot last published (unchanged ones are skipped)."""
        self._publish_lock = asyncio.Lock()
        self._v5 = settings.protocol != "3.1.1"
        """MQTT 5 now ("auto" falls back to 3.1.1 once a broker refuses it)."""
        self._discovery: dict[str, dict[str, Any]] = {}
        if settings.ha_discovery:
            for pack_id in feed.pack_ids:
                self._discovery.update(
                    discovery_configs(
                        pack_id,
                        settings.base(pack_id),
                        settings.status_topic,
                        ha_prefix=settings.ha_prefix,
                        cells=cell_counts.get(pack_id, 0) if settings.ha_cells else 0,
                        version=version,
                    )
                )
            self._discovery.update(
                discovery_configs(
                    FLEET_UNIT,
                    settings.base(FLEET_UNIT),
                    settings.status_topic,
                    ha_prefix=settings.ha_prefix,
                    fleet=True,
                    version=version,
                )
            )

    # ---- the connection --------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected for ever (reconnecting with backoff); ``offline`` when stopped."""
        s = self.settings
        backoff = Backoff(s.reconnect_min_s, s.reconnect_max_s)
        while True:
            try:
                async with _broker_errors():
                    await self._session()
            except BrokerRefusedError as exc:
                refusal = exc.__cause__
                if (
                    self._v5
                    and s.protocol == "auto"
                    and isinstance(refusal, MqttConnectError)
                    and _refuses_v5(refusal)
                ):
                    self._fall_back_to_3_1_1(str(exc))
                    continue
                log.warning(
                    "mqtt: the broker %s:%d refused the connection (%s); retrying in %.1f s",
                    s.host,
                    s.port,
                    exc,
                    backoff.delay_s,
                )
            except BrokerError as exc:
                reason = str(exc)
                if (
                    self._v5
                    and s.protocol == "auto"
                    and not self.connected
                    and isinstance(exc.__cause__, aiomqtt.MqttError)
                    and reason == "Operation timed out"
                ):
                    # The socket connected, the broker never answered the MQTT 5 CONNECT
                    # (amqtt 0.12 chokes on its will properties): try 3.1.1 next.
                    self._fall_back_to_3_1_1("no answer to an MQTT 5 connect")
                if self.connected:
                    log.warning("mqtt: lost the broker %s:%d (%s)", s.host, s.port, reason)
                    backoff.reset()
                else:
                    log.warning(
                        "mqtt: cannot reach the broker %s:%d (%s); retrying in %.1f s",
                        s.host,
                        s.port,
                        reason,
                        backoff.delay_s,
                    )
            # Stopping: a link error raised while saying goodbye must not swallow the
            # cancellation (the service would wait for this task for ever).
            _raise_if_cancelled()
            self.connected = False
            self.retry_in_s = backoff.delay_s
            await backoff.wait()

    def _fall_back_to_3_1_1(self, why: str) -> None:
        s = self.settings
        log.warning(
            "mqtt: the broker %s:%d does not speak MQTT 5 (%s): using 3.1.1, with which a "
            "command published with the retain flag while the twin is connected is carried out",
            s.host,
            s.port,
            why,
        )
        self._v5 = False

    def _client(self) -> aiomqtt.Client:
        s = self.settings
        return aiomqtt.Client(
            s.host,
            s.port,
            identifier=s.client_id or f"twin-{object_prefix(s.prefix)}-{os.getpid()}",
            protocol=aiomqtt.ProtocolVersion.V5 if self._v5 else aiomqtt.ProtocolVersion.V311,
            username=s.username,
            password=s.password,
            will=aiomqtt.Will(s.status_topic, "offline", qos=s.qos, retain=True),
            keepalive=s.keepalive_s,
            timeout=s.timeout_s,
            tls_context=self._tls_context() if s.tls else None,
            tls_insecure=s.tls_insecure if s.tls else None,
            # A state is a few small messages: Nagle's algorithm held each back for the
            # previous one's ACK (40 ms of delayed ACK on Linux).
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        )

    def _tls_context(self) -> ssl.SSLContext:
        s = self.settings
        context = ssl.create_default_context(cafile=s.ca_file)
        if s.cert_file is not None:
            context.load_cert_chain(s.cert_file, s.key_file)
        if s.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def _session(self) -> None:
        """One connection: everything published, then changes and commands until it drops."""
        s = self.settings
        async with self._client() as client:
            self.connections += 1
            self.retry_in_s = None
            log.info(
                "mqtt: connected to %s:%d%s",
                s.host,
                s.port,
                "" if self.connections == 1 else f" again (connection {self.connections})",
            )
            self.connected = True
            try:
                self._last.clear()
                self._last_text.clear()
                self._seen.clear()
                commands = command_subscriptions(s)
                topics = [
                    f"{s.prefix}/+/state",
                    f"{s.ha_prefix}/sensor/+/config",
                    f"{s.ha_prefix}/binary_sensor/+/config",
                ]
                if s.ha_discovery:
                    topics.append(f"{s.ha_prefix}/status")
                if not s.cells:
                    topics.append(f"{s.prefix}/+/cell/+/+")  # to clear a run with cells
                await client.subscribe(self._subscriptions(commands, topics))
                await self._announce(client)
                await _until_one_ends(self._follow(client), self._receive(client))
            finally:
                # A clean stop says goodbye itself (the broker sends the will only when the
                # connection dies); a lost link has nothing left to send it on.
                if self.connected:
                    with contextlib.suppress(*_LINK_ERRORS, TimeoutError):
                        async with asyncio.timeout(2.0):
                            await client.publish(s.status_topic, "offline", s.qos, retain=True)

    def _subscriptions(self, commands: list[str], others: list[str]) -> list[tuple[str, Any]]:
        """The topic filters with their options.

        With MQTT 5 the command filters ask for "retain as published": a command published
        with the retain flag keeps it even when it arrives live, and is refused (a stored
        command would run again at every reconnect). The other filters keep the usual rule
        (the flag marks what the broker hands over at subscription).
        """
        qos = self.settings.qos
        if not self._v5:
            return [(topic, qos) for topic in (*commands, *others)]
        return [(t, SubscribeOptions(qos=qos, retainAsPublished=True)) for t in commands] + [
            (t, SubscribeOptions(qos=qos)) for t in others
        ]

    async def _announce(self, client: aiomqtt.Client) -> None:
        """Discovery configs, the whole state, then ``online`` (the state is complete by then)."""
        configs = [(topic, json.dumps(config)) for topic, config in self._discovery.items()]
        await self._send_batch(client, configs)
        await self._publish_all(client, force=True)
        await self._send(client, self.settings.status_topic, "online", retain=True)

    async def _send(
        self, client: aiomqtt.Client, topic: str, payload: str, *, retain: bool
    ) -> None:
        await client.publish(topic, payload, self.settings.qos, retain=retain)
        self.published += 1
        _raise_if_cancelled()

    # ---- state -----------------------------------------------------------------------------

    async def _follow(self, client: aiomqtt.Client) -> None:
        """Publish what changed at each new state; everything every ``refresh_s``."""
        loop = asyncio.get_running_loop()
        seen = self.feed.version
        next_refresh = loop.time() + self.settings.refresh_s
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, next_refresh - loop.time())):
                    seen = await self.feed.wait(seen)
            force = loop.time() >= next_refresh
            if force:
                next_refresh = loop.time() + self.settings.refresh_s
            await self._publish_all(client, force=force)

    async def _publish_all(self, client: aiomqtt.Client, *, force: bool) -> None:
        async with self._publish_lock:
            for unit in self.units:
                await self._publish_unit(client, unit, force=force)

    async def _publish_unit(self, client: aiomqtt.Client, unit: str, *, force: bool) -> None:
        """What changed in one unit (everything with ``force``), as one pipelined batch."""
        base = self.settings.base(unit)
        fleet = unit == FLEET_UNIT
        source: object = self.feed.fleet if fleet else self.feed.pack(unit)
        batch: list[tuple[str, str]] = []
        values_sent: dict[str, JsonValue] = {}
        # An unchanged snapshot (another pack's frame woke us) costs one identity test, not
        # a state JSON and 765 cell comparisons.
        if force or source is not self._seen.get(unit, _NOTHING):
            readout = None if fleet else self.feed.pack(unit)
            values = fleet_state(self.feed.fleet) if fleet else pack_state(readout)
            updates = [
                (f"{base}/{key}", value)
                for key, value in values.items()
                if force or self._moved(f"{base}/{key}", value, key)
            ]
            if updates:
                batch.append((f"{base}/state", json.dumps(values)))
            if not fleet and self.settings.cells:
                for n, cell in enumerate(cell_values(readout), start=1):
                    for key in CELL_KEYS:
                        topic = f"{base}/cell/{n}/{key}"
                        value = cell[key]
                        if force or self._moved(topic, value, key):
                            updates.append((topic, value))
            for topic, value in updates:
                batch.append((topic, value_payload(value)))
                values_sent[topic] = value
        texts: dict[str, str] = {}
        if not fleet:
            texts[f"{base}/settings"] = self._settings_json(unit)
            if self.port.emulated(unit):
                faults = json.dumps(self.port.active_faults(unit), sort_keys=True)
                texts[f"{base}/emulator/faults"] = faults
                plant = json.dumps(plant_state(self.feed.pack(unit)), sort_keys=True)
                texts[f"{base}/emulator/plant"] = plant
            for topic, text in list(texts.items()):
                if force or self._last_text.get(topic) != text:
                    batch.append((topic, text))
                else:
                    del texts[topic]
        await self._send_batch(client, batch)
        self._seen[unit] = source
        self._last.update(values_sent)
        self._last_text.update(texts)

    def _moved(self, topic: str, value: JsonValue, key: str) -> bool:
        return topic not in self._last or changed(self._last[topic], value, key)

    async def _send_batch(self, client: aiomqtt.Client, batch: list[tuple[str, str]]) -> None:
        """Publish retained messages, one acknowledgement at a time.

        Deliberately not concurrent: with 20 or more publishes in flight at once (paho's window)
        the aiomqtt/paho pair was seen to stop for good, and one at a time is fast enough
        (bench/bench_mqtt.py: ~2,400 messages/s on loopback, 8 x 255-cell packs in ~3 s).
        """
        for topic, payload in batch:
            await self._send(client, topic, payload, retain=True)

    def _settings_json(self, pack_id: str) -> str:
        values = writable_values(self.port.settings(pack_id))
        return json.dumps({name: round(value, 4) for name, value in values.items()})

    # ---- what arrives ------------------------------------------------------------------------

    async def _receive(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            topic = message.topic.value
            payload = message.payload
            data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
            try:
                await self._on_message(client, topic, bytes(data), retain=message.retain)
            except _LINK_ERRORS:
                raise
            except Exception:
                # A command that trips over a bug is logged; it never takes the link down.
                log.exception("mqtt: the message on %s could not be handled", topic)

    async def _on_message(
        self, client: aiomqtt.Client, topic: str, payload: bytes, *, retain: bool
    ) -> None:
        s = self.settings
        if topic == f"{s.ha_prefix}/status":
            # Home Assistant's birth message: it (re)started and asks for discovery again.
            if payload == b"online" and not retain:
                log.info("mqtt: Home Assistant is online: publishing discovery again")
                await self._announce(client)
            return
        if topic.startswith(s.ha_prefix + "/") and topic.endswith("/config"):
            if retain and payload:
                await self._clean_discovery(client, topic, payload)
            return
        unit = unit_of_state_topic(s, topic)
        if unit is not None:
            if retain and payload and unit not in self.units:
                await self._clean_unit(client, unit, payload)
            return
        if not s.cells and self._ours(topic) and "/cell/" in topic:
            if retain and payload:
                await self._send(client, topic, "", retain=True)  # cells = false now
            return
        command = parse_command(s, topic, payload)
        if command is None or (retain and not payload):
            return  # not a command, or a retained command being cleared
        if retain:
            # A stored command would run again at every reconnect: refuse it, and clear it
            # from the broker so that it is not refused again at each one.
            log.warning("mqtt: a retained command on %s refused and cleared", topic)
            await self._result(
                client, command, ok=False, message="a retained command is not carried out"
            )
            await self._send(client, topic, "", retain=True)
            return
        self.commands += 1
        try:
            if command.problem is not None:
                raise CommandError(command.problem)
            message, extra = await self._execute(client, command)
        except (CommandError, ValueError, KeyError) as exc:
            why = str(exc).strip("'")
            log.warning("mqtt: %s on %s refused: %s", command.label, command.unit, why)
            await self._result(client, command, ok=False, message=why)
            return
        except _LINK_ERRORS:
            raise
        except Exception as exc:
            # A bug: the sender still gets an answer, and the link stays up.
            log.exception("mqtt: %s on %s failed", command.label, command.unit)
            await self._result(
                client, command, ok=False, message=f"internal error ({type(exc).__name__})"
            )
            return
        log.info("mqtt: %s on %s: %s", command.label, command.unit, message)
        await self._result(client, command, ok=True, message=message, **extra)

    async def _result(
        self, client: aiomqtt.Client, command: Command, *, ok: bool, message: str, **extra: Any
    ) -> None:
        topic = f"{self.settings.base(command.unit)}/result"
        payload = result_payload(command, ok=ok, message=message, **extra)
        await self._send(client, topic, payload, retain=False)

    async def _execute(
        self, client: aiomqtt.Client, command: Command
    ) -> tuple[str, dict[str, Any]]:
        """Carry out a command; ``CommandError`` (or ``ValueError``) says why not."""
        unit = command.unit
        if unit not in self.feed.pack_ids:
            if unit == FLEET_UNIT:
                raise CommandError("the fleet has no settings, counters or emulator: use a pack")
            raise CommandError(f"no pack {unit!r} (packs: {', '.join(self.feed.pack_ids)})")
        extra: dict[str, Any] = {}
        if command.kind == "set":
            values = setting_values(command, WRITABLE_SETTINGS)
            self._check_pin(command)
            self.port.apply_settings(unit, values)
            extra["settings"] = writable_values(self.port.settings(unit))
            message = "written: " + ", ".join(f"{k} = {v:g}" for k, v in values.items())
        elif command.kind == "cmd":
            if command.name != "clear_counters":
                raise CommandError(f"no command {command.name!r} (commands: clear_counters)")
            self._check_pin(command)
            self.port.clear_counters(unit)
            message = "energy totals cleared"
        elif command.kind == "plant":
            message, extra = self._plant(command)
        else:
            message, extra = self._fault(command)
        await self._publish_now(client, unit)
        return message, extra

    def _check_pin(self, command: Command) -> None:
        pin = command_pin(command)
        guard = self.port.pin_guard(command.unit)
        now = time.monotonic()
        result = guard.authorize(guard.matches(pin), now)
        if result is PinResult.LOCKED_OUT:
            raise CommandError(
                f"locked out after too many wrong PINs ({guard.remaining_s(now):.0f} s left)"
            )
        if result is PinResult.WRONG:
            raise CommandError("wrong PIN")

    def _fault(self, command: Command) -> tuple[str, dict[str, Any]]:
        unit = command.unit
        if not self.port.emulated(unit):
            raise CommandError(f"{unit} is not an emulated pack: it has no faults to inject")
        params = {k: v for k, v in command.payload.items() if k not in ("id", "clear")}
        clear = command.payload.get("clear", False)
        if not isinstance(clear, bool):
            raise CommandError(f'"clear": {clear!r} is not true or false')
        if clear:
            cleared = self.port.clear_fault(unit, command.name, params)
            text = f"cleared {', '.join(cleared)}" if cleared else "nothing to clear"
            return text, {"faults": self.port.active_faults(unit)}
        values = self.port.inject_fault(unit, command.name, params)
        return f"injected {command.name}", {
            "params": values,
            "faults": self.port.active_faults(unit),
        }

    def _plant(self, command: Command) -> tuple[str, dict[str, Any]]:
        unit, name = command.unit, command.name
        if not self.port.emulated(unit):
            raise CommandError(f"{unit} is not an emulated pack: its plant is real")
        value, timeout_s = plant_values(command)
        if value is None:
            cleared = self.port.clear_plant(unit, name)
            text = f"{name}: back to the profile" if cleared else f"{name}: was not set"
        else:
            self.port.set_plant(unit, name, value, timeout_s)
            text = f"{name} = {value:g}" + ("" if timeout_s is None else f" for {timeout_s:g} s")
        return text, {"plant": self.port.plant_setpoints(unit)}

    async def _publish_now(self, client: aiomqtt.Client, unit: str) -> None:
        """A command's effect on the settings and faults topics, without waiting for a frame."""
        async with self._publish_lock:
            await self._publish_unit(client, unit, force=False)

    # ---- packs no longer configured --------------------------------------------------------

    async def _clean_discovery(self, client: aiomqtt.Client, topic: str, payload: bytes) -> None:
        """A retained discovery config of this twin's prefix that it no longer publishes."""
        if topic in self._discovery:
            return
        node = object_prefix(self.settings.prefix) + "_"
        object_id = topic.rsplit("/", 2)[-2]
        if not object_id.startswith(node):
            return
        try:
            config = json.loads(payload)
        except ValueError:
            return
        state_topic = config.get("state_topic") if isinstance(config, dict) else None
        if not isinstance(state_topic, str) or not self._ours(state_topic):
            return
        log.info("mqtt: removing the Home Assistant entity %s (no longer configured)", object_id)
        await self._send(client, topic, "", retain=True)

    def _ours(self, state_topic: str) -> bool:
        """``state_topic`` is one this twin's prefix would publish (a unit's state or a cell)."""
        head = self.settings.prefix + "/"
        if not state_topic.startswith(head):
            return False
        parts = state_topic[len(head) :].split("/")
        return parts[1:] == ["state"] or (
            len(parts) == 4 and parts[1] == "cell" and parts[2].isdigit()
        )

    async def _clean_unit(self, client: aiomqtt.Client, unit: str, payload: bytes) -> None:
        """Clear every retained topic of a unit that is no longer configured."""
        cells = 255
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            count = json.loads(payload).get("cell_count")
            if isinstance(count, int) and 0 <= count <= 255:
                cells = count
        topics = unit_topics(self.settings, unit, cells)
        log.info(
            "mqtt: clearing %d retained topics of %s (no longer configured)", len(topics), unit
        )
        for topic in topics:
            await self._send(client, topic, "", retain=True)

    # ---- the status line ---------------------------------------------------------------------

    def status(self) -> str:
        """A few words for the status line."""
        if self.connected:
            commands = f", {self.commands} commands" if self.commands else ""
            return f"mqtt up ({self.settings.host}:{self.settings.port}{commands})"
        if self.retry_in_s is not None:
            return f"mqtt DOWN (retry in {self.retry_in_s:.0f} s)"
        return "mqtt connecting"


@contextlib.asynccontextmanager
async def _broker_errors() -> AsyncIterator[None]:
    """Aiomqtt's and the socket's exceptions as the twin's ``BrokerError`` (this adapter's edge).

    A refused connect becomes ``BrokerRefusedError``; the library's exception stays attached
    as ``__cause__`` (the reason code of a refusal, the text of a timeout).
    """
    try:
        yield
    except MqttConnectError as exc:
        raise BrokerRefusedError(str(exc)) from exc
    except _LINK_ERRORS as exc:
        raise BrokerError(str(exc) or type(exc).__name__) from exc


def _refuses_v5(error: MqttConnectError) -> bool:
    """A broker's answer to an MQTT 5 connect that means "I speak an older version"."""
    rc = error.rc
    return rc == 1 or (isinstance(rc, ReasonCode) and rc.value == 132)


async def _until_one_ends(*coros: Coroutine[Any, Any, None]) -> None:
    """Run ``coros`` as tasks until the first one ends; cancel the others; raise its error.

    Not a ``TaskGroup``: in Python 3.11 a TaskGroup whose child fails while the parent waits in
    ``__aexit__`` cancels the parent task and never takes that request back (``uncancel``), so
    the exporter's task stayed "cancelling" after every lost link, ``_raise_if_cancelled``
    mistook it for a stop and the exporter ended silently at the first broker outage.
    """
    tasks = [asyncio.ensure_future(coro) for coro in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if task in done and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


def _raise_if_cancelled() -> None:
    """Raise ``CancelledError`` if this task was asked to stop and the request got lost.

    Python 3.11's ``asyncio.wait_for`` (under every aiomqtt publish) returns the result and
    drops the cancellation when the acknowledgement and the cancel arrive together; the task
    then waited for the next state for ever and the service never stopped.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
