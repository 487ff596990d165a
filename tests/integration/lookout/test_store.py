"""The Lookout store: each batch in one transaction with its offsets, creates if absent,
updates only of the fields events carry, counts kept with the rows; migrations; pruning
and repair. Real Postgres, records built in the test."""

from __future__ import annotations

import psycopg
import pytest

from flotilla.lookout import maintenance, states
from flotilla.lookout.migrations import MIGRATIONS, SCHEMA_VERSION, SchemaTooNew, migrate
from flotilla.lookout.store import LogRecord, prepare, write_batch
from tests.harness.lookout_events import (
    cancelled,
    interleaved,
    lifecycle,
    mixed_histories,
    reprioritized,
    running,
    spec,
    succeeded,
)
from tests.integration.lookout.conftest import counts_match_rows, table_rows

pytestmark = pytest.mark.integration

EVENTS = ("lk.events", 0)


def records(events, start: int = 0) -> list[LogRecord]:
    return [LogRecord(EVENTS[0], EVENTS[1], start + i, e) for i, e in enumerate(events)]


def write(db: psycopg.Connection, batch: list[LogRecord], expected: int | None = None):
    prepare(db)
    at = batch[0].offset if expected is None else expected
    return write_batch(db, batch, {EVENTS: at}, {EVENTS: 0})


def test_migrations_are_recorded_in_the_database_and_applied_once(lookout_dsn: str) -> None:
    with psycopg.connect(lookout_dsn, autocommit=True) as connection:
        assert migrate(connection) == SCHEMA_VERSION
        assert migrate(connection) == SCHEMA_VERSION
        versions = connection.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
    assert [v for (v,) in versions] == list(range(1, SCHEMA_VERSION + 1))


def test_a_database_of_version_1_migrates_with_each_jobs_requeues_as_its_attempt(lookout_dsn: str) -> None:
    with psycopg.connect(lookout_dsn, autocommit=True) as connection:
        name, sql = MIGRATIONS[0]
        connection.execute(
            "CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,"
            " applied timestamptz NOT NULL DEFAULT now())"
        )
        connection.execute(sql)
        connection.execute("INSERT INTO schema_migrations (version, name) VALUES (1, %s)", (name,))
        connection.execute(
            "INSERT INTO job (job_id, queue, owner, jobset, cpu, memory, ephemeral_storage, gpu, priority,"
            " submitted, state, last_transition_time) VALUES"
            " ('requeued', 'q', 'o', 's', 0, 0, 0, 0, 1, now(), 1, now()),"
            " ('fresh', 'q', 'o', 's', 0, 0, 0, 0, 1, now(), 1, now())"
        )
        connection.execute(
            "INSERT INTO job_run (run_id, job_id, cluster, job_run_state) VALUES"
            " ('r1', 'requeued', 'c', %s), ('r2', 'requeued', 'c', %s), ('r3', 'requeued', 'c', %s)",
            (states.RUN_LEASE_EXPIRED, states.RUN_LEASE_RETURNED, states.RUN_RUNNING),
        )
        assert migrate(connection) == SCHEMA_VERSION
        rows = connection.execute("SELECT job_id, attempt, cancel_requested FROM job ORDER BY job_id")
        assert rows.fetchall() == [("fresh", 0, False), ("requeued", 2, False)]


def test_a_database_newer_than_the_code_is_refused_with_both_versions_named(db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (%s, 'from the future')", (SCHEMA_VERSION + 1,)
    )
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1}.*version {SCHEMA_VERSION}"):
        migrate(db)


def test_a_batch_and_its_offsets_commit_together(db: psycopg.Connection, lookout_dsn: str) -> None:
    batch = records(interleaved(mixed_histories(14)))
    assert write(db, batch).applied == len(batch)
    rows = table_rows(lookout_dsn)
    assert rows["ingester_offsets"] == [(EVENTS[0], EVENTS[1], len(batch))]
    assert len(rows["job"]) == 14 and len(rows["job_spec"]) == 14
    assert counts_match_rows(lookout_dsn)


def test_a_batch_applied_twice_changes_nothing(db: psycopg.Connection, lookout_dsn: str) -> None:
    first = records(interleaved(mixed_histories(21)))
    waiting = spec("job000006", queue="queue0", job_set="set2")  # queued, reprioritised to 9 in `first`
    second = records([reprioritized(waiting, 3.0)], start=len(first))
    write(db, first)
    write(db, second)
    before = table_rows(lookout_dsn)
    assert write(db, first, expected=0).applied == 0  # a reader that lost its place replays `first`
    assert table_rows(lookout_dsn) == before
    assert db.execute("SELECT priority FROM job WHERE job_id = 'job000006'").fetchone() == (3.0,)


