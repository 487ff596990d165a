"""A discrete-event simulation of Flotilla's scheduler on simulated time, with no Kafka.

Nodes come from a cluster file, jobs from a workload file's templates and the scheduler's
settings from a scheduling config (see :mod:`flotilla.simulator.cluster_file`,
:mod:`flotilla.simulator.workload_file` and :mod:`flotilla.scheduling.config_file`). Every
``cycle_interval`` simulated seconds the simulation calls the pure scheduling cycle,
:func:`flotilla.scheduling.schedule`, once per pool (pools are scheduled one after another,
each with its own fair shares, as Armada does), with the jobs queued and running at that time:

* a lease starts the job; it ends ``pending delay + runtime`` later, the runtime having been
  drawn once per job from its template's shifted exponential (``minimum + Exp(tailMean)``);
* a preempted job goes back to its queue with its job id, its submission time and its
  runtime, and runs again from the start when it is next leased (its ``preemptions`` count
  goes up); with a ``workflowManagerDelayDistribution`` it is queued again after that delay;
* a template's jobs are submitted at ``earliestSubmitTime``, or, when it has
  ``dependencies``, ``earliestSubmitTimeFromDependencyCompletion`` after the last job of its
  last dependency finished (never before ``earliestSubmitTime``);
* the simulation ends when every job has finished, when ``max_time`` is reached, or when
  nothing can change any more (jobs queued that fit nowhere and nothing running).

Everything is deterministic: runtimes come from a generator seeded with the workload's
``randomSeed`` and the template's position, job ids are ``{template id}-{n}`` (``n``
zero-padded), and the cycle is a pure function. Two things keep a cycle cheap on large
workloads without changing its decisions:

* **Fast-forward.** A cycle that leased and preempted nothing leaves the state as it found
  it, so the next cycles would decide the same until an event (a submission, a job ending)
  happens: they are skipped, and their rows in ``queues.parquet`` are copies.
* **Queue prefixes.** Each queue's jobs are kept sorted in the scheduler's order and a cycle
  is shown only a prefix of each queue: enough jobs to demand the whole pool (so fair shares
  and any demand-based caps are unchanged), at least 64. If the cycle considered every job of
  a queue's prefix and the queue has more, the cycle is run again with a longer prefix, so the
  result is always the one the whole queue would have given.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import time as wallclock
from bisect import bisect_left, insort
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.parquet as pq

from flotilla.armada_yaml import ArmadaFileError
from flotilla.scheduling import (
    CycleResult,
    Node,
    Queue,
    QueuedJob,
    RunningJob,
    SchedulingConfig,
    dominant_share,
    job_order,
    schedule,
)
from flotilla.scheduling.config_file import (
    SchedulingConfigSpec,
    load_scheduling_config,
    scheduling_config_from_spec,
)

from .cluster_file import CLUSTER_LABEL, ClusterSpec, load_cluster_spec
from .distributions import ShiftedExponential
from .workload_file import JobTemplate, WorkloadSpec, check_workload_against_config, load_workload_spec

DEFAULT_CYCLE_INTERVAL = 10.0
GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "gpu")
MIN_PREFIX = 64

# Job states (``final_state`` in jobs.parquet).
UNSUBMITTED = "unsubmitted"
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
REQUEUEING = "requeueing"  # preempted, not yet queued again (reported as queued)

JOB_COLUMNS = (
    "job_id",
    "queue",
    "job_set",
    "priority_class",
    "cpu",
    "memory",
    "gpu",
    "submit_time",
    "first_scheduled_time",
    "end_time",
    "final_state",
    "preemptions",
    "node",
)
QUEUE_COLUMNS = ("time", "queue", "cpu", "memory", "gpu", "fair_share", "actual_share")

JOBS_SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("queue", pa.string()),
        ("job_set", pa.string()),
        ("priority_class", pa.string()),
        ("cpu", pa.float64()),
        ("memory", pa.float64()),
        ("gpu", pa.float64()),
        ("submit_time", pa.float64()),
        ("first_scheduled_time", pa.float64()),
        ("end_time", pa.float64()),
        ("final_state", pa.string()),
        ("preemptions", pa.int64()),
        ("node", pa.string()),
        ("pool", pa.string()),
        ("template_id", pa.string()),
        ("runtime", pa.float64()),
        ("unschedulable_reason", pa.string()),
    ]
)
QUEUES_SCHEMA = pa.schema(
    [
        ("time", pa.float64()),
        ("pool", pa.string()),
        ("queue", pa.string()),
        ("cpu", pa.float64()),
        ("memory", pa.float64()),
        ("gpu", pa.float64()),
        ("fair_share", pa.float64()),
        ("adjusted_fair_share", pa.float64()),
        ("actual_share", pa.float64()),
        ("queued_jobs", pa.int64()),
        ("running_jobs", pa.int64()),
    ]
)

_END, _SUBMIT, _REQUEUE = 0, 1, 2


# --- the order of jobs in a queue ------------------------------------------------------------


def _order_function(config: SchedulingConfigSpec) -> Callable[[QueuedJob], Any]:
    """The scheduler's order of jobs within a queue, as a sort key: the scheduling core's
    :func:`~flotilla.scheduling.job_order` with the priority of the job's class."""
    priorities = {name: pc.priority for name, pc in config.priority_classes.items()}
    default = config.default_priority_class_name

    def class_priority(job: QueuedJob) -> int:
        return priorities.get(job.priority_class or default, 0)

    return lambda job: job_order(job, class_priority(job))


