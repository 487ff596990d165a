"""Follow Flotilla's public job-events topic with kafka-python.

Prints each event as ``examples/event_stream_message.py`` writes it (whatever the topic's
format: the ``content-type`` header says); ``--since`` starts at the first event of each
partition that happened at or after a time (``offsets_for_times``), else at the beginning.

    python examples/kafka_python_consumer.py --bootstrap 127.0.0.1:9092 --topic flotilla.job-events \\
        [--since 2026-12-01T09:00:00+00:00 | --group my-service] [--max-messages N]

With ``--group`` the consumer joins a consumer group and commits its offsets, so a restart goes
on where it stopped; without it, it reads every partition itself and commits nothing.
"""

from __future__ import annotations

from datetime import datetime

from event_stream_message import PROTOBUF, arguments, line
from kafka import KafkaConsumer, TopicPartition


def main() -> int:
    args = arguments(__doc__)

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        auto_offset_reset="earliest",
        enable_auto_commit=args.group is not None,
    )
    partitions = [
        TopicPartition(args.topic, p) for p in sorted(consumer.partitions_for_topic(args.topic) or ())
    ]
    if not partitions:
        raise SystemExit(f"topic {args.topic} not found on {args.bootstrap}")
    if args.group:
        consumer.subscribe([args.topic])
    else:
        consumer.assign(partitions)
    if args.since:
        since_ms = int(datetime.fromisoformat(args.since).timestamp() * 1000)
        found = consumer.offsets_for_times({tp: since_ms for tp in consumer.assignment()})
        ends = consumer.end_offsets(list(consumer.assignment()))
        for tp in consumer.assignment():
            # None: nothing written since then in this partition, so start at its end.
            consumer.seek(tp, found[tp].offset if found[tp] is not None else ends[tp])

    seen = 0
    for record in consumer:
        content_type = dict(record.headers).get("content-type", PROTOBUF.encode()).decode()
        print(line(record.key, record.value, content_type), flush=True)
        seen += 1
        if args.max_messages and seen >= args.max_messages:
            break
    consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
