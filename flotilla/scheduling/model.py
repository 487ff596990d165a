"""The scheduler's inputs and outputs: plain, immutable values with no Kafka or I/O behind them.

A scheduling cycle (:func:`flotilla.scheduling.cycle.schedule`) is a pure function of these
types. Resource quantities are integers in milli-units (see :mod:`flotilla.resources`), so
``{"cpu": 1000, "memory": 4 * 2**30 * 1000}`` is one core and 4Gi.

Room is left for Armada's full algorithm: ``QueuedJob.priority_class`` is carried (it will
select the priority a job is scheduled and preempted at), ``Node.pool`` is carried into every
:class:`Lease` (pools will be scheduled one after another), and :class:`CycleResult` already
has a ``preemptions`` list, empty until preemption is implemented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotilla.schema import JobSpec, NodeReport


@dataclass(frozen=True, slots=True)
class Node:
    """A node an executor can place jobs on; ``allocatable`` is its whole capacity.

    ``taints`` are Kubernetes taints as dicts (``key``, ``value``, ``effect``); only the
    ``NoSchedule`` and ``NoExecute`` effects keep jobs off the node.
    """

    executor: str
    name: str
    pool: str
    allocatable: dict[str, int]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, Any], ...] = ()
    unschedulable: bool = False

    @property
    def id(self) -> str:
        return f"{self.executor}/{self.name}"

    @classmethod
    def from_report(cls, executor: str, report: NodeReport) -> Node:
        """The node an executor's heartbeat describes."""
        return cls(
            executor=executor,
            name=report.name,
            pool=report.pool,
            allocatable=dict(report.allocatable),
            labels=dict(report.labels),
            taints=tuple(dict(t) for t in report.taints),
            unschedulable=report.unschedulable,
        )


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job waiting for a lease.

    ``priority`` follows Armada: a lower value is scheduled first within its queue.
    ``tolerations`` are Kubernetes tolerations as dicts (``key``, ``operator``, ``value``,
    ``effect``), as written in the pod spec.
    """

    job_id: str
    queue: str
    job_set: str
    priority: float
    submitted_at: float
    requests: dict[str, int]
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    priority_class: str = ""

    @classmethod
    def from_spec(cls, spec: JobSpec) -> QueuedJob:
        """The queued form of a submitted job: selector and tolerations come from its pod spec."""
        pod_spec: Mapping[str, Any] = spec.pod_spec or {}
        return cls(
            job_id=spec.job_id,
            queue=spec.queue,
            job_set=spec.job_set,
            priority=spec.priority,
            submitted_at=spec.submitted_at,
            requests=dict(spec.requests),
            node_selector=dict(pod_spec.get("nodeSelector") or {}),
            tolerations=tuple(dict(t) for t in pod_spec.get("tolerations") or ()),
            priority_class=spec.priority_class,
        )


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding a lease (leased, pending or running) on ``executor``'s node ``node``."""

    job_id: str
    queue: str
    run_id: str
    executor: str
    node: str
    requests: dict[str, int]

    @property
    def node_id(self) -> str:
        return f"{self.executor}/{self.node}"


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue as the scheduler sees it: a larger ``priority_factor`` means a smaller share."""

    name: str
    priority_factor: float = 1.0
    cordoned: bool = False

    def __post_init__(self) -> None:
        if not self.priority_factor > 0:
            raise ValueError(
                f"queue {self.name!r}: priority_factor must be positive, got {self.priority_factor!r}"
            )

    @property
    def weight(self) -> float:
        return 1.0 / self.priority_factor


@dataclass(frozen=True, slots=True)
class SchedulingConfig:
    """Knobs of a scheduling cycle.

    ``resources`` are the resources dominant-resource fairness considers, in order; the first
    is also the node index's leading key (see :mod:`flotilla.scheduling.node_db`). Jobs may
    request other resources: those must fit too, they just do not count towards fair share.
    ``max_jobs_per_cycle`` bounds the leases one cycle hands out (Armada's
    ``maximumSchedulingBurst``); jobs left over are tried again next cycle.
    """

    resources: tuple[str, ...] = ("cpu", "memory")
    max_jobs_per_cycle: int = 10000

    def __post_init__(self) -> None:
        if not self.resources:
            raise ValueError("SchedulingConfig.resources must name at least one resource")
        if self.max_jobs_per_cycle < 0:
            raise ValueError("SchedulingConfig.max_jobs_per_cycle must not be negative")


@dataclass(frozen=True, slots=True)
class Lease:
    """A scheduling decision: run ``job_id`` on ``executor``'s node ``node`` in ``pool``."""

    job_id: str
    queue: str
    executor: str
    node: str
    pool: str


@dataclass(frozen=True, slots=True)
class CycleStats:
    """What a cycle did, for metrics and for tests that count work rather than time.

    ``node_searches`` counts searches of the node index, ``shape_cache_hits`` the jobs answered
    by the "this shape fits nowhere" cache instead, ``nodes_examined`` the nodes whose free
    resources were checked against a job. ``fair_shares`` and ``costs`` are per queue: the
    share of the pool each active queue is entitled to and its dominant-resource cost after
    the cycle's leases.
    """

    jobs_considered: int = 0
    node_searches: int = 0
    shape_cache_hits: int = 0
    nodes_examined: int = 0
    fair_shares: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CycleResult:
    """A cycle's decisions: new leases in the order they were made, jobs to preempt (always
    empty for now) and, for every job found unschedulable, a short reason."""

    leases: list[Lease]
    preemptions: list[str]
    unschedulable: dict[str, str]
    stats: CycleStats = field(default_factory=CycleStats)
