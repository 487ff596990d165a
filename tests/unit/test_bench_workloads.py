"""The scheduler benchmark's workloads, at a reduced scale: right counts and shapes, so the
harness (bench/scheduler.py) cannot silently drift from Armada's benchmark shapes."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.scheduler import GI, MILLI, USED_QUEUE, WORKLOADS, gang_supported, main, measure

ROOT = Path(__file__).resolve().parents[2]
NODE = {"cpu": 32 * MILLI, "memory": 256 * GI}
JOB = {"cpu": 1 * MILLI, "memory": 4 * GI}


def test_workloads_are_named_and_sized_as_armadas_benchmarks():
    sizes = {
        name: (w.kind, w.nodes, w.queues, w.jobs_per_queue, w.used_cpu, w.gang, w.armada_go_ms)
        for name, w in WORKLOADS.items()
    }
    assert sizes == {
        "schedule_many/100x3200": ("schedule_many", 100, 1, 3200, 0, True, 64),
        "schedule_many/1000x32000": ("schedule_many", 1000, 1, 32000, 0, False, 606),
        "schedule_many/10000x10000_1cpu_free": ("schedule_many", 10000, 1, 10000, 31 * MILLI, False, 318),
        "cycle/10n_10q_3200": ("cycle", 10, 10, 3200, 0, False, 173),
        "cycle/1000n_10q_320000": ("cycle", 1000, 10, 320000, 0, False, None),
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
    inputs = WORKLOADS["schedule_many/10000x10000_1cpu_free"].scaled(0.01).build()
    assert len(inputs.nodes) == len(inputs.queued) == len(inputs.running) == 100
    assert sorted(r.node_id for r in inputs.running) == sorted(n.id for n in inputs.nodes)
    assert {r.requests["cpu"] for r in inputs.running} == {31 * MILLI}
    assert {r.queue for r in inputs.running} == {USED_QUEUE}
    assert USED_QUEUE not in {q.name for q in inputs.queues}


def test_gang_workload_is_one_gang_when_queued_jobs_have_gang_fields():
    inputs = WORKLOADS["schedule_many/100x3200"].scaled(0.01).build()
    assert inputs.gang == gang_supported()
    if inputs.gang:
        assert {(j.gang_id, j.gang_cardinality) for j in inputs.queued} == {("gang-A", len(inputs.queued))}


@pytest.mark.parametrize("name", [n for n in WORKLOADS if n.startswith("schedule_many/")])
def test_schedule_many_places_every_job(name):
    record = measure(WORKLOADS[name].scaled(0.01), repeat=1)
    assert record["scheduled"] == record["queued"]
    assert record["ratio"] is not None and record["peak_rss_mib"] > 0


def test_cycle_fills_the_cluster_then_steady_state_schedules_nothing():
    workload = WORKLOADS["cycle/10n_10q_3200"].scaled(0.01)  # 1 node, 10 queues of 32 jobs
    record = measure(workload, repeat=1)
    assert (record["scheduled"], record["queued"]) == (32, 320)
    assert (record["steady_scheduled"], record["steady_running"], record["steady_queued"]) == (0, 32, 288)
    assert record["ratio"] == pytest.approx(record["steady_seconds"] * 1000 / 173, abs=0.01)


def test_command_line_prints_one_json_object_per_workload():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "scheduler.py"), "--json", "--scale", "0.01", "--repeat", "1"]
        + ["--only", "schedule_many/100x3200", "--only", "cycle/10n"],
        capture_output=True,
        text=True,
        check=True,
    )
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["workload"] for r in records] == ["schedule_many/100x3200", "cycle/10n_10q_3200"]
    for record in records:
        assert {"seconds", "scheduled", "peak_rss_mib", "build_seconds", "armada_go_ms", "gang"} <= set(
            record
        )


def test_unknown_workload_is_refused():
    with pytest.raises(SystemExit, match="unknown workload"):
        main(["--only", "nope"])


def test_gang_all_places_each_schedule_many_workload_as_one_gang(capsys):
    args = ["--child", "schedule_many/1000x32000", "--gang-all", "--scale", "0.01", "--repeat", "1"]
    assert main(args) == 0
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert record["gang"] == gang_supported()
    assert record["scheduled"] == record["queued"] == 320
