"""Lookout agrees with the one job fold (flotilla.jobs.state): after ingesting a log into real
Postgres, each job's state, latest run and runs are what folding its events gives, however
the log is cut into batches and whichever batches are applied twice.

Two orders the batch fold once got wrong go through the whole ingester (broker to
Postgres); then seeded random logs go through the store: each job's history is a random
walk of what the scheduler, the executors and the API write (leases, reports, lease
returns and expiries, failures retried by a retry policy, cancel requests and cancels,
preemption), with at-least-once delivery's copies and lost leases' stale reports mixed in,
the jobs interleaved as concurrent jobs are."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from flotilla.jobs import state as fold
from flotilla.log.schema import (
    JobEvent,
    JobFailed,
    JobLeaseReturned,
    JobPreempting,
    JobSpec,
)
from flotilla.lookout import states
from flotilla.lookout.ingester import ingest_to_end
from flotilla.lookout.store import LogRecord, prepare, write_batch
from tests.harness.lookout_events import (
    cancelled,
    cancelling,
    common,
    failed,
    lease_expired,
    leased,
    lifecycle,
    pending,
    preempted,
    queued,
    running,
    spec,
    submitted,
    succeeded,
)
from tests.integration.lookout.conftest import counts_match_rows
from tests.integration.lookout.test_ingester import lookout_settings, write_events

pytestmark = pytest.mark.integration


JobView = tuple[int, str | None, dict[str, int], bool]
"""A job as Lookout shows it: state, latest run, each run's state, whether it has an error
(the failure of a job that ended failed)."""


def folded(events: list[JobEvent]) -> dict[str, JobView]:
    jobs: dict[str, fold.JobState] = {}
    for event in events:
        after = fold.apply(jobs.get(event.job_id), event)
        if after is not None:
            jobs[event.job_id] = after
    return {
        job_id: (
            states.FROM_JOB_FOLD[job.state],
            job.runs[-1].run_id if job.runs else None,
            {r.run_id: states.RUN_FROM_JOB_FOLD[r.state] for r in job.runs},
            job.state == fold.FAILED,
        )
        for job_id, job in jobs.items()
    }


def in_lookout(dsn: str) -> dict[str, JobView]:
    with psycopg.connect(dsn) as connection:
        jobs = connection.execute("SELECT job_id, state, latest_run_id FROM job").fetchall()
        runs = connection.execute("SELECT job_id, run_id, job_run_state FROM job_run").fetchall()
        errors = {job_id for (job_id,) in connection.execute("SELECT job_id FROM job_error")}
    shown: dict[str, JobView] = {
        job_id: (state, latest, {}, job_id in errors) for job_id, state, latest in jobs
    }
    for job_id, run_id, run_state in runs:
        shown[job_id][2][run_id] = run_state
    return shown


# --- the two orders, through the ingester ----------------------------------------------


async def ingested(broker: str, dsn: str, tmp_path: Path, events: list[JobEvent]) -> dict[str, JobView]:
    settings = lookout_settings(broker, tmp_path, dsn)
    await write_events(settings, events)
    await ingest_to_end(settings, dsn)
    return in_lookout(dsn)


async def test_a_failed_job_its_retry_policy_queues_again_shows_its_new_run(
    broker: str, lookout_dsn: str, tmp_path: Path
) -> None:
    job = spec("retried")
    events = [*lifecycle(job, "r1", "failed"), queued(job, 1), leased(job, "r2"), running(job, "r2")]
    shown = await ingested(broker, lookout_dsn, tmp_path, events)
    assert shown == folded(events)
    runs = {"r1": states.RUN_FAILED, "r2": states.RUN_RUNNING}
    assert shown["retried"] == (states.RUNNING, "r2", runs, False)
    assert counts_match_rows(lookout_dsn)


async def test_a_lease_after_a_cancel_request_is_not_taken(
    broker: str, lookout_dsn: str, tmp_path: Path
) -> None:
    job = spec("cancelling")
    events = [submitted(job), queued(job), cancelling(job), leased(job, "r1"), running(job, "r1")]
    shown = await ingested(broker, lookout_dsn, tmp_path, events)
    assert shown == folded(events)
    assert shown["cancelling"] == (states.QUEUED, None, {}, False)


# --- random logs, through the store ----------------------------------------------------


def lease_returned(job: JobSpec, run_id: str) -> JobLeaseReturned:
    return JobLeaseReturned(**common(job, run_id), executor="c1", reason="pod stuck pending")


def preempting(job: JobSpec, run_id: str) -> JobPreempting:
    return JobPreempting(**common(job, run_id), requestor="scheduler", reason="fair share")


def categorised_failure(job: JobSpec, run_id: str) -> JobFailed:
    return replace(failed(job, run_id, exit_code=137), failure_category="oom")


def random_history(rng: random.Random, job: JobSpec, steps: int) -> list[JobEvent]:
    """One job's events: a walk that mostly moves its current run on, with the requests,
    retries, copies and stale reports a real log holds."""
    events: list[JobEvent] = [submitted(job), queued(job)]
    state = fold.apply(fold.apply(None, events[0]), events[1])
    assert state is not None
    runs: list[str] = []
    for _ in range(steps):
        run = state.run_id or (runs[-1] if runs else "")
        old = rng.choice(runs) if runs else ""
        choices: list[tuple[int, JobEvent]] = []
        if state.state == fold.FAILED:
            choices.append((20, queued(job, state.attempt + 1)))  # the retry policy's retry
        fresh = f"{job.job_id}-r{len(runs)}"
        if not state.terminal:
            # A new lease; of a job that is not queued, a deposed scheduler's.
            choices.append((8 if state.state == fold.QUEUED else 1, leased(job, fresh)))
        if run:
            choices += [
                (4, pending(job, run)),
                (4, running(job, run)),
                (2, succeeded(job, run)),
                (2, failed(job, run)),
                (1, categorised_failure(job, run)),
                (2, lease_returned(job, run)),
                (2, lease_expired(job, run)),
                (1, preempting(job, run)),
                (1, preempted(job, run)),
            ]
        if old:
            # A lost lease's run reports late, or a lease is delivered again.
            choices += [(1, running(job, old)), (1, succeeded(job, old)), (1, leased(job, old))]
        choices += [(1, cancelling(job)), (1, cancelled(job, state.run_id)), (1, rng.choice(events))]
        weights, candidates = zip(*choices, strict=True)
        event = rng.choices(candidates, weights)[0]
        if event.run_id == fresh:
            runs.append(fresh)
        events.append(event)
        state = fold.apply(state, event) or state
        if state.terminal and state.state != fold.FAILED and rng.random() < 0.5:
            break
    return events


def random_log(seed: int, jobs: int) -> list[JobEvent]:
    rng = random.Random(seed)
    histories = [
        random_history(rng, spec(f"s{seed}-j{i}", job_set=f"set{i % 3}"), rng.randint(1, 20))
        for i in range(jobs)
    ]
    log: list[JobEvent] = []
    while any(histories):
        # The next event of a random job: each job's events stay in their order.
        log.append(rng.choice([h for h in histories if h]).pop(0))
    return log


TOPIC = ("lk.events", 0)


@pytest.mark.parametrize("seed", range(16))
def test_lookout_agrees_with_the_job_fold_on_random_logs_in_random_batches(
    db: psycopg.Connection, lookout_dsn: str, seed: int
) -> None:
    log = random_log(seed, jobs=25)
    rng = random.Random(-seed)
    prepare(db)
    offset = 0
    while offset < len(log):
        size = rng.randint(1, 40)
        batch = [LogRecord(*TOPIC, offset + i, e) for i, e in enumerate(log[offset : offset + size])]
        write_batch(db, batch, {TOPIC: offset}, {TOPIC: 0})
        if rng.random() < 0.3:  # a reader that lost its place applies the batch again
            assert write_batch(db, batch, {TOPIC: offset}, {TOPIC: 0}).applied == 0
        offset += len(batch)
    expected = folded(log)
    shown = in_lookout(lookout_dsn)
    wrong = {
        job_id: (shown.get(job_id), view) for job_id, view in expected.items() if shown.get(job_id) != view
    }
    assert not wrong, f"seed {seed}: job: (Lookout, the fold): {wrong}"
    assert set(shown) == set(expected)
    assert counts_match_rows(lookout_dsn)
