"""The build backend: setuptools, plus an opt-in compiled build of the pure core (mypyc).

``TWIN_COMPILE=1 pip install .`` compiles ``twin.model``, ``twin.protocol`` and
``twin.emulator`` with mypyc (the compiler that ships with mypy, the project's type checker):
the same source, about twice as fast in a closed-loop simulation. Without the variable nothing
changes: a plain, pure-Python package that installs wherever Python 3.11 does.

mypy is asked for in the isolated build environment only when a compiled build is requested,
and an editable compiled install is refused: its extension modules would sit beside the sources
and silently shadow every later edit.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import (  # noqa: F401 (the PEP 517 hooks we do not change)
    build_sdist,
    get_requires_for_build_sdist,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The mypy (and so mypyc) release the compiled build uses: the one the test extra pins.
MYPYC_REQUIREMENT = "mypy~=2.4.1"


def compile_requested() -> bool:
    """Whether TWIN_COMPILE asks for the compiled build (1/true/yes)."""
    return os.environ.get("TWIN_COMPILE", "").strip().lower() in {"1", "true", "yes"}


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """Setuptools' requirements, or mypy when the compiled build is requested.

    Setuptools' own answer runs setup.py, which for a compiled build needs mypy already: the
    project declares no setup_requires, so mypy is the whole answer.
    """
    if compile_requested():
        return [MYPYC_REQUIREMENT]
    return list(_setuptools.get_requires_for_build_wheel(config_settings))


def build_wheel(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Build a wheel (compiled when TWIN_COMPILE is set)."""
    return str(_setuptools.build_wheel(wheel_directory, config_settings, metadata_directory))


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    """Setuptools' requirements for an editable install (always pure Python)."""
    _refuse_compiled_editable()
    return list(_setuptools.get_requires_for_build_editable(config_settings))


def build_editable(
    wheel_directory: str,
    config_settings: dict[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Build an editable wheel: pure Python, so edits take effect."""
    _refuse_compiled_editable()
    return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))


def _refuse_compiled_editable() -> None:
    if compile_requested():
        raise RuntimeError(
            "TWIN_COMPILE=1 builds a compiled wheel, not an editable install (compiled modules "
            "in the source tree would shadow later edits): use 'pip install .' without -e, "
            "or unset TWIN_COMPILE"
        )
