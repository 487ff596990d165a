"""One scheduling cycle, a pure function of the cluster's state (Armada's ``PreemptingQueueScheduler``).

Each pool is scheduled on its own, pools in name order; a job leased in one pool is not
considered in the next. Within a pool (see ``armada-docs/scheduling_and_preempting_jobs.md``):

1. **Fair shares.** The active queues (with queued or running jobs in the pool) share the
   pool by weight (``1 / priority_factor``); each share is also capped by the queue's demand
   (*adjusted fair share*, :func:`~flotilla.scheduling.fair_share.adjusted_fair_shares`).
2. **Eviction.** Every queue whose dominant-resource cost exceeds
   ``protected_fraction_of_fair_share * max(fair share, adjusted fair share)`` has its running
   jobs of ``preemptible`` priority classes *evicted*: they go back to the front of their queue
   (in queue order), pinned to their node, whose resources they keep until they are either
   rebound or preempted. Running gangs are evicted whole. The evicted jobs are ordered as
   progressive filling would reschedule them; fair-share preemption takes from the end.
3. **Scheduling.** Repeatedly, the queue whose cost would be the smallest fraction of its fair
   share *with its next gang* (a single job is a gang of one) schedules that gang; ties go to
   the queue name that sorts first. Within a queue jobs go by priority-class priority (higher
   first), then job ``priority`` (lower first), then ``submitted_at``, then ``job_id``.
   An evicted job is rebound to its node if it still fits there (on an exact tie an evicted
   job goes before a new one). A new job is placed on the best-fit node
   (:class:`~flotilla.scheduling.node_db.NodeDb`), else by taking the resources of evicted
   jobs of no higher priority (preemption to fair share), else by urgency-based preemption of
   preemptible jobs of lower priority classes. A gang is placed all or nothing (node
   reservations are rolled back if a member does not fit); with a node uniformity label
   every value is tried and the first that needs the fewest preemptions wins.
4. **Oversubscribed nodes.** Nodes an urgency-based placement oversubscribed have their lower
   preemptible jobs evicted and rebound, higher priority classes first; what does not fit is
   preempted (or, for a lease of this cycle, withdrawn).
5. Evicted jobs not rebound are preempted; a preempted gang member preempts its whole gang.
6. **Settling.** A cycle that preempted, or whose new leases took a queue above its protected
   share while a fairer queue waits, is run again on its own output (at most three times) and
   the changes folded in, so that running the next cycle on this one's output preempts
   nothing more (preemption stability). Leases a later round preempts are withdrawn.

Limits: ``max_jobs_per_cycle`` new leases (after which no new job is considered, but evicted
jobs are still rebound; a gang counts as its cardinality),
``maximum_resource_fraction_to_schedule`` per pool, and each priority class's
``maximum_resource_fraction_per_queue`` (the fractions are checked as Armada checks them,
against what is scheduled or held before a job, so the job that crosses one is let through). Jobs of unknown or cordoned queues, of unknown
priority classes and of incomplete or inconsistent gangs are reported unschedulable with a
reason, as is every job the cycle tried and could not place. Running jobs whose node has gone
(or is unschedulable) still count towards their queue's allocation and are never evicted.

Performance: nothing per job is done for preemption unless something is preemptible (the
node database only tracks jobs when a queue is evicted or urgency-based preemption is
possible); a run of unfit jobs of one shape in a queue is reported in one sweep; within a
queue jobs are sorted on a float key where priorities are uniform.

No Kafka, no I/O, no clock, no randomness: the same inputs give the same result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from heapq import heapify, heappop, heappush, heappushpop
from itertools import compress, islice, repeat
from operator import attrgetter, eq
from typing import Any

from .fair_share import adjusted_fair_shares, dominant_share, fair_shares, total_capacity
from .model import (
    CycleResult,
    CycleStats,
    Lease,
    Node,
    PoolStats,
    PriorityClass,
    Queue,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
)
from .node_db import NodeDb, job_constraint

UNKNOWN_QUEUE = "unknown queue"
QUEUE_CORDONED = "queue cordoned"
UNKNOWN_PRIORITY_CLASS = "unknown priority class"

_PRIORITY = attrgetter("priority")
_PRIORITY_AND_TIME = attrgetter("priority", "submitted_at")
_SUBMITTED_AT = attrgetter("submitted_at")
_JOB_ID = attrgetter("job_id")
_PRIORITY_CLASS = attrgetter("priority_class")
_GANG_ID = attrgetter("gang_id")
_GANG_CARDINALITY = attrgetter("gang_cardinality")
_POOLS = attrgetter("pools")
_EPSILON = 1e-9  # float slack when comparing a queue's cost with its protected share


def job_order(job: QueuedJob | RunningJob, class_priority: int = 0) -> tuple[int, float, float, str]:
    """The order of jobs within a queue: priority-class priority (higher first), then job
    priority (lower first), submission time, job id."""
    return (-class_priority, job.priority, job.submitted_at, job.job_id)


@dataclass(slots=True, eq=False)
class _Gang:
    """A gang as one item of its queue: members (queued jobs, or running jobs when evicted)."""

    gang_id: str
    queue: str
    members: list
    requests: dict[str, int]
    label: str
    priority_class: PriorityClass
    pools: tuple[str, ...] = ()
    evicted: bool = False


@dataclass(slots=True, eq=False)
class _QueueState:
    name: str
    items: list
    alloc: dict[str, int]
    inv: list[tuple[str, float]]
    pos: int = 0
    end: int = 0
    evicted: int = 0
    ratio: float = 0.0
    waiting: bool = False
    gained: bool = False
    by_class: dict[str, dict[str, int]] = field(default_factory=dict)
    sweep_target: dict[str, str] = field(default_factory=dict)


def _sort_jobs(jobs: list, primary: Callable[[Any], Any]) -> None:
    """Sort jobs by ``primary`` (the job order without the id), then runs of equal keys by id:
    the same as sorting by ``(*primary, job_id)``, but a float key sorts much faster than a
    tuple, which matters with millions of queued jobs."""
    jobs.sort(key=primary)
    if len(jobs) < 2:
        return
    keys = list(map(primary, jobs))
    ties = list(map(eq, keys, islice(keys, 1, None)))
    if not any(ties):
        return
    if all(ties):
        jobs.sort(key=_JOB_ID)
        return
    start = previous = -2
    for i in compress(range(len(ties)), ties):  # ties[i]: jobs i and i + 1 have equal keys
        if i != previous + 1:
            if start >= 0:
                jobs[start : previous + 2] = sorted(jobs[start : previous + 2], key=_JOB_ID)
            start = i
        previous = i
    jobs[start : previous + 2] = sorted(jobs[start : previous + 2], key=_JOB_ID)


def _add(target: dict[str, int], requests: Mapping[str, int], sign: int = 1) -> None:
    for name, quantity in requests.items():
        target[name] = target.get(name, 0) + sign * quantity


def _sum_requests(jobs: Iterable[QueuedJob | RunningJob]) -> dict[str, int]:
    total: dict[str, int] = {}
    for job in jobs:
        _add(total, job.requests)
    return total


def _ratio(state: _QueueState, requests: Mapping[str, int]) -> float:
    """The queue's cost over its fair share if ``requests`` were added to it."""
    alloc = state.alloc
    best = 0.0
    for name, inverse in state.inv:
        value = (alloc[name] + requests.get(name, 0)) * inverse
        if value > best:
            best = value
    return best


