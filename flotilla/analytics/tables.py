"""The analytics store's tables: each one's columns and their types, defined once.

Times are Unix seconds (``DOUBLE``), as on the log; resources are in units (cores, bytes,
GPUs), not the log's milli-units. ``jobs`` and ``runs`` hold each job's and run's latest state
(as the one fold, ``flotilla.jobs.state``, makes it: ``jobs.fold`` is the fold's whole state,
from which the sink carries on after a restart, while the job can still change); ``events``, ``scheduling_reports`` and
``capacity`` (one row per executor, pool and heartbeat) hold every record, keyed by the
partition and offset they came from; ``queues`` each queue's latest definition;
``positions`` the next offset of every partition read, written in the same transaction as
the rows.
"""

from __future__ import annotations

import pyarrow as pa

TABLES: dict[str, tuple[tuple[str, str], ...]] = {
    "events": (
        ("partition", "INTEGER"),
        ("offset", "BIGINT"),
        ("type", "VARCHAR"),
        ("job_id", "VARCHAR"),
        ("queue", "VARCHAR"),
        ("job_set", "VARCHAR"),
        ("run_id", "VARCHAR"),
        ("created", "DOUBLE"),
        ("applied", "BOOLEAN"),  # whether the fold took it (false: a duplicate, a stale report)
        ("detail", "VARCHAR"),  # the record as JSON (NULL for a submit: its job is in jobs)
    ),
    "jobs": (
        ("job_id", "VARCHAR"),
        ("queue", "VARCHAR"),
        ("job_set", "VARCHAR"),
        ("owner", "VARCHAR"),
        ("namespace", "VARCHAR"),
        ("priority_class", "VARCHAR"),
        ("priority", "DOUBLE"),
        ("cpu", "DOUBLE"),
        ("memory", "DOUBLE"),
        ("gpu", "DOUBLE"),
        ("submitted_at", "DOUBLE"),
        ("state", "VARCHAR"),
        ("updated", "DOUBLE"),
        ("attempt", "INTEGER"),
        ("retries", "INTEGER"),
        ("run_id", "VARCHAR"),
        ("executor", "VARCHAR"),
        ("node", "VARCHAR"),
        ("cancel_requested", "BOOLEAN"),
        ("cancel_reason", "VARCHAR"),
        ("reason", "VARCHAR"),
        ("exit_code", "INTEGER"),
        ("failure_category", "VARCHAR"),
        ("failure_subcategory", "VARCHAR"),
        ("runs", "INTEGER"),
        ("first_leased_at", "DOUBLE"),  # NULL until the job's first lease
        ("first_running_at", "DOUBLE"),  # NULL until a run of it first ran
        ("fold", "VARCHAR"),  # NULL once the job is final (succeeded, cancelled, preempted)
    ),
    "runs": (
        ("run_id", "VARCHAR"),
        ("job_id", "VARCHAR"),
        ("queue", "VARCHAR"),
        ("job_set", "VARCHAR"),
        ("priority_class", "VARCHAR"),
        ("cpu", "DOUBLE"),  # the job's request, which every run of it holds
        ("memory", "DOUBLE"),
        ("gpu", "DOUBLE"),
        ("executor", "VARCHAR"),
        ("node", "VARCHAR"),
        ("pool", "VARCHAR"),
        ("leased_at", "DOUBLE"),
        ("pending_at", "DOUBLE"),
        ("started_at", "DOUBLE"),
        ("finished_at", "DOUBLE"),
        ("state", "VARCHAR"),
        ("exit_code", "INTEGER"),
        ("failure_category", "VARCHAR"),
        ("failure_subcategory", "VARCHAR"),
        ("reason", "VARCHAR"),
    ),
    "scheduling_reports": (
        ("partition", "INTEGER"),
        ("offset", "BIGINT"),
        ("job_id", "VARCHAR"),
        ("queue", "VARCHAR"),
        ("job_set", "VARCHAR"),
        ("created", "DOUBLE"),
        ("attempt", "INTEGER"),
        ("reason", "VARCHAR"),
    ),
    "capacity": (
        ("partition", "INTEGER"),
        ("offset", "BIGINT"),
        ("executor", "VARCHAR"),
        ("created", "DOUBLE"),
        ("pool", "VARCHAR"),
        ("nodes", "INTEGER"),
        ("schedulable_nodes", "INTEGER"),
        ("cpu", "DOUBLE"),  # allocatable on the pool's schedulable nodes
        ("memory", "DOUBLE"),
        ("gpu", "DOUBLE"),
        ("runs", "INTEGER"),
    ),
    "queues": (
        ("name", "VARCHAR"),
        ("priority_factor", "DOUBLE"),
        ("cordoned", "BOOLEAN"),
        ("deleted", "BOOLEAN"),
        ("updated", "DOUBLE"),
    ),
    "positions": (
        ("topic", "VARCHAR"),
        ("partition", "INTEGER"),
        ("next_offset", "BIGINT"),
    ),
}

KEYS = {"jobs": "job_id", "runs": "run_id", "queues": "name"}
"""Tables holding the latest row per key (replaced when a batch changes it); the others are
appended to. Ordering keys for comparing stores: :data:`ORDER`."""

ORDER = {
    "events": 'partition, "offset"',
    "jobs": "job_id",
    "runs": "run_id",
    "scheduling_reports": 'partition, "offset"',
    "capacity": 'partition, "offset", pool',
    "queues": "name",
    "positions": "topic, partition",
}

_ARROW = {
    "VARCHAR": pa.string(),
    "DOUBLE": pa.float64(),
    "BIGINT": pa.int64(),
    "INTEGER": pa.int32(),
    "BOOLEAN": pa.bool_(),
}


def create_statement(table: str) -> str:
    columns = ", ".join(f'"{name}" {kind}' for name, kind in TABLES[table])
    return f"CREATE TABLE IF NOT EXISTS {table} ({columns})"


def arrow_table(table: str, rows: list[tuple]) -> pa.Table:
    """``rows`` (tuples in the table's column order) as an Arrow table of its types."""
    columns = TABLES[table]
    values = list(zip(*rows, strict=True)) if rows else [()] * len(columns)
    return pa.Table.from_arrays(
        [pa.array(column, type=_ARROW[kind]) for column, (_, kind) in zip(values, columns, strict=True)],
        names=[name for name, _ in columns],
    )
