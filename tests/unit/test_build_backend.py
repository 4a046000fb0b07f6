"""The build backend: pure Python by default, mypyc only on request, never editable-compiled."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _backend() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "twin_build_under_test", ROOT / "build_backend" / "twin_build.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_pyproject_names_the_in_tree_backend() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert 'build-backend = "twin_build"' in text
    assert 'backend-path = ["build_backend"]' in text


@pytest.mark.parametrize("value", ["", "0", "no"])
def test_a_default_build_asks_for_nothing_more(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("TWIN_COMPILE", value)
    backend = _backend()
    assert not backend.compile_requested()
    assert not any("mypy" in r for r in backend.get_requires_for_build_wheel())


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_a_compiled_build_asks_for_the_pinned_mypy(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("TWIN_COMPILE", value)
    backend = _backend()
    assert backend.get_requires_for_build_wheel() == [backend.MYPYC_REQUIREMENT]
    pin = backend.MYPYC_REQUIREMENT.split("~=")[1]
    # The compiler is the type checker the test extra pins: one mypy for both.
    assert f'"mypy~={pin}"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def test_an_editable_compiled_install_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWIN_COMPILE", "1")
    backend = _backend()
    with pytest.raises(RuntimeError, match="not an editable install"):
        backend.get_requires_for_build_editable()
    with pytest.raises(RuntimeError, match="not an editable install"):
        backend.build_editable(str(ROOT / "build" / "unused"))
