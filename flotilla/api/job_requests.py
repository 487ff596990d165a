"""The log events a user's request about a job becomes (cancel, preempt), written by the API
for ``api.Submit`` (by job, by job set) and ``api.QueueService`` (by queue) alike."""

from __future__ import annotations

from armada_client.armada import submit_pb2

from flotilla.jobs.state import JobState
from flotilla.jobs.states import LEASED, PENDING, QUEUED, RUNNING, SUBMITTED
from flotilla.log.schema import JobCancelling, JobPreempting, now

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
