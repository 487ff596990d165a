"""Benchmarks of the pure scheduling core on Armada's own benchmark shapes, timing what Armada's
Go benchmarks time.

    python bench/scheduler.py [--json] [--repeat N] [--repeat-huge N] [--only NAME ...]
                              [--scale F] [--gc on|freeze|off] [--profile cpu|sample|mem]

Findings and proposals from profiling these workloads are in bench/PROFILE.md.

Each workload runs in a fresh subprocess, so the peak RSS it reports is its own. The shapes are
those of Armada's ``internal/scheduler`` benchmarks: nodes of 32 CPU and 256 GiB
(``ItN32CpuNodes``), jobs of 1 CPU and 4 GiB (``N1Cpu4GiJobs``), one priority class, queues of
priority factor 1, every job with its own submission time. The timed region is Go's (what it
runs between ``b.ResetTimer()`` and the end of its loop); inputs are built before it:

* ``schedule_many/*`` are ``nodedb.BenchmarkScheduleMany*`` (``nodedb_test.go``): the node
  database is built with the nodes first; Go times scheduling every job as one gang in a
  transaction it then aborts. We time the same on :class:`~flotilla.scheduling.NodeDb`:
  ``begin()``, best-fit ``place`` and ``bind`` of each job, ``rollback()``. (A fresh node db
  per run, so our first search's lazy index build is inside the timer; Go's indexes are built
  at insertion, outside it.) ``1cpu_free`` occupies 31 CPU of every node first, as Go's
  ``ItWithUsedResourcesNodes`` does.
* ``steady_cycle/*`` are ``scheduling.BenchmarkPreemptingQueueScheduler``
  (``preempting_queue_scheduler_test.go``): N queues of M jobs; a first cycle fills the
  cluster (outside Go's timer; we time it once, for information, as ``first_cycle_seconds``);
  Go then times the *steady-state* cycle, the leased jobs running and the rest still queued,
  which schedules and preempts nothing. We time ``schedule(...)`` on those inputs; it builds its
  node database from the nodes and running jobs inside the timer (Go builds it before).

The reference figures are Armada's own Go benchmarks, built from its source and run on a
2-core AMD EPYC machine of this project's kind interleaved with this benchmark (issue 8); ranges
are over runs. Ours are printed with the machine's ``sum(range(10**6))`` time taken in the same
child just before, since the machine is shared and its speed varies; compare like with like
only on one machine. Each workload is timed ``--repeat`` times (default 5; workloads of a
million jobs or more ``--repeat-huge`` times, default 3): the median, and the spread (min to
max), are reported.

``max_jobs_per_cycle`` is set to the number of queued jobs so the cap never cuts a cycle short.
Inputs are built memory-efficiently: every job shares one requests dict and one empty selector
dict, as a scheduler interning job shapes would.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flotilla.scheduling import (  # noqa: E402
    Node,
    NodeDb,
    Queue,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
    schedule,
)

MILLI = 1000
GI = 2**30 * MILLI
NODE_ALLOCATABLE: dict[str, int] = {"cpu": 32 * MILLI, "memory": 256 * GI}
JOB_REQUESTS: dict[str, int] = {"cpu": 1 * MILLI, "memory": 4 * GI}
EXECUTOR = "executor-0"
POOL = "default"
JOB_SET = "set-0"
USED_QUEUE = "used"  # owner of the running jobs that fill nodes; not a queue the cycle knows
_EMPTY_LABELS: dict[str, str] = {}  # shared, never mutated: no per-object empty dicts
_EMPTY_SELECTOR: dict[str, str] = {}

HUGE_JOBS = 1_000_000  # workloads with at least this many queued jobs run --repeat-huge times


REFERENCE = (
    "Armada's own Go benchmarks, built from its source and run on a 2-core AMD EPYC machine of "
    "this project's kind, interleaved with this benchmark (issue 8)"
)


@dataclass(slots=True)
class Inputs:
    queued: list[QueuedJob]
    running: list[RunningJob]
    nodes: list[Node]
    queues: list[Queue]
    config: SchedulingConfig


def make_nodes(count: int) -> list[Node]:
    """``count`` nodes of 32 CPU and 256 GiB, sharing one allocatable dict."""
    return [
        Node(EXECUTOR, f"node-{i:05d}", POOL, NODE_ALLOCATABLE, labels=_EMPTY_LABELS) for i in range(count)
    ]


def make_jobs(queue: str, count: int, gang_id: str | None = None) -> list[QueuedJob]:
    """``count`` jobs of 1 CPU and 4 GiB in ``queue``, sharing one requests dict.

    Each job has its own id and submission time (``submitted_at`` = its index), as Armada's
    fixtures do; ``gang_id`` puts them all in one gang of ``count``.
    """
    extra: dict[str, Any] = {}
    if gang_id is not None:
        extra = {"gang_id": gang_id, "gang_cardinality": count}
    return [
        QueuedJob(f"{queue}-{i:07d}", queue, JOB_SET, 0.0, float(i), JOB_REQUESTS, _EMPTY_SELECTOR, **extra)
        for i in range(count)
    ]


def make_used(nodes: list[Node], used_cpu: int) -> list[RunningJob]:
    """One running job per node holding ``used_cpu`` milli-CPU of it."""
    requests = {"cpu": used_cpu}
    return [
        RunningJob(f"used-{i:05d}", USED_QUEUE, f"run-used-{i:05d}", node.executor, node.name, requests)
        for i, node in enumerate(nodes)
    ]


def queue_names(count: int) -> list[str]:
    return ["A"] if count == 1 else [f"queue-{i}" for i in range(count)]


def build_inputs(
    nodes: int, queues: int, jobs_per_queue: int, used_cpu: int = 0, gang: bool = False
) -> Inputs:
    """The inputs of one workload; ``gang`` makes each queue's jobs one gang."""
    node_list = make_nodes(nodes)
    names = queue_names(queues)
    queued: list[QueuedJob] = []
    for name in names:
        queued += make_jobs(name, jobs_per_queue, gang_id=f"gang-{name}" if gang else None)
    running = make_used(node_list, used_cpu) if used_cpu else []
    config = SchedulingConfig(max_jobs_per_cycle=max(len(queued), 1))
    return Inputs(queued, running, node_list, [Queue(name) for name in names], config)


