"""PinGuard: unlock for 60 s, five wrong PINs within a minute lock out for five minutes."""

from __future__ import annotations

import pytest

from twin.model.pin import LockState, PinGuard, PinResult


def test_the_right_pin_unlocks_for_a_minute() -> None:
    guard = PinGuard("4321")
    assert guard.state(0.0) is LockState.LOCKED
    assert guard.attempt(guard.matches("4321"), 10.0) is PinResult.UNLOCKED
    assert guard.state(69.9) is LockState.UNLOCKED
    assert guard.remaining_s(40.0) == pytest.approx(30.0)
    assert guard.state(70.0) is LockState.LOCKED
    guard.attempt(True, 100.0)
    guard.lock()
    assert guard.state(101.0) is LockState.LOCKED


def test_numbers_and_strings_compare_as_the_pin() -> None:
    guard = PinGuard("01234")
    assert guard.matches("01234") and not guard.matches("1234")
    assert guard.matches_number(1234) and not guard.matches_number(4321)
    assert not guard.matches_number(-1)


def test_five_wrong_pins_within_a_minute_lock_out_for_five_minutes() -> None:
    guard = PinGuard("4321")
    results = [guard.attempt(False, 10.0 * i) for i in range(5)]
    assert results == [PinResult.WRONG] * 4 + [PinResult.LOCKED_OUT]
    assert guard.state(41.0) is LockState.LOCKED_OUT
    # Even the right PIN is refused while locked out ...
    assert guard.attempt(True, 100.0) is PinResult.LOCKED_OUT
    assert guard.remaining_s(100.0) == pytest.approx(240.0)
    # ... and accepted after the five minutes.
    assert guard.state(340.0) is LockState.LOCKED
    assert guard.attempt(True, 340.0) is PinResult.UNLOCKED
    assert guard.wrong_total == 5


def test_wrong_pins_spread_over_more_than_a_minute_do_not_lock_out() -> None:
    guard = PinGuard("4321")
    for i in range(10):
        assert guard.attempt(False, 20.0 * i) is PinResult.WRONG
    assert guard.state(200.0) is LockState.LOCKED


def test_a_right_pin_clears_the_failures() -> None:
    guard = PinGuard("4321")
    for i in range(4):
        guard.attempt(False, float(i))
    guard.attempt(True, 5.0)
    assert guard.attempt(False, 6.0) is PinResult.WRONG


@pytest.mark.parametrize("pin", ["123", "123456789", "12a4", ""])
def test_a_pin_is_four_to_eight_digits(pin: str) -> None:
    with pytest.raises(ValueError, match=r"4\.\.8 digits"):
        PinGuard(pin)


def test_a_command_with_its_own_pin_opens_no_unlock_window() -> None:
    guard = PinGuard("4321")
    assert guard.authorize(guard.matches("4321"), 10.0) is PinResult.UNLOCKED
    assert guard.state(10.0) is LockState.LOCKED  # Modbus writes stay locked


def test_wrong_pins_of_commands_and_unlocks_add_up_to_one_lockout() -> None:
    guard = PinGuard("4321")
    results = [
        guard.authorize(False, 1.0),
        guard.attempt(False, 2.0),
        guard.authorize(False, 3.0),
        guard.attempt(False, 4.0),
        guard.authorize(False, 5.0),
    ]
    assert results == [PinResult.WRONG] * 4 + [PinResult.LOCKED_OUT]
    assert guard.authorize(True, 6.0) is PinResult.LOCKED_OUT
    assert guard.attempt(True, 6.0) is PinResult.LOCKED_OUT
