"""The state file: atomic writes, a faithful round trip, corrupt files kept aside."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from twin.errors import StoreError
from twin.model.energy import EnergyCounters
from twin.model.soc import SocState
from twin.store import PackMemory, StateStore

MEMORY = PackMemory(
    soc=SocState(62.5, calibrated=True, time_since_full_s=3600.0, below_vmin_since_s=None),
    energy=EnergyCounters(1200.0, 800.0, 150_000.0, 140_000.0, 740_000),
    settings={"vmax_v": 3.65, "charge_restart_pct": 85.0},
)


def test_a_missing_file_is_a_fresh_start(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    assert store.load() == {}
    assert store.kept_aside is None


def test_save_then_load_gives_back_every_pack(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"
    store = StateStore(path)
    other = PackMemory(SocState(), EnergyCounters())
    store.save({"pack1": MEMORY, "pack2": other})
    assert store.saves == 1
    loaded = StateStore(path).load()
    assert loaded == {"pack1": MEMORY, "pack2": other}
    # Only the state file is left: the temporary file was renamed over it.
    assert [p.name for p in path.parent.iterdir()] == ["state.json"]


def test_a_save_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path)
    store.save({"pack1": MEMORY})
    inode = path.stat().st_ino
    store.save({"pack1": PackMemory(SocState(10.0), EnergyCounters())})
    assert path.stat().st_ino != inode  # a new file renamed into place, not rewritten in place
    assert StateStore(path).load()["pack1"].soc.soc_pct == 10.0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda text: text[: len(text) // 2], id="truncated"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: "\x00\x01 not json", id="garbage"),
        pytest.param(lambda text: text.replace('"soc_pct": 62.5', '"soc_pct": 162.5'), id="soc"),
        pytest.param(lambda text: text.replace('"format": 1', '"format": 99'), id="format"),
        pytest.param(lambda text: text.replace("vmax_v", "vbalance_v"), id="not-writable"),
        pytest.param(lambda text: text.replace("62.5", "NaN"), id="nan"),
    ],
)
def test_a_corrupt_file_is_kept_aside_and_the_twin_starts_fresh(
    tmp_path: Path, damage: object, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.json"
    StateStore(path).save({"pack1": MEMORY})
    assert callable(damage)
    path.write_text(damage(path.read_text(encoding="utf-8")), encoding="utf-8")
    store = StateStore(path)
    with caplog.at_level(logging.WARNING, logger="twin.store"):
        assert store.load() == {}
    assert store.kept_aside is not None and store.kept_aside.exists()
    assert store.kept_aside.name.startswith("state.json.corrupt-")
    assert not path.exists()
    assert "corrupt" in caplog.text and store.kept_aside.name in caplog.text
    # The next save writes a good file again.
    store.save({"pack1": MEMORY})
    assert StateStore(path).load() == {"pack1": MEMORY}


def test_the_file_is_plain_json_for_a_human(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    StateStore(path).save({"pack1": MEMORY})
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == 1
    assert data["packs"]["pack1"]["soc_pct"] == 62.5
    assert data["packs"]["pack1"]["energy"]["harvested_total_wh"] == 150_000.0


def test_a_path_that_is_a_directory_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "state.json").mkdir()
    with pytest.raises(StoreError, match="cannot be written"):
        StateStore(tmp_path / "state.json").save({"pack1": MEMORY})


@pytest.mark.parametrize(
    ("name", "value"),
    [("capacity_wh", 1e300), ("capacity_wh", 6_553_600.0), ("vmax_v", 9.0), ("tmax_c", 500.0)],
)
def test_a_file_holding_an_impossible_setting_is_kept_aside(
    tmp_path: Path, name: str, value: float
) -> None:
    path = tmp_path / "state.json"
    store = StateStore(path)
    store.save({"pack1": MEMORY})
    data = json.loads(path.read_text(encoding="utf-8"))
    data["packs"]["pack1"]["settings"][name] = value
    path.write_text(json.dumps(data), encoding="utf-8")
    assert store.load() == {}
    assert store.kept_aside is not None
    kept = json.loads(store.kept_aside.read_text(encoding="utf-8"))
    assert kept["packs"]["pack1"]["settings"][name] == value


def test_a_copy_is_kept_of_a_file_whose_settings_are_refused(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    store.save({"pack1": MEMORY})
    copy = store.keep_copy("pack1's settings refused")
    assert copy is not None and copy.name.startswith("state.json.rejected-")
    assert copy.read_bytes() == store.path.read_bytes()
