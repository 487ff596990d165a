"""The leader's scheduling cycle, as a plain object: its clock, writer and configuration are
injected, so it runs the same under the Faust timer and in a unit test.

Each cycle the leader

1. expires the runs of executors silent for longer than the lease timeout: no new heartbeat
   has reached the leader for that long, and the latest is that old (not during the
   grace period after it became leader: the heartbeats it holds may be older than the time
   it was away, so it first gives every executor one lease timeout to be heard from),
2. fails runs that outlived their deadline,
3. hands the queued jobs, the running ones and the executors' nodes to the pure cycle
   (``flotilla.scheduling.schedule``) and writes each lease and preemption as an event,
4. writes, for the queued jobs it could not place, why, when a job's reason changed
   (``flotilla.streams.scheduling_reports``).

Tables change only in the agents, from the log; the cycle only writes events. A lease
therefore takes effect when an agent folds it back in, and until then the leader keeps it in
flight (``flotilla.streams.working_set.InFlight``) so that it neither leases the job twice
nor double-books the node.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from flotilla.log.schema import ExecutorHeartbeat, JobEvent, SchedulingReport
from flotilla.scheduling import CycleResult, Node, Queue, RunningJob, SchedulingConfig, schedule
from flotilla.scheduling.deadlines import expired_runs
from flotilla.settings import SchedulerSettings
from flotilla.streams.cycle_bridge import (
    deadline_events,
    lease_event,
    lease_expired_event,
    preemption_events,
    running_job,
)
from flotilla.streams.scheduling_reports import ReportedReasons
from flotilla.streams.working_set import ActiveJobs, ExecutorNodes, InFlight

log = logging.getLogger(__name__)


class Clock(Protocol):
    def wall(self) -> float:
        """Seconds since the epoch: what events carry and heartbeats are compared with."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for the leader's own intervals."""
        ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class CycleWriter(Protocol):
    async def events(self, events: Sequence[JobEvent]) -> None:
        """Write job events; return once the broker has them all."""
        ...

    async def reports(self, reports: Sequence[SchedulingReport]) -> None:
        """Write scheduling reports; return once the broker has them all."""
        ...


@dataclass
class Cluster:
    """The executors heard from within the lease timeout, and their nodes."""

    live_executors: set[str] = field(default_factory=set)
    nodes: list[Node] = field(default_factory=list)

    def pool_of(self) -> Callable[[str, str], str]:
        pools = {(n.executor, n.name): n.pool for n in self.nodes}
        return lambda executor, node: pools.get((executor, node), "")


