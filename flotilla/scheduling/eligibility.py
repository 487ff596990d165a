"""Which nodes a job may use: node selector, required node affinity and taints, with
Kubernetes' semantics (the node database indexes nodes by these, see
:mod:`~flotilla.scheduling.node_db`).

A job may use a node when every entry of its ``node_selector`` equals the node's label, its
required node affinity holds (:func:`matches_node_affinity`: terms ORed, expressions ANDed,
operators ``In``, ``NotIn``, ``Exists``, ``DoesNotExist``, ``Gt``, ``Lt``) and every node taint
with effect ``NoSchedule`` or ``NoExecute`` is tolerated by one of its tolerations (a toleration
matches a taint when its ``effect`` is empty or equal, and either its
``operator`` is ``Exists`` with an empty ``key`` (matches every taint), or the keys are equal
and the operator is ``Exists``, or the operator is ``Equal`` (the default) and the values are
equal). ``PreferNoSchedule`` taints are ignored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .model import NODE_NAME_FIELD, AffinityExpression, AffinityTerm, Node, QueuedJob, node_affinity_terms

_BLOCKING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


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
    """Every selector entry equals the node's label."""
    labels = node.labels
    return all(labels.get(key) == value for key, value in node_selector.items())


def _expression_holds(node: Node, expression: AffinityExpression) -> bool:
    key, operator, values = expression
    if key == NODE_NAME_FIELD:
        value: str | None = node.name
    else:
        value = node.labels.get(key)
    if operator == "In":
        return value is not None and value in values
    if operator == "NotIn":
        return value is None or value not in values
    if operator == "Exists":
        return value is not None
    if operator == "DoesNotExist":
        return value is None
    if operator in ("Gt", "Lt"):
        if value is None or len(values) != 1:
            return False
        try:
            have, bound = int(value), int(values[0])
        except ValueError:
            return False
        return have > bound if operator == "Gt" else have < bound
    return False


def matches_node_affinity(node: Node, terms: Any) -> bool:
    """Kubernetes' required node affinity: some term whose expressions all hold (no terms:
    every node; an empty term: no node). ``terms`` as :func:`~flotilla.scheduling.model.node_affinity_terms`
    accepts them."""
    terms = normal_affinity(terms)
    if not terms:
        return True
    return any(term and all(_expression_holds(node, e) for e in term) for term in terms)


def normal_affinity(terms: Any) -> tuple[AffinityTerm, ...]:
    """``terms`` in the normal form of :func:`~flotilla.scheduling.model.node_affinity_terms`
    (returned as they are when already in it)."""
    if not terms:
        return ()
    if type(terms) is tuple and all(type(t) is tuple and all(type(e) is tuple for e in t) for t in terms):
        return terms
    return node_affinity_terms(terms)


def format_taint(taint: Mapping[str, Any]) -> str:
    """``key=value:effect`` (``key:effect`` without a value), as reasons name a taint."""
    key, value, effect = taint.get("key") or "", taint.get("value") or "", taint.get("effect") or ""
    return f"{key}={value}:{effect}" if value else f"{key}:{effect}"


Constraint = tuple[
    frozenset[tuple[str, str]], frozenset[tuple[tuple[str, Any], ...]], tuple[AffinityTerm, ...]
]
"""A job's placement constraints, hashable: (selector items, tolerations as item tuples,
required node affinity in normal form)."""

NO_CONSTRAINT: Constraint = (frozenset(), frozenset(), ())


def job_constraint(job: QueuedJob) -> Constraint:
    """The job's constraints as one hashable key (jobs sharing it share a node index)."""
    selector, tolerations, affinity = job.node_selector, job.tolerations, job.node_affinity
    if not selector and not tolerations and not affinity:
        return NO_CONSTRAINT
    return (
        frozenset(selector.items()),
        frozenset(tuple(sorted(t.items())) for t in tolerations),
        normal_affinity(affinity),
    )
