"""The API's view of the log: queues, jobs and each job set's accepted events.

Folded from the log with ``flotilla.jobs.state.apply`` so that the event stream a client
watches holds exactly the events every other projection accepts: duplicates and stale run
reports are left out. Message ids are the events' offsets in their partition (a job set's
events share one partition), so a client resumes from the id it saw last.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TypeVar

from aiokafka import ConsumerRecord

from flotilla.jobs.state import QUEUED, SUBMITTED, JobState, RunRecord, apply
from flotilla.log.schema import (
    EVENTS_TOPIC,
    EXECUTORS_TOPIC,
    QUEUES_TOPIC,
    SCHEDULING_REPORTS_TOPIC,
    ExecutorHeartbeat,
    JobEvent,
    QueueDefinition,
    RetryPolicy,
    SchedulingReport,
    decode_heartbeat,
    decode_job_event,
    decode_queues_record,
    decode_scheduling_report,
)
from flotilla.log.tail import LogTail
from flotilla.settings import Settings


@dataclass
class JobSetHistory:
    offsets: list[int] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)
    positions: dict[str, list[int]] = field(default_factory=dict)
    """Each job's events, as indices into ``events``: one job's timeline without a scan of its
    job set's (a list per job, a few dozen bytes beside the events the history holds anyway)."""
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, offset: int, event: JobEvent) -> None:
        self.offsets.append(offset)
        self.positions.setdefault(event.job_id, []).append(len(self.events))
        self.events.append(event)
        # Wake the current watchers and give later ones a fresh event to wait on.
        self.changed.set()
        self.changed = asyncio.Event()


_Definition = TypeVar("_Definition", QueueDefinition, RetryPolicy)
_Held = TypeVar("_Held")


def _keep_newest(held: dict[str, _Definition], definition: _Definition) -> None:
    current = held.get(definition.name)
    if current is not None and current.updated > definition.updated:
        return
    if definition.deleted:
        held.pop(definition.name, None)
    else:
        held[definition.name] = definition


