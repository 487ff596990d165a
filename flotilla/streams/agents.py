"""What the scheduler's three Faust agents do with each record they read.

Each is a plain object the Faust agent in ``flotilla.streams.scheduler`` calls once per
record, so a test can feed it records without a broker. Tables change only here, from the
log: the leader's cycle only writes events.

- ``JobEventIngest`` folds a job event into the jobs table (and the leader's working set)
  and writes the scheduler's replies (``flotilla.streams.reactions``).
- ``QueueIngest`` keeps the queues and retry policies tables.
- ``HeartbeatIngest`` keeps the executors table.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, MutableMapping

from flotilla.jobs.state import JobState, apply
from flotilla.log.schema import (
    ExecutorHeartbeat,
    JobEvent,
    JobFailed,
    JobQueued,
    QueueDefinition,
    RetryPolicy,
    SchemaError,
    decode_heartbeat,
    decode_job_event,
    decode_queues_record,
    now,
)
from flotilla.streams.reactions import reactions, replies_still_due
from flotilla.streams.working_set import ActiveJobs

log = logging.getLogger(__name__)

Send = Callable[[list[JobEvent]], Awaitable[None]]


class RetryPolicies:
    """The retry policy a queue names first (Armada consults only the first), from the tables."""

    def __init__(self, queues: Mapping[str, QueueDefinition], policies: Mapping[str, RetryPolicy]) -> None:
        self._queues = queues
        self._policies = policies

    def for_queue(self, queue: str) -> RetryPolicy | None:
        definition = self._queues.get(queue)
        if definition is None or not definition.retry_policies:
            return None
        return self._policies.get(definition.retry_policies[0])


class JobEventIngest:
    def __init__(
        self,
        jobs: MutableMapping[str, JobState],
        active: ActiveJobs,
        send: Send,
        clock: Callable[[], float] = now,
        retry_policies: RetryPolicies | None = None,
    ) -> None:
        self._jobs = jobs
        self._active = active
        self._send = send
        self._clock = clock
        self._retry_policies = retry_policies

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
        policy = (
            self._retry_policies.for_queue(event.queue)
            if isinstance(event, JobFailed) and self._retry_policies is not None
            else None
        )
        if after is None:
            if before is None:
                return
            # Refused, perhaps as a replay whose effect the table already has: its replies may
            # still be due (flotilla.streams.reactions).
            after = before
            replies = replies_still_due(before, event, self._clock(), policy)
        else:
            self._jobs[event.job_id] = after
            self._active.update(after)
            replies = reactions(before, after, event, self._clock(), policy)
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
    def __init__(
        self,
        queues: MutableMapping[str, QueueDefinition],
        retry_policies: MutableMapping[str, RetryPolicy],
    ) -> None:
        self._queues = queues
        self._retry_policies = retry_policies

    def __call__(self, raw: bytes) -> None:
        try:
            record = decode_queues_record(raw)
        except SchemaError as exc:
            log.error("dropping a record that is not a queue or a retry policy: %s", exc)
            return
        if isinstance(record, RetryPolicy):
            if record.deleted:
                self._retry_policies.pop(record.name, None)
            else:
                self._retry_policies[record.name] = record
        elif record.deleted:
            self._queues.pop(record.name, None)
        else:
            self._queues[record.name] = record


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
