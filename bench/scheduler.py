"""Benchmarks of the pure scheduling core on Armada's own benchmark shapes.

    python bench/scheduler.py [--json] [--repeat N] [--repeat-huge N] [--only NAME ...]
                              [--scale F] [--gc on|freeze|off] [--gang-all]
                              [--profile cpu|sample|mem]

Findings and proposals from profiling these workloads are in bench/PROFILE.md.

Each workload runs in a fresh subprocess, so the peak RSS it reports is its own. The child
builds the inputs (timed separately as ``build_seconds``, like Go's ``b.ResetTimer``), then
times ``schedule(...)`` alone ``--repeat`` times (default 5; the 3.2-million-job cycle runs
``--repeat-huge`` times, default 3) and reports the median.

The shapes are those of Armada's ``internal/scheduler`` benchmarks: nodes of 32 CPU and
256 GiB (``ItN32CpuNodes``), jobs of 1 CPU and 4 GiB (``N1Cpu4GiJobs``), one priority class,
queues of priority factor 1, every job with its own submission time.

* ``schedule_many/*`` mirror ``nodedb.BenchmarkScheduleMany*``: one queue, every job fits.
  Armada schedules the jobs as one gang; we do so for ``100x3200`` when ``QueuedJob`` has
  gang fields (``"gang": true`` in the output), plain jobs otherwise.
  ``10000x10000_1cpu_free`` occupies 31 CPU of every node with a running job (Armada's
  ``ItWithUsedResourcesNodes``); those jobs belong to a queue the cycle is not given, so they
  take room without counting towards any queue's fair share, like Armada's used resources.
* ``cycle/*`` mirror ``BenchmarkPreemptingQueueScheduler``: N queues of M jobs on an empty
  cluster. ``seconds`` times that first cycle (it fills the cluster). Armada's reference
  figure times the *steady-state* cycle after it (the leased jobs running, everything else
  still queued, nothing scheduled); we time that too, as ``steady_seconds``.

``max_jobs_per_cycle`` is set to the number of queued jobs so the cap never cuts a cycle
short. Inputs are built memory-efficiently: every job shares one requests dict and one empty
selector dict, as a scheduler interning job shapes would.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flotilla.scheduling import (  # noqa: E402
    Node,
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


def gang_supported() -> bool:
    """Whether ``QueuedJob`` has the gang fields yet (another engineer is adding them)."""
    names = {f.name for f in dataclasses.fields(QueuedJob)}
    return {"gang_id", "gang_cardinality"} <= names


@dataclass(slots=True)
class Inputs:
    queued: list[QueuedJob]
    running: list[RunningJob]
    nodes: list[Node]
    queues: list[Queue]
    config: SchedulingConfig
    gang: bool = False


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
    """The inputs of one workload; ``gang`` makes each queue's jobs one gang, when supported."""
    gang = gang and gang_supported()
    node_list = make_nodes(nodes)
    names = queue_names(queues)
    queued: list[QueuedJob] = []
    for name in names:
        queued += make_jobs(name, jobs_per_queue, gang_id=f"gang-{name}" if gang else None)
    running = make_used(node_list, used_cpu) if used_cpu else []
    config = SchedulingConfig(max_jobs_per_cycle=max(len(queued), 1))
    return Inputs(queued, running, node_list, [Queue(name) for name in names], config, gang)


def steady_inputs(inputs: Inputs, leases: list[Any]) -> Inputs:
    """The next cycle's inputs: the leased jobs running where they were put, the rest queued."""
    leased = {lease.job_id for lease in leases}
    running = list(inputs.running)
    running += [
        RunningJob(lease.job_id, lease.queue, "run-" + lease.job_id, lease.executor, lease.node, JOB_REQUESTS)
        for lease in leases
    ]
    queued = [job for job in inputs.queued if job.job_id not in leased]
    return Inputs(queued, running, inputs.nodes, inputs.queues, inputs.config, inputs.gang)


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "schedule_many" or "cycle"
    nodes: int
    queues: int
    jobs_per_queue: int
    used_cpu: int = 0
    gang: bool = False
    armada_go_ms: float | None = None

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
        return build_inputs(self.nodes, self.queues, self.jobs_per_queue, self.used_cpu, self.gang)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in [
        Workload("schedule_many/100x3200", "schedule_many", 100, 1, 3200, gang=True, armada_go_ms=64),
        Workload("schedule_many/1000x32000", "schedule_many", 1000, 1, 32000, armada_go_ms=606),
        Workload(
            "schedule_many/10000x10000_1cpu_free",
            "schedule_many",
            10000,
            1,
            10000,
            used_cpu=31 * MILLI,
            armada_go_ms=318,
        ),
        Workload("cycle/10n_10q_3200", "cycle", 10, 10, 3200, armada_go_ms=173),
        Workload("cycle/1000n_10q_320000", "cycle", 1000, 10, 320000),
    ]
}


