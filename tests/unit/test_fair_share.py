import pytest

from flotilla.scheduling import (
    FairShareState,
    Node,
    Queue,
    adjusted_fair_shares,
    dominant_share,
    fair_shares,
    pick_queue,
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


def test_pick_queue_takes_smallest_cost_over_fair_share():
    # b has the larger cost but twice the share: 0.3/0.5 = 0.6 < 0.2/0.25 = 0.8
    shares = {"a": 0.25, "b": 0.5, "c": 0.25}
    costs = {"a": 0.2, "b": 0.3, "c": 0.25}
    assert pick_queue(["a", "b", "c"], costs, shares) == "b"


def test_pick_queue_breaks_ties_by_name():
    shares = {"b": 0.5, "a": 0.5}
    assert pick_queue(["b", "a"], {"a": 0.1, "b": 0.1}, shares) == "a"


def test_pick_queue_of_no_candidates_is_none():
    assert pick_queue([], {}, {}) is None


def test_state_pops_queue_furthest_below_share_and_tracks_allocation():
    state = FairShareState(
        [Queue("a"), Queue("b")],
        {"a", "b"},
        {"cpu": 4000, "memory": 4000},
        RESOURCES,
        allocations={"a": {"cpu": 2000}},
    )
    state.push("a")
    state.push("b")
    assert state.pop() == "b"
    state.allocate("b", {"cpu": 3000})
    assert state.costs["b"] == 0.75
    state.push("b")
    assert state.pop() == "a"
    assert state.pop() == "b"
    assert state.pop() is None


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
