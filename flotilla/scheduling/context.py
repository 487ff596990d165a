"""The state one scheduling cycle shares with its pools' rounds, as typed records (after Armada's
``SchedulingContext``, ``QueueSchedulingContext`` and ``JobSchedulingContext``).

:class:`SchedulingContext` is made once per call to :func:`~flotilla.scheduling.cycle.schedule`
(by :class:`~flotilla.scheduling.cycle_context.Cycle`) and handed to each pool's round
(:class:`~flotilla.scheduling.pool_round.Pool`): what the round reads (the config, the known
queues, what earlier rounds leased, the priority classes) and what it adds to (leases,
preemptions, the lease cap left, the work done, per-pool figures). A queue's state within a
round is :class:`~flotilla.scheduling.queue_items.QueueState`; a job a round leased, with what
it needs to undo the lease, is :class:`NewJob`.

Records rather than attribute bags or positional tuples, so that a reader (and mypy) can see
what crosses from the cycle to a round; ``slots`` keep attribute access in the hot loop cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from .model import CycleStats, Lease, PoolStats, PriorityClass, Queue, QueuedJob, SchedulingConfig
from .queue_items import Gang, QueueState


@dataclass(slots=True)
class WorkCounters:
    """Work done, summed over pools (and over the rounds a cycle settles in); see
    :class:`~flotilla.scheduling.model.CycleStats` for what each counts."""

    jobs_considered: int = 0
    node_searches: int = 0
    shape_cache_hits: int = 0
    nodes_examined: int = 0
    jobs_evicted: int = 0

    @classmethod
    def of(cls, stats: CycleStats) -> WorkCounters:
        return cls(**{f.name: getattr(stats, f.name) for f in fields(cls)})

    def add(self, other: WorkCounters) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def counts(self) -> dict[str, Any]:
        """The counters by name, as keyword arguments for the
        :class:`~flotilla.scheduling.model.CycleStats` fields of the same names."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True, eq=False)
class SchedulingContext:
    """What one cycle shares with its pools' rounds.

    Read by a round: ``config``; ``known`` (queue name -> queue; running jobs of other queues are
    never preempted) and ``queues`` (in the order given); ``scheduled``: per pool, what earlier
    settling rounds of this cycle leased (for the per-cycle resource fraction);
    ``queue_classes``: per queue, the priority classes of its queued jobs; ``any_preemptible``.
    Added to by a round: ``leases``, ``preempted`` (job id -> reason), ``cap_left`` (new leases
    still allowed), ``work``, ``pool_stats`` and ``unsettled`` (some pool ended with a queue
    above its protected share while another queue had jobs it could not place: the next cycle
    may preempt, see ``cycle._settle``).
    """

    config: SchedulingConfig
    known: dict[str, Queue]
    queues: list[Queue]
    scheduled: Mapping[str, Mapping[str, int]]
    cap_left: int
    any_preemptible: bool
    class_cache: dict[str, PriorityClass | None] = field(default_factory=dict)
    """Every priority class name resolved so far (None: unknown)."""
    queue_classes: dict[str, dict[str, PriorityClass]] = field(default_factory=dict)
    leases: list[Lease] = field(default_factory=list)
    preempted: dict[str, str] = field(default_factory=dict)
    work: WorkCounters = field(default_factory=WorkCounters)
    pool_stats: dict[str, PoolStats] = field(default_factory=dict)
    unsettled: bool = False

    @classmethod
    def start(
        cls,
        config: SchedulingConfig,
        queues: list[Queue],
        scheduled: Mapping[str, Mapping[str, int]] | None = None,
    ) -> SchedulingContext:
        known = {q.name: q for q in queues}
        return cls(
            config=config,
            known=known,
            queues=list(known.values()),
            scheduled=scheduled or {},
            cap_left=config.max_jobs_per_cycle,
            any_preemptible=any(pc.preemptible for pc in config.priority_classes.values()),
        )

    def priority_class(self, name: str) -> PriorityClass | None:
        """The class a job naming ``name`` is in, or None if unknown (cached)."""
        try:
            return self.class_cache[name]
        except KeyError:
            resolved = self.class_cache[name] = self.config.priority_class(name)
            return resolved


class NewJob(NamedTuple):
    """A job a pool's round leased (Armada's ``JobSchedulingContext``): its queue's state, the
    job, its priority class and its gang (None for a single job), kept so that an
    oversubscribed node can take the lease back."""

    queue: QueueState
    job: QueuedJob
    priority_class: PriorityClass
    gang: Gang | None