def steady_inputs(inputs: Inputs, leases: list[Any]) -> Inputs:
    """The next cycle's inputs: the leased jobs running where they were put, the rest queued."""
    leased = {lease.job_id for lease in leases}
    running = list(inputs.running)
    running += [
        RunningJob(lease.job_id, lease.queue, "run-" + lease.job_id, lease.executor, lease.node, JOB_REQUESTS)
        for lease in leases
    ]
    queued = [job for job in inputs.queued if job.job_id not in leased]
    return Inputs(queued, running, inputs.nodes, inputs.queues, inputs.config)


@dataclass(frozen=True)
class Workload:
    """One benchmark: ``kind`` is ``schedule_many`` (the node db places every job as one gang) or
    ``steady_cycle`` (the cycle after the one that filled the cluster); ``go_case`` is the Go
    benchmark it mirrors and ``go_ms`` the range Go measured (None: Go has no such case)."""

    name: str
    kind: str
    nodes: int
    queues: int
    jobs_per_queue: int
    go_case: str
    go_ms: tuple[float, float] | None
    used_cpu: int = 0

    @property
    def jobs(self) -> int:
        return self.queues * self.jobs_per_queue

    def scaled(self, factor: float) -> Workload:
        """The same workload with ``factor`` times the nodes and jobs (at least one of each)."""
        if factor == 1:
            return self
        return dataclasses.replace(
            self,
            nodes=max(1, round(self.nodes * factor)),
            jobs_per_queue=max(1, round(self.jobs_per_queue * factor)),
        )

    def build(self) -> Inputs:
        gang = self.kind == "schedule_many"  # Go schedules them as one gang
        return build_inputs(self.nodes, self.queues, self.jobs_per_queue, self.used_cpu, gang)


