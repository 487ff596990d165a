"""Faust's aiokafka transport, adjusted in two ways for the scheduler worker's consumer.

- The fetch wait comes from settings. Faust fixes ``fetch_max_wait_ms=1500``; Apache Kafka
  answers a fetch as soon as it has data, so there the wait only bounds idle polls, but Tansu
  holds a fetch for much of the wait even when records arrive (measured with aiokafka: a record
  waited 140 ms at the median under a 500 ms wait, 2 ms under 100 ms). Every hop through the
  worker (submitted, then queued, then leased) paid it.
- Records of the log's topics are handed on without gaps (``flotilla.log.offset_gaps``):
  a batch that a fetch returned ahead of an earlier one is held back until the earlier one
  is there. Faust's own changelog topics are read as they are.
- The end of a partition (where Faust's changelog recovery stops) is the high watermark of
  a fetch, not ListOffsets, which Tansu answers wrongly (``flotilla.log.end_offsets``).
- Faust's seek to the committed offsets tells the gaps where reading starts, as a seek does.
- A message fetched before the latest rebalance is not acknowledged. Faust's streams skip such
  messages (the consumer reads them again from the committed offset) but ack them, and an ack
  counts the offset as processed: the next commit passed records no agent had folded, and a
  worker that died before reading them again never did (a submit left ``submitted`` for good).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import aiokafka
import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message

from flotilla.log.end_offsets import fetched_end_offsets
from flotilla.log.offset_gaps import OffsetGaps


class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def __post_init__(self) -> None:
        super().__post_init__()
        self._gaps = OffsetGaps()

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads this attribute when the consumer starts, to build its fetcher
        # (tests/integration/test_worker_consumer.py checks that it still does).
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer

    async def _fetch_records(self, consumer: aiokafka.AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        fetched = await super()._fetch_records(consumer, *args, **kwargs)
        contiguous = cast(Transport, self.transport).contiguous_topics
        admitted = {}
        for tp, fetched_records in fetched.items():
            records: Sequence[Any] = fetched_records
            if tp.topic in contiguous:
                records, refetch_from = self._gaps.admit(tp, records)
                if refetch_from is not None:
                    consumer.seek(tp, refetch_from)
            if records:
                admitted[tp] = records
        return admitted

    async def _highwaters(self, partitions: list[TP]) -> Mapping[TP, int]:
        consumer = self._ensure_consumer()
        if self.consumer.in_transaction:
            return await super()._highwaters(partitions)
        ends = await fetched_end_offsets(consumer._client._bootstrap_servers, partitions)
        return {TP(tp.topic, tp.partition): end for tp, end in ends.items()}

    def seek(self, partition: TP, offset: int) -> None:
        self._gaps.expect(partition, offset)
        super().seek(partition, offset)

    async def seek_to_committed(self) -> Mapping[TP, int]:
        return await self.call_thread(self._seek_to_committed)

    async def _seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek after table recovery (and after a rebalance) goes round ``seek``: the
        gaps must know of it too. Otherwise a record fetched from the earlier position, beyond
        the committed offset, is handed on first; Faust takes the jump for a gap, counts the
        offsets in between as processed and drops them when they are fetched again ("DROPPED
        MESSAGE ROFF"), so records no worker folded were committed past."""
        committed = await self._ensure_consumer().seek_to_committed()
        for tp, offset in committed.items():
            if offset is not None and offset >= 0:
                self._gaps.expect(tp, offset)
        return committed

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._gaps.forget(revoked)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._gaps.forget(assigned)
        await super().on_partitions_assigned(assigned, generation_id)


class Consumer(faust_aiokafka.Consumer):
    def ack(self, message: Message) -> bool:
        generation = message.generation_id
        if generation is not None and generation != self.app.consumer_generation_id:
            message.acked = True  # done with here; read again, as a new message, from the commit
            self._unacked_messages.discard(message)
            return False
        return super().ack(message)

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class Transport(faust_aiokafka.Transport):
    Consumer = Consumer

    def __init__(
        self, url: list[Any], app: faust.App, *, fetch_max_wait_ms: int, contiguous_topics: Iterable[str]
    ) -> None:
        super().__init__(url, app)
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.contiguous_topics = frozenset(contiguous_topics)


def use_worker_transport(app: faust.App, *, fetch_max_wait_ms: int, contiguous_topics: Iterable[str]) -> None:
    """Give ``app`` the adjusted transport: its consumer waits at most ``fetch_max_wait_ms``
    for a fetch, and reads ``contiguous_topics`` without gaps."""
    app.transport = Transport(
        app.conf.broker_consumer,
        app,
        fetch_max_wait_ms=fetch_max_wait_ms,
        contiguous_topics=contiguous_topics,
    )
