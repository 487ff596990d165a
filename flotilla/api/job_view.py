"""The API's view of the log: queues, jobs and each job set's accepted events.

Folded from the log with ``flotilla.jobs.state.apply`` so that the event stream a client
watches holds exactly the events every other projection accepts: duplicates and stale run
reports are left out. Message ids are the events' offsets in their partition (a job set's
events share one partition), so a client resumes from the id it saw last.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka import ConsumerRecord

from flotilla.jobs.state import JobState, apply
from flotilla.schema import (
    EVENTS_TOPIC,
    QUEUES_TOPIC,
    JobEvent,
    QueueDefinition,
    decode_job_event,
    decode_queue,
)
from flotilla.settings import Settings
from flotilla.streams.log_tail import LogTail


@dataclass
class JobSetHistory:
    offsets: list[int] = field(default_factory=list)
    events: list[JobEvent] = field(default_factory=list)
    job_ids: set[str] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def append(self, offset: int, event: JobEvent) -> None:
        self.offsets.append(offset)
        self.events.append(event)
        self.job_ids.add(event.job_id)
        # Wake the current watchers and give later ones a fresh event to wait on.
        self.changed.set()
        self.changed = asyncio.Event()


class JobView:
    def __init__(self, settings: Settings) -> None:
        self._events_topic = settings.topic(EVENTS_TOPIC)
        self._queues_topic = settings.topic(QUEUES_TOPIC)
        self.jobs: dict[str, JobState] = {}
        self.queues: dict[str, QueueDefinition] = {}
        self.job_sets: dict[tuple[str, str], JobSetHistory] = {}
        self._tail = LogTail(settings, [self._events_topic, self._queues_topic], self.on_record)

    async def start(self) -> None:
        await self._tail.start()
        await self._tail.catch_up(timeout=300)

    async def stop(self) -> None:
        await self._tail.stop()

    async def catch_up(self) -> None:
        await self._tail.catch_up()

    def on_record(self, record: ConsumerRecord) -> None:
        if record.topic == self._queues_topic:
            self.apply_queue(decode_queue(record.value))
            return
        event = decode_job_event(record.value)
        after = apply(self.jobs.get(event.job_id), event)
        if after is None:
            return
        self.jobs[event.job_id] = after
        history = self.job_sets.setdefault((event.queue, event.job_set), JobSetHistory())
        history.append(record.offset, event)

    def apply_queue(self, queue: QueueDefinition) -> None:
        current = self.queues.get(queue.name)
        if current is not None and current.updated > queue.updated:
            return
        if queue.deleted:
            self.queues.pop(queue.name, None)
        else:
            self.queues[queue.name] = queue

    def jobs_in_set(self, queue: str, job_set: str) -> list[JobState]:
        history = self.job_sets.get((queue, job_set))
        if history is None:
            return []
        return [self.jobs[j] for j in sorted(history.job_ids)]

    def active_jobs_in_queue(self, queue: str) -> int:
        return sum(1 for j in self.jobs.values() if j.spec.queue == queue and not j.terminal)

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