class LeaderCycle:
    def __init__(
        self,
        settings: SchedulerSettings,
        config: SchedulingConfig,
        writer: CycleWriter,
        active: ActiveJobs,
        clock: Clock | None = None,
        in_flight: InFlight | None = None,
        reasons: ReportedReasons | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.writer = writer
        self.active = active
        self.clock = clock or SystemClock()
        self.in_flight = in_flight or InFlight(self.clock.monotonic)
        self.reasons = reasons or ReportedReasons()
        self.nodes = ExecutorNodes(self.clock.monotonic)
        self._leading_since: float | None = None

    # --- leadership ------------------------------------------------------------------

    def step_down(self) -> None:
        """This worker is no longer (or may no longer be) the leader: the next cycle it runs
        starts a new term, with a new grace period. The reasons it wrote are forgotten too:
        another leader may have written others since."""
        self._leading_since = None
        self.reasons = ReportedReasons(self.reasons.max_per_cycle)

    def in_grace_period(self) -> bool:
        if self._leading_since is None:
            return True
        return self.clock.monotonic() - self._leading_since < self.settings.lease_timeout_seconds

    # --- the cycle -------------------------------------------------------------------

    async def run(
        self, executors: Mapping[str, ExecutorHeartbeat], queues: Iterable[Queue]
    ) -> CycleResult | None:
        """One cycle on the working set, the executors' latest heartbeats and the queues;
        the pure cycle's result, or None when there was nothing to schedule."""
        started = self.clock.monotonic()
        cpu_started = time.process_time()
        if self._leading_since is None:
            self._leading_since = started
        self.in_flight.settle(self.active.jobs)
        wall = self.clock.wall()
        cluster = self.cluster(executors, wall)
        running, expired = self.expire_silent_executors(cluster, wall)
        ended = expired + self.job_deadlines(running, wall)
        if ended:
            log.warning("ending %d runs (silent executors, deadlines)", len(ended))
            await self.writer.events(ended)
        result = await self.schedule(running, cluster.nodes, list(queues), wall)
        if result is not None:
            await self.write_reports(result, wall)
            if result.leases or result.preemptions:
                # The queued jobs whose leases are still on their way back through the log
                # are not offered to the cycle: a large count says the worker's ingest is
                # behind, not that the cycle placed too few.
                log.info(
                    "cycle: %d queued (%d of them leased, in flight), %d running, %d nodes -> "
                    "%d leases, %d preemptions in %.3fs (%.3fs CPU)",
                    len(self.active.queued),
                    self.in_flight.queued_count(self.active.queued),
                    len(running),
                    len(cluster.nodes),
                    len(result.leases),
                    len(result.preemptions),
                    self.clock.monotonic() - started,
                    time.process_time() - cpu_started,
                )
        return result

    def cluster(self, executors: Mapping[str, ExecutorHeartbeat], wall: float) -> Cluster:
        """The executors heard from within the lease timeout: by their latest heartbeat's
        timestamp, or by when that heartbeat reached this leader. A worker behind the log
        reads heartbeats late; judging them by their timestamps alone would take every run
        away from a healthy executor as soon as the worker fell a lease timeout behind (and
        requeue thousands of running jobs, putting it further behind)."""
        cluster = Cluster()
        timeout = self.settings.lease_timeout_seconds
        for executor_id, heartbeat in executors.items():
            nodes = self.nodes.of(executor_id, heartbeat)
            if wall - heartbeat.created > timeout and not self.nodes.heard_within(
                executor_id, heartbeat, timeout
            ):
                continue
            cluster.live_executors.add(executor_id)
            cluster.nodes.extend(nodes)
        return cluster

    def expire_silent_executors(
        self, cluster: Cluster, wall: float
    ) -> tuple[list[RunningJob], list[JobEvent]]:
        """The runs that go on (leases in flight included), and the expiry of the runs
        whose executor is silent (none during the grace period: those count as running)."""
        running = self.in_flight.running()
        expired: list[JobEvent] = []
        grace = self.in_grace_period()
        pool_of = cluster.pool_of()
        for job in self.active.jobs.values():
            if not job.has_active_run:
                continue
            if job.executor not in cluster.live_executors:
                if not grace:
                    expired.append(lease_expired_event(job, wall))
                continue
            running.append(running_job(job, pool_of(job.executor, job.node)))
        return running, expired

    def job_deadlines(self, running: Sequence[RunningJob], wall: float) -> list[JobEvent]:
        overdue = expired_runs(running, wall, self.settings.default_job_deadline_seconds)
        return list(deadline_events(overdue, self.active.jobs, wall))

    async def schedule(
        self, running: Sequence[RunningJob], nodes: Sequence[Node], queues: Sequence[Queue], wall: float
    ) -> CycleResult | None:
        """Run the pure cycle on the queued jobs not in flight; write its leases and
        preemptions, and keep the leases in flight."""
        queued = [q for job_id, q in self.active.queued.items() if job_id not in self.in_flight]
        if not queued or not nodes:
            return None
        result = schedule(queued, running, nodes, queues, self.config)
        by_id = {q.job_id: q for q in queued}
        decisions: list[JobEvent] = list(preemption_events(result, self.active.jobs, wall))
        leased: list[RunningJob] = []
        for lease in result.leases:
            job = by_id[lease.job_id]
            run_id = uuid.uuid4().hex
            decisions.append(lease_event(job, lease, run_id, self.clock.wall()))
            leased.append(RunningJob.from_lease(job, lease, run_id))
        await self.writer.events(decisions)
        # Only leases the broker has are in flight: after a failed write the jobs stay
        # leasable at once, rather than held until the in-flight timeout.
        for run in leased:
            self.in_flight.add(run)
        return result

    async def write_reports(self, result: CycleResult, wall: float) -> None:
        reports = self.reasons.changes(
            result.unschedulable, self.active.jobs, self.active.queued.keys(), wall
        )
        await self.writer.reports(reports)
