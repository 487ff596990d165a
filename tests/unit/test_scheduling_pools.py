"""Pools are scheduled one after another, each with its own fair share."""

from collections import Counter

from flotilla.scheduling import Queue, SchedulingConfig, schedule
from tests.harness.builders import job, node, running

CONFIG = SchedulingConfig()


def jobs(queue, n, pools=(), start=0):
    return [job(f"{queue}-{i}", queue, submitted_at=float(i), pools=pools) for i in range(start, start + n)]


def test_each_pool_has_its_own_fair_share():
    # a fills the cpu pool; that does not count against it in the gpu pool.
    runs = [running(f"r{i}", "a", "c1", memory=0, run_id="r") for i in range(4)]
    result = schedule(
        jobs("a", 4, pools=("gpu",)) + jobs("b", 4, pools=("gpu",)),
        runs,
        [node("c1", pool="cpu"), node("g1", pool="gpu")],
        [Queue("a"), Queue("b")],
        CONFIG,
    )
    assert Counter(lease.queue for lease in result.leases) == {"a": 2, "b": 2}
    assert result.stats.pools["gpu"].fair_shares == {"a": 0.5, "b": 0.5}
    assert result.stats.pools["cpu"].costs == {"a": 1.0}


def test_job_restricted_to_a_pool_only_goes_there():
    result = schedule(
        jobs("a", 1, pools=("gpu",)),
        [],
        [node("c1", pool="cpu"), node("g1", pool="gpu", cpu=1)],
        [Queue("a")],
        CONFIG,
    )
    assert [(lease.node, lease.pool) for lease in result.leases] == [("g1", "gpu")]


def test_job_restricted_to_an_unknown_pool_is_unschedulable():
    result = schedule(jobs("a", 1, pools=("tpu",)), [], [node("c1", pool="cpu")], [Queue("a")], CONFIG)
    assert result.unschedulable == {"a-0": "no nodes in pools tpu"}


def test_job_leased_in_one_pool_is_not_leased_again_in_the_next():
    result = schedule(
        jobs("a", 6), [], [node("p1", pool="one"), node("p2", pool="two")], [Queue("a")], CONFIG
    )
    assert sorted(lease.job_id for lease in result.leases) == [f"a-{i}" for i in range(6)]
    assert Counter(lease.pool for lease in result.leases) == {"one": 4, "two": 2}


def test_job_unschedulable_in_every_pool_reports_each_pools_reason():
    big = job("big", cpu=64, memory=0)
    result = schedule([big], [], [node("p1", pool="one"), node("p2", pool="two")], [Queue("a")], CONFIG)
    assert result.unschedulable == {"big": "pool one: insufficient cpu; pool two: insufficient cpu"}
