"""What the scheduler's agents do with one record each (flotilla.streams.agents), without Kafka:
plain dicts stand in for the tables' in-memory stores, which is what the agents write to."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from flotilla.jobs.state import QUEUED, SUBMITTED, JobState
from flotilla.log.schema import (
    ExecutorHeartbeat,
    JobCancelled,
    JobEvent,
    JobQueued,
    NodeReport,
    QueueDefinition,
    RetryPolicy,
    encode,
)
from flotilla.streams.agents import HeartbeatIngest, JobEventIngest, QueueIngest, RetryPolicies
from flotilla.streams.working_set import ActiveJobs
from tests.unit.test_job_state import JOB_ID, cancelling, job_in, queued, running_job, submitted


class Ingest:
    def __init__(self) -> None:
        self.jobs: dict[str, JobState] = {}
        self.sent: list[JobEvent] = []
        self.active = ActiveJobs()
        self.active.load([])
        self.agent = JobEventIngest(self.jobs, self.active, self.send, clock=lambda: 9.0)

    async def send(self, events: list[JobEvent]) -> None:
        self.sent.extend(events)

    def read(self, raw: bytes) -> None:
        asyncio.run(self.agent(raw))


def test_a_submitted_job_is_folded_into_the_jobs_table_and_answered_with_queued():
    ingest = Ingest()
    ingest.read(encode(submitted()))

    assert ingest.jobs[JOB_ID].state == SUBMITTED
    assert [(type(e), e.job_id, e.created) for e in ingest.sent] == [(JobQueued, JOB_ID, 9.0)]


def test_a_job_answered_with_queued_is_leasable_before_the_reply_is_read_back():
    ingest = Ingest()
    ingest.read(encode(submitted()))
    assert JOB_ID in ingest.active.queued


def test_an_event_the_fold_refuses_changes_nothing_and_gets_no_reply():
    ingest = Ingest()
    ingest.read(encode(submitted()))
    ingest.read(encode(queued()))
    before, sent = dict(ingest.jobs), list(ingest.sent)

    ingest.read(encode(submitted()))  # redelivered

    assert ingest.jobs == before and ingest.sent == sent
    assert ingest.jobs[JOB_ID].state == QUEUED


def test_a_replayed_submit_whose_state_the_table_already_has_is_answered_with_queued():
    # The worker died after the jobs table's changelog had the submit, before its queued
    # reply was on the log; the submit is read again after the restart.
    ingest = Ingest()
    ingest.jobs[JOB_ID] = job_in(submitted())

    ingest.read(encode(submitted()))

    assert [(type(e), e.job_id, getattr(e, "attempt", None)) for e in ingest.sent] == [(JobQueued, JOB_ID, 0)]
    assert JOB_ID in ingest.active.queued


def test_a_replayed_cancel_request_whose_state_the_table_already_has_is_answered_with_cancelled():
    ingest = Ingest()
    ingest.jobs[JOB_ID] = replace(running_job(), cancel_requested=True)

    ingest.read(encode(cancelling()))

    assert [type(e) for e in ingest.sent] == [JobCancelled]


def test_a_record_that_is_not_a_job_event_is_dropped():
    ingest = Ingest()
    ingest.read(b'{"v": 1, "type": "no-such-event"}')
    assert ingest.jobs == {} and ingest.sent == []


def test_a_queue_is_kept_as_written_and_a_deleted_one_removed():
    queues: dict[str, QueueDefinition] = {}
    ingest = QueueIngest(queues, {})
    queue = QueueDefinition(name="q", priority_factor=2.0)

    ingest(encode(queue))
    assert queues == {"q": queue}

    ingest(encode(QueueDefinition(name="q", deleted=True)))
    assert queues == {}


def test_a_retry_policy_is_kept_apart_from_the_queues_and_a_deleted_one_removed():
    queues: dict[str, QueueDefinition] = {}
    policies: dict[str, RetryPolicy] = {}
    ingest = QueueIngest(queues, policies)
    policy = RetryPolicy(name="p", retry_limit=2, default_action="Retry")

    ingest(encode(policy))
    assert policies == {"p": policy} and queues == {}

    ingest(encode(RetryPolicy(name="p", deleted=True)))
    assert policies == {}


def test_a_queue_answers_with_the_first_retry_policy_it_names():
    first = RetryPolicy(name="first", retry_limit=1)
    policies = RetryPolicies(
        {
            "q": QueueDefinition(name="q", retry_policies=("first", "second")),
            "bare": QueueDefinition(name="bare"),
        },
        {"first": first, "second": RetryPolicy(name="second")},
    )
    assert policies.for_queue("q") == first
    assert policies.for_queue("bare") is None
    assert policies.for_queue("missing") is None


def test_an_executors_latest_heartbeat_is_kept():
    executors: dict[str, ExecutorHeartbeat] = {}
    ingest = HeartbeatIngest(executors)
    first = ExecutorHeartbeat(executor="ex", created=1.0, nodes=(NodeReport(name="n1"),))
    latest = ExecutorHeartbeat(executor="ex", created=2.0)

    ingest(encode(first))
    ingest(encode(latest))

    assert executors == {"ex": latest}
