"""``Value``: the base of the immutable records built on every cycle (inputs, frames, states).

Configuration and results are frozen dataclasses. The few records that the closed loop builds
several times per simulated second (``BmsInputs``, ``Frame``, ``SocState``, ``EnergyCounters``,
``LogicState``, ``PackState``, ...) are ``Value`` subclasses instead, because a frozen
dataclass pays one ``object.__setattr__`` call per field: about 0.12 us, some 25 us of every
closed-loop step in all. A ``Value`` assigns its fields directly (7x cheaper in CPython) and,
in the compiled build (mypyc, ``TWIN_COMPILE=1``), becomes a native struct (35x cheaper).

A subclass:

- lists its fields once, in constructor order, in ``FIELDS`` and uses it as ``__slots__``;
- assigns each of them exactly once in ``__init__``, declared ``Final``
  (``self.soc_pct: Final = soc_pct``), and validates there;
- gets equality, hashing, ``repr`` and ``replace(**changes)`` from here, all over ``FIELDS``.

Immutability: mypy rejects any assignment to a ``Final`` attribute, and the compiled build
refuses it at run time as well (CPython alone does not: the type check is the guard there).
A test checks that every subclass's ``FIELDS`` matches its constructor.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final, Self

COMPILED: Final = not __file__.endswith(".py")
"""True in the compiled build (this module is then an extension module, not a .py file)."""


class Value:
    """An immutable record: equality, hash, repr and ``replace`` over ``FIELDS``."""

    __slots__ = ()
    FIELDS: ClassVar[tuple[str, ...]] = ()
    """The fields, in the order of the constructor's parameters."""

    def values(self) -> tuple[Any, ...]:
        """The field values, in ``FIELDS`` order."""
        return tuple([getattr(self, name) for name in self.FIELDS])

    def as_dict(self) -> dict[str, Any]:
        """The fields by name (values as they are: nested records stay records)."""
        return {name: getattr(self, name) for name in self.FIELDS}

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied (validated again by the constructor)."""
        values = {name: changes.pop(name, getattr(self, name)) for name in self.FIELDS}
        if changes:
            raise TypeError(f"{type(self).__name__} has no field {', '.join(sorted(changes))}")
        return type(self)(**values)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Value)
        return self.values() == other.values()

    def __hash__(self) -> int:
        return hash((self.__class__, self.values()))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({fields})"
