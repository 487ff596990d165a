"""Armada's simulator cluster file: the executors, their pools and their nodes.

The file (Armada's ``internal/scheduler/simulator`` format; examples in Armada's ``testdata/``
and in ``armada-formats/simulator/``) has a ``name`` and ``clusters``, each a ``name``, a
``pool`` and ``nodeTemplates`` (``number`` of identical nodes with
``totalResources.resources``, ``labels`` and ``taints``); optionally
``pendingDelayDistribution`` and ``workflowManagerDelayDistribution`` (shifted exponentials,
like job runtimes). The simulator builds its nodes from it, and so does the simulated
executor backend. Keys are matched and errors reported as in every Armada file Flotilla reads
(:mod:`flotilla.armada_yaml`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flotilla.armada_yaml import FieldReader, field_path, read_document

from .distributions import ShiftedExponential, read_distribution

CLUSTER_LABEL = "armadaproject.io/clusterName"
"""The label Armada's simulator puts on every node: the name of the node's cluster. It is the
default node uniformity label of gangs."""

TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


@dataclass(frozen=True, slots=True)
class NodeTemplate:
    """``number`` identical nodes; ``resources`` in milli-units, ``taints`` as Kubernetes dicts."""

    number: int
    resources: dict[str, int]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Cluster:
    """One executor: its nodes all belong to ``pool``."""

    name: str
    pool: str
    node_templates: tuple[NodeTemplate, ...]


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """A cluster file. ``pending_delay`` is added to each run's runtime (time from lease to
    start); ``workflow_manager_delay`` is how long a preempted job waits before it is queued
    again."""

    name: str
    clusters: tuple[Cluster, ...]
    pending_delay: ShiftedExponential = ShiftedExponential()
    workflow_manager_delay: ShiftedExponential = ShiftedExponential()
    source: str = ""
    ignored_keys: tuple[str, ...] = ()

    @property
    def pools(self) -> tuple[str, ...]:
        """Pool names in order of first appearance."""
        return tuple(dict.fromkeys(cluster.pool for cluster in self.clusters))

    @property
    def node_count(self) -> int:
        return sum(t.number for c in self.clusters for t in c.node_templates)


def _taints(reader: FieldReader, value: Any, where: str) -> tuple[dict[str, str], ...]:
    out = []
    for i, item in enumerate(reader.sequence(value, where)):
        at = f"{where}[{i}]"
        fields = reader.mapping(item, at, ("key", "value", "effect", "timeAdded"))
        key = reader.string(fields.get("key"), field_path(at, "key"))
        effect = reader.string(fields.get("effect"), field_path(at, "effect"))
        if not key:
            raise reader.fail(field_path(at, "key"), "a taint needs a key")
        if effect not in TAINT_EFFECTS:
            raise reader.fail(
                field_path(at, "effect"), f"must be one of {', '.join(TAINT_EFFECTS)}, got {effect!r}"
            )
        taint = {"key": key, "effect": effect}
        value_ = reader.string(fields.get("value"), field_path(at, "value"))
        if value_:
            taint["value"] = value_
        out.append(taint)
    return tuple(out)


def load_cluster_spec(path: str | Path) -> ClusterSpec:
    """Read an Armada simulator cluster file."""
    reader, document = read_document(path)
    top = reader.mapping(
        document, "", ("name", "clusters", "pendingDelayDistribution", "workflowManagerDelayDistribution")
    )
    clusters: list[Cluster] = []
    names: set[str] = set()
    for i, item in enumerate(reader.sequence(top.get("clusters"), "clusters")):
        at = f"clusters[{i}]"
        fields = reader.mapping(item, at, ("name", "pool", "nodeTemplates"))
        name = reader.string(fields.get("name"), field_path(at, "name"))
        pool = reader.string(fields.get("pool"), field_path(at, "pool"))
        if not name:
            raise reader.fail(field_path(at, "name"), "a cluster needs a name")
        if name in names:
            raise reader.fail(field_path(at, "name"), f"duplicate cluster name {name!r}")
        names.add(name)
        if not pool:
            raise reader.fail(field_path(at, "pool"), f"cluster {name!r} has no pool")
        templates: list[NodeTemplate] = []
        for j, raw in enumerate(
            reader.sequence(fields.get("nodeTemplates"), field_path(at, "nodeTemplates"))
        ):
            t_at = f"{at}.nodeTemplates[{j}]"
            t = reader.mapping(raw, t_at, ("number", "totalResources", "labels", "taints"))
            total = reader.mapping(
                t.get("totalResources"), field_path(t_at, "totalResources"), ("resources",)
            )
            resources = reader.quantities(
                total.get("resources"), field_path(t_at, "totalResources.resources")
            )
            if not resources:
                raise reader.fail(
                    field_path(t_at, "totalResources.resources"), "a node template needs resources"
                )
            templates.append(
                NodeTemplate(
                    number=reader.integer(t.get("number"), field_path(t_at, "number")),
                    resources=resources,
                    labels=reader.string_map(t.get("labels"), field_path(t_at, "labels")),
                    taints=_taints(reader, t.get("taints"), field_path(t_at, "taints")),
                )
            )
        clusters.append(Cluster(name=name, pool=pool, node_templates=tuple(templates)))
    if not clusters:
        raise reader.fail("clusters", "a cluster file needs at least one cluster")
    return ClusterSpec(
        name=reader.string(top.get("name"), "name") or Path(path).stem,
        clusters=tuple(clusters),
        pending_delay=read_distribution(
            reader, top.get("pendingDelayDistribution"), "pendingDelayDistribution"
        ),
        workflow_manager_delay=read_distribution(
            reader, top.get("workflowManagerDelayDistribution"), "workflowManagerDelayDistribution"
        ),
        source=str(path),
        ignored_keys=tuple(reader.ignored),
    )
