"""Between the job states the log folds to and the pure scheduling cycle: the cycle's inputs
from job states, and the events that record its decisions. Pure, so the scheduler service,
tests and tools share one translation."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TypedDict

from flotilla.jobs.state import JobState
from flotilla.log.schema import (
    ExecutorHeartbeat,
    JobFailed,
    JobLeased,
    JobLeaseExpired,
    JobPreempted,
    QueueDefinition,
)
from flotilla.scheduling import GANG_ID_ANNOTATION, CycleResult, Lease, Node, Queue, QueuedJob, RunningJob


def queued_job(job: JobState) -> QueuedJob:
    return replace(QueuedJob.from_spec(job.spec), priority=job.priority)


def running_job(job: JobState, pool: str = "") -> RunningJob:
    spec = job.spec
    run = job.runs[-1] if job.runs and job.runs[-1].run_id == job.run_id else None
    return RunningJob(
        job_id=spec.job_id,
        queue=spec.queue,
        run_id=job.run_id,
        executor=job.executor,
        node=job.node,
        requests=spec.requests,
        priority_class=spec.priority_class,
        priority=job.priority,
        submitted_at=spec.submitted_at,
        started_at=run.started_at if run else 0.0,
        active_deadline_seconds=float(spec.pod_spec.get("activeDeadlineSeconds") or 0),
        gang_id=spec.annotations.get(GANG_ID_ANNOTATION, ""),
        pool=pool,
    )


def nodes_of(executor_id: str, heartbeat: ExecutorHeartbeat) -> list[Node]:
    """The nodes an executor's heartbeat reports, in the cycle's form."""
    return [Node.from_report(executor_id, n) for n in heartbeat.nodes]


def cycle_queue(queue: QueueDefinition) -> Queue:
    return Queue(name=queue.name, priority_factor=queue.priority_factor, cordoned=queue.cordoned)


def lease_event(job: QueuedJob, lease: Lease, run_id: str, at: float) -> JobLeased:
    return JobLeased(
        job_id=job.job_id,
        queue=job.queue,
        job_set=job.job_set,
        created=at,
        run_id=run_id,
        executor=lease.executor,
        node=lease.node,
        pool=lease.pool,
    )


class _RunEventFields(TypedDict):
    job_id: str
    queue: str
    job_set: str
    created: float
    run_id: str
    executor: str


def _run_event_fields(job: JobState, at: float) -> _RunEventFields:
    """The fields every event the leader writes about a job's current run starts with."""
    spec = job.spec
    return _RunEventFields(
        job_id=spec.job_id,
        queue=spec.queue,
        job_set=spec.job_set,
        created=at,
        run_id=job.run_id,
        executor=job.executor,
    )


def lease_expired_event(job: JobState, at: float) -> JobLeaseExpired:
    """The end of a run whose executor has been silent for longer than the lease timeout."""
    return JobLeaseExpired(**_run_event_fields(job, at))


def preemption_events(result: CycleResult, jobs: dict[str, JobState], at: float) -> list[JobPreempted]:
    reasons = result.preemption_reasons
    events = []
    for job_id in result.preemptions:
        job = jobs.get(job_id)
        if job is None or not job.has_active_run:
            continue
        events.append(
            JobPreempted(
                **_run_event_fields(job, at), reason=reasons.get(job_id, "preempted by the scheduler")
            )
        )
    return events


def deadline_events(job_ids: Iterable[str], jobs: dict[str, JobState], at: float) -> list[JobFailed]:
    events = []
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None or not job.has_active_run:
            continue
        events.append(
            JobFailed(
                **_run_event_fields(job, at),
                node=job.node,
                reason="DeadlineExceeded: the job ran longer than its deadline",
            )
        )
    return events