def schedule(
    queued: Sequence[QueuedJob],
    running: Sequence[RunningJob],
    nodes: Sequence[Node],
    queues: Sequence[Queue],
    config: SchedulingConfig,
) -> CycleResult:
    """Decide which queued jobs to lease to which nodes and which running jobs to preempt this
    cycle; see the module docstring."""
    cycle = _Cycle(queued, running, nodes, queues, config)
    result = cycle.run()
    if not result.preemptions and not cycle.unsettled:
        return result
    return _settle(result, queued, running, nodes, queues, config)


_SETTLE_ROUNDS = 3


def _as_running(job: QueuedJob, lease: Lease) -> RunningJob:
    return RunningJob(
        job.job_id,
        job.queue,
        "",
        lease.executor,
        lease.node,
        job.requests,
        priority_class=job.priority_class,
        priority=job.priority,
        submitted_at=job.submitted_at,
        gang_id=job.gang_id,
        pool=lease.pool,
    )


def _settle(
    result: CycleResult,
    queued: Sequence[QueuedJob],
    running: Sequence[RunningJob],
    nodes: Sequence[Node],
    queues: Sequence[Queue],
    config: SchedulingConfig,
) -> CycleResult:
    """Re-run a cycle that preempted on its own output until that changes nothing (at most
    :data:`_SETTLE_ROUNDS` times), folding the changes into one result.

    Eviction is decided on the costs at the start of a cycle, and a node is only sorted out
    after the jobs that oversubscribed it, so a cycle that preempts, or that leaves a queue
    above its protected share while another queue waits, may leave work that the very next
    cycle would do (more preemptions). Doing it now keeps the promise that running
    the cycle again on its own output preempts nothing more. A lease of this cycle that a
    later round preempts is withdrawn (the job stays queued) rather than preempted.
    """
    leases = list(result.leases)
    preempted = dict(result.preemption_reasons)
    unschedulable = dict(result.unschedulable)
    stats = result.stats
    counters = [
        stats.jobs_considered,
        stats.node_searches,
        stats.shape_cache_hits,
        stats.nodes_examined,
        stats.jobs_evicted,
    ]
    leased_ids = {lease.job_id for lease in leases}
    by_id = {job.job_id: job for job in queued if job.job_id in leased_ids}
    state_running = [r for r in running if r.job_id not in preempted]
    state_running += [_as_running(by_id[lease.job_id], lease) for lease in leases]
    state_queued = [job for job in queued if job.job_id not in leased_ids]
    for _ in range(_SETTLE_ROUNDS):
        scheduled: dict[str, dict[str, int]] = {}
        for lease in leases:
            _add(scheduled.setdefault(lease.pool, {}), by_id[lease.job_id].requests)
        remaining = replace(config, max_jobs_per_cycle=max(0, config.max_jobs_per_cycle - len(leases)))
        again = _Cycle(state_queued, state_running, nodes, queues, remaining, scheduled).run()
        stats = again.stats
        counters = [
            a + b
            for a, b in zip(
                counters,
                (
                    stats.jobs_considered,
                    stats.node_searches,
                    stats.shape_cache_hits,
                    stats.nodes_examined,
                    stats.jobs_evicted,
                ),
                strict=True,
            )
        ]
        for job_id in list(unschedulable):
            if job_id in again.unschedulable:
                del unschedulable[job_id]  # keep the latest reason, in the latest order
        unschedulable.update(again.unschedulable)
        if not again.preemptions and not again.leases:
            counters[4] -= stats.jobs_evicted  # a round that changed nothing evicted nothing in effect
            break
        withdrawn = {job_id for job_id in again.preemptions if job_id in by_id}
        for job_id in again.preemptions:
            if job_id in withdrawn:
                unschedulable.setdefault(job_id, f"displaced: {again.preemption_reasons[job_id]}")
            else:
                preempted[job_id] = again.preemption_reasons[job_id]
        new_ids = {lease.job_id for lease in again.leases}
        by_id.update((job.job_id, job) for job in state_queued if job.job_id in new_ids)
        for job_id in new_ids:
            unschedulable.pop(job_id, None)
        leases = [lease for lease in leases if lease.job_id not in withdrawn] + again.leases
        gone = set(again.preemptions)
        state_running = [r for r in state_running if r.job_id not in gone]
        state_running += [_as_running(by_id[lease.job_id], lease) for lease in again.leases]
        state_queued = [job for job in state_queued if job.job_id not in new_ids]
        state_queued += [by_id.pop(job_id) for job_id in sorted(withdrawn)]
    stats = replace(
        stats,
        jobs_considered=counters[0],
        node_searches=counters[1],
        shape_cache_hits=counters[2],
        nodes_examined=counters[3],
        jobs_evicted=counters[4],
    )
    return CycleResult(
        leases=leases,
        preemptions=list(preempted),
        unschedulable=unschedulable,
        stats=stats,
        preemption_reasons=preempted,
    )


