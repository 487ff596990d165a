"""Fair-share eviction at the start of a pool's round (step 2 of :mod:`flotilla.scheduling.cycle`).

A queue whose dominant-resource cost exceeds ``protected_fraction_of_fair_share * max(fair
share, adjusted fair share)`` has its running jobs of ``preemptible`` priority classes on
schedulable nodes *evicted* (:func:`evicted_runs`): running gangs whole, or not at all. Evicted
jobs go back to the front of their queue in queue order (:func:`evict`), pinned to their node,
whose resources they keep until the round rebinds or preempts them. The node database is told
the order progressive filling over the evicted jobs alone would bring them back in: fair-share
preemption takes from the end of it.

Nothing here runs per job unless some queue is above its protected share and some running job
is preemptible.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from heapq import heapify, heappop, heappush

from flotilla.resources import add_into

from .model import Node, PriorityClass, RunningJob
from .node_db import NodeDb
from .queue_items import Gang, QueueState, fair_share_ratio


def evicted_runs(
    runs: list[RunningJob], nodes: Iterable[Node], queues: Collection[str], classes: Collection[str]
) -> list[RunningJob]:
    """The running jobs (of ``runs``) that the ``queues`` above their protected share lose: those
    of the preemptible priority classes ``classes`` on schedulable nodes, gangs whole or not at all."""
    schedulable: dict[str, set[str]] = {}
    for node in nodes:
        if not node.unschedulable:
            schedulable.setdefault(node.executor, set()).add(node.name)
    nowhere: set[str] = set()
    evictable = [
        run
        for run in runs
        if run.queue in queues
        and run.priority_class in classes
        and run.node in schedulable.get(run.executor, nowhere)
    ]
    return _whole_gangs(runs, evictable)


def _whole_gangs(runs: list[RunningJob], evictable: list[RunningJob]) -> list[RunningJob]:
    """Evict running gangs whole, or (if a member cannot be evicted) not at all."""
    if not any(run.gang_id for run in evictable):
        return evictable
    evicted = evictable
    evictable_ids = {run.job_id for run in evictable}
    members: dict[tuple[str, str], list[RunningJob]] = {}
    for run in runs:
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


def evict(
    node_db: NodeDb,
    evicted: list[RunningJob],
    states: dict[str, QueueState],
    resolve: Callable[[str], PriorityClass | None],
) -> None:
    """Move evicted jobs out of their queues' allocations and to the front of their queues
    (``states``; ``resolve`` gives a job's priority class), and tell the node db the order
    progressive filling would reschedule them in."""
    node_db.evict(run.job_id for run in evicted)
    by_queue: dict[str, list[RunningJob]] = {}
    for run in evicted:
        by_queue.setdefault(run.queue, []).append(run)
    for name, runs in by_queue.items():
        state = states[name]
        negated: dict[str, int] = {}
        for n in {run.priority_class for run in runs}:
            pc = resolve(n)
            negated[n] = -pc.priority if pc is not None else 0
        runs.sort(key=lambda r: (negated[r.priority_class], r.priority, r.submitted_at, r.job_id))
        items: list = []
        gangs: dict[str, Gang] = {}
        alloc = state.alloc
        for run in runs:
            add_into(alloc, run.requests, -1)
            if state.by_class:
                pc = resolve(run.priority_class)
                if pc is not None and pc.name in state.by_class:
                    add_into(state.by_class[pc.name], run.requests, -1)
            if not run.gang_id:
                items.append(run)
                continue
            gang = gangs.get(run.gang_id)
            if gang is None:
                pc = resolve(run.priority_class)
                if pc is None:  # only jobs of preemptible, hence known, classes are evicted
                    raise ValueError(
                        f"evicted job {run.job_id}: unknown priority class {run.priority_class!r}"
                    )
                gang = gangs[run.gang_id] = Gang(run.gang_id, name, [], {}, "", pc, evicted=True)
                items.append(gang)
            gang.members.append(run)
            add_into(gang.requests, run.requests)
        state.items = items
        state.evicted = len(items)
    # Progressive filling over the evicted jobs alone gives the order they would come back in.
    if len(by_queue) == 1:
        (name,) = by_queue
        node_db.set_eviction_order(
            [
                m.job_id
                for item in states[name].items
                for m in (item.members if type(item) is Gang else (item,))
            ]
        )
        return
    simulated = {name: dict(states[name].alloc) for name in by_queue}
    positions = dict.fromkeys(by_queue, 0)
    heap = [(fair_share_ratio(states[name], states[name].items[0].requests), name) for name in by_queue]
    heapify(heap)
    order: list[str] = []
    while heap:
        _, name = heappop(heap)
        state = states[name]
        item = state.items[positions[name]]
        positions[name] += 1
        if type(item) is Gang:
            order.extend(m.job_id for m in item.members)
        else:
            order.append(item.job_id)
        add_into(simulated[name], item.requests)
        if positions[name] < state.evicted:
            saved, state.alloc = state.alloc, simulated[name]
            heappush(heap, (fair_share_ratio(state, state.items[positions[name]].requests), name))
            state.alloc = saved
    node_db.set_eviction_order(order)
