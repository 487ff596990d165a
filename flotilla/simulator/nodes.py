"""The simulated nodes: a cluster file's node templates turned into the scheduling core's nodes.

A cluster file (:mod:`.cluster_file`) gives each cluster a pool and node templates with a
count; the scheduling core wants one :class:`~flotilla.scheduling.Node` per node. Each
cluster is an executor of that name, its nodes are ``{cluster}-{i}`` and carry the
:data:`~.cluster_file.CLUSTER_LABEL` label (what a gang's default node uniformity label
groups nodes by), and a pool's capacity is the sum of its nodes' allocatable resources.
"""

from __future__ import annotations

from flotilla.resources import add_into
from flotilla.scheduling import Node

from .cluster_file import CLUSTER_LABEL, ClusterSpec


def build_nodes(cluster: ClusterSpec) -> dict[str, list[Node]]:
    """Every node of ``cluster``, by pool; pools in sorted order (the scheduling core's order)."""
    nodes: dict[str, list[Node]] = {pool: [] for pool in sorted(cluster.pools)}
    for c in cluster.clusters:
        i = 0
        for template in c.node_templates:
            labels = {**template.labels, CLUSTER_LABEL: c.name}
            for _ in range(template.number):
                nodes[c.pool].append(
                    Node(
                        executor=c.name,
                        name=f"{c.name}-{i}",
                        pool=c.pool,
                        allocatable=dict(template.resources),
                        labels=dict(labels),
                        taints=tuple(dict(t) for t in template.taints),
                    )
                )
                i += 1
    return nodes


def pool_capacity(nodes: dict[str, list[Node]]) -> dict[str, dict[str, int]]:
    """Each pool's total allocatable quantity of each resource."""
    capacity: dict[str, dict[str, int]] = {}
    for pool, members in nodes.items():
        total: dict[str, int] = {}
        for node in members:
            add_into(total, node.allocatable)
        capacity[pool] = total
    return capacity
