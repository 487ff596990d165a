import pytest

from flotilla.scheduling import EVICTED_LEVEL, NodeDb, tolerates
from tests.harness.builders import GI, job, node, running


def best_fit(db, job, restrict=None):
    """Where ``db`` would place ``job`` from free resources alone, and why not."""
    found, reason, _ = db.place(job, restrict=restrict)
    return found, reason


NO_SCHEDULE = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}


def test_free_is_allocatable_minus_running_requests():
    db = NodeDb([node("a", 8, 32)], [running(node="a", cpu=3), running("r2", node="a", cpu=1, memory=0)])
    assert db.free("ex/a") == {"cpu": 4000, "memory": 31 * GI}


def test_running_job_on_unknown_node_is_ignored():
    db = NodeDb([node("a", 8)], [running(node="gone", cpu=3, memory=0)])
    assert db.free("ex/a")["cpu"] == 8000


def test_best_fit_picks_the_fuller_node():
    db = NodeDb([node("a", 8), node("b", 8)], [running(node="b", cpu=6, memory=0)])
    found, reason = best_fit(db, job(cpu=1))
    assert (found.name, reason) == ("b", "")


def test_best_fit_orders_by_first_configured_resource_first():
    # a has less cpu free, b less memory free: cpu leads the tuple ordering.
    db = NodeDb([node("a", 2, 64), node("b", 4, 2)])
    assert best_fit(db, job(cpu=1, memory=1))[0].name == "a"
    db_memory_first = NodeDb(
        [node("a", 2, 64), node("b", 4, 2)],
        resources=("memory", "cpu"),
    )
    assert best_fit(db_memory_first, job(cpu=1, memory=1))[0].name == "b"


def test_best_fit_skips_fuller_node_lacking_a_second_resource():
    db = NodeDb([node("a", 2, 0.5), node("b", 4)])
    assert best_fit(db, job(cpu=1, memory=1))[0].name == "b"


def test_bind_takes_resources_so_the_next_job_does_not_fit():
    db = NodeDb([node("a", 1)])
    found, _ = best_fit(db, job("j1"))
    db.bind(found.id, job("j1").requests)
    assert db.free("ex/a")["cpu"] == 0
    assert best_fit(db, job("j2")) == (None, "insufficient cpu")


def test_insufficient_reason_names_the_short_resource():
    db = NodeDb([node("a", 8, 1)])
    assert best_fit(db, job(cpu=1, memory=2)) == (None, "insufficient memory")


def test_insufficient_reason_names_an_unconfigured_resource():
    db = NodeDb([node("a", 8)])
    gpu_job = job(memory=0, extra={"nvidia.com/gpu": 1})
    assert best_fit(db, gpu_job) == (None, "insufficient nvidia.com/gpu")


def test_unschedulable_node_is_skipped():
    db = NodeDb([node("a", 1, unschedulable=True), node("b", 8)])
    assert best_fit(db, job())[0].name == "b"
    assert "ex/a" not in db


def test_only_unschedulable_nodes_means_no_schedulable_nodes():
    db = NodeDb([node("a", 8, unschedulable=True)])
    assert best_fit(db, job()) == (None, "no schedulable nodes")


def test_node_selector_picks_matching_node():
    db = NodeDb([node("a", 2, labels={"zone": "x"}), node("b", 8, labels={"zone": "y"})])
    assert best_fit(db, job(node_selector={"zone": "y"}))[0].name == "b"


def test_node_selector_matching_no_node_is_reported():
    db = NodeDb([node("a", 8, labels={"zone": "x"})])
    assert best_fit(db, job(node_selector={"zone": "z"})) == (None, "no node matches node selector")


def test_untolerated_no_schedule_taint_keeps_job_off_the_node():
    db = NodeDb([node("a", 2, taints=(NO_SCHEDULE,)), node("b", 8)])
    assert best_fit(db, job())[0].name == "b"


def test_taint_not_tolerated_is_reported():
    db = NodeDb([node("a", 8, taints=(NO_SCHEDULE,))])
    assert best_fit(db, job()) == (None, "taint not tolerated: dedicated=gpu:NoSchedule")


