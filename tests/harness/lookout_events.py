"""Job events as the scheduler, the API and the executors write them, for feeding the
Lookout ingester and store known histories."""

from __future__ import annotations

import itertools
from typing import Any

from flotilla.log.schema import (
    ContainerExit,
    JobCancelled,
    JobCancelling,
    JobEvent,
    JobFailed,
    JobLeased,
    JobLeaseExpired,
    JobPending,
    JobQueued,
    JobRunning,
    JobSpec,
    JobSubmitted,
    JobSucceeded,
)

T0 = 1_790_000_000.0
_clock = itertools.count()


def tick() -> float:
    return T0 + next(_clock)


def spec(job_id: str, queue: str = "q", job_set: str = "s", **fields: Any) -> JobSpec:
    values: dict[str, Any] = {
        "job_id": job_id,
        "queue": queue,
        "job_set": job_set,
        "priority": 1.0,
        "pod_spec": {"containers": [{"name": "main", "image": "busybox", "args": ["true"]}]},
        "requests": {"cpu": 150, "memory": 64 * 2**20 * 1000},
        "submitted_at": T0,
        **fields,
    }
    return JobSpec(**values)


def submitted(job: JobSpec) -> JobSubmitted:
    return JobSubmitted(job_id=job.job_id, queue=job.queue, job_set=job.job_set, created=tick(), job=job)


def common(job: JobSpec, run_id: str = "") -> dict[str, Any]:
    return {
        "job_id": job.job_id,
        "queue": job.queue,
        "job_set": job.job_set,
        "created": tick(),
        "run_id": run_id,
    }


def queued(job: JobSpec, attempt: int = 0) -> JobQueued:
    return JobQueued(**common(job), attempt=attempt)


def leased(job: JobSpec, run_id: str, executor: str = "c1", node: str = "n1", pool: str = "p1") -> JobLeased:
    return JobLeased(**common(job, run_id), executor=executor, node=node, pool=pool)


def pending(job: JobSpec, run_id: str, node: str = "n1") -> JobPending:
    return JobPending(**common(job, run_id), executor="c1", node=node)


def running(job: JobSpec, run_id: str, node: str = "n1") -> JobRunning:
    return JobRunning(**common(job, run_id), executor="c1", node=node)


def succeeded(job: JobSpec, run_id: str, node: str = "") -> JobSucceeded:
    return JobSucceeded(**common(job, run_id), executor="c1", node=node)


def failed(job: JobSpec, run_id: str, exit_code: int = 3, message: str = "boom", node: str = "") -> JobFailed:
    return JobFailed(
        **common(job, run_id),
        executor="c1",
        node=node,
        reason="Error: container main failed",
        containers=(ContainerExit(name="main", exit_code=exit_code, message=message, reason="Error"),),
    )


def lease_expired(job: JobSpec, run_id: str) -> JobLeaseExpired:
    return JobLeaseExpired(**common(job, run_id), executor="c1")


def cancelled(job: JobSpec, run_id: str = "") -> JobCancelled:
    return JobCancelled(**common(job, run_id), requestor="alice", reason="not needed")


def cancelling(job: JobSpec) -> JobCancelling:
    return JobCancelling(**common(job), requestor="alice", reason="not needed")


def lifecycle(job: JobSpec, run_id: str, end: str = "succeeded") -> list[JobEvent]:
    """Submitted through running, then ``end`` (succeeded, failed, cancelled or running)."""
    events: list[JobEvent] = [
        submitted(job),
        queued(job),
        leased(job, run_id),
        pending(job, run_id),
        running(job, run_id),
    ]
    if end == "succeeded":
        events.append(succeeded(job, run_id))
    elif end == "failed":
        events.append(failed(job, run_id))
    elif end == "cancelled":
        events.append(cancelled(job, run_id))
    return events


def reprioritized(job: JobSpec, priority: float) -> JobEvent:
    from flotilla.log.schema import JobReprioritized

    return JobReprioritized(
        **common(job), new_priority=priority, requestor="bob", request_id=f"rp-{priority}"
    )


def mixed_histories(count: int, queues: int = 3, job_sets: int = 4) -> list[list[JobEvent]]:
    """``count`` jobs spread over queues and job sets, with every kind of ending: succeeded,
    failed, cancelled while running, still running, still queued, requeued after an expired
    lease and then succeeded, reprioritised while queued."""
    histories = []
    for i in range(count):
        job = spec(
            f"job{i:06d}", queue=f"queue{i % queues}", job_set=f"set{i % job_sets}", priority=float(i % 5)
        )
        kind = i % 7
        run = f"run{i:06d}"
        if kind == 0:
            events = lifecycle(job, run)
        elif kind == 1:
            events = lifecycle(job, run, "failed")
        elif kind == 2:
            events = lifecycle(job, run, "cancelled")
        elif kind == 3:
            events = lifecycle(job, run, "running")
        elif kind == 4:
            events = [submitted(job), queued(job)]
        elif kind == 5:
            events = [submitted(job), queued(job), leased(job, run), lease_expired(job, run), queued(job, 1)]
            events += [leased(job, run + "b"), running(job, run + "b"), succeeded(job, run + "b")]
        else:
            events = [submitted(job), queued(job), reprioritized(job, 9.0)]
        histories.append(events)
    return histories


def interleaved(histories: list[list[JobEvent]]) -> list[JobEvent]:
    """The histories' events mixed as concurrent jobs mix them, each job's in its order."""
    out: list[JobEvent] = []
    longest = max(len(h) for h in histories)
    for step in range(longest):
        out.extend(h[step] for h in histories if step < len(h))
    return out


def preempted(job: JobSpec, run_id: str) -> JobEvent:
    from flotilla.log.schema import JobPreempted

    return JobPreempted(**common(job, run_id), executor="c1", reason="preempted by the scheduler")