# --- jobs ------------------------------------------------------------------------------------


class _Job:
    __slots__ = (
        "index",
        "job_id",
        "template",
        "queue",
        "job_set",
        "priority_class",
        "requests",
        "runtime",
        "gang_id",
        "gang_cardinality",
        "shares",
        "submit_time",
        "first_scheduled",
        "end_time",
        "state",
        "preemptions",
        "node",
        "pool",
        "run",
        "started",
        "queued",
        "key",
        "reason",
    )

    def __init__(self) -> None:
        self.submit_time: float | None = None
        self.first_scheduled: float | None = None
        self.end_time: float | None = None
        self.state = UNSUBMITTED
        self.preemptions = 0
        self.node: str | None = None
        self.pool: str | None = None
        self.run = 0
        self.started = 0.0
        self.queued: QueuedJob | None = None
        self.key: tuple | None = None
        self.reason: str | None = None


@dataclass(slots=True)
class _Template:
    spec: JobTemplate
    jobs: list[_Job]
    waiting_for: set[int]
    dependents: list[int]
    unfinished: int


def expand_templates(workload: WorkloadSpec) -> list[JobTemplate]:
    """The workload's templates with repeats unrolled as Armada does (``{id}-repeat-{i}``,
    submitted ``i * period`` later); a dependency on a repeated template waits for all of its
    repetitions."""
    repeated: dict[str, list[str]] = {}
    out: list[JobTemplate] = []
    for template in workload.templates():
        if template.repeat is None:
            out.append(template)
            continue
        ids = []
        for i in range(template.repeat.num_times):
            copy = dataclasses.replace(
                template,
                id=f"{template.id}-repeat-{i}",
                earliest_submit_time=template.earliest_submit_time + i * template.repeat.period,
                repeat=None,
            )
            ids.append(copy.id)
            out.append(copy)
        repeated[template.id] = ids
    if repeated:
        out = [
            dataclasses.replace(
                t, dependencies=tuple(d for dep in t.dependencies for d in repeated.get(dep, [dep]))
            )
            for t in out
        ]
    return out


def sample_runtimes(distribution: ShiftedExponential, number: int, seed: int, stream: int) -> np.ndarray:
    """``number`` runtimes (seconds) for the template at position ``stream`` of a workload
    seeded with ``seed``: the same arguments always give the same runtimes."""
    rng = np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, stream])
    return distribution.sample(rng, number)


# --- results ---------------------------------------------------------------------------------


