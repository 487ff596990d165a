"""What the scheduler writes in reply to an event (flotilla.streams.reactions)."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla.jobs.state import JobState, apply
from flotilla.log.schema import (
    JobCancelled,
    JobCancelling,
    JobEvent,
    JobFailed,
    JobLeased,
    JobLeaseExpired,
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
from flotilla.streams.reactions import reactions

JOB_ID = "01job"
QUEUE = "queue-a"
JOB_SET = "set-1"
NOW = 100.0


def event(cls: type[JobEvent], created: float, **fields: Any) -> JobEvent:
    return cls(job_id=JOB_ID, queue=QUEUE, job_set=JOB_SET, created=created, **fields)


SUBMITTED = event(
    JobSubmitted,
    1.0,
    job=JobSpec(
        job_id=JOB_ID,
        queue=QUEUE,
        job_set=JOB_SET,
        priority=1.0,
        pod_spec={"containers": [{"name": "main", "image": "busybox:latest"}]},
        requests={"cpu": 150},
    ),
)
QUEUED = event(JobQueued, 2.0, attempt=0)
LEASED = event(JobLeased, 3.0, run_id="run-1", executor="exec-a", node="node-1")
RUNNING = event(JobRunning, 4.0, run_id="run-1", executor="exec-a", node="node-1")
CANCELLING = event(JobCancelling, 5.0, requestor="alice", reason="not needed")
REPRIORITIZING = event(JobReprioritizing, 5.0, new_priority=7.0, requestor="alice", request_id="req-1")
PREEMPTING = event(JobPreempting, 5.0, requestor="alice", reason="make room")


def react(history: list[JobEvent], last: JobEvent, now: float = NOW) -> list[JobEvent]:
    """Fold ``history``, apply ``last`` and return the scheduler's replies to it."""
    before: JobState | None = None
    for e in history:
        before = apply(before, e) or before
    after = apply(before, last)
    assert after is not None, f"{last.type} should apply after {[e.type for e in history]}"
    return reactions(before, after, last, now)


def test_submitted_is_answered_by_one_queued_with_attempt_zero():
    replies = react([], SUBMITTED)

    assert replies == [JobQueued(job_id=JOB_ID, queue=QUEUE, job_set=JOB_SET, created=NOW, attempt=0)]


def test_cancelling_a_running_job_is_answered_by_cancelled_for_its_current_run():
    replies = react([SUBMITTED, QUEUED, LEASED, RUNNING], CANCELLING)

    assert replies == [
        JobCancelled(
            job_id=JOB_ID,
            queue=QUEUE,
            job_set=JOB_SET,
            created=NOW,
            run_id="run-1",
            requestor="alice",
            reason="not needed",
        )
    ]


def test_cancelling_a_queued_job_is_answered_by_cancelled_without_a_run():
    (reply,) = react([SUBMITTED, QUEUED], CANCELLING)

    assert isinstance(reply, JobCancelled)
    assert reply.run_id == ""


def test_reprioritizing_is_answered_by_reprioritized_with_the_same_request_id():
    replies = react([SUBMITTED, QUEUED], REPRIORITIZING)

    assert replies == [
        JobReprioritized(
            job_id=JOB_ID,
            queue=QUEUE,
            job_set=JOB_SET,
            created=NOW,
            new_priority=7.0,
            requestor="alice",
            request_id="req-1",
        )
    ]


def test_preempting_is_answered_by_preempted_for_the_current_run():
    replies = react([SUBMITTED, QUEUED, LEASED, RUNNING], PREEMPTING)

    assert replies == [
        JobPreempted(
            job_id=JOB_ID,
            queue=QUEUE,
            job_set=JOB_SET,
            created=NOW,
            run_id="run-1",
            executor="exec-a",
            reason="make room",
        )
    ]


@pytest.mark.parametrize(
    ("history", "last"),
    [
        ([SUBMITTED], QUEUED),
        ([SUBMITTED, QUEUED], LEASED),
        ([SUBMITTED, QUEUED, LEASED], event(JobPending, 4.0, run_id="run-1", executor="exec-a")),
        ([SUBMITTED, QUEUED, LEASED], RUNNING),
        ([SUBMITTED, QUEUED, LEASED, RUNNING], event(JobSucceeded, 6.0, run_id="run-1")),
        ([SUBMITTED, QUEUED, LEASED, RUNNING], event(JobFailed, 6.0, run_id="run-1", reason="x")),
        ([SUBMITTED, QUEUED, LEASED, RUNNING], event(JobLeaseExpired, 6.0, run_id="run-1")),
        ([SUBMITTED, QUEUED, CANCELLING], event(JobCancelled, 6.0, reason="not needed")),
        (
            [SUBMITTED, QUEUED, REPRIORITIZING],
            event(JobReprioritized, 6.0, new_priority=7.0, request_id="req-1"),
        ),
        ([SUBMITTED, QUEUED, LEASED, RUNNING, PREEMPTING], event(JobPreempted, 6.0, run_id="run-1")),
    ],
    ids=lambda v: v.type if isinstance(v, JobEvent) else "",
)
def test_other_events_are_answered_by_nothing(history, last):
    assert react(history, last) == []


@pytest.mark.parametrize(
    ("history", "last"),
    [
        ([], SUBMITTED),
        ([SUBMITTED, QUEUED, LEASED, RUNNING], CANCELLING),
        ([SUBMITTED, QUEUED], REPRIORITIZING),
        ([SUBMITTED, QUEUED, LEASED, RUNNING], PREEMPTING),
    ],
    ids=lambda v: v.type if isinstance(v, JobEvent) else "",
)
def test_replies_have_the_same_event_ids_when_the_event_is_processed_again(history, last):
    first = react(history, last, now=NOW)
    again = react(history, last, now=NOW + 60.0)

    assert first
    assert [e.event_id for e in again] == [e.event_id for e in first]
    assert [e.type for e in again] == [e.type for e in first]


def test_replies_are_keyed_by_the_events_job_set():
    (reply,) = react([], SUBMITTED)

    assert reply.key == SUBMITTED.key


def test_replies_to_two_reprioritization_requests_have_different_event_ids():
    second = event(JobReprioritizing, 6.0, new_priority=2.0, requestor="alice", request_id="req-2")

    (first_reply,) = react([SUBMITTED, QUEUED], REPRIORITIZING)
    (second_reply,) = react([SUBMITTED, QUEUED, REPRIORITIZING], second)

    assert first_reply.event_id != second_reply.event_id