# --- measuring (in the child) -------------------------------------------------------------


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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


def _time_schedule(inputs: Inputs, runs: int, timer: GcTimer) -> tuple[list[float], list[float], Any]:
    times: list[float] = []
    gc_times: list[float] = []
    result = None
    for _ in range(runs):
        result = None
        gc.collect()
        timer.seconds, timer.collections, timer.active = 0.0, 0, True
        start = time.perf_counter()
        result = schedule(inputs.queued, inputs.running, inputs.nodes, inputs.queues, inputs.config)
        times.append(time.perf_counter() - start)
        timer.active = False
        gc_times.append(timer.seconds)
    return times, gc_times, result


def measure(workload: Workload, repeat: int, repeat_huge: int = 3, gc_mode: str = "on") -> dict[str, Any]:
    """Build ``workload``'s inputs and time ``schedule`` on them; the JSON record of one workload."""
    runs = max(1, repeat if workload.jobs < HUGE_JOBS else min(repeat, repeat_huge))
    timer = GcTimer()
    gc.callbacks.append(timer)
    try:
        base_rss = rss_mib()
        start = time.perf_counter()
        inputs = workload.build()
        build_seconds = time.perf_counter() - start
        inputs_rss = rss_mib()
        if gc_mode == "freeze":
            gc.collect()
            gc.freeze()
        elif gc_mode == "off":
            gc.disable()
        times, gc_times, result = _time_schedule(inputs, runs, timer)
        record: dict[str, Any] = {
            "workload": workload.name,
            "seconds": statistics.median(times),
            "scheduled": len(result.leases),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "runs": runs,
            "min_seconds": min(times),
            "gc_seconds": statistics.median(gc_times),
            "build_seconds": build_seconds,
            "base_rss_mib": round(base_rss, 1),
            "inputs_rss_mib": round(inputs_rss - base_rss, 1),
            "nodes": len(inputs.nodes),
            "queued": len(inputs.queued),
            "running": len(inputs.running),
            "unschedulable": len(result.unschedulable),
            "jobs_considered": getattr(result.stats, "jobs_considered", None),
            "gang": inputs.gang,
            "gang_requested": workload.gang,
            "gc_mode": gc_mode,
        }
        go_ms = workload.armada_go_ms
        record["armada_go_ms"] = go_ms
        if workload.kind == "cycle":
            leases = result.leases
            result = None
            steady = steady_inputs(inputs, leases)
            del leases
            times, gc_times, result = _time_schedule(steady, runs, timer)
            record.update(
                steady_seconds=statistics.median(times),
                steady_scheduled=len(result.leases),
                steady_gc_seconds=statistics.median(gc_times),
                steady_queued=len(steady.queued),
                steady_running=len(steady.running),
                steady_peak_rss_mib=round(peak_rss_mib(), 1),
            )
            # Armada's figure times the steady-state cycle: compare like with like.
            record["ratio"] = round(record["steady_seconds"] * 1000 / go_ms, 2) if go_ms else None
            record["ratio_first_cycle"] = round(record["seconds"] * 1000 / go_ms, 2) if go_ms else None
        else:
            record["ratio"] = round(record["seconds"] * 1000 / go_ms, 2) if go_ms else None
        return record
    finally:
        gc.callbacks.remove(timer)
        gc.enable()
        gc.unfreeze()


