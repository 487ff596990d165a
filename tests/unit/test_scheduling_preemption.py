"""Urgency-based preemption, preemption to fair share and preemption stability."""

import random

from flotilla.scheduling import PriorityClass, Queue, RunningJob, SchedulingConfig, schedule
from tests.harness.builders import job, node, running

LOW = PriorityClass("low", 100, preemptible=True)
HIGH = PriorityClass("high", 200, preemptible=True)
URGENT = PriorityClass("urgent", 300, preemptible=False)
FIXED = PriorityClass("fixed", 100, preemptible=False)
CLASSES = {pc.name: pc for pc in (LOW, HIGH, URGENT, FIXED)}


def config(**kwargs):
    return SchedulingConfig(priority_classes=CLASSES, default_priority_class="low", **kwargs)


def jobs(queue, n, cpu=1, pc="low", prefix=None):
    return [
        job(f"{prefix or queue}-{i}", queue, cpu, priority_class=pc, submitted_at=float(i)) for i in range(n)
    ]


def advance(result, queued, runs):
    """The next cycle's inputs: leased jobs run, preempted jobs are gone, the rest stay queued."""
    by_id = {j.job_id: j for j in queued}
    leased = {lease.job_id: lease for lease in result.leases}
    preempted = set(result.preemptions)
    next_running = [r for r in runs if r.job_id not in preempted]
    for job_id, lease in leased.items():
        j = by_id[job_id]
        next_running.append(
            RunningJob(
                j.job_id,
                j.queue,
                "run-" + j.job_id,
                lease.executor,
                lease.node,
                j.requests,
                priority_class=j.priority_class,
                priority=j.priority,
                submitted_at=j.submitted_at,
            )
        )
    return [j for j in queued if j.job_id not in leased], next_running


def leased(result):
    return sorted(lease.job_id for lease in result.leases)


# --- urgency-based preemption --------------------------------------------------------------


def test_urgent_job_preempts_a_lower_priority_preemptible_job_when_it_does_not_fit():
    result = schedule(
        [job("u", priority_class="urgent")],
        [running("r", "a", "n", 1, priority_class="low")],
        [node("n", 1)],
        [Queue("a")],
        config(),
    )
    assert leased(result) == ["u"]
    assert result.preemptions == ["r"]
    assert result.preemption_reasons == {"r": "preempted by higher priority job u"}


def test_lower_priority_job_never_preempts_a_higher_priority_job():
    result = schedule(
        [job("l", priority_class="low")],
        [running("h", "a", "n", priority_class="high")],
        [node("n", 1)],
        [Queue("a")],
        config(),
    )
    assert result.leases == [] and result.preemptions == []
    assert result.unschedulable == {"l": "insufficient cpu"}


def test_equal_priority_jobs_do_not_preempt_each_other_by_urgency():
    result = schedule(
        [job("h2", priority_class="high")],
        [running("h1", "a", "n", priority_class="high")],
        [node("n", 1)],
        [Queue("a")],
        config(),
    )
    assert result.leases == [] and result.preemptions == []


def test_non_preemptible_job_is_never_preempted_by_urgency():
    result = schedule(
        [job("u", priority_class="urgent")],
        [running("f", "a", "n", priority_class="fixed")],
        [node("n", 1)],
        [Queue("a")],
        config(),
    )
    assert result.leases == [] and result.preemptions == []
    assert result.unschedulable == {"u": "insufficient cpu"}


def test_urgent_job_takes_a_free_node_rather_than_preempting():
    result = schedule(
        [job("u", priority_class="urgent")],
        [running("r", "a", "busy", priority_class="low")],
        [node("busy", 1), node("free", 1)],
        [Queue("a")],
        config(),
    )
    assert [(lease.job_id, lease.node) for lease in result.leases] == [("u", "free")]
    assert result.preemptions == []


def test_urgency_preemption_preempts_the_lowest_priority_it_can():
    result = schedule(
        [job("u", priority_class="urgent")],
        [
            running("h", "a", "n-high", priority_class="high"),
            running("l", "a", "n-low", priority_class="low"),
        ],
        [node("n-high", 1), node("n-low", 1)],
        [Queue("a")],
        config(),
    )
    assert [(lease.job_id, lease.node) for lease in result.leases] == [("u", "n-low")]
    assert result.preemptions == ["l"]


