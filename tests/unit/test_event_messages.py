"""Flotilla's log events as Armada's api.EventMessage (flotilla.api.event_messages)."""

from __future__ import annotations

from flotilla.api.event_messages import parse_message_id, to_event_message, to_event_messages
from flotilla.log.schema import JobFailed, JobPreempted

COMMON = {"job_id": "01job", "queue": "q", "job_set": "s", "created": 10.0, "run_id": "run-1"}


def test_a_failed_event_carries_its_failure_category_and_subcategory():
    message = to_event_message(
        JobFailed(**COMMON, reason="OOMKilled", failure_category="oom", failure_subcategory="limit")
    )

    assert message.failed.failure_category == "oom"
    assert message.failed.failure_subcategory == "limit"


def test_a_preempted_job_is_followed_by_the_failed_event_that_ends_it():
    messages = to_event_messages(JobPreempted(**COMMON, executor="exec-a", reason="make room"))

    assert [m.WhichOneof("events") for m in messages] == ["preempted", "failed"]
    assert messages[1].failed.reason == "preempted"
    assert messages[1].failed.job_id == "01job"


def test_message_ids_are_offsets_with_an_index_between_the_messages_of_one_event():
    assert parse_message_id("") == (-1, -1)
    assert parse_message_id("17") == (17, -1)
    assert parse_message_id("17-0") == (17, 0)
    assert parse_message_id("seventeen") is None
    assert parse_message_id("17-") is None
