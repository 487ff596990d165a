"""The scheduler's inputs and outputs: plain, immutable values with no Kafka or I/O behind them.

A scheduling cycle (:func:`flotilla.scheduling.cycle.schedule`) is a pure function of these
types. Resource quantities are integers in milli-units (see :mod:`flotilla.resources`), so
``{"cpu": 1000, "memory": 4 * 2**30 * 1000}`` is one core and 4Gi.

* :class:`PriorityClass` is Armada's priority class: ``priority`` is the urgency (a job may
  preempt ``preemptible`` jobs of a lower priority), ``preemptible`` also makes a job subject
  to preemption to fair share, and ``maximum_resource_fraction_per_queue`` caps what one queue
  may hold in that class (a fraction of the pool's total per resource).
* :class:`SchedulingConfig` names the classes; a job whose ``priority_class`` is empty gets
  ``default_priority_class``. With no classes configured every job is in one implicit,
  non-preemptible class of priority 0, and nothing is ever preempted.
* Gangs (all-or-nothing groups) are described on each member: ``gang_id``,
  ``gang_cardinality`` and ``gang_node_uniformity_label``, read by :meth:`QueuedJob.from_spec`
  from the ``armadaproject.io/gang*`` annotations.
* ``QueuedJob.node_affinity`` holds the pod's required node affinity in normal form (see
  :func:`node_affinity_terms`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flotilla.log.schema import JobSpec, NodeReport

GANG_ID_ANNOTATION = "armadaproject.io/gangId"
GANG_CARDINALITY_ANNOTATION = "armadaproject.io/gangCardinality"
GANG_NODE_UNIFORMITY_LABEL_ANNOTATION = "armadaproject.io/gangNodeUniformityLabel"

NODE_NAME_FIELD = "field:metadata.name"
"""The key a ``matchFields`` expression on ``metadata.name`` gets in normal form (label keys
cannot contain ``:``, so it never collides with a label)."""

AffinityExpression = tuple[str, str, tuple[str, ...]]
"""``(key, operator, values)``: one ``matchExpressions`` entry."""

AffinityTerm = tuple[AffinityExpression, ...]
"""One ``nodeSelectorTerm``: its expressions, all of which must hold."""


def node_affinity_terms(raw: Any) -> tuple[AffinityTerm, ...]:
    """Required node affinity in normal form: a tuple of terms (ORed), each a tuple of
    ``(key, operator, values)`` expressions (ANDed).

    ``raw`` may be a whole pod spec (``affinity.nodeAffinity.requiredDuringScheduling
    IgnoredDuringExecution.nodeSelectorTerms`` is read from it), the list of
    ``nodeSelectorTerms`` as Kubernetes writes them, or terms already in normal form. A
    ``matchFields`` expression on ``metadata.name`` becomes an expression on
    :data:`NODE_NAME_FIELD`. An empty term is kept: as in Kubernetes it matches no node.
    """
    if not raw:
        return ()
    if isinstance(raw, Mapping):
        if "nodeSelectorTerms" in raw:
            raw = raw.get("nodeSelectorTerms") or ()
        else:
            affinity = raw.get("affinity") or {}
            node_affinity = affinity.get("nodeAffinity") or {}
            required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
            raw = required.get("nodeSelectorTerms") or ()
    terms: list[AffinityTerm] = []
    for term in raw:
        if isinstance(term, Mapping):
            expressions = [_expression(e, "") for e in term.get("matchExpressions") or ()]
            expressions += [_expression(e, "field:") for e in term.get("matchFields") or ()]
            terms.append(tuple(expressions))
        else:
            terms.append(tuple(_expression(e, "") for e in term))
    return tuple(terms)


def _expression(raw: Any, prefix: str) -> AffinityExpression:
    if isinstance(raw, Mapping):
        values = raw.get("values") or ()
        return (prefix + str(raw.get("key") or ""), str(raw.get("operator") or ""), tuple(map(str, values)))
    key, operator, values = raw
    return (str(key), str(operator), tuple(map(str, values)))


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
    ``effect``), as written in the pod spec. ``node_affinity`` is the required node affinity
    in the normal form of :func:`node_affinity_terms`. ``pools`` restricts the job to those
    pools (empty: any pool). A gang is the set of queued jobs of one queue sharing a non-empty
    ``gang_id``; ``gang_cardinality`` is how many members it has in all.
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
    gang_id: str = ""
    gang_cardinality: int = 1
    gang_node_uniformity_label: str = ""
    node_affinity: tuple[AffinityTerm, ...] = ()
    pools: tuple[str, ...] = ()

    @classmethod
    def from_spec(cls, spec: JobSpec) -> QueuedJob:
        """The queued form of a submitted job: selector, tolerations and required node affinity
        come from its pod spec, gang membership from its annotations.

        A gang cardinality that is not an integer becomes 0, which the cycle reports as an
        invalid gang rather than guessing.
        """
        pod_spec: Mapping[str, Any] = spec.pod_spec or {}
        annotations: Mapping[str, str] = spec.annotations or {}
        gang_id = str(annotations.get(GANG_ID_ANNOTATION) or "")
        cardinality = 1
        if gang_id:
            try:
                cardinality = int(str(annotations.get(GANG_CARDINALITY_ANNOTATION, "1")).strip())
            except ValueError:
                cardinality = 0
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
            gang_id=gang_id,
            gang_cardinality=cardinality,
            gang_node_uniformity_label=(
                str(annotations.get(GANG_NODE_UNIFORMITY_LABEL_ANNOTATION) or "") if gang_id else ""
            ),
            node_affinity=node_affinity_terms(pod_spec),
        )


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding a lease (leased, pending or running) on ``executor``'s node ``node``.

    ``priority_class``, ``priority`` and ``submitted_at`` are the job's, as when it was queued:
    they decide whether it may be preempted and, once evicted, where it goes back in its
    queue. ``started_at`` (0: not started) and ``active_deadline_seconds`` (0: none) feed
    :func:`flotilla.scheduling.deadlines.expired_runs`. ``gang_id`` ties gang members together
    (one preempted member preempts them all). ``pool`` is only consulted when ``node`` is not
    among the cycle's nodes.
    """

    job_id: str
    queue: str
    run_id: str
    executor: str
    node: str
    requests: dict[str, int]
    priority_class: str = ""
    priority: float = 0.0
    submitted_at: float = 0.0
    started_at: float = 0.0
    active_deadline_seconds: float = 0.0
    gang_id: str = ""
    pool: str = ""

    @property
    def node_id(self) -> str:
        return f"{self.executor}/{self.node}"

    @classmethod
    def from_lease(cls, job: QueuedJob, lease: Lease, run_id: str = "") -> RunningJob:
        """The running form of ``job`` just leased by ``lease`` (before it has started)."""
        return cls(
            job_id=job.job_id,
            queue=job.queue,
            run_id=run_id,
            executor=lease.executor,
            node=lease.node,
            requests=job.requests,
            priority_class=job.priority_class,
            priority=job.priority,
            submitted_at=job.submitted_at,
            gang_id=job.gang_id,
            pool=lease.pool,
        )


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
class PriorityClass:
    """An Armada priority class (see the module docstring)."""

    name: str
    priority: int
    preemptible: bool = False
    maximum_resource_fraction_per_queue: dict[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for resource, fraction in self.maximum_resource_fraction_per_queue.items():
            if not fraction >= 0:
                raise ValueError(
                    f"priority class {self.name!r}: maximum_resource_fraction_per_queue[{resource!r}] "
                    f"must not be negative, got {fraction!r}"
                )


IMPLICIT_PRIORITY_CLASS = PriorityClass("", 0, False)
"""The class every job is in when :attr:`SchedulingConfig.priority_classes` is empty."""

ARMADA_PRIORITY_CLASSES = {
    "armada-default": PriorityClass("armada-default", 1000, False),
    "armada-preemptible": PriorityClass("armada-preemptible", 1000, True),
}
"""Armada's stock classes (use with ``default_priority_class="armada-default"``)."""


@dataclass(frozen=True, slots=True)
class SchedulingConfig:
    """Knobs of a scheduling cycle.

    ``resources`` are the resources dominant-resource fairness considers, in order; the first
    is also the node index's leading key (see :mod:`flotilla.scheduling.node_db`). Jobs may
    request other resources: those must fit too, they just do not count towards fair share.
    ``max_jobs_per_cycle`` bounds the leases one cycle hands out (Armada's
    ``maximumSchedulingBurst``); jobs left over are tried again next cycle.

    ``priority_classes`` (name -> class) and ``default_priority_class`` are described in the
    module docstring. ``protected_fraction_of_fair_share``: a queue whose cost is at most this
    fraction of its (demand-adjusted) fair share keeps all its jobs; only queues above it have
    their preemptible jobs evicted and rescheduled. ``maximum_resource_fraction_to_schedule``
    caps, per resource, what one cycle may newly lease in a pool, as a fraction of the pool's
    total.
    """

    resources: tuple[str, ...] = ("cpu", "memory")
    max_jobs_per_cycle: int = 10000
    priority_classes: dict[str, PriorityClass] = field(default_factory=dict, hash=False)
    default_priority_class: str = ""
    protected_fraction_of_fair_share: float = 1.0
    maximum_resource_fraction_to_schedule: dict[str, float] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not self.resources:
            raise ValueError("SchedulingConfig.resources must name at least one resource")
        if self.max_jobs_per_cycle < 0:
            raise ValueError("SchedulingConfig.max_jobs_per_cycle must not be negative")
        for name, priority_class in self.priority_classes.items():
            if name != priority_class.name:
                raise ValueError(
                    f"SchedulingConfig.priority_classes: key {name!r} names class {priority_class.name!r}"
                )
        if self.priority_classes and self.default_priority_class not in self.priority_classes:
            raise ValueError(
                f"SchedulingConfig.default_priority_class {self.default_priority_class!r} is not one of "
                f"the priority classes ({', '.join(sorted(self.priority_classes))})"
            )
        if not self.protected_fraction_of_fair_share >= 0:
            raise ValueError("SchedulingConfig.protected_fraction_of_fair_share must not be negative")
        for resource, fraction in self.maximum_resource_fraction_to_schedule.items():
            if not fraction >= 0:
                raise ValueError(
                    f"SchedulingConfig.maximum_resource_fraction_to_schedule[{resource!r}] must not be "
                    f"negative, got {fraction!r}"
                )

    def priority_class(self, name: str) -> PriorityClass | None:
        """The class a job naming ``name`` is in (empty: the default), or None if unknown.

        With no classes configured every name resolves to :data:`IMPLICIT_PRIORITY_CLASS`.
        """
        if not self.priority_classes:
            return IMPLICIT_PRIORITY_CLASS
        return self.priority_classes.get(name or self.default_priority_class)


@dataclass(frozen=True, slots=True)
class Lease:
    """A scheduling decision: run ``job_id`` on ``executor``'s node ``node`` in ``pool``."""

    job_id: str
    queue: str
    executor: str
    node: str
    pool: str


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Per-queue fairness figures of one pool: the fair share (weight over active weights),
    the fair share capped by demand (:func:`~flotilla.scheduling.fair_share.adjusted_fair_shares`)
    and the dominant-resource cost after the cycle."""

    fair_shares: dict[str, float] = field(default_factory=dict)
    adjusted_fair_shares: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class NodeDbStats:
    """Work done by a :class:`~flotilla.scheduling.node_db.NodeDb`: searches of an index, jobs answered from the unfit-shape
    cache, nodes whose free resources were checked against a job, and searches for resources
    to take by preemption."""

    node_searches: int = 0
    shape_cache_hits: int = 0
    nodes_examined: int = 0
    preemption_searches: int = 0


@dataclass(frozen=True, slots=True)
class CycleStats:
    """What a cycle did, for metrics and for tests that count work rather than time.

    ``node_searches`` counts searches of the node index, ``shape_cache_hits`` the jobs answered
    by the "this shape fits nowhere" cache instead, ``nodes_examined`` the nodes whose free
    resources were checked against a job. ``jobs_evicted`` counts running jobs moved back to
    their queues for preemption to fair share (most are normally rescheduled onto their node).
    ``fair_shares``, ``adjusted_fair_shares`` and ``costs`` are per queue, for the first pool
    in name order (the only pool, usually); ``pools`` has them for every pool.
    """

    jobs_considered: int = 0
    node_searches: int = 0
    shape_cache_hits: int = 0
    nodes_examined: int = 0
    fair_shares: dict[str, float] = field(default_factory=dict)
    costs: dict[str, float] = field(default_factory=dict)
    adjusted_fair_shares: dict[str, float] = field(default_factory=dict)
    jobs_evicted: int = 0
    pools: dict[str, PoolStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CycleResult:
    """A cycle's decisions: new leases in the order they were made, running jobs to preempt
    (``preemption_reasons`` says why, for each) and, for every job found unschedulable, a
    short reason."""

    leases: list[Lease]
    preemptions: list[str]
    unschedulable: dict[str, str]
    stats: CycleStats = field(default_factory=CycleStats)
    preemption_reasons: dict[str, str] = field(default_factory=dict)