def test_urgency_preemption_preempts_only_what_the_urgent_job_needs():
    runs = [running(f"r{i}", "a", "n", priority_class="low", submitted_at=float(i)) for i in range(4)]
    result = schedule([job("u", priority_class="urgent")], runs, [node("n", 4)], [Queue("a")], config())
    assert leased(result) == ["u"]
    assert result.preemptions == ["r3"]  # the last in queue order; r0..r2 go back on the node


# --- preemption to fair share --------------------------------------------------------------


def test_new_queue_takes_half_of_a_full_node_by_preempting_the_latest_jobs_of_the_other():
    runs = [running(f"a-{i}", "a", "n", priority_class="low", submitted_at=float(i)) for i in range(32)]
    result = schedule(jobs("b", 32), runs, [node("n", 32)], [Queue("a"), Queue("b")], config())
    assert leased(result) == sorted(f"b-{i}" for i in range(16))
    assert sorted(result.preemptions) == sorted(f"a-{i}" for i in range(16, 32))
    assert result.preemption_reasons["a-31"].startswith("preempted to fair share by b-")


def test_weighted_queues_rebalance_to_their_weights():
    # a has priority factor 2 (weight 1/2), b factor 1: b is entitled to 2/3 of the node.
    runs = [running(f"a-{i}", "a", "n", priority_class="low", submitted_at=float(i)) for i in range(32)]
    result = schedule(jobs("b", 32), runs, [node("n", 32)], [Queue("a", 2.0), Queue("b", 1.0)], config())
    assert len(result.leases) == 21
    assert sorted(result.preemptions) == sorted(f"a-{i}" for i in range(11, 32))


def test_queue_within_its_protected_fraction_of_fair_share_keeps_its_jobs():
    runs = [running(f"a-{i}", "a", "n", priority_class="low", submitted_at=float(i)) for i in range(32)]
    result = schedule(
        jobs("b", 32),
        runs,
        [node("n", 32)],
        [Queue("a"), Queue("b")],
        config(protected_fraction_of_fair_share=2.0),
    )
    assert result.leases == [] and result.preemptions == []
    assert result.stats.jobs_evicted == 0


def test_fair_share_preemption_never_preempts_a_more_urgent_job():
    runs = [running(f"a-{i}", "a", "n", priority_class="high", submitted_at=float(i)) for i in range(32)]
    result = schedule(jobs("b", 32, pc="low"), runs, [node("n", 32)], [Queue("a"), Queue("b")], config())
    assert result.leases == [] and result.preemptions == []
    assert result.stats.jobs_evicted == 32  # evicted, but only a job as urgent could take their place


def test_urgency_preemption_never_takes_the_place_of_an_evicted_more_urgent_job():
    # a is above its share, so its top-class job is evicted; b's high job (b's turn comes
    # first: b has four times a's weight) may preempt only what is below it: its own low job,
    # not a's evicted top job.
    top = PriorityClass("top", 400, preemptible=True)
    cfg = SchedulingConfig(priority_classes={**CLASSES, "top": top}, default_priority_class="low")
    runs = [
        running("a-top", "a", "n1", priority_class="top"),
        running("b-low", "b", "n2", priority_class="low"),
    ]
    result = schedule(
        [job("b-high", "b", priority_class="high")],
        runs,
        [node("n1", 1), node("n2", 1)],
        [Queue("a", 1.0), Queue("b", 0.25)],
        cfg,
    )
    assert [(lease.job_id, lease.node) for lease in result.leases] == [("b-high", "n2")]
    assert result.preemptions == ["b-low"]


def test_non_preemptible_jobs_are_not_preempted_to_fair_share():
    runs = [running(f"a-{i}", "a", "n", priority_class="fixed") for i in range(32)]
    result = schedule(jobs("b", 32), runs, [node("n", 32)], [Queue("a"), Queue("b")], config())
    assert result.leases == [] and result.preemptions == []


def test_jobs_of_an_unknown_queue_are_not_preempted():
    runs = [running(f"x-{i}", "gone", "n", priority_class="low") for i in range(8)]
    result = schedule(jobs("a", 32), runs, [node("n", 32)], [Queue("a")], config())
    assert len(result.leases) == 24
    assert result.preemptions == []


