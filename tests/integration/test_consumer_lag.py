"""A consumer group's lag (flotilla.log.consumer_lag): per partition, the records between the
group's committed offset and the partition's end; and the worker's lag in `flotilla up`'s status
(flotilla.stack.WorkerStatus)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from flotilla.log.consumer_lag import group_lag
from flotilla.log.schema import EVENTS_TOPIC
from flotilla.log.topics import ensure_topics
from flotilla.settings import load_settings
from flotilla.stack import WorkerStatus
from tests.harness.topics import create_topic

pytestmark = pytest.mark.integration


async def produce(broker: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all")
    await producer.start()
    try:
        sent = [
            await producer.send(topic, b"x", partition=p) for p, n in per_partition.items() for _ in range(n)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


async def commit(broker: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=broker, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit({tp: OffsetAndMetadata(offset, "") for tp, offset in offsets.items()})
    finally:
        await consumer.stop()


async def test_lag_counts_the_records_after_the_groups_committed_offset_in_each_partition(broker: str):
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"group-{uuid.uuid4().hex[:8]}"
    await create_topic(broker, topic, 3)
    p0, p1, p2 = (TopicPartition(topic, p) for p in range(3))
    await produce(broker, topic, {0: 10, 1: 5})
    await commit(broker, group, {p0: 4})

    assert await group_lag(broker, group, [p0, p1, p2]) == {p0: 6, p1: 5, p2: 0}

    await commit(broker, group, {p0: 10, p1: 5})
    assert await group_lag(broker, group, [p0, p1, p2]) == {p0: 0, p1: 0, p2: 0}


def test_flotilla_up_reports_the_workers_lag_while_it_is_behind_and_once_when_it_caught_up(broker: str):
    unique = uuid.uuid4().hex[:8]
    settings = load_settings(
        overrides={
            "kafka": {"bootstrap": broker, "topic_prefix": f"lag-{unique}."},
            "scheduler": {"app_id": unique},
        },
        environ={},
    )
    asyncio.run(ensure_topics(settings))
    events = settings.topic(EVENTS_TOPIC)
    asyncio.run(produce(broker, events, {0: 3}))
    said: list[str] = []
    status = WorkerStatus(settings, said.append, interval=0)

    status.poll()
    assert len(said) == 1 and said[0].startswith("flotilla up: status: worker 3 records behind")
    assert f"{events}[0] 3" in said[0]

    asyncio.run(commit(broker, unique, {TopicPartition(events, 0): 3}))
    status.poll()
    status.poll()
    assert said[1:] == [said[1]] and said[1].startswith("flotilla up: status: worker 0 records behind")
