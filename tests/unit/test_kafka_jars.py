"""The jars Apache Kafka runs from are fetched against pinned SHA-256 sums (flotilla.embedded.kafka_jars).

The repository here is a directory laid out as Maven Central is, served by file:// URLs, its
files linked to the jars scripts/install-kafka fetched from Maven Central."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla.embedded.errors import ComponentFailed
from flotilla.embedded.kafka_jars import JARS, install_kafka_jars, installed
from flotilla.embedded.kafka_kraft import default_kafka_home

CACHED = default_kafka_home() / "libs"

pytestmark = pytest.mark.skipif(
    not installed(CACHED), reason=f"no verified jars in {CACHED}: run scripts/install-kafka"
)


def repository(tmp_path: Path, replace: str | None = None) -> str:
    root = tmp_path / "maven"
    for jar in JARS:
        path = root / jar.url("").lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        if jar.artifact == replace:
            path.write_bytes(b"not the jar")
        else:
            path.symlink_to(CACHED / jar.file_name)
    return root.as_uri()


def test_the_pinned_jars_are_fetched_verified_and_marked_installed(tmp_path: Path):
    home = tmp_path / "kafka"
    lines: list[str] = []

    libs = install_kafka_jars(home, say=lines.append, repository=repository(tmp_path))

    assert installed(libs)
    assert sorted(p.name for p in libs.iterdir()) == sorted(jar.file_name for jar in JARS)
    assert lines[-1].endswith("(100%)")


def test_a_jar_whose_sum_differs_from_its_pin_stops_the_install_and_installs_nothing(tmp_path: Path):
    home = tmp_path / "kafka"

    with pytest.raises(
        ComponentFailed, match="kafka-raft-4.1.1.jar: SHA-256 .*, expected .*; nothing installed"
    ):
        install_kafka_jars(home, say=lambda line: None, repository=repository(tmp_path, replace="kafka-raft"))

    assert not (home / "libs").exists()
    assert not installed(home / "libs")
    assert [p.name for p in home.iterdir()] == []
