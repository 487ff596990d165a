"""Specs for reading Armada's simulator workload files (flotilla.simulator.workload_file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla.armada_yaml import ArmadaFileError
from flotilla.scheduling.config_file import load_scheduling_config
from flotilla.simulator.workload_file import check_workload_against_config, load_workload_spec
from tests.unit.armada_files import GIB, SHARED, needs_shared, write


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
    with pytest.raises(ArmadaFileError) as caught:
        load_workload_spec(path)

    assert str(path) in str(caught.value)
    assert "queues[0].jobTemplates[0].runtimeDistribution.minimum" in str(caught.value)


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
    with pytest.raises(ArmadaFileError, match=r"dependencies\[0\].*'nope'"):
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
    with pytest.raises(ArmadaFileError, match="gangCardinality"):
        load_workload_spec(path)


def test_repeat_is_read(tmp_path: Path) -> None:
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

    repeat = workload.queues[0].job_templates[0].repeat
    assert repeat is not None and (repeat.num_times, repeat.period) == (4, 600.0)
    assert workload.job_count == 12


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

    with pytest.raises(ArmadaFileError, match=r"queues\[0\]\.jobTemplates\[0\]\.priorityClassName"):
        check_workload_against_config(workload, config)
