"""The simulated world: its jobs' queues and runs, and the events that change them.

Between two scheduling cycles nothing happens but events, kept in one heap ordered by
simulated time (and, at equal times, by the order they were pushed):

* a template's jobs are submitted at ``earliestSubmitTime``, or, when it has
  ``dependencies``, ``earliestSubmitTimeFromDependencyCompletion`` after the last job of its
  last dependency finished (never before ``earliestSubmitTime``);
* a leased job ends ``pending delay + runtime`` after its lease (the pending delay drawn from
  the cluster's ``pendingDelayDistribution``); an end event for a run that was preempted
  since is stale and ignored;
* a preempted job goes back to its queue with its job id, its submission time and its
  runtime, and runs again from the start when it is next leased (its ``preemptions`` count
  goes up); with a ``workflowManagerDelayDistribution`` it is queued again after that delay.

Each queue's waiting jobs are kept sorted in the scheduler's order (:func:`queue_order`), so a
cycle can be shown a prefix of a queue (:mod:`.scheduler`). The world also keeps, per pool,
the jobs running, what each queue has allocated and the resource-seconds used, which the
recorded rows and the summary are made of. The delays are drawn from generators seeded with
the workload's ``randomSeed``, so a simulation is deterministic.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable
from typing import Any

import numpy as np

from flotilla.jobs.states import QUEUED, REQUEUEING, RUNNING, SUCCEEDED
from flotilla.resources import add_into
from flotilla.scheduling import QueuedJob, RunningJob, job_order
from flotilla.scheduling.config_file import SchedulingConfigSpec

from .cluster_file import CLUSTER_LABEL, ClusterSpec
from .jobs import SimJob, SimTemplate

_END, _SUBMIT, _REQUEUE = 0, 1, 2


def queue_order(config: SchedulingConfigSpec) -> Callable[[QueuedJob], Any]:
    """The scheduler's order of jobs within a queue, as a sort key: the scheduling core's
    :func:`~flotilla.scheduling.job_order` with the priority of the job's class."""
    priorities = {name: pc.priority for name, pc in config.priority_classes.items()}
    default = config.default_priority_class_name

    def class_priority(job: QueuedJob) -> int:
        return priorities.get(job.priority_class or default, 0)

    return lambda job: job_order(job, class_priority(job))


