"""The job state fold (flotilla.jobs.state.apply) that every projection of the log uses."""

from __future__ import annotations

import json
from typing import Any

import pytest

from flotilla.jobs.state import (
    CANCELLED,
    FAILED,
    LEASED,
    PENDING,
    PREEMPTED,
    QUEUED,
    RUNNING,
    SUBMITTED,
    SUCCEEDED,
    JobState,
    RunRecord,
    apply,
)
from flotilla.log.schema import (
    ContainerExit,
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
)

JOB_ID = "01job"
QUEUE = "queue-a"
JOB_SET = "set-1"


def spec(priority: float = 1.0) -> JobSpec:
    return JobSpec(
        job_id=JOB_ID,
        queue=QUEUE,
        job_set=JOB_SET,
        priority=priority,
        pod_spec={"containers": [{"name": "main", "image": "busybox:latest"}]},
        requests={"cpu": 150, "memory": 64 * 2**20 * 1000},
        labels={"team": "a"},
        submitted_at=1.0,
    )


def event(cls: type[JobEvent], created: float, **fields: Any) -> JobEvent:
    return cls(job_id=JOB_ID, queue=QUEUE, job_set=JOB_SET, created=created, **fields)


def submitted(created: float = 1.0, priority: float = 1.0) -> JobEvent:
    return event(JobSubmitted, created, job=spec(priority))


def queued(created: float = 2.0, attempt: int = 0) -> JobEvent:
    return event(JobQueued, created, attempt=attempt)


def leased(
    run_id: str = "run-1", created: float = 3.0, executor: str = "exec-a", node: str = "node-1"
) -> JobEvent:
    return event(JobLeased, created, run_id=run_id, executor=executor, node=node, pool="default")


def pending(run_id: str = "run-1", created: float = 4.0) -> JobEvent:
    return event(JobPending, created, run_id=run_id, executor="exec-a", node="node-1", pod_name="pod")


def running(run_id: str = "run-1", created: float = 5.0) -> JobEvent:
    return event(JobRunning, created, run_id=run_id, executor="exec-a", node="node-1", pod_name="pod")


def succeeded(run_id: str = "run-1", created: float = 6.0) -> JobEvent:
    return event(JobSucceeded, created, run_id=run_id, executor="exec-a", node="node-1")


def failed(run_id: str = "run-1", created: float = 6.0) -> JobEvent:
    return event(
        JobFailed,
        created,
        run_id=run_id,
        executor="exec-a",
        node="node-1",
        reason="Error: container main exited with 3",
        containers=(ContainerExit("main", 3, "boom", "Error"), ContainerExit("sidecar", 0)),
    )


def lease_expired(run_id: str = "run-1", created: float = 6.0) -> JobEvent:
    return event(JobLeaseExpired, created, run_id=run_id, executor="exec-a")


def lease_returned(run_id: str = "run-1", created: float = 6.0) -> JobEvent:
    return event(JobLeaseReturned, created, run_id=run_id, executor="exec-a", reason="no room")


def cancelling(created: float = 7.0) -> JobEvent:
    return event(JobCancelling, created, requestor="alice", reason="not needed")


def cancelled(run_id: str = "", created: float = 8.0) -> JobEvent:
    return event(JobCancelled, created, run_id=run_id, requestor="alice", reason="not needed")


def reprioritizing(request_id: str = "req-1", priority: float = 5.0, created: float = 7.0) -> JobEvent:
    return event(JobReprioritizing, created, new_priority=priority, requestor="alice", request_id=request_id)


def reprioritized(request_id: str = "req-1", priority: float = 5.0, created: float = 8.0) -> JobEvent:
    return event(JobReprioritized, created, new_priority=priority, requestor="alice", request_id=request_id)


def preempting(run_id: str = "", created: float = 7.0) -> JobEvent:
    return event(JobPreempting, created, run_id=run_id, requestor="alice", reason="make room")


def preempted(run_id: str = "run-1", created: float = 8.0) -> JobEvent:
    return event(JobPreempted, created, run_id=run_id, executor="exec-a", reason="make room")


def fold(events: list[JobEvent], state: JobState | None = None) -> JobState | None:
    for e in events:
        after = apply(state, e)
        if after is not None:
            state = after
    return state


def job_in(*events: JobEvent) -> JobState:
    state = fold(list(events))
    assert state is not None
    return state


def queued_job() -> JobState:
    return job_in(submitted(), queued())


def leased_job(run_id: str = "run-1") -> JobState:
    return job_in(submitted(), queued(), leased(run_id))


def running_job(run_id: str = "run-1") -> JobState:
    return job_in(submitted(), queued(), leased(run_id), pending(run_id), running(run_id))


