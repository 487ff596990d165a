"""What a broker answers to ListOffsets(latest) against the end its fetches report.

    python bench/list_offsets.py [--batches 3] [--records 50] [--bootstrap HOST:PORT]

Produces ``--batches`` batches of ``--records`` records each into a new one-partition topic
and after each prints the partition's end as ListOffsets(latest) gives it (aiokafka's
``end_offsets``) and as the high watermark of a fetch gives it (every record read back).
Without ``--bootstrap`` it starts an in-memory Tansu broker of its own: the README's figures
for Tansu (``The embedded broker and the data dir``) come from this command.
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from flotilla.embedded.ports import free_port
from flotilla.embedded.tansu import TansuBroker


async def fetched_end(bootstrap: str, tp: TopicPartition, records: int) -> int:
    """The high watermark of the fetches that read all ``records`` back."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        read = 0
        while read < records:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            read += sum(len(b) for b in batches.values())
        highwater = consumer.highwater(tp)
        assert highwater is not None
        return highwater
    finally:
        await consumer.stop()


async def list_offsets_end(bootstrap: str, tp: TopicPartition) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def measure(bootstrap: str, batches: int, records: int) -> None:
    tp = TopicPartition(f"list-offsets-{uuid.uuid4().hex[:8]}", 0)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(tp.topic, num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        print("batch | records written | ListOffsets(latest) | fetch high watermark")
        for number in range(1, batches + 1):
            batch = producer.create_batch()
            for i in range(records):
                assert batch.append(key=None, value=f"record-{i}".encode(), timestamp=None) is not None
            await (await producer.send_batch(batch, tp.topic, partition=tp.partition))
            written = number * records
            listed = await list_offsets_end(bootstrap, tp)
            fetched = await fetched_end(bootstrap, tp, written)
            print(f"{number} | {written} | {listed} | {fetched}", flush=True)
    finally:
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--records", type=int, default=50)
    parser.add_argument("--bootstrap", default="", help="a broker to ask instead of an in-memory Tansu")
    args = parser.parse_args()
    if args.bootstrap:
        asyncio.run(measure(args.bootstrap, args.batches, args.records))
        return
    broker = TansuBroker(port=free_port())
    bootstrap = broker.start()
    try:
        asyncio.run(measure(bootstrap, args.batches, args.records))
    finally:
        broker.stop()


if __name__ == "__main__":
    main()
