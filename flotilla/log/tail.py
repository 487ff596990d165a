"""Reads whole topics from their beginning, then follows them: the base of in-process views.

A view (the API's job view, an executor's view of its leases) is a fold of the log; it is
rebuilt by reading from offset zero at start, so it needs no storage of its own (invariant 1).
It never skips a record that a fetch left out while the broker still had it in flight
(``flotilla.log.offset_gaps``). Catching up takes each partition's end from the high
watermark of the tail's own fetches, not from ListOffsets (``flotilla.log.end_offsets``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from flotilla.log.offset_gaps import OffsetGaps
from flotilla.settings import Settings

log = logging.getLogger(__name__)


async def topic_partitions(
    settings: Settings, topics: list[str], timeout: float = 60.0
) -> list[TopicPartition]:
    """Every partition of ``topics``, waiting up to ``timeout`` for all of them to exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
    await admin.start()
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                described = await admin.describe_topics(topics)
                found = [
                    TopicPartition(topic["topic"], partition["partition"])
                    for topic in described
                    if topic["error_code"] == 0
                    for partition in topic["partitions"]
                ]
                if {tp.topic for tp in found} == set(topics):
                    return sorted(found)
            except KafkaError as exc:
                log.info("waiting for topics %s: %s", topics, exc)
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"topics {topics} not found on {settings.kafka.bootstrap}")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def follower_consumer(settings: Settings) -> AIOKafkaConsumer:
    """A consumer (not started) for a reader that assigns itself partitions and keeps its own
    offsets: no group, no auto-commit, large fetches. The log tail and Lookout's ingester."""
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka.bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=settings.kafka.fetch_max_wait_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )


class LogTail:
    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        on_record: Callable[[ConsumerRecord], None],
    ) -> None:
        self._settings = settings
        self._topics = topics
        self._on_record = on_record
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._positions: dict[TopicPartition, int] = {}
        self._progress = asyncio.Condition()
        self._gaps = OffsetGaps()

    async def start(self, timeout: float = 60.0) -> None:
        self._consumer = follower_consumer(self._settings)
        await self._consumer.start()
        partitions = await self._partitions(timeout)
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        for tp, offset in (await self._consumer.beginning_offsets(partitions)).items():
            self._gaps.expect(tp, offset)
        self._task = asyncio.create_task(self._run(), name=f"log-tail {','.join(self._topics)}")

    async def _partitions(self, timeout: float) -> list[TopicPartition]:
        return await topic_partitions(self._settings, self._topics, timeout)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                # Short, so that catch_up sees each fetch answer soon after it came in.
                batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            except KafkaError as exc:
                log.warning("log tail fetch failed, retrying: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for tp, fetched in batches.items():
                records, refetch_from = self._gaps.admit(tp, fetched)
                if refetch_from is not None:
                    self._consumer.seek(tp, refetch_from)
                for record in records:
                    try:
                        self._on_record(record)
                    except Exception:
                        log.exception("skipping record %s[%d]@%d", tp.topic, tp.partition, record.offset)
                    self._positions[tp] = record.offset + 1
            async with self._progress:
                self._progress.notify_all()

    async def catch_up(self, timeout: float = 30.0) -> None:
        """Return once every record written before this call has been handed to the view.

        The end of each partition is the high watermark of a fetch that the tail's consumer
        sent after the call: the first fetch answered after it may have been sent before it,
        so the end is taken from the next one (the consumer sends a partition's next fetch
        only once the previous answer is in)."""
        consumer = self._consumer
        assert consumer is not None
        partitions = list(consumer.assignment())
        called_ms = time.time() * 1000  # aiokafka stamps fetch answers with wall-clock ms
        first_answer: dict[TopicPartition, int] = {}
        ends: dict[TopicPartition, int] = {}

        def reached() -> bool:
            for tp in partitions:
                if tp in ends:
                    continue
                answered = consumer.last_poll_timestamp(tp)
                if answered is None or answered <= called_ms:
                    continue
                if tp not in first_answer:
                    first_answer[tp] = answered
                elif answered > first_answer[tp]:
                    ends[tp] = consumer.highwater(tp)
            return len(ends) == len(partitions) and all(
                self._positions.get(tp, 0) >= end for tp, end in ends.items()
            )

        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(reached), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        if self._consumer is not None:
            await self._consumer.stop()
