"""The bounds every writable setting shares, on every path that writes one."""

from __future__ import annotations

import pytest

from tests.factories import lfp_settings
from tests.frames import sample_frame
from twin.model.settings import CAPACITY_WH_RANGE, with_settings, writable_value_problem
from twin.protocol.frame import encode_frame
from twin.protocol.shadow import PackShadow


@pytest.mark.parametrize("capacity_wh", [1e300, 6_553_501.0, 99.0, 0.0, -5.0])
def test_a_capacity_the_frame_cannot_carry_is_refused(capacity_wh: float) -> None:
    with pytest.raises(ValueError, match=r"capacity_wh .* is out of range"):
        with_settings(lfp_settings(), {"capacity_wh": capacity_wh})
    assert writable_value_problem("capacity_wh", capacity_wh) is not None


def test_the_largest_capacity_goes_through_the_frame() -> None:
    # The top of the range encodes (u16 x 0.1 kWh) and decodes back.
    top = with_settings(lfp_settings(), {"capacity_wh": CAPACITY_WH_RANGE[1]})
    frame = sample_frame().replace(capacity_kwh=top.capacity_wh / 1000.0)
    state = PackShadow("p", top).feed(encode_frame(frame), 0.0, 740_000)
    assert state is not None and state.logic is not None


def test_the_charge_restart_stays_above_the_discharge_restart() -> None:
    with pytest.raises(ValueError, match="both relays off for ever"):
        with_settings(lfp_settings(), {"charge_restart_pct": 5.0, "discharge_restart_pct": 20.0})
    ok = with_settings(lfp_settings(), {"charge_restart_pct": 21.0, "discharge_restart_pct": 20.0})
    assert (ok.charge_restart_pct, ok.discharge_restart_pct) == (21.0, 20.0)


def test_writable_value_problem_names_the_problem() -> None:
    assert writable_value_problem("vmax_v", 3.6) is None
    assert writable_value_problem("vmax_v", float("nan")) == "vmax_v nan is not a finite number"
    assert "not a writable setting" in str(writable_value_problem("cell_count", 4))
