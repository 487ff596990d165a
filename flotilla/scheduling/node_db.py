"""Nodes and their free resources, with best-fit placement (after Armada's ``internal/scheduler/nodedb``).

Free resources are ``allocatable`` minus the requests of the jobs bound to the node (running
jobs at construction, then each lease the cycle makes with :meth:`NodeDb.bind`).

**Best fit.** A job goes to the fitting node with the *least* free resources, compared as a
tuple of free quantities in the order of ``SchedulingConfig.resources`` (free cpu first, then
free memory, ...; the node id breaks exact ties). This is Armada's "indexed resources"
ordering: it packs nodes tightly and leaves whole nodes free for large jobs. Resources outside
the configured list must still fit but do not take part in the ordering.

**Eligibility.** Unschedulable nodes are left out entirely. A job may use a node when every
entry of its ``node_selector`` equals the node's label and every node taint with effect
``NoSchedule`` or ``NoExecute`` is tolerated by one of its tolerations (Kubernetes semantics:
a toleration matches a taint when its ``effect`` is empty or equal, and either its
``operator`` is ``Exists`` with an empty ``key`` (matches every taint), or the keys are equal
and the operator is ``Exists``, or the operator is ``Equal`` (the default) and the values are
equal). ``PreferNoSchedule`` taints are ignored.

**Indexes.** Jobs sharing a selector and tolerations (a *constraint*) share one index: the
eligible nodes as a list of ``(free[r0], free[r1], ..., node_id)`` keys kept sorted. It is
built the first time a constraint is seen and kept up to date by :meth:`NodeDb.bind`. A search
bisects to the first node with enough of the leading resource and walks forward to the first
node where everything fits, so in the common case (few constraints, a leading resource that
is usually the bottleneck) placing a job costs a bisection and a handful of checks, and a bind
costs one list removal and insertion per index holding the node.

**Unfit shapes.** Free resources only shrink during a cycle, so a job *shape* (requests,
selector, tolerations and priority class) that fits nowhere will fit nowhere for the rest of
the cycle. The answer is cached: a million identical unfit jobs cost one search. The priority
class is part of the shape already because preemption will make fitting depend on it.
:meth:`NodeDb.unbind` (which returns resources, as an eviction will) clears the cache.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from .model import Node, QueuedJob, RunningJob

_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})

NO_SCHEDULABLE_NODES = "no schedulable nodes"
NO_NODE_MATCHES_SELECTOR = "no node matches node selector"
TAINT_NOT_TOLERATED = "taint not tolerated"


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' ``Toleration.ToleratesTaint``."""
    effect = toleration.get("effect") or ""
    if effect and effect != (taint.get("effect") or ""):
        return False
    key = toleration.get("key") or ""
    operator = toleration.get("operator") or "Equal"
    if not key:
        return operator == "Exists"
    if key != (taint.get("key") or ""):
        return False
    if operator == "Exists":
        return True
    if operator == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    return False


