"""The import rules of design/architecture.md section 3, kept true by an ``ast`` walk.

1. twin.model, twin.protocol and twin.emulator (the pure core) import no I/O, clock, asyncio,
   logging or protocol library, no third-party package but numpy, and no twin package outside
   the core; model and protocol never import the emulator built on them.
2. twin.sources and twin.exporters import only twin.model, twin.protocol and twin.errors from
   twin (sources also twin.emulator: the emulated chain is a byte source), and never each
   other.
3. Each protocol library is imported by exactly one module.
4. Only twin.app sees sources and exporters together.
5. Exporters read the readout (twin.protocol.readout), never the shadow's state behind it, and
   never import each other (an adapter and its own map are one exporter; ports is shared).
6. No parse function opens a file: parse functions take text, only the ``load_*`` functions
   read files.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CORE = ("twin.model", "twin.protocol", "twin.emulator")
#: Standard-library modules that do I/O, read a clock or schedule: not in the pure core.
CORE_FORBIDDEN_STDLIB = {
    "asyncio",
    "time",
    "logging",
    "socket",
    "selectors",
    "threading",
    "multiprocessing",
    "subprocess",
    "os",
    "pathlib",
    "shutil",
    "tempfile",
    "signal",
    "io",
    "sys",
    "random",
    "datetime",
    "concurrent",
    "urllib",
    "http",
    "sqlite3",
    "tomllib",
    "importlib",
}
#: Third-party packages each part of the core may use: only the emulated world computes with
#: numpy (vectorised cells); the BMS logic and the codec are the standard library alone.
CORE_ALLOWED_THIRD_PARTY = {"twin.model": set(), "twin.protocol": set(), "twin.emulator": {"numpy"}}
#: Third-party protocol libraries and the only modules allowed to import them.
LIBRARY_OWNERS = {
    "pymodbus": {"twin.exporters.modbus", "twin.exporters.modbus_tcp"},
    "can": {"twin.exporters.canbus", "twin.exporters.inverter_link"},
    "cantools": {"twin.exporters.canbus", "twin.exporters.can_map", "twin.exporters.inverter_map"},
    "aiomqtt": {"twin.exporters.mqtt"},
    "aiohttp": {"twin.exporters.web"},
    "paho": {"twin.exporters.mqtt"},
    "serial": {"twin.sources.serial"},
    "serial_asyncio_fast": {"twin.sources.serial"},
}
#: The exporter each module of twin.exporters belongs to (an adapter and its pure map).
EXPORTER_OF = {
    "modbus": "modbus",
    "modbus_tcp": "modbus",
    "modbus_map": "modbus",
    "canbus": "can",
    "can_map": "can",
    "inverter_map": "can",
    "inverter_link": "can",
    "mqtt": "mqtt",
    "mqtt_map": "mqtt",
    "web": "web",
    "web_map": "web",
}
#: What every exporter may share (modules of twin.exporters).
EXPORTER_SHARED = {"ports"}
#: Calls that read a file (by function or method name).
FILE_READS = {
    "open", "read_text", "read_bytes", "load_file", "loadtxt", "is_file", "exists", "stat",
    "iterdir", "glob",
}  # fmt: skip
EDGE_ALLOWED_TWIN = {
    "twin.sources": ("twin.model", "twin.protocol", "twin.errors", "twin.retry", "twin.emulator"),
    "twin.exporters": ("twin.model", "twin.protocol", "twin.errors", "twin.retry"),
}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. twin.model.relays
    target: str  # the imported module, e.g. asyncio or twin.config
    line: int


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports_of(path: Path, root: Path) -> list[Import]:
    """Every module ``path`` imports, statically or through importlib / __import__ strings."""
    module = _module_name(path, root)
    is_package = path.name == "__init__.py"
    found: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = (
                _resolve(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            found.append(Import(module, target, node.lineno))
            # "from twin import config" imports the module twin.config ("from twin.exporters
            # import mqtt_map" the module twin.exporters.mqtt_map).
            found += [
                Import(module, f"{target}.{alias.name}", node.lineno)
                for alias in node.names
                if target in ("twin", "twin.exporters")
            ]
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            arg = node.args[0]
            if name in ("import_module", "__import__") and isinstance(arg, ast.Constant):
                found.append(Import(module, str(arg.value), node.lineno))
    return found


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def check_imports(root: Path) -> list[str]:
    """All violations of the import rules in the ``twin`` package below ``root``."""
    violations: list[str] = []
    stdlib = sys.stdlib_module_names
    sees_sources: set[str] = set()
    sees_exporters: set[str] = set()
    for path in sorted((root / "twin").rglob("*.py")):
        for imp in imports_of(path, root):
            top = imp.target.split(".")[0]
            where = f"{imp.module} (line {imp.line}) imports {imp.target}"
            if _within(imp.target, "twin.sources") and not _within(imp.module, "twin.sources"):
                sees_sources.add(imp.module)
            if _within(imp.target, "twin.exporters") and not _within(imp.module, "twin.exporters"):
                sees_exporters.add(imp.module)
            if any(_within(imp.module, core) for core in CORE):
                below_emulator = not _within(imp.module, "twin.emulator")
                if below_emulator and _within(imp.target, "twin.emulator"):
                    violations.append(f"rule 1: {where}: model/protocol never import the emulator")
                elif top == "twin":
                    if not any(_within(imp.target, core) for core in CORE) and imp.target != "twin":
                        violations.append(f"rule 1: {where}: the core imports only model/protocol")
                elif top in CORE_FORBIDDEN_STDLIB:
                    violations.append(f"rule 1: {where}: no I/O, clock or asyncio in the core")
                elif (
                    top not in stdlib
                    and not any(
                        _within(imp.module, core) and top in allowed
                        for core, allowed in CORE_ALLOWED_THIRD_PARTY.items()
                    )
                    and top != "__future__"
                ):
                    violations.append(f"rule 1: {where}: third-party package in the core")
            for edge, other in (
                ("twin.sources", "twin.exporters"),
                ("twin.exporters", "twin.sources"),
            ):
                if _within(imp.module, edge) and top == "twin":
                    if _within(imp.target, other):
                        violations.append(f"rule 2: {where}: sources and exporters never meet")
                    elif (
                        not _within(imp.target, edge)
                        and not any(
                            _within(imp.target, allowed) for allowed in EDGE_ALLOWED_TWIN[edge]
                        )
                        and imp.target != "twin"
                    ):
                        violations.append(
                            f"rule 2: {where}: only {', '.join(EDGE_ALLOWED_TWIN[edge])}"
                        )
            if _within(imp.module, "twin.exporters"):
                if _within(imp.target, "twin.protocol.shadow"):
                    violations.append(f"rule 5: {where}: exporters read the readout")
                elif _within(imp.target, "twin.exporters") and imp.target != "twin.exporters":
                    mine = imp.module.split(".")[2] if imp.module.count(".") >= 2 else ""
                    theirs = imp.target.split(".")[2]
                    if theirs not in EXPORTER_SHARED and EXPORTER_OF.get(
                        mine, mine
                    ) != EXPORTER_OF.get(theirs, theirs):
                        violations.append(f"rule 5: {where}: exporters never import each other")
            owners = LIBRARY_OWNERS.get(top)
            if owners is not None and imp.module not in owners:
                violations.append(
                    f"rule 3: {where}: only {', '.join(sorted(owners))} may import {top}"
                )
    for module in sorted(sees_sources & sees_exporters):
        if module != "twin.app":
            violations.append(f"rule 4: {module} imports sources and exporters: only twin.app may")
    violations += parse_functions_reading_files(root)
    return violations


def _function_calls(root: Path) -> dict[str, tuple[set[str], list[tuple[str, int]]]]:
    """Every function of the tree by name: the names it calls, and its file reads (+ line)."""
    functions: dict[str, tuple[set[str], list[tuple[str, int]]]] = {}
    for path in sorted((root / "twin").rglob("*.py")):
        module = _module_name(path, root)
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            calls, reads = functions.setdefault(node.name, (set(), []))
            for call in ast.walk(node):
                if not isinstance(call, ast.Call):
                    continue
                func = call.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if isinstance(func, ast.Name):
                    calls.add(name)  # a function of the tree (a method's name says too little)
                if name in FILE_READS:
                    reads.append((f"{module}.{node.name} calls {name}", call.lineno))
    return functions


def parse_functions_reading_files(root: Path) -> list[str]:
    """Rule 6: a ``parse*`` function that reads a file, itself or through what it calls."""
    functions = _function_calls(root)
    found: list[str] = []
    for name in sorted(functions):
        if not name.lstrip("_").startswith("parse"):
            continue
        seen: set[str] = set()
        todo = [name]
        while todo:
            current = todo.pop()
            if current in seen or current not in functions:
                continue
            seen.add(current)
            calls, reads = functions[current]
            for what, line in reads:
                found.append(
                    f"rule 6: {name} reaches a file read: {what} (line {line}); parse "
                    "functions take text, only load_* functions read files"
                )
            todo += [c for c in calls if not c.startswith("load")]
    return found


def test_the_twin_package_keeps_the_import_rules() -> None:
    assert check_imports(ROOT) == []


# ---- the checker itself can fail ------------------------------------------------------------


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in {"twin/__init__.py": "", **files}.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        for parent in path.relative_to(tmp_path).parents:
            init = tmp_path / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        path.write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"twin/model/bad.py": "import asyncio\n"},
            "rule 1: twin.model.bad (line 1) imports asyncio",
        ),
        ({"twin/model/bad.py": "from time import monotonic\n"}, "imports time"),
        ({"twin/protocol/bad.py": "import logging\n"}, "imports logging"),
        ({"twin/model/bad.py": "import pydantic\n"}, "imports pydantic"),
        (
            {"twin/model/cells.py": "import numpy\n"},
            "rule 1: twin.model.cells (line 1) imports numpy",
        ),
        ({"twin/model/bad.py": "from twin.config import load_config\n"}, "imports twin.config"),
        ({"twin/model/bad.py": "from ..errors import ConfigError\n"}, "imports twin.errors"),
        ({"twin/model/bad.py": "from twin import app\n"}, "imports twin.app"),
        ({"twin/emulator/bad.py": "import time\n"}, "rule 1: twin.emulator.bad"),
        (
            {"twin/model/bad.py": "from twin.emulator import Simulation\n"},
            "never import the emulator",
        ),
        (
            {"twin/model/bad.py": "import importlib\nimportlib.import_module('asyncio')\n"},
            "imports asyncio",
        ),
        (
            {"twin/sources/bad.py": "from twin.exporters import modbus\n"},
            "rule 2: twin.sources.bad (line 1) imports twin.exporters",
        ),
        ({"twin/exporters/bad.py": "import twin.config\n"}, "rule 2"),
        ({"twin/exporters/canbus2.py": "import can\n"}, "rule 3: twin.exporters.canbus2"),
        (
            {"twin/cli.py": "import pymodbus\n"},
            "only twin.exporters.modbus, twin.exporters.modbus_tcp may import pymodbus",
        ),
        (
            {"twin/runner.py": "import twin.sources.serial\nimport twin.exporters.modbus\n"},
            "rule 4: twin.runner",
        ),
        (
            {"twin/exporters/web.py": "from twin.protocol.shadow import TwinState\n"},
            "rule 5: twin.exporters.web (line 1) imports twin.protocol.shadow",
        ),
        (
            {"twin/exporters/mqtt_map.py": "from twin.exporters.modbus_map import evt1\n"},
            "rule 5: twin.exporters.mqtt_map (line 1) imports twin.exporters.modbus_map",
        ),
        (
            {"twin/exporters/canbus.py": "from twin.exporters import mqtt_map\n"},
            "exporters never import each other",
        ),
        (
            {
                "twin/config/run.py": "def parse_config(path):\n"
                "    with open(path) as f:\n        return f.read()\n"
            },
            "rule 6: parse_config reaches a file read: twin.config.run.parse_config calls open",
        ),
        (
            {"twin/config/scenario.py": "def parse_scenario(p):\n    return p.read_text()\n"},
            "rule 6: parse_scenario reaches a file read",
        ),
        (
            {
                "twin/config/pack.py": "def pack_config(p):\n    return p.is_file()\n",
                "twin/config/run.py": "from twin.config.pack import pack_config\n"
                "def parse_config(text):\n    return pack_config(text)\n",
            },
            "rule 6: parse_config reaches a file read: twin.config.pack.pack_config calls is_file",
        ),
    ],
)
def test_the_checker_reports_violations(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    violations = check_imports(_tree(tmp_path, files))
    assert any(expected in v for v in violations), violations


def test_the_checker_accepts_the_allowed_shapes(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "twin/model/ok.py": "import math\nfrom twin.protocol import x\n",
            "twin/emulator/ok.py": "import numpy\nfrom twin.model import x\n",
            "twin/protocol/ok.py": "from __future__ import annotations\nfrom ..model import y\n",
            "twin/exporters/modbus.py": "import pymodbus\nfrom twin.errors import E\n",
            "twin/sources/serial.py": "import serial_asyncio_fast\nfrom twin.model import m\n",
            "twin/app.py": "import twin.sources.serial\nimport twin.exporters.modbus\n",
            "twin/exporters/mqtt.py": "from twin.exporters.mqtt_map import m\n"
            "from twin.exporters.ports import p\nfrom twin.protocol.readout import r\n",
            "twin/config/load.py": "def load_config(path):\n    return parse(path.read_text())\n"
            "def parse_config(text):\n    return tomllib.loads(text)\n",
        },
    )
    assert check_imports(root) == []


def test_unit_tests_start_no_process() -> None:
    # Tests that run twin as a command, or build and install wheels, live in tests/e2e and
    # tests/packaging: the unit suite stays in-process and quick.
    for path in sorted((ROOT / "tests" / "unit").glob("*.py")):
        for imp in imports_of(path, ROOT):
            assert imp.target.split(".")[0] not in {"subprocess", "multiprocessing"}, (
                f"{path.name} (line {imp.line}) imports {imp.target}: move it out of tests/unit"
            )
