"""Keeping the Lookout database small and right: emptying it for a rebuild, pruning old
terminal jobs in small batches, and repairing jobs left live after their run ended.

Each step takes the writers' advisory lock (``flotilla.lookout.store``), so it never
interleaves with an ingester's batch, and keeps ``job_counts`` in step with the rows in the
same transaction. Pruning goes in batches of ``lookout.prune_batch_size`` so no transaction
holds many rows' locks for long (Armada deletes 1000 at a time for the same reason).
"""

from __future__ import annotations

import logging

import psycopg

from flotilla.lookout import states
from flotilla.lookout.migrations import VIEW_TABLES
from flotilla.lookout.store import WRITER_LOCK_KEY

log = logging.getLogger(__name__)

_TERMINAL = sorted(states.TERMINAL_STATES)
_RUN_ACTIVE = sorted(states.RUN_ACTIVE_STATES)

# What a job becomes when its latest run ended without the job following it.
_RUN_OUTCOME = {
    states.RUN_SUCCEEDED: states.SUCCEEDED,
    states.RUN_FAILED: states.FAILED,
    states.RUN_CANCELLED: states.CANCELLED,
    states.RUN_PREEMPTED: states.PREEMPTED,
    states.RUN_LEASE_RETURNED: states.QUEUED,
    states.RUN_LEASE_EXPIRED: states.QUEUED,
}

_COUNTS_DELTA = """
INSERT INTO job_counts (queue, jobset, state, count)
SELECT queue, jobset, state, sum(delta) FROM (
    SELECT queue, jobset, old_state AS state, -1 AS delta FROM changed
    UNION ALL
    SELECT queue, jobset, new_state, 1 FROM changed WHERE new_state IS NOT NULL
) d GROUP BY queue, jobset, state
ON CONFLICT (queue, jobset, state) DO UPDATE SET count = job_counts.count + excluded.count
"""
_DROP_EMPTY_COUNTS = """
DELETE FROM job_counts c USING changed
WHERE c.count = 0 AND c.queue = changed.queue AND c.jobset = changed.jobset
AND c.state IN (changed.old_state, changed.new_state)
"""


def empty(connection: psycopg.Connection) -> None:
    """Delete every row the log put in the database (the schema stays), for a replay."""
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
        connection.execute(f"TRUNCATE {', '.join(VIEW_TABLES)}")


def prune(connection: psycopg.Connection, older_than_seconds: float, batch_size: int) -> int:
    """Delete terminal jobs whose last change is older than ``older_than_seconds``, with their
    runs, spec, errors and report, ``batch_size`` jobs a transaction. Returns how many."""
    total = 0
    while True:
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            connection.execute(
                "CREATE TEMP TABLE IF NOT EXISTS changed "
                "(job_id text, queue text, jobset text, old_state smallint, new_state smallint) "
                "ON COMMIT DROP"
            )
            deleted = connection.execute(
                "INSERT INTO changed SELECT job_id, queue, jobset, state, NULL FROM job"
                " WHERE state = ANY(%s) AND last_transition_time < now() - make_interval(secs => %s::float8)"
                " ORDER BY last_transition_time LIMIT %s",
                (_TERMINAL, older_than_seconds, batch_size),
            ).rowcount
            if deleted:
                for table in ("job_run", "job_spec", "job_error", "job_scheduling_report", "job"):
                    connection.execute(
                        f"DELETE FROM {table} USING changed WHERE {table}.job_id = changed.job_id"
                    )
                connection.execute(_COUNTS_DELTA)
                connection.execute(_DROP_EMPTY_COUNTS)
        total += deleted
        if deleted < batch_size:
            break
    if total:
        log.info("lookout: pruned %d terminal jobs older than %.0fs", total, older_than_seconds)
    return total


def repair(connection: psycopg.Connection, ended_before_seconds: float) -> int:
    """Give each job still in a live state whose latest run ended more than
    ``ended_before_seconds`` ago the state its run's end implies. Returns how many."""
    outcome = (
        "CASE r.job_run_state " + " ".join(f"WHEN {r} THEN {j}" for r, j in _RUN_OUTCOME.items()) + " END"
    )
    with connection.transaction():
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
        connection.execute(
            "CREATE TEMP TABLE changed ON COMMIT DROP AS"
            f" SELECT j.job_id, j.queue, j.jobset, j.state AS old_state, {outcome}::smallint AS new_state,"
            " r.finished FROM job j JOIN job_run r ON r.run_id = j.latest_run_id"
            " WHERE j.state = ANY(%s) AND r.job_run_state = ANY(%s) AND r.finished IS NOT NULL"
            " AND r.finished < now() - make_interval(secs => %s::float8)",
            (_RUN_ACTIVE, list(_RUN_OUTCOME), ended_before_seconds),
        )
        # A run that lost its lease queues the job again, and counts as an attempt (as in
        # the job fold), so that a later retry's attempt number still matches.
        repaired = connection.execute(
            "UPDATE job SET state = changed.new_state, last_transition_time = changed.finished,"
            " attempt = job.attempt + (changed.new_state = %s)::int"
            " FROM changed WHERE job.job_id = changed.job_id",
            (states.QUEUED,),
        ).rowcount
        connection.execute(_COUNTS_DELTA)
        connection.execute(_DROP_EMPTY_COUNTS)
    if repaired:
        log.warning("lookout: repaired %d jobs left live after their run ended", repaired)
    return repaired
