"""An exporter that ends for any reason but the service's stop is restarted, never lost."""

from __future__ import annotations

import asyncio
import logging

import pytest

from twin import app
from twin.logs import RepeatFilter


def test_an_exporter_that_ends_is_logged_and_runs_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0
    running = asyncio.Event()

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("bug number 1")
        if calls == 2:
            return  # ended by itself
        if calls == 3:
            # A cancellation nobody asked for (what Python 3.11's TaskGroup left behind).
            raise asyncio.CancelledError
        running.set()
        await asyncio.Event().wait()

    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fast_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await real_sleep(0)

    async def main() -> None:
        supervisor = asyncio.create_task(app._supervised("can", flaky))
        async with asyncio.timeout(10):
            await running.wait()
        # The service's own stop: the supervisor and its exporter end, nothing restarts.
        supervisor.cancel()
        with pytest.raises(asyncio.CancelledError):
            await supervisor

    monkeypatch.setattr(asyncio, "sleep", fast_sleep)  # the module app uses
    with caplog.at_level(logging.ERROR, logger="twin"):
        asyncio.run(main())
    assert calls == 4
    assert sleeps == [1.0, 2.0, 4.0]  # backoff doubles
    assert "can: stopped by an unexpected error" in caplog.text and "bug number 1" in caplog.text
    assert "can: ended by itself" in caplog.text
    assert "can: ended by a cancellation nobody asked for" in caplog.text


def test_a_flood_of_one_log_line_is_cut_and_counted() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RepeatFilter(burst=3, window_s=10.0))
    logger = logging.getLogger("twin.test.flood")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for n in range(1000):
            record = logger.makeRecord(
                logger.name, logging.WARNING, __file__, 1, "peer %d closed", (n,), None
            )
            record.created = 100.0 + n * 0.001  # 1,000 lines in one second
            logger.handle(record)
        other = logger.makeRecord(logger.name, logging.WARNING, __file__, 1, "other", (), None)
        other.created = 100.5
        logger.handle(other)  # another kind still gets through
        late = logger.makeRecord(
            logger.name, logging.WARNING, __file__, 1, "peer %d closed", (7,), None
        )
        late.created = 111.0  # after the window: written, with what was left out
        logger.handle(late)
    finally:
        logger.removeHandler(handler)
    lines = [r.getMessage() for r in records]
    assert lines == [
        "peer 0 closed",
        "peer 1 closed",
        "peer 2 closed",
        "other",
        "peer 7 closed (+997 like it left out)",
    ]
