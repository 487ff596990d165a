"""A job's state as a left fold over its events: ``apply(state, event) -> new state or None``.

Every projection of the log (the scheduler's tables, the API's event view, the executors'
view of their leases, later Lookout) folds events through this one function, so they agree
on which events count. ``None`` means the event is refused: a duplicate (at-least-once
delivery), a report about a run that is no longer the job's run (invariant 4: an executor
that lost its lease cannot decide the job's outcome), or a second lease on a job that is
already leased (a deposed scheduler's lease loses to the one earlier in the log).

States are the one vocabulary of :mod:`flotilla.jobs.states` (Armada's Lookout names).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from flotilla.log.schema import (
    JobCancelled,
    JobCancelling,
    JobEvent,
    JobFailed,
    JobLeased,
    JobLeaseExpired,
    JobLeaseReturned,
    JobPending,
    JobPreempted,
    JobPreempting,
    JobQueued,
    JobReprioritized,
    JobReprioritizing,
    JobRunning,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
    record_fields,
)

from .states import (
    ACTIVE_RUN_STATES,
    CANCELLED,
    FAILED,
    LEASE_EXPIRED,
    LEASE_RETURNED,
    LEASED,
    PENDING,
    PREEMPTED,
    QUEUED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    TERMINAL_STATES,
)


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    executor: str
    node: str
    leased_at: float
    pending_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    state: str = LEASED
    pool: str = ""


@dataclass(frozen=True)
class JobState:
    spec: JobSpec
    state: str
    priority: float
    updated: float
    attempt: int = 0
    run_id: str = ""
    executor: str = ""
    node: str = ""
    cancel_requested: bool = False
    preempt_requested: bool = False
    cancel_reason: str = ""
    reason: str = ""
    exit_codes: dict[str, int] = field(default_factory=dict)
    failure_category: str = ""
    failure_subcategory: str = ""
    retries: int = 0
    runs: tuple[RunRecord, ...] = ()
    requested_reprioritizations: tuple[str, ...] = ()
    applied_reprioritizations: tuple[str, ...] = ()

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def has_active_run(self) -> bool:
        return self.state in ACTIVE_RUN_STATES

    @property
    def pool(self) -> str:
        """The pool of the job's active run ("" when it has none)."""
        return self.runs[-1].pool if self.has_active_run and self.runs else ""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (the jobs table's value); nested values are shared, not copied."""
        data = record_fields(self)
        data["spec"] = record_fields(self.spec)
        data["runs"] = [record_fields(r) for r in self.runs]
        data["requested_reprioritizations"] = list(self.requested_reprioritizations)
        data["applied_reprioritizations"] = list(self.applied_reprioritizations)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobState:
        data = dict(data)
        data["spec"] = JobSpec.from_dict(data["spec"])
        data["runs"] = tuple(RunRecord(**r) for r in data.get("runs", ()))
        data["requested_reprioritizations"] = tuple(data.get("requested_reprioritizations", ()))
        data["applied_reprioritizations"] = tuple(data.get("applied_reprioritizations", ()))
        return cls(**data)


def _end_run(job: JobState, event: JobEvent, run_state: str) -> tuple[RunRecord, ...]:
    return _update_run(job, state=run_state, finished_at=event.created)


def _update_run(job: JobState, **changes: Any) -> tuple[RunRecord, ...]:
    return tuple(replace(r, **changes) if r.run_id == job.run_id else r for r in job.runs)


def _requeued(job: JobState, at: float, **changes: Any) -> JobState:
    """``job`` queued again for a new run: it holds no run, and no preemption is pending."""
    return replace(
        job, state=QUEUED, run_id="", executor="", node="", preempt_requested=False, updated=at, **changes
    )


def apply(state: JobState | None, event: JobEvent) -> JobState | None:
    """The job's state after ``event``, or None when the event does not apply to it."""
    if isinstance(event, JobSubmitted):
        if state is not None or event.job is None:
            return None
        return JobState(spec=event.job, state=SUBMITTED, priority=event.job.priority, updated=event.created)
    if state is None:
        return None
    at = event.created
    if isinstance(event, JobQueued) and state.state == FAILED and event.attempt == state.attempt + 1:
        # The scheduler retries the failed run under the queue's retry policy
        # (flotilla.jobs.retry): the same job, queued again for a new run.
        return _requeued(
            state,
            at,
            attempt=event.attempt,
            retries=state.retries + 1,
            reason="",
            exit_codes={},
            failure_category="",
            failure_subcategory="",
        )
    if state.terminal:
        return None
    current_run = bool(event.run_id) and event.run_id == state.run_id

    if isinstance(event, JobQueued):
        if state.state != SUBMITTED or event.attempt != state.attempt:
            return None
        return replace(state, state=QUEUED, updated=at)
    if isinstance(event, JobLeased):
        if state.state != QUEUED or state.cancel_requested or not event.run_id:
            return None
        if any(r.run_id == event.run_id for r in state.runs):
            # A redelivered lease of a run that already ended: a run never becomes active twice.
            return None
        run = RunRecord(
            run_id=event.run_id, executor=event.executor, node=event.node, leased_at=at, pool=event.pool
        )
        return replace(
            state,
            state=LEASED,
            run_id=event.run_id,
            executor=event.executor,
            node=event.node,
            runs=state.runs + (run,),
            updated=at,
        )
    if isinstance(event, JobPending):
        if not current_run or state.state != LEASED:
            return None
        return replace(
            state, state=PENDING, runs=_update_run(state, state=PENDING, pending_at=at), updated=at
        )
    if isinstance(event, JobRunning):
        if not current_run or state.state not in (LEASED, PENDING):
            return None
        return replace(
            state, state=RUNNING, runs=_update_run(state, state=RUNNING, started_at=at), updated=at
        )
    if isinstance(event, JobSucceeded):
        if not current_run or not state.has_active_run:
            return None
        return replace(state, state=SUCCEEDED, runs=_end_run(state, event, SUCCEEDED), updated=at)
    if isinstance(event, JobFailed):
        if not current_run or not state.has_active_run:
            return None
        return replace(
            state,
            state=FAILED,
            reason=event.reason,
            exit_codes=event.exit_codes,
            failure_category=event.failure_category,
            failure_subcategory=event.failure_subcategory,
            runs=_end_run(state, event, FAILED),
            updated=at,
        )
    if isinstance(event, (JobLeaseReturned, JobLeaseExpired)):
        if not current_run or not state.has_active_run:
            return None
        run_state = LEASE_RETURNED if isinstance(event, JobLeaseReturned) else LEASE_EXPIRED
        return _requeued(state, at, attempt=state.attempt + 1, runs=_end_run(state, event, run_state))
    if isinstance(event, JobCancelling):
        if state.cancel_requested:
            return None
        return replace(state, cancel_requested=True, cancel_reason=event.reason, updated=at)
    if isinstance(event, JobCancelled):
        runs = _end_run(state, event, CANCELLED) if state.has_active_run else state.runs
        return replace(state, state=CANCELLED, runs=runs, updated=at)
    if isinstance(event, JobReprioritizing):
        if event.request_id in state.requested_reprioritizations:
            return None
        return replace(
            state,
            requested_reprioritizations=state.requested_reprioritizations + (event.request_id,),
            updated=at,
        )
    if isinstance(event, JobReprioritized):
        if event.request_id in state.applied_reprioritizations:
            return None
        return replace(
            state,
            priority=event.new_priority,
            applied_reprioritizations=state.applied_reprioritizations + (event.request_id,),
            updated=at,
        )
    if isinstance(event, JobPreempting):
        if not state.has_active_run or state.preempt_requested:
            return None
        if event.run_id and not current_run:
            # Aimed at a run the job no longer has (a redelivered request must not preempt
            # the run that replaced it).
            return None
        return replace(state, preempt_requested=True, updated=at)
    if isinstance(event, JobPreempted):
        if not current_run or not state.has_active_run:
            return None
        return replace(state, state=PREEMPTED, runs=_end_run(state, event, PREEMPTED), updated=at)
    return None