def requeued_and_running_again() -> JobState:
    """run-1 expired, the job was queued again and now runs as run-2."""
    return job_in(
        submitted(),
        queued(),
        leased("run-1", 3.0),
        running("run-1", 4.0),
        lease_expired("run-1", 5.0),
        leased("run-2", 6.0, executor="exec-b", node="node-2"),
        running("run-2", 7.0),
    )


# --- submitted / queued ----------------------------------------------------------------------


def test_submitted_creates_a_submitted_job_with_its_spec_and_priority():
    job = apply(None, submitted(created=1.5, priority=3.0))

    assert job is not None
    assert job.state == SUBMITTED
    assert job.spec == spec(3.0)
    assert job.priority == 3.0
    assert job.updated == 1.5
    assert job.attempt == 0
    assert job.run_id == ""
    assert job.runs == ()


def test_a_second_submitted_for_an_existing_job_is_refused():
    job = apply(None, submitted())

    assert apply(job, submitted(created=9.0, priority=7.0)) is None


def test_submitted_without_a_job_spec_is_refused():
    assert apply(None, event(JobSubmitted, 1.0, job=None)) is None


def test_an_event_for_a_job_that_was_never_submitted_is_refused():
    assert apply(None, queued()) is None


def test_queued_moves_a_submitted_job_to_queued():
    job = apply(apply(None, submitted()), queued(created=2.5))

    assert job is not None
    assert job.state == QUEUED
    assert job.updated == 2.5


def test_queued_with_an_attempt_other_than_the_jobs_is_refused():
    assert apply(apply(None, submitted()), queued(attempt=1)) is None


def test_queued_on_a_job_that_is_no_longer_submitted_is_refused():
    assert apply(queued_job(), queued()) is None
    assert apply(leased_job(), queued()) is None


# --- leases -----------------------------------------------------------------------------------


def test_leased_moves_a_queued_job_to_leased_and_records_the_run():
    job = apply(queued_job(), leased("run-1", created=3.0, executor="exec-a", node="node-1"))

    assert job is not None
    assert job.state == LEASED
    assert (job.run_id, job.executor, job.node) == ("run-1", "exec-a", "node-1")
    assert job.runs == (
        RunRecord(
            run_id="run-1", executor="exec-a", node="node-1", leased_at=3.0, state=LEASED, pool="default"
        ),
    )
    assert job.pool == "default"


def test_leased_on_a_job_that_is_not_queued_is_refused():
    assert apply(apply(None, submitted()), leased()) is None


def test_a_lease_without_a_run_id_is_refused():
    assert apply(queued_job(), leased(run_id="")) is None


def test_a_second_lease_on_a_leased_job_is_refused_so_a_deposed_schedulers_lease_loses():
    job = leased_job("run-1")

    assert apply(job, leased("run-2", created=3.5, executor="exec-b", node="node-2")) is None
    assert apply(job, leased("run-1", created=3.5)) is None


def test_a_replayed_lease_of_a_run_that_already_ended_is_refused():
    job = job_in(submitted(), queued(), leased("run-1"), lease_expired("run-1"))

    assert job.state == QUEUED
    assert apply(job, leased("run-1", created=3.0)) is None


# --- executor reports: current run applies, another run is refused ---------------------------


def test_pending_from_the_current_run_makes_a_leased_job_pending():
    job = apply(leased_job(), pending("run-1", created=4.0))

    assert job is not None
    assert job.state == PENDING
    assert job.runs[-1].state == PENDING
    assert job.runs[-1].pending_at == 4.0


def test_running_from_the_current_run_makes_a_pending_job_running():
    job = apply(job_in(submitted(), queued(), leased(), pending()), running("run-1", created=5.0))

    assert job is not None
    assert job.state == RUNNING
    assert job.runs[-1].state == RUNNING
    assert job.runs[-1].started_at == 5.0


def test_running_from_the_current_run_makes_a_leased_job_running():
    job = apply(leased_job(), running("run-1"))

    assert job is not None
    assert job.state == RUNNING


def test_pending_after_running_is_refused():
    assert apply(running_job(), pending("run-1", created=9.0)) is None


def test_succeeded_from_the_current_run_ends_the_job_and_the_run():
    job = apply(running_job(), succeeded("run-1", created=6.0))

    assert job is not None
    assert job.state == SUCCEEDED
    assert job.terminal
    assert job.runs[-1].state == SUCCEEDED
    assert job.runs[-1].finished_at == 6.0


def test_failed_from_the_current_run_keeps_the_reason_and_exit_codes():
    job = apply(running_job(), failed("run-1", created=6.0))

    assert job is not None
    assert job.state == FAILED
    assert job.reason == "Error: container main exited with 3"
    assert job.exit_codes == {"main": 3, "sidecar": 0}
    assert job.runs[-1].state == FAILED
    assert job.runs[-1].finished_at == 6.0