def _cycle(
    nodes: int, queues: int, per_queue: int, go_case: str, go_ms: tuple[float, float] | None
) -> Workload:
    name = f"steady_cycle/{nodes}_nodes_{queues}_queue{'s' if queues > 1 else ''}_x_{per_queue}_jobs"
    return Workload(name, "steady_cycle", nodes, queues, per_queue, go_case, go_ms)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload(
            "schedule_many/100_nodes_3200_jobs_one_gang",
            "schedule_many",
            100,
            1,
            3200,
            "BenchmarkScheduleMany100CpuNodes3200SmallJobs",
            (132, 209),
        ),
        Workload(
            "schedule_many/1000_nodes_32000_jobs_one_gang",
            "schedule_many",
            1000,
            1,
            32000,
            "BenchmarkScheduleMany1000CpuNodes32000SmallJobs",
            (1300, 2200),
        ),
        Workload(
            "schedule_many/10000_nodes_1cpu_free_10000_jobs_one_gang",
            "schedule_many",
            10000,
            1,
            10000,
            "BenchmarkScheduleMany10000CpuNodes1CpuUnused",
            (830, 1460),
            used_cpu=31 * MILLI,
        ),
        _cycle(10, 10, 3200, "10 nodes 10 queues 3200 jobs", (4.4, 6.0)),
        _cycle(100, 10, 32000, "100 nodes 10 queues 32000 jobs", (60, 94)),
        _cycle(1000, 1, 32000, "1000 nodes 10 queues 320000 jobs (its fields: 1 queue of 32000)", (14, 18)),
        _cycle(1000, 1, 320000, "1000 nodes 1 queue 320000 jobs", (110, 110)),
        _cycle(1000, 10, 320000, "none (3.2 million queued: issue 14's target)", None),
    ]
}


# --- measuring (in the child) -------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def machine_speed_ms() -> float:
    """``python3 -m timeit "sum(range(10**6))"``'s figure: best of 5 loops of 10, in ms."""
    return min(timeit.repeat("sum(range(10**6))", number=10, repeat=5)) / 10 * 1000


