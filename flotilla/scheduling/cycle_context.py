"""One scheduling cycle across pools: the state its pools share (see :mod:`flotilla.scheduling.cycle`).

:class:`Cycle` turns each known, open queue's queued jobs into items in queue order (see
:mod:`~flotilla.scheduling.queue_items`), rejecting with a reason the jobs of unknown or
cordoned queues, of unknown priority classes, of incomplete or inconsistent gangs and of pools
that have no nodes. It then hands each pool, in name order, its nodes, its running jobs and the
items not yet leased in an earlier pool to a :class:`~flotilla.scheduling.pool_round.Pool`;
running jobs whose node has gone and whose pool is unknown count in every pool. A job tried in
several pools and leased in none gets every pool's reason. Last, a preempted member of a
running gang preempts its whole gang.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import attrgetter

from .context import SchedulingContext
from .model import (
    CycleResult,
    CycleStats,
    Node,
    PoolStats,
    Queue,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
)
from .pool_round import Pool
from .queue_items import Gang, sort_in_queue_order, sum_requests

UNKNOWN_QUEUE = "unknown queue"
QUEUE_CORDONED = "queue cordoned"
UNKNOWN_PRIORITY_CLASS = "unknown priority class"

_PRIORITY_CLASS = attrgetter("priority_class")
_GANG_ID = attrgetter("gang_id")
_GANG_CARDINALITY = attrgetter("gang_cardinality")
_POOLS = attrgetter("pools")


class Cycle:
    """The state of one call to :func:`schedule` shared by its pools."""

    def __init__(
        self,
        queued: Sequence[QueuedJob],
        running: Sequence[RunningJob],
        nodes: Sequence[Node],
        queues: Sequence[Queue],
        config: SchedulingConfig,
        scheduled: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        self.queued, self.running, self.nodes = queued, running, nodes
        self.context = SchedulingContext.start(config, list(queues), scheduled)
        """What the pools' rounds share; ``scheduled`` is, per pool, what earlier settling
        rounds of this cycle leased (for the per-cycle fraction)."""
        self.unschedulable: dict[str, str] = {}

    @property
    def unsettled(self) -> bool:
        """Some pool may preempt more next cycle (see ``cycle._settle``)."""
        return self.context.unsettled

    # --- the cycle ---------------------------------------------------------------------

    def run(self) -> CycleResult:
        context = self.context
        items_by_queue, restricted = self._queue_items()
        node_pool: dict[str, dict[str, str]] = {}  # executor -> node name -> pool
        nodes_by_pool: dict[str, list[Node]] = {}
        for node in self.nodes:
            node_pool.setdefault(node.executor, {})[node.name] = node.pool
            nodes_by_pool.setdefault(node.pool, []).append(node)
        pools = sorted(nodes_by_pool) or [""]
        runs_by_pool: dict[str, list[RunningJob]] = {pool: [] for pool in pools}
        no_nodes: dict[str, str] = {}
        for run in self.running:
            pool = node_pool.get(run.executor, no_nodes).get(run.node) or run.pool
            if pool in runs_by_pool:
                runs_by_pool[pool].append(run)
            else:  # its node is gone and its pool unknown: it counts everywhere
                for runs in runs_by_pool.values():
                    runs.append(run)
        if restricted:
            known_pools = set(pools)
            for name, items in items_by_queue.items():
                kept = []
                for item in items:
                    if item.pools and not known_pools.intersection(item.pools):
                        self._reject(item, f"no nodes in pools {', '.join(item.pools)}")
                    else:
                        kept.append(item)
                items_by_queue[name] = kept

        multi = len(pools) > 1
        reasons: dict[str, list[tuple[str, str]]] = {}
        leased: set[str] = set()
        for pool in pools:
            if multi or restricted:
                pool_items = {
                    name: [
                        item
                        for item in items
                        if (not item.pools or pool in item.pools) and self._item_id(item) not in leased
                    ]
                    for name, items in items_by_queue.items()
                }
            else:
                pool_items = items_by_queue
            start = len(context.leases)
            unschedulable = Pool(
                context, pool, nodes_by_pool.get(pool, []), runs_by_pool[pool], pool_items
            ).run()
            if multi:
                leased.update(lease.job_id for lease in context.leases[start:])
                for job_id, reason in unschedulable.items():
                    reasons.setdefault(job_id, []).append((pool, reason))
            else:
                self.unschedulable.update(unschedulable)
        for job_id, tried in reasons.items():
            if job_id not in leased:
                self.unschedulable[job_id] = (
                    tried[0][1] if len(tried) == 1 else "; ".join(f"pool {p}: {r}" for p, r in tried)
                )
        self._preempt_whole_gangs()

        first = context.pool_stats.get(pools[0], PoolStats())
        stats = CycleStats(
            **context.work.counts(),
            fair_shares=dict(first.fair_shares),
            costs=dict(first.costs),
            adjusted_fair_shares=dict(first.adjusted_fair_shares),
            pools=dict(context.pool_stats),
        )
        return CycleResult(
            leases=context.leases,
            preemptions=list(context.preempted),
            unschedulable=self.unschedulable,
            stats=stats,
            preemption_reasons=dict(context.preempted),
        )

    @staticmethod
    def _item_id(item: QueuedJob | Gang) -> str:
        return item.members[0].job_id if isinstance(item, Gang) else item.job_id

    def _reject(self, item: QueuedJob | Gang, reason: str) -> None:
        if isinstance(item, Gang):
            for member in item.members:
                self.unschedulable[member.job_id] = reason
        else:
            self.unschedulable[item.job_id] = reason

    def _queue_items(self) -> tuple[dict[str, list], bool]:
        """Each known, open queue's queued jobs as items (jobs and gangs) in queue order, and
        whether any job is restricted to pools. Rejects what cannot be scheduled at all."""
        unschedulable, context = self.unschedulable, self.context
        pending: dict[str, list[QueuedJob]] = {q.name: [] for q in context.queues if not q.cordoned}
        for job in self.queued:
            jobs = pending.get(job.queue)
            if jobs is None:
                unschedulable[job.job_id] = QUEUE_CORDONED if job.queue in context.known else UNKNOWN_QUEUE
            else:
                jobs.append(job)
        restricted = False
        items_by_queue: dict[str, list] = {}
        for name, jobs in pending.items():
            if not jobs:
                continue
            classes = {n: context.priority_class(n) for n in set(map(_PRIORITY_CLASS, jobs))}
            if None in classes.values():
                kept = []
                for job in jobs:
                    if classes[job.priority_class] is None:
                        unschedulable[job.job_id] = f"{UNKNOWN_PRIORITY_CLASS} {job.priority_class}"
                    else:
                        kept.append(job)
                jobs = kept
            context.queue_classes[name] = {pc.name: pc for pc in classes.values() if pc is not None}
            sort_in_queue_order(jobs, classes)
            if any(map(_GANG_ID, jobs)) or set(map(_GANG_CARDINALITY, jobs)) != {1}:
                items = self._gang_items(name, jobs)
            else:
                items = jobs
            if not restricted and any(map(_POOLS, jobs)):
                restricted = True
            if items:
                items_by_queue[name] = items
        return items_by_queue, restricted

    def _gang_items(self, queue: str, jobs: list[QueuedJob]) -> list:
        """Replace each gang's members by one :class:`Gang` at its first member's place,
        rejecting incomplete and inconsistent gangs."""
        items: list = []
        gangs: dict[str, list[QueuedJob]] = {}
        for job in jobs:
            if not job.gang_id:
                if job.gang_cardinality != 1:
                    self.unschedulable[job.job_id] = (
                        f"gang cardinality {job.gang_cardinality} given without a gang id"
                    )
                else:
                    items.append(job)
                continue
            members = gangs.get(job.gang_id)
            if members is None:
                gangs[job.gang_id] = members = []
                items.append(members)
            members.append(job)
        out: list = []
        for item in items:
            if type(item) is not list:
                out.append(item)
                continue
            members = item
            first = members[0]
            cardinality = first.gang_cardinality
            reason = ""
            if len({m.gang_cardinality for m in members}) > 1:
                reason = "gang members disagree on gang cardinality"
            elif cardinality < 1:
                reason = f"invalid gang cardinality {cardinality}"
            elif len(members) < cardinality:
                reason = f"gang incomplete: {len(members)} of {cardinality} members queued"
            elif len(members) > cardinality:
                reason = f"gang has {len(members)} members queued for cardinality {cardinality}"
            elif len({m.gang_node_uniformity_label for m in members}) > 1:
                reason = "gang members disagree on node uniformity label"
            elif (
                len({getattr(self.context.priority_class(m.priority_class), "name", None) for m in members})
                > 1
            ):
                reason = "gang members disagree on priority class"
            elif len({m.pools for m in members}) > 1:
                reason = "gang members disagree on pools"
            if reason:
                for member in members:
                    self.unschedulable[member.job_id] = reason
            elif cardinality == 1 and not first.gang_node_uniformity_label:
                out.append(first)
            else:
                pc = self.context.priority_class(first.priority_class)
                if pc is None:  # jobs of unknown classes are rejected before gangs are formed
                    raise ValueError(f"gang {first.gang_id}: unknown priority class {first.priority_class!r}")
                label = first.gang_node_uniformity_label
                out.append(Gang(first.gang_id, queue, members, sum_requests(members), label, pc, first.pools))
        return out

    def _preempt_whole_gangs(self) -> None:
        """A preempted member of a running gang preempts every running member."""
        preempted = self.context.preempted
        if not preempted:
            return
        members: dict[tuple[str, str], list[str]] = {}
        for run in self.running:
            if run.gang_id:
                members.setdefault((run.queue, run.gang_id), []).append(run.job_id)
        if not members:
            return
        by_id = {run.job_id: run for run in self.running}
        for job_id in list(preempted):
            member = by_id.get(job_id)
            if member is None or not member.gang_id:
                continue
            for other in members[(member.queue, member.gang_id)]:
                if other not in preempted:
                    preempted[other] = f"gang {member.gang_id}: member {job_id} preempted"
