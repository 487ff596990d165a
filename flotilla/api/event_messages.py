"""Flotilla's job events as Armada's ``api.EventMessage``, for the event stream clients watch."""

from __future__ import annotations

from collections.abc import Callable

from armada_client.armada import event_pb2, submit_pb2
from google.protobuf.timestamp_pb2 import Timestamp

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


def timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(seconds * 1e9))
    return ts


def _job(event: JobSubmitted) -> submit_pb2.Job:
    spec = event.job
    assert spec is not None
    return submit_pb2.Job(
        id=spec.job_id,
        client_id=spec.client_id,
        job_set_id=spec.job_set,
        queue=spec.queue,
        namespace=spec.namespace,
        labels=spec.labels,
        annotations=spec.annotations,
        priority=spec.priority,
        created=timestamp(spec.submitted_at),
    )


def to_event_message(event: JobEvent) -> event_pb2.EventMessage:
    """The Armada message for ``event``."""
    build = _BUILDERS[type(event)]
    return build(event)


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
