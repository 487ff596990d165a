"""The Lookout ingester's batch fold agrees with the one fold (flotilla.jobs.state) on every
job's state and latest run, however the events are cut into batches, with the duplicates and
stale reports that at-least-once delivery and lost leases bring."""

from __future__ import annotations

from dataclasses import replace

import pytest

from flotilla.jobs import state as fold
from flotilla.log.schema import JobEvent, JobPreempted, JobReprioritized
from flotilla.lookout import states
from flotilla.lookout.instructions import JobCursor, failure_details, plan
from tests.harness.lookout_events import (
    cancelled,
    cancelling,
    common,
    failed,
    lease_expired,
    leased,
    lifecycle,
    pending,
    queued,
    running,
    spec,
    submitted,
    succeeded,
)

J = spec("j1")


def folded(events: list[JobEvent]) -> tuple[int, str | None]:
    job = None
    for event in events:
        job = fold.apply(job, event) or job
    assert job is not None
    runs = [r.run_id for r in job.runs]
    return states.FROM_JOB_FOLD[job.state], (runs[-1] if runs else None)


def planned(events: list[JobEvent], batch: int) -> tuple[int, str | None]:
    cursors: dict[str, JobCursor] = {}
    runs: set[str] = set()
    for start in range(0, len(events), batch):
        out = plan(events[start : start + batch], [], cursors, runs)
        runs |= set(out.run_creates)
    cursor = cursors[J.job_id]
    return cursor.state, cursor.latest_run_id


def preempted(run_id: str) -> JobPreempted:
    return JobPreempted(**common(J, run_id), executor="c1", reason="preempted by the scheduler")


HISTORIES = {
    "success, every event twice": [e for e in lifecycle(J, "r1") for e in (e, e)],
    "requeued after an expired lease, stale reports of the old run": [
        submitted(J),
        queued(J),
        leased(J, "r1"),
        running(J, "r1"),
        lease_expired(J, "r1"),
        queued(J, 1),
        leased(J, "r2"),
        running(J, "r1"),
        succeeded(J, "r1"),
        pending(J, "r2"),
    ],
    "a second lease of a leased job": [submitted(J), queued(J), leased(J, "r1"), leased(J, "r2")],
    "pending after running": [submitted(J), queued(J), leased(J, "r1"), running(J, "r1"), pending(J, "r1")],
    "cancelled while queued, then leased": [submitted(J), queued(J), cancelled(J), leased(J, "r1")],
    "preempted after failing": [*lifecycle(J, "r1", "failed"), preempted("r1")],
    "cancelled after succeeding": [*lifecycle(J, "r1", "succeeded"), cancelled(J, "r1")],
    "preempted while running": [*lifecycle(J, "r1", "running"), preempted("r1")],
    "an old run leased again after a requeue": [
        submitted(J),
        queued(J),
        leased(J, "r1"),
        lease_expired(J, "r1"),
        queued(J, 1),
        leased(J, "r2"),
        lease_expired(J, "r2"),
        queued(J, 2),
        leased(J, "r1"),
    ],
    "submitted twice": [submitted(J), queued(J), leased(J, "r1"), submitted(J)],
    "failed, retried by its policy, then running again": [
        *lifecycle(J, "r1", "failed"),
        queued(J, 1),
        leased(J, "r2"),
        running(J, "r2"),
    ],
    "retried after a requeue, with the attempt counting the requeue": [
        submitted(J),
        queued(J),
        leased(J, "r1"),
        lease_expired(J, "r1"),
        queued(J, 1),
        leased(J, "r2"),
        failed(J, "r2"),
        queued(J, 1),
        leased(J, "r3"),
        queued(J, 2),
        leased(J, "r4"),
    ],
    "leased after a cancel request": [submitted(J), queued(J), cancelling(J), leased(J, "r1")],
}


@pytest.mark.parametrize("batch", [1, 2, 3, 100])
@pytest.mark.parametrize("history", list(HISTORIES))
def test_the_batch_fold_agrees_with_the_job_fold(history: str, batch: int) -> None:
    events = HISTORIES[history]
    assert planned(events, batch) == folded(events)


def test_a_batch_planned_again_writes_nothing() -> None:
    events = lifecycle(J, "r1", "failed")
    cursors: dict[str, JobCursor] = {}
    first = plan(events, [], cursors, set())
    again = plan(events, [], cursors, set(first.run_creates))
    assert not first.empty() and again.empty() and not again.count_deltas and not again.job_errors


def test_events_of_a_job_never_submitted_write_nothing() -> None:
    assert plan([leased(J, "r1"), running(J, "r1")], [], {}, set()).empty()


def test_a_batch_conflates_each_job_and_run_into_one_row() -> None:
    out = plan(lifecycle(J, "r1"), [], {}, set())
    assert list(out.job_creates) == ["j1"] and out.job_creates["j1"]["state"] == states.SUCCEEDED
    assert list(out.run_creates) == ["r1"] and not out.job_updates and not out.run_updates
    run = out.run_creates["r1"]
    assert run["job_run_state"] == states.RUN_SUCCEEDED and run["exit_code"] == 0
    assert all(run[k] for k in ("leased", "pending", "started", "finished"))
    assert dict(out.count_deltas) == {("q", "s", states.SUCCEEDED): 1}


def test_state_changes_move_the_job_between_counts() -> None:
    cursors = {"j1": JobCursor("q", "s", states.RUNNING, "r1")}
    out = plan([succeeded(J, "r1")], [], cursors, set())
    assert dict(out.count_deltas) == {("q", "s", states.RUNNING): -1, ("q", "s", states.SUCCEEDED): 1}


def test_a_reprioritisation_changes_the_priority_and_not_the_state() -> None:
    cursors = {"j1": JobCursor("q", "s", states.QUEUED, None)}
    event = JobReprioritized(**common(J), new_priority=7.0, request_id="x")
    out = plan([event], [], cursors, set())
    assert out.job_updates == {"j1": {"priority": 7.0}} and not out.count_deltas


def test_a_failed_run_keeps_the_failing_containers_exit_code_error_and_category() -> None:
    details = failure_details(failed(J, "r1", exit_code=42, message="out of disk"))
    assert details["exit_code"] == 42
    assert "exited with code 42" in details["error"] and details["debug"] == "main: out of disk"
    assert details["failure_category"] == "Error"


def test_a_failure_keeps_the_category_the_executor_gave_it() -> None:
    event = failed(J, "r1", exit_code=137)
    categorised = replace(event, failure_category="oom", failure_subcategory="main")
    details = failure_details(categorised)
    assert (details["failure_category"], details["failure_subcategory"]) == ("oom", "main")
