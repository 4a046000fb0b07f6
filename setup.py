"""Extension modules for the opt-in compiled build; everything else is in pyproject.toml.

``TWIN_COMPILE=1`` compiles the pure core with mypyc (see build_backend/twin_build.py). The
modules are the ones with no I/O, no asyncio and no optional dependency: what a closed-loop
simulation spends its time in.
"""

from __future__ import annotations

import os
from pathlib import Path

from setuptools import setup

COMPILED_PACKAGES = ("twin/model", "twin/protocol", "twin/emulator")


def _ext_modules() -> list[object]:
    if os.environ.get("TWIN_COMPILE", "").strip().lower() not in {"1", "true", "yes"}:
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as error:  # the backend adds mypy to the build requirements
        raise SystemExit(
            "TWIN_COMPILE=1 needs mypy (mypyc) in the build environment: "
            "pip install 'mypy~=2.4.1', or build with build isolation"
        ) from error
    root = Path(__file__).resolve().parent
    sources = sorted(
        str(path.relative_to(root))
        for package in COMPILED_PACKAGES
        for path in (root / package).glob("*.py")
    )
    config = ["--config-file", str(Path("build_backend") / "mypyc.ini")]
    return list(mypycify([*config, *sources], opt_level="3", debug_level="0"))


setup(ext_modules=_ext_modules())