def test_queue_within_its_demand_adjusted_share_is_not_evicted():
    # b wants only 4 of 32 cpus, so a's adjusted share is 28/32 and a at 28 is not evicted
    # (compared with the plain fair share of 1/2 it would be).
    runs = [running(f"a-{i}", "a", "n", priority_class="low", submitted_at=float(i)) for i in range(28)]
    result = schedule(jobs("b", 4), runs, [node("n", 32)], [Queue("a"), Queue("b")], config())
    assert len(result.leases) == 4
    assert result.stats.jobs_evicted == 0
    assert result.stats.adjusted_fair_shares == {"a": 28 / 32, "b": 4 / 32}


def test_evicted_job_that_refits_on_its_node_is_not_preempted():
    # a is above its share and evicted, but b's jobs can only use the other node.
    runs = [running(f"a-{i}", "a", "n1", priority_class="low", submitted_at=float(i)) for i in range(6)]
    nodes = [node("n1", 6), node("n2", 4, 256, labels={"zone": "z"})]
    b_jobs = [
        job(f"b-{i}", "b", memory=0, node_selector={"zone": "z"}, priority_class="low") for i in range(8)
    ]
    result = schedule(b_jobs, runs, nodes, [Queue("a"), Queue("b")], config())
    assert result.stats.jobs_evicted == 6
    assert result.preemptions == []
    assert len(result.leases) == 4


def test_preemption_that_does_not_improve_fairness_is_avoided():
    # b's one job would need the whole node: taking it would leave a further below its share
    # than b is now.
    runs = [running(f"a-{i}", "a", "n", priority_class="low", submitted_at=float(i)) for i in range(32)]
    for names in (("a", "b"), ("b", "a")):
        big = names[1]
        result = schedule(
            [job("big", big, 32, priority_class="low")],
            [
                running(r.job_id, names[0], "n", priority_class="low", submitted_at=r.submitted_at)
                for r in runs
            ],
            [node("n", 32)],
            [Queue("a"), Queue("b")],
            config(),
        )
        assert result.leases == [] and result.preemptions == [], names


def test_preemption_to_fair_share_frees_a_whole_node_for_a_big_job():
    runs = [
        running(f"a-{i}", "a", f"n{i // 32}", priority_class="low", submitted_at=float(i)) for i in range(64)
    ]
    result = schedule(
        [job("big", "b", 32, priority_class="low")],
        runs,
        [node("n0", 32), node("n1", 32)],
        [Queue("a"), Queue("b")],
        config(),
    )
    assert [(lease.job_id, lease.node) for lease in result.leases] == [("big", "n1")]
    assert sorted(result.preemptions) == sorted(f"a-{i}" for i in range(32, 64))


def test_preempting_one_member_of_a_running_gang_preempts_the_whole_gang():
    runs = [
        running("g-0", "a", "n1", priority_class="low", gang_id="g"),
        running("g-1", "a", "n2", priority_class="low", gang_id="g"),
    ]
    result = schedule(
        [job("b-0", "b", priority_class="low")],
        runs,
        [node("n1", 1), node("n2", 1)],
        [Queue("a"), Queue("b")],
        config(),
    )
    assert leased(result) == ["b-0"]
    assert sorted(result.preemptions) == ["g-0", "g-1"]


def test_running_gang_with_a_member_that_cannot_be_evicted_is_not_evicted():
    # g-1 runs on a cordoned node, so the gang could not be rescheduled whole: leave it be.
    runs = [
        running("g-0", "a", "n1", priority_class="low", gang_id="g"),
        running("g-1", "a", "n2", priority_class="low", gang_id="g"),
    ]
    nodes = [node("n1", 1), node("n2", 1, 1, unschedulable=True)]
    result = schedule(
        [job("b-0", "b", priority_class="low")], runs, nodes, [Queue("a"), Queue("b")], config()
    )
    assert result.preemptions == [] and result.leases == []
    assert result.stats.jobs_evicted == 0


# --- stability -----------------------------------------------------------------------------


def test_rerunning_the_cycle_on_its_own_output_preempts_nothing_more():
    queued = jobs("b", 32)
    runs = [running(f"a-{i}", "a", "n", priority_class="low", submitted_at=float(i)) for i in range(32)]
    first = schedule(queued, runs, [node("n", 32)], [Queue("a"), Queue("b")], config())
    assert len(first.preemptions) == 16
    queued, runs = advance(first, queued, runs)
    resubmitted = [
        job(f"{j}-again", "a", priority_class="low", submitted_at=100.0 + i)
        for i, j in enumerate(first.preemptions)
    ]
    second = schedule(queued + resubmitted, runs, [node("n", 32)], [Queue("a"), Queue("b")], config())
    assert second.preemptions == [] and second.leases == []


