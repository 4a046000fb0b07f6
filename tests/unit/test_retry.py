"""The one backoff of the retry loops."""

from __future__ import annotations

import pytest

from twin.retry import Backoff


def test_the_delay_doubles_up_to_the_ceiling_and_a_success_resets_it() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.next_s() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    backoff.reset()
    assert backoff.next_s() == 0.5


def test_a_constant_backoff_is_min_equal_max() -> None:
    backoff = Backoff(2.0, 2.0)
    assert {backoff.next_s() for _ in range(3)} == {2.0}


@pytest.mark.parametrize(("lo", "hi", "factor"), [(0.0, 1.0, 2.0), (2.0, 1.0, 2.0), (1, 2, 0.5)])
def test_impossible_backoffs_are_refused(lo: float, hi: float, factor: float) -> None:
    with pytest.raises(ValueError, match=r"min_s <= max_s|factor"):
        Backoff(lo, hi, factor=factor)


@pytest.mark.asyncio
async def test_wait_sleeps_the_delay() -> None:
    backoff = Backoff(0.001, 0.002)
    assert await backoff.wait() == 0.001
    assert backoff.delay_s == 0.002
