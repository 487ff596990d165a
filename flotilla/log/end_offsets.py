"""A partition's end as the broker serves it: the high watermark of a fetch, not ListOffsets.

Tansu (0.6) answers ListOffsets(latest) wrongly on both of its storage engines (it takes the
newest stored object's base offset: on S3, partitions of about 2,500 records reported ends
of 570-809), while the high watermark in its fetch responses is right; on Apache Kafka the
two agree. So every reader that must know where a partition ends (the log tail catching up,
Faust restoring a changelog table) takes the high watermark of a fetch sent after it asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

__all__ = ["fetched_end_offsets"]


async def fetched_end_offsets(
    bootstrap: str | list[str], partitions: Iterable[TopicPartition], timeout: float = 60.0
) -> dict[TopicPartition, int]:
    """The high watermark of each partition, from fetches that a consumer of its own sends
    now (so every record acknowledged before the call lies below it)."""
    wanted = sorted({TopicPartition(tp.topic, tp.partition) for tp in partitions})  # Faust's TP too
    if not wanted:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_partition_fetch_bytes=64 * 1024,  # the records are thrown away: one batch will do
    )
    await consumer.start()
    try:
        consumer.assign(wanted)
        await consumer.seek_to_beginning(*wanted)
        ends: dict[TopicPartition, int] = {}
        deadline = asyncio.get_running_loop().time() + timeout
        while len(ends) < len(wanted):
            if asyncio.get_running_loop().time() > deadline:
                missing = [f"{tp.topic}[{tp.partition}]" for tp in wanted if tp not in ends]
                raise TimeoutError(f"no fetch answered for {', '.join(missing)} within {timeout:.0f}s")
            await consumer.getmany(timeout_ms=100, max_records=1)
            for tp in wanted:
                highwater = consumer.highwater(tp)
                if tp not in ends and highwater is not None:
                    ends[tp] = highwater
                    consumer.pause(tp)
        return ends
    finally:
        await consumer.stop()
