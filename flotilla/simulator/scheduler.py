"""The simulated scheduler: one scheduling cycle of the pure core against the simulated world.

Every cycle calls :func:`flotilla.scheduling.schedule` once per pool (pools one after another,
each with its own fair shares, as Armada does) with the jobs queued and running at that time,
then applies its decisions to the :class:`~.world.World`: leases start jobs, preempted jobs
are queued again once every pool has been scheduled. One cap on new leases
(``maxJobsPerCycle``, and with a finite ``maximumSchedulingRate`` a token bucket refilled
between cycles) is shared by the cycle's pools.

**Queue prefixes.** To keep a cycle cheap on large workloads without changing its decisions,
each queue's jobs are kept sorted in the scheduler's order and a cycle is shown only a prefix
of each queue: enough jobs to demand the whole pool (so fair shares and any demand-based caps
are unchanged), at least 64. If the cycle considered every job of a queue's prefix and the
queue has more, the cycle is run again with a longer prefix, so the result is always the one
the whole queue would have given.
"""

from __future__ import annotations

import dataclasses
import math
from typing import cast

from flotilla.jobs.states import QUEUED
from flotilla.scheduling import (
    CycleResult,
    Node,
    Queue,
    QueuedJob,
    SchedulingConfig,
    dominant_share,
    schedule,
)

from .jobs import SimJob
from .world import World

MIN_PREFIX = 64


