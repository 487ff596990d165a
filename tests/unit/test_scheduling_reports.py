"""ReportedReasons: a queued job's reason is written when it changes, not every cycle."""

from __future__ import annotations

from flotilla.jobs.state import QUEUED, JobState
from flotilla.log.schema import JobSpec
from flotilla.streams.scheduling_reports import ReportedReasons


def queued(job_id: str, attempt: int = 0) -> JobState:
    spec = JobSpec(job_id=job_id, queue="q", job_set="s", priority=0, pod_spec={}, requests={"cpu": 1000})
    return JobState(spec=spec, state=QUEUED, priority=0, updated=0.0, attempt=attempt)


def reasons_written(reports) -> dict[str, str]:
    return {r.job_id: r.reason for r in reports}


def test_a_new_reason_is_written_with_the_job_and_its_attempt():
    jobs = {"a": queued("a", attempt=2)}
    (report,) = ReportedReasons().changes({"a": "taint not tolerated"}, jobs, {"a"}, at=5.0)
    assert (report.job_id, report.queue, report.job_set, report.attempt, report.reason, report.created) == (
        "a",
        "q",
        "s",
        2,
        "taint not tolerated",
        5.0,
    )


def test_an_unchanged_reason_is_not_written_again():
    reasons, jobs = ReportedReasons(), {"a": queued("a")}
    reasons.changes({"a": "taint not tolerated"}, jobs, {"a"}, at=1.0)
    assert reasons.changes({"a": "taint not tolerated"}, jobs, {"a"}, at=2.0) == []


def test_a_changed_reason_is_written():
    reasons, jobs = ReportedReasons(), {"a": queued("a")}
    reasons.changes({"a": "taint not tolerated"}, jobs, {"a"}, at=1.0)
    assert reasons_written(reasons.changes({"a": "queue cordoned"}, jobs, {"a"}, at=2.0)) == {
        "a": "queue cordoned"
    }


def test_a_job_queued_again_has_its_reason_written_again():
    reasons = ReportedReasons()
    reasons.changes({"a": "taint not tolerated"}, {"a": queued("a")}, {"a"}, at=1.0)
    again = reasons.changes({"a": "taint not tolerated"}, {"a": queued("a", attempt=1)}, {"a"}, at=2.0)
    assert [r.attempt for r in again] == [1]


def test_a_job_that_left_the_queue_and_came_back_is_written_again():
    reasons, jobs = ReportedReasons(), {"a": queued("a")}
    reasons.changes({"a": "taint not tolerated"}, jobs, {"a"}, at=1.0)
    reasons.changes({}, jobs, set(), at=2.0)
    assert len(reasons.changes({"a": "taint not tolerated"}, jobs, {"a"}, at=3.0)) == 1


def test_a_job_the_cycle_did_not_try_keeps_its_reason():
    reasons, jobs = ReportedReasons(), {"a": queued("a")}
    reasons.changes({"a": "taint not tolerated"}, jobs, {"a"}, at=1.0)
    reasons.changes({}, jobs, {"a"}, at=2.0)  # still queued, not tried (per-cycle limit)
    assert reasons.changes({"a": "taint not tolerated"}, jobs, {"a"}, at=3.0) == []


def test_at_most_the_limit_is_written_in_a_cycle_and_the_rest_in_the_next():
    reasons = ReportedReasons(max_per_cycle=2)
    jobs = {j: queued(j) for j in "abc"}
    unschedulable = dict.fromkeys("abc", "no schedulable nodes")
    first = reasons.changes(unschedulable, jobs, set(jobs), at=1.0)
    second = reasons.changes(unschedulable, jobs, set(jobs), at=2.0)
    assert len(first) == 2 and len(second) == 1
    assert {r.job_id for r in first + second} == set("abc")


def test_a_reason_for_a_job_the_scheduler_does_not_hold_is_not_written():
    assert ReportedReasons().changes({"ghost": "queue cordoned"}, {}, set(), at=1.0) == []
