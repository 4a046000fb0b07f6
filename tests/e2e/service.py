"""``twin run`` as a subprocess for end-to-end tests: start, watch its JSON log, stop."""

from __future__ import annotations

import json
import os
import queue
import random
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

TWIN = [sys.executable, "-m", "twin"]

#: A small pack: quick to emulate, plain thresholds.
CONFIG = """
[[pack]]
id = "pack1"
chemistry = "LiFePO4"
cells = 8
capacity_wh = 5734
tmin_c = 0.0
tmax_c = 55.0
pin = "4321"

[pack.source]
kind = "emulator"
true_soc_pct = 55
stale_after_s = {stale_after_s}

[store]
path = "state.json"
save_interval_s = {save_interval_s}

[modbus]
port = {port}

[web]
enabled = false        # the dashboard has its own tests
"""


#: ``twin run`` with MQTT on a test broker (and no CAN): the extra of ``write_config``.
MQTT_EXTRA = """
[can]
enabled = false

[mqtt]
host = "127.0.0.1"
port = {broker_port}
prefix = "{prefix}"
"""


def mqtt_config(directory: Path, broker_port: int) -> tuple[Path, int, str]:
    """A config with MQTT on ``broker_port`` under a fresh prefix: (path, Modbus port, prefix).

    One prefix per test: a broker left over by another run never mixes in.
    """
    prefix = f"t{random.randrange(16**8):08x}"
    port = free_port()
    extra = MQTT_EXTRA.format(broker_port=broker_port, prefix=prefix)
    return write_config(directory, port=port, extra=extra), port, prefix


def run_twin(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``twin ARGS`` to its end (at most 60 s); its output captured."""
    return subprocess.run(
        [*TWIN, *args], capture_output=True, text=True, timeout=60, cwd=cwd, check=False
    )


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def write_config(
    directory: Path,
    *,
    save_interval_s: float = 1.0,
    stale_after_s: float = 10.0,
    port: int | None = None,
    extra: str = "",
) -> Path:
    """A config in ``directory`` (its state file beside it, Modbus on ``port`` or a free one)."""
    path = directory / "twin.toml"
    text = CONFIG.format(
        save_interval_s=save_interval_s,
        stale_after_s=stale_after_s,
        port=port if port is not None else free_port(),
    )
    path.write_text(text + extra, encoding="utf-8")
    return path


class TwinProcess:
    """``twin run`` in a subprocess; its JSON log lines are collected as they come."""

    def __init__(
        self,
        config: Path | None,
        *args: str,
        speed: float = 1.0,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        nofile: int | None = None,
    ) -> None:
        self.command = [
            *TWIN,
            "run",
            *(["--config", str(config)] if config is not None else []),
            "--quiet",
            "--log-format",
            "json",
            "--speed",
            str(speed),
            *args,
        ]
        directory = cwd if cwd is not None else (config.parent if config is not None else None)
        assert directory is not None, "give a config or a working directory"
        self.cwd = directory
        self.extra_env = env or {}
        self.nofile = nofile
        """A lower limit of open files for the twin (RLIMIT_NOFILE), as on many hosts."""
        self.logs: list[dict[str, Any]] = []
        self.other_lines: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> TwinProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def start(self) -> None:
        """Start the process (its stderr is read by a thread)."""
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.extra_env)
        self.process = subprocess.Popen(
            self.command,
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            preexec_fn=self._limits if self.nofile is not None else None,
        )
        stderr = self.process.stderr
        assert stderr is not None

        def pump() -> None:
            for line in stderr:
                self._lines.put(line)
            self._lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

    def _limits(self) -> None:
        assert self.nofile is not None
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.nofile, self.nofile))

    def _drain(self, timeout_s: float) -> bool:
        """Take the lines available within ``timeout_s``; False once the stream ended."""
        try:
            line = self._lines.get(timeout=timeout_s)
        except queue.Empty:
            return True
        while True:
            if line is None:
                return False
            try:
                self.logs.append(json.loads(line))
            except ValueError:
                self.other_lines.append(line)
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                return True

    def wait_for_log(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 20.0
    ) -> dict[str, Any]:
        """The first log entry that matches; fails with the log so far after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while True:
            for entry in self.logs[seen:]:
                if predicate(entry):
                    return entry
            seen = len(self.logs)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such log line within {timeout_s} s: {self.transcript()}")
            if not self._drain(min(remaining, 0.2)) and not self._lines.qsize():
                for entry in self.logs[seen:]:
                    if predicate(entry):
                        return entry
                raise AssertionError(f"twin run ended: {self.transcript()}")

    def wait_for_message(self, text: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """The first log entry whose message contains ``text``."""
        return self.wait_for_log(lambda entry: text in str(entry.get("message")), timeout_s)

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 20.0) -> int:
        """Send ``signum`` and wait for the exit code (the log is read to the end)."""
        assert self.process is not None
        self.process.send_signal(signum)
        code = self.process.wait(timeout=timeout_s)
        while self._drain(0.5):
            pass
        return code

    def transcript(self) -> str:
        """The log so far, for failure messages."""
        lines = [f"{e.get('level')} {e.get('message')}" for e in self.logs] + self.other_lines
        return "\n".join(lines[-40:])


def wait_until(check: Callable[[], bool], timeout_s: float = 20.0, what: str = "condition") -> None:
    """Poll ``check`` until it is true (never a fixed sleep); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        time.sleep(0.05)