def untolerated_taint(node: Node, tolerations: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The first ``NoSchedule``/``NoExecute`` taint of ``node`` none of ``tolerations`` tolerates."""
    tolerations = tuple(tolerations)
    for taint in node.taints:
        if taint.get("effect") in _BLOCKING_EFFECTS and not any(tolerates(t, taint) for t in tolerations):
            return taint
    return None


def matches_selector(node: Node, node_selector: Mapping[str, str]) -> bool:
    labels = node.labels
    return all(labels.get(key) == value for key, value in node_selector.items())


def _format_taint(taint: Mapping[str, Any]) -> str:
    key, value, effect = taint.get("key") or "", taint.get("value") or "", taint.get("effect") or ""
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


Constraint = tuple[frozenset, frozenset]
"""A job's placement constraints, hashable: (selector items, tolerations as item tuples)."""

Shape = tuple[tuple[tuple[str, int], ...], Constraint, str]
"""A job's shape: positive requests (sorted), constraint, priority class."""


def job_constraint(job: QueuedJob) -> Constraint:
    return (
        frozenset(job.node_selector.items()),
        frozenset(tuple(sorted(t.items())) for t in job.tolerations),
    )


def job_shape(job: QueuedJob) -> Shape:
    requests = tuple(sorted((name, q) for name, q in job.requests.items() if q > 0))
    return (requests, job_constraint(job), job.priority_class)


@dataclass(slots=True)
class NodeDbStats:
    """Work done by a :class:`NodeDb`: searches of an index, jobs answered from the unfit-shape
    cache, and nodes whose free resources were checked against a job."""

    node_searches: int = 0
    shape_cache_hits: int = 0
    nodes_examined: int = 0


@dataclass(slots=True)
class _NodeState:
    node: Node
    free: dict[str, int]
    key: tuple


@dataclass(slots=True)
class _Index:
    keys: list[tuple]
    empty_reason: str


class NodeDb:
    """The nodes of one cycle with their free resources; see the module docstring."""

    def __init__(
        self,
        nodes: Iterable[Node],
        running: Iterable[RunningJob] = (),
        resources: Sequence[str] = ("cpu", "memory"),
    ) -> None:
        if not resources:
            raise ValueError("NodeDb needs at least one resource to order nodes by")
        self.resources = tuple(resources)
        self.stats = NodeDbStats()
        self._nodes: dict[str, _NodeState] = {}
        for node in nodes:
            if not node.unschedulable:  # a later node with the same id replaces an earlier one
                self._nodes[node.id] = _NodeState(node, dict(node.allocatable), ())
        for job in running:
            state = self._nodes.get(job.node_id)
            if state is not None:
                for name, quantity in job.requests.items():
                    state.free[name] = state.free.get(name, 0) - quantity
        for node_id, state in self._nodes.items():
            state.key = self._key(node_id, state.free)
        self._indexes: dict[Constraint, _Index] = {}
        self._indexes_of: dict[str, list[_Index]] = {node_id: [] for node_id in self._nodes}
        self._unfit: dict[Shape, str] = {}

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

    # --- placement ---------------------------------------------------------------------

    def find_node(self, job: QueuedJob) -> tuple[Node | None, str]:
        """The best-fit node for ``job``, or ``(None, reason)`` when no node can take it.

        Does not bind: call :meth:`bind` to take the resources.
        """
        shape = job_shape(job)
        reason = self._unfit.get(shape)
        if reason is not None:
            self.stats.shape_cache_hits += 1
            return None, reason
        self.stats.node_searches += 1
        index = self._index(shape[1], job)
        requests = shape[0]
        if index.keys:
            keys = index.keys
            start = bisect_left(keys, (job.requests.get(self.resources[0], 0),))
            nodes = self._nodes
            examined = 0
            for key in islice(keys, start, None):
                examined += 1
                free = nodes[key[-1]].free
                for name, quantity in requests:
                    if quantity > free.get(name, 0):
                        break
                else:
                    self.stats.nodes_examined += examined
                    return nodes[key[-1]].node, ""
            self.stats.nodes_examined += examined
            reason = self._insufficient(requests, index)
        else:
            reason = index.empty_reason
        self._unfit[shape] = reason
        return None, reason

    def bind(self, node_id: str, requests: Mapping[str, int]) -> None:
        """Take ``requests`` from the node's free resources (a lease)."""
        self._move(node_id, requests, -1)

    def unbind(self, node_id: str, requests: Mapping[str, int]) -> None:
        """Give ``requests`` back to the node (an eviction); forgets every cached unfit shape."""
        self._move(node_id, requests, +1)
        self._unfit.clear()

    # --- internals ---------------------------------------------------------------------

    def _key(self, node_id: str, free: Mapping[str, int]) -> tuple:
        return (*(free.get(name, 0) for name in self.resources), node_id)

    def _move(self, node_id: str, requests: Mapping[str, int], sign: int) -> None:
        state = self._nodes[node_id]
        for name, quantity in requests.items():
            state.free[name] = state.free.get(name, 0) + sign * quantity
        old, new = state.key, self._key(node_id, state.free)
        if new == old:
            return
        for index in self._indexes_of[node_id]:
            keys = index.keys
            del keys[bisect_left(keys, old)]
            insort(keys, new)
        state.key = new

    def _index(self, constraint: Constraint, job: QueuedJob) -> _Index:
        index = self._indexes.get(constraint)
        if index is not None:
            return index
        selected = [s for s in self._nodes.values() if matches_selector(s.node, job.node_selector)]
        eligible = [s for s in selected if untolerated_taint(s.node, job.tolerations) is None]
        if not self._nodes:
            reason = NO_SCHEDULABLE_NODES
        elif not selected:
            reason = NO_NODE_MATCHES_SELECTOR
        elif not eligible:
            taint = untolerated_taint(selected[0].node, job.tolerations)
            reason = f"{TAINT_NOT_TOLERATED}: {_format_taint(taint or {})}"
        else:
            reason = ""
        index = _Index(sorted(s.key for s in eligible), reason)
        self._indexes[constraint] = index
        for state in eligible:
            self._indexes_of[state.node.id].append(index)
        return index

    def _insufficient(self, requests: Sequence[tuple[str, int]], index: _Index) -> str:
        """Name the resource most eligible nodes are short of (ties: configured order first)."""
        order = {name: i for i, name in enumerate(self.resources)}
        short: dict[str, int] = {}
        for key in index.keys:
            free = self._nodes[key[-1]].free
            for name, quantity in requests:
                if quantity > free.get(name, 0):
                    short[name] = short.get(name, 0) + 1
        name = min(short, key=lambda n: (-short[n], order.get(n, len(order)), n))
        return f"insufficient {name}"