def test_failed_keeps_the_failure_category_and_subcategory():
    report = event(
        JobFailed,
        6.0,
        run_id="run-1",
        reason="OOMKilled",
        failure_category="oom",
        failure_subcategory="container-limit",
    )

    job = apply(running_job(), report)

    assert job is not None
    assert (job.failure_category, job.failure_subcategory) == ("oom", "container-limit")


STALE_REPORTS = [pending, running, succeeded, failed, preempted, lease_expired, lease_returned]


@pytest.mark.parametrize("report", STALE_REPORTS, ids=lambda f: f.__name__)
def test_a_report_from_a_run_that_is_no_longer_the_jobs_run_is_refused(report):
    job = requeued_and_running_again()

    assert apply(job, report("run-1", created=9.0)) is None


@pytest.mark.parametrize("report", STALE_REPORTS, ids=lambda f: f.__name__)
def test_a_report_from_a_run_the_job_never_had_is_refused(report):
    assert apply(leased_job("run-1"), report("run-other", created=9.0)) is None


@pytest.mark.parametrize("report", STALE_REPORTS, ids=lambda f: f.__name__)
def test_a_run_report_for_a_queued_job_is_refused(report):
    job = job_in(submitted(), queued(), leased("run-1"), lease_returned("run-1"))

    assert apply(job, report("", created=9.0)) is None


# --- lease expired / returned: the job is queued again ----------------------------------------


@pytest.mark.parametrize(
    ("ending", "run_state"), [(lease_expired, "lease_expired"), (lease_returned, "lease_returned")]
)
def test_losing_the_lease_of_the_current_run_queues_the_job_again(ending, run_state):
    job = apply(running_job("run-1"), ending("run-1", created=6.0))

    assert job is not None
    assert job.state == QUEUED
    assert job.attempt == 1
    assert (job.run_id, job.executor, job.node) == ("", "", "")
    assert job.runs[-1].run_id == "run-1"
    assert job.runs[-1].state == run_state
    assert job.runs[-1].finished_at == 6.0


def test_a_job_queued_again_can_be_leased_under_a_new_run():
    job = requeued_and_running_again()

    assert job.state == RUNNING
    assert job.attempt == 1
    assert (job.run_id, job.executor, job.node) == ("run-2", "exec-b", "node-2")
    assert [(r.run_id, r.state) for r in job.runs] == [("run-1", "lease_expired"), ("run-2", RUNNING)]


# --- cancel -----------------------------------------------------------------------------------


def test_cancelling_sets_cancel_requested_and_keeps_the_state():
    job = apply(running_job(), cancelling())

    assert job is not None
    assert job.cancel_requested
    assert job.cancel_reason == "not needed"
    assert job.state == RUNNING


def test_a_second_cancelling_is_refused():
    job = job_in(submitted(), queued(), cancelling())

    assert apply(job, cancelling(created=7.5)) is None


def test_a_queued_job_with_cancel_requested_is_not_leasable():
    job = job_in(submitted(), queued(), cancelling())

    assert apply(job, leased("run-1", created=8.0)) is None


def test_cancelled_ends_a_queued_job():
    job = apply(job_in(submitted(), queued(), cancelling()), cancelled(created=8.0))

    assert job is not None
    assert job.state == CANCELLED
    assert job.terminal
    assert job.updated == 8.0


def test_cancelled_ends_the_active_run_as_cancelled():
    job = apply(
        job_in(submitted(), queued(), leased("run-1"), running("run-1"), cancelling()), cancelled("run-1")
    )

    assert job is not None
    assert job.state == CANCELLED
    assert job.runs[-1].state == CANCELLED
    assert job.runs[-1].finished_at == 8.0


AFTER_THE_END = [
    submitted(9.0),
    queued(9.0),
    leased("run-9", 9.0),
    pending("run-1", 9.0),
    running("run-1", 9.0),
    succeeded("run-1", 9.0),
    failed("run-1", 9.0),
    lease_expired("run-1", 9.0),
    lease_returned("run-1", 9.0),
    cancelling(9.0),
    cancelled("run-1", 9.0),
    reprioritizing("req-9", 9.0, 9.0),
    reprioritized("req-9", 9.0, 9.0),
    preempting("run-1", 9.0),
    preempted("run-1", 9.0),
]


@pytest.mark.parametrize("later", AFTER_THE_END, ids=lambda e: e.type)
def test_nothing_applies_to_a_cancelled_job(later):
    job = job_in(submitted(), queued(), leased("run-1"), running("run-1"), cancelling(), cancelled("run-1"))

    assert apply(job, later) is None


@pytest.mark.parametrize("later", AFTER_THE_END, ids=lambda e: e.type)
def test_nothing_applies_to_a_succeeded_job(later):
    job = job_in(submitted(), queued(), leased("run-1"), running("run-1"), succeeded("run-1"))

    assert apply(job, later) is None