class JobView:
    def __init__(self, settings: Settings) -> None:
        self._events_topic = settings.topic(EVENTS_TOPIC)
        self._queues_topic = settings.topic(QUEUES_TOPIC)
        self._reports_topic = settings.topic(SCHEDULING_REPORTS_TOPIC)
        self._executors_topic = settings.topic(EXECUTORS_TOPIC)
        self._lease_timeout = settings.scheduler.lease_timeout_seconds
        self.jobs: dict[str, JobState] = {}
        self.queues: dict[str, QueueDefinition] = {}
        self.retry_policies: dict[str, RetryPolicy] = {}
        self.job_sets: dict[tuple[str, str], JobSetHistory] = {}
        self.reports: dict[str, SchedulingReport] = {}
        # Each executor's latest heartbeat (its pools, nodes and Binoculars endpoint), kept as
        # written and decoded when first asked for: a large cluster's heartbeat takes tens of
        # milliseconds to decode, and only Binoculars and active queues read them.
        self._heartbeats: dict[bytes, bytes] = {}
        self._decoded: dict[bytes, ExecutorHeartbeat] = {}
        self._job_of_run: dict[str, str] = {}
        self._tail = LogTail(
            settings,
            [self._events_topic, self._queues_topic, self._reports_topic, self._executors_topic],
            self.on_record,
        )

    async def start(self) -> None:
        await self._tail.start()
        await self._tail.catch_up(timeout=300)

    async def stop(self) -> None:
        await self._tail.stop()

    async def catch_up(self) -> None:
        await self._tail.catch_up()

    async def find_job(self, job_id: str) -> JobState | None:
        """The job, reading the log to its end first when it is not in view yet (so that a
        client finds the job it has just submitted)."""
        return await self._find(self.jobs, job_id)

    async def find_queue(self, name: str) -> QueueDefinition | None:
        return await self._find(self.queues, name)

    async def find_retry_policy(self, name: str) -> RetryPolicy | None:
        return await self._find(self.retry_policies, name)

    async def _find(self, held: dict[str, _Held], key: str) -> _Held | None:
        if key not in held:
            await self.catch_up()
        return held.get(key)

    def on_record(self, record: ConsumerRecord) -> None:
        if record.topic == self._queues_topic:
            self.apply_definition(decode_queues_record(record.value))
            return
        if record.topic == self._reports_topic:
            self.apply_report(decode_scheduling_report(record.value))
            return
        if record.topic == self._executors_topic:
            # One partition keyed by executor: the last record of a key is its latest heartbeat.
            key = record.key or b""
            self._heartbeats[key] = record.value
            self._decoded.pop(key, None)
            return
        event = decode_job_event(record.value)
        after = apply(self.jobs.get(event.job_id), event)
        if after is None:
            return
        self.jobs[event.job_id] = after
        if after.run_id:
            self._job_of_run[after.run_id] = event.job_id
        if after.state not in (SUBMITTED, QUEUED):
            self.reports.pop(event.job_id, None)
        history = self.job_sets.setdefault((event.queue, event.job_set), JobSetHistory())
        history.append(record.offset, event)

    def apply_definition(self, definition: QueueDefinition | RetryPolicy) -> None:
        """Keep a queue or retry policy unless a newer one of that name is already held (the
        services apply their own writes before the tail reads them back)."""
        if isinstance(definition, RetryPolicy):
            _keep_newest(self.retry_policies, definition)
        else:
            _keep_newest(self.queues, definition)

    def apply_report(self, report: SchedulingReport) -> None:
        # Reports and events are on different topics, so a report can be read before the
        # job's queued event or after the lease that ended its reason; scheduling_reason
        # checks it against the job's state when asked.
        job = self.jobs.get(report.job_id)
        if job is not None and job.state not in (SUBMITTED, QUEUED):
            return
        current = self.reports.get(report.job_id)
        if current is None or current.created <= report.created:
            self.reports[report.job_id] = report

    def scheduling_reason(self, job_id: str) -> str:
        """Why the queued job was not scheduled in the leader's latest cycle ("" if none is known
        for its current attempt, or it is not queued)."""
        job = self.jobs.get(job_id)
        report = self.reports.get(job_id)
        if job is None or report is None or job.state != QUEUED or report.attempt != job.attempt:
            return ""
        return report.reason

    def jobs_in_set(self, queue: str, job_set: str) -> list[JobState]:
        history = self.job_sets.get((queue, job_set))
        if history is None:
            return []
        return [self.jobs[j] for j in sorted(history.positions)]

    def job_events(self, job_id: str) -> list[JobEvent] | None:
        """The job's accepted events in log order, which is their order in its life (None for
        a job the view does not have)."""
        job = self.jobs.get(job_id)
        if job is None:
            return None
        history = self.job_sets[(job.spec.queue, job.spec.job_set)]
        return [history.events[i] for i in history.positions[job_id]]

    def _decoded_heartbeat(self, key: bytes) -> ExecutorHeartbeat:
        heartbeat = self._decoded.get(key)
        if heartbeat is None:
            heartbeat = self._decoded[key] = decode_heartbeat(self._heartbeats[key])
        return heartbeat

    def executor(self, name: str) -> ExecutorHeartbeat | None:
        """The executor's latest heartbeat (None if it has sent none)."""
        key = name.encode()
        return self._decoded_heartbeat(key) if key in self._heartbeats else None

    def find_run(self, run_id: str) -> tuple[JobState, RunRecord] | None:
        """The job that ran ``run_id``, and that run (None for a run no job has had)."""
        job_id = self._job_of_run.get(run_id)
        if job_id is None:
            return None
        job = self.jobs[job_id]
        return job, next(r for r in job.runs if r.run_id == run_id)

    def live_executors(self) -> list[ExecutorHeartbeat]:
        """Executors heard from within the lease timeout (the scheduler's test of liveness)."""
        horizon = time.time() - self._lease_timeout
        heartbeats = [self._decoded_heartbeat(key) for key in self._heartbeats]
        return [h for h in heartbeats if h.created >= horizon]

    def executor_of_node(self, node: str) -> ExecutorHeartbeat | None:
        """The live executor that reports ``node`` (the newest, should two claim it)."""
        owners = [h for h in self.live_executors() if any(n.name == node for n in h.nodes)]
        return max(owners, key=lambda h: h.created, default=None)

    def jobs_in_queue(self, queue: str) -> list[JobState]:
        return [j for j in self.jobs.values() if j.spec.queue == queue]

    async def events(
        self, queue: str, job_set: str, from_message_id: str, watch: bool
    ) -> AsyncIterator[tuple[str, JobEvent]]:
        """The job set's events after ``from_message_id``; with ``watch``, then every new one."""
        start_after = int(from_message_id) if from_message_id else -1
        history = self.job_sets.setdefault((queue, job_set), JobSetHistory())
        index = bisect.bisect_right(history.offsets, start_after)
        while True:
            changed = history.changed
            while index < len(history.events):
                yield str(history.offsets[index]), history.events[index]
                index += 1
            if not watch:
                return
            await changed.wait()
