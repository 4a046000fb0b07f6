"""A real MQTT broker for the tests, on a free loopback port: mosquitto, else amqtt.

mosquitto when it is installed (``.ci/run`` installs it with apt-get), otherwise the embedded
amqtt broker from the test extra, run as its own process so that a test can stop and restart
it while the twin runs. ``TWIN_TEST_BROKER=amqtt`` (or ``mosquitto``) picks one.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.e2e.service import free_port


def mosquitto_path() -> str | None:
    """The mosquitto binary (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("mosquitto")
    if found is None and os.access("/usr/sbin/mosquitto", os.X_OK):
        found = "/usr/sbin/mosquitto"
    return found


def broker_kind() -> str:
    """``mosquitto`` or ``amqtt``."""
    wanted = os.environ.get("TWIN_TEST_BROKER", "").strip().lower()
    if wanted in ("mosquitto", "amqtt"):
        return wanted
    return "mosquitto" if mosquitto_path() is not None else "amqtt"


def make_certificates(directory: Path) -> None:
    """A CA and a server certificate for 127.0.0.1 (openssl), and a CA that signed nothing."""

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    for ca in ("ca", "other-ca"):
        run(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", f"/CN=twin test {ca}", "-keyout", f"{ca}.key", "-out", f"{ca}.crt",
        )  # fmt: skip
    run(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr",
    )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    run(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
    )  # fmt: skip


class Broker:
    """One broker process; ``stop`` and ``start`` again keep the port (no persistence)."""

    def __init__(self, workdir: Path, kind: str | None = None, *, tls: bool = False) -> None:
        self.kind = kind or broker_kind()
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        """A second listener with TLS (mosquitto only), its certificates in ``workdir``."""
        if tls:
            assert self.kind == "mosquitto", "the TLS listener is mosquitto's"
            make_certificates(workdir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / f"broker-{self.kind}.log"

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            conf = self.workdir / "mosquitto.conf"
            conf.write_text(
                f"listener {self.port} {self.host}\n"
                "allow_anonymous true\n"
                "persistence false\n"
                "set_tcp_nodelay true\n"
                # Started as root, mosquitto becomes user "mosquitto", who cannot read the
                # test's directory (its TLS files): stay who we are.
                f"user {getpass.getuser()}\n"
                "log_dest stderr\n"
                "log_type error\nlog_type warning\nlog_type notice\n"
            )
            if self.tls_port is not None:
                with conf.open("a") as f:
                    f.write(
                        f"listener {self.tls_port} {self.host}\n"
                        f"cafile {self.workdir / 'ca.crt'}\n"
                        f"certfile {self.workdir / 'server.crt'}\n"
                        f"keyfile {self.workdir / 'server.key'}\n"
                    )
            path = mosquitto_path()
            assert path is not None
            return [path, "-c", str(conf)]
        conf = self.workdir / "amqtt.yaml"
        conf.write_text(
            "listeners:\n"
            "  default:\n"
            "    type: tcp\n"
            f"    bind: {self.host}:{self.port}\n"
            "plugins:\n"
            "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
            "    allow_anonymous: true\n"
        )
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(conf)]

    def start(self, timeout_s: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log.open("ab")
        self.proc = subprocess.Popen(
            self._command(), stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind} did not listen on {self.port} within {timeout_s} s")

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL) and wait for it."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Watcher:
    """A plain paho-mqtt client (not the twin's aiomqtt) that records what it receives.

    ``latest`` holds each topic's newest payload; ``retained`` the topics that came in with the
    retain flag (what the broker kept); ``history`` everything in order.
    """

    def __init__(self, broker: Broker, *topics: str, client_id: str = "watcher") -> None:
        import paho.mqtt.client as mqtt  # imported here: only the MQTT tests need it
        from paho.mqtt.enums import CallbackAPIVersion

        self._lock = threading.Lock()
        self.latest: dict[str, bytes] = {}
        self.retained: dict[str, bytes] = {}
        self.history: list[tuple[str, bytes, bool]] = []
        self.topics = topics or ("#",)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self._subscribed = threading.Event()
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(10.0):
            raise RuntimeError("the watcher could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe([(topic, 1) for topic in self.topics])
        self._subscribed.set()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        with self._lock:
            self.latest[message.topic] = message.payload
            if message.retain:
                self.retained[message.topic] = message.payload
            self.history.append((message.topic, message.payload, bool(message.retain)))

    def get(self, topic: str) -> bytes | None:
        """The newest payload on ``topic`` (None: nothing yet)."""
        with self._lock:
            return self.latest.get(topic)

    def json(self, topic: str) -> Any:
        """The newest payload on ``topic`` as JSON (None: nothing yet)."""
        payload = self.get(topic)
        return None if payload is None else json.loads(payload)

    def since(self, index: int) -> list[tuple[str, bytes, bool]]:
        """What arrived after the first ``index`` messages."""
        with self._lock:
            return list(self.history[index:])

    def count(self) -> int:
        """How many messages arrived so far."""
        with self._lock:
            return len(self.history)

    def publish(self, topic: str, payload: Any, *, retain: bool = False) -> None:
        """Publish (a dict goes as JSON) and wait until the broker has it."""
        text = json.dumps(payload) if isinstance(payload, dict) else payload
        info = self.client.publish(topic, text, qos=1, retain=retain)
        info.wait_for_publish(10.0)

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()