class World:
    """The state of a simulation between cycles and the events that change it."""

    def __init__(
        self,
        *,
        cluster: ClusterSpec,
        pools: list[str],
        queue_names: list[str],
        templates: list[SimTemplate],
        jobs: list[SimJob],
        by_id: dict[str, SimJob],
        order: Callable[[QueuedJob], Any],
        seed: int,
    ) -> None:
        self.cluster = cluster
        self.pools = pools
        self.queue_names = queue_names
        self.templates = templates
        self.jobs = jobs
        self.by_id = by_id
        self.order = order
        # Per queue, its waiting jobs' (order key, index), sorted.
        self.waiting: dict[str, list[tuple[Any, int]]] = {name: [] for name in queue_names}
        # Per queue, how many of its waiting jobs come from each template.
        self.waiting_templates: dict[str, dict[int, int]] = {name: {} for name in queue_names}
        self.events: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self.running: dict[str, dict[str, RunningJob]] = {pool: {} for pool in pools}
        self.allocated: dict[str, dict[str, dict[str, int]]] = {
            pool: {q: {} for q in queue_names} for pool in pools
        }
        self.running_count: dict[str, dict[str, int]] = {
            pool: dict.fromkeys(queue_names, 0) for pool in pools
        }
        self.resource_seconds: dict[str, dict[str, float]] = {pool: {} for pool in pools}
        self.finished = 0
        seed &= 0xFFFFFFFFFFFFFFFF
        self._pending_rng = np.random.default_rng([seed, 1 << 32])
        self._workflow_rng = np.random.default_rng([seed, (1 << 32) + 1])

    # --- counts ----------------------------------------------------------------------------

    @property
    def number_queued(self) -> int:
        """Jobs waiting in a queue."""
        return sum(len(w) for w in self.waiting.values())

    @property
    def number_running(self) -> int:
        """Jobs running, in every pool."""
        return sum(len(r) for r in self.running.values())

    # --- events ----------------------------------------------------------------------------

    def schedule_submissions(self) -> None:
        """Push the submission of every template that waits for no other: call once, first."""
        for i, template in enumerate(self.templates):
            if not template.waiting_for:
                self._push(template.spec.earliest_submit_time, _SUBMIT, i)

    def _push(self, when: float, kind: int, a: int, b: int = 0) -> None:
        heapq.heappush(self.events, (when, self._seq, kind, a, b))
        self._seq += 1

    def next_event_time(self) -> float | None:
        """When the next event that would change anything happens; None if none will."""
        events = self.events
        while events:
            when, _, kind, a, b = events[0]
            if kind == _END:
                job = self.jobs[a]
                if job.run != b or job.state != RUNNING:
                    heapq.heappop(events)  # the run was preempted
                    continue
            return when
        return None

    def drain(self, until: float) -> bool:
        """Apply every event at or before ``until``; True if any changed the state."""
        changed = False
        events = self.events
        while events and events[0][0] <= until:
            when, _, kind, a, b = heapq.heappop(events)
            if kind == _END:
                job = self.jobs[a]
                if job.run == b and job.state == RUNNING:
                    self._finish(job, when)
                    changed = True
            elif kind == _SUBMIT:
                self._submit(a, when)
                changed = True
            else:
                self._enqueue(self.jobs[a])
                changed = True
        return changed

    def _submit(self, position: int, when: float) -> None:
        template = self.templates[position]
        spec = template.spec
        if not template.jobs:
            self._complete(position, when)
            return
        for job in template.jobs:
            job.submit_time = when
            gang: dict[str, Any] = {}
            if job.gang_cardinality:
                gang = {
                    "gang_id": job.gang_id,
                    "gang_cardinality": job.gang_cardinality,
                    "gang_node_uniformity_label": spec.gang_node_uniformity_label or CLUSTER_LABEL,
                }
            job.queued = QueuedJob(
                job_id=job.job_id,
                queue=job.queue,
                job_set=job.job_set,
                priority=float(spec.queue_priority),
                submitted_at=when,
                requests=job.requests,
                node_selector=dict(spec.node_selector),
                tolerations=spec.tolerations,
                priority_class=job.priority_class,
                **gang,
            )
            job.key = (self.order(job.queued), job.index)
            self._enqueue(job)

    def _enqueue(self, job: SimJob) -> None:
        job.state = QUEUED
        assert job.key is not None  # set when the job is submitted
        insort(self.waiting[job.queue], job.key)
        counts = self.waiting_templates[job.queue]
        counts[job.template] = counts.get(job.template, 0) + 1

    def _dequeue(self, job: SimJob) -> None:
        waiting = self.waiting[job.queue]
        assert job.key is not None  # set when the job is submitted
        position = bisect_left(waiting, job.key)
        if position < len(waiting) and waiting[position] == job.key:
            del waiting[position]
            counts = self.waiting_templates[job.queue]
            counts[job.template] -= 1
            if not counts[job.template]:
                del counts[job.template]

    def _finish(self, job: SimJob, when: float) -> None:
        self._stop_run(job, when)
        job.state = SUCCEEDED
        job.end_time = when
        self.finished += 1
        template = self.templates[job.template]
        template.unfinished -= 1
        if template.unfinished == 0:
            self._complete(job.template, when)

    def _complete(self, position: int, when: float) -> None:
        """Every job of template ``position`` has finished at ``when``: submit the templates
        that were waiting only for it."""
        for i in self.templates[position].dependents:
            dependent = self.templates[i]
            dependent.waiting_for.discard(position)
            if not dependent.waiting_for:
                spec = dependent.spec
                ready = when + spec.earliest_submit_time_from_dependency_completion
                self._push(max(spec.earliest_submit_time, ready), _SUBMIT, i)

    def _stop_run(self, job: SimJob, when: float) -> None:
        pool = job.pool
        assert pool is not None
        del self.running[pool][job.job_id]
        allocation = self.allocated[pool][job.queue]
        used = self.resource_seconds[pool]
        duration = when - job.started
        add_into(allocation, job.requests, -1)
        for name, quantity in job.requests.items():
            used[name] = used.get(name, 0.0) + quantity * duration
        self.running_count[pool][job.queue] -= 1

    # --- a cycle's decisions ---------------------------------------------------------------

    def preempt(self, job_id: str, now: float) -> SimJob:
        """Stop the run of ``job_id`` at ``now``; the job waits to be queued again
        (:meth:`requeue`)."""
        job = self.by_id[job_id]
        if job.state != RUNNING:
            raise RuntimeError(f"the scheduler preempted {job_id}, which is not running")
        self._stop_run(job, now)
        job.preemptions += 1
        job.run += 1
        job.state = REQUEUEING
        return job

    def requeue(self, jobs: list[SimJob], now: float) -> None:
        """Queue preempted ``jobs`` again, each after a workflow manager delay if the cluster
        has one."""
        delay = self.cluster.workflow_manager_delay
        for job in jobs:
            wait = float(delay.sample(self._workflow_rng, 1)[0]) if delay.mean > 0 else 0.0
            if wait > 0:
                self._push(now + wait, _REQUEUE, job.index)
            else:
                self._enqueue(job)

    def lease(self, job_id: str, executor: str, node: str, pool: str, now: float) -> None:
        """Start queued job ``job_id`` on ``node`` of ``pool`` at ``now``; it ends after a
        pending delay and its runtime."""
        job = self.by_id[job_id]
        if job.state != QUEUED:
            raise RuntimeError(f"the scheduler leased {job_id}, which is {job.state}")
        self._dequeue(job)
        job.run += 1
        job.state = RUNNING
        job.node, job.pool, job.started = node, pool, now
        if job.first_scheduled is None:
            job.first_scheduled = now
        queued = job.queued
        assert queued is not None
        if pool not in self.running:
            raise RuntimeError(f"the scheduler leased {job.job_id} in unknown pool {pool!r}")
        self.running[pool][job.job_id] = RunningJob(
            job_id=job.job_id,
            queue=job.queue,
            run_id=f"{job.job_id}-run-{job.run}",
            executor=executor,
            node=node,
            requests=job.requests,
            priority_class=job.priority_class,
            priority=queued.priority,
            submitted_at=queued.submitted_at,
            started_at=now,
            gang_id=job.gang_id,
            pool=pool,
        )
        allocation = self.allocated[pool][job.queue]
        add_into(allocation, job.requests)
        self.running_count[pool][job.queue] += 1
        pending = self.cluster.pending_delay
        delay = float(pending.sample(self._pending_rng, 1)[0]) if pending.mean > 0 else 0.0
        self._push(now + delay + job.runtime, _END, job.index, job.run)

    # --- the end ---------------------------------------------------------------------------

    def charge_running(self, end_time: float) -> None:
        """Count the runs still going in the resource-seconds used, up to ``end_time``."""
        for pool, runs in self.running.items():
            used = self.resource_seconds[pool]
            for job_id in runs:
                job = self.by_id[job_id]
                duration = max(0.0, end_time - job.started)
                for name, quantity in job.requests.items():
                    used[name] = used.get(name, 0.0) + quantity * duration
