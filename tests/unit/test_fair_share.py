import pytest

from flotilla.scheduling import (
    Node,
    Queue,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
    adjusted_fair_shares,
    dominant_share,
    fair_shares,
    schedule,
    total_capacity,
)

RESOURCES = ("cpu", "memory")


def test_total_capacity_sums_allocatable_of_schedulable_nodes_only():
    nodes = [
        Node("ex", "a", "default", {"cpu": 4000, "memory": 100}),
        Node("ex", "b", "default", {"cpu": 2000, "memory": 50, "nvidia.com/gpu": 1000}),
        Node("ex", "c", "default", {"cpu": 8000, "memory": 800}, unschedulable=True),
    ]
    assert total_capacity(nodes) == {"cpu": 6000, "memory": 150, "nvidia.com/gpu": 1000}


def test_cost_is_the_dominant_resource_share():
    total = {"cpu": 10000, "memory": 1000}
    assert dominant_share({"cpu": 2000, "memory": 500}, total, RESOURCES) == 0.5
    assert dominant_share({"cpu": 6000, "memory": 100}, total, RESOURCES) == 0.6


def test_cost_ignores_resources_not_configured():
    total = {"cpu": 10000, "memory": 1000, "nvidia.com/gpu": 1000}
    assert dominant_share({"cpu": 1000, "nvidia.com/gpu": 1000}, total, RESOURCES) == 0.1


def test_cost_skips_resources_the_pool_has_none_of():
    assert dominant_share({"cpu": 1000, "memory": 50}, {"cpu": 4000}, RESOURCES) == 0.25


def test_fair_share_is_weight_over_sum_of_active_weights():
    queues = [Queue("a", 1.0), Queue("b", 2.0)]
    shares = fair_shares(queues, {"a", "b"})
    assert shares["a"] == pytest.approx(2 / 3)
    assert shares["b"] == pytest.approx(1 / 3)


def test_inactive_queues_take_no_fair_share():
    queues = [Queue("a"), Queue("b"), Queue("idle")]
    assert fair_shares(queues, {"a", "b"}) == {"a": 0.5, "b": 0.5}


def test_next_slot_goes_to_the_queue_furthest_below_its_fair_share_by_weight():
    # b holds more (2 of 4 cpu against a's 1) but has twice a's weight (a's priority factor is 2):
    # with the job added, b's cost over its share is (3/4) / (2/3) = 1.125, a's (2/4) / (1/3) = 1.5.
    runs = [
        RunningJob("ra", "a", "run-ra", "ex", "n", {"cpu": 1000}),
        RunningJob("rb1", "b", "run-rb1", "ex", "n", {"cpu": 1000}),
        RunningJob("rb2", "b", "run-rb2", "ex", "n", {"cpu": 1000}),
    ]
    queued = [QueuedJob(f"{q}-0", q, "s", 0, 0.0, {"cpu": 1000}) for q in ("a", "b")]
    nodes = [Node("ex", "n", "default", {"cpu": 4000, "memory": 1000})]
    result = schedule(queued, runs, nodes, [Queue("a", 2.0), Queue("b", 1.0)], SchedulingConfig())
    assert [lease.job_id for lease in result.leases] == ["b-0"]


def test_on_an_exact_tie_the_queue_whose_name_sorts_first_goes_first():
    queued = [QueuedJob(f"{q}-0", q, "s", 0, 0.0, {"cpu": 1000}) for q in ("b", "a")]
    nodes = [Node("ex", "n", "default", {"cpu": 1000, "memory": 1000})]
    result = schedule(queued, [], nodes, [Queue("b"), Queue("a")], SchedulingConfig())
    assert [lease.job_id for lease in result.leases] == ["a-0"]


def test_queue_rejects_non_positive_priority_factor():
    with pytest.raises(ValueError):
        Queue("a", priority_factor=0)


def test_adjusted_fair_share_gives_what_a_queue_does_not_want_to_the_others():
    assert adjusted_fair_shares({"a": 0.5, "b": 0.5}, {"a": 0.1, "b": 1.0}) == pytest.approx(
        {"a": 0.1, "b": 0.9}
    )


def test_adjusted_fair_share_hands_the_excess_out_by_weight():
    shares = {"a": 0.5, "b": 0.25, "c": 0.25}
    adjusted = adjusted_fair_shares(shares, {"a": 2.0, "b": 2.0, "c": 0.1})
    assert adjusted == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.1})


def test_adjusted_fair_share_redistributes_repeatedly():
    # c's excess lifts b above its demand, whose own excess then goes to a.
    adjusted = adjusted_fair_shares({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, {"a": 1.0, "b": 0.4, "c": 0.0})
    assert adjusted == pytest.approx({"a": 0.6, "b": 0.4, "c": 0.0})


def test_adjusted_fair_shares_meet_every_demand_when_demand_is_small():
    assert adjusted_fair_shares({"a": 0.5, "b": 0.5}, {"a": 0.2, "b": 0.3}) == pytest.approx(
        {"a": 0.2, "b": 0.3}
    )


def test_adjusted_fair_share_takes_a_demand_function_that_may_stop_early():
    asked = []

    def demand(name, offer):
        asked.append((name, offer))
        return offer if name == "a" else 0.25  # a: "at least the offer"

    assert adjusted_fair_shares({"a": 0.5, "b": 0.5}, demand) == pytest.approx({"a": 0.75, "b": 0.25})
