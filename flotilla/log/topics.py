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


async def ensure_topics(
    settings: Settings, timeout: float = 60.0, topics: list[NewTopic] | None = None
) -> None:
    """Create the log's topics (or ``topics``) if they are missing; safe to call from every process."""
    wanted = topics or [
        NewTopic(name, num_partitions=partitions, replication_factor=1)
        for name, partitions in topic_partitions(settings).items()
    ]
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
