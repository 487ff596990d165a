"""What the scheduler writes to the log in reply to an event it has just applied.

Requests from users (cancel, reprioritise, preempt) and new submissions become decisions
here; the scheduling cycle itself (leases) lives in ``flotilla.scheduling``. The function is
pure, and the events it returns have deterministic ids, so replaying an event after a crash
produces the same replies, which every projection then drops as duplicates.

A replayed event may find its own effect already in the jobs table: the worker died after the
table's changelog had the new state and before the replies were on the log (two topics, no
transaction). The fold then refuses the event as a duplicate, yet its replies are still due
(a submit never answered with ``queued`` would stay submitted for good): ``replies_still_due``
gives them again.
"""

from __future__ import annotations

from typing import TypedDict

from flotilla.jobs.retry import retries_failure
from flotilla.jobs.state import FAILED, SUBMITTED, JobState, apply
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


def _effect_already_in(job: JobState, event: JobEvent) -> bool:
    """Whether ``job`` is the state ``event`` itself produced, its replies not folded in yet."""
    if isinstance(event, JobSubmitted):
        return job.state == SUBMITTED
    if isinstance(event, JobFailed):
        return job.state == FAILED and job.run_id == event.run_id
    if isinstance(event, JobCancelling):
        return job.cancel_requested and not job.terminal
    if isinstance(event, JobReprioritizing):
        return event.request_id in job.requested_reprioritizations
    if isinstance(event, JobPreempting):
        return job.preempt_requested and job.has_active_run and event.run_id in ("", job.run_id)
    return False


def replies_still_due(
    job: JobState, event: JobEvent, now: float, retry_policy: RetryPolicy | None = None
) -> list[JobEvent]:
    """For an event the fold refused: the replies it was owed, if its effect is already in
    ``job`` and they would still change the job (none reached it yet)."""
    if not _effect_already_in(job, event):
        return []
    return [r for r in reactions(job, job, event, now, retry_policy) if apply(job, r) is not None]
