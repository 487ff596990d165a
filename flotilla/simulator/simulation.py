"""A discrete-event simulation of Flotilla's scheduler on simulated time, with no Kafka.

Nodes come from a cluster file, jobs from a workload file's templates and the scheduler's
settings from a scheduling config (see :mod:`flotilla.simulator.cluster_file`,
:mod:`flotilla.simulator.workload_file` and :mod:`flotilla.scheduling.config_file`). Every
``cycle_interval`` simulated seconds the simulation applies the events due by then
(submissions, job ends, preempted jobs queued again: :mod:`.world`), runs one scheduling cycle
of the pure core on every pool (:mod:`.scheduler`) and records each queue's row
(:mod:`.recording`). It ends when every job has finished, when ``max_time`` is reached, or when
nothing can change any more (jobs queued that fit nowhere and nothing running).

Everything is deterministic: the jobs, their ids and runtimes are made once from the workload's
``randomSeed`` (:mod:`.jobs`), the delays come from generators seeded with it too, and the
cycle is a pure function. What ties the parts together here is the clock:

* **Fast-forward.** A cycle that leased and preempted nothing leaves the state as it found
  it, so the next cycles would decide the same until an event (a submission, a job ending)
  happens: they are skipped, and their rows in ``queues.parquet`` are copies.
"""

from __future__ import annotations

import math
import time as wallclock
from pathlib import Path
from typing import IO, Any

from flotilla.scheduling import Queue, dominant_share
from flotilla.scheduling.config_file import (
    SchedulingConfigSpec,
    load_scheduling_config,
    scheduling_config_from_spec,
)

from .cluster_file import ClusterSpec, load_cluster_spec
from .jobs import materialise
from .nodes import build_nodes, pool_capacity
from .progress import ProgressBar
from .recording import QueueRows, jobs_table
from .results import SimulationResult
from .scheduler import MIN_PREFIX, SimulatedScheduler
from .summary import format_seconds
from .workload_file import WorkloadSpec, check_workload_against_config, load_workload_spec
from .world import World, queue_order

DEFAULT_CYCLE_INTERVAL = 10.0


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
        self.config = scheduling_config_from_spec(config)
        resources = tuple(self.config.resources)
        self._progress = ProgressBar(progress, workload.job_count) if progress is not None else None

        self.nodes = build_nodes(cluster)
        self.pools = list(self.nodes)  # sorted: the scheduling core's order too
        self.capacity = pool_capacity(self.nodes)
        self.queue_names = [q.name for q in workload.queues]
        templates, jobs, by_id = materialise(
            workload,
            config.default_priority_class_name,
            lambda requests: tuple(
                dominant_share(requests, self.capacity[pool], resources) for pool in self.pools
            ),
        )
        self.world = World(
            cluster=cluster,
            pools=self.pools,
            queue_names=self.queue_names,
            templates=templates,
            jobs=jobs,
            by_id=by_id,
            order=queue_order(config),
            seed=workload.random_seed,
        )
        self.scheduler = SimulatedScheduler(
            self.world,
            self.config,
            self.nodes,
            self.capacity,
            [Queue(q.name, priority_factor=q.priority_factor) for q in workload.queues],
            rate=config.maximum_scheduling_rate,
            queue_prefix=queue_prefix,
        )
        self.rows = QueueRows(self.world, self.scheduler, self.capacity, resources, self.cycle_interval)

    def run(self) -> SimulationResult:
        """Simulate until every job has finished, ``max_time`` is reached or nothing can change."""
        started = wallclock.perf_counter()
        world, scheduler, rows = self.world, self.scheduler, self.rows
        world.schedule_submissions()
        interval = self.cycle_interval
        total_jobs = len(world.jobs)
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
            world.drain(now)
            leased, preempted = scheduler.cycle(now)
            cycles_run += 1
            if self._progress is not None:
                self._progress.update(now, world.finished, world.number_queued, world.number_running)
            if world.finished == total_jobs:
                rows.record(now)
                recorded += 1
                end_time = max((j.end_time or 0.0) for j in world.jobs) if world.jobs else now
                break
            next_cycle = cycle + 1
            if not leased and not preempted and not (scheduler.rate_limited and any(world.waiting.values())):
                upcoming = world.next_event_time()
                if upcoming is None:
                    rows.record(now)
                    recorded += 1
                    end_time = now
                    stop_reason = "stopped: jobs remain that no node can take, and nothing is running"
                    break
                next_cycle = max(next_cycle, math.ceil(upcoming / interval - 1e-9))
            if self.max_time is not None:
                next_cycle = min(next_cycle, math.floor(self.max_time / interval) + 1)
            rows.record(now, copies=next_cycle - cycle)
            recorded += next_cycle - cycle
            cycle = next_cycle
        if self._progress is not None:
            self._progress.update(
                end_time, world.finished, world.number_queued, world.number_running, force=True
            )
            self._progress.close()
        # Runs still going count until the end of the simulation.
        world.charge_running(end_time)
        resource_seconds = {
            pool: {name: value / 1000 for name, value in used.items()}
            for pool, used in world.resource_seconds.items()
        }
        capacity = {
            pool: {name: q / 1000 for name, q in total.items()} for pool, total in self.capacity.items()
        }
        return SimulationResult(
            jobs=jobs_table(world.jobs, world.templates),
            queues=rows.table(self.max_time),  # without rows recorded past max_time
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
    "Simulation",
    "simulate",
    "simulate_files",
]