class SimulatedScheduler:
    """Runs the scheduling cycles of a simulation on ``world``; remembers the fair shares each
    pool's last cycle used (``fair`` and ``adjusted``, by pool then queue)."""

    def __init__(
        self,
        world: World,
        config: SchedulingConfig,
        nodes: dict[str, list[Node]],
        capacity: dict[str, dict[str, int]],
        queues: list[Queue],
        *,
        rate: float,
        queue_prefix: int | None = MIN_PREFIX,
    ) -> None:
        self.world = world
        self.config = config
        self.resources = tuple(config.resources)
        self.nodes = nodes
        self.capacity = capacity
        self.queues = queues
        # How many jobs of each queue a cycle is shown at least (None: all of them); any
        # value gives the same decisions, see the module docstring.
        self.queue_prefix = queue_prefix
        self.fair: dict[str, dict[str, float]] = {pool: {} for pool in world.pools}
        self.adjusted: dict[str, dict[str, float]] = {pool: {} for pool in world.pools}
        self._rate = rate
        self._tokens = float(config.max_jobs_per_cycle)
        self._last_cycle = 0.0

    @property
    def rate_limited(self) -> bool:
        """Whether a finite scheduling rate may hold back jobs a cycle could lease."""
        return math.isfinite(self._rate)

    def cycle(self, now: float) -> tuple[int, int]:
        """One scheduling cycle at ``now``, pool by pool; returns (leases, preemptions)."""
        world = self.world
        limited = self.rate_limited
        cap = self.config.max_jobs_per_cycle
        if limited:
            self._tokens = min(float(cap), self._tokens + self._rate * (now - self._last_cycle))
            self._last_cycle = now
            cap = int(self._tokens)
        leased = preempted = 0
        requeue: list[SimJob] = []
        for pool in world.pools:
            # One cap on new leases for the whole cycle, shared by its pools.
            left = max(0, cap - leased)
            config = self.config
            if left != config.max_jobs_per_cycle:
                config = dataclasses.replace(config, max_jobs_per_cycle=left)
            result = self._schedule_pool(pool, config)
            if result is None:
                self.fair[pool], self.adjusted[pool] = {}, {}
                continue
            self.fair[pool], self.adjusted[pool] = _shares(pool, result)
            for job_id in result.preemptions:
                requeue.append(world.preempt(job_id, now))
                preempted += 1
            for lease in result.leases:
                world.lease(lease.job_id, lease.executor, lease.node, lease.pool or pool, now)
                leased += 1
        if limited:
            self._tokens = max(0.0, self._tokens - leased)
        world.requeue(requeue, now)
        return leased, preempted

    def _schedule_pool(self, pool: str, config: SchedulingConfig) -> CycleResult | None:
        world = self.world
        running = list(world.running[pool].values())
        if not running and not any(world.waiting.values()):
            return None
        if self.queue_prefix is None:
            lengths = {name: len(waiting) for name, waiting in world.waiting.items()}
        else:
            lengths = dict.fromkeys(world.queue_names, max(1, self.queue_prefix))
        while True:
            queued, shown = self._prefixes(pool, lengths)
            result = schedule(queued, running, self.nodes[pool], self.queues, config)
            short = [name for name, k in shown.items() if self._needs_more(name, k, result)]
            if not short:
                break
            for name in short:
                lengths[name] = 4 * shown[name]
        for job_id, reason in result.unschedulable.items():
            job = world.by_id.get(job_id)
            if job is not None:
                job.reason = reason
        return result

    def _prefixes(self, pool: str, lengths: dict[str, int]) -> tuple[list[QueuedJob], dict[str, int]]:
        """The queued jobs shown to a cycle of ``pool``: each queue's first ``lengths[queue]``
        jobs, extended to cover the whole pool's capacity in demand and to finish a gang."""
        world = self.world
        p = world.pools.index(pool)
        jobs = world.jobs
        queued: list[QueuedJob] = []
        shown: dict[str, int] = {}
        for name, waiting in world.waiting.items():
            if not waiting:
                continue
            n = len(waiting)
            k = min(lengths.get(name, MIN_PREFIX), n)
            demand = dominant_share(world.allocated[pool][name], self.capacity[pool], self.resources)
            for _, i in waiting[:k]:
                demand += jobs[i].shares[p]
            while k < n and demand < 1.0:
                demand += jobs[waiting[k][1]].shares[p]
                k += 1
            if k < n:
                last = jobs[waiting[k - 1][1]]
                while last.gang_cardinality and k < n and jobs[waiting[k][1]].gang_id == last.gang_id:
                    k += 1
            shown[name] = k
            # A waiting job has its queued form (made when it is submitted).
            queued.extend(cast("list[QueuedJob]", [jobs[i].queued for _, i in waiting[:k]]))
        return queued, shown

    def _needs_more(self, name: str, shown: int, result: CycleResult) -> bool:
        """Whether the cycle might have decided differently had it seen more of queue ``name``
        than its first ``shown`` jobs: it tried every one of them, and the jobs it did not see
        include a template none of whose jobs it found unschedulable (jobs of one template are
        alike, and a shape that fits nowhere keeps fitting nowhere for the rest of a cycle)."""
        world = self.world
        waiting = world.waiting[name]
        if shown >= len(waiting):
            return False
        jobs, by_id = world.jobs, world.by_id
        considered = 0
        unfit: set[int] = set()
        for lease in result.leases:
            job = by_id.get(lease.job_id)
            if job is not None and job.queue == name and job.state == QUEUED:
                considered += 1
        for job_id in result.unschedulable:
            job = by_id.get(job_id)
            if job is not None and job.queue == name and job.state == QUEUED:
                considered += 1
                unfit.add(job.template)
        if considered < shown:
            return False
        in_prefix: dict[int, int] = {}
        for _, i in waiting[:shown]:
            t = jobs[i].template
            in_prefix[t] = in_prefix.get(t, 0) + 1
        return any(
            count > in_prefix.get(t, 0) and t not in unfit
            for t, count in world.waiting_templates[name].items()
        )


def _shares(pool: str, result: CycleResult) -> tuple[dict[str, float], dict[str, float]]:
    """The pool's fair shares and demand-adjusted fair shares the cycle used."""
    source = result.stats.pools.get(pool) or result.stats
    shares = source.fair_shares
    adjusted = source.adjusted_fair_shares or shares
    return dict(shares), dict(adjusted)
