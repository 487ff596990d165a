"""One scheduling cycle, a pure function of the cluster's state.

This mirrors the cycle of Armada's ``internal/scheduler`` (the ``PreemptingQueueScheduler``
without its eviction and preemption rounds, yet): build a node database with every running
job bound to its node, order each queue's jobs, then repeatedly take the next job of the queue
furthest below its dominant-resource fair share (see :mod:`flotilla.scheduling.fair_share`)
and place it on the best-fit node (see :mod:`flotilla.scheduling.node_db`).

* Within a queue, jobs go in order of ``priority`` (lower first), then ``submitted_at``, then
  ``job_id``.
* Jobs of unknown or cordoned queues are not scheduled; they are reported unschedulable.
* A job that fits nowhere is reported unschedulable with a short reason and its queue moves on
  to its next job (Armada's behaviour without a queue lookback limit).
* Running jobs occupy their nodes; a running job whose node has gone still counts towards its
  queue's allocation, so a queue cannot escape its share by losing a node.
* The cycle stops after ``config.max_jobs_per_cycle`` leases; jobs it did not reach are neither
  leased nor reported, and are tried again next cycle.

No Kafka, no I/O, no clock, no randomness: the same inputs give the same result.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from flotilla.resources import add

from .fair_share import FairShareState, total_capacity
from .model import CycleResult, CycleStats, Lease, Node, Queue, QueuedJob, RunningJob, SchedulingConfig
from .node_db import NodeDb

UNKNOWN_QUEUE = "unknown queue"
QUEUE_CORDONED = "queue cordoned"


def job_order(job: QueuedJob) -> tuple[float, float, str]:
    """The order of jobs within a queue: priority (lower first), submission time, job id."""
    return (job.priority, job.submitted_at, job.job_id)


def schedule(
    queued: Sequence[QueuedJob],
    running: Sequence[RunningJob],
    nodes: Sequence[Node],
    queues: Sequence[Queue],
    config: SchedulingConfig,
) -> CycleResult:
    """Decide which queued jobs to lease to which nodes this cycle; see the module docstring."""
    known = {q.name: q for q in queues}
    unschedulable: dict[str, str] = {}
    pending: dict[str, list[QueuedJob]] = defaultdict(list)
    for job in queued:
        queue = known.get(job.queue)
        if queue is None:
            unschedulable[job.job_id] = UNKNOWN_QUEUE
        elif queue.cordoned:
            unschedulable[job.job_id] = QUEUE_CORDONED
        else:
            pending[job.queue].append(job)
    for jobs in pending.values():
        jobs.sort(key=job_order)

    allocations: dict[str, dict[str, int]] = {}
    for run in running:
        if run.queue in known:
            allocations[run.queue] = add(allocations.get(run.queue, {}), run.requests)
    active = {job.queue for job in queued if job.queue in known} | allocations.keys()

    node_db = NodeDb(nodes, running, config.resources)
    fair = FairShareState(queues, active, total_capacity(nodes), config.resources, allocations)
    for name in pending:
        fair.push(name)

    leases: list[Lease] = []
    next_job = dict.fromkeys(pending, 0)
    considered = 0
    while len(leases) < config.max_jobs_per_cycle:
        name = fair.pop()
        if name is None:
            break
        jobs = pending[name]
        job = jobs[next_job[name]]
        next_job[name] += 1
        considered += 1
        node, reason = node_db.find_node(job)
        if node is None:
            unschedulable[job.job_id] = reason
        else:
            node_db.bind(node.id, job.requests)
            fair.allocate(name, job.requests)
            leases.append(Lease(job.job_id, job.queue, node.executor, node.name, node.pool))
        if next_job[name] < len(jobs):
            fair.push(name)

    stats = CycleStats(
        jobs_considered=considered,
        node_searches=node_db.stats.node_searches,
        shape_cache_hits=node_db.stats.shape_cache_hits,
        nodes_examined=node_db.stats.nodes_examined,
        fair_shares=dict(fair.shares),
        costs=dict(fair.costs),
    )
    return CycleResult(leases=leases, preemptions=[], unschedulable=unschedulable, stats=stats)
