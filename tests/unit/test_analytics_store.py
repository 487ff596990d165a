"""The analytics store on known histories: the rows a batch writes (through the one fold),
the operators' views' figures, and the read-only query path. Real DuckDB files, no Kafka."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flotilla.analytics.query import QueryRefused, format_result, run_read_only
from flotilla.analytics.rows import LogRecord, fold_batch, job_ids
from flotilla.analytics.store import AnalyticsStore, table_rows
from flotilla.log.schema import (
    ContainerExit,
    ExecutorHeartbeat,
    JobEvent,
    JobFailed,
    JobLeased,
    JobQueued,
    JobRunning,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
    NodeReport,
    QueueDefinition,
    encode,
)
from tests.harness.lookout_events import interleaved, mixed_histories

HOUR = 3600.0
T0 = 1_790_000_000 // 3600 * 3600.0  # the start of an hour
GIB = 2**30


def spec(job_id: str, queue: str, cpu: float, priority_class: str = "", submitted_at: float = T0) -> JobSpec:
    return JobSpec(
        job_id=job_id,
        queue=queue,
        job_set="set",
        priority=1.0,
        pod_spec={"containers": [{"name": "main"}]},
        requests={"cpu": int(cpu * 1000), "memory": GIB * 1000},
        priority_class=priority_class,
        submitted_at=submitted_at,
    )


def history(job: JobSpec, run_id: str, leased: float, running: float, end: float | None, failed: int = 0):
    """Submitted at the spec's time, queued, leased on executor e1 in pool p, running, then
    succeeded (or failed with exit code ``failed``) at ``end`` (None: still running)."""
    common = {"job_id": job.job_id, "queue": job.queue, "job_set": job.job_set}
    events: list[JobEvent] = [
        JobSubmitted(**common, created=job.submitted_at, job=job),
        JobQueued(**common, created=job.submitted_at),
        JobLeased(**common, created=leased, run_id=run_id, executor="e1", node="n1", pool="p"),
        JobRunning(**common, created=running, run_id=run_id, executor="e1", node="n1"),
    ]
    if end is not None and failed:
        exit_ = ContainerExit("main", failed)
        events.append(
            JobFailed(
                **common, created=end, run_id=run_id, containers=(exit_,), failure_category="user_error"
            )
        )
    elif end is not None:
        events.append(JobSucceeded(**common, created=end, run_id=run_id))
    return events


def heartbeats(start: float, end: float, cpu: float, every: float = 10.0) -> list[ExecutorHeartbeat]:
    node = NodeReport("n1", pool="p", allocatable={"cpu": int(cpu * 1000), "memory": 16 * GIB * 1000})
    count = int((end - start) / every) + 1  # the last at ``end``: the capacity covers [start, end)
    return [ExecutorHeartbeat(executor="e1", created=start + i * every, nodes=(node,)) for i in range(count)]


def records(messages) -> list[LogRecord]:
    return [LogRecord(0, offset, m, encode(m)) for offset, m in enumerate(messages)]


def write(store: AnalyticsStore, batch: list[LogRecord], cache: dict | None = None) -> None:
    wanted = job_ids(batch)
    known = {k: v for k, v in (cache or {}).items() if k in wanted}
    known.update(store.job_states(wanted - known.keys()))
    rows = fold_batch(batch, known)
    store.write(rows, {("events", 0): batch[-1].offset + 1})
    if cache is not None:
        cache.update(rows.states)


@pytest.fixture
def store(tmp_path: Path):
    opened = AnalyticsStore(tmp_path / "analytics.duckdb")
    yield opened
    opened.close()


def select(store: AnalyticsStore, sql: str) -> list[dict]:
    result = run_read_only(store.connection, sql)
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def test_queue_usage_gives_resource_seconds_per_queue_and_hour_and_shares_against_fair_share(store):
    a = spec("a", "qa", cpu=2)
    b = spec("b", "qb", cpu=1)
    messages = [
        QueueDefinition("qa", priority_factor=1.0),
        QueueDefinition("qb", priority_factor=2.0),
        *history(a, "ra", leased=T0, running=T0 + 10, end=T0 + HOUR / 2),
        *history(b, "rb", leased=T0, running=T0 + 10, end=T0 + 1.5 * HOUR),
        *heartbeats(T0, T0 + 2 * HOUR, cpu=4),
    ]
    write(store, records(messages))

    rows = select(store, "SELECT queue, epoch(hour) AS hour, cpu_seconds, share, fair_share FROM queue_usage")
    figures = [(r["queue"], r["hour"] - T0, r["cpu_seconds"], r["share"], r["fair_share"]) for r in rows]
    assert figures == [
        # hour 0: a held 2 cores for 1800 s, b 1 core for 3600 s, of 4 cores for 3600 s; weights 1 and 0.5
        ("qa", 0, 3600.0, pytest.approx(0.25), pytest.approx(2 / 3)),
        ("qb", 0, 3600.0, pytest.approx(0.25), pytest.approx(1 / 3)),
        # hour 1: only b, for 1800 s: alone, its fair share is the pool
        ("qb", HOUR, 1800.0, pytest.approx(0.125), pytest.approx(1.0)),
    ]


def test_a_queue_with_a_job_waiting_counts_in_the_fair_share_of_the_hour(store):
    a = spec("a", "qa", cpu=1)
    waiting = spec("w", "qw", cpu=1, submitted_at=T0 + 100)
    messages = [
        *history(a, "ra", leased=T0, running=T0, end=T0 + 600),
        JobSubmitted(job_id="w", queue="qw", job_set="set", created=T0 + 100, job=waiting),
        JobQueued(job_id="w", queue="qw", job_set="set", created=T0 + 100),
    ]
    write(store, records(messages))

    rows = select(store, "SELECT queue, cpu_seconds, fair_share FROM queue_usage")
    assert [(r["queue"], r["cpu_seconds"], r["fair_share"]) for r in rows] == [
        ("qa", 600.0, 0.5),
        ("qw", 0.0, 0.5),
    ]


def test_wait_times_give_submit_to_lease_and_to_running_per_queue_and_priority_class(store):
    messages = []
    for i, wait in enumerate([10.0, 20.0, 30.0]):
        job = spec(f"u{i}", "q", cpu=1, priority_class="urgent")
        messages += history(job, f"ru{i}", leased=T0 + wait, running=T0 + wait + 5, end=T0 + 100)
    slow = spec("s", "q", cpu=1, priority_class="batch")
    messages += history(slow, "rs", leased=T0 + 500, running=T0 + 560, end=None)
    waiting = spec("w", "q", cpu=1, priority_class="batch")
    messages += [JobSubmitted(job_id="w", queue="q", job_set="set", created=T0, job=waiting)]
    write(store, records(messages))

    rows = select(store, "SELECT * FROM wait_times")
    figures = {
        r["priority_class"]: (
            r["jobs"],
            r["leased"],
            r["waiting"],
            r["lease_wait_p50"],
            r["lease_wait_max"],
            r["running_wait_p50"],
        )
        for r in rows
    }
    assert figures == {"urgent": (3, 3, 0, 20.0, 30.0, 25.0), "batch": (2, 1, 1, 500.0, 500.0, 560.0)}


def test_failures_count_failed_runs_by_category_and_exit_code_and_keep_them_after_a_retry(store):
    first = spec("f", "q", cpu=1)
    messages = history(first, "r1", leased=T0, running=T0 + 1, end=T0 + 2, failed=3)
    # The retry policy queues the job again; its next run fails with another code.
    messages += [
        JobQueued(job_id="f", queue="q", job_set="set", created=T0 + 3, attempt=1),
        JobLeased(job_id="f", queue="q", job_set="set", created=T0 + 4, run_id="r2", executor="e1", pool="p"),
        JobFailed(
            job_id="f",
            queue="q",
            job_set="set",
            created=T0 + 5,
            run_id="r2",
            containers=(ContainerExit("main", 137),),
            failure_category="oom",
        ),
    ]
    messages += history(spec("g", "q", cpu=1), "r3", leased=T0, running=T0 + 1, end=T0 + 9, failed=3)
    write(store, records(messages[:6]))
    write(store, records(messages)[6:])

    rows = select(store, "SELECT failure_category, exit_code, runs, jobs FROM failures")
    assert [tuple(r.values()) for r in rows] == [("user_error", 3, 2, 2), ("oom", 137, 1, 1)]


def test_utilisation_gives_allocated_against_heartbeat_capacity_per_executor_and_hour(store):
    job = spec("a", "q", cpu=2)
    messages = [*history(job, "ra", leased=T0, running=T0, end=T0 + 1800), *heartbeats(T0, T0 + HOUR, cpu=4)]
    write(store, records(messages))

    rows = select(store, "SELECT * FROM utilisation")
    assert [
        (
            r["pool"],
            r["executor"],
            r["allocated_cpu_seconds"],
            r["capacity_cpu_seconds"],
            r["cpu_utilisation"],
        )
        for r in rows
    ] == [("p", "e1", 3600.0, 4 * 3600.0, 0.25)]


def test_a_record_the_fold_refuses_is_kept_as_an_event_but_changes_no_job(store):
    job = spec("a", "q", cpu=1)
    messages = history(job, "ra", leased=T0, running=T0 + 1, end=T0 + 2)
    late = JobRunning(job_id="a", queue="q", job_set="set", created=T0 + 3, run_id="ra")
    write(store, records([*messages, late]))

    events = select(store, 'SELECT type, applied FROM events ORDER BY "offset"')
    assert events[-1] == {"type": "running", "applied": False}
    assert select(store, "SELECT state, updated FROM jobs") == [{"state": "succeeded", "updated": T0 + 2}]


def test_batches_of_any_size_with_states_read_back_from_the_store_give_the_same_rows(tmp_path):
    log = records(interleaved(mixed_histories(120)))
    whole = AnalyticsStore(tmp_path / "whole.duckdb")
    write(whole, log)
    cut = AnalyticsStore(tmp_path / "cut.duckdb")
    for start in range(0, len(log), 7):
        write(cut, log[start : start + 7])  # no cache: each job's state comes back from jobs.fold
    expected = table_rows(whole.connection)
    assert table_rows(cut.connection) == expected
    assert len(expected["runs"]) > 0


def test_only_one_select_statement_is_run(store):
    for sql in ["DELETE FROM jobs", "SELECT 1; DROP TABLE jobs", "CREATE TABLE x (a INT)"]:
        with pytest.raises(QueryRefused):
            run_read_only(store.connection, sql)
    assert run_read_only(store.connection, "SELECT count(*) AS n FROM jobs").rows == [[0]]


def test_results_print_as_a_table_csv_or_json(store):
    result = run_read_only(store.connection, "SELECT 'a' AS name, 1.5 AS x UNION ALL SELECT 'bb', NULL")
    assert format_result(result, "csv") == "name,x\na,1.5\nbb,"
    assert format_result(result, "table") == "name  x\n----  ---\na     1.5\nbb"
    assert json.loads(format_result(result, "json")) == [{"name": "a", "x": 1.5}, {"name": "bb", "x": None}]


def test_a_select_cannot_read_the_machines_files(store):
    with pytest.raises(QueryRefused, match="disabled by config"):
        run_read_only(store.connection, "SELECT * FROM read_text('/etc/hostname')")


def test_a_finished_jobs_submit_read_again_in_a_later_batch_is_refused(store):
    job = spec("a", "q", cpu=1)
    first = history(job, "ra", leased=T0, running=T0 + 1, end=T0 + 2)
    write(store, records(first))
    again = LogRecord(0, len(first), first[0], encode(first[0]))  # the submit, delivered twice
    write(store, [again])

    assert select(store, "SELECT state, runs FROM jobs") == [{"state": "succeeded", "runs": 1}]
    assert select(store, 'SELECT applied FROM events ORDER BY "offset" DESC LIMIT 1') == [{"applied": False}]
