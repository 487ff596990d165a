"""Per-cycle and per-queue limits."""

from flotilla.scheduling import PriorityClass, Queue, SchedulingConfig, schedule
from tests.harness.builders import job, node, running


def jobs(queue, n, cpu=1, pc=""):
    return [job(f"{queue}-{i}", queue, cpu, submitted_at=float(i), priority_class=pc) for i in range(n)]


def capped(fraction, preemptible=False):
    pc = PriorityClass("armada-default", 1000, preemptible, {"cpu": fraction})
    return SchedulingConfig(priority_classes={pc.name: pc}, default_priority_class=pc.name)


# As in Armada, a limit is checked against what is already scheduled (or held) before each
# job: the job that crosses the limit is leased, none after it.


def test_maximum_resource_fraction_to_schedule_stops_a_cycle_after_the_job_that_crosses_it():
    config = SchedulingConfig(maximum_resource_fraction_to_schedule={"cpu": 0.25})  # 4 of 16 CPU
    result = schedule(jobs("a", 8), [], [node("n1", 8), node("n2", 8)], [Queue("a")], config)
    assert [lease.job_id for lease in result.leases] == ["a-0", "a-1", "a-2", "a-3", "a-4"]
    assert set(result.unschedulable.values()) == {"maximum resource fraction to schedule reached for cpu"}


def test_maximum_resource_fraction_to_schedule_at_the_limit_still_leases_one_more_job():
    config = SchedulingConfig(maximum_resource_fraction_to_schedule={"cpu": 0.25})  # 4 of 16 CPU
    result = schedule(jobs("a", 2, cpu=4), [], [node("n1", 8), node("n2", 8)], [Queue("a")], config)
    assert [lease.job_id for lease in result.leases] == ["a-0", "a-1"]


def test_maximum_resource_fraction_to_schedule_ignores_running_jobs():
    config = SchedulingConfig(maximum_resource_fraction_to_schedule={"cpu": 0.25})
    runs = [running(f"r{i}", "a", "n1", memory=0, run_id="r") for i in range(6)]
    result = schedule(jobs("a", 8), runs, [node("n1", 8), node("n2", 8)], [Queue("a")], config)
    assert len(result.leases) == 5


def test_queue_limit_for_priority_class_stops_the_queue_after_the_job_that_crosses_it():
    result = schedule(jobs("a", 8), [], [node("n", 8)], [Queue("a")], capped(0.5))  # 4 of 8 CPU
    assert len(result.leases) == 5
    assert set(result.unschedulable.values()) == {"queue limit for priority class armada-default reached"}


def test_queue_limit_for_priority_class_counts_running_jobs_of_that_class():
    runs = [running(f"r{i}", "a", "n", memory=0, run_id="r") for i in range(4)]
    result = schedule(jobs("a", 8), runs, [node("n", 8)], [Queue("a")], capped(0.5))
    assert len(result.leases) == 1
    runs.append(running("r4", "a", "n", memory=0, run_id="r"))
    assert schedule(jobs("a", 8), runs, [node("n", 8)], [Queue("a")], capped(0.5)).leases == []


def test_queue_limit_for_priority_class_applies_to_each_queue_separately():
    result = schedule(
        jobs("a", 8) + jobs("b", 8), [], [node("n", 16)], [Queue("a"), Queue("b")], capped(0.25)
    )
    assert sorted(lease.queue for lease in result.leases) == ["a"] * 5 + ["b"] * 5


def test_queue_limit_does_not_apply_to_other_priority_classes():
    free = PriorityClass("free", 1000, False)
    limited = PriorityClass("armada-default", 1000, False, {"cpu": 0.25})
    config = SchedulingConfig(
        priority_classes={"free": free, "armada-default": limited}, default_priority_class="armada-default"
    )
    result = schedule(jobs("a", 8, pc="free"), [], [node("n", 8)], [Queue("a")], config)
    assert len(result.leases) == 8


def test_lease_cap_still_lets_evicted_jobs_go_back_on_their_nodes():
    pc = PriorityClass("p", 1000, True)
    config = SchedulingConfig(priority_classes={"p": pc}, default_priority_class="p", max_jobs_per_cycle=0)
    runs = [running(f"a-{i}", "a", "n", memory=0, run_id="r", priority_class="p") for i in range(8)]
    result = schedule(jobs("b", 8), runs, [node("n", 8)], [Queue("a"), Queue("b")], config)
    assert result.stats.jobs_evicted == 8
    assert result.preemptions == [] and result.leases == []