def test_tolerated_taint_admits_the_job():
    db = NodeDb([node("a", 2, taints=(NO_SCHEDULE,)), node("b", 8)])
    toleration = {"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}
    assert best_fit(db, job(tolerations=(toleration,)))[0].name == "a"


def test_prefer_no_schedule_taint_does_not_block():
    soft = {"key": "dedicated", "value": "gpu", "effect": "PreferNoSchedule"}
    db = NodeDb([node("a", 8, taints=(soft,))])
    assert best_fit(db, job())[0].name == "a"


def test_no_execute_taint_blocks_like_no_schedule():
    db = NodeDb([node("a", 8, taints=({"key": "k", "effect": "NoExecute"},))])
    assert best_fit(db, job()) == (None, "taint not tolerated: k:NoExecute")


def test_toleration_semantics():
    taint = {"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}
    assert tolerates({"key": "dedicated", "operator": "Equal", "value": "gpu"}, taint)
    assert tolerates({"key": "dedicated", "value": "gpu"}, taint)  # Equal is the default
    assert not tolerates({"key": "dedicated", "operator": "Equal", "value": "cpu"}, taint)
    assert tolerates({"key": "dedicated", "operator": "Exists"}, taint)
    assert not tolerates({"key": "other", "operator": "Exists"}, taint)
    assert tolerates({"operator": "Exists"}, taint)  # empty key + Exists tolerates everything
    assert not tolerates({"operator": "Equal", "value": "gpu"}, taint)
    assert not tolerates({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, taint)
    assert tolerates({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}, taint)


def test_unfit_shape_is_searched_once():
    db = NodeDb([node(f"n{i}", 2) for i in range(50)])
    for i in range(10_000):
        assert best_fit(db, job(f"j{i}", cpu=4)) == (None, "insufficient cpu")
    assert db.stats.node_searches == 1
    assert db.stats.shape_cache_hits == 9_999


def test_unfit_cache_distinguishes_shapes():
    db = NodeDb([node("a", 2)])
    assert best_fit(db, job("big", cpu=4))[0] is None
    assert best_fit(db, job("small", cpu=1))[0] is not None
    assert best_fit(db, job("big-selector", cpu=4, node_selector={"x": "y"}))[1] == (
        "no node matches node selector"
    )
    assert db.stats.node_searches == 3


def test_unbind_returns_resources_and_forgets_unfit_shapes():
    db = NodeDb([node("a", 1)], [running(node="a", cpu=1, memory=0)])
    assert best_fit(db, job("j1"))[0] is None
    db.unbind("ex/a", {"cpu": 1000, "memory": 0})
    assert best_fit(db, job("j2"))[0].name == "a"


def test_bind_keeps_index_order_for_later_searches():
    db = NodeDb([node("a", 8), node("b", 8)])
    assert best_fit(db, job("j0"))[0].name == "a"  # equal free: node id breaks the tie
    db.bind("ex/b", {"cpu": 7000})
    assert best_fit(db, job("j1"))[0].name == "b"
    db.bind("ex/b", {"cpu": 1000})
    assert best_fit(db, job("j2"))[0].name == "a"


# --- affinity, restriction, transactions and preemption -----------------------------------


def tracked(nodes, runs, priorities=None):
    """A db tracking jobs; ``priorities`` maps job id to (priority, preemptible)."""
    priorities = priorities or {}
    return NodeDb(nodes, runs, job_priority=lambda run: priorities.get(run.job_id, (0, True)))


def test_required_node_affinity_picks_matching_node():
    db = NodeDb([node("a", 2, labels={"zone": "x"}), node("b", 8, labels={"zone": "y"})])
    assert best_fit(db, job(node_affinity=((("zone", "In", ("y",)),),)))[0].name == "b"


def test_node_affinity_matching_no_node_is_reported():
    db = NodeDb([node("a", 8, labels={"zone": "x"})])
    assert best_fit(db, job(node_affinity=((("zone", "In", ("z",)),),))) == (
        None,
        "no node matches node affinity",
    )


def test_restriction_limits_nodes_to_one_label_value():
    db = NodeDb([node("a", 2, labels={"rack": "r1"}), node("b", 8, labels={"rack": "r2"})])
    assert best_fit(db, job(), restrict=("rack", "r2"))[0].name == "b"
    assert db.label_values("rack") == ["r1", "r2"]


def test_rollback_restores_free_resources_and_index_order():
    db = NodeDb([node("a", 8), node("b", 8)])
    db.begin()
    db.bind("ex/b", {"cpu": 7000})
    assert best_fit(db, job("j", cpu=2))[0].name == "a"
    db.rollback()
    assert db.free("ex/b")["cpu"] == 8000
    assert best_fit(db, job("k", cpu=1))[0].name == "a"  # equal again: node id breaks the tie


def test_rollback_forgets_shapes_found_unfit_inside_the_transaction():
    db = NodeDb([node("a", 2)])
    db.begin()
    db.bind("ex/a", {"cpu": 2000})
    assert best_fit(db, job("j1", cpu=2))[0] is None
    db.rollback()
    assert best_fit(db, job("j2", cpu=2))[0].name == "a"


def test_evicted_jobs_keep_their_resources_until_rebound_or_dropped():
    db = tracked([node("a", 2)], [running("r", node="a", cpu=2, memory=0)])
    db.evict(["r"])
    assert db.is_evicted("r")
    assert best_fit(db, job("j", cpu=1))[0] is None
    assert db.rebind("r", 0)
    assert not db.is_evicted("r")


def test_fair_preemption_takes_the_evicted_job_rescheduled_last():
    db = tracked(
        [node("a", 1), node("b", 1)],
        [running("r1", node="a", cpu=1, memory=0), running("r2", node="b", cpu=1, memory=0)],
    )
    db.evict(["r1", "r2"])
    db.set_eviction_order(["r2", "r1"])
    found, reason, victims = db.place(job("j", cpu=1), fair=True)
    assert (found.name, reason, victims) == ("a", "", ["r1"])
    assert db.rebind("r2", 0)  # r2 is untouched and goes back


def test_rebind_fails_once_an_urgent_job_took_the_room():
    db = tracked([node("a", 1)], [running("r", node="a", cpu=1, memory=0)], {"r": (100, True)})
    db.evict(["r"])
    found, _, _ = db.place(job("u", cpu=1), 300, levels=(100,))
    db.bind(found.id, {"cpu": 1000}, job_id="u", priority=300)
    assert db.oversubscribed == {"ex/a": ["u"]}
    assert not db.rebind("r", 100)


def test_urgency_preemption_only_counts_lower_preemptible_jobs():
    runs = [running("fixed", node="a", cpu=1, memory=0), running("low", node="b", cpu=1, memory=0)]
    db = tracked([node("a", 1), node("b", 1)], runs, {"fixed": (100, False), "low": (100, True)})
    found, _, _ = db.place(job("u", cpu=1), 300, levels=(100,))
    assert found.name == "b"


def test_oversubscribed_victims_are_the_jobs_below_the_oversubscribing_one():
    runs = [running("l1", node="a", cpu=1, memory=0), running("l2", node="a", cpu=1, memory=0)]
    db = tracked([node("a", 2)], runs, {"l1": (100, True), "l2": (100, True)})
    db.bind("ex/a", {"cpu": 1000}, job_id="u", priority=300, preemptible=True)
    assert sorted(db.oversubscribed_victims("ex/a")) == ["l1", "l2"]


def test_evicted_level_is_below_every_priority():
    assert EVICTED_LEVEL < -(2**31)


def test_urgency_search_is_refused_by_a_db_that_does_not_track_jobs():
    db = NodeDb([node("a", 1)], [running(node="a", cpu=1, memory=0)])
    with pytest.raises(ValueError, match="tracks jobs"):
        db.place(job(cpu=1), 10, levels=(0,))
