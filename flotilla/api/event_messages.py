"""Flotilla's job events as Armada's ``api.EventMessage``, for the event stream clients watch.

One log event is one message, except ``preempted``: Armada follows ``JobPreemptedEvent`` with
the job-level ``JobFailedEvent`` (reason ``preempted``) that ends the job for watchers such as
``armadactl watch --exit-if-inactive`` (``armada-docs/job-lifecycle-events.md``).

:func:`stream_messages_of` is the one conversion of an accepted log event into the
``api.EventStreamMessage`` s users receive, ids included: ``GetJobSetEvents`` sends them and
the public job-events topic (``flotilla.events_bridge``) carries them, so the two agree."""

from __future__ import annotations

import re
from collections.abc import Callable

from armada_client.armada import event_pb2, submit_pb2

from flotilla.api.job_message import api_job, timestamp
from flotilla.jobs.state import FAILED, JobState
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
    JobSubmitted,
    JobSucceeded,
)

# A message id is the log offset of the event it came from; an event that makes several
# messages gives all but its last ``<offset>-<index>``, so a client resumes between them too.
_MESSAGE_ID = re.compile(r"(\d+)(?:-(\d+))?")


def parse_message_id(message_id: str) -> tuple[int, int] | None:
    """``(offset, index)`` of a message id; index -1 means every message of that offset
    was seen. None for an id this server never issues."""
    if not message_id:
        return (-1, -1)
    match = _MESSAGE_ID.fullmatch(message_id)
    if match is None:
        return None
    offset, index = match.groups()
    return (int(offset), -1 if index is None else int(index))


def retried(job: JobState | None, run_id: str) -> bool:
    """Whether the job ran again after its run ``run_id`` failed (a retry policy retried it).
    A watcher that receives the failure before the scheduler's decision sees it unflagged."""
    return job is not None and (job.state != FAILED or job.run_id != run_id)


def stream_messages_of(
    offset: int, event: JobEvent, job: JobState | None
) -> list[event_pb2.EventStreamMessage]:
    """The stream messages of the accepted event at ``offset`` of its partition, with their ids.
    ``job`` is the job's state as the reader holds it now: a failure it has since retried is
    flagged ``retryable``."""
    messages = to_event_messages(event)
    if isinstance(event, JobFailed) and retried(job, event.run_id):
        messages[0].failed.retryable = True
    last = len(messages) - 1
    return [
        event_pb2.EventStreamMessage(id=str(offset) if index == last else f"{offset}-{index}", message=m)
        for index, m in enumerate(messages)
    ]


def _job(event: JobSubmitted) -> submit_pb2.Job:
    assert event.job is not None
    return api_job(event.job)


def to_event_messages(event: JobEvent) -> list[event_pb2.EventMessage]:
    """The Armada messages for ``event``, in stream order."""
    message = _BUILDERS[type(event)](event)
    if isinstance(event, JobPreempted):
        return [message, _preemption_failure(event)]
    return [message]


def to_event_message(event: JobEvent) -> event_pb2.EventMessage:
    """The Armada message for ``event`` (the first, for an event that makes several)."""
    return to_event_messages(event)[0]


def _preemption_failure(e: JobPreempted) -> event_pb2.EventMessage:
    return event_pb2.EventMessage(
        failed=event_pb2.JobFailedEvent(**_common(e), cluster_id=e.executor, reason="preempted")
    )


def _common(event: JobEvent) -> dict:
    return {
        "job_id": event.job_id,
        "job_set_id": event.job_set,
        "queue": event.queue,
        "created": timestamp(event.created),
    }


def _failed(e: JobFailed) -> event_pb2.EventMessage:
    statuses = [
        event_pb2.ContainerStatus(name=c.name, exitCode=c.exit_code, message=c.message, reason=c.reason)
        for c in e.containers
    ]
    return event_pb2.EventMessage(
        failed=event_pb2.JobFailedEvent(
            **_common(e),
            cluster_id=e.executor,
            node_name=e.node,
            reason=e.reason,
            exit_codes=e.exit_codes,
            container_statuses=statuses,
            kubernetes_id=e.run_id,
            failure_category=e.failure_category,
            failure_subcategory=e.failure_subcategory,
        )
    )


_BUILDERS: dict[type, Callable[..., event_pb2.EventMessage]] = {
    JobSubmitted: lambda e: event_pb2.EventMessage(
        submitted=event_pb2.JobSubmittedEvent(**_common(e), job=_job(e))
    ),
    JobQueued: lambda e: event_pb2.EventMessage(queued=event_pb2.JobQueuedEvent(**_common(e))),
    JobLeased: lambda e: event_pb2.EventMessage(
        leased=event_pb2.JobLeasedEvent(**_common(e), cluster_id=e.executor, pool=e.pool)
    ),
    JobLeaseReturned: lambda e: event_pb2.EventMessage(
        lease_returned=event_pb2.JobLeaseReturnedEvent(
            **_common(e), cluster_id=e.executor, reason=e.reason, run_attempted=e.run_attempted
        )
    ),
    JobLeaseExpired: lambda e: event_pb2.EventMessage(
        lease_expired=event_pb2.JobLeaseExpiredEvent(**_common(e))
    ),
    JobPending: lambda e: event_pb2.EventMessage(
        pending=event_pb2.JobPendingEvent(
            **_common(e), cluster_id=e.executor, kubernetes_id=e.run_id, pod_name=e.pod_name
        )
    ),
    JobRunning: lambda e: event_pb2.EventMessage(
        running=event_pb2.JobRunningEvent(
            **_common(e), cluster_id=e.executor, kubernetes_id=e.run_id, node_name=e.node, pod_name=e.pod_name
        )
    ),
    JobSucceeded: lambda e: event_pb2.EventMessage(
        succeeded=event_pb2.JobSucceededEvent(
            **_common(e), cluster_id=e.executor, kubernetes_id=e.run_id, node_name=e.node
        )
    ),
    JobFailed: _failed,
    JobCancelling: lambda e: event_pb2.EventMessage(
        cancelling=event_pb2.JobCancellingEvent(**_common(e), requestor=e.requestor, reason=e.reason)
    ),
    JobCancelled: lambda e: event_pb2.EventMessage(
        cancelled=event_pb2.JobCancelledEvent(**_common(e), requestor=e.requestor, reason=e.reason)
    ),
    JobReprioritizing: lambda e: event_pb2.EventMessage(
        reprioritizing=event_pb2.JobReprioritizingEvent(
            **_common(e), new_priority=e.new_priority, requestor=e.requestor
        )
    ),
    JobReprioritized: lambda e: event_pb2.EventMessage(
        reprioritized=event_pb2.JobReprioritizedEvent(
            **_common(e), new_priority=e.new_priority, requestor=e.requestor
        )
    ),
    JobPreempting: lambda e: event_pb2.EventMessage(
        preempting=event_pb2.JobPreemptingEvent(**_common(e), requestor=e.requestor, reason=e.reason)
    ),
    JobPreempted: lambda e: event_pb2.EventMessage(
        preempted=event_pb2.JobPreemptedEvent(
            **_common(e), cluster_id=e.executor, run_id=e.run_id, reason=e.reason
        )
    ),
}
