"""Specs for the discrete-event simulation (flotilla.simulator.simulation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from flotilla.scheduling.config_file import load_scheduling_config
from flotilla.simulator.cluster_file import load_cluster_spec
from flotilla.simulator.distributions import ShiftedExponential
from flotilla.simulator.jobs import sample_runtimes
from flotilla.simulator.results import JOB_COLUMNS, QUEUE_COLUMNS
from flotilla.simulator.simulation import simulate, simulate_files
from flotilla.simulator.workload_file import load_workload_spec
from tests.unit.armada_files import SHARED, needs_shared

FIXTURES = Path(__file__).parents[1] / "fixtures" / "simulator"


def fixture_run(cluster: str, workload: str, **options):
    return simulate(
        load_cluster_spec(FIXTURES / cluster),
        load_workload_spec(FIXTURES / workload),
        load_scheduling_config(FIXTURES / "scheduling.yaml"),
        **options,
    )


def rows(table, **where) -> list[dict]:
    return [row for row in table.to_pylist() if all(row[k] == v for k, v in where.items())]


@needs_shared
@pytest.mark.parametrize("cluster", ["cpu_1_1_10.yaml", "tinyCluster.yaml"])
def test_every_example_combination_runs_and_writes_both_parquet_files(cluster: str, tmp_path: Path) -> None:
    result = simulate_files(
        SHARED / cluster, SHARED / "basicWorkload.yaml", SHARED / "basicSchedulingConfig.yaml"
    )
    jobs_path, queues_path = result.write(tmp_path / "out")

    jobs, queues = pq.read_table(jobs_path), pq.read_table(queues_path)
    assert set(JOB_COLUMNS) <= set(jobs.column_names)
    assert set(QUEUE_COLUMNS) <= set(queues.column_names)
    assert jobs.num_rows == 10
    assert set(jobs.column("final_state").to_pylist()) == {"succeeded"}
    assert set(jobs.column("cpu").to_pylist()) == {1.0}
    assert set(jobs.column("memory").to_pylist()) == {10 * 2**30}
    assert queues.num_rows > 0
    assert min(jobs.column("end_time").to_pylist()) >= 300.0  # runtimeDistribution.minimum: 5m


def test_runtime_sampling_is_deterministic_for_a_seed_and_never_below_the_minimum() -> None:
    distribution = ShiftedExponential(minimum=300.0, tail_mean=60.0)

    first = sample_runtimes(distribution, 5000, seed=11, stream=0)
    again = sample_runtimes(distribution, 5000, seed=11, stream=0)
    other = sample_runtimes(distribution, 5000, seed=12, stream=0)

    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.min() >= 300.0
    assert first.mean() == pytest.approx(360.0, rel=0.05)  # minimum + tailMean


def test_a_simulation_is_reproducible_job_ids_runtimes_and_all() -> None:
    first = fixture_run("small_cluster.yaml", "dependencies.yaml").jobs
    second = fixture_run("small_cluster.yaml", "dependencies.yaml").jobs

    assert first.equals(second)
    assert first.column("job_id").to_pylist() == [
        "first-0",
        "first-1",
        "first-2",
        "first-3",
        "second-0",
        "second-1",
    ]


def test_dependencies_delay_submission_until_completion() -> None:
    jobs = fixture_run("small_cluster.yaml", "dependencies.yaml").jobs

    first = rows(jobs, template_id="first")
    second = rows(jobs, template_id="second")
    last_end = max(job["end_time"] for job in first)
    assert len({job["end_time"] for job in first}) > 1  # tailMean makes the first jobs end apart
    assert all(job["submit_time"] == pytest.approx(last_end + 30.0) for job in second)
    assert all(job["final_state"] == "succeeded" for job in first + second)


def test_two_equal_queues_that_want_the_whole_cluster_each_hold_half_at_steady_state() -> None:
    result = fixture_run("medium_cluster.yaml", "two_queues.yaml", max_time=1800.0)

    steady = [row for row in result.queues.to_pylist() if 60.0 <= row["time"] <= 1800.0]
    assert steady
    for row in steady:
        assert row["fair_share"] == pytest.approx(0.5)
        assert abs(row["actual_share"] - 0.5) <= 0.05 * 0.5, row


def test_with_preemptible_jobs_a_late_queue_reaches_its_fair_share_within_two_cycles() -> None:
    result = fixture_run("small_cluster.yaml", "late_queue_preemptible.yaml", cycle_interval=10.0)

    arrival = 60.0  # B's earliestSubmitTime, itself a cycle time
    second_cycle = rows(result.queues, queue="B", time=arrival + 10.0)[0]
    assert second_cycle["actual_share"] == pytest.approx(second_cycle["fair_share"], rel=0.05)
    assert second_cycle["fair_share"] == pytest.approx(0.5)
    assert result.preemptions > 0
    jobs = result.jobs
    assert jobs.num_rows == 128  # a preempted job keeps its job id: no new rows
    assert set(jobs.column("final_state").to_pylist()) == {"succeeded"}


def test_with_non_preemptible_jobs_a_late_queue_waits_with_zero_preemptions() -> None:
    result = fixture_run("small_cluster.yaml", "late_queue_default.yaml", cycle_interval=10.0)

    assert result.preemptions == 0
    for time in (60.0, 70.0):
        assert rows(result.queues, queue="B", time=time)[0]["actual_share"] == 0.0
    first_end_of_a = min(job["end_time"] for job in rows(result.jobs, queue="A"))
    assert min(job["first_scheduled_time"] for job in rows(result.jobs, queue="B")) >= first_end_of_a


def test_max_time_stops_the_simulation_and_leaves_unfinished_jobs_unfinished() -> None:
    result = fixture_run("small_cluster.yaml", "late_queue_default.yaml", max_time=600.0)

    states = set(result.jobs.column("final_state").to_pylist())
    assert states == {"running", "queued"}
    assert result.end_time == 600.0
    assert max(result.queues.column("time").to_pylist()) <= 600.0


def test_jobs_that_fit_nowhere_end_the_simulation_instead_of_spinning(tmp_path: Path) -> None:
    workload = tmp_path / "huge.yaml"
    workload.write_text(
        "queues: [{name: A, jobTemplates: [{number: 2, requirements: "
        "{resourceRequirements: {requests: {cpu: 1000}}}, runtimeDistribution: {minimum: 1m}}]}]\n"
    )
    result = simulate(
        load_cluster_spec(FIXTURES / "small_cluster.yaml"),
        load_workload_spec(workload),
        load_scheduling_config(FIXTURES / "scheduling.yaml"),
    )

    assert result.jobs.column("final_state").to_pylist() == ["queued", "queued"]
    assert "no node" in result.stop_reason
    assert all(reason for reason in result.jobs.column("unschedulable_reason").to_pylist())


def test_the_summary_reports_utilisation_shares_wait_percentiles_and_preemptions() -> None:
    summary = fixture_run("small_cluster.yaml", "dependencies.yaml").summary()

    assert "utilisation" in summary and "cpu" in summary
    assert "fair share" in summary
    assert "p50" in summary and "p90" in summary and "p99" in summary
    assert "preemptions: 0" in summary


@pytest.mark.parametrize(
    ("cluster", "workload", "max_time"),
    [
        ("medium_cluster.yaml", "two_queues.yaml", 1200.0),
        ("small_cluster.yaml", "late_queue_preemptible.yaml", None),
        ("small_cluster.yaml", "gangs.yaml", None),
    ],
)
def test_showing_cycles_only_a_prefix_of_each_queue_changes_no_decision(
    cluster: str, workload: str, max_time: float | None
) -> None:
    prefix = fixture_run(cluster, workload, max_time=max_time, queue_prefix=1)
    whole = fixture_run(cluster, workload, max_time=max_time, queue_prefix=None)

    # Jobs a cycle did not see get no unschedulable reason; every decision is the same.
    assert prefix.jobs.drop_columns(["unschedulable_reason"]).equals(
        whole.jobs.drop_columns(["unschedulable_reason"])
    )
    assert prefix.queues.equals(whole.queues)


def test_a_gang_is_scheduled_all_at_once_on_distinct_nodes() -> None:
    jobs = fixture_run("small_cluster.yaml", "gangs.yaml").jobs.to_pylist()

    gangs: dict[int, list[dict]] = {}
    for job in jobs:
        gangs.setdefault(int(job["job_id"].rsplit("-", 1)[1]) // 4, []).append(job)  # gang-0..3, gang-4..7
    starts = set()
    for members in gangs.values():
        assert len({job["first_scheduled_time"] for job in members}) == 1
        assert len({job["node"] for job in members}) == 4
        starts.add(members[0]["first_scheduled_time"])
    assert len(starts) == 2  # the second gang waits for the whole cluster
    assert {job["final_state"] for job in jobs} == {"succeeded"}


def test_a_repeated_template_is_submitted_every_period_under_its_own_ids() -> None:
    jobs = fixture_run("small_cluster.yaml", "repeat.yaml").jobs

    assert jobs.column("job_id").to_pylist() == [f"r-repeat-{i}-{k}" for i in range(3) for k in range(2)]
    assert jobs.column("submit_time").to_pylist() == [0.0, 0.0, 300.0, 300.0, 600.0, 600.0]
