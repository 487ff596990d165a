"""The scheduler as Faust agents and a leader-only timer.

- ``ingest_events`` folds each job event into the ``jobs`` table and writes the scheduler's
  replies (queued, cancelled, reprioritized, preempted; ``flotilla.streams.reactions``).
- ``ingest_queues`` and ``ingest_heartbeats`` keep the ``queues`` and ``executors`` tables.
- ``cycle`` runs on the leader only: it expires the runs of silent executors and hands the
  tables to the pure cycle (``flotilla.scheduling.schedule``), writing each lease as an event
  and, for queued jobs it could not place, why (``flotilla.streams.scheduling_reports``).

Tables change only in agents, from the log; the cycle only writes events. A lease therefore
takes effect when the agent folds it back in, and until then the leader remembers it as in
flight so that it neither leases the job twice nor double-books the node.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

import faust

from flotilla.jobs.state import QUEUED, SUBMITTED, TERMINAL_STATES, JobState, apply
from flotilla.log.schema import (
    EVENTS_TOPIC,
    EXECUTORS_TOPIC,
    QUEUES_TOPIC,
    SCHEDULING_REPORTS_TOPIC,
    ExecutorHeartbeat,
    JobEvent,
    JobFailed,
    JobLeaseExpired,
    JobQueued,
    RetryPolicy,
    SchedulingReport,
    SchemaError,
    decode_heartbeat,
    decode_job_event,
    decode_queues_record,
    decode_retry_policy,
    encode,
    now,
)
from flotilla.scheduler_config import scheduling_config
from flotilla.scheduling import Node, Queue, QueuedJob, RunningJob, schedule
from flotilla.scheduling.deadlines import expired_runs
from flotilla.settings import Settings
from flotilla.streams.app import create_app
from flotilla.streams.cycle_bridge import (
    deadline_events,
    lease_event,
    leased_job,
    preemption_events,
    queued_job,
    running_job,
)
from flotilla.streams.reactions import reactions
from flotilla.streams.scheduling_reports import ReportedReasons
from flotilla.tables.scheduler_tables import create_tables

log = logging.getLogger(__name__)

IN_FLIGHT_SECONDS = 30.0
RAW = {"key_type": bytes, "value_type": bytes, "key_serializer": "raw", "value_serializer": "raw"}


@dataclass
class InFlight:
    """Leases written by this leader that the jobs table has not folded in yet."""

    runs: dict[str, tuple[float, RunningJob]] = field(default_factory=dict)

    def add(self, job: RunningJob) -> None:
        self.runs[job.job_id] = (time.monotonic(), job)

    def settle(self, jobs: dict[str, JobState]) -> None:
        """Forget leases the table has caught up with (or that never arrived, after a while)."""
        horizon = time.monotonic() - IN_FLIGHT_SECONDS
        for job_id, (at, _) in list(self.runs.items()):
            state = jobs.get(job_id)
            # A lease of a job whose own queued event is still on its way back (see
            # ActiveJobs.anticipate) is as much in flight as one of a queued job.
            if at < horizon or state is None or state.state not in (SUBMITTED, QUEUED):
                del self.runs[job_id]

    def __contains__(self, job_id: str) -> bool:
        return job_id in self.runs

    def running(self) -> list[RunningJob]:
        return [job for _, job in self.runs.values()]


class ActiveJobs:
    """The decoded state of every job not yet finished, and the cycle's form of the queued
    ones: the cycle's working set.

    The jobs table stays the durable state (changelog-backed); this index spares the cycle
    decoding every job, finished ones included, and rebuilding every queued job, each time.
    It is loaded from the table after recovery and kept current by the agent that writes it.
    """

    def __init__(self) -> None:
        self.loaded = False
        self.jobs: dict[str, JobState] = {}
        self.queued: dict[str, QueuedJob] = {}

    def load(self, table: faust.Table) -> None:
        self.jobs = {}
        self.queued = {}
        for value in table.values():
            if value["state"] not in TERMINAL_STATES:
                self._put(JobState.from_dict(value))
        self.loaded = True

    def _put(self, job: JobState) -> None:
        job_id = job.spec.job_id
        self.jobs[job_id] = job
        if job.state == QUEUED and not job.cancel_requested:
            cached = self.queued.get(job_id)
            if cached is None or cached.priority != job.priority:
                self.queued[job_id] = queued_job(job)
        else:
            self.queued.pop(job_id, None)

    def get(self, job_id: str) -> JobState | None:
        """The job's state if it is active and the index is loaded (else read the table)."""
        return self.jobs.get(job_id)

    def anticipate(self, job: JobState) -> None:
        """The scheduler has just written ``queued`` for this job (``job`` is its state with
        that event applied): the next cycle may lease it without waiting for the reply to come
        back through the log, which saves a hop from submit to lease. The log still holds
        queued before leased (one job set, one partition, one producer, in that order), and
        the fold refuses a lease of a job that is not queued yet."""
        if self.loaded and job.state == QUEUED and not job.cancel_requested:
            self.queued[job.spec.job_id] = queued_job(job)

    def update(self, job: JobState) -> None:
        if not self.loaded:
            return
        if job.terminal:
            self.jobs.pop(job.spec.job_id, None)
            self.queued.pop(job.spec.job_id, None)
        else:
            self._put(job)

    def reset(self) -> None:
        self.loaded = False
        self.jobs = {}
        self.queued = {}


