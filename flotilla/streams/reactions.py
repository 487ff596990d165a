"""What the scheduler writes to the log in reply to an event it has just applied.

Requests from users (cancel, reprioritise, preempt) and new submissions become decisions
here; the scheduling cycle itself (leases) lives in ``flotilla.scheduling``. The function is
pure, and the events it returns have deterministic ids, so replaying an event after a crash
produces the same replies, which every projection then drops as duplicates.
"""

from __future__ import annotations

from typing import TypedDict

from flotilla.jobs.retry import retries_failure
from flotilla.jobs.state import JobState
from flotilla.log.schema import (
    JobCancelled,
    JobCancelling,
    JobEvent,
    JobFailed,
    JobPreempted,
    JobPreempting,
    JobQueued,
    JobReprioritized,
    JobReprioritizing,
    JobSubmitted,
    RetryPolicy,
)


class _Common(TypedDict):
    job_id: str
    queue: str
    job_set: str
    created: float


def reactions(
    before: JobState | None,
    after: JobState,
    event: JobEvent,
    now: float,
    retry_policy: RetryPolicy | None = None,
) -> list[JobEvent]:
    """Events the scheduler emits after ``event`` moved a job from ``before`` to ``after``;
    ``retry_policy`` is the policy the job's queue names, if any."""
    common = _Common(job_id=event.job_id, queue=event.queue, job_set=event.job_set, created=now)
    if isinstance(event, JobFailed):
        return (
            [JobQueued(**common, attempt=after.attempt + 1)]
            if retries_failure(after, event, retry_policy)
            else []
        )
    if isinstance(event, JobSubmitted):
        return [JobQueued(**common, attempt=0)]
    if isinstance(event, JobCancelling):
        return [JobCancelled(**common, run_id=after.run_id, requestor=event.requestor, reason=event.reason)]
    if isinstance(event, JobReprioritizing):
        return [
            JobReprioritized(
                **common,
                new_priority=event.new_priority,
                requestor=event.requestor,
                request_id=event.request_id,
            )
        ]
    if isinstance(event, JobPreempting):
        return [JobPreempted(**common, run_id=after.run_id, executor=after.executor, reason=event.reason)]
    return []
