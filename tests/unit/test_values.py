"""``Value``: the records built every cycle keep the dataclass contract they replaced."""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil

import pytest

import twin.emulator
import twin.model
import twin.protocol
from twin.model.inputs import BmsInputs
from twin.model.soc import SocState
from twin.model.values import COMPILED, Value


def _value_classes() -> list[type[Value]]:
    found: dict[str, type[Value]] = {}
    for package in (twin.model, twin.protocol, twin.emulator):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            module = importlib.import_module(info.name)
            for _, cls in inspect.getmembers(module, inspect.isclass):
                if issubclass(cls, Value) and cls is not Value:
                    found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


VALUE_CLASSES = _value_classes()


def test_the_hot_records_are_values() -> None:
    names = {cls.__name__ for cls in VALUE_CLASSES}
    assert {"BmsInputs", "Frame", "SocState", "EnergyCounters", "LogicState", "PackState"} <= names


@pytest.mark.parametrize("cls", VALUE_CLASSES, ids=lambda cls: cls.__name__)
def test_fields_are_the_constructor_parameters_in_order(cls: type[Value]) -> None:
    parameters = list(inspect.signature(cls).parameters)
    assert tuple(parameters) == cls.FIELDS


def _inputs(**changes: object) -> BmsInputs:
    values: dict[str, object] = {
        "pack_voltage_v": 52.0,
        "current1_a": 10.0,
        "current2_a": None,
        "battery_current_a": 10.0,
        "min_cell_voltage_v": 3.2,
        "min_cell_index": 1,
        "max_cell_voltage_v": 3.3,
        "max_cell_index": 2,
        "min_temp_c": 20.0,
        "min_temp_index": 1,
        "max_temp_c": 21.0,
        "max_temp_index": 2,
        "cell_count": 16,
    }
    values.update(changes)
    return BmsInputs(**values)  # type: ignore[arg-type]


def test_equality_hash_and_repr_follow_the_fields() -> None:
    a, b = _inputs(), _inputs()
    assert a == b and hash(a) == hash(b)
    assert a != _inputs(current1_a=11.0)
    assert a != SocState()  # another type is never equal
    assert len({a, b, _inputs(cell_count=8)}) == 2
    assert repr(SocState(40.0)) == (
        "SocState(soc_pct=40.0, calibrated=False, time_since_full_s=None, below_vmin_since_s=None)"
    )


def test_replace_builds_a_validated_copy_and_names_an_unknown_field() -> None:
    state = SocState(40.0, calibrated=True)
    assert state.replace(soc_pct=60.0) == SocState(60.0, calibrated=True)
    assert state.soc_pct == 40.0
    with pytest.raises(ValueError, match="out of range"):
        state.replace(soc_pct=120.0)
    with pytest.raises(TypeError, match="no field soc"):
        state.replace(soc=1.0)


def test_as_dict_and_values_are_in_field_order() -> None:
    state = SocState(40.0)
    assert list(state.as_dict()) == list(SocState.FIELDS)
    assert state.values() == (40.0, False, None, None)


def test_a_compiled_build_refuses_assignment() -> None:
    state = SocState(40.0)
    if os.environ.get("TWIN_EXPECT_COMPILED") == "1":
        assert COMPILED, "CI's compiled stage imported the pure-Python twin"
    if not COMPILED:
        pytest.skip("pure-Python build: Final attributes are guarded by the type check (mypy)")
    with pytest.raises(AttributeError):
        state.soc_pct = 50.0  # type: ignore[misc]
