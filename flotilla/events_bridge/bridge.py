"""The bridge: follows the internal events topic and publishes what users see to the public
job-events topic, at least once, and after a restart nothing twice.

It folds every event with the one fold (``flotilla.jobs.state.apply``), exactly as the API's
view does, and publishes the messages of the events the fold accepts, converted by the one
conversion ``GetJobSetEvents`` uses (``flotilla.api.event_messages.stream_messages_of``): the
topic holds the same messages, with the same ids, as the gRPC stream, and no duplicate or stale
report the log may hold. Heartbeats, queue definitions and scheduling reports live on other
topics, which it does not read.

Position. A fold needs every earlier event of a job, so at start the bridge reads the events
topic from its beginning (as the API's view does); what it publishes is only what lies past
its position, the newest record of each public partition (``public_topic.newest_published``):
written by the same producer that wrote everything before it, so everything before it is
there. It waits for each fetch's sends to be acknowledged (acks=all) before it fetches more,
and stops at the first send that fails (``flotilla up`` restarts it, and it resumes from the
topic): a send that failed is never followed by later ones that succeeded.
"""

from __future__ import annotations

import asyncio
import logging

from aiokafka import ConsumerRecord, TopicPartition

from flotilla.api.event_messages import stream_messages_of
from flotilla.events_bridge.public_topic import (
    Position,
    encoder,
    headers,
    newest_published,
    public_topic,
    public_topic_name,
)
from flotilla.jobs.state import JobState, apply
from flotilla.log.end_offsets import fetched_end_offsets
from flotilla.log.offset_gaps import OffsetGaps
from flotilla.log.schema import EVENTS_TOPIC, SchemaError, decode_job_event
from flotilla.log.tail import follower_consumer, topic_partitions
from flotilla.log.topics import ensure_topics
from flotilla.log.writer import acks_all_producer
from flotilla.settings import Settings

log = logging.getLogger(__name__)

READY = "flotilla events-bridge: ready"


def published_already(position: Position, offset: int, index: int) -> bool:
    """Whether message ``index`` of the event at ``offset`` lies at or before ``position``."""
    newest_offset, newest_index = position
    return offset < newest_offset or (offset == newest_offset and (newest_index < 0 or index <= newest_index))


class EventsBridge:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._source = settings.topic(EVENTS_TOPIC)
        self._public = public_topic_name(settings)
        self._encode = encoder(settings)
        self.jobs: dict[str, JobState] = {}
        self.positions: dict[int, Position] = {}
        self.published = 0
        self._gaps = OffsetGaps()
        self._consumer = follower_consumer(settings)
        self._producer = acks_all_producer(settings, linger_ms=5)

    async def start(self) -> None:
        await ensure_topics(self._settings)
        partitions = await topic_partitions(self._settings, [self._source])
        await ensure_topics(self._settings, topics=[public_topic(self._settings, len(partitions))])
        public = await topic_partitions(self._settings, [self._public])
        if len(public) != len(partitions):
            raise ValueError(
                f"events.public_topic: {self._public} has {len(public)} partitions, {self._source} "
                f"{len(partitions)}; they must have as many (a job set's events keep one partition)"
            )
        await self._resume_positions(partitions)
        await self._producer.start()
        await self._consumer.start()
        self._consumer.assign(partitions)
        await self._consumer.seek_to_beginning(*partitions)
        for tp, offset in (await self._consumer.beginning_offsets(partitions)).items():
            self._gaps.expect(tp, offset)

    async def _resume_positions(self, partitions: list[TopicPartition]) -> None:
        newest = await newest_published(self._settings, len(partitions))
        emptied = [tp for tp in partitions if newest[tp.partition] is None]
        ends = await fetched_end_offsets(self._settings.kafka.bootstrap, emptied) if emptied else {}
        for tp in partitions:
            position = newest[tp.partition]
            if position is None:
                # Retention removed every record: what was published is unknown. Publishing
                # the partition's history again would repeat it, so only what comes next goes.
                position = (ends[tp] - 1, -1)
                log.warning(
                    "%s[%d] holds no records (retention); publishing from %s offset %d on",
                    self._public,
                    tp.partition,
                    self._source,
                    ends[tp],
                )
            self.positions[tp.partition] = position

    async def stop(self) -> None:
        await self._consumer.stop()
        await self._producer.stop()

    async def run(self) -> None:
        """Follow the events topic until cancelled; a failed send ends it with the error."""
        while True:
            batches = await self._consumer.getmany(timeout_ms=200, max_records=5000)
            sends: list[asyncio.Future] = []
            for tp, fetched in batches.items():
                records, refetch_from = self._gaps.admit(tp, fetched)
                if refetch_from is not None:
                    self._consumer.seek(tp, refetch_from)
                for record in records:
                    sends.extend(await self._publish(tp.partition, record))
            if sends:
                await asyncio.gather(*sends)
                self.published += len(sends)

    async def _publish(self, partition: int, record: ConsumerRecord) -> list[asyncio.Future]:
        try:
            event = decode_job_event(record.value)
        except SchemaError as exc:
            log.warning("skipping %s[%d]@%d: %s", self._source, partition, record.offset, exc)
            return []
        after = apply(self.jobs.get(event.job_id), event)
        if after is None:
            return []
        self.jobs[event.job_id] = after
        position = self.positions[partition]
        if record.offset < position[0]:
            return []  # replaying what was published before a restart: no need to convert it
        sends = []
        for index, message in enumerate(stream_messages_of(record.offset, event, after)):
            if published_already(position, record.offset, index):
                continue
            sends.append(
                await self._producer.send(
                    self._public,
                    self._encode(message),
                    key=event.key,
                    partition=partition,
                    # The event's time, so that offsets_for_times finds events by when they
                    # happened, also those published late (after a restart of the bridge).
                    timestamp_ms=int(event.created * 1000),
                    headers=headers(self._settings, message),
                )
            )
        return sends


async def run_events_bridge(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    bridge = EventsBridge(settings)
    await bridge.start()
    resumed = ", ".join(
        f"[{p}] after {o}" + (f"-{i}" if i >= 0 else "") for p, (o, i) in bridge.positions.items()
    )
    print(
        f"{READY}: {settings.topic(EVENTS_TOPIC)} -> {public_topic_name(settings)} "
        f"({settings.events.format}); resumed {resumed}",
        flush=True,
    )
    try:
        await bridge.run()
    finally:
        await bridge.stop()
