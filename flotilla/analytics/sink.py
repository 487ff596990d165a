"""The analytics sink: follows the log into the analytics store (``flotilla analytics``).

It reads the events, scheduling-reports, queues and executors topics from the positions
stored with the data (``flotilla.log.batch_reader``), folds each batch (``rows``) and writes
it with the positions it reached in one transaction (``store``): a crash at any moment,
SIGKILL mid-batch included, leaves the last committed batch, and the next start reads on
from there, so nothing is lost or written twice. The fold needs each touched job's state
before the batch: the states of live jobs are cached in memory (the latest touched last, at
most ``CACHE_LIMIT``); the others are read back from the store's ``jobs.fold``.

A record that does not decode is logged, counted and passed over (its position is taken).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiokafka import ConsumerRecord

from flotilla.analytics.rows import LogRecord, Message, fold_batch, job_ids
from flotilla.analytics.store import AnalyticsStore
from flotilla.jobs.state import JobState
from flotilla.log.batch_reader import BatchReader, Position
from flotilla.log.schema import (
    EVENTS_TOPIC,
    EXECUTORS_TOPIC,
    QUEUES_TOPIC,
    SCHEDULING_REPORTS_TOPIC,
    QueueDefinition,
    SchemaError,
    decode_heartbeat,
    decode_job_event,
    decode_queues_record,
    decode_scheduling_report,
)
from flotilla.settings import Settings

log = logging.getLogger(__name__)

CACHE_LIMIT = 200_000


@dataclass
class SinkCounts:
    batches: int = 0
    records: int = 0
    undecodable: int = 0
    last_batch_at: float = 0.0


def _queue_definition(raw: bytes) -> Message | None:
    record = decode_queues_record(raw)
    return record if isinstance(record, QueueDefinition) else None  # retry policies: not kept


class AnalyticsSink:
    def __init__(self, settings: Settings, path: Path) -> None:
        self.settings = settings
        self.path = path
        self.counts = SinkCounts()
        self.store: AnalyticsStore | None = None
        self._decoders: dict[str, Callable[[bytes], Message | None]] = {
            settings.topic(EVENTS_TOPIC): decode_job_event,
            settings.topic(SCHEDULING_REPORTS_TOPIC): decode_scheduling_report,
            settings.topic(QUEUES_TOPIC): _queue_definition,
            settings.topic(EXECUTORS_TOPIC): decode_heartbeat,
        }
        analytics = settings.analytics
        self.reader = BatchReader(
            settings, list(self._decoders), analytics.batch_size, analytics.batch_seconds
        )
        self._cache: dict[str, JobState] = {}

    async def start(self) -> None:
        from flotilla.log.topics import ensure_topics

        await ensure_topics(self.settings)
        self.store = AnalyticsStore(self.path)
        await self.reader.start(self.store.positions())

    async def stop(self) -> None:
        await self.reader.stop()
        if self.store is not None:
            self.store.close()
            self.store = None

    def _decode(self, record: ConsumerRecord) -> LogRecord | None:
        try:
            message = self._decoders[record.topic](record.value)
        except SchemaError as exc:
            self.counts.undecodable += 1
            log.warning(
                "analytics sink: passing over %s[%d]@%d, which does not decode (%d so far): %s",
                record.topic,
                record.partition,
                record.offset,
                self.counts.undecodable,
                exc,
            )
            return None
        if message is None:
            return None
        return LogRecord(record.partition, record.offset, message, record.value)

    def _states_before(self, records: list[LogRecord]) -> dict[str, JobState]:
        assert self.store is not None
        wanted = job_ids(records)
        known = {job_id: self._cache[job_id] for job_id in wanted if job_id in self._cache}
        known.update(self.store.job_states(wanted - known.keys()))
        return known

    def _remember(self, states: dict[str, JobState]) -> None:
        cache = self._cache
        for job_id, state in states.items():
            cache.pop(job_id, None)
            if not state.terminal:  # the store has the others, should a late record come
                cache[job_id] = state
        for job_id in list(cache)[: max(0, len(cache) - CACHE_LIMIT)]:
            del cache[job_id]

    async def apply(self, batch: list[ConsumerRecord]) -> None:
        """Fold ``batch`` and commit it with the positions it reaches."""
        assert self.store is not None
        store = self.store
        records = [decoded for decoded in map(self._decode, batch) if decoded is not None]
        before = await asyncio.to_thread(self._states_before, records)
        rows = fold_batch(records, before)
        positions: dict[Position, int] = self.reader.applied(batch)
        await asyncio.to_thread(store.write, rows, positions)
        self.reader.advance(positions)
        self._remember(rows.states)
        self.counts.batches += 1
        self.counts.records += len(batch)
        self.counts.last_batch_at = time.time()

    async def run(self, stop_when_caught_up: bool = False) -> None:
        """Follow the log until cancelled, or (``stop_when_caught_up``) until its end as of now."""
        while True:
            batch = await self.reader.fetch(stop_when_caught_up)
            if batch:
                await self.apply(batch)
            if stop_when_caught_up and self.reader.caught_up():
                return


async def sink_to_end(settings: Settings, path: Path) -> SinkCounts:
    """Apply the log to the store at ``path`` up to its end as of now, then stop."""
    sink = AnalyticsSink(settings, path)
    await sink.start()
    try:
        await sink.run(stop_when_caught_up=True)
    finally:
        await sink.stop()
    return sink.counts
