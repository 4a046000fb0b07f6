"""Persistence: what each pack's twin must not forget across a restart.

Per pack: the SOC with its calibrated flag and the time since the last full charge, the energy
counters, and the settings written remotely (Modbus or MQTT, after the PIN). One JSON file for
the whole twin, written atomically: a temporary file beside it, flushed and fsync'ed, renamed
over the old one, and the directory fsync'ed, so a crash (even ``kill -9`` or a power cut)
leaves either the old file or the new one, never a mixture.

A file that cannot be read back (truncated, not JSON, wrong fields, impossible values) is moved
aside as ``<name>.corrupt-<UTC time>`` with a warning, and the twin starts fresh from its
configuration: a damaged state file never stops the start.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.errors import StoreError
from twin.model.energy import EnergyCounters
from twin.model.settings import WRITABLE_SETTINGS, writable_value_problem
from twin.model.soc import SocState

log = logging.getLogger(__name__)

#: The file format; a file with another number is kept aside like a corrupt one.
STATE_FORMAT = 1


@dataclass(frozen=True, slots=True)
class PackMemory:
    """What one pack's twin keeps across restarts."""

    soc: SocState
    """SOC, calibrated flag and time since full (the empty-recalibration timer restarts)."""
    energy: EnergyCounters
    settings: Mapping[str, float] = field(default_factory=dict)
    """Remotely written settings (names of ``WRITABLE_SETTINGS``), applied over the config."""


# ---- the file's schema (checked on load) ----------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class _EnergyModel(_Strict):
    harvested_today_wh: float = Field(ge=0)
    consumed_today_wh: float = Field(ge=0)
    harvested_total_wh: float = Field(ge=0)
    consumed_total_wh: float = Field(ge=0)
    day: int | None


class _PackModel(_Strict):
    soc_pct: float = Field(ge=0, le=100)
    soc_calibrated: bool
    time_since_full_s: float | None = Field(ge=0)
    energy: _EnergyModel
    settings: dict[str, float]


class _FileModel(_Strict):
    format: int
    saved_at: str
    packs: dict[str, _PackModel]


def _to_json(memories: Mapping[str, PackMemory], saved_at: str) -> dict[str, Any]:
    packs: dict[str, Any] = {}
    for pack_id, memory in memories.items():
        energy = memory.energy
        packs[pack_id] = {
            "soc_pct": memory.soc.soc_pct,
            "soc_calibrated": memory.soc.calibrated,
            "time_since_full_s": memory.soc.time_since_full_s,
            "energy": {
                "harvested_today_wh": energy.harvested_today_wh,
                "consumed_today_wh": energy.consumed_today_wh,
                "harvested_total_wh": energy.harvested_total_wh,
                "consumed_total_wh": energy.consumed_total_wh,
                "day": energy.day,
            },
            "settings": dict(memory.settings),
        }
    return {"format": STATE_FORMAT, "saved_at": saved_at, "packs": packs}


def _from_model(model: _PackModel) -> PackMemory:
    unknown = sorted(set(model.settings) - set(WRITABLE_SETTINGS))
    if unknown:
        raise ValueError(f"settings {', '.join(unknown)} are not writable settings")
    for name, value in model.settings.items():
        problem = writable_value_problem(name, value)
        if problem is not None:
            raise ValueError(f"impossible setting: {problem}")
    e = model.energy
    return PackMemory(
        soc=SocState(model.soc_pct, model.soc_calibrated, model.time_since_full_s),
        energy=EnergyCounters(
            e.harvested_today_wh,
            e.consumed_today_wh,
            e.harvested_total_wh,
            e.consumed_total_wh,
            e.day,
        ),
        settings=dict(model.settings),
    )


class StateStore:
    """The state file of one twin: ``load`` at start, ``save`` every interval and at the end."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.saves = 0
        self.kept_aside: Path | None = None
        """Where a corrupt file was moved by the last ``load``, if any."""

    def load(self) -> dict[str, PackMemory]:
        """The packs' memories; empty when there is no file or it was corrupt (kept aside)."""
        self.kept_aside = None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("state file %s cannot be read (%s): starting fresh", self.path, exc)
            return {}
        try:
            model = _FileModel.model_validate_json(raw)
            if model.format != STATE_FORMAT:
                raise ValueError(f"format {model.format} (this twin reads {STATE_FORMAT})")
            return {pack_id: _from_model(pack) for pack_id, pack in model.packs.items()}
        except (ValidationError, ValueError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self._keep_aside(reason)
            return {}

    def keep_copy(self, reason: str) -> Path | None:
        """Copy the file aside as ``<name>.rejected-<UTC time>`` (it stays in place).

        For a file that reads well but holds values the configuration cannot take (settings
        that do not fit the pack): the twin uses its configuration, and the next save replaces
        the file, so the rejected values are kept for whoever wants to see them.
        """
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.rejected-{stamp}")
        try:
            target.write_bytes(self.path.read_bytes())
        except OSError as exc:
            log.warning("state file %s (%s) cannot be copied aside: %s", self.path, reason, exc)
            return None
        log.warning("state file %s: %s: a copy is kept as %s", self.path, reason, target.name)
        return target

    def _keep_aside(self, reason: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, target)
        except OSError as exc:
            log.warning(
                "state file %s is corrupt (%s) and cannot be moved aside (%s): starting fresh",
                self.path,
                reason,
                exc,
            )
            return
        self.kept_aside = target
        log.warning(
            "state file %s is corrupt (%s): kept as %s; starting fresh from the configuration",
            self.path,
            reason,
            target.name,
        )

    def save(self, memories: Mapping[str, PackMemory]) -> None:
        """Write every pack's memory atomically; raises ``StoreError`` when it cannot."""
        saved_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        text = json.dumps(_to_json(memories, saved_at), indent=1, allow_nan=False)
        directory = self.path.parent
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=directory
            )
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temp_name, self.path)
            except BaseException:
                Path(temp_name).unlink(missing_ok=True)
                raise
            _fsync_directory(directory)
        except (OSError, ValueError) as exc:
            raise StoreError(f"state file {self.path} cannot be written: {exc}") from exc
        self.saves += 1


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (where the platform allows opening a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