def test_cycle_settles_what_its_own_preemptions_make_possible():
    # u needs r-high's room; only once r-high is gone does h (above r-low) fit, which a later
    # cycle would otherwise do by preempting r-low.
    runs = [
        running("r-high", "a", "n", 2, priority_class="high"),
        running("r-low", "a", "n", 1, priority_class="low"),
        running("r-fixed", "a", "n", 1, priority_class="fixed"),
    ]
    queued = [
        job("u", "a", 2, priority_class="urgent"),
        job("h", "a", 1, priority_class="high", submitted_at=1.0),
    ]
    result = schedule(queued, runs, [node("n", 4)], [Queue("a")], config())
    assert leased(result) == ["h", "u"]
    assert sorted(result.preemptions) == ["r-high", "r-low"]
    queued, runs = advance(result, queued, runs)
    again = schedule(queued, runs, [node("n", 4)], [Queue("a")], config())
    assert again.preemptions == [] and again.leases == []


def test_cycle_settles_a_queue_its_own_leases_took_above_its_share():
    # b's big job only fits on x, where a runs a-0; a is within its share so nothing is evicted,
    # then a's new jobs (which only fit on y) take it above its share: the next cycle would
    # evict a and give a-0's room to b.
    zone = [
        node("x", 2, 256, labels={"zone": "x"}),
        node("y", 2, 256, labels={"zone": "y"}),
    ]

    def on(zone_name, job_id, queue, cpu, t):
        return job(
            job_id,
            queue,
            cpu,
            memory=0,
            job_set="s",
            submitted_at=t,
            node_selector={"zone": zone_name},
            priority_class="low",
        )

    queues = [Queue("a", 3.0), Queue("b", 1.0)]
    runs = [running("a-0", "a", "x", priority_class="low")]
    queued = [on("y", "a-1", "a", 1, 1.0), on("y", "a-2", "a", 1, 2.0), on("x", "b-0", "b", 2, 0.0)]
    result = schedule(queued, runs, zone, queues, config())
    assert leased(result) == ["a-1", "a-2", "b-0"]
    assert result.preemptions == ["a-0"]
    queued, runs = advance(result, queued, runs)
    again = schedule(queued, runs, zone, queues, config())
    assert again.preemptions == [] and again.leases == []


def test_cycle_settles_when_an_urgent_job_displaces_a_lease_of_a_fairer_queue():
    # b (below its share) gets q3 onto n0, then a's high-priority q2 takes q3's place there
    # by urgency rather than preempting on the full n1: a ends above its share while b waits
    # again, which the next cycle would settle by preempting a's r8 for q3.
    runs = [
        running("r1", "b", "n0", 1, priority_class="fixed"),
        running("r2", "b", "n1", 3, priority_class="fixed"),
        running("r3", "a", "n1", 1, priority_class="high"),
        running("r4", "a", "n1", 1, priority_class="high"),
        running("r5", "b", "n1", 3, priority_class="low"),
        running("r6", "a", "n1", 1, priority_class="high"),
        running("r7", "a", "n1", 3, priority_class="urgent"),
        running("r8", "a", "n1", 4, priority_class="low"),
    ]
    queued = [
        job("q0", "a", 2, priority_class="urgent", submitted_at=100.0),
        job("q1", "b", 1, priority_class="urgent", submitted_at=101.0),
        job("q2", "a", 3, priority_class="high", submitted_at=102.0),
        job("q3", "b", 3, priority_class="low", submitted_at=103.0),
    ]
    nodes, queues = [node("n0", 8), node("n1", 16)], [Queue("a"), Queue("b")]
    result = schedule(queued, runs, nodes, queues, config())
    assert leased(result) == ["q0", "q1", "q2", "q3"]
    assert result.preemptions == ["r8"]
    queued, runs = advance(result, queued, runs)
    again = schedule(queued, runs, nodes, queues, config())
    assert again.preemptions == [] and again.leases == []


