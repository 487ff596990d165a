"""Fixtures of the Lookout tests: one embedded Postgres per session, a fresh database per
test, and a way to read back every row the log put in it."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

from flotilla.embedded.postgres import EmbeddedPostgres
from flotilla.lookout.migrations import migrate


@contextlib.contextmanager
def _outside_pytest_tmp() -> Iterator[Path]:
    # Not under pytest's temp root: a pytest session starting beside this one (other runs on a
    # shared machine) resets that root to mode 0700, and the embedded server, which runs as its
    # own user when we are root, could no longer reach its data directory.
    directory = Path(tempfile.mkdtemp(prefix="flotilla-lookout-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The DSN of a Postgres server for the session's Lookout databases."""
    with _outside_pytest_tmp() as directory:
        server = EmbeddedPostgres(directory / "pg")
        yield server.start()
        server.stop()


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    """A directory for a test's own embedded Postgres (a data dir, or a data dir's parent)."""
    with _outside_pytest_tmp() as directory:
        yield directory


def new_database(server_dsn: str) -> str:
    name = f"lookout_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    return make_conninfo(server_dsn, dbname=name)


@pytest.fixture
def lookout_dsn(postgres_server: str) -> str:
    """A new, empty database on the session's server."""
    return new_database(postgres_server)


@pytest.fixture
def db(lookout_dsn: str) -> Iterator[psycopg.Connection]:
    """A connection to a migrated Lookout database, committing each statement."""
    with psycopg.connect(lookout_dsn, autocommit=True) as connection:
        migrate(connection)
        yield connection


TABLE_KEYS = {
    "job": "job_id",
    "job_run": "run_id",
    "job_spec": "job_id",
    "job_error": "job_id",
    "job_scheduling_report": "job_id",
    "job_counts": "queue, jobset, state",
    "ingester_offsets": "topic, partition",
}


def table_rows(dsn: str) -> dict[str, list[tuple]]:
    """Every row the log put in the database, per table, in key order."""
    with psycopg.connect(dsn) as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY {key}").fetchall()  # type: ignore[arg-type]
            for table, key in TABLE_KEYS.items()
        }


def counts_match_rows(dsn: str) -> bool:
    """job_counts says what counting the job rows says, and holds no empty counts."""
    with psycopg.connect(dsn) as connection:
        kept = connection.execute(
            "SELECT queue, jobset, state, count FROM job_counts ORDER BY 1, 2, 3"
        ).fetchall()
        counted = connection.execute(
            "SELECT queue, jobset, state, count(*) FROM job GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
        ).fetchall()
    return kept == counted
