"""The Lookout ingester: follows the events and scheduling-reports topics into Postgres.

It reads from the offsets stored in the database (not a consumer group's: those are kept
apart from the rows and could disagree with them after a crash), gathers a batch of up to
``lookout.batch_size`` records or ``lookout.batch_seconds`` from the first, and writes it in
one transaction with the offsets it reached (``flotilla.lookout.store``). So a crash loses
nothing and doubles nothing: the next start reads from the last batch that committed.

Reading is pulled at the database's pace (a batch is fetched only after the last one is
written), so a replay of a long log holds one batch in memory, not the log. Fetching and
decoding the next batch while one is written was tried and made ingestion 2-3x slower: the
writer's thread, which needs the GIL at every round trip to Postgres, waits out the decoding
thread's switch interval each time. Like every
reader of the log it holds at a gap in a partition's offsets (``flotilla.log.offset_gaps``).
A record it cannot decode is logged, counted and passed over. While Postgres is down it
keeps its batch and retries with backoff; the offsets in the database say where it is.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import psycopg
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from flotilla.log.offset_gaps import OffsetGaps
from flotilla.log.schema import (
    EVENTS_TOPIC,
    SCHEDULING_REPORTS_TOPIC,
    JobEvent,
    SchedulingReport,
    SchemaError,
    decode_job_event,
    decode_scheduling_report,
)
from flotilla.log.tail import follower_consumer, topic_partitions
from flotilla.log.topics import ensure_topics
from flotilla.lookout.migrations import migrate
from flotilla.lookout.store import BatchResult, LogRecord, Partition, prepare, write_batch
from flotilla.settings import Settings

log = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 10.0
DECODE_CHUNK = 1000

T = TypeVar("T")


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cycle collector off while a chunk of records is decoded: decoding allocates
    a few objects per field, which sets the collector off every few hundred records to scan
    the whole batch held in memory, about half the time decoding takes. Decoded messages
    hold no reference cycles, so reference counting frees them all the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@dataclass
class IngesterCounts:
    batches: int = 0
    applied: int = 0
    undecodable: int = 0
    last_batch_at: float = 0.0


class Ingester:
    def __init__(self, settings: Settings, dsn: str) -> None:
        self.settings = settings
        self.dsn = dsn
        self.counts = IngesterCounts()
        self._events_topic = settings.topic(EVENTS_TOPIC)
        self._reports_topic = settings.topic(SCHEDULING_REPORTS_TOPIC)
        self._connection: psycopg.Connection | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._gaps = OffsetGaps()
        self._expected: dict[TopicPartition, int] = {}
        self._beginning: dict[TopicPartition, int] = {}

    # --- the database ------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            connection = psycopg.connect(self.dsn, connect_timeout=5)
            migrate(connection)
            prepare(connection)
            self._connection = connection
        return self._connection

    def _drop_connection(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except psycopg.Error:
                pass
        self._connection = None

    async def _with_database(self, what: str, work: Callable[[psycopg.Connection], T]) -> T:
        """Run ``work(connection)`` in a thread; while Postgres is unreachable, retry with backoff."""
        backoff = 0.2
        while True:
            try:
                return await asyncio.to_thread(lambda: work(self._connect()))
            except psycopg.OperationalError as exc:
                log.warning("lookout ingester: %s failed (%s); retrying in %.1fs", what, exc, backoff)
                self._drop_connection()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    # --- the log -------------------------------------------------------------------------

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self._gaps.expect(tp, offset)
        self._expected[tp] = offset

    async def start(self) -> None:
        await ensure_topics(self.settings)
        self._consumer = follower_consumer(self.settings)
        await self._consumer.start()
        partitions = await topic_partitions(self.settings, [self._events_topic, self._reports_topic])
        self._consumer.assign(partitions)
        self._beginning = await self._consumer.beginning_offsets(partitions)
        stored = await self._with_database("reading stored offsets", self._stored_offsets)
        for tp in partitions:
            self._seek(tp, stored.get((tp.topic, tp.partition), self._beginning[tp]))
        log.info("lookout ingester: reading %s from %s", partitions, dict(self._expected))

    def _stored_offsets(self, connection: psycopg.Connection) -> dict[Partition, int]:
        with connection.transaction():
            rows = connection.execute("SELECT topic, partition, next_offset FROM ingester_offsets").fetchall()
        return {(topic, partition): offset for topic, partition, offset in rows}

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        await asyncio.to_thread(self._drop_connection)

    # --- batches -------------------------------------------------------------------------

    async def _fetch_batch(self, stop_when_caught_up: bool) -> list[ConsumerRecord]:
        """Up to batch_size records, or what came within batch_seconds of the first."""
        assert self._consumer is not None
        size = self.settings.lookout.batch_size
        batch: list[ConsumerRecord] = []
        deadline: float | None = None
        while len(batch) < size:
            wait = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
            fetched = await self._consumer.getmany(timeout_ms=int(wait * 1000), max_records=size - len(batch))
            for tp, records in fetched.items():
                admitted, refetch_from = self._gaps.admit(tp, records)
                if refetch_from is not None:
                    self._consumer.seek(tp, refetch_from)
                batch.extend(admitted)
            if batch and deadline is None:
                deadline = time.monotonic() + self.settings.lookout.batch_seconds
            if deadline is not None and time.monotonic() >= deadline:
                break
            if stop_when_caught_up and self.caught_up(batch):
                break
        return batch

    def caught_up(self, pending: Sequence[ConsumerRecord] = ()) -> bool:
        """Every partition read up to the high watermark of its latest fetch (taken from fetch
        responses: the embedded broker answers ListOffsets(latest) wrongly)."""
        assert self._consumer is not None
        reached = dict(self._expected)
        for record in pending:
            reached[TopicPartition(record.topic, record.partition)] = record.offset + 1
        for tp, offset in reached.items():
            highwater = self._consumer.highwater(tp)
            if highwater is None or offset < highwater:
                return False
        return True

    def _decode(self, record: ConsumerRecord) -> LogRecord:
        message: JobEvent | SchedulingReport | None = None
        try:
            if record.topic == self._events_topic:
                message = decode_job_event(record.value)
            else:
                message = decode_scheduling_report(record.value)
        except SchemaError as exc:
            self.counts.undecodable += 1
            log.warning(
                "lookout ingester: passing over %s[%d]@%d, which does not decode (%d so far): %s",
                record.topic,
                record.partition,
                record.offset,
                self.counts.undecodable,
                exc,
            )
        return LogRecord(record.topic, record.partition, record.offset, message)

    async def _write(self, batch: list[ConsumerRecord]) -> None:
        expected = {(tp.topic, tp.partition): o for tp, o in self._expected.items()}
        beginning = {(tp.topic, tp.partition): o for tp, o in self._beginning.items()}

        undecodable_before = self.counts.undecodable
        records: list[LogRecord] = []
        for start in range(0, len(batch), DECODE_CHUNK):
            # Decoded here, in chunks between which the API's requests are served: in the
            # writer's thread, decoding fights the event loop for the GIL and takes 5x longer.
            with _collector_paused():
                records += [self._decode(r) for r in batch[start : start + DECODE_CHUNK]]
            await asyncio.sleep(0)

        def work(connection: psycopg.Connection) -> BatchResult:
            return write_batch(connection, records, expected, beginning)

        result = await self._with_database(f"writing a batch of {len(batch)}", work)
        if result.reseek:
            self.counts.undecodable = undecodable_before
            log.warning(
                "lookout ingester: the database is behind the reader; reading again from %s", result.reseek
            )
            for tp in list(self._expected):
                self._seek(tp, result.reseek.get((tp.topic, tp.partition), self._expected[tp]))
            return
        for record in batch:
            self._expected[TopicPartition(record.topic, record.partition)] = record.offset + 1
        self.counts.batches += 1
        self.counts.applied += result.applied
        self.counts.last_batch_at = time.time()

    async def run(self, stop_when_caught_up: bool = False) -> None:
        """Ingest until cancelled, or (``stop_when_caught_up``) until the log's end is applied."""
        while True:
            batch = await self._fetch_batch(stop_when_caught_up)
            if batch:
                await self._write(batch)
            if stop_when_caught_up and self.caught_up():
                return


async def ingest_to_end(settings: Settings, dsn: str) -> IngesterCounts:
    """Apply the log to the database up to its end as of now, then stop (rebuilds, tests)."""
    ingester = Ingester(settings, dsn)
    await ingester.start()
    try:
        await ingester.run(stop_when_caught_up=True)
    finally:
        await ingester.stop()
    return ingester.counts
