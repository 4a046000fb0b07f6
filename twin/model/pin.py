"""The PIN that guards remote settings writes (Modbus, MQTT), with a lockout against guessing.

A correct PIN unlocks writes for ``unlock_s`` (60 s). Wrong PINs are counted: ``max_failures``
(5) within ``failure_window_s`` (60 s) lock the PIN out for ``lockout_s`` (5 min), during which
even the right PIN is refused. One ``PinGuard`` per pack is shared by every interface, so
guesses over Modbus and MQTT add up. Pure: the caller passes the time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum


class PinResult(Enum):
    """What a PIN attempt did."""

    UNLOCKED = "unlocked"
    WRONG = "wrong"
    LOCKED_OUT = "locked out"


class LockState(Enum):
    """Whether settings writes are allowed now (also a register: its ``code``)."""

    LOCKED = 0
    UNLOCKED = 1
    LOCKED_OUT = 2


@dataclass(frozen=True, slots=True)
class PinPolicy:
    """The timings of the guard."""

    unlock_s: float = 60.0
    max_failures: int = 5
    failure_window_s: float = 60.0
    lockout_s: float = 300.0

    def __post_init__(self) -> None:
        if min(self.unlock_s, self.failure_window_s, self.lockout_s) <= 0:
            raise ValueError("PIN timings must be > 0")
        if self.max_failures < 1:
            raise ValueError("max_failures must be >= 1")


class PinGuard:
    """The unlock state of one pack's settings."""

    def __init__(self, pin: str, policy: PinPolicy | None = None) -> None:
        if not (pin.isdigit() and 4 <= len(pin) <= 8):
            raise ValueError("a PIN is 4..8 digits")
        self._pin = pin
        self.policy = policy if policy is not None else PinPolicy()
        self._unlocked_until_s = -1.0
        self._failures: list[float] = []
        self._locked_out_until_s = -1.0
        self.wrong_total = 0
        """Wrong PINs since start (a register and a log line)."""

    def matches(self, attempt: str) -> bool:
        """``attempt`` is the PIN (constant-time comparison)."""
        return hmac.compare_digest(attempt.encode(), self._pin.encode())

    def matches_number(self, number: int) -> bool:
        """``number`` (a PIN written as an unsigned integer register) is the PIN."""
        return number >= 0 and int(self._pin) == number

    def attempt(self, correct: bool, now_s: float) -> PinResult:
        """Record an unlock attempt whose correctness the caller checked with ``matches``.

        A right PIN opens the unlock window (writes allowed for ``unlock_s``).
        """
        result = self.authorize(correct, now_s)
        if result is PinResult.UNLOCKED:
            self._unlocked_until_s = now_s + self.policy.unlock_s
        return result

    def authorize(self, correct: bool, now_s: float) -> PinResult:
        """Record one command that carries its own PIN (an MQTT command).

        Counted against the lockout exactly as an unlock attempt, but a right PIN authorises
        this command only: it opens no unlock window for the register interface.
        """
        if self.state(now_s) is LockState.LOCKED_OUT:
            return PinResult.LOCKED_OUT
        if correct:
            self._failures.clear()
            return PinResult.UNLOCKED
        self.wrong_total += 1
        window = self.policy.failure_window_s
        self._failures = [t for t in self._failures if now_s - t < window] + [now_s]
        if len(self._failures) >= self.policy.max_failures:
            self._failures.clear()
            self._unlocked_until_s = -1.0
            self._locked_out_until_s = now_s + self.policy.lockout_s
            return PinResult.LOCKED_OUT
        return PinResult.WRONG

    def state(self, now_s: float) -> LockState:
        """Locked, unlocked (writes allowed) or locked out."""
        if now_s < self._locked_out_until_s:
            return LockState.LOCKED_OUT
        if now_s < self._unlocked_until_s:
            return LockState.UNLOCKED
        return LockState.LOCKED

    def remaining_s(self, now_s: float) -> float:
        """Seconds until the present unlock or lockout ends (0 when locked)."""
        state = self.state(now_s)
        if state is LockState.LOCKED_OUT:
            return self._locked_out_until_s - now_s
        if state is LockState.UNLOCKED:
            return self._unlocked_until_s - now_s
        return 0.0

    def lock(self) -> None:
        """End an unlock early (a client writes 0 to the unlock register)."""
        self._unlocked_until_s = -1.0
