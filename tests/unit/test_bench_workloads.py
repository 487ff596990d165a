"""The scheduler benchmark's workloads, at a reduced scale: right counts and shapes, so the
harness (bench/scheduler.py) cannot silently drift from Armada's benchmark shapes, and it times
what Armada's Go benchmarks time."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.scheduler import GI, MILLI, REFERENCE, USED_QUEUE, WORKLOADS, main, measure

ROOT = Path(__file__).resolve().parents[2]
NODE = {"cpu": 32 * MILLI, "memory": 256 * GI}
JOB = {"cpu": 1 * MILLI, "memory": 4 * GI}


def test_workloads_are_named_and_sized_as_armadas_benchmarks_with_its_measured_figures():
    sizes = {
        name: (w.kind, w.nodes, w.queues, w.jobs_per_queue, w.used_cpu, w.go_case, w.go_ms)
        for name, w in WORKLOADS.items()
    }
    assert sizes == {
        "schedule_many/100_nodes_3200_jobs_one_gang": (
            "schedule_many",
            100,
            1,
            3200,
            0,
            "BenchmarkScheduleMany100CpuNodes3200SmallJobs",
            (132, 209),
        ),
        "schedule_many/1000_nodes_32000_jobs_one_gang": (
            "schedule_many",
            1000,
            1,
            32000,
            0,
            "BenchmarkScheduleMany1000CpuNodes32000SmallJobs",
            (1300, 2200),
        ),
        "schedule_many/10000_nodes_1cpu_free_10000_jobs_one_gang": (
            "schedule_many",
            10000,
            1,
            10000,
            31 * MILLI,
            "BenchmarkScheduleMany10000CpuNodes1CpuUnused",
            (830, 1460),
        ),
        "steady_cycle/10_nodes_10_queues_x_3200_jobs": (
            "steady_cycle",
            10,
            10,
            3200,
            0,
            "10 nodes 10 queues 3200 jobs",
            (4.4, 6.0),
        ),
        "steady_cycle/100_nodes_10_queues_x_32000_jobs": (
            "steady_cycle",
            100,
            10,
            32000,
            0,
            "100 nodes 10 queues 32000 jobs",
            (60, 94),
        ),
        "steady_cycle/1000_nodes_1_queue_x_32000_jobs": (
            "steady_cycle",
            1000,
            1,
            32000,
            0,
            "1000 nodes 10 queues 320000 jobs (its fields: 1 queue of 32000)",
            (14, 18),
        ),
        "steady_cycle/1000_nodes_1_queue_x_320000_jobs": (
            "steady_cycle",
            1000,
            1,
            320000,
            0,
            "1000 nodes 1 queue 320000 jobs",
            (110, 110),
        ),
        "steady_cycle/1000_nodes_10_queues_x_320000_jobs": (
            "steady_cycle",
            1000,
            10,
            320000,
            0,
            "none (3.2 million queued: issue 14's target)",
            None,
        ),
    }


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_reduced_inputs_have_armadas_shapes(name):
    workload = WORKLOADS[name].scaled(0.01)
    inputs = workload.build()
    assert len(inputs.nodes) == workload.nodes
    assert len(inputs.queued) == workload.queues * workload.jobs_per_queue
    assert all(n.allocatable == NODE and not n.unschedulable and not n.taints for n in inputs.nodes)
    assert len({n.id for n in inputs.nodes}) == len(inputs.nodes)
    # One shared requests dict (no per-job copies), one shape, one priority class, no constraints.
    assert inputs.queued[0].requests == JOB
    assert {id(j.requests) for j in inputs.queued} == {id(inputs.queued[0].requests)}
    assert {(j.priority_class, j.priority, bool(j.node_selector), j.tolerations) for j in inputs.queued} == {
        (inputs.queued[0].priority_class, 0.0, False, ())
    }
    assert len({j.job_id for j in inputs.queued}) == len(inputs.queued)
    per_queue = Counter(j.queue for j in inputs.queued)
    assert per_queue == dict.fromkeys((q.name for q in inputs.queues), workload.jobs_per_queue)
    assert all(q.priority_factor == 1.0 and not q.cordoned for q in inputs.queues)
    # Every job has its own submission time within its queue.
    assert all(
        len({j.submitted_at for j in inputs.queued if j.queue == q}) == n for q, n in per_queue.items()
    )
    assert inputs.config.max_jobs_per_cycle >= len(inputs.queued)


def test_one_cpu_free_workload_fills_31_cpus_of_every_node_outside_the_queues():
    inputs = WORKLOADS["schedule_many/10000_nodes_1cpu_free_10000_jobs_one_gang"].scaled(0.01).build()
    assert len(inputs.nodes) == len(inputs.queued) == len(inputs.running) == 100
    assert sorted(r.node_id for r in inputs.running) == sorted(n.id for n in inputs.nodes)
    assert {r.requests["cpu"] for r in inputs.running} == {31 * MILLI}
    assert {r.queue for r in inputs.running} == {USED_QUEUE}
    assert USED_QUEUE not in {q.name for q in inputs.queues}


@pytest.mark.parametrize("name", [n for n in WORKLOADS if n.startswith("schedule_many/")])
def test_schedule_many_jobs_are_one_gang_and_all_placed(name):
    workload = WORKLOADS[name].scaled(0.01)
    inputs = workload.build()
    assert {(j.gang_id, j.gang_cardinality) for j in inputs.queued} == {("gang-A", len(inputs.queued))}
    record = measure(workload, repeat=1)
    assert record["scheduled"] == record["queued"] == len(inputs.queued)
    assert record["peak_rss_mib"] > 0


def test_steady_cycle_times_the_cycle_after_the_one_that_filled_the_cluster():
    workload = WORKLOADS["steady_cycle/10_nodes_10_queues_x_3200_jobs"].scaled(0.01)  # 1 node, 10 x 32 jobs
    record = measure(workload, repeat=1)
    assert record["first_cycle_scheduled"] == 32
    assert (record["scheduled"], record["running"], record["queued"]) == (0, 32, 288)
    assert record["preempted"] == 0


def test_records_carry_go_reference_and_machine_speed_not_ratios():
    record = measure(WORKLOADS["steady_cycle/10_nodes_10_queues_x_3200_jobs"].scaled(0.01), repeat=1)
    assert (record["go_ms"], record["go_case"], record["reference"]) == (
        [4.4, 6.0],
        "10 nodes 10 queues 3200 jobs",
        REFERENCE,
    )
    assert "AMD EPYC" in REFERENCE and record["sum_range_ms"] > 0
    assert not {key for key in record if "ratio" in key}


def test_command_line_prints_one_json_object_per_workload():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scheduler.py"), "--json", "--scale", "0.01", "--repeat", "1"]
        + ["--only", "schedule_many/100_nodes", "--only", "steady_cycle/10_nodes"],
        capture_output=True,
        text=True,
        check=True,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["workload"] for r in records] == [
        "schedule_many/100_nodes_3200_jobs_one_gang",
        "steady_cycle/10_nodes_10_queues_x_3200_jobs",
    ]
    for record in records:
        assert {
            "seconds",
            "min_seconds",
            "max_seconds",
            "scheduled",
            "peak_rss_mib",
            "go_ms",
            "sum_range_ms",
        } <= set(record)


def test_table_prints_the_reference_and_its_source_beside_our_figures():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scheduler.py"), "--scale", "0.01", "--repeat", "1"]
        + ["--only", "steady_cycle/10_nodes"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert REFERENCE in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("steady_cycle/10_nodes"))
    assert "4.4-6" in row
    assert "x Armada" not in proc.stdout and "ours/Go" not in proc.stdout


def test_unknown_workload_is_refused():
    with pytest.raises(SystemExit, match="unknown workload"):
        main(["--only", "nope"])