def random_world(seed: int):
    """Up to four nodes partly filled with running jobs of every class, two or three queues,
    up to thirty queued jobs: small worlds where preemption and displacement interact."""
    r = random.Random(seed)
    nodes = [node(f"n{i}", r.choice([4, 8, 16])) for i in range(r.randint(1, 4))]
    queues = [Queue(q, r.choice([1.0, 2.0])) for q in "abc"[: r.randint(2, 3)]]
    runs = []
    for n in nodes:
        free = n.allocatable["cpu"] // 1000
        while free > 0 and r.random() < 0.8:
            cpu = r.randint(1, min(4, free))
            free -= cpu
            run_id = f"r{len(runs)}"
            runs.append(
                running(
                    run_id,
                    r.choice(queues).name,
                    n.name,
                    cpu,
                    priority_class=r.choice(list(CLASSES)),
                    submitted_at=len(runs),
                )
            )
    queued = [
        job(
            f"q{i}",
            r.choice(queues).name,
            r.randint(1, 4),
            priority_class=r.choice(list(CLASSES)),
            submitted_at=100.0 + i,
        )
        for i in range(r.randint(1, 30))
    ]
    return queued, runs, nodes, queues


def test_random_worlds_rerun_on_their_own_output_preempt_nothing_more():
    unstable = []
    for seed in range(1000):
        queued, runs, nodes, queues = random_world(seed)
        first = schedule(queued, runs, nodes, queues, config())
        queued, runs = advance(first, queued, runs)
        if schedule(queued, runs, nodes, queues, config()).preemptions:
            unstable.append(seed)
    assert unstable == []


def test_resubmitted_urgency_preempted_job_causes_no_preemption():
    nodes, queues = [node("n", 32)], [Queue("A"), Queue("B")]
    queued = jobs("A", 33, pc="high")
    first = schedule(queued, [], nodes, queues, config())
    assert len(first.leases) == 32
    queued, runs = advance(first, queued, [])
    queued += [job("B-0", "B", priority_class="urgent")]
    second = schedule(queued, runs, nodes, queues, config())
    assert leased(second) == ["B-0"]
    assert second.preemptions == ["A-31"]
    queued, runs = advance(second, queued, runs)
    queued += [job("A-31-again", "A", priority_class="high", submitted_at=100.0)]
    third = schedule(queued, runs, nodes, queues, config())
    assert third.preemptions == [] and third.leases == []
    queued, runs = advance(third, queued, runs)
    fourth = schedule(queued, runs, nodes, queues, config())
    assert fourth.preemptions == [] and fourth.leases == []


def test_three_queues_converge_to_equal_shares_and_stay_there():
    nodes, queues = [node("n", 32)], [Queue("A"), Queue("B"), Queue("C")]
    runs: list[RunningJob] = []
    rounds = [
        (jobs("A", 32), 32, set()),
        (jobs("B", 32), 16, {f"A-{i}" for i in range(16, 32)}),
        (jobs("C", 10), 10, {f"A-{i}" for i in range(11, 16)} | {f"B-{i}" for i in range(11, 16)}),
        (
            [
                job("A-x", "A", priority_class="low", submitted_at=99.0),
                job("B-x", "B", priority_class="low", submitted_at=99.0),
                job("C-x", "C", priority_class="low", submitted_at=99.0),
            ],
            0,
            set(),
        ),
    ]
    for new_jobs, expected_leases, expected_preemptions in rounds:
        # Preempted jobs are gone; jobs left queued from earlier rounds are not resubmitted.
        queued = new_jobs
        result = schedule(queued, runs, nodes, queues, config())
        assert len(result.leases) == expected_leases
        assert set(result.preemptions) == expected_preemptions
        queued, runs = advance(result, queued, runs)
    assert sorted(r.queue for r in runs).count("C") == 10


def test_three_queues_in_reverse_name_order_reach_a_steady_state_too():
    nodes, queues = [node("n", 32)], [Queue("z"), Queue("y"), Queue("x")]
    runs = [running(f"z-{i}", "z", "n", priority_class="low", submitted_at=float(i)) for i in range(11)]
    runs += [running(f"y-{i}", "y", "n", priority_class="low", submitted_at=float(i)) for i in range(11)]
    runs += [running(f"x-{i}", "x", "n", priority_class="low", submitted_at=float(i)) for i in range(10)]
    queued = [
        job("x-new", "x", priority_class="low", submitted_at=50.0),
        job("y-new", "y", priority_class="low", submitted_at=50.0),
    ]
    result = schedule(queued, runs, nodes, queues, config(protected_fraction_of_fair_share=0.0))
    assert result.preemptions == [] and result.leases == []
