"""Specs for reading Armada's simulator files (flotilla.simulator.formats)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flotilla.simulator.formats import (
    CLUSTER_LABEL,
    SimulatorFormatError,
    check_workload_against_config,
    load_cluster_spec,
    load_scheduling_config,
    load_workload_spec,
    parse_duration,
)

SHARED = Path(__file__).parents[2].parent / "shared" / "armada-formats" / "simulator"
needs_shared = pytest.mark.skipif(not SHARED.exists(), reason=f"{SHARED} is absent")

GIB = 2**30 * 1000  # one Gi in milli-units


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


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


@needs_shared
def test_example_basic_workload_parses() -> None:
    spec = load_workload_spec(SHARED / "basicWorkload.yaml")

    assert spec.name == "Basic Workload"
    assert spec.random_seed == 0
    (queue,) = spec.queues
    assert (queue.name, queue.weight, queue.priority_factor) == ("A", 1.0, 1.0)
    (template,) = queue.job_templates
    assert template.id == "A-0"  # Armada's default id: {queue}-{index}
    assert template.number == 10
    assert template.job_set == "job-set"
    assert template.priority_class_name == "armada-default"
    assert template.requests == {"cpu": 1000, "memory": 10 * GIB}
    assert template.runtime_distribution.minimum == 300.0
    assert template.runtime_distribution.tail_mean == 0.0
    assert spec.job_count == 10


@needs_shared
def test_example_basic_scheduling_config_parses_and_ignores_unused_armada_keys() -> None:
    spec = load_scheduling_config(SHARED / "basicSchedulingConfig.yaml")

    assert set(spec.priority_classes) == {"armada-default", "armada-preemptible"}
    assert spec.priority_classes["armada-default"].priority == 30000
    assert spec.priority_classes["armada-default"].preemptible is False
    assert spec.priority_classes["armada-preemptible"].preemptible is True
    assert spec.default_priority_class_name == "armada-default"
    assert spec.resources_to_consider == ("cpu", "memory", "nvidia.com/gpu", "ephemeral-storage")
    assert spec.maximum_resource_fraction_to_schedule == {"memory": 0.025, "cpu": 0.025}
    assert math.isinf(spec.maximum_scheduling_rate)
    assert spec.maximum_scheduling_burst == 9223372036854775807
    assert {"supportedResourceTypes", "indexedResources", "nodeEvictionProbability"} <= set(spec.ignored_keys)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("5m", 300.0),
        ("30s", 30.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("250ms", 0.25),
        ("0", 0.0),
        (12, 12.0),
    ],
)
def test_durations_parse_to_seconds(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["five minutes", "5", "5x", "-5m", "", "m"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_a_malformed_value_is_refused_naming_the_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "workload.yaml",
        """
queues:
  - name: A
    jobTemplates:
      - number: 1
        runtimeDistribution: {minimum: "five minutes"}
""",
    )
    with pytest.raises(SimulatorFormatError) as caught:
        load_workload_spec(path)

    assert str(path) in str(caught.value)
    assert "queues[0].jobTemplates[0].runtimeDistribution.minimum" in str(caught.value)


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
        SimulatorFormatError, match=r"clusters\[0\]\.nodeTemplates\[0\]\.totalResources\.resources\.cpu"
    ):
        load_cluster_spec(path)


def test_unknown_keys_anywhere_are_accepted_and_listed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "workload.yaml",
        """
name: w
someFutureArmadaKey: 3
queues:
  - name: A
    jobTemplates:
      - number: 2
        failureProbability: 0.1
        runtimeDistribution: {minimum: "1m"}
""",
    )
    spec = load_workload_spec(path)

    assert spec.queues[0].job_templates[0].number == 2
    assert set(spec.ignored_keys) == {"someFutureArmadaKey", "queues[0].jobTemplates[0].failureProbability"}


def test_keys_match_case_and_underscore_insensitively(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "workload.yaml",
        """
random_seed: 5
queues:
  - name: A
    job_templates:
      - number: 1
        JobSet: s
""",
    )
    spec = load_workload_spec(path)

    assert spec.random_seed == 5
    assert spec.queues[0].job_templates[0].job_set == "s"


def test_a_dependency_on_an_unknown_template_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "workload.yaml",
        """
queues:
  - name: A
    jobTemplates:
      - {id: x, number: 1, dependencies: [nope]}
""",
    )
    with pytest.raises(SimulatorFormatError, match=r"dependencies\[0\].*'nope'"):
        load_workload_spec(path)


def test_a_gang_that_does_not_divide_the_number_of_jobs_is_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "workload.yaml",
        """
queues:
  - name: A
    jobTemplates:
      - {number: 5, gangCardinality: 2}
""",
    )
    with pytest.raises(SimulatorFormatError, match="gangCardinality"):
        load_workload_spec(path)


def test_node_labels_taints_and_repeat_are_read(tmp_path: Path) -> None:
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
    workload = load_workload_spec(
        write(
            tmp_path,
            "workload.yaml",
            """
queues:
  - name: A
    jobTemplates:
      - number: 3
        repeat: {numTimes: 4, period: "10m"}
""",
        )
    )

    template = cluster.clusters[0].node_templates[0]
    assert template.labels == {"zone": "a"}
    assert template.taints == ({"key": "gpu", "value": "true", "effect": "NoSchedule"},)
    assert CLUSTER_LABEL not in template.labels  # added to nodes by the simulation, not the reader
    repeat = workload.queues[0].job_templates[0].repeat
    assert repeat is not None and (repeat.num_times, repeat.period) == (4, 600.0)
    assert workload.job_count == 12


def test_the_older_config_layout_with_a_preemption_section_is_read(tmp_path: Path) -> None:
    spec = load_scheduling_config(
        write(
            tmp_path,
            "config.yaml",
            """
preemption:
  protectedFractionOfFairShare: 0.5
  priorityClasses:
    low: {priority: 1, preemptible: true, maximumResourceFractionPerQueue: {cpu: 0.5}}
  defaultPriorityClass: low
""",
        )
    )

    assert spec.default_priority_class_name == "low"
    assert spec.protected_fraction_of_fair_share == 0.5
    assert spec.priority_classes["low"].maximum_resource_fraction_per_queue == {"cpu": 0.5}


def test_a_workload_naming_an_undefined_priority_class_is_refused(tmp_path: Path) -> None:
    config = load_scheduling_config(
        write(tmp_path, "config.yaml", "priorityClasses: {a: {priority: 1}}\ndefaultPriorityClassName: a\n")
    )
    workload = load_workload_spec(
        write(
            tmp_path,
            "workload.yaml",
            "queues: [{name: Q, jobTemplates: [{number: 1, priorityClassName: b}]}]\n",
        )
    )

    with pytest.raises(SimulatorFormatError, match=r"queues\[0\]\.jobTemplates\[0\]\.priorityClassName"):
        check_workload_against_config(workload, config)


def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SimulatorFormatError, match="mapping"):
        load_cluster_spec(write(tmp_path, "cluster.yaml", "- just\n- a list\n"))