class GcTimer:
    """Time spent in the cyclic garbage collector while active (via ``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.collections = 0
        self._start = 0.0
        self.active = False

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self.active:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._start
            self.collections += 1


def schedule_many(db: NodeDb, jobs: list[QueuedJob]) -> int:
    """Go's ``ScheduleManyWithTxn`` of one gang, then ``txn.Abort()``: place and bind every job
    in a transaction, roll it back; how many were placed (all, or none if one did not fit)."""
    db.begin()
    placed = 0
    for job in jobs:
        node, _, _ = db.place(job)
        if node is None:
            placed = 0
            break
        db.bind(node.id, job.requests)
        placed += 1
    db.rollback()
    return placed


def _timed(
    runs: int, timer: GcTimer, prepare: Callable[[], Any], region: Callable[[Any], Any]
) -> tuple[list[float], list[float], Any]:
    """Time ``region(prepare())`` ``runs`` times (``prepare`` outside the timer)."""
    times: list[float] = []
    gc_times: list[float] = []
    result = None
    for _ in range(runs):
        result = None
        arg = prepare()
        gc.collect()
        timer.seconds, timer.collections, timer.active = 0.0, 0, True
        start = time.perf_counter()
        result = region(arg)
        times.append(time.perf_counter() - start)
        timer.active = False
        gc_times.append(timer.seconds)
    return times, gc_times, result


def measure(workload: Workload, repeat: int, repeat_huge: int = 3, gc_mode: str = "on") -> dict[str, Any]:
    """Build ``workload``'s inputs and time Go's region on them; the JSON record of one workload."""
    runs = max(1, repeat if workload.jobs < HUGE_JOBS else min(repeat, repeat_huge))
    timer = GcTimer()
    gc.callbacks.append(timer)
    try:
        base_rss = rss_mib()
        start = time.perf_counter()
        inputs = workload.build()
        build_seconds = time.perf_counter() - start
        inputs_rss = rss_mib()
        record: dict[str, Any] = {
            "workload": workload.name,
            "go_case": workload.go_case,
            "go_ms": list(workload.go_ms) if workload.go_ms else None,
            "reference": REFERENCE,
            "nodes": len(inputs.nodes),
            "queues": len(inputs.queues),
            "build_seconds": build_seconds,
            "base_rss_mib": round(base_rss, 1),
            "inputs_rss_mib": round(inputs_rss - base_rss, 1),
            "gc_mode": gc_mode,
        }
        if workload.kind == "schedule_many":
            resources = inputs.config.resources

            def fresh_db() -> NodeDb:
                return NodeDb(inputs.nodes, inputs.running, resources)

            record["sum_range_ms"] = round(machine_speed_ms(), 1)
            _gc_mode(gc_mode)
            times, gc_times, placed = _timed(
                runs, timer, fresh_db, lambda db: schedule_many(db, inputs.queued)
            )
            record.update(queued=len(inputs.queued), running=len(inputs.running), scheduled=placed)
        else:
            _gc_mode(gc_mode)
            start = time.perf_counter()
            first = schedule(inputs.queued, inputs.running, inputs.nodes, inputs.queues, inputs.config)
            record["first_cycle_seconds"] = time.perf_counter() - start
            record["first_cycle_scheduled"] = len(first.leases)
            steady = steady_inputs(inputs, first.leases)
            del first
            gc.enable()
            record["sum_range_ms"] = round(machine_speed_ms(), 1)
            _gc_mode(gc_mode)
            times, gc_times, result = _timed(
                runs,
                timer,
                lambda: steady,
                lambda i: schedule(i.queued, i.running, i.nodes, i.queues, i.config),
            )
            record.update(
                queued=len(steady.queued),
                running=len(steady.running),
                scheduled=len(result.leases),
                preempted=len(result.preemptions),
                jobs_considered=result.stats.jobs_considered,
            )
        record.update(
            seconds=statistics.median(times),
            min_seconds=min(times),
            max_seconds=max(times),
            runs=runs,
            gc_seconds=statistics.median(gc_times),
            peak_rss_mib=round(peak_rss_mib(), 1),
        )
        return record
    finally:
        gc.callbacks.remove(timer)
        gc.enable()
        gc.unfreeze()


def _gc_mode(mode: str) -> None:
    if mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode == "off":
        gc.disable()


def profile(workload: Workload, mode: str, top: int = 30) -> None:
    """Print where the timed region of one workload spends time or memory.

    ``cpu``: cProfile (exact call counts, but its per-call overhead inflates small functions);
    ``sample``: pyinstrument's sampling profiler (``pip install pyinstrument``; not a project
    dependency); ``mem``: tracemalloc's peak and what the result retains, by line.
    """
    inputs = workload.build()
    if workload.kind == "schedule_many":
        db = NodeDb(inputs.nodes, inputs.running, inputs.config.resources)

        def region() -> Any:
            return schedule_many(db, inputs.queued)
    else:
        first = schedule(inputs.queued, inputs.running, inputs.nodes, inputs.queues, inputs.config)
        inputs = steady_inputs(inputs, first.leases)

        def region() -> Any:
            return schedule(inputs.queued, inputs.running, inputs.nodes, inputs.queues, inputs.config)

    print(f"== {workload.name}: {len(inputs.queued)} queued, {len(inputs.nodes)} nodes ({mode})")
    if mode == "cpu":
        import cProfile
        import pstats

        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        region()
        profiler.disable()
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    elif mode == "sample":
        from pyinstrument import Profiler

        gc.collect()
        sampler = Profiler(interval=0.0005)
        sampler.start()
        region()
        sampler.stop()
        print(sampler.output_text(unicode=False, color=False, show_all=False, short_mode=False))
    else:
        import tracemalloc

        gc.collect()
        tracemalloc.start(5)
        before = tracemalloc.take_snapshot()
        result = region()
        current, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        del result
        print(f"traced during the region: peak {peak / 2**20:.1f} MiB, retained {current / 2**20:.1f} MiB")
        print("retained by the result, by line:")
        for stat in after.compare_to(before, "lineno")[:top]:
            print("  ", stat)


# --- the parent: one subprocess per workload, a table --------------------------------------


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "load1": round(os.getloadavg()[0], 2),  # other work on the machine skews timings
    }


def select(only: list[str] | None) -> list[Workload]:
    if not only:
        return list(WORKLOADS.values())
    chosen: list[Workload] = []
    for name in only:
        matches = [w for w in WORKLOADS.values() if w.name == name or w.name.startswith(name)]
        if not matches:
            raise SystemExit(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
        chosen += [w for w in matches if w not in chosen]
    return chosen


def run_child(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        workload.name,
        "--repeat",
        str(args.repeat),
        "--repeat-huge",
        str(args.repeat_huge),
        "--scale",
        str(args.scale),
        "--gc",
        args.gc,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"workload": workload.name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:.1f}" if ms < 100 else f"{ms:.0f}"


def _go(go_ms: list[float] | None) -> str:
    if not go_ms:
        return "-"
    low, high = go_ms
    return f"{low:g}" if low == high else f"{low:g}-{high:g}"


WIDTH = 58


def print_table_header(info: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['implementation']} {info['python']}; "
        f"load {info['load1']}; median (min-max) of {args.repeat} runs ({args.repeat_huge} for >= "
        f"{HUGE_JOBS:,} jobs); gc {args.gc}" + (f"; scale {args.scale}" if args.scale != 1 else "")
    )
    print(f"reference (Go ms): {REFERENCE}")
    print(
        f"{'workload':<{WIDTH}} {'ours ms':>8} {'(min-max)':>13} {'Go ms':>10} {'sum ms':>7} "
        f"{'scheduled':>9} {'peak MiB':>8} {'runs':>4}"
    )


def print_table_row(record: dict[str, Any]) -> None:
    if "error" in record:
        print(f"{record['workload']:<{WIDTH}}  ERROR: {record['error']}")
        return
    spread = f"({_ms(record['min_seconds'])}-{_ms(record['max_seconds'])})"
    print(
        f"{record['workload']:<{WIDTH}} {_ms(record['seconds']):>8} {spread:>13} {_go(record['go_ms']):>10} "
        f"{record['sum_range_ms']:>7.1f} {record['scheduled']:>9} {record['peak_rss_mib']:>8.0f} {record['runs']:>4}"
    )


def print_table_footer(records: list[dict[str, Any]]) -> None:
    print("Go cases mirrored:")
    for record in records:
        print(f"  {record['workload']}: {record.get('go_case', '?')}")
    print(
        "ours ms: schedule_many/* the node db placing every job as one gang and rolling back; "
        "steady_cycle/* schedule() on the cycle after the one that filled the cluster (see the "
        "module docstring). sum ms: `sum(range(10**6))` in the same child just before (machine speed)."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per workload per line")
    parser.add_argument("--repeat", type=int, default=5, help="runs per workload; the median is reported")
    parser.add_argument(
        "--repeat-huge", type=int, default=3, help=f"runs for workloads of >= {HUGE_JOBS:,} jobs"
    )
    parser.add_argument(
        "--only", action="append", metavar="NAME", help="workload name (or prefix); may be repeated"
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply node and job counts (smoke runs)")
    parser.add_argument(
        "--gc", choices=["on", "freeze", "off"], default="on", help="cyclic GC during the timed region"
    )
    parser.add_argument(
        "--profile", choices=["cpu", "sample", "mem"], help="profile one timed region per workload"
    )
    parser.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        workload = WORKLOADS[args.child].scaled(args.scale)
        if args.profile:
            profile(workload, args.profile)
            return 0
        record = measure(workload, args.repeat, args.repeat_huge, args.gc)
        record.update(machine())
        if args.scale != 1:
            record["scale"] = args.scale
        print(json.dumps(record))
        return 0

    workloads = select(args.only)
    if args.profile:
        for workload in workloads:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child", workload.name]
                + ["--profile", args.profile, "--scale", str(args.scale)]
            )
            if proc.returncode:
                return proc.returncode
        return 0

    info = machine()
    if not args.json:
        print_table_header(info, args)
    failed = False
    records = []
    for workload in workloads:
        record = run_child(workload, args)
        records.append(record)
        failed = failed or "error" in record
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print_table_row(record)
            sys.stdout.flush()
    if not args.json:
        print_table_footer(records)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
