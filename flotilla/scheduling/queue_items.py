"""What a queue holds during a cycle: its items in queue order, and its state in a pool's round.

A queue's *items* are its queued jobs, with each gang's members replaced by one :class:`Gang`
at its first member's place (a single job is a gang of one), in queue order (:func:`job_order`):
priority-class priority (higher first), then job ``priority`` (lower first), then
``submitted_at``, then ``job_id``. In a pool's round the items of a queue that has jobs evicted
start with those (running jobs and evicted gangs), and a :class:`QueueState` follows the queue
through the round: how far it has got, what it holds, and :func:`fair_share_ratio`, the key the
round picks queues by, and :func:`sweep_unfit`, which reports a run of unfit jobs of one shape
at once.

With millions of queued jobs sorting matters: :func:`sort_in_queue_order` sorts on a float key
where priorities are uniform, and on a tuple only where they are not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from operator import attrgetter, eq
from typing import Any

from flotilla.resources import add_into

from .model import PriorityClass, QueuedJob, RunningJob

_PRIORITY = attrgetter("priority")
_PRIORITY_AND_TIME = attrgetter("priority", "submitted_at")
_SUBMITTED_AT = attrgetter("submitted_at")
_JOB_ID = attrgetter("job_id")


def job_order(job: QueuedJob | RunningJob, class_priority: int = 0) -> tuple[int, float, float, str]:
    """The order of jobs within a queue: priority-class priority (higher first), then job
    priority (lower first), submission time, job id."""
    return (-class_priority, job.priority, job.submitted_at, job.job_id)


@dataclass(slots=True, eq=False)
class Gang:
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
class QueueState:
    """A queue in one pool's round. ``items[pos:end]`` are still to be tried (the first
    ``evicted`` items are its evicted jobs and gangs; ``end`` drops to ``evicted`` when the
    lease cap is reached). ``alloc`` is what the queue holds, ``inv`` is ``1 / (capacity * fair
    share)`` per resource (see :func:`fair_share_ratio`) and ``ratio`` its key in the round's
    heap. ``waiting``: a job of it could not be placed; ``gained``: it got a new lease;
    ``by_class``: what it holds per priority class that has a per-queue limit; ``sweep_target``:
    where jobs swept as unfit are reported."""

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


def sort_in_queue_order(jobs: list[QueuedJob], classes: Mapping[str, PriorityClass | None]) -> None:
    """Sort one queue's jobs in place in queue order (:func:`job_order`); ``classes`` resolves
    each job's ``priority_class`` (None for an unknown class, whose jobs are not in ``jobs``)."""
    priorities = {pc.priority for pc in classes.values() if pc is not None}
    if len(priorities) > 1:
        negated = {n: -pc.priority for n, pc in classes.items() if pc is not None}

        def primary(job: QueuedJob) -> tuple[int, float, float]:
            return (negated[job.priority_class], job.priority, job.submitted_at)

        _sort_jobs(jobs, primary)
    elif len(set(map(_PRIORITY, jobs))) > 1:
        _sort_jobs(jobs, _PRIORITY_AND_TIME)
    else:
        _sort_jobs(jobs, _SUBMITTED_AT)


def sum_requests(jobs: Iterable[QueuedJob | RunningJob]) -> dict[str, int]:
    total: dict[str, int] = {}
    for job in jobs:
        add_into(total, job.requests)
    return total


def fair_share_ratio(state: QueueState, requests: Mapping[str, int]) -> float:
    """The queue's cost over its fair share if ``requests`` were added to it."""
    alloc = state.alloc
    best = 0.0
    for name, inverse in state.inv:
        value = (alloc[name] + requests.get(name, 0)) * inverse
        if value > best:
            best = value
    return best


def sweep_unfit(state: QueueState, job: QueuedJob, reason: str) -> int:
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
