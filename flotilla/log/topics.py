"""The topics of the log, and their creation before anything writes to them."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from flotilla.log.schema import EVENTS_TOPIC, EXECUTORS_TOPIC, QUEUES_TOPIC, SCHEDULING_REPORTS_TOPIC
from flotilla.settings import Settings

log = logging.getLogger(__name__)


def topic_partitions(settings: Settings) -> dict[str, int]:
    """Topic name -> partitions. Job events spread over partitions by job set; queues and
    heartbeats are small and read whole by the scheduler, so one partition keeps them ordered;
    scheduling reports follow their job sets' events."""
    return {
        settings.topic(EVENTS_TOPIC): settings.kafka.partitions,
        settings.topic(SCHEDULING_REPORTS_TOPIC): settings.kafka.partitions,
        settings.topic(QUEUES_TOPIC): 1,
        settings.topic(EXECUTORS_TOPIC): 1,
    }


# The log is the source of truth (invariant 1): what every view is rebuilt from must never be
# deleted by time, whatever the broker's default retention (Apache Kafka's is 7 days).
# Heartbeats are only read for the executors' latest state, so they keep the broker's default.
KEPT_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}


def durable_topics(settings: Settings) -> set[str]:
    """The topics whose records are kept forever."""
    return {settings.topic(name) for name in (EVENTS_TOPIC, SCHEDULING_REPORTS_TOPIC, QUEUES_TOPIC)}


def log_topics(settings: Settings) -> list[NewTopic]:
    """The log's topics as they are created: partitions, and retention for the durable ones."""
    durable = durable_topics(settings)
    return [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=1,
            topic_configs=dict(KEPT_FOREVER) if name in durable else {},
        )
        for name, partitions in topic_partitions(settings).items()
    ]


async def ensure_topics(
    settings: Settings, timeout: float = 60.0, topics: list[NewTopic] | None = None
) -> None:
    """Create the log's topics (or ``topics``) if they are missing; safe to call from every process."""
    wanted = topics or log_topics(settings)
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka.bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [topic for topic in wanted if topic.name not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
            return
        except KafkaError as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.info("waiting for Kafka at %s to create topics: %s", settings.kafka.bootstrap, exc)
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
