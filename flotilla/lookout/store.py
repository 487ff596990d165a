"""Writes one batch of log records to the Lookout database, in one transaction with the
offsets it reached.

Armada's store (``armada-docs/lookout-notes.md`` section 2), with one step fewer: rows the
batch creates are ``COPY``ed straight into their tables (they are known to be absent, see
``_write``), updates are ``COPY``ed into a temporary table and merged from there with
``coalesce(new, old)``, so that a row keeps every field the batch does not carry.
Which events apply is decided before the writes (``flotilla.lookout.instructions``) against
the rows the batch touches, read in the same transaction.

The transaction first takes an advisory lock, so writers (the live ingester and a
``rebuild``) take turns, and reads the offsets stored for the batch's partitions: records
below them were applied already and are dropped; a batch that starts beyond them (the
database was emptied under a running ingester) is not written, and the reader is told where
to read from instead. Offsets stored are the next offset to read, per topic and partition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from flotilla.log.schema import JobEvent, JobLeased, SchedulingReport
from flotilla.lookout.instructions import InstructionSet, JobCursor, plan

WRITER_LOCK_KEY = 0x10_0C_0E

Partition = tuple[str, int]


@dataclass(frozen=True)
class LogRecord:
    """A record as the store needs it: where it was on the log, and what it said (None for a
    record that could not be decoded: it is passed over, its offset still counts)."""

    topic: str
    partition: int
    offset: int
    message: JobEvent | SchedulingReport | None


@dataclass(frozen=True)
class BatchResult:
    applied: int
    """Records applied (undecodable and already-applied ones excluded)."""
    reseek: dict[Partition, int]
    """Non-empty when nothing was written: read these partitions again from these offsets."""


_JOB_COLUMNS = (
    "job_id",
    "queue",
    "owner",
    "namespace",
    "jobset",
    "cpu",
    "memory",
    "ephemeral_storage",
    "gpu",
    "priority",
    "priority_class",
    "submitted",
    "cancelled",
    "cancel_reason",
    "cancel_user",
    "state",
    "last_transition_time",
    "latest_run_id",
    "annotations",
    "attempt",
    "cancel_requested",
)
_JOB_UPDATE_COLUMNS = (
    "job_id",
    "state",
    "last_transition_time",
    "latest_run_id",
    "priority",
    "cancelled",
    "cancel_reason",
    "cancel_user",
    "attempt",
    "cancel_requested",
)
_RUN_COLUMNS = (
    "run_id",
    "job_id",
    "cluster",
    "node",
    "pool",
    "leased",
    "pending",
    "started",
    "finished",
    "job_run_state",
    "error",
    "debug",
    "exit_code",
    "failure_category",
    "failure_subcategory",
    "scheduler_termination_reason",
)
_TIMES = {"submitted", "cancelled", "last_transition_time", "leased", "pending", "started", "finished"}

_TEMP_TABLES = """
CREATE TEMP TABLE IF NOT EXISTS tmp_job_update (
    job_id text, state smallint, last_transition_time timestamptz, latest_run_id text,
    priority double precision, cancelled timestamptz, cancel_reason text, cancel_user text,
    attempt integer, cancel_requested boolean
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS tmp_run_update (
    run_id text, job_id text, cluster text, node text, pool text, leased timestamptz,
    pending timestamptz, started timestamptz, finished timestamptz,
    job_run_state smallint, error text, debug text, exit_code integer, failure_category text,
    failure_subcategory text, scheduler_termination_reason text
) ON COMMIT DELETE ROWS;
"""


def _coalesce(columns: Sequence[str], target: str) -> str:
    return ", ".join(f"{c} = coalesce(t.{c}, {target}.{c})" for c in columns)


_MERGE_JOB_UPDATES = f"UPDATE job SET {_coalesce(_JOB_UPDATE_COLUMNS[1:], 'job')} FROM tmp_job_update t WHERE job.job_id = t.job_id"
_MERGE_RUN_UPDATES = f"UPDATE job_run SET {_coalesce(_RUN_COLUMNS[2:], 'job_run')} FROM tmp_run_update t WHERE job_run.run_id = t.run_id"


def prepare(connection: psycopg.Connection) -> None:
    """Create this connection's temporary tables (once per connection)."""
    with connection.transaction():
        connection.execute(_TEMP_TABLES)


def _copy(cursor: psycopg.Cursor, table: str, columns: Sequence[str], rows: Iterable[dict[str, Any]]) -> None:
    """COPY ``rows`` into ``table``; times (seconds since the epoch) become timestamps here,
    in one place for creates and updates, so a time reads the same whichever wrote it."""
    times = [i for i, c in enumerate(columns) if c in _TIMES]
    stamp = datetime.fromtimestamp
    with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            values = [row.get(c) for c in columns]
            for i in times:
                seconds = values[i]
                if seconds is not None:
                    values[i] = stamp(seconds, UTC)
            copy.write_row(values)


def _stored_offsets(cursor: psycopg.Cursor, topics: set[str]) -> dict[Partition, int]:
    rows = cursor.execute(
        "SELECT topic, partition, next_offset FROM ingester_offsets WHERE topic = ANY(%s)", (list(topics),)
    ).fetchall()
    return {(topic, partition): offset for topic, partition, offset in rows}


def _cursors(cursor: psycopg.Cursor, job_ids: list[str]) -> dict[str, JobCursor]:
    rows = cursor.execute(
        "SELECT job_id, queue, jobset, state, latest_run_id, attempt, cancel_requested"
        " FROM job WHERE job_id = ANY(%s)",
        (job_ids,),
    ).fetchall()
    return {row[0]: JobCursor(*row[1:]) for row in rows}


def write_batch(
    connection: psycopg.Connection,
    records: Sequence[LogRecord],
    expected: dict[Partition, int],
    beginning: dict[Partition, int],
) -> BatchResult:
    """Apply ``records`` (in log order per partition) and store the offsets reached.

    ``expected`` is, per partition of the batch, the offset the reader believes the database
    has reached (where it read from); ``beginning`` each partition's first offset on the log,
    where a partition with no stored offset starts. A database behind the reader (emptied
    under it) writes nothing and names the offsets to read from again."""
    with connection.transaction(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
        stored = _stored_offsets(cursor, {r.topic for r in records} | {t for t, _ in expected})
        reached: dict[Partition, int] = {}
        for record in records:
            reached[(record.topic, record.partition)] = record.offset + 1
        start = {where: stored.get(where, beginning.get(where, 0)) for where in expected}
        reseek = {where: start[where] for where, offset in expected.items() if offset > start[where]}
        if reseek:
            return BatchResult(0, reseek)
        fresh = [r for r in records if r.offset >= stored.get((r.topic, r.partition), 0)]
        events = [r.message for r in fresh if isinstance(r.message, JobEvent)]
        reports = [r.message for r in fresh if isinstance(r.message, SchedulingReport)]
        cursors = _cursors(cursor, list({e.job_id for e in events}))
        leased = [e.run_id for e in events if isinstance(e, JobLeased) and e.run_id]
        known_runs: set[str] = set()
        if leased:
            rows = cursor.execute("SELECT run_id FROM job_run WHERE run_id = ANY(%s)", (leased,)).fetchall()
            known_runs = {row[0] for row in rows}
        instructions = plan(events, reports, cursors, known_runs)
        _write(cursor, instructions)
        moved = [(t, p, o) for (t, p), o in reached.items() if o > stored.get((t, p), -1)]
        cursor.execute(
            "INSERT INTO ingester_offsets (topic, partition, next_offset)"
            " SELECT * FROM unnest(%s::text[], %s::int[], %s::bigint[])"
            " ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
            ([m[0] for m in moved], [m[1] for m in moved], [m[2] for m in moved]),
        )
        return BatchResult(sum(1 for r in fresh if r.message is not None), {})


def _write(cursor: psycopg.Cursor, out: InstructionSet) -> None:
    # Phases in Armada's order: jobs and specs, then job updates and runs, then run updates.
    # Creates are COPYed straight into their tables: the batch holds the writers' lock and
    # planned against the rows it read, so every job and run it creates is absent (Armada's
    # insert-if-absent from a temporary table costs a second copy of every row). Updates go
    # through a temporary table and merge, each field only where the batch carries it.
    if out.job_creates:
        _copy(cursor, "job", _JOB_COLUMNS, out.job_creates.values())
        _copy(
            cursor,
            "job_spec",
            ("job_id", "spec"),
            ({"job_id": k, "spec": v} for k, v in out.job_specs.items()),
        )
    if out.job_updates:
        _copy(
            cursor,
            "tmp_job_update",
            _JOB_UPDATE_COLUMNS,
            ({"job_id": k, **v} for k, v in out.job_updates.items()),
        )
        cursor.execute(_MERGE_JOB_UPDATES)
    if out.run_creates:
        _copy(cursor, "job_run", _RUN_COLUMNS, out.run_creates.values())
    if out.run_updates:
        _copy(
            cursor, "tmp_run_update", _RUN_COLUMNS, ({"run_id": k, **v} for k, v in out.run_updates.items())
        )
        cursor.execute(_MERGE_RUN_UPDATES)
    if out.job_error_deletes:
        cursor.execute("DELETE FROM job_error WHERE job_id = ANY(%s)", (list(out.job_error_deletes),))
    if out.job_errors:
        cursor.execute(
            "INSERT INTO job_error (job_id, error) SELECT * FROM unnest(%s::text[], %s::text[])"
            " ON CONFLICT (job_id) DO UPDATE SET error = excluded.error",
            (list(out.job_errors), list(out.job_errors.values())),
        )
    if out.reports:
        cursor.execute(
            "INSERT INTO job_scheduling_report (job_id, reason, reported)"
            " SELECT j, r, to_timestamp(t) FROM unnest(%s::text[], %s::text[], %s::float8[]) AS u(j, r, t)"
            " ON CONFLICT (job_id) DO UPDATE SET reason = excluded.reason, reported = excluded.reported"
            " WHERE job_scheduling_report.reported <= excluded.reported",
            (list(out.reports), [r[0] for r in out.reports.values()], [r[1] for r in out.reports.values()]),
        )
    if out.count_deltas:
        keys = list(out.count_deltas)
        cursor.execute(
            "INSERT INTO job_counts (queue, jobset, state, count)"
            " SELECT * FROM unnest(%s::text[], %s::text[], %s::smallint[], %s::bigint[])"
            " ON CONFLICT (queue, jobset, state) DO UPDATE SET count = job_counts.count + excluded.count",
            (
                [k[0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [out.count_deltas[k] for k in keys],
            ),
        )
        cursor.execute(
            "DELETE FROM job_counts WHERE count = 0 AND (queue, jobset, state) IN"
            " (SELECT * FROM unnest(%s::text[], %s::text[], %s::smallint[]))",
            ([k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys]),
        )
