"""Dominant-resource fairness (DRF), as Armada's scheduler uses it to order queues.

* A queue's **cost** is its dominant share: the largest, over the configured resources, of
  what the queue is allocated divided by the pool's total capacity. A resource the pool has
  none of is skipped (it cannot be anyone's dominant share).
* A queue's **weight** is ``1 / priority_factor``; its **fair share** is its weight divided by
  the sum of the weights of the *active* queues (queues with queued or running jobs).
* The next job is taken from the active queue with the smallest ``cost / fair_share``, ties
  going to the queue whose name sorts first so that cycles are deterministic. (The cycle
  itself compares the cost each queue *would* have with its next gang, as Armada does; see
  :mod:`flotilla.scheduling.cycle`.)
* A queue's **adjusted fair share** caps its fair share by its demand (what its running and
  queued jobs ask for, as a dominant share): what a queue does not want is handed to the
  others in proportion to their weights, repeatedly (water-filling), see
  :func:`adjusted_fair_shares`. Preemption to fair share compares costs with it.

Within one cycle the active set is fixed, so the ``sum(weights)`` in every fair share is a
common factor: a queue's ratio changes only when that queue is allocated something. The cycle
relies on this to keep candidate queues in a heap (see :mod:`flotilla.scheduling.pool_round`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from .model import Node, Queue


def total_capacity(nodes: Iterable[Node]) -> dict[str, int]:
    """The sum of ``allocatable`` over the schedulable nodes (``unschedulable`` ones excluded)."""
    total: dict[str, int] = {}
    for node in nodes:
        if not node.unschedulable:
            for name, quantity in node.allocatable.items():  # add_into inlined: per node, every cycle
                total[name] = total.get(name, 0) + quantity
    return total


def dominant_share(
    allocation: Mapping[str, int], total: Mapping[str, int], resources: Sequence[str]
) -> float:
    """A queue's DRF cost: ``max(allocation[r] / total[r])`` over ``resources`` with ``total[r] > 0``."""
    cost = 0.0
    for name in resources:
        capacity = total.get(name, 0)
        if capacity > 0:
            share = allocation.get(name, 0) / capacity
            if share > cost:
                cost = share
    return cost


def fair_shares(queues: Iterable[Queue], active: Collection[str]) -> dict[str, float]:
    """Each active queue's fair share, ``weight / sum(weights of active queues)``.

    Queues not in ``active`` get no entry; the shares of the active queues sum to 1.
    """
    weights = {q.name: q.weight for q in queues if q.name in active}
    total = sum(weights.values())
    return {name: weight / total for name, weight in weights.items()} if total > 0 else {}


def adjusted_fair_shares(
    shares: Mapping[str, float],
    demands: Mapping[str, float] | Callable[[str, float], float],
) -> dict[str, float]:
    """Fair shares capped by demand, the excess given to the other queues by weight.

    ``shares`` are the fair shares of the active queues (summing to 1); ``demands`` each
    queue's demand as a dominant share of the pool. Water-filling: every uncapped queue is
    offered ``unallocated * share / sum(uncapped shares)``; queues wanting less than their
    offer are capped at their demand and the rest is offered again, until no queue is capped.
    Shares thus sum to 1 unless every queue's demand is met.

    ``demands`` may also be a function ``(queue, offer) -> demand`` that only has to be exact
    when the demand is below ``offer`` (any value ``>= offer`` will do otherwise), so that the
    caller can stop summing a queue's jobs once it wants at least what it could get.
    """
    demand = demands if callable(demands) else (lambda name, _offer: demands[name])
    remaining = {name: share for name, share in shares.items() if share > 0}
    adjusted = dict.fromkeys(shares, 0.0)
    unallocated = 1.0
    while remaining:
        weight = sum(remaining.values())
        capped = {}
        for name, share in remaining.items():
            offer = unallocated * share / weight
            wanted = demand(name, offer)
            if wanted < offer:
                capped[name] = max(wanted, 0.0)
        if not capped:
            for name, share in remaining.items():
                adjusted[name] = unallocated * share / weight
            break
        for name, wanted in capped.items():
            adjusted[name] = wanted
            unallocated -= wanted
            del remaining[name]
    return adjusted


def lazy_demands(
    alloc: Mapping[str, Mapping[str, int]],
    items: Mapping[str, Sequence[Any]],
    total: Mapping[str, int],
    resources: Sequence[str],
) -> Callable[[str, float], float]:
    """The ``demands`` of :func:`adjusted_fair_shares` as ``(queue, offer) -> demand``: what a
    queue holds (``alloc``) and what its queued ``items`` (jobs and gangs) request, as a dominant
    share, summed only as far as needed: in chunks, since a demand past the offer only has to
    be known to be past it."""
    progress: dict[str, list] = {}

    def demand(name: str, offer: float) -> float:
        entry = progress.get(name)
        if entry is None:
            wanted = dict(alloc.get(name) or {})
            entry = progress[name] = [wanted, 0, dominant_share(wanted, total, resources), 64]
        wanted, pos, cost, chunk = entry
        queue_items = items.get(name) or ()
        while cost < offer and pos < len(queue_items):
            for item in queue_items[pos : pos + chunk]:  # add_into inlined: per queued job
                for resource, quantity in item.requests.items():
                    wanted[resource] = wanted.get(resource, 0) + quantity
            pos += chunk
            chunk *= 2
            cost = dominant_share(wanted, total, resources)
        entry[1:] = [pos, cost, chunk]
        return cost

    return demand
