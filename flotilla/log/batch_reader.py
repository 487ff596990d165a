"""Reading topics in batches from positions a store keeps: the base of persistent views.

A view that keeps its data in a store of its own (the analytics store) keeps there, in the
same transaction as its rows, the next offset of every partition it has applied. It reads
from those positions rather than a consumer group's (those are kept apart from the rows and
could disagree with them after a crash), in batches of up to ``size`` records or
``seconds`` from the first, fetched only once the last was written, so a replay of a long log
holds one batch in memory. Like every reader of the log it holds at a gap in a partition's
offsets (``flotilla.log.offset_gaps``), and it takes each partition's end from the high
watermark of its fetches, not from ListOffsets (``flotilla.log.end_offsets``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from flotilla.log.offset_gaps import OffsetGaps
from flotilla.log.tail import follower_consumer, topic_partitions
from flotilla.settings import Settings

Position = tuple[str, int]
"""(topic, partition)."""


class BatchReader:
    def __init__(self, settings: Settings, topics: list[str], size: int, seconds: float) -> None:
        self._settings = settings
        self._topics = topics
        self.size = size
        self.seconds = seconds
        self._consumer: AIOKafkaConsumer | None = None
        self._gaps = OffsetGaps()
        self._next: dict[TopicPartition, int] = {}

    async def start(self, stored: Mapping[Position, int]) -> None:
        """Assign every partition of the topics and place each at its stored position (the
        partition's beginning where none is stored)."""
        self._consumer = follower_consumer(self._settings)
        await self._consumer.start()
        partitions = await topic_partitions(self._settings, self._topics)
        self._consumer.assign(partitions)
        beginning = await self._consumer.beginning_offsets(partitions)
        for tp in partitions:
            self.seek(tp, stored.get((tp.topic, tp.partition), beginning[tp]))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        assert self._consumer is not None
        self._consumer.seek(tp, offset)
        self._gaps.expect(tp, offset)
        self._next[tp] = offset

    @property
    def positions(self) -> dict[Position, int]:
        """The next offset of every partition, as of the last batch :meth:`applied`."""
        return {(tp.topic, tp.partition): offset for tp, offset in self._next.items()}

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def fetch(self, stop_when_caught_up: bool = False) -> list[ConsumerRecord]:
        """Up to ``size`` records, or what came within ``seconds`` of the first; empty after
        about 0.2 s without records."""
        consumer = self._consumer
        assert consumer is not None
        batch: list[ConsumerRecord] = []
        deadline: float | None = None
        while len(batch) < self.size:
            wait = 0.2 if deadline is None else max(0.0, deadline - time.monotonic())
            fetched = await consumer.getmany(timeout_ms=int(wait * 1000), max_records=self.size - len(batch))
            for tp, records in fetched.items():
                admitted, refetch_from = self._gaps.admit(tp, records)
                if refetch_from is not None:
                    consumer.seek(tp, refetch_from)
                batch.extend(admitted)
            if deadline is None:
                if not batch:
                    break
                deadline = time.monotonic() + self.seconds
            if time.monotonic() >= deadline or (stop_when_caught_up and self.caught_up(batch)):
                break
        return batch

    def applied(self, batch: Sequence[ConsumerRecord]) -> dict[Position, int]:
        """The positions after ``batch`` (not yet taken: call :meth:`advance` once the store
        has committed them)."""
        reached = self.positions
        for record in batch:
            reached[(record.topic, record.partition)] = record.offset + 1
        return reached

    def advance(self, positions: Mapping[Position, int]) -> None:
        for (topic, partition), offset in positions.items():
            self._next[TopicPartition(topic, partition)] = offset

    def caught_up(self, pending: Sequence[ConsumerRecord] = ()) -> bool:
        """Every partition read up to the high watermark of its latest fetch."""
        consumer = self._consumer
        assert consumer is not None
        reached = self.applied(pending)
        for tp in self._next:
            highwater = consumer.highwater(tp)
            if highwater is None or reached[(tp.topic, tp.partition)] < highwater:
                return False
        return True
