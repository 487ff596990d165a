"""Gang scheduling: all or nothing, completeness, node uniformity."""

from flotilla.scheduling import Queue, SchedulingConfig, schedule
from tests.harness.builders import job, node

CONFIG = SchedulingConfig()


def member(job_id, gang, cardinality, cpu=1, queue="a", label="", submitted_at=0.0):
    return job(
        job_id,
        queue,
        cpu,
        submitted_at=submitted_at,
        gang_id=gang,
        gang_cardinality=cardinality,
        gang_node_uniformity_label=label,
    )


def gang(name, n, cpu=1, label="", submitted_at=0.0, queue="a"):
    return [member(f"{name}-{i}", name, n, cpu, queue, label, submitted_at) for i in range(n)]


def single(job_id, cpu=1, submitted_at=1.0, queue="a"):
    return job(job_id, queue, cpu, submitted_at=submitted_at)


def test_gang_members_are_leased_together():
    result = schedule(gang("g", 3), [], [node("n1", 2), node("n2", 2)], [Queue("a")], CONFIG)
    assert sorted(lease.job_id for lease in result.leases) == ["g-0", "g-1", "g-2"]


def test_gang_that_does_not_fit_leases_no_member():
    result = schedule(gang("g", 3, cpu=2), [], [node("n", 4)], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable == dict.fromkeys(["g-0", "g-1", "g-2"], "gang does not fit: insufficient cpu")


def test_failed_gang_gives_back_the_nodes_it_had_reserved():
    # The gang's first two members fitted before the third did not; their reservation is
    # rolled back, so a later 4-cpu job still finds the node empty.
    queued = gang("g", 3, cpu=2) + [single("big", cpu=4)]
    result = schedule(queued, [], [node("n", 4)], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["big"]


def test_failed_gang_does_not_leave_its_members_shape_marked_unfit():
    queued = gang("g", 3, cpu=2) + [single("same-shape", cpu=2)]
    result = schedule(queued, [], [node("n", 4)], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["same-shape"]


def test_identical_unfit_gangs_are_answered_from_the_cache():
    queued = []
    for i in range(50):
        queued += gang(f"g{i}", 3, cpu=2, submitted_at=float(i))
    result = schedule(queued, [], [node("n", 4)], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.stats.node_searches <= 3


def test_incomplete_gang_waits_with_reason():
    queued = gang("g", 4)[:2]
    result = schedule(queued, [], [node("n", 8)], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable == dict.fromkeys(["g-0", "g-1"], "gang incomplete: 2 of 4 members queued")


def test_gang_members_disagreeing_on_cardinality_are_unschedulable():
    queued = [member("g-0", "g", 2), member("g-1", "g", 3)]
    result = schedule(queued, [], [node("n", 8)], [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable["g-0"] == "gang members disagree on gang cardinality"


def test_gang_with_uniformity_label_lands_on_nodes_sharing_one_value():
    nodes = [
        node("r1-a", 1, labels={"rack": "r1"}),
        node("r1-b", 1, labels={"rack": "r1"}),
        node("r2-a", 1, labels={"rack": "r2"}),
        node("r2-b", 1, labels={"rack": "r2"}),
        node("r2-c", 1, labels={"rack": "r2"}),
    ]
    result = schedule(gang("g", 3, label="rack"), [], nodes, [Queue("a")], CONFIG)
    assert sorted(lease.node for lease in result.leases) == ["r2-a", "r2-b", "r2-c"]


def test_gang_with_uniformity_label_does_not_spread_over_values():
    nodes = [node("r1", 2, labels={"rack": "r1"}), node("r2", 2, labels={"rack": "r2"})]
    result = schedule(gang("g", 3, label="rack"), [], nodes, [Queue("a")], CONFIG)
    assert result.leases == []
    assert result.unschedulable["g-0"].startswith("gang does not fit on any rack")


def test_gang_with_uniformity_label_takes_the_first_value_that_fits():
    nodes = [node("r1", 4, labels={"rack": "r1"}), node("r2", 4, labels={"rack": "r2"})]
    result = schedule(gang("g", 2, label="rack"), [], nodes, [Queue("a")], CONFIG)
    assert {lease.node for lease in result.leases} == {"r1"}


def test_gang_counts_its_cardinality_towards_max_jobs_per_cycle():
    queued = gang("g", 3) + [single("s", submitted_at=5.0)]
    result = schedule(queued, [], [node("n", 8)], [Queue("a")], SchedulingConfig(max_jobs_per_cycle=2))
    assert result.leases == []
    assert result.unschedulable == {}


def test_gang_is_scheduled_at_its_first_members_place_in_the_queue():
    queued = (
        [single("early", submitted_at=0.0)]
        + gang("g", 2, submitted_at=1.0)
        + [single("late", submitted_at=2.0)]
    )
    result = schedule(queued, [], [node("n", 8)], [Queue("a")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["early", "g-0", "g-1", "late"]


def test_whole_gang_counts_towards_fair_share_when_choosing_the_next_queue():
    # a's next gang would take it to 3/4 of the node, b's single job to 1/4: b goes first.
    queued = gang("g", 3, queue="a") + [single("b-0", queue="b")]
    result = schedule(queued, [], [node("n", 4)], [Queue("a"), Queue("b")], CONFIG)
    assert [lease.job_id for lease in result.leases] == ["b-0", "g-0", "g-1", "g-2"]
