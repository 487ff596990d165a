"""Priority classes: resolution, queue order and cost over any configured resource."""

import pytest

from flotilla.scheduling import (
    IMPLICIT_PRIORITY_CLASS,
    Node,
    PriorityClass,
    Queue,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
    schedule,
)

GI = 2**30 * 1000
# Neither class is preemptible, so the order of jobs is seen without urgency-based preemption.
LOW = PriorityClass("low", 100, False)
HIGH = PriorityClass("high", 200, False)
CONFIG = SchedulingConfig(priority_classes={"low": LOW, "high": HIGH}, default_priority_class="high")


def node(name="n", cpu=1, **resources):
    return Node("ex", name, "default", {"cpu": cpu * 1000, "memory": 64 * GI, **resources})


def job(job_id, queue="a", pc="", priority=0, submitted_at=0.0, **requests):
    requests = requests or {"cpu": 1000, "memory": GI}
    return QueuedJob(job_id, queue, "set", priority, submitted_at, requests, priority_class=pc)


def test_higher_priority_class_goes_first_within_a_queue():
    queued = [job("early-low", pc="low", submitted_at=0.0), job("late-high", pc="high", submitted_at=9.0)]
    result = schedule(queued, [], [node()], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["late-high"]


def test_priority_class_outranks_job_priority():
    queued = [job("urgent-low", pc="low", priority=0), job("lax-high", pc="high", priority=9)]
    result = schedule(queued, [], [node()], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["lax-high"]


def test_job_without_priority_class_is_in_the_default_class():
    queued = [job("low", pc="low", submitted_at=0.0), job("default", pc="", submitted_at=9.0)]
    result = schedule(queued, [], [node()], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["default"]


def test_unknown_priority_class_is_unschedulable_with_reason():
    result = schedule([job("j", pc="gold")], [], [node()], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable == {"j": "unknown priority class gold"}


def test_without_configured_classes_every_job_is_in_one_implicit_class():
    result = schedule([job("j", pc="anything")], [], [node()], [Queue("a")], SchedulingConfig())
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
        RunningJob("ra", "a", "r", "ex", "n", {"cpu": 1000, "nvidia.com/gpu": 1000}),
        RunningJob("rb", "b", "r", "ex", "n", {"cpu": 2000}),
    ]
    queued = [job("a-0", "a", cpu=1000), job("b-0", "b", cpu=1000)]
    nodes = [node("n", cpu=16, **{"nvidia.com/gpu": 1000}), node("m", cpu=1)]
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
    runs = [RunningJob("r", "b", "r", "ex", "n", {"cpu": 1000})]
    queued = [job("a-big", "a", cpu=8000), job("b-small", "b", cpu=1000)]
    result = schedule(queued, runs, [node("n", cpu=10)], [Queue("a"), Queue("b")], SchedulingConfig())
    assert [lease.job_id for lease in result.leases] == ["b-small", "a-big"]


def test_adjusted_fair_shares_are_reported():
    runs = [RunningJob("r", "b", "r", "ex", "n", {"cpu": 1000})]
    queued = [job(f"a-{i}", "a", submitted_at=float(i)) for i in range(8)]
    result = schedule(queued, runs, [node("n", cpu=4)], [Queue("a"), Queue("b")], SchedulingConfig())
    assert result.stats.fair_shares == {"a": 0.5, "b": 0.5}
    assert result.stats.adjusted_fair_shares == {"a": 0.75, "b": 0.25}
