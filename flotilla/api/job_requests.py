"""The log events a user's request about a job becomes (cancel, reprioritise, preempt), written
by the API for ``api.Submit`` (by job, by job set), ``api.QueueService`` (by queue) and
``flotilla.Lookout`` (by job ids across job sets, Lookout's actions) alike: which jobs a request
acts on is decided here, once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from armada_client.armada import submit_pb2

from flotilla.jobs.state import JobState
from flotilla.jobs.states import LEASED, PENDING, QUEUED, RUNNING, SUBMITTED
from flotilla.log.schema import JobCancelling, JobPreempting, JobReprioritizing, now

# Who a request comes from until the API authenticates callers (issue 13): Armada's name for
# an unauthenticated principal.
ANONYMOUS = "anonymous"


# Armada's active job states (the ones a job can be cancelled in by queue), as Flotilla's
# states; Armada's QUEUED covers a job Flotilla has not yet acknowledged as queued.
ACTIVE_FILTER_STATES = {
    submit_pb2.QUEUED: frozenset({SUBMITTED, QUEUED}),
    submit_pb2.LEASED: frozenset({LEASED}),
    submit_pb2.PENDING: frozenset({PENDING}),
    submit_pb2.RUNNING: frozenset({RUNNING}),
}


def cancelling(job: JobState, reason: str, requestor: str = ANONYMOUS) -> JobCancelling:
    return JobCancelling(
        job_id=job.spec.job_id,
        queue=job.spec.queue,
        job_set=job.spec.job_set,
        created=now(),
        requestor=requestor,
        reason=reason or "cancelled by user",
    )


def preempting(job: JobState, reason: str, requestor: str = ANONYMOUS) -> JobPreempting:
    """A request to preempt the job's current run (aimed at that run, so that a redelivered
    request cannot preempt a later one)."""
    return JobPreempting(
        job_id=job.spec.job_id,
        queue=job.spec.queue,
        job_set=job.spec.job_set,
        created=now(),
        run_id=job.run_id,
        requestor=requestor,
        reason=reason or "preempted by user",
    )


def cancellations(jobs: Iterable[JobState], reason: str) -> list[JobCancelling]:
    """The cancel requests for the jobs that are still active (an ended job is left as it is)."""
    return [cancelling(j, reason) for j in jobs if not j.terminal]


def preemptions(jobs: Iterable[JobState], reason: str) -> list[JobPreempting]:
    """The preempt requests for the jobs that have a run to preempt."""
    return [preempting(j, reason) for j in jobs if j.has_active_run]


def priority_problem(new_priority: float) -> str:
    """What is wrong with ``new_priority`` as a job's priority ("" if nothing)."""
    return f"new_priority: {new_priority} must not be negative" if new_priority < 0 else ""


def reprioritizations(
    jobs: Iterable[JobState], new_priority: float, requestor: str = ANONYMOUS
) -> tuple[list[JobReprioritizing], dict[str, str]]:
    """The reprioritise requests for the active jobs, and per job "" or why it was left out."""
    results: dict[str, str] = {}
    events: list[JobReprioritizing] = []
    for job in jobs:
        if job.terminal:
            results[job.spec.job_id] = f"job is {job.state}"
            continue
        results[job.spec.job_id] = ""
        events.append(
            JobReprioritizing(
                job_id=job.spec.job_id,
                queue=job.spec.queue,
                job_set=job.spec.job_set,
                created=now(),
                new_priority=new_priority,
                requestor=requestor,
                request_id=uuid.uuid4().hex,
            )
        )
    return events, results
