"""Flotilla's log events as Armada's api.EventMessage (flotilla.api.event_messages)."""

from __future__ import annotations

from flotilla.api.event_messages import to_event_message
from flotilla.log.schema import JobFailed

COMMON = {"job_id": "01job", "queue": "q", "job_set": "s", "created": 10.0, "run_id": "run-1"}


def test_a_failed_event_carries_its_failure_category_and_subcategory():
    message = to_event_message(
        JobFailed(**COMMON, reason="OOMKilled", failure_category="oom", failure_subcategory="limit")
    )

    assert message.failed.failure_category == "oom"
    assert message.failed.failure_subcategory == "limit"
