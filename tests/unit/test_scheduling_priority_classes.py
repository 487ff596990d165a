"""Priority classes: resolution, queue order and cost over any configured resource."""

import pytest

from flotilla.scheduling import IMPLICIT_PRIORITY_CLASS, PriorityClass, Queue, SchedulingConfig, schedule
from tests.harness.builders import job, node, running

# Neither class is preemptible, so the order of jobs is seen without urgency-based preemption.
LOW = PriorityClass("low", 100, False)
HIGH = PriorityClass("high", 200, False)
CONFIG = SchedulingConfig(priority_classes={"low": LOW, "high": HIGH}, default_priority_class="high")


def test_higher_priority_class_goes_first_within_a_queue():
    queued = [
        job("early-low", priority_class="low", submitted_at=0.0),
        job("late-high", priority_class="high", submitted_at=9.0),
    ]
    result = schedule(queued, [], [node("n", 1)], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["late-high"]


def test_priority_class_outranks_job_priority():
    queued = [
        job("urgent-low", priority_class="low", priority=0),
        job("lax-high", priority_class="high", priority=9),
    ]
    result = schedule(queued, [], [node("n", 1)], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["lax-high"]


def test_job_without_priority_class_is_in_the_default_class():
    queued = [
        job("low", priority_class="low", submitted_at=0.0),
        job("default", priority_class="", submitted_at=9.0),
    ]
    result = schedule(queued, [], [node("n", 1)], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["default"]


def test_unknown_priority_class_is_unschedulable_with_reason():
    result = schedule([job("j", priority_class="gold")], [], [node("n", 1)], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable == {"j": "unknown priority class gold"}


def test_without_configured_classes_every_job_is_in_one_implicit_class():
    result = schedule(
        [job("j", priority_class="anything")], [], [node("n", 1)], [Queue("a")], SchedulingConfig()
    )
    assert [lease.job_id for lease in result.leases] == ["j"]
    assert SchedulingConfig().priority_class("anything") is IMPLICIT_PRIORITY_CLASS


def test_config_resolves_an_empty_class_name_to_the_default():
    assert CONFIG.priority_class("") is HIGH
    assert CONFIG.priority_class("low") is LOW
    assert CONFIG.priority_class("gold") is None


def test_config_rejects_a_default_class_that_is_not_configured():
    with pytest.raises(ValueError):
        SchedulingConfig(priority_classes={"low": LOW}, default_priority_class="high")


def test_config_rejects_a_class_filed_under_another_name():
    with pytest.raises(ValueError):
        SchedulingConfig(priority_classes={"x": LOW}, default_priority_class="x")


def test_gpu_counts_towards_cost_when_configured():
    # a holds the only gpu but less cpu than b: counting gpus, a is the costlier queue.
    runs = [
        running("ra", "a", "n", 1, 0, run_id="r", extra={"nvidia.com/gpu": 1}),
        running("rb", "b", "n", 2, 0, run_id="r"),
    ]
    queued = [job("a-0", "a", 1, 0), job("b-0", "b", 1, 0)]
    nodes = [node("n", 16, extra={"nvidia.com/gpu": 1}), node("m", 1)]
    queues = [Queue("a"), Queue("b")]
    with_gpu = schedule(
        queued, runs, nodes, queues, SchedulingConfig(resources=("cpu", "memory", "nvidia.com/gpu"))
    )
    assert [lease.job_id for lease in with_gpu.leases] == ["b-0", "a-0"]
    assert with_gpu.stats.costs["a"] == 1.0
    without_gpu = schedule(queued, runs, nodes, queues, SchedulingConfig())
    assert [lease.job_id for lease in without_gpu.leases] == ["a-0", "b-0"]


def test_next_job_comes_from_the_queue_whose_share_would_be_smallest_with_it():
    # Before the jobs a has nothing and b 1 of 10 cpus, but with them a would hold 8 and b 2.
    runs = [running("r", "b", "n", 1, 0, run_id="r")]
    queued = [job("a-big", "a", 8, 0), job("b-small", "b", 1, 0)]
    result = schedule(queued, runs, [node("n", 10)], [Queue("a"), Queue("b")], SchedulingConfig())
    assert [lease.job_id for lease in result.leases] == ["b-small", "a-big"]


def test_adjusted_fair_shares_are_reported():
    runs = [running("r", "b", "n", 1, 0, run_id="r")]
    queued = [job(f"a-{i}", "a", submitted_at=float(i)) for i in range(8)]
    result = schedule(queued, runs, [node("n", 4)], [Queue("a"), Queue("b")], SchedulingConfig())
    assert result.stats.fair_shares == {"a": 0.5, "b": 0.5}
    assert result.stats.adjusted_fair_shares == {"a": 0.75, "b": 0.25}
