"""The data folders ship inside the package: an installed wheel finds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_the_installed_package_exposes_its_data() -> None:
    dbc = {p.name for p in resources.files("twin.dbc").iterdir()}
    maps = {p.name for p in resources.files("twin.register_maps").iterdir()}
    assert "README.md" in dbc and "README.md" in maps
    assert resources.files("twin").joinpath("example.toml").is_file()


@pytest.mark.slow
def test_a_built_wheel_carries_the_data_and_runs_from_itself(tmp_path: Path) -> None:
    # Build from a copy: a build in the checkout would leave build/ and *.egg-info behind.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("twin", "dbc", "register_maps"):
        shutil.copytree(ROOT / name, source / name, ignore=ignore)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("twin-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    for name in (
        "twin/dbc/README.md",
        "twin/register_maps/README.md",
        "twin/example.toml",
        "twin/py.typed",
        "twin/web/index.html",
        "twin/web/app.js",
        "twin/web/style.css",
    ):
        assert name in names
    # An isolated interpreter that sees only the unpacked wheel (no source tree, no editable
    # install) reads the shipped data.
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]); from importlib import resources; "
        "print(sorted(p.name for p in resources.files('twin.dbc').iterdir())); "
        "print(resources.files('twin').joinpath('example.toml').read_text()[:20])"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", probe, str(tmp_path / "site")],
        check=True,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert "README.md" in result.stdout
    assert "# twin configuration" in result.stdout
