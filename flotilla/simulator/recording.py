"""Recording a simulation: the rows of ``queues.parquet`` cycle by cycle, and of
``jobs.parquet`` at the end.

A queue's row says, for one pool and one cycle, what the queue had allocated (and so its
actual share), the fair shares the cycle used and how many of its jobs were queued and
running. A cycle the simulation fast-forwards over would have decided what the cycle before
it decided, so its rows are copies (:meth:`QueueRows.record` with ``copies``). A job's row is
made from its record once the simulation has ended; a job preempted and not yet queued again
is reported as queued. The tables' schemas are :mod:`.results`'s.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pa_compute

from flotilla.jobs.states import QUEUED, RUNNING, SUCCEEDED, UNSUBMITTED
from flotilla.scheduling import dominant_share

from .jobs import SimJob, SimTemplate
from .results import GPU_RESOURCES, JOBS_SCHEMA, QUEUES_SCHEMA
from .scheduler import SimulatedScheduler
from .world import World


class QueueRows:
    """The rows of ``queues.parquet``, appended cycle by cycle."""

    def __init__(
        self,
        world: World,
        scheduler: SimulatedScheduler,
        capacity: dict[str, dict[str, int]],
        resources: tuple[str, ...],
        cycle_interval: float,
    ) -> None:
        self.world, self.scheduler = world, scheduler
        self.capacity, self.resources = capacity, resources
        self.cycle_interval = cycle_interval
        self._rows: dict[str, list] = {name: [] for name in QUEUES_SCHEMA.names}

    def record(self, now: float, copies: int = 1) -> None:
        """Append the rows of the cycle at ``now`` (and of ``copies - 1`` skipped cycles after it)."""
        rows = self._rows
        interval = self.cycle_interval
        world, scheduler = self.world, self.scheduler
        for pool in world.pools:
            total = self.capacity[pool]
            fair, adjusted = scheduler.fair[pool], scheduler.adjusted[pool]
            for name in world.queue_names:
                allocation = world.allocated[pool][name]
                actual = dominant_share(allocation, total, self.resources)
                cpu = allocation.get("cpu", 0) / 1000
                memory = allocation.get("memory", 0) / 1000
                gpu = sum(allocation.get(r, 0) for r in GPU_RESOURCES) / 1000
                queued = len(world.waiting[name])
                running = world.running_count[pool][name]
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

    def table(self, max_time: float | None) -> pa.Table:
        """The rows recorded, without those past ``max_time``."""
        queues = pa.table(self._rows, schema=QUEUES_SCHEMA)
        if max_time is not None and queues.num_rows:
            queues = queues.filter(pa_compute.less_equal(queues.column("time"), max_time))
        return queues


def jobs_table(jobs: list[SimJob], templates: list[SimTemplate]) -> pa.Table:
    """The rows of ``jobs.parquet``, one per job in ``jobs`` (whose templates are ``templates``)."""
    columns: dict[str, list] = {name: [] for name in JOBS_SCHEMA.names}
    for job in jobs:
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
        columns["template_id"].append(templates[job.template].spec.id)
        columns["runtime"].append(job.runtime)
        columns["unschedulable_reason"].append(None if state == SUCCEEDED else job.reason)
    return pa.table(columns, schema=JOBS_SCHEMA)
