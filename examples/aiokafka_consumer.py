"""Follow Flotilla's public job-events topic with aiokafka (asyncio).

Prints each event as ``examples/event_stream_message.py`` writes it; ``--since`` starts at the
first event of each partition that happened at or after a time (``offsets_for_times``).

    python examples/aiokafka_consumer.py --bootstrap 127.0.0.1:9092 --topic flotilla.job-events \\
        [--since 2026-12-01T09:00:00+00:00 | --group my-service] [--max-messages N]
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiokafka import AIOKafkaConsumer
from event_stream_message import PROTOBUF, arguments, line


async def follow(args) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=args.group is not None,
    )
    await consumer.start()
    try:
        # Without a group, aiokafka assigns itself every partition; with one, the group does.
        consumer.subscribe([args.topic])
        while not consumer.assignment():
            await asyncio.sleep(0.1)
        if args.since:
            since_ms = int(datetime.fromisoformat(args.since).timestamp() * 1000)
            assigned = list(consumer.assignment())
            found = await consumer.offsets_for_times({tp: since_ms for tp in assigned})
            ends = await consumer.end_offsets(assigned)
            for tp in assigned:
                # None: nothing written since then in this partition, so start at its end.
                consumer.seek(tp, found[tp].offset if found[tp] is not None else ends[tp])
        seen = 0
        async for record in consumer:
            content_type = dict(record.headers).get("content-type", PROTOBUF.encode()).decode()
            print(line(record.key, record.value, content_type), flush=True)
            seen += 1
            if args.max_messages and seen >= args.max_messages:
                return
    finally:
        await consumer.stop()


def main() -> int:
    asyncio.run(follow(arguments(__doc__)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
