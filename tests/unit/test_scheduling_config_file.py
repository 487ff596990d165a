"""Specs for reading Armada's scheduling config file (flotilla.scheduling.config_file)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from flotilla.armada_yaml import ArmadaFileError
from flotilla.scheduling import PriorityClass
from flotilla.scheduling.config_file import load_scheduling_config, scheduling_config_from_spec
from tests.unit.armada_files import SHARED, needs_shared, write


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


def test_the_files_settings_become_the_cycles_and_settings_left_out_keep_its_defaults(
    tmp_path: Path,
) -> None:
    full = scheduling_config_from_spec(
        load_scheduling_config(
            write(
                tmp_path,
                "full.yaml",
                """
scheduling:
  priorityClasses:
    low: {priority: 1, preemptible: true, maximumResourceFractionPerQueue: {cpu: 0.5}}
    high: {priority: 2}
  defaultPriorityClassName: high
  dominantResourceFairnessResourcesToConsider: [memory, cpu]
  maximumSchedulingBurst: 7
  protectedFractionOfFairShare: 0.5
  maximumResourceFractionToSchedule: {cpu: 0.25}
""",
            )
        )
    )
    bare = scheduling_config_from_spec(
        load_scheduling_config(write(tmp_path, "bare.yaml", "maxQueueLookback: 3\n"))
    )

    assert full.priority_classes == {
        "low": PriorityClass("low", 1, True, {"cpu": 0.5}),
        "high": PriorityClass("high", 2, False),
    }
    assert full.default_priority_class == "high"
    assert full.resources == ("memory", "cpu")
    assert full.max_jobs_per_cycle == 7
    assert full.protected_fraction_of_fair_share == 0.5
    assert full.maximum_resource_fraction_to_schedule == {"cpu": 0.25}
    assert (bare.resources, bare.max_jobs_per_cycle, bare.protected_fraction_of_fair_share) == (
        ("cpu", "memory"),
        10000,
        1.0,
    )
    assert bare.priority_classes == {} and bare.default_priority_class == ""


def test_priority_classes_without_a_default_class_are_refused_naming_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "config.yaml", "priorityClasses: {a: {priority: 1}}\n")

    with pytest.raises(ArmadaFileError, match="default_priority_class") as caught:
        scheduling_config_from_spec(load_scheduling_config(path))

    assert caught.value.file == str(path)
