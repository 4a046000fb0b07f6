"""An exporter that fails in a way it did not expect is restarted, never the end of the twin."""

from __future__ import annotations

import asyncio
import logging

import pytest

from twin import app


def test_an_unexpected_error_is_logged_and_the_exporter_runs_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError(f"bug number {calls}")

    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fast_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fast_sleep)  # the module app uses
    with caplog.at_level(logging.ERROR, logger="twin"):
        asyncio.run(app._supervised("can", flaky))
    assert calls == 3
    assert sleeps == [1.0, 2.0]  # backoff doubles
    assert "can: stopped by an unexpected error" in caplog.text and "bug number 2" in caplog.text