@dataclass
class SimulationResult:
    """What a simulation produced: ``jobs`` (one row per job) and ``queues`` (one row per pool,
    queue and cycle) as Arrow tables, with the totals the summary is computed from."""

    jobs: pa.Table
    queues: pa.Table
    capacity: dict[str, dict[str, int]]
    resource_seconds: dict[str, dict[str, float]]
    end_time: float
    cycles: int
    cycles_run: int
    wall_seconds: float
    stop_reason: str
    workload: str = ""
    cluster: str = ""
    queue_names: list[str] = field(default_factory=list)

    def write(self, directory: str | Path) -> tuple[Path, Path]:
        """Write ``jobs.parquet`` and ``queues.parquet`` to ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        jobs, queues = directory / "jobs.parquet", directory / "queues.parquet"
        pq.write_table(self.jobs, jobs)
        pq.write_table(self.queues, queues)
        return jobs, queues

    def utilisation(self, pool: str | None = None) -> dict[str, float]:
        """Time-averaged allocated / total per resource, over ``[0, end_time]``; all pools
        together unless ``pool`` is given."""
        pools = [pool] if pool is not None else list(self.capacity)
        totals: dict[str, float] = {}
        used: dict[str, float] = {}
        for name in pools:
            for resource, quantity in self.capacity[name].items():
                totals[resource] = totals.get(resource, 0) + quantity
            for resource, seconds in self.resource_seconds.get(name, {}).items():
                used[resource] = used.get(resource, 0.0) + seconds
        if self.end_time <= 0:
            return {r: 0.0 for r, q in totals.items() if q > 0}
        return {r: used.get(r, 0.0) / (q * self.end_time) for r, q in totals.items() if q > 0}

    def wait_times(self) -> np.ndarray:
        """``first_scheduled_time - submit_time`` of every job that was scheduled."""
        first = self.jobs.column("first_scheduled_time").to_numpy(zero_copy_only=False)
        submit = self.jobs.column("submit_time").to_numpy(zero_copy_only=False)
        mask = ~np.isnan(first.astype(float)) & ~np.isnan(submit.astype(float))
        return (first[mask] - submit[mask]).astype(float)

    def queue_shares(self) -> list[tuple[str, str, float, float, float]]:
        """``(pool, queue, mean actual share, mean fair share, mean adjusted fair share)`` over
        the cycles in which the queue was active (had a fair share) in the pool."""
        table = self.queues
        if table.num_rows == 0:
            return []
        active = table.filter(pa_compute.greater(table.column("fair_share"), 0.0))
        means = active.group_by(["pool", "queue"]).aggregate(
            [("actual_share", "mean"), ("fair_share", "mean"), ("adjusted_fair_share", "mean")]
        )
        found = {
            (row["pool"], row["queue"]): (
                row["actual_share_mean"],
                row["fair_share_mean"],
                row["adjusted_fair_share_mean"],
            )
            for row in means.to_pylist()
        }
        return [
            (pool, queue, *found.get((pool, queue), (0.0, 0.0, 0.0)))
            for pool in self.capacity
            for queue in self.queue_names
        ]

    @property
    def preemptions(self) -> int:
        return int(pa_compute.sum(self.jobs.column("preemptions")).as_py() or 0)

    def summary(self) -> str:
        """A human-readable report: utilisation, shares, wait times, preemptions."""
        states = self.jobs.column("final_state").to_pylist()
        counts: dict[str, int] = {}
        for state in states:
            counts[state] = counts.get(state, 0) + 1
        lines = [
            f"simulated {self.workload or 'workload'} on {self.cluster or 'cluster'}: "
            f"{self.jobs.num_rows} jobs, {format_seconds(self.end_time)} simulated "
            f"({self.cycles} cycles, {self.cycles_run} run) in {self.wall_seconds:.2f}s; {self.stop_reason}",
            "jobs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
            "utilisation (time-averaged allocated / total):",
        ]
        for resource, value in self.utilisation().items():
            lines.append(f"  {resource:<20} {100 * value:6.2f}%")
        if len(self.capacity) > 1:
            for pool in self.capacity:
                parts = ", ".join(f"{r} {100 * v:.1f}%" for r, v in self.utilisation(pool).items())
                lines.append(f"  pool {pool}: {parts}")
        lines.append("queue shares (mean over cycles where the queue was active):")
        lines.append(f"  {'pool':<12} {'queue':<16} {'share':>8} {'fair share':>10} {'adjusted':>9}")
        for pool, queue, actual, fair, adjusted in self.queue_shares():
            lines.append(f"  {pool:<12} {queue:<16} {actual:8.3f} {fair:10.3f} {adjusted:9.3f}")
        waits = self.wait_times()
        if waits.size:
            p50, p90, p99 = np.percentile(waits, [50, 90, 99])
            lines.append(
                f"wait time (first scheduled - submitted), {waits.size} jobs: "
                f"p50 {format_seconds(p50)}, p90 {format_seconds(p90)}, p99 {format_seconds(p99)}"
            )
        else:
            lines.append("wait time: no job was scheduled")
        lines.append(f"preemptions: {self.preemptions}")
        return "\n".join(lines)


def format_seconds(seconds: float) -> str:
    """``3725.0`` -> ``"1h2m5s"``; fractions of a second below a minute are kept."""
    if seconds < 60:
        return f"{seconds:.3g}s" if seconds != int(seconds) else f"{int(seconds)}s"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{hours}h" if hours else ""
    out += f"{minutes}m" if minutes or hours else ""
    return out + f"{secs}s"


class _Progress:
    """A one-line text progress bar on ``stream``, redrawn at most every ``every`` seconds."""

    def __init__(self, stream: IO[str], total: int, width: int = 30, every: float = 0.2) -> None:
        self.stream, self.total, self.width, self.every = stream, max(total, 1), width, every
        self.last = 0.0
        self.tty = bool(getattr(stream, "isatty", lambda: False)())

    def update(self, sim_time: float, finished: int, queued: int, running: int, force: bool = False) -> None:
        now = wallclock.monotonic()
        if not force and now - self.last < (self.every if self.tty else 5.0):
            return
        self.last = now
        fraction = min(finished / self.total, 1.0)
        filled = int(round(self.width * fraction))
        bar = "#" * filled + "-" * (self.width - filled)
        line = (
            f"simulating [{bar}] {100 * fraction:5.1f}% | t={format_seconds(sim_time)} | "
            f"{finished}/{self.total} finished, {queued} queued, {running} running"
        )
        self.stream.write(("\r" + line) if self.tty else (line + "\n"))
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


# --- the simulation --------------------------------------------------------------------------


class Simulation:
    """One simulation run; see the module docstring. Call :meth:`run` once."""

    def __init__(
        self,
        cluster: ClusterSpec,
        workload: WorkloadSpec,
        config: SchedulingConfigSpec,
        *,
        cycle_interval: float = DEFAULT_CYCLE_INTERVAL,
        max_time: float | None = None,
        progress: IO[str] | None = None,
        queue_prefix: int | None = MIN_PREFIX,
    ) -> None:
        if not cycle_interval > 0 or not math.isfinite(cycle_interval):
            raise ValueError(f"cycle_interval must be a positive number of seconds, got {cycle_interval!r}")
        if max_time is not None and not max_time >= 0:
            raise ValueError(f"max_time must not be negative, got {max_time!r}")
        check_workload_against_config(workload, config)
        self.cluster, self.workload, self.spec = cluster, workload, config
        self.cycle_interval = float(cycle_interval)
        self.max_time = max_time
        # How many jobs of each queue a cycle is shown at least (None: all of them); any
        # value gives the same decisions, see the module docstring.
        self.queue_prefix = queue_prefix
        self.config = scheduling_config_from_spec(config)
        self.resources = tuple(self.config.resources)
        self.order = _order_function(config)
        self._progress = _Progress(progress, workload.job_count) if progress is not None else None

        # Nodes, by pool.
        self.pools: list[str] = sorted(cluster.pools)  # the scheduling core's order too
        self.nodes: dict[str, list[Node]] = {pool: [] for pool in self.pools}
        for c in cluster.clusters:
            i = 0
            for template in c.node_templates:
                labels = {**template.labels, CLUSTER_LABEL: c.name}
                for _ in range(template.number):
                    self.nodes[c.pool].append(
                        Node(
                            executor=c.name,
                            name=f"{c.name}-{i}",
                            pool=c.pool,
                            allocatable=dict(template.resources),
                            labels=dict(labels),
                            taints=tuple(dict(t) for t in template.taints),
                        )
                    )
                    i += 1
        self.capacity: dict[str, dict[str, int]] = {}
        for pool, nodes in self.nodes.items():
            total: dict[str, int] = {}
            for node in nodes:
                for name, quantity in node.allocatable.items():
                    total[name] = total.get(name, 0) + quantity
            self.capacity[pool] = total

        # Queues.
        self.queue_names = [q.name for q in workload.queues]
        self.queues = [Queue(q.name, priority_factor=q.priority_factor) for q in workload.queues]
        self.waiting: dict[str, list[tuple[Any, int]]] = {name: [] for name in self.queue_names}
        # Per queue, how many of its waiting jobs come from each template.
        self.waiting_templates: dict[str, dict[int, int]] = {name: {} for name in self.queue_names}

        # Jobs, from templates.
        self.templates: list[_Template] = []
        self.jobs: list[_Job] = []
        self.by_id: dict[str, _Job] = {}
        self._materialise(expand_templates(workload))

        # State.
        self.now = 0.0
        self.events: list[tuple[float, int, int, int, int]] = []
        self._seq = 0
        self.running: dict[str, dict[str, RunningJob]] = {pool: {} for pool in self.pools}
        self.allocated: dict[str, dict[str, dict[str, int]]] = {
            pool: {q: {} for q in self.queue_names} for pool in self.pools
        }
        self.running_count: dict[str, dict[str, int]] = {
            pool: dict.fromkeys(self.queue_names, 0) for pool in self.pools
        }
        self.resource_seconds: dict[str, dict[str, float]] = {pool: {} for pool in self.pools}
        self.finished = 0
        self.fair: dict[str, dict[str, float]] = {pool: {} for pool in self.pools}
        self.adjusted: dict[str, dict[str, float]] = {pool: {} for pool in self.pools}
        seed = workload.random_seed & 0xFFFFFFFFFFFFFFFF
        self._pending_rng = np.random.default_rng([seed, 1 << 32])
        self._workflow_rng = np.random.default_rng([seed, (1 << 32) + 1])
        self._rate = config.maximum_scheduling_rate
        self._tokens = float(self.config.max_jobs_per_cycle)
        self._last_cycle = 0.0
        self._rows: dict[str, list] = {name: [] for name in QUEUES_SCHEMA.names}

    # --- set-up ----------------------------------------------------------------------------

    def _materialise(self, templates: list[JobTemplate]) -> None:
        index_of = {t.id: i for i, t in enumerate(templates)}
        default_pc = self.spec.default_priority_class_name
        for position, spec in enumerate(templates):
            runtime = spec.runtime_distribution
            if spec.gang_cardinality > 0:
                # As in Armada: a gang's jobs run for the same time, so they end together.
                runtime = ShiftedExponential(runtime.minimum, 0.0)
            runtimes = sample_runtimes(runtime, spec.number, self.workload.random_seed, position)
            requests = spec.effective_requests
            shares = tuple(self._pool_share(requests, pool) for pool in self.pools)
            width = len(str(max(spec.number - 1, 0)))
            jobs = []
            for k in range(spec.number):
                job = _Job()
                job.index = len(self.jobs)
                job.job_id = f"{spec.id}-{k:0{width}d}"
                job.template = position
                job.queue = spec.queue
                job.job_set = spec.job_set
                job.priority_class = spec.priority_class_name or default_pc
                job.requests = requests
                job.runtime = float(runtimes[k])
                job.shares = shares
                if spec.gang_cardinality > 0:
                    job.gang_id = f"{spec.id}-gang-{k // spec.gang_cardinality}"
                    job.gang_cardinality = spec.gang_cardinality
                else:
                    job.gang_id, job.gang_cardinality = "", 0
                self.jobs.append(job)
                self.by_id[job.job_id] = job
                jobs.append(job)
            self.templates.append(
                _Template(
                    spec=spec,
                    jobs=jobs,
                    waiting_for={index_of[d] for d in spec.dependencies},
                    dependents=[],
                    unfinished=spec.number,
                )
            )
        for i, template in enumerate(self.templates):
            for dependency in template.waiting_for:
                self.templates[dependency].dependents.append(i)
        if len(self.by_id) != len(self.jobs):
            raise ArmadaFileError(
                self.workload.source or self.workload.name, "", "job template ids make job ids collide"
            )

    def _pool_share(self, requests: Mapping[str, int], pool: str) -> float:
        return dominant_share(requests, self.capacity[pool], self.resources)

    # --- events ----------------------------------------------------------------------------

    def _push(self, when: float, kind: int, a: int, b: int = 0) -> None:
        heapq.heappush(self.events, (when, self._seq, kind, a, b))
        self._seq += 1

    def _next_event_time(self) -> float | None:
        events = self.events
        while events:
            when, _, kind, a, b = events[0]
            if kind == _END:
                job = self.jobs[a]
                if job.run != b or job.state != RUNNING:
                    heapq.heappop(events)  # the run was preempted
                    continue
            return when
        return None

    def _drain(self, until: float) -> bool:
        """Apply every event at or before ``until``; True if any changed the state."""
        changed = False
        events = self.events
        while events and events[0][0] <= until:
            when, _, kind, a, b = heapq.heappop(events)
            if kind == _END:
                job = self.jobs[a]
                if job.run == b and job.state == RUNNING:
                    self._finish(job, when)
                    changed = True
            elif kind == _SUBMIT:
                self._submit(a, when)
                changed = True
            else:
                self._enqueue(self.jobs[a])
                changed = True
        return changed

    def _submit(self, position: int, when: float) -> None:
        template = self.templates[position]
        spec = template.spec
        if not template.jobs:
            self._complete(position, when)
            return
        for job in template.jobs:
            job.submit_time = when
            gang: dict[str, Any] = {}
            if job.gang_cardinality:
                gang = {
                    "gang_id": job.gang_id,
                    "gang_cardinality": job.gang_cardinality,
                    "gang_node_uniformity_label": spec.gang_node_uniformity_label or CLUSTER_LABEL,
                }
            job.queued = QueuedJob(
                job_id=job.job_id,
                queue=job.queue,
                job_set=job.job_set,
                priority=float(spec.queue_priority),
                submitted_at=when,
                requests=job.requests,
                node_selector=dict(spec.node_selector),
                tolerations=spec.tolerations,
                priority_class=job.priority_class,
                **gang,
            )
            job.key = (self.order(job.queued), job.index)
            self._enqueue(job)

    def _enqueue(self, job: _Job) -> None:
        job.state = QUEUED
        insort(self.waiting[job.queue], job.key)
        counts = self.waiting_templates[job.queue]
        counts[job.template] = counts.get(job.template, 0) + 1

    def _dequeue(self, job: _Job) -> None:
        waiting = self.waiting[job.queue]
        position = bisect_left(waiting, job.key)
        if position < len(waiting) and waiting[position] == job.key:
            del waiting[position]
            counts = self.waiting_templates[job.queue]
            counts[job.template] -= 1
            if not counts[job.template]:
                del counts[job.template]

    def _finish(self, job: _Job, when: float) -> None:
        self._stop_run(job, when)
        job.state = SUCCEEDED
        job.end_time = when
        self.finished += 1
        template = self.templates[job.template]
        template.unfinished -= 1
        if template.unfinished == 0:
            self._complete(job.template, when)

    def _complete(self, position: int, when: float) -> None:
        """Every job of template ``position`` has finished at ``when``: submit the templates
        that were waiting only for it."""
        for i in self.templates[position].dependents:
            dependent = self.templates[i]
            dependent.waiting_for.discard(position)
            if not dependent.waiting_for:
                spec = dependent.spec
                ready = when + spec.earliest_submit_time_from_dependency_completion
                self._push(max(spec.earliest_submit_time, ready), _SUBMIT, i)

    def _stop_run(self, job: _Job, when: float) -> None:
        pool = job.pool
        assert pool is not None
        del self.running[pool][job.job_id]
        allocation = self.allocated[pool][job.queue]
        used = self.resource_seconds[pool]
        duration = when - job.started
        for name, quantity in job.requests.items():
            allocation[name] = allocation.get(name, 0) - quantity
            used[name] = used.get(name, 0.0) + quantity * duration
        self.running_count[pool][job.queue] -= 1

    # --- cycles ----------------------------------------------------------------------------

    def _prefixes(self, pool: str, lengths: dict[str, int]) -> tuple[list[QueuedJob], dict[str, int]]:
        """The queued jobs shown to a cycle of ``pool``: each queue's first ``lengths[queue]``
        jobs, extended to cover the whole pool's capacity in demand and to finish a gang."""
        p = self.pools.index(pool)
        jobs = self.jobs
        queued: list[QueuedJob] = []
        shown: dict[str, int] = {}
        for name, waiting in self.waiting.items():
            if not waiting:
                continue
            n = len(waiting)
            k = min(lengths.get(name, MIN_PREFIX), n)
            demand = dominant_share(self.allocated[pool][name], self.capacity[pool], self.resources)
            for _, i in waiting[:k]:
                demand += jobs[i].shares[p]
            while k < n and demand < 1.0:
                demand += jobs[waiting[k][1]].shares[p]
                k += 1
            if k < n:
                last = jobs[waiting[k - 1][1]]
                while last.gang_cardinality and k < n and jobs[waiting[k][1]].gang_id == last.gang_id:
                    k += 1
            shown[name] = k
            queued.extend(jobs[i].queued for _, i in waiting[:k])
        return queued, shown

    def _needs_more(self, name: str, shown: int, result: CycleResult) -> bool:
        """Whether the cycle might have decided differently had it seen more of queue ``name``
        than its first ``shown`` jobs: it tried every one of them, and the jobs it did not see
        include a template none of whose jobs it found unschedulable (jobs of one template are
        alike, and a shape that fits nowhere keeps fitting nowhere for the rest of a cycle)."""
        waiting = self.waiting[name]
        if shown >= len(waiting):
            return False
        jobs, by_id = self.jobs, self.by_id
        considered = 0
        unfit: set[int] = set()
        for lease in result.leases:
            job = by_id.get(lease.job_id)
            if job is not None and job.queue == name and job.state == QUEUED:
                considered += 1
        for job_id in result.unschedulable:
            job = by_id.get(job_id)
            if job is not None and job.queue == name and job.state == QUEUED:
                considered += 1
                unfit.add(job.template)
        if considered < shown:
            return False
        in_prefix: dict[int, int] = {}
        for _, i in waiting[:shown]:
            t = jobs[i].template
            in_prefix[t] = in_prefix.get(t, 0) + 1
        return any(
            count > in_prefix.get(t, 0) and t not in unfit
            for t, count in self.waiting_templates[name].items()
        )

    def _schedule_pool(self, pool: str, config: SchedulingConfig) -> CycleResult | None:
        running = list(self.running[pool].values())
        if not running and not any(self.waiting.values()):
            return None
        if self.queue_prefix is None:
            lengths = {name: len(waiting) for name, waiting in self.waiting.items()}
        else:
            lengths = dict.fromkeys(self.queue_names, max(1, self.queue_prefix))
        while True:
            queued, shown = self._prefixes(pool, lengths)
            result = schedule(queued, running, self.nodes[pool], self.queues, config)
            short = [name for name, k in shown.items() if self._needs_more(name, k, result)]
            if not short:
                break
            for name in short:
                lengths[name] = 4 * shown[name]
        for job_id, reason in result.unschedulable.items():
            job = self.by_id.get(job_id)
            if job is not None:
                job.reason = reason
        return result

    def _cycle(self, now: float) -> tuple[int, int]:
        """One scheduling cycle at ``now``, pool by pool; returns (leases, preemptions)."""
        limited = math.isfinite(self._rate)
        cap = self.config.max_jobs_per_cycle
        if limited:
            self._tokens = min(float(cap), self._tokens + self._rate * (now - self._last_cycle))
            self._last_cycle = now
            cap = int(self._tokens)
        leased = preempted = 0
        requeue: list[_Job] = []
        for pool in self.pools:
            # One cap on new leases for the whole cycle, shared by its pools.
            left = max(0, cap - leased)
            config = self.config
            if left != config.max_jobs_per_cycle:
                config = dataclasses.replace(config, max_jobs_per_cycle=left)
            result = self._schedule_pool(pool, config)
            if result is None:
                self.fair[pool], self.adjusted[pool] = {}, {}
                continue
            self.fair[pool], self.adjusted[pool] = self._shares(pool, result)
            for job_id in result.preemptions:
                job = self.by_id[job_id]
                if job.state != RUNNING:
                    raise RuntimeError(f"the scheduler preempted {job_id}, which is not running")
                self._stop_run(job, now)
                job.preemptions += 1
                job.run += 1
                job.state = REQUEUEING
                requeue.append(job)
                preempted += 1
            for lease in result.leases:
                job = self.by_id[lease.job_id]
                if job.state != QUEUED:
                    raise RuntimeError(f"the scheduler leased {lease.job_id}, which is {job.state}")
                self._start(job, lease.executor, lease.node, lease.pool or pool, now)
                leased += 1
        if limited:
            self._tokens = max(0.0, self._tokens - leased)
        delay = self.cluster.workflow_manager_delay
        for job in requeue:
            wait = float(delay.sample(self._workflow_rng, 1)[0]) if delay.mean > 0 else 0.0
            if wait > 0:
                self._push(now + wait, _REQUEUE, job.index)
            else:
                self._enqueue(job)
        return leased, preempted

    def _shares(self, pool: str, result: CycleResult) -> tuple[dict[str, float], dict[str, float]]:
        """The pool's fair shares and demand-adjusted fair shares the cycle used."""
        source = result.stats.pools.get(pool) or result.stats
        shares = source.fair_shares
        adjusted = source.adjusted_fair_shares or shares
        return dict(shares), dict(adjusted)

    def _start(self, job: _Job, executor: str, node: str, pool: str, now: float) -> None:
        self._dequeue(job)
        job.run += 1
        job.state = RUNNING
        job.node, job.pool, job.started = node, pool, now
        if job.first_scheduled is None:
            job.first_scheduled = now
        queued = job.queued
        assert queued is not None
        if pool not in self.running:
            raise RuntimeError(f"the scheduler leased {job.job_id} in unknown pool {pool!r}")
        self.running[pool][job.job_id] = RunningJob(
            job_id=job.job_id,
            queue=job.queue,
            run_id=f"{job.job_id}-run-{job.run}",
            executor=executor,
            node=node,
            requests=job.requests,
            priority_class=job.priority_class,
            priority=queued.priority,
            submitted_at=queued.submitted_at,
            started_at=now,
            gang_id=job.gang_id,
            pool=pool,
        )
        allocation = self.allocated[pool][job.queue]
        for name, quantity in job.requests.items():
            allocation[name] = allocation.get(name, 0) + quantity
        self.running_count[pool][job.queue] += 1
        pending = self.cluster.pending_delay
        delay = float(pending.sample(self._pending_rng, 1)[0]) if pending.mean > 0 else 0.0
        self._push(now + delay + job.runtime, _END, job.index, job.run)

    def _record(self, now: float, copies: int = 1) -> None:
        """Append the rows of the cycle at ``now`` (and of ``copies - 1`` skipped cycles after it)."""
        rows = self._rows
        interval = self.cycle_interval
        for pool in self.pools:
            total = self.capacity[pool]
            fair, adjusted = self.fair[pool], self.adjusted[pool]
            for name in self.queue_names:
                allocation = self.allocated[pool][name]
                actual = dominant_share(allocation, total, self.resources)
                cpu = allocation.get("cpu", 0) / 1000
                memory = allocation.get("memory", 0) / 1000
                gpu = sum(allocation.get(r, 0) for r in GPU_RESOURCES) / 1000
                queued = len(self.waiting[name])
                running = self.running_count[pool][name]
                share = float(fair.get(name, 0.0))
                adjusted_share = float(adjusted.get(name, 0.0))
                for c in range(copies):
                    rows["time"].append(now + c * interval)
                    rows["pool"].append(pool)
                    rows["queue"].append(name)
                    rows["cpu"].append(cpu)
                    rows["memory"].append(memory)
                    rows["gpu"].append(gpu)
                    rows["fair_share"].append(share)
                    rows["adjusted_fair_share"].append(adjusted_share)
                    rows["actual_share"].append(actual)
                    rows["queued_jobs"].append(queued)
                    rows["running_jobs"].append(running)

    def run(self) -> SimulationResult:
        """Simulate until every job has finished, ``max_time`` is reached or nothing can change."""
        started = wallclock.perf_counter()
        for i, template in enumerate(self.templates):
            if not template.waiting_for:
                self._push(template.spec.earliest_submit_time, _SUBMIT, i)
        interval = self.cycle_interval
        total_jobs = len(self.jobs)
        cycle = 0  # the cycle at time cycle * interval
        cycles_run = 0
        recorded = 0
        stop_reason = "all jobs finished"
        end_time = 0.0
        while True:
            now = cycle * interval
            if self.max_time is not None and now > self.max_time:
                stop_reason = f"stopped at the maximum simulated time ({format_seconds(self.max_time)})"
                end_time = self.max_time
                break
            self.now = now
            self._drain(now)
            leased, preempted = self._cycle(now)
            cycles_run += 1
            if self._progress is not None:
                running = sum(len(r) for r in self.running.values())
                queued = sum(len(w) for w in self.waiting.values())
                self._progress.update(now, self.finished, queued, running)
            if self.finished == total_jobs:
                self._record(now)
                recorded += 1
                end_time = max((j.end_time or 0.0) for j in self.jobs) if self.jobs else now
                break
            next_cycle = cycle + 1
            if (
                not leased
                and not preempted
                and not (math.isfinite(self._rate) and any(self.waiting.values()))
            ):
                upcoming = self._next_event_time()
                if upcoming is None:
                    self._record(now)
                    recorded += 1
                    end_time = now
                    stop_reason = "stopped: jobs remain that no node can take, and nothing is running"
                    break
                next_cycle = max(next_cycle, math.ceil(upcoming / interval - 1e-9))
            if self.max_time is not None:
                next_cycle = min(next_cycle, math.floor(self.max_time / interval) + 1)
            self._record(now, copies=next_cycle - cycle)
            recorded += next_cycle - cycle
            cycle = next_cycle
        if self._progress is not None:
            running = sum(len(r) for r in self.running.values())
            queued = sum(len(w) for w in self.waiting.values())
            self._progress.update(end_time, self.finished, queued, running, force=True)
            self._progress.close()
        # Runs still going count until the end of the simulation.
        for pool, runs in self.running.items():
            used = self.resource_seconds[pool]
            for job_id in runs:
                job = self.by_id[job_id]
                duration = max(0.0, end_time - job.started)
                for name, quantity in job.requests.items():
                    used[name] = used.get(name, 0.0) + quantity * duration
        resource_seconds = {
            pool: {name: value / 1000 for name, value in used.items()}
            for pool, used in self.resource_seconds.items()
        }
        capacity = {
            pool: {name: q / 1000 for name, q in total.items()} for pool, total in self.capacity.items()
        }
        # Trim rows recorded past max_time.
        queues = pa.table(self._rows, schema=QUEUES_SCHEMA)
        if self.max_time is not None and queues.num_rows:
            queues = queues.filter(pa_compute.less_equal(queues.column("time"), self.max_time))
        return SimulationResult(
            jobs=self._jobs_table(),
            queues=queues,
            capacity=capacity,
            resource_seconds=resource_seconds,
            end_time=end_time,
            cycles=recorded,
            cycles_run=cycles_run,
            wall_seconds=wallclock.perf_counter() - started,
            stop_reason=stop_reason,
            workload=self.workload.name,
            cluster=self.cluster.name,
            queue_names=list(self.queue_names),
        )

    def _jobs_table(self) -> pa.Table:
        columns: dict[str, list] = {name: [] for name in JOBS_SCHEMA.names}
        for job in self.jobs:
            requests = job.requests
            state = job.state if job.state in (UNSUBMITTED, QUEUED, RUNNING, SUCCEEDED) else QUEUED
            columns["job_id"].append(job.job_id)
            columns["queue"].append(job.queue)
            columns["job_set"].append(job.job_set)
            columns["priority_class"].append(job.priority_class)
            columns["cpu"].append(requests.get("cpu", 0) / 1000)
            columns["memory"].append(requests.get("memory", 0) / 1000)
            columns["gpu"].append(sum(requests.get(r, 0) for r in GPU_RESOURCES) / 1000)
            columns["submit_time"].append(job.submit_time)
            columns["first_scheduled_time"].append(job.first_scheduled)
            columns["end_time"].append(job.end_time)
            columns["final_state"].append(state)
            columns["preemptions"].append(job.preemptions)
            columns["node"].append(job.node if job.first_scheduled is not None else None)
            columns["pool"].append(job.pool)
            columns["template_id"].append(self.templates[job.template].spec.id)
            columns["runtime"].append(job.runtime)
            columns["unschedulable_reason"].append(None if state == SUCCEEDED else job.reason)
        return pa.table(columns, schema=JOBS_SCHEMA)


