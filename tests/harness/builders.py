"""The records tests build, shared by every test: the scheduling core's node, queued job and
running job, and a job leased to an executor (what an executor's backend is given to run).

Every quantity is given in whole units, as a user writes it: cpu in cores, memory in GiB, any
other resource (``extra``, e.g. ``{"nvidia.com/gpu": 1}``) in units; the builders convert to
the model's milli-units, so ``node(cpu=4)`` has 4000 millicores. A resource of 0 is no
request at all (left out). Assertions on model values use the model's units (``GI``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flotilla.jobs.state import LEASED, JobState
from flotilla.log.schema import JobSpec
from flotilla.scheduling import Node, QueuedJob, RunningJob

GI = 2**30 * 1000
"""One GiB in the model's units (milli-bytes)."""


def resources(cpu: float, memory: float, extra: Mapping[str, float] | None = None) -> dict[str, int]:
    """A resource list in the model's units from whole units (cores, GiB, units)."""
    out = {"cpu": round(cpu * 1000), "memory": round(memory * GI)}
    out.update({name: round(amount * 1000) for name, amount in (extra or {}).items()})
    return {name: amount for name, amount in out.items() if amount}


def node(
    name: str = "n1",
    cpu: float = 4,
    memory: float = 64,
    *,
    executor: str = "ex",
    pool: str = "default",
    labels: Mapping[str, str] | None = None,
    taints: tuple[dict[str, Any], ...] = (),
    unschedulable: bool = False,
    extra: Mapping[str, float] | None = None,
) -> Node:
    """A node of ``executor`` that can allocate ``cpu`` cores and ``memory`` GiB."""
    return Node(
        executor,
        name,
        pool,
        resources(cpu, memory, extra),
        dict(labels or {}),
        taints,
        unschedulable,
    )


def job(
    job_id: str = "j",
    queue: str = "a",
    cpu: float = 1,
    memory: float = 1,
    *,
    job_set: str = "set",
    priority: float = 0,
    submitted_at: float = 0.0,
    extra: Mapping[str, float] | None = None,
    **fields: Any,
) -> QueuedJob:
    """A queued job requesting ``cpu`` cores and ``memory`` GiB; ``fields`` are the rest of
    ``QueuedJob`` (``priority_class``, ``gang_id``, ``node_selector``, ``pools``...)."""
    return QueuedJob(job_id, queue, job_set, priority, submitted_at, resources(cpu, memory, extra), **fields)


def running(
    job_id: str = "r",
    queue: str = "a",
    node: str = "n1",
    cpu: float = 1,
    memory: float = 1,
    *,
    executor: str = "ex",
    run_id: str = "",
    extra: Mapping[str, float] | None = None,
    **fields: Any,
) -> RunningJob:
    """A job running on ``executor``'s ``node`` (run id ``run-<job id>`` unless given), holding
    ``cpu`` cores and ``memory`` GiB; ``fields`` are the rest of ``RunningJob``."""
    return RunningJob(
        job_id,
        queue,
        run_id or f"run-{job_id}",
        executor,
        node,
        resources(cpu, memory, extra),
        **fields,
    )


def leased_job(
    *, run_id: str = "run-1", executor: str = "ex", node: str = "n1", updated: float = 0.0, **spec: Any
) -> JobState:
    """A job leased to ``executor``'s ``node`` as run ``run_id``; ``spec`` are ``JobSpec``
    fields (``pod_spec`` as Kubernetes JSON, ``requests`` in the model's units), the rest
    defaulted."""
    fields: dict[str, Any] = {
        "job_id": "j",
        "queue": "a",
        "job_set": "set",
        "priority": 0.0,
        "pod_spec": {},
        "requests": {},
        **spec,
    }
    return JobState(
        spec=JobSpec(**fields),
        state=LEASED,
        priority=fields["priority"],
        updated=updated,
        run_id=run_id,
        executor=executor,
        node=node,
    )