def profile(workload: Workload, mode: str, top: int = 30) -> None:
    """Print where one ``schedule`` call spends time or memory.

    ``cpu``: cProfile (exact call counts, but its per-call overhead inflates small functions);
    ``sample``: pyinstrument's sampling profiler (``pip install pyinstrument``; not a project
    dependency); ``mem``: tracemalloc's peak and what the result retains, by line.
    """
    inputs = workload.build()
    args = (inputs.queued, inputs.running, inputs.nodes, inputs.queues, inputs.config)
    print(f"== {workload.name}: {len(inputs.queued)} queued, {len(inputs.nodes)} nodes ({mode})")
    if mode == "cpu":
        import cProfile
        import pstats

        gc.collect()
        profiler = cProfile.Profile()
        profiler.enable()
        result = schedule(*args)
        profiler.disable()
        print(f"leases: {len(result.leases)}")
        stats = pstats.Stats(profiler, stream=sys.stdout)
        stats.sort_stats("tottime").print_stats(top)
        stats.sort_stats("cumulative").print_stats(top)
    elif mode == "sample":
        from pyinstrument import Profiler  # type: ignore[import-not-found]

        gc.collect()
        sampler = Profiler(interval=0.0005)
        sampler.start()
        result = schedule(*args)
        sampler.stop()
        print(f"leases: {len(result.leases)}")
        print(sampler.output_text(unicode=False, color=False, show_all=False, short_mode=False))
    else:
        import tracemalloc

        result = None
        gc.collect()
        tracemalloc.start(5)
        before = tracemalloc.take_snapshot()
        result = schedule(*args)
        current, peak = tracemalloc.get_traced_memory()
        after = tracemalloc.take_snapshot()
        tracemalloc.stop()
        print(f"leases: {len(result.leases)}")
        print(f"traced during schedule: peak {peak / 2**20:.1f} MiB, retained {current / 2**20:.1f} MiB")
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
    ] + (["--gang-all"] if args.gang_all else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"workload": workload.name, "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


COLUMNS = [
    ("workload", 38, "{}"),
    ("seconds", 9, "{:.3f}"),
    ("steady_seconds", 9, "{:.3f}"),
    ("armada_go_ms", 8, "{:.0f}"),
    ("ratio", 7, "{:.2f}x"),
    ("scheduled", 9, "{}"),
    ("peak_rss_mib", 9, "{:.0f}"),
    ("build_seconds", 8, "{:.2f}"),
    ("runs", 4, "{}"),
]
HEADERS = {
    "workload": "workload",
    "seconds": "seconds",
    "steady_seconds": "steady s",
    "armada_go_ms": "Go ms",
    "ratio": "ours/Go",
    "scheduled": "scheduled",
    "peak_rss_mib": "peak MiB",
    "build_seconds": "build s",
    "runs": "runs",
}


def _cell(record: dict[str, Any], key: str, width: int, fmt: str) -> str:
    value = record.get(key)
    text = "-" if value is None else fmt.format(value)
    if key == "workload":
        if record.get("gang_requested") and not record.get("gang"):
            text += " (no gang)"
        return text.ljust(width)
    return text.rjust(width)


def print_table_header(info: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"machine: {info['cpu']}, {info['cores']} cores, {info['implementation']} {info['python']}; "
        f"load {info['load1']}; median of {args.repeat} runs ({args.repeat_huge} for >= {HUGE_JOBS:,} jobs); gc {args.gc}"
        + ("; every schedule_many workload one gang" if args.gang_all else "")
        + (f"; scale {args.scale}" if args.scale != 1 else "")
    )
    print("  ".join(HEADERS[k].rjust(w) if k != "workload" else HEADERS[k].ljust(w) for k, w, _ in COLUMNS))


def print_table_row(record: dict[str, Any]) -> None:
    if "error" in record:
        print(f"{record['workload']:<38}  ERROR: {record['error']}")
        return
    print("  ".join(_cell(record, key, width, fmt) for key, width, fmt in COLUMNS))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
        "--gc", choices=["on", "freeze", "off"], default="on", help="cyclic GC during schedule()"
    )
    parser.add_argument(
        "--profile", choices=["cpu", "sample", "mem"], help="profile one schedule() call per workload"
    )
    parser.add_argument(
        "--gang-all",
        action="store_true",
        help="make every schedule_many workload one gang, as Armada's BenchmarkScheduleMany* do",
    )
    parser.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        workload = WORKLOADS[args.child].scaled(args.scale)
        if args.gang_all and workload.kind == "schedule_many":
            workload = dataclasses.replace(workload, gang=True)
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
                + (["--gang-all"] if args.gang_all else [])
            )
            if proc.returncode:
                return proc.returncode
        return 0

    info = machine()
    if not args.json:
        print_table_header(info, args)
    failed = False
    for workload in workloads:
        record = run_child(workload, args)
        failed = failed or "error" in record
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print_table_row(record)
            sys.stdout.flush()
    if not args.json:
        print(
            "ours/Go: seconds / Armada's figure; for cycle/* steady s / Armada's figure (Armada times "
            "the steady-state cycle). 'seconds' times schedule() only; build s is building the inputs."
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
