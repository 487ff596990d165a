"""The public job-events topic's records: what a value holds, the headers, and where the
bridge left off.

A record is one ``api.EventStreamMessage``, keyed ``queue/job_set``, in the partition of the
internal events topic its event came from (the two topics have as many partitions, and the
same key lands in the same partition of both under Kafka's default partitioner). Headers:

``content-type``            what the value is (:data:`CONTENT_TYPES`)
``flotilla-message-id``     the message's id, as ``GetJobSetEvents`` gives it: the event's
                            offset in its partition, ``<offset>-<index>`` for all but the last
                            message of an event that makes several
``flotilla-source-offset``  that offset alone

The newest record of each partition is where the bridge left off: the broker has no
transactions, so the bridge's position is not kept apart from what it published (where a
crash between the two could lose or repeat events) but read back from the topic itself.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import NewTopic
from armada_client.armada import event_pb2
from google.protobuf import json_format

from flotilla.api.event_messages import parse_message_id
from flotilla.log.end_offsets import fetched_end_offsets
from flotilla.settings import Settings, SettingsError

__all__ = [
    "CONTENT_TYPES",
    "MESSAGE_ID_HEADER",
    "SOURCE_OFFSET_HEADER",
    "decode_value",
    "encoder",
    "headers",
    "newest_published",
    "public_topic",
    "public_topic_name",
]

CONTENT_TYPES = {
    "protobuf": "application/x-protobuf; messageType=api.EventStreamMessage",
    "json": "application/json; messageType=api.EventStreamMessage",
}
MESSAGE_ID_HEADER = "flotilla-message-id"
SOURCE_OFFSET_HEADER = "flotilla-source-offset"

# (offset, index) of the newest message published from a partition; index -1: every message
# of that offset. (-1, -1): nothing yet.
Position = tuple[int, int]
NOTHING_PUBLISHED: Position = (-1, -1)


def public_topic_name(settings: Settings) -> str:
    return settings.topic(settings.events.public_topic)


def public_topic(settings: Settings, partitions: int) -> NewTopic:
    """The topic as the bridge creates it: as many partitions as the events topic."""
    configs = {}
    if settings.events.retention_hours > 0:
        configs["retention.ms"] = str(int(settings.events.retention_hours * 3600 * 1000))
    return NewTopic(
        public_topic_name(settings), num_partitions=partitions, replication_factor=1, topic_configs=configs
    )


def _json(message: event_pb2.EventStreamMessage) -> bytes:
    # One line (the console consumer prints a record a line), canonical proto3 JSON names.
    return json.dumps(json_format.MessageToDict(message), separators=(",", ":")).encode()


def encoder(settings: Settings) -> Callable[[event_pb2.EventStreamMessage], bytes]:
    """How values are written, by ``events.format``; an unknown format is refused by name."""
    encoders: dict[str, Callable[[event_pb2.EventStreamMessage], bytes]] = {
        "protobuf": lambda message: message.SerializeToString(),
        "json": _json,
    }
    encode = encoders.get(settings.events.format)
    if encode is None:
        raise SettingsError("events.format", settings.events.format, f"expected one of {', '.join(encoders)}")
    return encode


def headers(settings: Settings, message: event_pb2.EventStreamMessage) -> list[tuple[str, bytes]]:
    offset, _ = parse_message_id(message.id) or NOTHING_PUBLISHED
    return [
        ("content-type", CONTENT_TYPES[settings.events.format].encode()),
        (MESSAGE_ID_HEADER, message.id.encode()),
        (SOURCE_OFFSET_HEADER, str(offset).encode()),
    ]


def decode_value(value: bytes, content_type: str) -> event_pb2.EventStreamMessage:
    """A record's value as the message, by its ``content-type`` header."""
    message = event_pb2.EventStreamMessage()
    if content_type == CONTENT_TYPES["protobuf"]:
        message.ParseFromString(value)
    elif content_type == CONTENT_TYPES["json"]:
        json_format.Parse(value, message)
    else:
        raise ValueError(f"content-type {content_type!r} is not one of {sorted(CONTENT_TYPES.values())}")
    return message


async def newest_published(
    settings: Settings, partitions: int, timeout: float = 60.0
) -> dict[int, Position | None]:
    """Per partition, the position of the newest record on the public topic (its message id);
    None for a partition whose every record retention has removed."""
    topic = public_topic_name(settings)
    wanted = [TopicPartition(topic, p) for p in range(partitions)]
    ends = await fetched_end_offsets(settings.kafka.bootstrap, wanted, timeout)
    positions: dict[int, Position | None] = {tp.partition: NOTHING_PUBLISHED for tp in wanted}
    last = {tp: end - 1 for tp, end in ends.items() if end > 0}
    if not last:
        return positions
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(last))
        for tp, beginning in (await consumer.beginning_offsets(list(last))).items():
            if beginning > last[tp]:
                positions[tp.partition] = None
                del last[tp]
        for tp, offset in last.items():
            consumer.seek(tp, offset)
        consumer.pause(*(tp for tp in consumer.assignment() if tp not in last))
        deadline = asyncio.get_running_loop().time() + timeout
        while last:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"{topic}: the newest records of partitions {sorted(tp.partition for tp in last)} "
                    f"(offsets {sorted(last.values())}) did not arrive within {timeout:.0f}s"
                )
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                newest = [r for r in records if r.offset >= last.get(tp, 1 << 62)]
                if newest:
                    positions[tp.partition] = _position(newest[-1].headers, topic, tp.partition)
                    del last[tp]
                    consumer.pause(tp)
        return positions
    finally:
        await consumer.stop()


def _position(record_headers: tuple[tuple[str, bytes], ...], topic: str, partition: int) -> Position:
    found = dict(record_headers).get(MESSAGE_ID_HEADER)
    position = parse_message_id(found.decode()) if found else None
    if position is None:
        raise ValueError(
            f"{topic}[{partition}]: newest record's {MESSAGE_ID_HEADER} header is {found!r}, "
            "not a message id the bridge writes (is another producer writing to this topic?)"
        )
    return position
