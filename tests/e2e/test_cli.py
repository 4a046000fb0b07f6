"""The command line, run as the installed ``twin`` command in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

TWIN = [sys.executable, "-m", "twin"]


def twin(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TWIN, *args], capture_output=True, text=True, timeout=60, check=False)


def test_help_lists_the_commands() -> None:
    result = twin("--help")
    assert result.returncode == 0
    for command in ("run", "check-config", "config", "decode", "capture"):
        assert command in result.stdout


def test_example_passes_check_config(tmp_path: Path) -> None:
    example = twin("config", "--example")
    assert example.returncode == 0 and "[[pack]]" in example.stdout
    path = tmp_path / "twin.toml"
    path.write_text(example.stdout, encoding="utf-8")
    result = twin("check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert "OK, 1 pack: pack1 (gen3, 16 cells LiFePO4" in result.stdout
    assert "exporters: modbus 127.0.0.1:5020, can virtual:twin (pylon)" in result.stdout
    assert "mqtt" not in result.stdout.split("exporters:")[1]  # off until [mqtt] is there


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("cells = 16 ", "cells = 300", "pack[0].cells: 300 is out of range (allowed 2..255)"),
        ('mode = "normal"', 'mode = "sleepy"', "pack[0].mode: 'sleepy' is not allowed"),
        ("tmin_c = 0.0", "tminn_c = 0.0", "pack[0].tminn_c: unknown field"),
    ],
)
def test_wrong_field_exits_2_with_one_line(tmp_path: Path, old: str, new: str, field: str) -> None:
    text = twin("config", "--example").stdout
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    result = twin("check-config", str(path))
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert field in lines[0] and str(path) in lines[0]


def test_run_with_a_bad_config_exits_2_before_starting(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[[pack]]\nid = 'x'\n", encoding="utf-8")
    result = twin("run", "--config", str(path))
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