def test_events_the_log_holds_twice_change_nothing(db: psycopg.Connection, lookout_dsn: str) -> None:
    events = interleaved(mixed_histories(21))
    write(db, records(events))
    before = table_rows(lookout_dsn)
    assert write(db, records(events, start=len(events))).applied == len(events)
    after = table_rows(lookout_dsn)
    assert after.pop("ingester_offsets") == [(EVENTS[0], EVENTS[1], 2 * len(events))]
    before.pop("ingester_offsets")
    assert after == before


def test_a_terminal_job_keeps_its_state_whatever_comes_after(
    db: psycopg.Connection, lookout_dsn: str
) -> None:
    job = spec("j1")
    events = lifecycle(job, "r1", "succeeded")
    write(db, records(events))
    write(db, records([cancelled(job, "r1"), running(job, "r1")], start=len(events)))
    ((state, cancelled_at),) = db.execute("SELECT state, cancelled FROM job").fetchall()
    assert (state, cancelled_at) == (states.SUCCEEDED, None)
    assert db.execute("SELECT job_run_state FROM job_run").fetchall() == [(states.RUN_SUCCEEDED,)]


def test_an_update_keeps_the_fields_its_events_do_not_carry(db: psycopg.Connection) -> None:
    job = spec("j1")
    events = lifecycle(job, "r1", "running")
    write(db, records(events[:3]))  # submitted, queued, leased: the run is created
    write(db, records(events[3:] + [succeeded(job, "r1")], start=3))
    run = db.execute(
        "SELECT cluster, node, pool, leased IS NOT NULL, started IS NOT NULL, exit_code FROM job_run"
    ).fetchone()
    assert run == ("c1", "n1", "p1", True, True, 0)


def test_a_reader_ahead_of_an_emptied_database_is_sent_back(db: psycopg.Connection) -> None:
    batch = records(interleaved(mixed_histories(7)))
    write(db, batch)
    maintenance.empty(db)
    result = write(db, records(lifecycle(spec("late"), "r9"), start=len(batch)))
    assert result.reseek == {EVENTS: 0} and result.applied == 0
    assert db.execute("SELECT count(*) FROM job").fetchone() == (0,)


def test_prune_deletes_old_terminal_jobs_in_batches_with_their_rows_and_counts(
    db: psycopg.Connection, lookout_dsn: str
) -> None:
    write(db, records(interleaved(mixed_histories(35))))
    terminal = db.execute(
        "SELECT count(*) FROM job WHERE state = ANY(%s)", (sorted(states.TERMINAL_STATES),)
    ).fetchone()
    assert maintenance.prune(db, 0, batch_size=4) == terminal[0]
    left = db.execute("SELECT DISTINCT state FROM job").fetchall()
    assert {s for (s,) in left} <= states.ACTIVE_STATES
    assert db.execute(
        "SELECT count(*) FROM job_run WHERE job_id NOT IN (SELECT job_id FROM job)"
    ).fetchone() == (0,)
    assert db.execute(
        "SELECT count(*) FROM job_spec WHERE job_id NOT IN (SELECT job_id FROM job)"
    ).fetchone() == (0,)
    assert counts_match_rows(lookout_dsn)


def test_prune_keeps_terminal_jobs_younger_than_the_age(db: psycopg.Connection) -> None:
    write(db, records(interleaved(mixed_histories(7))))
    db.execute("UPDATE job SET last_transition_time = now()")
    assert maintenance.prune(db, 3600, batch_size=10) == 0


def test_repair_gives_a_job_left_live_after_its_run_ended_the_runs_outcome(
    db: psycopg.Connection, lookout_dsn: str
) -> None:
    job = spec("zombie")
    write(db, records(lifecycle(job, "r1", "succeeded")))
    # The bug repair exists for: the job row missed its run's end.
    db.execute("UPDATE job SET state = %s", (states.RUNNING,))
    db.execute("UPDATE job_counts SET state = %s WHERE state = %s", (states.RUNNING, states.SUCCEEDED))
    assert counts_match_rows(lookout_dsn)
    assert maintenance.repair(db, ended_before_seconds=3600) == 1  # ended long ago (test clock)
    assert db.execute("SELECT state FROM job").fetchone() == (states.SUCCEEDED,)
    assert counts_match_rows(lookout_dsn)
    assert maintenance.repair(db, ended_before_seconds=3600) == 0


def test_repair_of_a_job_whose_run_lost_its_lease_counts_the_attempt(db: psycopg.Connection) -> None:
    job = spec("zombie")
    write(db, records(lifecycle(job, "r1", "running")))
    # The job row missed the expiry of its run's lease.
    db.execute("UPDATE job_run SET job_run_state = %s, finished = started", (states.RUN_LEASE_EXPIRED,))
    assert maintenance.repair(db, ended_before_seconds=3600) == 1
    assert db.execute("SELECT state, attempt FROM job").fetchone() == (states.QUEUED, 1)
