"""A job's events as a timeline, for Lookout's ``POST /api/v1/jobEvents``.

Each accepted event of the job (``JobView.job_events``: the ones every projection folds, in
log order) becomes ``{"type", "created", "runId", "message"}``: the event's log type
(submitted, queued, leased, pending, running, succeeded, failed, cancelling, cancelled,
reprioritizing, reprioritized, preempting, preempted, lease_returned, lease_expired), when
it was written (ISO 8601, UTC), the run it is about (null before a lease) and what a person
reading the timeline wants to know about it (the reason, the new priority, where it ran).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flotilla.log.schema import JobEvent, JobReprioritized, JobReprioritizing


def _iso(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _message(event: JobEvent) -> str | None:
    if reason := getattr(event, "reason", ""):
        return reason
    if isinstance(event, (JobReprioritizing, JobReprioritized)):
        return f"new priority {event.new_priority:g}"
    where = [f"{k} {v}" for k in ("executor", "pool", "node") if (v := getattr(event, k, ""))]
    return ", ".join(where) or None


def timeline_entry(event: JobEvent) -> dict[str, Any]:
    return {
        "type": event.type,
        "created": _iso(event.created),
        "runId": event.run_id or None,
        "message": _message(event),
    }
