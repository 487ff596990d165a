"""What the scheduler's three Faust agents do with each record they read.

Each is a plain object the Faust agent in ``flotilla.streams.scheduler`` calls once per
record, so a test can feed it records without a broker. Tables change only here, from the
log: the leader's cycle only writes events.

- ``JobEventIngest`` folds a job event into the jobs table (and the leader's working set)
  and writes the scheduler's replies (``flotilla.streams.reactions``).
- ``QueueIngest`` keeps the queues table.
- ``HeartbeatIngest`` keeps the executors table.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping

from flotilla.jobs.state import JobState, apply
from flotilla.log.schema import (
    ExecutorHeartbeat,
    JobEvent,
    JobQueued,
    QueueDefinition,
    SchemaError,
    decode_heartbeat,
    decode_job_event,
    decode_queue,
    now,
)
from flotilla.streams.reactions import reactions
from flotilla.streams.working_set import ActiveJobs

log = logging.getLogger(__name__)

Send = Callable[[list[JobEvent]], Awaitable[None]]


class JobEventIngest:
    def __init__(
        self,
        jobs: MutableMapping[str, JobState],
        active: ActiveJobs,
        send: Send,
        clock: Callable[[], float] = now,
    ) -> None:
        self._jobs = jobs
        self._active = active
        self._send = send
        self._clock = clock

    async def __call__(self, raw: bytes) -> None:
        try:
            event = decode_job_event(raw)
        except SchemaError as exc:
            log.error("dropping a record that is not a job event: %s", exc)
            return
        try:
            before = self._active.get(event.job_id)
            if before is None:
                before = self._jobs.get(event.job_id)
            after = apply(before, event)
        except Exception:
            # One bad record must not stop the scheduler: log it and go on.
            log.exception("cannot apply %s to job %s; skipping it", event.type, event.job_id)
            return
        if after is None:
            return
        self._jobs[event.job_id] = after
        self._active.update(after)
        replies = reactions(before, after, event, self._clock())
        # Faust flushes the producer before it commits a source offset, so an event's
        # replies are on the log before the event counts as processed (at-least-once
        # without transactions).
        await self._send(replies)
        for reply in replies:
            if isinstance(reply, JobQueued):
                anticipated = apply(after, reply)
                if anticipated is not None:
                    self._active.anticipate(anticipated)


class QueueIngest:
    def __init__(self, queues: MutableMapping[str, QueueDefinition]) -> None:
        self._queues = queues

    def __call__(self, raw: bytes) -> None:
        try:
            queue = decode_queue(raw)
        except SchemaError as exc:
            log.error("dropping a record that is not a queue: %s", exc)
            return
        if queue.deleted:
            self._queues.pop(queue.name, None)
        else:
            self._queues[queue.name] = queue


class HeartbeatIngest:
    def __init__(self, executors: MutableMapping[str, ExecutorHeartbeat]) -> None:
        self._executors = executors

    def __call__(self, raw: bytes) -> None:
        try:
            heartbeat = decode_heartbeat(raw)
        except SchemaError as exc:
            log.error("dropping a record that is not a heartbeat: %s", exc)
            return
        self._executors[heartbeat.executor] = heartbeat
