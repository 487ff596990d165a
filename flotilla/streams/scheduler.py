"""The scheduler service: the Faust app with its tables, three agents and the leader's timer.

This module only wires the parts together; each does one thing and is tested on its own:

- the agents (``flotilla.streams.agents``) fold the log into the tables (``flotilla.tables``)
  and write the scheduler's replies;
- the leader's cycle (``flotilla.streams.leader_cycle``) runs on the Faust leader only, on the
  working set (``flotilla.streams.working_set``) the agents keep current;
- the timer only decides whether this worker may run a cycle now, and calls it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import faust
from mode.types.signals import BaseSignalT

from flotilla.log.schema import (
    EVENTS_TOPIC,
    EXECUTORS_TOPIC,
    QUEUES_TOPIC,
    SCHEDULING_REPORTS_TOPIC,
    JobEvent,
    SchedulingReport,
    encode,
)
from flotilla.scheduler_config import scheduling_config
from flotilla.settings import Settings
from flotilla.streams.agents import HeartbeatIngest, JobEventIngest, QueueIngest, RetryPolicies
from flotilla.streams.app import create_app
from flotilla.streams.cycle_bridge import cycle_queue
from flotilla.streams.leader_cycle import LeaderCycle
from flotilla.streams.working_set import ActiveJobs
from flotilla.tables.scheduler_tables import create_tables

log = logging.getLogger(__name__)


def raw_topic(app: faust.App, name: str, partitions: int) -> faust.TopicT:
    """A topic of the log, read and written as bytes (``flotilla.log.schema`` decodes them)."""
    return app.topic(
        name,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


class TopicWriter:
    """The leader's writer: through the Faust app's own producer, the one that also writes
    the agents' replies, so that a job's queued reply and its lease reach their partition in
    the order they were sent."""

    def __init__(self, events: faust.TopicT, reports: faust.TopicT) -> None:
        self._events = events
        self._reports = reports

    async def events(self, events: Sequence[JobEvent]) -> None:
        await self._write(self._events, events)

    async def reports(self, reports: Sequence[SchedulingReport]) -> None:
        await self._write(self._reports, reports)

    @staticmethod
    async def _write(topic: faust.TopicT, messages: Sequence[JobEvent | SchedulingReport]) -> None:
        futures = [await topic.send(key=m.key, value=encode(m)) for m in messages]
        for future in futures:
            await future


def build_scheduler(settings: Settings) -> faust.App:
    app = create_app(settings)
    partitions = settings.kafka.partitions
    tables = create_tables(app, partitions)
    events_topic = raw_topic(app, settings.topic(EVENTS_TOPIC), partitions)
    queues_topic = raw_topic(app, settings.topic(QUEUES_TOPIC), 1)
    executors_topic = raw_topic(app, settings.topic(EXECUTORS_TOPIC), 1)
    reports_topic = raw_topic(app, settings.topic(SCHEDULING_REPORTS_TOPIC), partitions)

    active = ActiveJobs()
    leader = LeaderCycle(
        settings.scheduler, scheduling_config(settings), TopicWriter(events_topic, reports_topic), active
    )

    async def send(events: list[JobEvent]) -> None:
        for e in events:
            await events_topic.send(key=e.key, value=encode(e))

    retry_policies = RetryPolicies(tables.queues, tables.retry_policies)
    ingest_event = JobEventIngest(tables.jobs, active, send, retry_policies=retry_policies)
    ingest_queue = QueueIngest(tables.queues, tables.retry_policies)
    ingest_heartbeat = HeartbeatIngest(tables.executors)

    @app.on_partitions_revoked.connect
    async def forget_working_set(sender: Any, /, *args: Any, signal: BaseSignalT, **kwargs: Any) -> None:
        # Every rebalance revokes every partition, the leader's included, and the tables come
        # back from recovery, possibly behind the log: a leader after it starts a new term.
        active.reset()
        leader.step_down()

    @app.agent(events_topic)
    async def ingest_events(stream: faust.StreamT) -> None:
        async for raw in stream:
            await ingest_event(raw)

    @app.agent(queues_topic)
    async def ingest_queues(stream: faust.StreamT) -> None:
        async for raw in stream:
            ingest_queue(raw)

    @app.agent(executors_topic)
    async def ingest_heartbeats(stream: faust.StreamT) -> None:
        async for raw in stream:
            ingest_heartbeat(raw)

    def holds_every_partition() -> bool:
        """The cycle needs every job: a leader that holds only some partitions of the jobs
        table (several workers in one group) must not schedule from half the picture."""
        held = {
            tp.partition
            for tp in app.assignor.assigned_actives()
            if tp.topic == events_topic.get_topic_name()
        }
        return len(held) >= partitions

    @app.timer(settings.scheduler.interval_seconds)
    async def cycle() -> None:
        if not app.is_leader():
            leader.step_down()
            return
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
            active.load(tables.jobs.values())
        queues = [cycle_queue(q) for q in tables.queues.values()]
        await leader.run(tables.executors, queues)

    return app