def simulate(
    cluster: ClusterSpec,
    workload: WorkloadSpec,
    config: SchedulingConfigSpec,
    *,
    cycle_interval: float = DEFAULT_CYCLE_INTERVAL,
    max_time: float | None = None,
    progress: IO[str] | None = None,
    **options: Any,
) -> SimulationResult:
    """Run a simulation; see :class:`Simulation`. ``progress`` (e.g. ``sys.stderr``) gets a
    progress bar."""
    return Simulation(
        cluster,
        workload,
        config,
        cycle_interval=cycle_interval,
        max_time=max_time,
        progress=progress,
        **options,
    ).run()


def simulate_files(
    clusters: str | Path,
    workload: str | Path,
    config: str | Path,
    *,
    cycle_interval: float = DEFAULT_CYCLE_INTERVAL,
    max_time: float | None = None,
    progress: IO[str] | None = None,
) -> SimulationResult:
    """Read the three Armada simulator files and run a simulation."""
    return simulate(
        load_cluster_spec(clusters),
        load_workload_spec(workload),
        load_scheduling_config(config),
        cycle_interval=cycle_interval,
        max_time=max_time,
        progress=progress,
    )


__all__ = [
    "DEFAULT_CYCLE_INTERVAL",
    "JOBS_SCHEMA",
    "JOB_COLUMNS",
    "QUEUES_SCHEMA",
    "QUEUE_COLUMNS",
    "Simulation",
    "SimulationResult",
    "expand_templates",
    "format_seconds",
    "sample_runtimes",
    "simulate",
    "simulate_files",
]
