"""Specs for reading Armada's simulator cluster files (flotilla.simulator.cluster_file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla.armada_yaml import ArmadaFileError
from flotilla.simulator.cluster_file import CLUSTER_LABEL, load_cluster_spec
from tests.unit.armada_files import GIB, SHARED, needs_shared, write


@needs_shared
def test_example_cluster_with_ten_32_core_nodes_parses() -> None:
    spec = load_cluster_spec(SHARED / "cpu_1_1_10.yaml")

    assert spec.name == "1 cluster with 10 32-core nodes"
    assert [(c.name, c.pool) for c in spec.clusters] == [("cpu-01", "default")]
    (template,) = spec.clusters[0].node_templates
    assert template.number == 10
    assert template.resources == {"cpu": 32_000, "memory": 1024 * GIB}
    assert spec.node_count == 10


@needs_shared
def test_example_tiny_cluster_parses_with_two_pools_and_gpus() -> None:
    spec = load_cluster_spec(SHARED / "tinyCluster.yaml")

    assert spec.pools == ("cpu", "gpu")
    gpu_node = spec.clusters[1].node_templates[0]
    assert gpu_node.resources["nvidia.com/gpu"] == 8_000
    assert gpu_node.resources["cpu"] == 128_000


def test_a_bad_resource_quantity_is_refused_naming_the_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "cluster.yaml",
        """
clusters:
  - name: c
    pool: p
    nodeTemplates:
      - number: 1
        totalResources: {resources: {cpu: "lots"}}
""",
    )
    with pytest.raises(
        ArmadaFileError, match=r"clusters\[0\]\.nodeTemplates\[0\]\.totalResources\.resources\.cpu"
    ):
        load_cluster_spec(path)


def test_node_labels_and_taints_are_read(tmp_path: Path) -> None:
    cluster = load_cluster_spec(
        write(
            tmp_path,
            "cluster.yaml",
            """
clusters:
  - name: c
    pool: p
    nodeTemplates:
      - number: 2
        labels: {zone: a}
        taints: [{key: gpu, value: "true", effect: NoSchedule}]
        totalResources: {resources: {cpu: 4}}
""",
        )
    )

    template = cluster.clusters[0].node_templates[0]
    assert template.labels == {"zone": "a"}
    assert template.taints == ({"key": "gpu", "value": "true", "effect": "NoSchedule"},)
    assert CLUSTER_LABEL not in template.labels  # added to nodes by the simulation, not the reader


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ArmadaFileError, match="mapping"):
        load_cluster_spec(write(tmp_path, "cluster.yaml", "- just\n- a list\n"))
