"""The analytics store: one DuckDB file, written by one sink, each batch in one transaction.

Why DuckDB and not Parquet partitioned by day: a batch changes rows (a job's state, a run's
end), and the position it reached must commit with them. A DuckDB file gives both in one
transaction (a SIGKILL mid-batch leaves the last committed batch, nothing half-written);
Parquet files are immutable, so changed rows would need a merge-on-read layer and the
positions a commit protocol of their own. ``bench/analytics.py`` measures the cost.

DuckDB lets one process open a file for writing and no other process open it at all, even
read-only, while it does (the file lock); so the sink answers queries itself, on cursors of
its own connection (``flotilla.analytics.query``), and a read-only connection to the file is
opened directly only when no sink holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import duckdb
import pyarrow as pa

from flotilla.analytics import views
from flotilla.analytics.rows import BatchRows, decode_state, final_state_stand_in
from flotilla.analytics.tables import KEYS, ORDER, TABLES, arrow_table, create_statement
from flotilla.jobs.state import JobState
from flotilla.log.batch_reader import Position
from flotilla.settings import Settings

STORE_VERSION = 1
STORE_FILE = "analytics.duckdb"


class StoreError(RuntimeError):
    """The store cannot be used as it is (a newer layout, a file another process holds)."""


def store_path(settings: Settings) -> Path:
    return settings.data_path / "analytics" / STORE_FILE


def connect(path: Path, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The store's file, with DuckDB's access to other files turned off: the SQL it serves
    (to any local user of the sink's port) must not read the machine's files
    (``read_text('/etc/...')``) or write any."""
    try:
        return duckdb.connect(str(path), read_only=read_only, config={"enable_external_access": False})
    except duckdb.IOException as exc:
        raise StoreError(f"analytics store {path}: {exc}") from exc


def create(connection: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Create what the store lacks; refuse a store of another layout version."""
    connection.execute("CREATE TABLE IF NOT EXISTS store_version (version INTEGER)")
    found = connection.execute("SELECT version FROM store_version").fetchall()
    if found and found[0][0] != STORE_VERSION:
        raise StoreError(
            f"analytics store {path}: layout version {found[0][0]}, this Flotilla's is {STORE_VERSION}; "
            "run `flotilla analytics rebuild`"
        )
    connection.execute("BEGIN")
    if not found:
        connection.execute("INSERT INTO store_version VALUES (?)", [STORE_VERSION])
    for table in TABLES:
        connection.execute(create_statement(table))
    for statement in views.create_statements():
        connection.execute(statement)
    connection.execute("COMMIT")


class AnalyticsStore:
    """The sink's read-write handle on the store."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.connection = connect(path)
        create(self.connection, path)

    def close(self) -> None:
        self.connection.close()

    def positions(self) -> dict[Position, int]:
        rows = self.connection.execute("SELECT topic, partition, next_offset FROM positions").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    def job_states(self, job_ids: Iterable[str]) -> dict[str, JobState]:
        """The fold's state after the last committed batch of each of ``job_ids`` it has."""
        wanted = arrow_table_of_ids(job_ids)
        if wanted.num_rows == 0:
            return {}
        cursor = self.connection.cursor()
        try:
            cursor.register("wanted_jobs", wanted)
            rows = cursor.execute(
                "SELECT job_id, fold, queue, job_set, state, updated FROM jobs "
                "WHERE job_id IN (SELECT job_id FROM wanted_jobs)"
            ).fetchall()
        finally:
            cursor.close()
        return {
            job_id: decode_state(fold) if fold is not None else final_state_stand_in(job_id, *rest)
            for job_id, fold, *rest in rows
        }

    def write(self, rows: BatchRows, positions: Mapping[Position, int]) -> None:
        """The batch's rows and the positions it reached, in one transaction."""
        cursor = self.connection.cursor()
        try:
            cursor.execute("BEGIN")
            for table, batch in (
                ("events", rows.events),
                ("scheduling_reports", rows.scheduling_reports),
                ("capacity", rows.capacity),
                ("jobs", list(rows.jobs.values())),
                ("runs", list(rows.runs.values())),
                ("queues", list(rows.queues.values())),
                (
                    "positions",
                    [(topic, partition, offset) for (topic, partition), offset in positions.items()],
                ),
            ):
                if not batch:
                    continue
                cursor.register("batch_rows", arrow_table(table, batch))
                if table in KEYS:
                    key = KEYS[table]
                    cursor.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM batch_rows)")
                elif table == "positions":
                    cursor.execute("DELETE FROM positions")
                cursor.execute(f"INSERT INTO {table} SELECT * FROM batch_rows")
                cursor.unregister("batch_rows")
            cursor.execute("COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()


def arrow_table_of_ids(job_ids: Iterable[str]) -> pa.Table:
    return pa.table({"job_id": pa.array(sorted(set(job_ids)), type=pa.string())})


def table_rows(connection: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Every row of every table, in key order: what two stores are compared by."""
    return {
        table: connection.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        for table, order in ORDER.items()
    }
