"""What a simulation produced: the ``jobs.parquet`` and ``queues.parquet`` tables, and the
statistics the summary is computed from.

The two tables' schemas are fixed here, once, because they are the simulator's output format:
``jobs`` has a row per job (quantities in cores, bytes and devices; times in simulated
seconds, null where the job never got that far) and ``queues`` a row per pool, queue and
cycle. :mod:`.recording` fills them as the simulation runs; :mod:`.summary` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pa_compute
import pyarrow.parquet as pq

from .summary import summarise

GPU_RESOURCES = ("nvidia.com/gpu", "amd.com/gpu", "gpu")
"""The resources added up in the tables' ``gpu`` columns."""

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


@dataclass
class SimulationResult:
    """What a simulation produced: ``jobs`` (one row per job) and ``queues`` (one row per pool,
    queue and cycle) as Arrow tables, with the totals the summary is computed from."""

    jobs: pa.Table
    queues: pa.Table
    capacity: dict[str, dict[str, float]]
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
        """How many times a job was preempted, over all jobs."""
        return int(pa_compute.sum(self.jobs.column("preemptions")).as_py() or 0)

    def summary(self) -> str:
        """A human-readable report: utilisation, shares, wait times, preemptions."""
        return summarise(self)
