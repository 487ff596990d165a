"""The log tail's catch-up (flotilla.log.tail): it returns only once every record written
before the call has reached the view, with the partition ends taken from fetch answers."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaProducer

from flotilla.log.tail import LogTail
from flotilla.settings import load_settings
from tests.harness.topics import create_topic

pytestmark = pytest.mark.integration

PARTITIONS = 4


async def test_catch_up_reaches_the_last_record_written_before_it_was_called(broker: str):
    topic = f"tail-{uuid.uuid4().hex[:8]}"
    await create_topic(broker, topic, PARTITIONS)
    seen: list[bytes] = []
    tail = LogTail(
        load_settings(overrides={"kafka": {"bootstrap": broker}}, environ={}), [topic], seen.append
    )
    producer = AIOKafkaProducer(bootstrap_servers=broker, acks="all", linger_ms=2)
    await producer.start()
    await tail.start()
    try:
        # Rounds of many records and of one per partition: Tansu's ListOffsets answers the
        # base offset (plus one) of a partition's newest batch, so a batch of many records is
        # where it errs (bench/list_offsets.py).
        for round_ in range(40):
            count = PARTITIONS if round_ % 2 else 250
            sent = [
                await producer.send(topic, f"{round_}-{i}".encode(), partition=i % PARTITIONS)
                for i in range(count)
            ]
            await asyncio.gather(*sent)  # acknowledged: on the log before catch_up is called

            await tail.catch_up(timeout=60)

            values = {record.value for record in seen}
            missing = [f"{round_}-{i}" for i in range(count) if f"{round_}-{i}".encode() not in values]
            assert missing == [], (
                f"round {round_}: {len(missing)} records not in the view, e.g. {missing[:5]}"
            )
    finally:
        await tail.stop()
        await producer.stop()
