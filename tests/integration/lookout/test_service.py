"""Which database ``flotilla lookout`` uses when postgres.dsn is empty: the embedded server
of the data dir, the one ``flotilla up`` runs if it is running, else one started for the
command and stopped after it."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.lookout.service import database
from flotilla.settings import load_settings

pytestmark = pytest.mark.integration


def settings_for(data_dir: Path):
    return load_settings(overrides={"data_dir": str(data_dir)}, environ={})


def server_pid(dsn: str) -> int:
    """The pid of the server's checkpointer: the same for every connection to one server."""
    with psycopg.connect(dsn) as connection:
        row = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_running_embedded_server_of_the_data_dir_is_used_and_left_running(postgres_dir: Path) -> None:
    server = EmbeddedPostgres(postgres_dir / "postgres")
    own = server.start()
    try:
        with database(settings_for(postgres_dir)) as dsn:
            assert server_pid(dsn) == server_pid(own)
        assert server.running()
    finally:
        server.stop()


def test_without_a_running_server_one_is_started_for_the_command_and_stopped_after(
    postgres_dir: Path,
) -> None:
    with database(settings_for(postgres_dir)) as dsn:
        with psycopg.connect(dsn) as connection:
            assert connection.execute("SELECT 1").fetchone() == (1,)
    assert not (postgres_dir / "postgres" / "postmaster.pid").exists()