# --- reprioritize -----------------------------------------------------------------------------


def test_reprioritizing_alone_does_not_change_the_priority():
    job = apply(queued_job(), reprioritizing("req-1", priority=5.0))

    assert job is not None
    assert job.priority == 1.0


def test_reprioritized_changes_the_priority():
    job = apply(queued_job(), reprioritized("req-1", priority=5.0))

    assert job is not None
    assert job.priority == 5.0
    assert job.applied_reprioritizations == ("req-1",)


def test_a_replayed_reprioritized_is_refused():
    job = job_in(
        submitted(), queued(), reprioritized("req-1", priority=5.0), reprioritized("req-2", priority=2.0)
    )

    assert apply(job, reprioritized("req-1", priority=5.0, created=9.0)) is None
    assert job.priority == 2.0


def test_a_reprioritizing_whose_request_was_applied_is_refused():
    job = job_in(submitted(), queued(), reprioritizing("req-1"), reprioritized("req-1"))

    assert apply(job, reprioritizing("req-1", created=9.0)) is None


def test_each_new_reprioritization_request_applies():
    job = job_in(submitted(), queued(), reprioritized("req-1", priority=5.0))

    after = apply(job, reprioritized("req-2", priority=0.5, created=9.0))

    assert after is not None
    assert after.priority == 0.5
    assert after.applied_reprioritizations == ("req-1", "req-2")


# --- preempt ----------------------------------------------------------------------------------


def test_preempting_a_job_without_an_active_run_is_refused():
    assert apply(queued_job(), preempting()) is None


def test_preempting_a_job_with_an_active_run_requests_preemption():
    job = apply(running_job(), preempting())

    assert job is not None
    assert job.preempt_requested
    assert job.state == RUNNING


def test_a_second_preempting_is_refused():
    job = job_in(submitted(), queued(), leased(), running(), preempting())

    assert apply(job, preempting(created=7.5)) is None


def test_preempting_aimed_at_a_run_that_is_no_longer_the_jobs_run_is_refused():
    job = requeued_and_running_again()

    assert apply(job, preempting("run-1", created=9.0)) is None


def test_losing_the_lease_clears_a_pending_preemption_request():
    job = job_in(submitted(), queued(), leased(), running(), preempting(), lease_expired("run-1", 8.0))

    assert not job.preempt_requested


def test_preempted_from_the_current_run_ends_the_job():
    job = apply(
        job_in(submitted(), queued(), leased(), running(), preempting()), preempted("run-1", created=8.0)
    )

    assert job is not None
    assert job.state == PREEMPTED
    assert job.terminal
    assert job.runs[-1].state == PREEMPTED
    assert job.runs[-1].finished_at == 8.0


# --- serialisation ----------------------------------------------------------------------------


def test_to_dict_and_from_dict_round_trip_through_json_with_runs():
    job = job_in(
        submitted(),
        queued(),
        leased("run-1", 3.0),
        running("run-1", 4.0),
        lease_returned("run-1", 5.0),
        reprioritized("req-1", 4.0, 5.5),
        leased("run-2", 6.0, executor="exec-b", node="node-2"),
        pending("run-2", 6.5),
        running("run-2", 7.0),
        failed("run-2", 8.0),
    )
    assert len(job.runs) == 2

    restored = JobState.from_dict(json.loads(json.dumps(job.to_dict())))

    assert restored == job


# --- idempotency ------------------------------------------------------------------------------

HISTORY = [
    submitted(1.0),
    queued(2.0),
    leased("run-1", 3.0),
    pending("run-1", 4.0),
    running("run-1", 5.0),
    reprioritizing("req-1", 3.0, 5.5),
    reprioritized("req-1", 3.0, 5.6),
    preempting("run-1", 5.7),
    lease_expired("run-1", 6.0),
    preempted("run-1", 6.1),
    leased("run-2", 7.0, executor="exec-b", node="node-2"),
    pending("run-2", 8.0),
    running("run-2", 9.0),
]


def test_folding_the_history_twice_gives_the_same_state_as_folding_it_once():
    once = fold(HISTORY)

    assert fold(HISTORY, once) == once


def test_every_event_delivered_twice_gives_the_same_state_as_each_delivered_once():
    doubled = [e for e in HISTORY for _ in range(2)]

    assert fold(doubled) == fold(HISTORY)


def test_redelivery_from_any_earlier_offset_gives_the_same_state():
    expected = fold(HISTORY)
    assert expected is not None and expected.state == RUNNING and expected.run_id == "run-2"

    for crashed_after in range(1, len(HISTORY) + 1):
        for restart_at in range(crashed_after):
            replayed = HISTORY[:crashed_after] + HISTORY[restart_at:]
            assert fold(replayed) == expected, (crashed_after, restart_at)
