from collections import Counter

from flotilla.scheduling import Lease, Queue, SchedulingConfig, schedule
from tests.harness.builders import job, node, running

CONFIG = SchedulingConfig()


def jobs(queue, n, cpu=1, **kwargs):
    return [job(f"{queue}-{i}", cpu=cpu, queue=queue, submitted_at=float(i), **kwargs) for i in range(n)]


def per_queue(result):
    return Counter(lease.queue for lease in result.leases)


def test_lease_names_executor_node_and_pool():
    result = schedule([job("j")], [], [node("n1", executor="ex-1", pool="gpu")], [Queue("a")], CONFIG)
    assert result.leases == [Lease("j", "a", "ex-1", "n1", "gpu")]
    assert result.preemptions == []
    assert result.unschedulable == {}


def test_equal_queues_split_one_node_two_each():
    result = schedule(jobs("a", 4) + jobs("b", 4), [], [node("n")], [Queue("a"), Queue("b")], CONFIG)
    assert per_queue(result) == {"a": 2, "b": 2}


def test_priority_factors_one_and_two_split_six_slots_four_to_two():
    result = schedule(
        jobs("a", 6) + jobs("b", 6), [], [node("n", 6)], [Queue("a", 1.0), Queue("b", 2.0)], CONFIG
    )
    assert per_queue(result) == {"a": 4, "b": 2}


def test_queue_using_its_share_gets_nothing_while_other_queue_waits():
    # a already runs half of the node (its fair share); the free half goes to b.
    result = schedule(
        jobs("a", 2) + jobs("b", 2),
        [running("ra1", "a", "n"), running("ra2", "a", "n")],
        [node("n")],
        [Queue("a"), Queue("b")],
        CONFIG,
    )
    assert per_queue(result) == {"b": 2}
    assert result.unschedulable == {"a-0": "insufficient cpu", "a-1": "insufficient cpu"}


def test_running_jobs_occupy_their_nodes():
    result = schedule(jobs("a", 4), [running("r", "b", "n", 3)], [node("n")], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["a-0"]


def test_running_job_on_vanished_node_still_counts_towards_its_queue():
    # a holds 2 of 4 cpus on a node that has gone, so b is further below its share.
    result = schedule(
        jobs("a", 4) + jobs("b", 4),
        [running("ra1", "a", "gone", 2)],
        [node("n")],
        [Queue("a"), Queue("b")],
        CONFIG,
    )
    assert per_queue(result) == {"a": 1, "b": 3}


def test_best_fit_places_job_on_the_fuller_node():
    nodes = [node("empty"), node("busy")]
    result = schedule([job("j")], [running("r", "a", "busy", 2)], nodes, [Queue("a")], CONFIG)
    assert result.leases[0].node == "busy"


def test_node_selector_steers_job_to_matching_node():
    nodes = [node("x", labels={"zone": "x"}), node("y", labels={"zone": "y"})]
    result = schedule([job("j", node_selector={"zone": "y"})], [], nodes, [Queue("a")], CONFIG)
    assert result.leases[0].node == "y"


def test_node_selector_matching_nothing_is_unschedulable():
    result = schedule([job("j", node_selector={"zone": "z"})], [], [node("n")], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable == {"j": "no node matches node selector"}


def test_taint_admits_only_tolerating_jobs():
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    toleration = {"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}
    result = schedule(
        [job("plain"), job("tolerant", tolerations=(toleration,))],
        [],
        [node("tainted", taints=(taint,))],
        [Queue("a")],
        CONFIG,
    )
    assert [lease.job_id for lease in result.leases] == ["tolerant"]
    assert result.unschedulable == {"plain": "taint not tolerated: dedicated=gpu:NoSchedule"}


def test_unschedulable_node_is_skipped():
    nodes = [node("cordoned", 1, unschedulable=True), node("open")]
    result = schedule([job("j")], [], nodes, [Queue("a")], CONFIG)
    assert result.leases[0].node == "open"


def test_jobs_within_a_queue_go_by_priority_then_submission_then_id():
    queued = [
        job("late-low", priority=5, submitted_at=1.0),
        job("z-urgent", priority=1, submitted_at=3.0),
        job("a-urgent", priority=1, submitted_at=3.0),
        job("early-urgent", priority=1, submitted_at=2.0),
    ]
    result = schedule(queued, [], [node("n", 3)], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["early-urgent", "a-urgent", "z-urgent"]


def test_cordoned_queue_is_skipped_with_reason():
    result = schedule(
        [job("c", queue="closed"), job("o", queue="open")],
        [],
        [node("n")],
        [Queue("closed", cordoned=True), Queue("open")],
        CONFIG,
    )
    assert [lease.job_id for lease in result.leases] == ["o"]
    assert result.unschedulable == {"c": "queue cordoned"}


def test_job_of_unknown_queue_is_skipped_with_reason():
    result = schedule([job("j", queue="nobody")], [], [node("n")], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable == {"j": "unknown queue"}


def test_unfit_job_does_not_block_its_queue():
    result = schedule(
        [job("huge", cpu=64, priority=0), job("small", priority=1)], [], [node("n")], [Queue("a")], CONFIG
    )
    assert [lease.job_id for lease in result.leases] == ["small"]
    assert result.unschedulable == {"huge": "insufficient cpu"}


def test_identical_unfit_jobs_cost_one_node_search():
    queued = jobs("a", 20_000, cpu=64) + jobs("b", 20_000, cpu=64)
    nodes = [node(f"n{i}") for i in range(100)]
    result = schedule(queued, [], nodes, [Queue("a"), Queue("b")], CONFIG)
    assert len(result.unschedulable) == 40_000
    assert result.stats.node_searches == 1
    assert result.stats.shape_cache_hits == 39_999


def test_max_jobs_per_cycle_caps_leases():
    result = schedule(
        jobs("a", 10), [], [node("n", 10)], [Queue("a")], SchedulingConfig(max_jobs_per_cycle=3)
    )
    assert [lease.job_id for lease in result.leases] == ["a-0", "a-1", "a-2"]
    assert result.unschedulable == {}


def test_fair_shares_and_costs_are_reported():
    result = schedule(
        jobs("a", 1), [running("rb", "b", "n")], [node("n")], [Queue("a"), Queue("b"), Queue("idle")], CONFIG
    )
    assert result.stats.fair_shares == {"a": 0.5, "b": 0.5}
    assert result.stats.costs == {"a": 0.25, "b": 0.25}


def test_schedule_is_deterministic():
    queued = jobs("a", 5) + jobs("b", 5) + jobs("c", 5)
    args = ([node("n1"), node("n2")], [Queue("a"), Queue("b"), Queue("c")], CONFIG)
    first = schedule(queued, [], *args)
    second = schedule(list(reversed(queued)), [], *args)
    assert first.leases == second.leases