class HeartbeatCache:
    """Executors' heartbeats decoded, with their nodes in the cycle's form: a heartbeat is
    decoded when it changes, not every cycle (a cluster of thousands of nodes is a large record)."""

    def __init__(self) -> None:
        self._decoded: dict[str, tuple[str, ExecutorHeartbeat, list[Node]]] = {}

    def decode(self, executor_id: str, value: str) -> tuple[ExecutorHeartbeat, list[Node]]:
        seen = self._decoded.get(executor_id)
        if seen is None or seen[0] != value:
            heartbeat = decode_heartbeat(value.encode())
            seen = (value, heartbeat, [Node.from_report(executor_id, n) for n in heartbeat.nodes])
            self._decoded[executor_id] = seen
        return seen[1], seen[2]


def build_scheduler(settings: Settings) -> faust.App:
    app = create_app(settings)
    tables = create_tables(app, settings.kafka.partitions)
    events_topic = app.topic(settings.topic(EVENTS_TOPIC), partitions=settings.kafka.partitions, **RAW)
    queues_topic = app.topic(settings.topic(QUEUES_TOPIC), partitions=1, **RAW)
    executors_topic = app.topic(settings.topic(EXECUTORS_TOPIC), partitions=1, **RAW)
    reports_topic = app.topic(
        settings.topic(SCHEDULING_REPORTS_TOPIC), partitions=settings.kafka.partitions, **RAW
    )
    reasons = ReportedReasons()
    in_flight = InFlight()
    active = ActiveJobs()
    heartbeats = HeartbeatCache()

    @app.on_partitions_revoked.connect
    async def forget_active_jobs(app, revoked, **kwargs) -> None:
        active.reset()

    became_leader: list[float] = []
    config = scheduling_config(settings)

    async def send(events: list[JobEvent]) -> None:
        """Hand replies to the producer. Faust flushes the producer before it commits a
        source offset, so an event's replies are on the log before the event counts as
        processed (at-least-once without transactions)."""
        for e in events:
            await events_topic.send(key=e.key, value=encode(e))

    async def write(
        events: Sequence[JobEvent | SchedulingReport], topic: faust.TopicT = events_topic
    ) -> None:
        """Write the leader's decisions (or reports) and wait until the broker has them all."""
        futures = [await topic.send(key=e.key, value=encode(e)) for e in events]
        for future in futures:
            await future

    def retry_policy(event: JobEvent) -> RetryPolicy | None:
        """The retry policy the event's queue names first (Armada consults only the first)."""
        if not isinstance(event, JobFailed):
            return None
        names = (tables.queues.get(event.queue) or {}).get("retry_policies") or []
        stored = tables.retry_policies.get(names[0]) if names else None
        return decode_retry_policy(stored.encode()) if stored is not None else None

    @app.agent(events_topic)
    async def ingest_events(stream):
        async for raw in stream:
            try:
                event = decode_job_event(raw)
            except SchemaError as exc:
                log.error("dropping a record that is not a job event: %s", exc)
                continue
            try:
                before = active.get(event.job_id)
                if before is None:
                    stored = tables.jobs.get(event.job_id)
                    before = JobState.from_dict(stored) if stored is not None else None
                after = apply(before, event)
            except Exception:
                # One bad record must not stop the scheduler: log it and go on.
                log.exception("cannot apply %s to job %s; skipping it", event.type, event.job_id)
                continue
            if after is None:
                continue
            tables.jobs[event.job_id] = after.to_dict()
            active.update(after)
            replies = reactions(before, after, event, now(), retry_policy(event))
            await send(replies)
            for reply in replies:
                if isinstance(reply, JobQueued):
                    anticipated = apply(after, reply)
                    if anticipated is not None:
                        active.anticipate(anticipated)

    @app.agent(queues_topic)
    async def ingest_queues(stream):
        async for raw in stream:
            try:
                queue = decode_queues_record(raw)
            except SchemaError as exc:
                log.error("dropping a record that is not a queue: %s", exc)
                continue
            if isinstance(queue, RetryPolicy):
                if queue.deleted:
                    tables.retry_policies.pop(queue.name, None)
                else:
                    tables.retry_policies[queue.name] = raw.decode()
                continue
            if queue.deleted:
                tables.queues.pop(queue.name, None)
            else:
                tables.queues[queue.name] = {
                    "name": queue.name,
                    "priority_factor": queue.priority_factor,
                    "cordoned": queue.cordoned,
                    "retry_policies": list(queue.retry_policies),
                }

    @app.agent(executors_topic)
    async def ingest_heartbeats(stream):
        async for raw in stream:
            try:
                heartbeat = decode_heartbeat(raw)
            except SchemaError as exc:
                log.error("dropping a record that is not a heartbeat: %s", exc)
                continue
            tables.executors[heartbeat.executor] = raw.decode()

    def holds_every_partition() -> bool:
        """The cycle needs every job: a leader that holds only some partitions of the jobs
        table (several workers in one group) must not schedule from half the picture."""
        held = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == events_topic.get_topic_name()
        }
        return len(held) >= settings.kafka.partitions

    @app.timer(settings.scheduler.interval_seconds, on_leader=True)
    async def cycle():
        started = time.monotonic()
        if app.rebalancing:
            # Tables are being revoked and recovered (Faust ends the rebalance only after
            # recovery): what they hold now is partial, so neither schedule nor cache it.
            active.reset()
            return
        if not holds_every_partition():
            log.warning(
                "this leader holds only some partitions of %s; not scheduling (run one scheduler "
                "worker per app id)",
                events_topic.get_topic_name(),
            )
            return
        if not active.loaded:
            active.load(tables.jobs)
        jobs = active.jobs
        in_flight.settle(jobs)
        wall = now()

        live_executors: set[str] = set()
        nodes: list[Node] = []
        for executor_id, value in tables.executors.items():
            heartbeat, reported = heartbeats.decode(executor_id, value)
            if wall - heartbeat.created > settings.scheduler.lease_timeout_seconds:
                continue
            live_executors.add(executor_id)
            nodes.extend(reported)

        expired: list[JobEvent] = []
        running: list[RunningJob] = list(in_flight.running())
        pools = {(n.executor, n.name): n.pool for n in nodes}
        for job in jobs.values():
            if job.has_active_run:
                if job.executor not in live_executors:
                    expired.append(
                        JobLeaseExpired(
                            job_id=job.spec.job_id,
                            queue=job.spec.queue,
                            job_set=job.spec.job_set,
                            created=wall,
                            run_id=job.run_id,
                            executor=job.executor,
                        )
                    )
                    continue
                running.append(running_job(job, pools.get((job.executor, job.node), "")))
        queued = [q for job_id, q in active.queued.items() if job_id not in in_flight]
        # A new leader may hold heartbeats older than the time it was away; give executors one
        # lease timeout to be heard from before taking their runs away.
        if not became_leader:
            became_leader.append(time.monotonic())
        if time.monotonic() - became_leader[0] < settings.scheduler.lease_timeout_seconds:
            expired = []
        overdue = expired_runs(running, wall, settings.scheduler.default_job_deadline_seconds)
        ended = expired + deadline_events(overdue, jobs, wall)
        if ended:
            log.warning("ending %d runs (silent executors, deadlines)", len(ended))
            await write(ended)

        queues = [
            Queue(name=q["name"], priority_factor=q["priority_factor"], cordoned=q["cordoned"])
            for q in tables.queues.values()
        ]
        if not queued or not nodes:
            return
        result = schedule(queued, running, nodes, queues, config)
        by_id = {q.job_id: q for q in queued}
        decisions: list[JobEvent] = list(preemption_events(result, jobs, wall))
        for lease in result.leases:
            job = by_id[lease.job_id]
            run_id = uuid.uuid4().hex
            decisions.append(lease_event(job, lease, run_id, now()))
            in_flight.add(leased_job(job, lease, run_id))
        await write(decisions)
        await write(reasons.changes(result.unschedulable, jobs, active.queued.keys(), wall), reports_topic)
        if decisions:
            log.info(
                "cycle: %d queued, %d running, %d nodes -> %d leases, %d preemptions in %.3fs",
                len(queued),
                len(running),
                len(nodes),
                len(result.leases),
                len(result.preemptions),
                time.monotonic() - started,
            )

    return app