class _Cycle:
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
        self.scheduled = scheduled or {}
        """Per pool, what earlier rounds of this cycle leased (for the per-cycle fraction)."""
        self.config = config
        self.known = {q.name: q for q in queues}
        self.queues = list(self.known.values())
        self.unschedulable: dict[str, str] = {}
        self.leases: list[Lease] = []
        self.preempted: dict[str, str] = {}
        self.cap_left = config.max_jobs_per_cycle
        self.class_cache: dict[str, PriorityClass | None] = {}
        self.counters = {"considered": 0, "searches": 0, "hits": 0, "examined": 0, "evicted": 0}
        self.pool_stats: dict[str, PoolStats] = {}
        self.unsettled = False
        self.any_preemptible = any(pc.preemptible for pc in config.priority_classes.values())
        """Some pool ended with a queue above its protected share while another queue had jobs
        it could not place: the next cycle may preempt (see :func:`_settle`)."""
        self.queue_classes: dict[str, dict[str, PriorityClass]] = {}

    def priority_class(self, name: str) -> PriorityClass | None:
        try:
            return self.class_cache[name]
        except KeyError:
            resolved = self.class_cache[name] = self.config.priority_class(name)
            return resolved

    # --- the cycle ---------------------------------------------------------------------

    def run(self) -> CycleResult:
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
            start = len(self.leases)
            unschedulable = _Pool(
                self, pool, nodes_by_pool.get(pool, []), runs_by_pool[pool], pool_items
            ).run()
            if multi:
                leased.update(lease.job_id for lease in self.leases[start:])
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

        first = self.pool_stats.get(pools[0], PoolStats())
        stats = CycleStats(
            jobs_considered=self.counters["considered"],
            node_searches=self.counters["searches"],
            shape_cache_hits=self.counters["hits"],
            nodes_examined=self.counters["examined"],
            fair_shares=dict(first.fair_shares),
            costs=dict(first.costs),
            adjusted_fair_shares=dict(first.adjusted_fair_shares),
            jobs_evicted=self.counters["evicted"],
            pools=dict(self.pool_stats),
        )
        return CycleResult(
            leases=self.leases,
            preemptions=list(self.preempted),
            unschedulable=self.unschedulable,
            stats=stats,
            preemption_reasons=dict(self.preempted),
        )

    @staticmethod
    def _item_id(item: QueuedJob | _Gang) -> str:
        return item.members[0].job_id if type(item) is _Gang else item.job_id

    def _reject(self, item: QueuedJob | _Gang, reason: str) -> None:
        if type(item) is _Gang:
            for member in item.members:
                self.unschedulable[member.job_id] = reason
        else:
            self.unschedulable[item.job_id] = reason

    def _queue_items(self) -> tuple[dict[str, list], bool]:
        """Each known, open queue's queued jobs as items (jobs and gangs) in queue order, and
        whether any job is restricted to pools. Rejects what cannot be scheduled at all."""
        unschedulable = self.unschedulable
        pending: dict[str, list[QueuedJob]] = {q.name: [] for q in self.queues if not q.cordoned}
        for job in self.queued:
            jobs = pending.get(job.queue)
            if jobs is None:
                unschedulable[job.job_id] = QUEUE_CORDONED if job.queue in self.known else UNKNOWN_QUEUE
            else:
                jobs.append(job)
        restricted = False
        items_by_queue: dict[str, list] = {}
        for name, jobs in pending.items():
            if not jobs:
                continue
            classes = {n: self.priority_class(n) for n in set(map(_PRIORITY_CLASS, jobs))}
            if None in classes.values():
                kept = []
                for job in jobs:
                    if classes[job.priority_class] is None:
                        unschedulable[job.job_id] = f"{UNKNOWN_PRIORITY_CLASS} {job.priority_class}"
                    else:
                        kept.append(job)
                jobs = kept
            self.queue_classes[name] = {pc.name: pc for pc in classes.values() if pc is not None}
            priorities = {pc.priority for pc in classes.values() if pc is not None}
            if len(priorities) > 1:
                negated = {n: -pc.priority for n, pc in classes.items() if pc is not None}
                _sort_jobs(
                    jobs, lambda j, negated=negated: (negated[j.priority_class], j.priority, j.submitted_at)
                )
            elif len(set(map(_PRIORITY, jobs))) > 1:
                _sort_jobs(jobs, _PRIORITY_AND_TIME)
            else:
                _sort_jobs(jobs, _SUBMITTED_AT)
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
        """Replace each gang's members by one :class:`_Gang` at its first member's place,
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
            elif len({getattr(self.priority_class(m.priority_class), "name", None) for m in members}) > 1:
                reason = "gang members disagree on priority class"
            elif len({m.pools for m in members}) > 1:
                reason = "gang members disagree on pools"
            if reason:
                for member in members:
                    self.unschedulable[member.job_id] = reason
            elif cardinality == 1 and not first.gang_node_uniformity_label:
                out.append(first)
            else:
                out.append(
                    _Gang(
                        first.gang_id,
                        queue,
                        members,
                        _sum_requests(members),
                        first.gang_node_uniformity_label,
                        self.priority_class(first.priority_class),  # type: ignore[arg-type]
                        first.pools,
                    )
                )
        return out

    def _preempt_whole_gangs(self) -> None:
        """A preempted member of a running gang preempts every running member."""
        if not self.preempted:
            return
        members: dict[tuple[str, str], list[str]] = {}
        for run in self.running:
            if run.gang_id:
                members.setdefault((run.queue, run.gang_id), []).append(run.job_id)
        if not members:
            return
        by_id = {run.job_id: run for run in self.running}
        for job_id in list(self.preempted):
            run = by_id.get(job_id)
            if run is None or not run.gang_id:
                continue
            for other in members[(run.queue, run.gang_id)]:
                if other not in self.preempted:
                    self.preempted[other] = f"gang {run.gang_id}: member {job_id} preempted"


class _Pool:
    """The scheduling of one pool: eviction, the fair-share loop and the oversubscription pass."""

    def __init__(
        self, cycle: _Cycle, name: str, nodes: list[Node], runs: list[RunningJob], items: dict[str, list]
    ) -> None:
        self.cycle = cycle
        self.name = name
        self.config = config = cycle.config
        self.resources = config.resources
        self.nodes = nodes
        self.runs = runs
        self.items = items
        self.unschedulable: dict[str, str] = {}
        self.total = total_capacity(nodes)
        self.leases: list[Lease] = []
        self.withdrawn: set[str] = set()
        self.new_jobs: dict[str, tuple[_QueueState, QueuedJob, PriorityClass, _Gang | None]] = {}
        self.runs_by_id: dict[str, RunningJob] = {}
        self.gang_unfit: dict[tuple, str] = {}
        self.scheduled: dict[str, int] = dict(cycle.scheduled.get(name, {}))
        self.fraction_limits = {
            r: f * self.total.get(r, 0) for r, f in config.maximum_resource_fraction_to_schedule.items()
        }
        self.class_limits: dict[str, dict[str, float]] = {}
        for pc in config.priority_classes.values():
            if pc.maximum_resource_fraction_per_queue:
                self.class_limits[pc.name] = {
                    r: f * self.total.get(r, 0) for r, f in pc.maximum_resource_fraction_per_queue.items()
                }

    def _class_of(self, name: str) -> tuple[int, bool]:
        pc = self.cycle.priority_class(name)
        return (pc.priority, pc.preemptible) if pc is not None else (0, False)

    def run_class(self, run: RunningJob) -> tuple[int, bool]:
        """A running job's priority and whether it may be preempted (never if its queue is
        unknown: Armada does not preempt what it cannot account for)."""
        priority, preemptible = self._class_of(run.priority_class)
        return priority, preemptible and run.queue in self.cycle.known

    # --- set-up ------------------------------------------------------------------------

    def run(self) -> dict[str, str]:
        cycle, config, resources, total = self.cycle, self.config, self.resources, self.total
        known = cycle.known
        alloc: dict[str, dict[str, int]] = {}
        by_class: dict[str, dict[str, dict[str, int]]] = {}
        for run in self.runs:
            queue = run.queue
            held = alloc.get(queue)
            if held is None:
                if queue not in known:
                    continue
                held = alloc[queue] = dict.fromkeys(resources, 0)
            for name, quantity in run.requests.items():
                held[name] = held.get(name, 0) + quantity
            if self.class_limits:
                pc = cycle.priority_class(run.priority_class)
                if pc is not None and pc.name in self.class_limits:
                    _add(by_class.setdefault(run.queue, {}).setdefault(pc.name, {}), run.requests)
        active = set(alloc) | {name for name, items in self.items.items() if items}
        shares = fair_shares(cycle.queues, active)
        adjusted = adjusted_fair_shares(shares, self._demand_oracle(alloc))

        # Only queues above their protected share can lose jobs; only their preemptible jobs on
        # schedulable nodes are looked at (nothing per job when nothing is preemptible).
        preemptible = {name for name in {run.priority_class for run in self.runs} if self._class_of(name)[1]}
        evicted: list[RunningJob] = []
        protected = config.protected_fraction_of_fair_share
        over_at_start = {
            name
            for name, held in alloc.items()
            if dominant_share(held, total, resources)
            > protected * max(shares[name], adjusted[name]) + _EPSILON
        }
        if preemptible:
            evict_queues = over_at_start
            if evict_queues:
                schedulable: dict[str, set[str]] = {}
                for node in self.nodes:
                    if not node.unschedulable:
                        schedulable.setdefault(node.executor, set()).add(node.name)
                nowhere: set[str] = set()
                evictable = [
                    run
                    for run in self.runs
                    if run.queue in evict_queues
                    and run.priority_class in preemptible
                    and run.node in schedulable.get(run.executor, nowhere)
                ]
                evicted = self._whole_gangs(evictable)
        urgency = self._urgency_levels(preemptible)
        tracking = bool(evicted) or any(urgency.values())
        self.node_db = NodeDb(
            self.nodes, self.runs, resources, job_priority=self.run_class if tracking else None
        )
        self.fair = bool(evicted)
        self.levels_of = urgency

        states: dict[str, _QueueState] = {}
        for name in sorted(active):
            share = shares[name]
            inv = [(r, 1.0 / (total[r] * share)) for r in resources if total.get(r, 0) > 0 and share > 0]
            states[name] = _QueueState(
                name, [], alloc.get(name) or dict.fromkeys(resources, 0), inv, by_class=by_class.get(name, {})
            )
        if evicted:
            self._evict(evicted, states)
        for name, items in self.items.items():
            if items:
                state = states[name]
                state.items = state.items + items if state.items else items
        for state in states.values():
            state.end = len(state.items)
            state.sweep_target = self.unschedulable
        self.states = states

        self._loop()
        if self.fair:
            for run in evicted:  # anything the loop did not get back (it gets them all)
                if self.node_db.is_evicted(run.job_id):
                    self._preempt(run, "preempted: not rescheduled")
        if tracking and self.node_db.oversubscribed:
            self._resolve_oversubscribed()

        db_stats = self.node_db.stats
        counters = cycle.counters
        counters["searches"] += db_stats.node_searches
        counters["hits"] += db_stats.shape_cache_hits
        counters["examined"] += db_stats.nodes_examined
        counters["evicted"] += len(evicted)
        cycle.leases.extend(lease for lease in self.leases if lease.job_id not in self.withdrawn)
        costs = {name: dominant_share(state.alloc, total, resources) for name, state in states.items()}
        cycle.pool_stats[self.name] = PoolStats(
            fair_shares=dict(shares), adjusted_fair_shares=adjusted, costs=costs
        )
        # A queue that got new leases and ended above its protected share while another queue
        # waits will be evicted next cycle and its room perhaps taken: let _settle do that now.
        if self.leases and cycle.any_preemptible and any(s.waiting for s in states.values()):
            over = {
                name
                for name, cost in costs.items()
                if cost > protected * max(shares[name], adjusted[name]) + _EPSILON
            }
            if any(states[name].gained for name in over) and any(
                s.waiting and name not in over for name, s in states.items()
            ):
                cycle.unsettled = True
        return self.unschedulable

    def _demand_oracle(self, alloc: dict[str, dict[str, int]]):
        """``(queue, offer) -> demand``, summing a queue's queued jobs only as far as needed:
        in chunks, since a demand past the offer only has to be known to be past it."""
        total, resources, items = self.total, self.resources, self.items
        progress: dict[str, list] = {}

        def demand(name: str, offer: float) -> float:
            entry = progress.get(name)
            if entry is None:
                wanted = dict(alloc.get(name) or {})
                entry = progress[name] = [wanted, 0, dominant_share(wanted, total, resources), 64]
            wanted, pos, cost, chunk = entry
            queue_items = items.get(name) or ()
            while cost < offer and pos < len(queue_items):
                for item in queue_items[pos : pos + chunk]:
                    for resource, quantity in item.requests.items():
                        wanted[resource] = wanted.get(resource, 0) + quantity
                pos += chunk
                chunk *= 2
                cost = dominant_share(wanted, total, resources)
            entry[1:] = [pos, cost, chunk]
            return cost

        return demand

    def _whole_gangs(self, evictable: list[RunningJob]) -> list[RunningJob]:
        """Evict running gangs whole, or (if a member cannot be evicted) not at all."""
        if not any(run.gang_id for run in evictable):
            return evictable
        evicted = evictable
        evictable_ids = {run.job_id for run in evictable}
        members: dict[tuple[str, str], list[RunningJob]] = {}
        for run in self.runs:
            if run.gang_id:
                members.setdefault((run.queue, run.gang_id), []).append(run)
        out, seen = [], set()
        for run in evicted:
            if not run.gang_id:
                out.append(run)
                continue
            key = (run.queue, run.gang_id)
            if key in seen:
                continue
            seen.add(key)
            gang = members[key]
            if all(m.job_id in evictable_ids for m in gang):
                out.extend(gang)
        return out

    def _urgency_levels(self, running_classes: set[str]) -> dict[int, tuple[int, ...]]:
        """For each priority of a queued job, the levels at which it may preempt by urgency:
        priorities of preemptible classes below its own, if any such job may be bound here."""
        pending: dict[str, PriorityClass] = {}
        for name, items in self.items.items():
            if items:
                pending.update(self.cycle.queue_classes.get(name, {}))
        if not pending:
            return {}
        lower = {self._class_of(name)[0] for name in running_classes}
        lower.update(pc.priority for pc in pending.values() if pc.preemptible)
        preemptible = sorted({pc.priority for pc in self.config.priority_classes.values() if pc.preemptible})
        floor = min(lower, default=None)
        levels: dict[int, tuple[int, ...]] = {}
        for pc in pending.values():
            if floor is not None and floor < pc.priority:
                levels[pc.priority] = tuple(q for q in preemptible if q < pc.priority)
            else:
                levels[pc.priority] = ()
        return levels

    def _evict(self, evicted: list[RunningJob], states: dict[str, _QueueState]) -> None:
        """Move evicted jobs out of their queues' allocations and to the front of their queues,
        and tell the node db the order progressive filling would reschedule them in."""
        self.node_db.evict(run.job_id for run in evicted)
        by_queue: dict[str, list[RunningJob]] = {}
        for run in evicted:
            self.runs_by_id[run.job_id] = run
            by_queue.setdefault(run.queue, []).append(run)
        resolve = self.cycle.priority_class
        for name, runs in by_queue.items():
            state = states[name]
            negated = {n: -self._class_of(n)[0] for n in {run.priority_class for run in runs}}
            runs.sort(key=lambda r: (negated[r.priority_class], r.priority, r.submitted_at, r.job_id))
            items: list = []
            gangs: dict[str, _Gang] = {}
            alloc = state.alloc
            for run in runs:
                for resource, quantity in run.requests.items():
                    alloc[resource] = alloc.get(resource, 0) - quantity
                if state.by_class:
                    pc = resolve(run.priority_class)
                    if pc is not None and pc.name in state.by_class:
                        _add(state.by_class[pc.name], run.requests, -1)
                if not run.gang_id:
                    items.append(run)
                    continue
                gang = gangs.get(run.gang_id)
                if gang is None:
                    gang = gangs[run.gang_id] = _Gang(
                        run.gang_id,
                        name,
                        [],
                        {},
                        "",
                        resolve(run.priority_class),
                        evicted=True,  # type: ignore[arg-type]
                    )
                    items.append(gang)
                gang.members.append(run)
                _add(gang.requests, run.requests)
            state.items = items
            state.evicted = len(items)
        # Progressive filling over the evicted jobs alone gives the order they would come back in.
        if len(by_queue) == 1:
            (name,) = by_queue
            self.node_db.set_eviction_order(
                [
                    m.job_id
                    for item in states[name].items
                    for m in (item.members if type(item) is _Gang else (item,))
                ]
            )
            return
        simulated = {name: dict(states[name].alloc) for name in by_queue}
        positions = dict.fromkeys(by_queue, 0)
        heap = [(_ratio(states[name], states[name].items[0].requests), name) for name in by_queue]
        heapify(heap)
        order: list[str] = []
        while heap:
            _, name = heappop(heap)
            state = states[name]
            item = state.items[positions[name]]
            positions[name] += 1
            if type(item) is _Gang:
                order.extend(m.job_id for m in item.members)
            else:
                order.append(item.job_id)
            _add(simulated[name], item.requests)
            if positions[name] < state.evicted:
                saved, state.alloc = state.alloc, simulated[name]
                heappush(heap, (_ratio(state, state.items[positions[name]].requests), name))
                state.alloc = saved
        self.node_db.set_eviction_order(order)

    # --- the loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        states = self.states
        # Heap entries are (ratio with the next item, 0 if that item is an evicted job else 1,
        # queue): on an exact tie an evicted job is rebound before a new job may take its place.
        heap = [
            (_ratio(s, s.items[0].requests), 0 if s.evicted else 1, name)
            for name, s in states.items()
            if s.end
        ]
        heapify(heap)
        cycle = self.cycle
        node_db = self.node_db
        place, bind = node_db.place, node_db.bind
        tracking, fair, levels_of = node_db.tracking, self.fair, self.levels_of
        resolve = cycle.class_cache.__getitem__  # every queued job's class was resolved up front
        leases, unschedulable = self.leases, self.unschedulable
        fraction_limits, class_limits = self.fraction_limits, self.class_limits
        pool = self.name
        considered = 0
        state: _QueueState | None = None
        while True:
            if state is None:
                if not heap:
                    break
                ratio, _, name = heappop(heap)
                state = states[name]
                state.ratio = ratio
            item = state.items[state.pos]
            state.pos += 1
            changed = True
            kind = type(item)
            if kind is QueuedJob:
                if cycle.cap_left <= 0:
                    state.pos -= 1
                    heap = self._stop_new()
                    state = None
                    continue
                considered += 1
                pc = resolve(item.priority_class)
                requests = item.requests
                reason = self._limit_reason(state, pc) if fraction_limits or class_limits else ""
                if reason:
                    node = None
                else:
                    node, reason, victims = place(
                        item, pc.priority, fair=fair, levels=levels_of.get(pc.priority, ())
                    )
                if node is None:
                    unschedulable[item.job_id] = reason
                    changed = False
                    state.waiting = True
                    # Nothing changed, so the queue's next jobs of the same shape get the same
                    # answer and the queue stays first: sweep them without the heap.
                    swept = self._sweep_unfit(state, item, reason)
                    if swept:
                        considered += swept
                        node_db.stats.shape_cache_hits += swept
                else:
                    node_id = node.id
                    if tracking:
                        bind(
                            node_id,
                            requests,
                            job_id=item.job_id,
                            priority=pc.priority,
                            preemptible=pc.preemptible,
                        )
                        self.new_jobs[item.job_id] = (state, item, pc, None)
                        for victim in victims:
                            self._preempt(
                                self.runs_by_id[victim],
                                f"preempted to fair share by {item.job_id} of queue {item.queue}",
                                dropped=True,
                            )
                    else:
                        bind(node_id, requests)
                    leases.append(Lease(item.job_id, item.queue, node.executor, node.name, pool))
                    state.gained = True
                    cycle.cap_left -= 1
                    alloc = state.alloc
                    for name, quantity in requests.items():
                        alloc[name] = alloc.get(name, 0) + quantity
                    if fraction_limits:
                        _add(self.scheduled, requests)
                    if pc.name in class_limits:
                        _add(state.by_class.setdefault(pc.name, {}), requests)
            elif kind is RunningJob:
                self._rebind(state, item)
            elif item.evicted:
                self._rebind_gang(state, item)
            else:
                if cycle.cap_left < len(item.members):
                    state.pos -= 1
                    heap = self._stop_new()
                    state = None
                    continue
                considered += len(item.members)
                changed = self._schedule_gang(state, item)
            if state.pos < state.end:
                if heap:
                    following = state.items[state.pos].requests
                    if changed or following != item.requests:
                        state.ratio = _ratio(state, following)
                    entry = (state.ratio, 0 if state.pos < state.evicted else 1, state.name)
                    top = heappushpop(heap, entry)
                    if top is not entry:
                        state = states[top[2]]
                        state.ratio = top[0]
            else:
                state = None
        cycle.counters["considered"] += considered

    @staticmethod
    def _sweep_unfit(state: _QueueState, job: QueuedJob, reason: str) -> int:
        """Report unschedulable the run of jobs after ``job`` in its queue that have its shape
        (requests, class and constraints); how many."""
        items, start, end = state.items, state.pos, state.end
        if start >= end:
            return 0
        requests, name = job.requests, job.priority_class
        selector, tolerations, affinity = job.node_selector, job.tolerations, job.node_affinity
        i = start
        if not selector and not tolerations and not affinity:
            while i < end:
                other = items[i]
                if (
                    type(other) is not QueuedJob
                    or other.priority_class != name
                    or (other.requests is not requests and other.requests != requests)
                    or other.node_selector
                    or other.tolerations
                    or other.node_affinity
                ):
                    break
                i += 1
        else:
            while i < end:
                other = items[i]
                if (
                    type(other) is not QueuedJob
                    or other.priority_class != name
                    or other.requests != requests
                    or other.node_selector != selector
                    or other.tolerations != tolerations
                    or other.node_affinity != affinity
                ):
                    break
                i += 1
        if i == start:
            return 0
        state.sweep_target.update(zip(map(_JOB_ID, items[start:i]), repeat(reason)))
        state.pos = i
        return i - start

    def _stop_new(self) -> list[tuple[float, int, str]]:
        """The lease cap is reached: only evicted jobs are still rebound."""
        heap = []
        for name, state in self.states.items():
            state.end = min(state.end, state.evicted)
            if state.pos < state.end:
                state.ratio = _ratio(state, state.items[state.pos].requests)
                heap.append((state.ratio, 0, name))
        heapify(heap)
        return heap

    # Limits are checked as Armada checks them (its CheckRoundConstraints and
    # CheckJobConstraints): against what is already scheduled or held, before the job. The job
    # that crosses a limit is let through; the ones after it are not.

    def _limit_reason(self, state: _QueueState, pc: PriorityClass) -> str:
        for name, limit in self.fraction_limits.items():
            if self.scheduled.get(name, 0) > limit:
                return f"maximum resource fraction to schedule reached for {name}"
        return self._class_limit_reason(state, pc)

    def _class_limit_reason(self, state: _QueueState, pc: PriorityClass) -> str:
        limits = self.class_limits.get(pc.name)
        if limits:
            held = state.by_class.get(pc.name, {})
            for name, limit in limits.items():
                if held.get(name, 0) > limit:
                    return f"queue limit for priority class {pc.name} reached"
        return ""

    def _preempt(self, run: RunningJob, reason: str, dropped: bool = False) -> None:
        if not dropped and self.node_db.node_of(run.job_id) is not None:
            self.node_db.drop(run.job_id)
        self.cycle.preempted.setdefault(run.job_id, reason)

    def _take(
        self, state: _QueueState, requests: Mapping[str, int], pc: PriorityClass | None, sign: int
    ) -> None:
        _add(state.alloc, requests, sign)
        if pc is not None and pc.name in self.class_limits:
            _add(state.by_class.setdefault(pc.name, {}), requests, sign)

    def _rebind(self, state: _QueueState, run: RunningJob) -> None:
        if run.job_id in self.cycle.preempted:  # its resources went to a job of a fairer queue
            return
        pc = self.cycle.priority_class(run.priority_class)
        reason = self._class_limit_reason(state, pc) if pc is not None else ""
        if not reason and self.node_db.rebind(run.job_id, pc.priority if pc is not None else 0):
            self._take(state, run.requests, pc, +1)
            return
        node_id = self.node_db.node_of(run.job_id)
        culprit = self.node_db.culprit(node_id) if node_id in self.node_db.oversubscribed else ""
        if reason:
            self._preempt(run, f"preempted: {reason}")
        elif culprit:
            self._preempt(run, f"preempted by higher priority job {culprit}")
        else:
            self._preempt(run, "preempted: no longer fits on its node")

    def _rebind_gang(self, state: _QueueState, gang: _Gang) -> None:
        node_db = self.node_db
        pc = gang.priority_class
        reason = self._class_limit_reason(state, pc) if pc is not None else ""
        taken = [m.job_id for m in gang.members if m.job_id in self.cycle.preempted]
        if taken:
            reason = f"member {taken[0]} preempted"
        if not reason:
            node_db.begin()
            if all(node_db.rebind(m.job_id, pc.priority if pc is not None else 0) for m in gang.members):
                node_db.commit()
                self._take(state, gang.requests, pc, +1)
                return
            node_db.rollback()
            reason = "a member no longer fits on its node"
        for member in gang.members:
            self._preempt(member, f"preempted: gang {gang.gang_id}: {reason}")

    def _schedule_gang(self, state: _QueueState, gang: _Gang) -> bool:
        """Place a new gang all or nothing; True if it was leased.

        A gang shape (its members' shapes and uniformity label) that did not fit will not fit
        later in the cycle either (free resources only shrink), so the answer is cached.
        """
        pc = gang.priority_class
        reason = self._limit_reason(state, pc)
        if reason:
            self._reject_gang(gang, reason)
            return False
        node_db = self.node_db
        shape = (
            tuple((tuple(m.requests.items()), job_constraint(m)) for m in gang.members),
            gang.label,
            pc.priority,
        )
        reason = self.gang_unfit.get(shape, "")
        if reason:
            node_db.stats.shape_cache_hits += len(gang.members)
            self._reject_gang(gang, reason)
            return False
        if gang.label:
            values = node_db.label_values(gang.label)
            if not values:
                self._reject_gang(gang, f"gang does not fit: no node has label {gang.label}", shape)
                return False
            best: tuple[int, str] | None = None
            first_reason = ""
            for value in values:
                node_db.begin()
                placed, why = self._place_members(gang, (gang.label, value))
                if placed is not None and self._disruption(placed) == 0:
                    node_db.commit()
                    self._lease_gang(state, gang, placed)
                    return True
                node_db.rollback()
                if placed is not None:
                    candidate = (self._disruption(placed), value)
                    best = candidate if best is None or candidate < best else best
                elif not first_reason:
                    first_reason = why
            if best is not None:
                node_db.begin()
                placed, why = self._place_members(gang, (gang.label, best[1]))
                node_db.commit()
                if placed is not None:
                    self._lease_gang(state, gang, placed)
                    return True
            self._reject_gang(gang, f"gang does not fit on any {gang.label}: {first_reason}", shape)
            return False
        node_db.begin()
        placed, why = self._place_members(gang, None)
        if placed is None:
            node_db.rollback()
            self._reject_gang(gang, f"gang does not fit: {why}", shape)
            return False
        node_db.commit()
        self._lease_gang(state, gang, placed)
        return True

    @staticmethod
    def _disruption(placed: list[tuple[QueuedJob, Node, list[str], bool]]) -> int:
        return sum(len(victims) + urgent for _, _, victims, urgent in placed)

    def _place_members(
        self, gang: _Gang, restrict: tuple[str, str] | None
    ) -> tuple[list[tuple[QueuedJob, Node, list[str], bool]] | None, str]:
        """Place and bind every member inside the caller's transaction; None and the first
        member's reason if one does not fit."""
        node_db, pc = self.node_db, gang.priority_class
        levels = self.levels_of.get(pc.priority, ())
        placed = []
        for member in gang.members:
            node, reason, victims = node_db.place(
                member, pc.priority, restrict=restrict, fair=self.fair, levels=levels
            )
            if node is None:
                return None, reason
            before = len(node_db.oversubscribed)
            node_db.bind(
                node.id,
                member.requests,
                job_id=member.job_id,
                priority=pc.priority,
                preemptible=pc.preemptible,
            )
            placed.append((member, node, victims, len(node_db.oversubscribed) > before))
        return placed, ""

    def _lease_gang(
        self, state: _QueueState, gang: _Gang, placed: list[tuple[QueuedJob, Node, list[str], bool]]
    ) -> None:
        pc = gang.priority_class
        for member, node, victims, _ in placed:
            self.leases.append(Lease(member.job_id, member.queue, node.executor, node.name, self.name))
            self.new_jobs[member.job_id] = (state, member, pc, gang)
            for victim in victims:
                self._preempt(
                    self.runs_by_id[victim],
                    f"preempted to fair share by {member.job_id} of queue {member.queue}",
                    dropped=True,
                )
        self.cycle.cap_left -= len(placed)
        state.gained = True
        self._take(state, gang.requests, pc, +1)
        if self.fraction_limits:
            _add(self.scheduled, gang.requests)

    def _reject_gang(self, gang: _Gang, reason: str, shape: tuple | None = None) -> None:
        self.states[gang.queue].waiting = True
        if shape is not None:
            self.gang_unfit[shape] = reason
        for member in gang.members:
            self.unschedulable[member.job_id] = reason

    # --- oversubscribed nodes ----------------------------------------------------------

    def _resolve_oversubscribed(self) -> None:
        """Evict the lower jobs of oversubscribed nodes and rebind them, higher priority
        classes first, then fairest queue first; preempt (or withdraw) what does not fit."""
        node_db, cycle = self.node_db, self.cycle
        running = {run.job_id: run for run in self.runs}
        victims: list[tuple[str, str, RunningJob | QueuedJob, PriorityClass | None, _QueueState]] = []
        for node_id in sorted(node_db.oversubscribed):
            dropped = []
            for job_id in node_db.oversubscribed_victims(node_id):
                new = self.new_jobs.get(job_id)
                if new is not None:
                    state, job, pc, _ = new
                else:
                    job = running[job_id]
                    pc = cycle.priority_class(job.priority_class)
                    state = self.states.get(job.queue)
                    if state is None:
                        continue
                requests = node_db.drop(job_id)
                self._take(state, requests, pc, -1)
                dropped.append((job, pc, state))
            culprit = node_db.culprit(node_id)  # the first oversubscribing job still there
            victims += [(node_id, culprit, job, pc, state) for job, pc, state in dropped]
        victims.sort(key=lambda v: (v[4].name, job_order(v[2], v[3].priority if v[3] is not None else 0)))
        by_queue: dict[str, list] = {}
        for victim in victims:
            by_queue.setdefault(victim[4].name, []).append(victim)
        positions = dict.fromkeys(by_queue, 0)

        def key(name: str) -> tuple[int, float, str]:
            node_id, culprit, job, pc, state = by_queue[name][positions[name]]
            return (-(pc.priority if pc is not None else 0), _ratio(state, job.requests), name)

        heap = [key(name) for name in by_queue]
        heapify(heap)
        displaced: list[tuple[QueuedJob, str]] = []
        while heap:
            *_, name = heappop(heap)
            node_id, culprit, job, pc, state = by_queue[name][positions[name]]
            positions[name] += 1
            if node_db.fits_on(node_id, job.requests):
                node_db.bind(
                    node_id,
                    job.requests,
                    job_id=job.job_id,
                    priority=pc.priority if pc is not None else 0,
                    preemptible=pc.preemptible if pc is not None else False,
                )
                self._take(state, job.requests, pc, +1)
            elif type(job) is RunningJob:
                cycle.preempted.setdefault(job.job_id, f"preempted by higher priority job {culprit}")
            else:
                displaced.append((job, culprit))
            if positions[name] < len(by_queue[name]):
                heappush(heap, key(name))
        for job, culprit in displaced:
            gang = self.new_jobs[job.job_id][3]
            for member in gang.members if gang is not None else (job,):
                if member.job_id in self.withdrawn:
                    continue
                self.withdrawn.add(member.job_id)
                cycle.cap_left += 1
                self.unschedulable[member.job_id] = f"displaced by higher priority job {culprit}"
                if member is not job and node_db.node_of(member.job_id) is not None:
                    state = self.new_jobs[member.job_id][0]
                    self._take(state, node_db.drop(member.job_id), gang.priority_class, -1)  # type: ignore[union-attr]
