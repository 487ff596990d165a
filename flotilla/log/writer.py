"""Writes messages to the log and returns only once the broker has them (acks=all).

The API acknowledges a submit only after this returns (invariant 6); the executors write
their heartbeats and reports with it too. The scheduler does not: it writes through its Faust
app's producer (``flotilla.streams.scheduler.TopicWriter``), the one Faust flushes before it
commits a source offset, and the one that keeps a job's queued reply ahead of its lease.
Every writer encodes with ``flotilla.log.schema.encode``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer

from flotilla.log.schema import (
    EVENTS_TOPIC,
    EXECUTORS_TOPIC,
    QUEUES_TOPIC,
    ExecutorHeartbeat,
    JobEvent,
    QueueDefinition,
    RetryPolicy,
    encode,
)
from flotilla.settings import Settings


def acks_all_producer(settings: Settings, linger_ms: int = 2) -> AIOKafkaProducer:
    """A producer (not started) whose sends complete once the broker has the records."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka.bootstrap,
        acks="all",
        enable_idempotence=False,  # the embedded broker has no idempotent producer
        linger_ms=linger_ms,
        max_request_size=8 * 1024 * 1024,
        request_timeout_ms=settings.kafka.request_timeout_ms,
    )


class LogWriter:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = acks_all_producer(settings)

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def __aenter__(self) -> LogWriter:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def job_events(self, events: Iterable[JobEvent]) -> None:
        """Write events; returns when all are acknowledged. Events of one job set keep their order."""
        topic = self._settings.topic(EVENTS_TOPIC)
        futures = [await self._producer.send(topic, encode(e), key=e.key) for e in events]
        if futures:
            await asyncio.gather(*futures)

    async def queue(self, queue: QueueDefinition) -> None:
        await self._producer.send_and_wait(
            self._settings.topic(QUEUES_TOPIC), encode(queue), key=queue.name.encode()
        )

    async def retry_policy(self, policy: RetryPolicy) -> None:
        await self._producer.send_and_wait(self._settings.topic(QUEUES_TOPIC), encode(policy), key=policy.key)

    async def heartbeat(self, heartbeat: ExecutorHeartbeat) -> None:
        await self._producer.send_and_wait(
            self._settings.topic(EXECUTORS_TOPIC), encode(heartbeat), key=heartbeat.executor.encode()
        )
