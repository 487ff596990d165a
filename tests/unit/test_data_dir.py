"""The data dir is checked before anything in it is touched, then held (flotilla.embedded.data_dir)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from flotilla.embedded.data_dir import LAYOUT_VERSION, DataDir, DataDirRefused, Stamp


def listing(path: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(path)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(path.rglob("*"))
    }


def opened(path: Path, engine: str = "kafka", min_free_mb: int = 1) -> DataDir:
    data_dir = DataDir(path, engine, min_free_mb)
    data_dir.open()
    return data_dir


def test_a_new_dir_is_stamped_with_the_layout_and_the_engine(tmp_path: Path):
    data_dir = opened(tmp_path)

    data_dir.stamp()

    assert json.loads(data_dir.stamp_path.read_text())["layout"] == LAYOUT_VERSION
    assert Stamp.read(data_dir.stamp_path).engine == "kafka"


def test_a_dir_of_another_layout_version_is_refused_unchanged(tmp_path: Path):
    Stamp(LAYOUT_VERSION + 1, "kafka", "9.9").write(tmp_path / "flotilla-data.json")
    (tmp_path / "kafka").mkdir()
    before = listing(tmp_path)

    with pytest.raises(
        DataDirRefused, match=f"layout version {LAYOUT_VERSION + 1} \\(written by Flotilla 9.9\\)"
    ):
        opened(tmp_path)

    assert listing(tmp_path) == before


def test_a_dir_with_a_database_but_no_stamp_is_refused_as_another_versions(tmp_path: Path):
    (tmp_path / "postgres").mkdir()
    before = listing(tmp_path)

    with pytest.raises(DataDirRefused, match="no flotilla-data.json: written by another version"):
        opened(tmp_path)

    assert listing(tmp_path) == before


def test_a_dir_written_with_another_engine_is_refused(tmp_path: Path):
    opened(tmp_path, engine="tansu").stamp()

    with pytest.raises(
        DataDirRefused, match="written with kafka.embedded=tansu; asked for kafka.embedded=kafka"
    ):
        opened(tmp_path, engine="kafka")


def test_a_dir_another_flotilla_up_holds_is_refused_with_its_pid(tmp_path: Path):
    holder = opened(tmp_path)

    with pytest.raises(DataDirRefused, match=f"held by another flotilla up \\(pid {os.getpid()}\\)"):
        opened(tmp_path)

    holder.release()
    opened(tmp_path).release()


def test_a_disk_with_less_free_space_than_the_setting_is_refused_and_the_lock_released(tmp_path: Path):
    free_mb = shutil.disk_usage(tmp_path).free // 2**20

    with pytest.raises(DataDirRefused, match=f"disk: .*MB free, at least {free_mb + 1000} MB needed"):
        opened(tmp_path, min_free_mb=free_mb + 1000)

    opened(tmp_path).release()
