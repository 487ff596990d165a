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
against what is scheduled or held before a job, so the job that crosses one is let through).
Jobs of unknown or cordoned queues, of unknown priority classes and of incomplete or
inconsistent gangs are reported unschedulable with a reason, as is every job the cycle tried
and could not place. Running jobs whose node has gone (or is unschedulable) still count towards
their queue's allocation and are never evicted.

Where each part lives: this module runs the cycle and settles it; :mod:`.cycle_context`
(:class:`~flotilla.scheduling.cycle_context.Cycle`) builds each queue's items, rejects what
cannot be scheduled at all and runs the pools, handing each the
:class:`~flotilla.scheduling.context.SchedulingContext` they share (:mod:`.context`); :mod:`.pool_round`
(:class:`~flotilla.scheduling.pool_round.Pool`) is one pool's round, steps 1 to 5;
:mod:`.eviction` is step 2; :mod:`.queue_items` holds the queue order, gangs as items and a
queue's state in a round; :mod:`.node_db` places jobs on nodes.

No Kafka, no I/O, no clock, no randomness: the same inputs give the same result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from flotilla.resources import add_into

from .context import WorkCounters
from .cycle_context import QUEUE_CORDONED, UNKNOWN_PRIORITY_CLASS, UNKNOWN_QUEUE, Cycle
from .model import CycleResult, Node, Queue, QueuedJob, RunningJob, SchedulingConfig
from .queue_items import job_order

__all__ = ["QUEUE_CORDONED", "UNKNOWN_PRIORITY_CLASS", "UNKNOWN_QUEUE", "job_order", "schedule"]


def schedule(
    queued: Sequence[QueuedJob],
    running: Sequence[RunningJob],
    nodes: Sequence[Node],
    queues: Sequence[Queue],
    config: SchedulingConfig,
) -> CycleResult:
    """Decide which queued jobs to lease to which nodes and which running jobs to preempt this
    cycle; see the module docstring."""
    cycle = Cycle(queued, running, nodes, queues, config)
    result = cycle.run()
    if not result.preemptions and not cycle.unsettled:
        return result
    return _settle(result, queued, running, nodes, queues, config)


_SETTLE_ROUNDS = 3


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
    work = WorkCounters.of(stats)
    leased_ids = {lease.job_id for lease in leases}
    by_id = {job.job_id: job for job in queued if job.job_id in leased_ids}
    state_running = [r for r in running if r.job_id not in preempted]
    state_running += [RunningJob.from_lease(by_id[lease.job_id], lease) for lease in leases]
    state_queued = [job for job in queued if job.job_id not in leased_ids]
    for _ in range(_SETTLE_ROUNDS):
        scheduled: dict[str, dict[str, int]] = {}
        for lease in leases:
            add_into(scheduled.setdefault(lease.pool, {}), by_id[lease.job_id].requests)
        remaining = replace(config, max_jobs_per_cycle=max(0, config.max_jobs_per_cycle - len(leases)))
        again = Cycle(state_queued, state_running, nodes, queues, remaining, scheduled).run()
        stats = again.stats
        work.add(WorkCounters.of(stats))
        for job_id in list(unschedulable):
            if job_id in again.unschedulable:
                del unschedulable[job_id]  # keep the latest reason, in the latest order
        unschedulable.update(again.unschedulable)
        if not again.preemptions and not again.leases:
            work.jobs_evicted -= stats.jobs_evicted  # a round that changed nothing evicted nothing in effect
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
        state_running += [RunningJob.from_lease(by_id[lease.job_id], lease) for lease in again.leases]
        state_queued = [job for job in state_queued if job.job_id not in new_ids]
        state_queued += [by_id.pop(job_id) for job_id in sorted(withdrawn)]
    stats = replace(stats, **work.counts())
    return CycleResult(
        leases=leases,
        preemptions=list(preempted),
        unschedulable=unschedulable,
        stats=stats,
        preemption_reasons=preempted,
    )
