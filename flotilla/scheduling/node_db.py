"""Nodes and their free resources, with best-fit placement and preemption (after Armada's
``internal/scheduler/nodedb``).

Free resources are ``allocatable`` minus the requests of the jobs bound to the node (running
jobs at construction, then each lease the cycle makes with :meth:`NodeDb.bind`).

**Best fit.** A job goes to the fitting node with the *least* free resources, compared as a
tuple of free quantities in the order of ``SchedulingConfig.resources`` (free cpu first, then
free memory, ...; the node id breaks exact ties). This is Armada's "indexed resources"
ordering: it packs nodes tightly and leaves whole nodes free for large jobs. Resources outside
the configured list must still fit but do not take part in the ordering.

**Eligibility** (which nodes a job may use: selector, required node affinity, taints) is
:mod:`~flotilla.scheduling.eligibility`. Unschedulable nodes are left out entirely. A gang with a
node uniformity label adds a *restriction* ``(label, value)``.

**Indexes.** Jobs sharing a selector, tolerations, affinity and restriction (a *constraint*)
share one index: the eligible nodes as a list of ``(free[r0], free[r1], ..., node_id)`` keys
kept sorted. It is built the first time a constraint is seen and kept up to date by every
bind. A search bisects to the first node with enough of the leading resource and walks
forward to the first node where everything fits, so in the common case placing a job costs a
bisection and a handful of checks, and a bind one list removal and insertion per index.

**Preemption** (only when the db *tracks* jobs, i.e. was given ``job_priority``). Every bound
job is then recorded with its *level*: its priority-class priority, or, once the cycle has
evicted it, ``EVICTED_LEVEL + priority`` (below every priority, so that any job may be given
its resources; its resources stay taken until it is rebound or preempted).
:meth:`place` tries, in Armada's order:

1. the free resources (no preemption);
2. *fair-share preemption*: take the resources of evicted jobs not yet rebound, walking them
   from the one that would be rescheduled last (the order set by :meth:`set_eviction_order`)
   and accumulating per node until the job fits; those jobs are preempted. Evicted jobs of a
   higher priority than the job's are left alone (a less urgent job never preempts a more
   urgent one, so fairness cannot thrash against urgency);
3. *urgency-based preemption*: for each level ``q`` in ``levels`` (ascending: the priorities
   of preemptible classes below the job's own), the node that fits when preemptible jobs of
   priority ``<= q`` (and evicted ones) are counted as free; the job is bound there and the
   node is *oversubscribed* until the cycle evicts its lower jobs
   (:meth:`oversubscribed_victims`) and rebinds what still fits.

Non-preemptible jobs are never counted as available.

**Unfit shapes.** A job *shape* (requests, constraint, restriction, priority and preemption
options) that fits nowhere, even by preempting, fits nowhere for the rest of the cycle: binds
only shrink free resources and preemption only hands over resources of evicted or lower jobs
(it never grows "free + preemptible" anywhere). The answer is cached: a million identical
unfit jobs cost one search. :meth:`unbind` (which returns resources) clears the cache, and a
transaction (:meth:`begin`, :meth:`rollback`, used for gangs) forgets what it cached.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

from flotilla.resources import add_into

from .eligibility import (
    NO_CONSTRAINT,
    Constraint,
    format_taint,
    job_constraint,
    matches_node_affinity,
    matches_selector,
    untolerated_taint,
)
from .model import Node, NodeDbStats, QueuedJob, RunningJob

NO_SCHEDULABLE_NODES = "no schedulable nodes"
NO_NODE_MATCHES_SELECTOR = "no node matches node selector"
NO_NODE_MATCHES_AFFINITY = "no node matches node affinity"
TAINT_NOT_TOLERATED = "taint not tolerated"

EVICTED_LEVEL = -(2**62)
"""Evicted jobs sit at ``EVICTED_LEVEL + their priority``: below every priority (so any job may
take their resources), yet still ordered by priority (so an urgency search at level ``q``
counts only the evicted jobs of priority ``q`` or less)."""
_EVICTED_BOUND = -(2**61)  # every evicted level is below this, every priority above it


def _evicted(level: int) -> bool:
    return level < _EVICTED_BOUND


Restriction = tuple[str, str] | None
"""``(label, value)``: only nodes with that label value (a gang's node uniformity label)."""


def fits(requests: Mapping[str, int], available: Mapping[str, int]) -> bool:
    """Whether every requested quantity is available."""
    for name, quantity in requests.items():
        if quantity > available.get(name, 0):
            return False
    return True


class _Bound(NamedTuple):
    requests: Mapping[str, int]
    level: int
    preemptible: bool


@dataclass(slots=True)
class _NodeState:
    node: Node
    free: dict[str, int]
    key: tuple
    jobs: dict[str, _Bound]
    """The bound jobs (tracking dbs only; empty otherwise)."""
    pre: dict[int, dict[str, int]]
    """Per level, the summed requests of the preemptible jobs bound at it (tracking dbs only)."""
    level_keys: dict[int, tuple]
    """Per urgency level searched, the node's key in that level's indexes."""


_UNTRACKED: tuple[dict[str, _Bound], dict[int, dict[str, int]], dict[int, tuple]] = ({}, {}, {})
"""The ``jobs``, ``pre`` and ``level_keys`` every node of a db that does not track jobs shares
(empty, never written: only tracking code paths write them), so that such a db, the common
case, allocates nothing per node for tracking."""


def _add_preemptible(pre: dict[int, dict[str, int]], level: int, requests: Mapping[str, int]) -> None:
    """Count a preemptible job's requests in its level's sum."""
    bucket = pre.get(level)
    if bucket is None:
        bucket = pre[level] = {}
    add_into(bucket, requests)


@dataclass(slots=True)
class _Index:
    keys: list[tuple]
    empty_reason: str
    eligible: frozenset[str]


def _key_function(resources: tuple[str, ...]) -> Callable[[str, Mapping[str, int]], tuple]:
    """``(node_id, free) -> (free[r0], free[r1], ..., node_id)``, unrolled for speed."""
    if len(resources) == 1:
        (r0,) = resources
        return lambda node_id, free: (free.get(r0, 0), node_id)
    if len(resources) == 2:
        r0, r1 = resources
        return lambda node_id, free: (free.get(r0, 0), free.get(r1, 0), node_id)
    if len(resources) == 3:
        r0, r1, r2 = resources
        return lambda node_id, free: (free.get(r0, 0), free.get(r1, 0), free.get(r2, 0), node_id)
    return lambda node_id, free: (*(free.get(name, 0) for name in resources), node_id)


class NodeDb:
    """The nodes of one cycle with their free resources; see the module docstring.

    ``job_priority`` maps a running job to ``(priority, preemptible)``; giving it makes the db
    track every bound job, which preemption needs. Without it binds only move free resources.
    """

    def __init__(
        self,
        nodes: Iterable[Node],
        running: Iterable[RunningJob] = (),
        resources: Sequence[str] = ("cpu", "memory"),
        *,
        job_priority: Callable[[RunningJob], tuple[int, bool]] | None = None,
    ) -> None:
        if not resources:
            raise ValueError("NodeDb needs at least one resource to order nodes by")
        self.resources = tuple(resources)
        self._key = _key_function(self.resources)
        self._lead = self.resources[0]
        self.stats = NodeDbStats()
        self.tracking = job_priority is not None
        self.oversubscribed: dict[str, list[str]] = {}
        """Nodes urgency-based placements oversubscribed, with the jobs that did it, in order."""
        self._nodes: dict[str, _NodeState] = {}
        for node in nodes:
            if not node.unschedulable:  # a later node with the same id replaces an earlier one
                tracked = ({}, {}, {}) if self.tracking else _UNTRACKED
                self._nodes[node.id] = _NodeState(node, dict(node.allocatable), (), *tracked)
        self._node_of: dict[str, str] = {}
        self._log: list[tuple] | None = None
        for job in running:
            state = self._nodes.get(job.node_id)
            if state is None:
                continue
            free = state.free
            for name, quantity in job.requests.items():  # add_into inlined: per running job
                free[name] = free.get(name, 0) - quantity
            if job_priority is not None:
                priority, preemptible = job_priority(job)
                node_id = f"{job.executor}/{job.node}"
                self._node_of[job.job_id] = node_id
                state.jobs[job.job_id] = _Bound(job.requests, priority, preemptible)
                if preemptible:
                    _add_preemptible(state.pre, priority, job.requests)
        for node_id, state in self._nodes.items():
            state.key = self._key(node_id, state.free)
        self._indexes: dict[tuple[Constraint, Restriction], _Index] = {}
        self._indexes_of: dict[str, list[_Index]] = {node_id: [] for node_id in self._nodes}
        self._level_indexes: dict[tuple[Constraint, Restriction, int], _Index] = {}
        self._level_indexes_of: dict[str, dict[int, list[_Index]]] = {}
        self._unfit: dict[tuple, str] = {}
        self._evicted_order: list[str] = []
        self._tail = -1

    # --- inspection --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._nodes

    def node(self, node_id: str) -> Node:
        return self._nodes[node_id].node

    def free(self, node_id: str) -> dict[str, int]:
        """A copy of the node's free resources (may be negative if it is overcommitted)."""
        return dict(self._nodes[node_id].free)

    def node_of(self, job_id: str) -> str | None:
        """The node a tracked job is bound (or evicted from), if any."""
        node_id = self._node_of.get(job_id)
        if node_id is None:
            return None
        return node_id if job_id in self._nodes[node_id].jobs else None

    def is_evicted(self, job_id: str) -> bool:
        node_id = self._node_of.get(job_id)
        if node_id is None:
            return False
        entry = self._nodes[node_id].jobs.get(job_id)
        return entry is not None and entry.level < _EVICTED_BOUND

    def label_values(self, label: str) -> list[str]:
        """The distinct values of ``label`` over the schedulable nodes, sorted."""
        return sorted({s.node.labels[label] for s in self._nodes.values() if label in s.node.labels})

    # --- placement ---------------------------------------------------------------------

    def place(
        self,
        job: QueuedJob,
        priority: int = 0,
        *,
        restrict: Restriction = None,
        fair: bool = False,
        levels: Sequence[int] = (),
    ) -> tuple[Node | None, str, list[str]]:
        """Where ``job`` goes: ``(node, "", victims)`` or ``(None, reason, [])``.

        ``fair`` allows taking evicted jobs' resources (those jobs, the *victims*, are
        preempted right away, i.e. dropped from the db); ``levels`` allows urgency-based
        preemption at those levels (see the module docstring). Does not bind the job.
        """
        requests = job.requests
        unfit = self._unfit
        if job.node_selector or job.tolerations or job.node_affinity:
            constraint = job_constraint(job)
        else:
            constraint = NO_CONSTRAINT
        key = None
        if unfit:
            key = (tuple(requests.items()), constraint, restrict, priority, fair, tuple(levels))
            reason = unfit.get(key)
            if reason is not None:
                self.stats.shape_cache_hits += 1
                return None, reason, []
        index = self._indexes.get((constraint, restrict))
        if index is None:
            index = self._build_index(constraint, restrict, job)
        self.stats.node_searches += 1
        if index.keys:
            node_id = self._search(index, requests)
            if node_id is not None:
                return self._nodes[node_id].node, "", []
            if fair and self._evicted_order:
                self.stats.preemption_searches += 1
                node_id, victims = self._fair_search(requests, index.eligible, priority)
                if node_id is not None:
                    for victim in victims:
                        self._set_entry(node_id, victim, None)
                    return self._nodes[node_id].node, "", victims
            for level in levels:
                if not self.tracking:  # level searches record level keys on the nodes
                    raise ValueError("urgency-based preemption needs a NodeDb that tracks jobs")
                self.stats.preemption_searches += 1
                node_id = self._search_level(constraint, restrict, level, index, requests)
                if node_id is not None:
                    return self._nodes[node_id].node, "", []
            reason = self._insufficient(requests, index)
        else:
            reason = index.empty_reason
        if key is None:
            key = (tuple(requests.items()), constraint, restrict, priority, fair, tuple(levels))
        unfit[key] = reason
        if self._log is not None:
            self._log.append((unfit.pop, key, None))
        return None, reason, []

    def bind(
        self,
        node_id: str,
        requests: Mapping[str, int],
        *,
        job_id: str | None = None,
        priority: int = 0,
        preemptible: bool = False,
    ) -> None:
        """Take ``requests`` from the node's free resources (a lease).

        A tracking db records the job (give ``job_id``, ``priority`` and ``preemptible``) and
        notes the node as oversubscribed if the bind leaves it short of something.
        """
        if self.tracking and job_id is not None:
            self._node_of[job_id] = node_id
            self._set_entry(node_id, job_id, _Bound(requests, priority, preemptible))
            free = self._nodes[node_id].free
            for name in requests:
                if free.get(name, 0) < 0:
                    culprits = self.oversubscribed.get(node_id)
                    if culprits is None:
                        self.oversubscribed[node_id] = [job_id]
                        if self._log is not None:
                            self._log.append((self.oversubscribed.pop, node_id, None))
                    else:
                        culprits.append(job_id)
                        if self._log is not None:
                            self._log.append((culprits.pop,))
                    break
        else:
            self._move(node_id, requests, -1)

    def unbind(self, node_id: str, requests: Mapping[str, int], *, job_id: str | None = None) -> None:
        """Give ``requests`` back to the node (an eviction); forgets every cached unfit shape."""
        if self.tracking and job_id is not None:
            self._set_entry(node_id, job_id, None)
        else:
            self._move(node_id, requests, +1)
        self._unfit.clear()

    # --- preemption (tracking dbs only) ------------------------------------------------

    def evict(self, job_ids: Iterable[str]) -> None:
        """Mark bound jobs evicted: their resources stay taken until :meth:`rebind` or
        :meth:`drop`, but any job may claim them by preemption."""
        for job_id in job_ids:
            node_id = self._node_of[job_id]
            entry = self._nodes[node_id].jobs[job_id]
            self._set_entry(node_id, job_id, _Bound(entry.requests, EVICTED_LEVEL + entry.level, True))
        self._unfit.clear()

    def set_eviction_order(self, job_ids: Sequence[str]) -> None:
        """The evicted jobs in the order they would be rescheduled; fair-share preemption
        takes from the end."""
        self._evicted_order = list(job_ids)
        self._tail = len(self._evicted_order) - 1

    def rebind(self, job_id: str, priority: int) -> bool:
        """Put an evicted job back on its node at ``priority`` if it still fits there, counting
        evicted jobs and preemptible jobs of a lower priority as room (as Armada does; the
        cycle then sorts out any oversubscription). False if it does not fit."""
        node_id = self._node_of[job_id]
        state = self._nodes[node_id]
        entry = state.jobs[job_id]
        free = state.free
        # Every evicted job (itself included) and the preemptible jobs below it count as room.
        below = [requests for level, requests in state.pre.items() if level < priority]
        for name, quantity in entry.requests.items():
            available = free.get(name, 0)
            for requests in below:
                available += requests.get(name, 0)
            if quantity > available:
                return False
        self._set_entry(node_id, job_id, _Bound(entry.requests, priority, True))
        return True

    def drop(self, job_id: str) -> Mapping[str, int]:
        """Remove a tracked job from its node (a preemption) and return its requests."""
        node_id = self._node_of[job_id]
        entry = self._nodes[node_id].jobs[job_id]
        self._set_entry(node_id, job_id, None)
        if not _evicted(entry.level):
            self._unfit.clear()
        return entry.requests

    def fits_on(self, node_id: str, requests: Mapping[str, int]) -> bool:
        """Whether ``requests`` fit in the node's free resources."""
        return fits(requests, self._nodes[node_id].free)

    def culprit(self, node_id: str) -> str:
        """The first job still bound among those that oversubscribed the node ("" if none)."""
        culprits = self.oversubscribed.get(node_id) or []
        jobs = self._nodes[node_id].jobs
        return next((job_id for job_id in culprits if job_id in jobs), culprits[0] if culprits else "")

    def oversubscribed_victims(self, node_id: str) -> list[str]:
        """The preemptible jobs to evict from an oversubscribed node: those at every priority
        at which the node is oversubscribed (free plus the preemptible jobs below that
        priority has something negative), lowest first, as Armada's oversubscribed evictor."""
        state = self._nodes[node_id]
        available = dict(state.free)
        if all(v >= 0 for v in available.values()):
            return []
        entries = [
            (job_id, entry)
            for job_id, entry in state.jobs.items()
            if entry.preemptible and not _evicted(entry.level)
        ]
        over: set[int] = set()
        for level in sorted({entry.level for _, entry in entries}):
            if all(v >= 0 for v in available.values()):
                break
            over.add(level)
            add_into(available, state.pre.get(level, {}), +1)
        return [job_id for job_id, entry in entries if entry.level in over]

    # --- transactions ------------------------------------------------------------------

    def begin(self) -> None:
        """Start recording changes so that :meth:`rollback` can undo them (a gang attempt)."""
        if self._log is not None:
            raise RuntimeError("NodeDb transaction already open")
        self._log = []

    def commit(self) -> None:
        self._log = None

    def rollback(self) -> None:
        log, self._log = self._log or [], None
        for undo, *args in reversed(log):
            undo(*args)

    # --- internals ---------------------------------------------------------------------

    def _available(self, state: _NodeState, level: int) -> dict[str, int]:
        """Free resources plus those of the preemptible jobs, evicted or not, of priority
        ``level`` or below."""
        available = dict(state.free)
        for job_level, requests in state.pre.items():
            if job_level <= level and (job_level >= _EVICTED_BOUND or job_level - EVICTED_LEVEL <= level):
                add_into(available, requests, +1)
        return available

    def _level_key(self, node_id: str, state: _NodeState, level: int) -> tuple:
        return self._key(node_id, self._available(state, level))

    def _move(self, node_id: str, requests: Mapping[str, int], sign: int) -> None:
        state = self._nodes[node_id]
        free = state.free
        for name, quantity in requests.items():  # add_into inlined: per lease
            free[name] = free.get(name, 0) + sign * quantity
        if self._log is not None:
            self._log.append((self._move, node_id, requests, -sign))
        old, new = state.key, self._key(node_id, free)
        if new == old:
            return
        for index in self._indexes_of[node_id]:
            keys = index.keys
            del keys[bisect_left(keys, old)]
            insort(keys, new)
        state.key = new
        if state.level_keys:
            self._refresh_levels(node_id, state)

    def _set_entry(self, node_id: str, job_id: str, new: _Bound | None) -> None:
        """Record, move or remove a tracked job, keeping free resources, the per-level sums
        and the indexes right."""
        state = self._nodes[node_id]
        jobs, pre, free = state.jobs, state.pre, state.free
        old = jobs.pop(job_id, None)
        if self._log is not None:
            self._log.append((self._set_entry, node_id, job_id, old))
        if old is not None:
            if old.preemptible:
                add_into(pre[old.level], old.requests, -1)
            if new is not None and new.requests is old.requests:  # a change of level only
                if new.preemptible:
                    _add_preemptible(pre, new.level, new.requests)
                jobs[job_id] = new
                if state.level_keys:
                    self._refresh_levels(node_id, state)
                return
            add_into(free, old.requests)
        if new is not None:
            add_into(free, new.requests, -1)
            if new.preemptible:
                _add_preemptible(pre, new.level, new.requests)
            jobs[job_id] = new
        old_key, new_key = state.key, self._key(node_id, free)
        if new_key != old_key:
            for index in self._indexes_of[node_id]:
                keys = index.keys
                del keys[bisect_left(keys, old_key)]
                insort(keys, new_key)
            state.key = new_key
        if state.level_keys:
            self._refresh_levels(node_id, state)

    def _refresh_levels(self, node_id: str, state: _NodeState) -> None:
        level_keys = state.level_keys
        for level, old in level_keys.items():
            new = self._level_key(node_id, state, level)
            if new != old:
                for index in self._level_indexes_of[node_id][level]:
                    keys = index.keys
                    del keys[bisect_left(keys, old)]
                    insort(keys, new)
                level_keys[level] = new

    def _search(self, index: _Index, requests: Mapping[str, int]) -> str | None:
        keys = index.keys
        start = i = bisect_left(keys, (requests.get(self._lead, 0),))
        end = len(keys)
        nodes = self._nodes
        items = requests.items()
        while i < end:
            node_id = keys[i][-1]
            free = nodes[node_id].free
            for name, quantity in items:
                if quantity > free.get(name, 0):
                    break
            else:
                self.stats.nodes_examined += i - start + 1
                return node_id
            i += 1
        self.stats.nodes_examined += end - start
        return None

    def _search_level(
        self,
        constraint: Constraint,
        restrict: Restriction,
        level: int,
        base: _Index,
        requests: Mapping[str, int],
    ) -> str | None:
        index = self._level_indexes.get((constraint, restrict, level))
        if index is None:
            keys = []
            for node_id in base.eligible:
                state = self._nodes[node_id]
                key = state.level_keys.get(level)
                if key is None:
                    key = state.level_keys[level] = self._level_key(node_id, state, level)
                keys.append(key)
                self._level_indexes_of.setdefault(node_id, {}).setdefault(level, [])
            keys.sort()
            index = _Index(keys, base.empty_reason, base.eligible)
            self._level_indexes[(constraint, restrict, level)] = index
            for node_id in base.eligible:
                self._level_indexes_of[node_id][level].append(index)
        keys = index.keys
        start = bisect_left(keys, (requests.get(self._lead, 0),))
        for key in islice(keys, start, None):
            self.stats.nodes_examined += 1
            if fits(requests, self._available(self._nodes[key[-1]], level)):
                return key[-1]
        return None

    def _fair_search(
        self, requests: Mapping[str, int], eligible: frozenset[str], priority: int
    ) -> tuple[str | None, list[str]]:
        order, nodes, node_of = self._evicted_order, self._nodes, self._node_of
        i = self._tail
        while i >= 0 and not self.is_evicted(order[i]):
            i -= 1
        if i != self._tail:
            if self._log is not None:
                self._log.append((setattr, self, "_tail", self._tail))
            self._tail = i
        available: dict[str, dict[str, int]] = {}
        victims: dict[str, list[str]] = {}
        while i >= 0:
            job_id = order[i]
            i -= 1
            node_id = node_of[job_id]
            if node_id not in eligible:
                continue
            state = nodes[node_id]
            entry = state.jobs.get(job_id)
            if entry is None or not _evicted(entry.level) or entry.level - EVICTED_LEVEL > priority:
                continue
            room = available.get(node_id)
            if room is None:
                room = available[node_id] = dict(state.free)
                victims[node_id] = []
            add_into(room, entry.requests, +1)
            victims[node_id].append(job_id)
            self.stats.nodes_examined += 1
            if fits(requests, room):
                return node_id, victims[node_id]
        return None, []

    def _build_index(self, constraint: Constraint, restrict: Restriction, job: QueuedJob) -> _Index:
        affinity = constraint[2]
        selected = [s for s in self._nodes.values() if matches_selector(s.node, job.node_selector)]
        affine = [s for s in selected if matches_node_affinity(s.node, affinity)] if affinity else selected
        tolerated = [s for s in affine if untolerated_taint(s.node, job.tolerations) is None]
        if restrict is not None:
            label, value = restrict
            eligible = [s for s in tolerated if s.node.labels.get(label) == value]
        else:
            eligible = tolerated
        if not self._nodes:
            reason = NO_SCHEDULABLE_NODES
        elif not selected:
            reason = NO_NODE_MATCHES_SELECTOR
        elif not affine:
            reason = NO_NODE_MATCHES_AFFINITY
        elif not tolerated:
            taint = untolerated_taint(affine[0].node, job.tolerations)
            reason = f"{TAINT_NOT_TOLERATED}: {format_taint(taint or {})}"
        elif restrict is not None and not eligible:
            reason = f"no eligible node has label {restrict[0]}={restrict[1]}"
        else:
            reason = ""
        index = _Index(sorted(s.key for s in eligible), reason, frozenset(s.node.id for s in eligible))
        self._indexes[(constraint, restrict)] = index
        for state in eligible:
            self._indexes_of[state.node.id].append(index)
        return index

    def _insufficient(self, requests: Mapping[str, int], index: _Index) -> str:
        """Name the resource most eligible nodes are short of (ties: configured order first)."""
        order = {name: i for i, name in enumerate(self.resources)}
        short: dict[str, int] = {}
        for key in index.keys:
            free = self._nodes[key[-1]].free
            for name, quantity in requests.items():
                if quantity > free.get(name, 0):
                    short[name] = short.get(name, 0) + 1
        if not short:
            return "insufficient resources"
        name = min(short, key=lambda n: (-short[n], order.get(n, len(order)), n))
        return f"insufficient {name}"
