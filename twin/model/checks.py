"""Small invariant checks shared by the core's value objects (they raise ValueError)."""

from __future__ import annotations


def require_non_negative(obj: object, *names: str) -> None:
    """Raise ValueError naming the first of ``names`` whose value on ``obj`` is negative."""
    for name in names:
        if getattr(obj, name) < 0:
            raise ValueError(f"{name} must not be negative")
